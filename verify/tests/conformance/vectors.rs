//! Runs `verify/tests/vectors.json`, the cases other languages can test against too.

use serde_json::Value;
use verify::{
    Authentication, BasicCredentials, BodyHmacFormat, Encoding, KeyEntry, Keyring, Scheme,
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
            key: scheme
                .parse_key(text(secret, "secret"))
                .expect("valid secret"),
            created_at: None,
            expires_at: secret["expiresAt"].as_i64(),
        })
        .collect();
    Keyring::new(scheme, entries)
}

fn authentication(case: &Value) -> Authentication {
    let name = text(case, "scheme");
    if name == "basic" {
        return Authentication::Basic(
            BasicCredentials::new(text(case, "username"), text(case, "password"))
                .expect("credentials"),
        );
    }
    let mut scheme = Scheme::from_name(name).unwrap_or_else(|| panic!("unknown scheme {name}"));
    if let Some(tolerance) = case["toleranceSeconds"].as_i64() {
        scheme = scheme.with_tolerance(tolerance);
    }
    if name == "body-hmac-sha256" {
        scheme = Scheme::BodyHmacSha256(BodyHmacFormat {
            header: text(case, "header").to_owned(),
            encoding: Encoding::from_name(text(case, "encoding")).expect("encoding"),
            prefix: text(case, "prefix").to_owned(),
        });
    }
    Authentication::Signature(vec![keyring(case, scheme)])
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

/// Every scheme has its positive cases and at least four refusals, and every vendor's
/// known-answer case says where it comes from.
#[test]
fn every_scheme_has_refusals_and_cited_vendor_vectors() {
    let vectors: Value =
        serde_json::from_str(include_str!("../vectors.json")).expect("vectors.json is JSON");
    let cases = vectors["cases"].as_array().expect("cases");
    for scheme in verify::scheme::SCHEME_NAMES.iter().chain(&["basic"]) {
        let of_scheme: Vec<&Value> = cases.iter().filter(|c| c["scheme"] == *scheme).collect();
        let refusals = of_scheme
            .iter()
            .filter(|c| c["expected"] != "accepted")
            .count();
        assert!(refusals >= 4, "{scheme}: {refusals} refusals");
        assert!(
            of_scheme.iter().any(|c| c["expected"] == "accepted"),
            "{scheme}"
        );
    }
    for vendor in ["github", "slack", "stripe", "svix"] {
        assert!(
            cases.iter().any(|c| c["scheme"] == vendor
                && c["expected"] == "accepted"
                && c["source"]
                    .as_str()
                    .is_some_and(|s| s.contains("http") || s.contains("stripe-python"))),
            "{vendor} has no cited known-answer vector"
        );
    }
    let v1a = cases
        .iter()
        .filter(|c| c["headers"].to_string().contains("v1a,") && c["expected"] == "accepted");
    assert!(v1a.count() >= 2, "v1a accepted cases");
}
