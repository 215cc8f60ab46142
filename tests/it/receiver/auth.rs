//! Every reason code of SPEC section 2 as the receiver answers it, for none, Basic and
//! Signature (a rotated keyring, an expired secret, and body-hmac-sha256).

use http::StatusCode;
use verify::{
    unix_now, Authentication, BasicCredentials, Keyring, Scheme, SignatureFile, SigningSecret,
};

use crate::support::receiver::{envelope, InProcess};

async fn start(dir: &std::path::Path, authentication: Authentication) -> InProcess {
    let mut config = receiver::Config::for_tests(dir.join("r.db"));
    config.authentication = authentication;
    InProcess::start(config).await
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_accepts_anything_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = start(dir.path(), Authentication::None).await;
    let reply = receiver
        .post(&[("authorization", "Basic whatever")], envelope(1, &["e"]))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let auth: String = receiver
        .db()
        .query_row("SELECT auth FROM requests", [], |row| row.get(0))
        .unwrap();
    assert_eq!(auth, "none");
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_reason_codes_and_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = BasicCredentials::new("crm", "s3cret:pass").unwrap();
    let good = credentials.authorization_header();
    let receiver = start(dir.path(), Authentication::Basic(credentials.clone())).await;
    let body = envelope(1, &["e"]);

    let wrong = BasicCredentials::new("crm", "nope")
        .unwrap()
        .authorization_header();
    let cases: Vec<(Option<&str>, &str)> = vec![
        (None, "basic_missing"),
        (Some("Bearer token"), "basic_missing"),
        (Some("Basic"), "basic_malformed"),
        (Some("Basic !!!not-base64"), "basic_malformed"),
        (Some("Basic bm9jb2xvbg=="), "basic_malformed"),
        (Some(wrong.as_str()), "basic_mismatch"),
    ];
    for (header, code) in cases {
        let headers: Vec<(&str, &str)> = header.map(|v| ("authorization", v)).into_iter().collect();
        let reply = receiver.post(&headers, body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(
            reply.json(),
            serde_json::json!({ "error": code }),
            "{header:?}"
        );
        assert_eq!(
            reply.headers["www-authenticate"], "Basic realm=\"webhooks\"",
            "{header:?}"
        );
    }
    let ok = receiver.post(&[("authorization", &good)], body).await;
    assert_eq!(ok.status, StatusCode::OK);

    // Nothing refused was stored as an event, and the stored request hides the password.
    let db = receiver.db();
    let (events, headers): (i64, String) = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT headers FROM requests)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(events, 1);
    assert!(headers.contains("Basic [redacted]"), "{headers}");
    assert!(
        !headers.contains(good.trim_start_matches("Basic ")),
        "{headers}"
    );
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_reason_codes() {
    let dir = tempfile::tempdir().unwrap();
    let secret = SigningSecret::generate();
    let keyring = Keyring::single(secret.clone());
    let receiver = start(dir.path(), Authentication::Signature(vec![keyring.clone()])).await;
    let body = envelope(1, &["signed"]);
    let now = unix_now();
    let signed = keyring.sign_headers("msg_1", now, body.as_bytes());
    let other =
        Keyring::single(SigningSecret::generate()).sign_headers("msg_1", now, body.as_bytes());

    let without = |name: &str| -> Vec<(String, String)> {
        signed.iter().filter(|(n, _)| n != name).cloned().collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        signed
            .iter()
            .map(|(n, v)| {
                if n == name {
                    (n.clone(), value.to_owned())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect()
    };
    let old = now - 400;
    let new = now + 400;
    let cases: Vec<(Vec<(String, String)>, String)> = vec![
        (without("webhook-id"), "missing_header:webhook-id".into()),
        (
            without("webhook-timestamp"),
            "missing_header:webhook-timestamp".into(),
        ),
        (
            without("webhook-signature"),
            "missing_header:webhook-signature".into(),
        ),
        (
            with("webhook-timestamp", "yesterday"),
            "invalid_timestamp".into(),
        ),
        (
            keyring.sign_headers("msg_1", old, body.as_bytes()),
            "timestamp_too_old:".into(),
        ),
        (
            keyring.sign_headers("msg_1", new, body.as_bytes()),
            "timestamp_too_new:".into(),
        ),
        (other, "no_matching_signature".into()),
        (
            with("webhook-signature", "v1,@@@"),
            "malformed_signature".into(),
        ),
        (
            with("webhook-id", "msg_other"),
            "no_matching_signature".into(),
        ),
    ];
    for (headers, code) in cases {
        let reply = receiver.post(&as_refs(&headers), body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{code}");
        assert!(
            reply.error().starts_with(&code),
            "{code}: {}",
            reply.error()
        );
        assert!(reply.headers.get("www-authenticate").is_none());
    }
    // The seconds are in the code, within the clock's drift during the test.
    let too_old = receiver
        .post(
            &as_refs(&keyring.sign_headers("m", old, body.as_bytes())),
            body.clone(),
        )
        .await
        .error();
    let age: i64 = too_old
        .trim_start_matches("timestamp_too_old:")
        .parse()
        .unwrap();
    assert!((400..=402).contains(&age), "{too_old}");

    // A tampered body fails; the signed one passes.
    let tampered = receiver
        .post(&as_refs(&signed), envelope(1, &["other"]))
        .await;
    assert_eq!(tampered.error(), "no_matching_signature");
    let ok = receiver.post(&as_refs(&signed), body).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keyring_accepts_both_secrets_until_the_old_one_expires() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let old_secret = SigningSecret::generate();
    let new_secret = SigningSecret::generate();
    // A file rotated an hour ago with a 24 h overlap: both in force.
    let mut overlapping = SignatureFile::new(
        "wh_1",
        "CRM sync",
        &Scheme::default(),
        &old_secret,
        now - 86_400,
    );
    overlapping.rotate(&new_secret, now - 3600, 86_400);
    // The same rotation with a 10 minute overlap, so the old secret has expired.
    let mut expired = SignatureFile::new(
        "wh_1",
        "CRM sync",
        &Scheme::default(),
        &old_secret,
        now - 86_400,
    );
    expired.rotate(&new_secret, now - 3600, 600);

    let body = envelope(7, &["rotation"]);
    let signed_old = Keyring::single(old_secret).sign_headers("msg_o", now, body.as_bytes());
    let signed_new = Keyring::single(new_secret).sign_headers("msg_n", now, body.as_bytes());

    let file_keyring = |file: &SignatureFile| {
        SignatureFile::from_json(file.to_json_pretty().as_bytes())
            .unwrap()
            .keyring()
            .unwrap()
    };
    std::fs::create_dir_all(dir.path().join("during")).unwrap();
    std::fs::create_dir_all(dir.path().join("after")).unwrap();
    let during = start(
        &dir.path().join("during"),
        Authentication::Signature(vec![file_keyring(&overlapping)]),
    )
    .await;
    assert_eq!(
        during
            .post(&as_refs(&signed_old), body.clone())
            .await
            .status,
        StatusCode::OK
    );
    let second = during.post(&as_refs(&signed_new), body.clone()).await;
    assert_eq!(second.json()["duplicates"], 1, "same event, other secret");
    during.stop().await.unwrap();

    let after = start(
        &dir.path().join("after"),
        Authentication::Signature(vec![file_keyring(&expired)]),
    )
    .await;
    let refused = after.post(&as_refs(&signed_old), body.clone()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error(), "secret_expired");
    assert_eq!(
        after.post(&as_refs(&signed_new), body).await.status,
        StatusCode::OK
    );
    after.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_hmac_scheme_next_to_standard_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let hmac_file = br#"{"version":1,"webhookId":"wh_2","webhookName":"legacy","scheme":"body-hmac-sha256",
        "algorithm":"HMAC-SHA256","header":"X-ALM-Signature","encoding":"hex","prefix":"sha256=",
        "secrets":[{"secret":"a-plain-shared-secret-of-some-length","createdAt":"2026-11-27T10:00:00Z","expiresAt":null}]}"#;
    let hmac = SignatureFile::from_json(hmac_file)
        .unwrap()
        .keyring()
        .unwrap();
    let standard = Keyring::single(SigningSecret::generate());
    let receiver = start(
        dir.path(),
        Authentication::Signature(vec![standard.clone(), hmac.clone()]),
    )
    .await;
    let body = envelope(3, &["h"]);
    let hmac_headers = hmac.sign_headers("unused", unix_now(), body.as_bytes());
    assert_eq!(hmac_headers[0].0, "x-alm-signature");
    assert!(hmac_headers[0].1.starts_with("sha256="));
    let ok = receiver.post(&as_refs(&hmac_headers), body.clone()).await;
    assert_eq!(ok.status, StatusCode::OK);
    let ok = receiver
        .post(
            &as_refs(&standard.sign_headers("m", unix_now(), body.as_bytes())),
            body.clone(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let bad = receiver
        .post(&[("x-alm-signature", "sha256=00ff")], body)
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    receiver.stop().await.unwrap();
}
