//! Runs `verify/tests/vectors.json`, the cases other languages can test against too.

use serde_json::Value;
use verify::{
    Authentication, BasicCredentials, BodyHmacFormat, Encoding, KeyEntry, Keyring, Scheme,
    SigningSecret,
};

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {case}"))
}

fn keyring(case: &Value, scheme: Scheme) -> Keyring {
    let entries = case["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|secret| KeyEntry {
            secret: SigningSecret::parse_lenient(text(secret, "secret")).expect("valid secret"),
            created_at: None,
            expires_at: secret["expiresAt"].as_i64(),
        })
        .collect();
    Keyring::new(scheme, entries)
}

fn authentication(case: &Value) -> Authentication {
    match text(case, "scheme") {
        "standard-webhooks" => Authentication::Signature(vec![keyring(
            case,
            Scheme::StandardWebhooks {
                tolerance_secs: case["toleranceSeconds"].as_i64().expect("tolerance"),
            },
        )]),
        "body-hmac-sha256" => {
            let format = BodyHmacFormat {
                header: text(case, "header").to_owned(),
                encoding: Encoding::from_name(text(case, "encoding")).expect("encoding"),
                prefix: text(case, "prefix").to_owned(),
            };
            Authentication::Signature(vec![keyring(case, Scheme::BodyHmacSha256(format))])
        }
        "basic" => Authentication::Basic(
            BasicCredentials::new(text(case, "username"), text(case, "password"))
                .expect("credentials"),
        ),
        other => panic!("unknown scheme {other}"),
    }
}

#[test]
fn every_vector_gives_its_expected_verdict() {
    let vectors: Value =
        serde_json::from_str(include_str!("../vectors.json")).expect("vectors.json is JSON");
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "the file lost cases");
    let mut failures = Vec::new();
    for case in cases {
        let headers: Vec<(String, String)> =
            serde_json::from_value(case["headers"].clone()).expect("headers");
        let body = text(case, "body").as_bytes();
        let now = case["now"].as_i64().expect("now");
        let got = match authentication(case).verify_at(&headers, body, now) {
            Ok(()) => "accepted".to_owned(),
            Err(error) => error.reason_code().into_owned(),
        };
        if got != text(case, "expected") {
            failures.push(format!("{}: got {got}", text(case, "description")));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
