//! Cross-checks against the `standardwebhooks` crate, an independent implementation (it uses
//! the `hmac-sha256` crate, not RustCrypto), in both directions on generated inputs.

use http::{HeaderMap, HeaderName, HeaderValue};
use standardwebhooks::Webhook;
use verify::{unix_now, EventGenerator, Keyring, SigningSecret, CATALOG};

fn header_map(headers: &[(String, String)]) -> HeaderMap {
    headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            )
        })
        .collect()
}

/// Realistic bodies of every catalogue name, batched and not, plus odd ones.
fn bodies() -> Vec<Vec<u8>> {
    let mut generator = EventGenerator::new(42);
    let mut bodies: Vec<Vec<u8>> = CATALOG
        .iter()
        .enumerate()
        .map(|(index, kind)| {
            generator
                .envelope(1010 + index as i64, kind, 1 + index % 5, 1_795_000_000_000)
                .to_bytes()
        })
        .collect();
    bodies.push(b"".to_vec());
    bodies.push("{\"note\":\"unicode \u{e9}\u{4e2d}\"}".as_bytes().to_vec());
    bodies
}

#[test]
fn the_peer_verifies_what_we_sign() {
    let now = unix_now();
    for (index, body) in bodies().into_iter().enumerate() {
        let secret = SigningSecret::generate();
        let peer = Webhook::new(&secret.expose_whsec()).expect("peer accepts our secret");
        let msg_id = format!("msg_{index}");
        let headers = Keyring::single(secret).sign_headers(&msg_id, now, &body);
        peer.verify(&body, &header_map(&headers))
            .unwrap_or_else(|error| panic!("peer refused body {index}: {error:?}"));
    }
}

#[test]
fn we_verify_what_the_peer_signs_and_agree_on_tampering() {
    let now = unix_now();
    for (index, body) in bodies().into_iter().enumerate() {
        let secret = SigningSecret::generate();
        let peer = Webhook::new(&secret.expose_whsec()).expect("peer accepts our secret");
        let msg_id = format!("msg_{index}");
        let signature = peer.sign(&msg_id, now, &body).expect("peer signs");
        let ours = verify::sign(&secret, &msg_id, now, &body);
        assert_eq!(signature, ours, "same signature for body {index}");

        let keyring = Keyring::single(secret);
        let headers = vec![
            ("webhook-id".to_owned(), msg_id.clone()),
            ("webhook-timestamp".to_owned(), now.to_string()),
            ("webhook-signature".to_owned(), signature),
        ];
        keyring
            .verify(&headers, &body)
            .expect("we accept the peer's signature");

        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(keyring.verify(&headers, &tampered).is_err());
        assert!(peer.verify(&tampered, &header_map(&headers)).is_err());
    }
}
