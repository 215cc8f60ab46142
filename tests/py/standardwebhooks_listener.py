#!/usr/bin/env python3
"""An independent verifier of the sender's signatures: Python's `standardwebhooks` package.

Usage: standardwebhooks_listener.py SIGNATURE_FILE

Listens on 127.0.0.1 on a free port and prints `listening on http://127.0.0.1:PORT/webhook`
as its first line. Every POST is verified with each secret of the signature file separately;
one JSON line per request goes to stdout: {"webhookId", "verifiedBy": [secret indexes],
"errors": [...], "events": N}. It answers 204 when at least one secret verifies, else 401.
It stops by itself after 120 s, or when its standard input closes.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

with open(sys.argv[1], encoding="utf-8") as signature_file:
    SECRETS = [record["secret"] for record in json.load(signature_file)["secrets"]]
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        verified_by, errors = [], []
        for index, secret in enumerate(SECRETS):
            try:
                payload = Webhook(secret).verify(body, headers)
                verified_by.append(index)
            except Exception as error:  # the verdict is the output, any failure counts
                errors.append(f"secret {index}: {error}")
        events = len(json.loads(body).get("events", [])) if verified_by else 0
        line = json.dumps({"webhookId": headers.get("webhook-id"), "verifiedBy": verified_by,
                           "errors": errors, "events": events})
        with LOCK:
            print(line, flush=True)
        self.send_response(204 if verified_by else 401)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on http://127.0.0.1:{server.server_address[1]}/webhook", flush=True)


def stop_when_stdin_closes():
    sys.stdin.read()
    server.shutdown()


threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
deadline = threading.Timer(120, server.shutdown)
deadline.daemon = True
deadline.start()
server.serve_forever()
sys.exit(0)
