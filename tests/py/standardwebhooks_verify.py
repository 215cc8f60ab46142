#!/usr/bin/env python3
"""Verifies captured requests with Python's `standardwebhooks` package (not our code), as an
operator's endpoint would verify the sender's notifications.

Usage: standardwebhooks_verify.py SIGNATURE_FILE < requests.jsonl

Each input line is {"headers": {name: value}, "body": "..."}; each output line is
{"verified": true} or {"verified": false, "error": "..."}, in the same order. A request
verifies when any secret of the signature file verifies it (timestamp within 5 minutes).
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

with open(sys.argv[1], encoding="utf-8") as signature_file:
    SECRETS = [record["secret"] for record in json.load(signature_file)["secrets"]]

for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    headers = {name.lower(): value for name, value in request["headers"].items()}
    errors = []
    for secret in SECRETS:
        try:
            Webhook(secret).verify(request["body"].encode("utf-8"), headers)
            print(json.dumps({"verified": True}), flush=True)
            break
        except Exception as error:  # the verdict is the output, any failure counts
            errors.append(str(error))
    else:
        print(json.dumps({"verified": False, "error": "; ".join(errors)}), flush=True)
