#!/usr/bin/env python3
"""Writes vectors.json: verification cases computed with Python's own hmac and base64.

The signatures here come from an implementation independent of the Rust crate, so the vectors
test the crate rather than echo it. Run from this folder: `python3 make_vectors.py`.
"""
import base64
import hashlib
import hmac
import json

NOW = 1_795_000_000
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BODY = '{"accountId":1010,"events":[{"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z","data":{"userId":1}}]}'


def key(secret):
    return base64.b64decode(secret[len("whsec_"):])


def sw_sign(secret, msg_id, ts, body):
    tag = hmac.new(key(secret), f"{msg_id}.{ts}.".encode() + body.encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(tag).decode()


def sw_case(description, expected, msg_id="msg_1", ts=NOW, body=BODY, sign_body=None, secret=SECRET,
            signature=None, secrets=None, drop=None, now=NOW, tolerance=300):
    headers = [
        ["webhook-id", msg_id],
        ["webhook-timestamp", str(ts)],
        ["webhook-signature", signature if signature is not None else
         sw_sign(secret, msg_id, ts, sign_body if sign_body is not None else body)],
    ]
    if drop:
        headers = [h for h in headers if h[0] != drop]
    return {
        "description": description,
        "scheme": "standard-webhooks",
        "toleranceSeconds": tolerance,
        "secrets": secrets or [{"secret": SECRET, "expiresAt": None}],
        "now": now,
        "headers": headers,
        "body": body,
        "expected": expected,
    }


def body_case(description, expected, value, header="x-alm-signature", encoding="hex", prefix="",
              body=BODY, present=True):
    return {
        "description": description,
        "scheme": "body-hmac-sha256",
        "header": header,
        "encoding": encoding,
        "prefix": prefix,
        "secrets": [{"secret": SECRET, "expiresAt": None}],
        "now": NOW,
        "headers": [[header, value]] if present else [],
        "body": body,
        "expected": expected,
    }


def body_sig(encoding, prefix, body=BODY):
    tag = hmac.new(key(SECRET), body.encode(), hashlib.sha256).digest()
    return prefix + (tag.hex() if encoding == "hex" else base64.b64encode(tag).decode())


def basic_case(description, expected, value, username="crm", password="pa:ss"):
    return {
        "description": description,
        "scheme": "basic",
        "username": username,
        "password": password,
        "now": NOW,
        "headers": [] if value is None else [["authorization", value]],
        "body": BODY,
        "expected": expected,
    }


def b64(text):
    return base64.b64encode(text.encode()).decode()


cases = [
    {
        "description": "Standard Webhooks published vector",
        "scheme": "standard-webhooks",
        "toleranceSeconds": 300,
        "secrets": [{"secret": SECRET, "expiresAt": None}],
        "now": 1614265330,
        "headers": [["webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"], ["webhook-timestamp", "1614265330"],
                    ["webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]],
        "body": '{"test": 2432232314}',
        "expected": "accepted",
    },
    sw_case("valid signature", "accepted"),
    sw_case("one of several signatures matches", "accepted",
            signature="v1," + base64.b64encode(b"\0" * 32).decode() + " " + sw_sign(SECRET, "msg_1", NOW, BODY)),
    sw_case("unknown version entries are skipped", "no_matching_signature",
            signature=sw_sign(SECRET, "msg_1", NOW, BODY).replace("v1,", "v2,")),
    sw_case("body re-serialised with spaces", "no_matching_signature",
            body=BODY.replace(",", ", "), sign_body=BODY),
    sw_case("different message id", "no_matching_signature", msg_id="msg_2",
            signature=sw_sign(SECRET, "msg_1", NOW, BODY)),
    sw_case("timestamp at the old edge", "accepted", ts=NOW - 300),
    sw_case("timestamp one second too old", "timestamp_too_old:301", ts=NOW - 301),
    sw_case("timestamp one second too new", "timestamp_too_new:301", ts=NOW + 301),
    sw_case("tolerance from the keyring", "timestamp_too_old:61", ts=NOW - 61, tolerance=60),
    sw_case("timestamp not a number", "invalid_timestamp", ts="17950e5"),
    sw_case("missing webhook-id", "missing_header:webhook-id", drop="webhook-id"),
    sw_case("missing webhook-timestamp", "missing_header:webhook-timestamp", drop="webhook-timestamp"),
    sw_case("missing webhook-signature", "missing_header:webhook-signature", drop="webhook-signature"),
    sw_case("signature without version", "malformed_signature", signature="abc"),
    sw_case("v1 signature not 32 bytes", "malformed_signature", signature="v1,AAAA"),
    sw_case("rotation: old secret still in force", "accepted", secret=OLD_SECRET,
            secrets=[{"secret": OLD_SECRET, "expiresAt": NOW + 1}, {"secret": SECRET, "expiresAt": None}]),
    sw_case("rotation: old secret expired", "secret_expired", secret=OLD_SECRET,
            secrets=[{"secret": OLD_SECRET, "expiresAt": NOW}, {"secret": SECRET, "expiresAt": None}]),
    body_case("body-hmac hex", "accepted", body_sig("hex", "")),
    body_case("body-hmac uppercase hex", "accepted", body_sig("hex", "").upper()),
    body_case("body-hmac base64 with prefix", "accepted", body_sig("base64", "sha256="),
              encoding="base64", prefix="sha256="),
    body_case("body-hmac custom header", "accepted", body_sig("hex", ""), header="x-signature"),
    body_case("body-hmac missing prefix", "malformed_signature", body_sig("hex", ""), prefix="sha256="),
    body_case("body-hmac tampered body", "no_matching_signature", body_sig("hex", ""), body=BODY + " "),
    body_case("body-hmac missing header", "missing_header:x-alm-signature", "", present=False),
    basic_case("basic valid, colon in password", "accepted", "Basic " + b64("crm:pa:ss")),
    basic_case("basic scheme is case-insensitive", "accepted", "bAsIc " + b64("crm:pa:ss")),
    basic_case("basic missing", "basic_missing", None),
    basic_case("bearer instead of basic", "basic_missing", "Bearer abc"),
    basic_case("basic bad base64", "basic_malformed", "Basic %%%"),
    basic_case("basic without colon", "basic_malformed", "Basic " + b64("crm")),
    basic_case("basic wrong password", "basic_mismatch", "Basic " + b64("crm:pa:sS")),
    basic_case("basic empty user", "accepted", "Basic " + b64(":pw"), username="", password="pw"),
]

with open("vectors.json", "w") as out:
    json.dump({"version": 1, "cases": cases}, out, indent=1)
    out.write("\n")
print(f"wrote {len(cases)} cases")
