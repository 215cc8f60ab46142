#!/usr/bin/env python3
"""Cross-check of every scheme against libraries this project did not write.

Reads one JSON document on stdin: {"now", "body", "tampered", "cases": [{"scheme", "secret",
"ours": [[name, value], ...]}]}. For each case the vendor's own library (stripe, slack_sdk,
standardwebhooks; PyNaCl for raw Ed25519) verifies our headers over the body and over the
tampered body, and signs the body itself. Prints {"results": [{"scheme", "oursVerified",
"tamperedRefused", "theirs": [[name, value], ...]}]}.
"""

import base64
import json
import sys
from datetime import datetime, timezone

import nacl.exceptions
import nacl.signing
import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook

MSG_ID = "msg_python_peer"


def standard_headers(headers, prefix):
    """The headers under Standard Webhooks names (standardwebhooks reads webhook-* only)."""
    return {name.replace(prefix, "webhook-", 1): value for name, value in headers.items()}


def standard(case, body, now, prefix):
    hook = Webhook(case["secret"])

    def verifies(data, headers):
        try:
            hook.verify(data.encode(), standard_headers(headers, prefix), json_parse=False)
            return True
        except Exception:
            return False

    signature = hook.sign(MSG_ID, datetime.fromtimestamp(now, tz=timezone.utc), body.encode())
    theirs = [[prefix + "id", MSG_ID], [prefix + "timestamp", str(now)], [prefix + "signature", signature]]
    return verifies, theirs


def v1a(case, body, now):
    seed = base64.b64decode(case["secret"][len("whsk_"):])[:32]
    signing = nacl.signing.SigningKey(seed)

    def verifies(data, headers):
        message = f'{headers["webhook-id"]}.{headers["webhook-timestamp"]}.{data}'.encode()
        for entry in headers["webhook-signature"].split(" "):
            version, _, encoded = entry.partition(",")
            if version != "v1a":
                continue
            try:
                signing.verify_key.verify(message, base64.b64decode(encoded))
                return True
            except (nacl.exceptions.BadSignatureError, ValueError):
                continue
        return False

    signature = signing.sign(f"{MSG_ID}.{now}.{body}".encode()).signature
    theirs = [["webhook-id", MSG_ID], ["webhook-timestamp", str(now)],
              ["webhook-signature", "v1a," + base64.b64encode(signature).decode()]]
    return verifies, theirs


def stripe_peer(case, body, now):
    def verifies(data, headers):
        try:
            stripe.WebhookSignature.verify_header(data, headers["stripe-signature"], case["secret"], tolerance=300)
            return True
        except stripe.SignatureVerificationError:
            return False

    header = stripe.WebhookSignature.generate_signature_header(body, case["secret"], timestamp=now)
    return verifies, [["stripe-signature", header]]


def slack_peer(case, body, now):
    verifier = SignatureVerifier(case["secret"])

    def verifies(data, headers):
        return verifier.is_valid_request(data, headers)

    signature = verifier.generate_signature(timestamp=str(now), body=body)
    return verifies, [["x-slack-signature", signature], ["x-slack-request-timestamp", str(now)]]


def main():
    request = json.load(sys.stdin)
    now, body, tampered = request["now"], request["body"], request["tampered"]
    results = []
    for case in request["cases"]:
        scheme = case["scheme"]
        if scheme == "standard-webhooks":
            verifies, theirs = standard(case, body, now, "webhook-")
        elif scheme == "svix":
            verifies, theirs = standard(case, body, now, "svix-")
        elif scheme == "standard-webhooks-v1a":
            verifies, theirs = v1a(case, body, now)
        elif scheme == "stripe":
            verifies, theirs = stripe_peer(case, body, now)
        elif scheme == "slack":
            verifies, theirs = slack_peer(case, body, now)
        else:
            raise SystemExit(f"unknown scheme {scheme}")
        ours = {name: value for name, value in case["ours"]}
        results.append({
            "scheme": scheme,
            "oursVerified": verifies(body, ours),
            "tamperedRefused": not verifies(tampered, ours),
            "theirs": theirs,
        })
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
