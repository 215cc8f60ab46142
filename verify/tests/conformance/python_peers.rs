//! Cross-checks of every timestamped scheme against the vendors' own Python libraries
//! (`stripe`, `slack_sdk`, `standardwebhooks`; PyNaCl for raw Ed25519): their signatures
//! verify here, ours verify there, and both refuse a tampered body. `.ci/run` installs them;
//! elsewhere a missing package skips this test loudly.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use verify::{unix_now, Key, KeyEntry, Keyring, Scheme};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer_cross_check.py");
const MODULES: &str = "import stripe, slack_sdk, standardwebhooks, nacl";

fn peers_available() -> bool {
    let importable = Command::new("python3")
        .args(["-c", MODULES])
        .status()
        .is_ok_and(|status| status.success());
    if !importable {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must install the Python peers: python3 -m pip install stripe slack_sdk standardwebhooks PyNaCl"
        );
        eprintln!(
            "SKIPPED: python_peers needs python3 with stripe, slack_sdk, standardwebhooks and PyNaCl \
             (python3 -m pip install stripe slack_sdk standardwebhooks PyNaCl)"
        );
    }
    importable
}

/// The schemes a Python peer exists for, each as (name given to the script, keyring).
fn keyrings() -> Vec<(&'static str, Keyring)> {
    let hmac = |name: &str| {
        let scheme = Scheme::from_name(name).expect("known");
        let secret = scheme.generate_secret();
        Keyring::new(scheme, vec![KeyEntry::new(secret)])
    };
    vec![
        ("standard-webhooks", hmac("standard-webhooks")),
        ("svix", hmac("svix")),
        (
            "standard-webhooks-v1a",
            Keyring::single(Key::Ed25519Secret(verify::ed25519::SecretKey::generate())),
        ),
        ("stripe", hmac("stripe")),
        ("slack", hmac("slack")),
    ]
}

#[test]
fn vendor_libraries_and_we_verify_each_other_and_refuse_tampering() {
    if !peers_available() {
        return;
    }
    let now = unix_now();
    let body = r#"{"accountId":1010,"events":[{"eventId":"e-1","eventName":"COURSE_COMPLETED","note":"caf\u00e9 \u4e2d"}]}"#;
    let tampered = body.replace("1010", "1011");
    let keyrings = keyrings();
    let cases: Vec<Value> = keyrings
        .iter()
        .map(|(name, keyring)| {
            json!({
                "scheme": name,
                "secret": keyring.entries()[0].key.expose_text(),
                "ours": keyring.sign_headers("msg_ours", now, body.as_bytes()),
            })
        })
        .collect();
    let request = json!({"now": now, "body": body, "tampered": tampered, "cases": cases});
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(output.status.success(), "{output:?}");
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON answer");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), keyrings.len());
    for ((name, keyring), result) in keyrings.iter().zip(results) {
        assert_eq!(
            result["oursVerified"], true,
            "{name}: the peer refused our signature"
        );
        assert_eq!(
            result["tamperedRefused"], true,
            "{name}: the peer took a tampered body"
        );
        let theirs: Vec<(String, String)> =
            serde_json::from_value(result["theirs"].clone()).expect("their headers");
        keyring
            .verify_at(&theirs, body.as_bytes(), now)
            .unwrap_or_else(|error| panic!("{name}: we refused the peer's signature: {error}"));
        let refusal = keyring
            .verify_at(&theirs, tampered.as_bytes(), now)
            .expect_err("tampered body");
        assert_eq!(refusal.reason_code(), "no_matching_signature", "{name}");
    }
}
