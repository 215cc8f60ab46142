//! Properties over arbitrary input: signing round-trips, and nothing panics on garbage.

use base64::Engine as _;
use proptest::prelude::*;
use verify::{
    parse_envelope, Authentication, BasicCredentials, BodyHmacFormat, CaptureRecord, KeyEntry,
    Keyring, Scheme, SignatureFile, SigningSecret,
};

const NOW: i64 = 1_795_000_000;

fn secret_from(bytes: &[u8]) -> SigningSecret {
    SigningSecret::from_bytes(bytes.to_vec()).expect("24 to 64 bytes")
}

/// A keyring of every scheme, Standard Webhooks with a v1 secret and a v1a key both.
fn every_scheme_keyring() -> Vec<Keyring> {
    let secret = secret_from(&[7u8; 32]);
    let v1a = verify::ed25519::SecretKey::parse(&format!(
        "whsk_{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    ))
    .expect("seed");
    verify::scheme::SCHEME_NAMES
        .iter()
        .map(|name| {
            let scheme = match Scheme::from_name(name).expect("known") {
                Scheme::BodyHmacSha256(_) => Scheme::BodyHmacSha256(BodyHmacFormat {
                    prefix: "sha256=".into(),
                    ..BodyHmacFormat::default()
                }),
                other => other,
            };
            let mut entries = vec![KeyEntry::new(secret.clone())];
            if *name == "standard-webhooks" {
                entries.push(KeyEntry::new(v1a.clone()));
            }
            Keyring::new(scheme, entries)
        })
        .collect()
}

/// Header values shaped like signatures often enough to reach the parsers' inner branches.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120),
        "(v1|v1a|v0|t|sha256|sha1)[,=][A-Za-z0-9+/=,= ]{0,100}".prop_map(String::into_bytes),
        "(t=[0-9]{1,12},)?(v1=[0-9a-f]{64},?){0,3}".prop_map(String::into_bytes),
        "[0-9]{0,14}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_round_trips(
        key in proptest::collection::vec(any::<u8>(), 24..=64),
        msg_id in "[A-Za-z0-9_-]{1,40}",
        offset in -300i64..=300,
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let keyring = Keyring::single(secret_from(&key));
        let headers = keyring.sign_headers(&msg_id, NOW + offset, &body);
        prop_assert!(keyring.verify_at(&headers, &body, NOW).is_ok());

        let body_hmac = Keyring::new(
            Scheme::BodyHmacSha256(BodyHmacFormat::default()),
            vec![KeyEntry::new(secret_from(&key))],
        );
        let headers = body_hmac.sign_headers(&msg_id, NOW, &body);
        prop_assert!(body_hmac.verify_at(&headers, &body, NOW).is_ok());
    }

    #[test]
    fn a_flipped_bit_is_always_refused(
        key in proptest::collection::vec(any::<u8>(), 32..=32),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<usize>(),
    ) {
        let keyring = Keyring::single(secret_from(&key));
        let headers = keyring.sign_headers("msg_1", NOW, &body);
        let mut tampered = body.clone();
        let bit = bit % (tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(keyring.verify_at(&headers, &tampered, NOW).is_err());
    }

    #[test]
    fn verifying_arbitrary_headers_never_panics(
        headers in proptest::collection::vec(
            (prop_oneof![
                Just("webhook-id".to_owned()),
                Just("webhook-timestamp".to_owned()),
                Just("webhook-signature".to_owned()),
                Just("svix-id".to_owned()),
                Just("svix-timestamp".to_owned()),
                Just("svix-signature".to_owned()),
                Just("authorization".to_owned()),
                Just("x-alm-signature".to_owned()),
                Just("x-hub-signature-256".to_owned()),
                Just("x-shopify-hmac-sha256".to_owned()),
                Just("stripe-signature".to_owned()),
                Just("x-slack-signature".to_owned()),
                Just("x-slack-request-timestamp".to_owned()),
                "[a-z-]{1,20}",
            ], header_value()),
            0..8,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        let mut methods = vec![Authentication::Basic(BasicCredentials::new("u", "p").expect("valid"))];
        for keyring in every_scheme_keyring() {
            methods.push(Authentication::Signature(vec![keyring]));
        }
        for method in &methods {
            let _ = method.verify_at(&headers, &body, now);
            let _ = verify::diagnose_at(method, &headers, &body, now);
        }
    }

    #[test]
    fn every_scheme_round_trips_and_refuses_a_flipped_bit(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<usize>(),
        offset in -300i64..=300,
    ) {
        for keyring in every_scheme_keyring() {
            let headers = keyring.sign_headers("msg_1", NOW + offset, &body);
            prop_assert!(keyring.verify_at(&headers, &body, NOW).is_ok(), "{}", keyring.scheme().name());
            let mut tampered = body.clone();
            let bit = bit % (tampered.len() * 8);
            tampered[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(keyring.verify_at(&headers, &tampered, NOW).is_err(), "{}", keyring.scheme().name());
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_envelope(&bytes);
        let _ = verify::parse_source(&bytes);
        let _ = verify::single_event_envelope(&bytes, "e");
        let _ = SignatureFile::from_json(&bytes);
        let _ = CaptureRecord::from_json_line(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn signature_file_errors_never_echo_a_secret(
        secret in "whsec_[A-Za-z0-9+/]{20,40}",
        place in 0usize..4,
    ) {
        let documents = [
            format!(r#"{{"version":1,"webhookId":"w","webhookName":"n","scheme":"standard-webhooks","algorithm":"HMAC-SHA256","secrets":["{secret}"]}}"#),
            format!(r#"{{"version":"{secret}"}}"#),
            format!(r#"{{"version":1,"webhookId":"w","webhookName":"n","scheme":"{secret}","algorithm":"HMAC-SHA256","secrets":[]}}"#),
            format!(r#"{{"version":1,"webhookId":"w","webhookName":"n","scheme":"standard-webhooks","algorithm":"HMAC-SHA256","secrets":[{{"secret":"{secret}","createdAt":5,"expiresAt":null}}]}}"#),
        ];
        if let Err(error) = SignatureFile::from_json(documents[place].as_bytes()) {
            prop_assert!(!error.to_string().contains(&secret[6..]), "{}", error);
        }
    }

    #[test]
    fn parsing_json_shaped_garbage_never_panics(
        account in prop_oneof![Just("1".to_owned()), Just("\"x\"".to_owned()), Just("1e400".to_owned()), Just("-9223372036854775809".to_owned())],
        id in prop_oneof![Just("\"e\"".to_owned()), Just("\"\"".to_owned()), Just("null".to_owned()), Just("\"\\ud800\"".to_owned())],
        timestamp in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just("\"2024-13-45T99:99:99Z\"".to_owned()),
            Just("\"+275760-09-13T00:00:00Z\"".to_owned()),
            Just("1e300".to_owned()),
        ],
        data in prop_oneof![Just("{}".to_owned()), Just("[]".to_owned()), Just("{\"a\":[{\"b\":null}]}".to_owned())],
    ) {
        let body = format!(r#"{{"accountId":{account},"events":[{{"eventId":{id},"eventName":"X","timestamp":{timestamp},"data":{data}}}]}}"#);
        if let Ok(envelope) = parse_envelope(body.as_bytes()) {
            for event in &envelope.events {
                let _ = event.timestamp.epoch_millis();
            }
        }
    }
}
