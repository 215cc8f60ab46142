//! One receiver in front of several vendors: signature files of every scheme at once, over
//! real HTTP to the real program, and `receiver check` naming what is wrong for each scheme.

use std::path::Path;

use http::StatusCode;
use verify::{unix_now, CaptureRecord, Keyring, Scheme, SignatureFile, Verdict};

use crate::support::receiver::{envelope, post, run_cli, Process};

/// A sender-side file (secret keys included) of `scheme` and the receiver-side copy written
/// to `dir`, whose path is returned.
fn files(dir: &Path, name: &str, v1a: bool) -> (SignatureFile, String) {
    let scheme = Scheme::from_name(name).unwrap();
    let key: verify::Key = if v1a {
        verify::ed25519::SecretKey::generate().into()
    } else {
        scheme.generate_secret().into()
    };
    let sender = SignatureFile::with_key("wh_1", name, &scheme, key, unix_now() - 60);
    let receiver = sender.for_receiver().unwrap();
    if v1a {
        let text = receiver.to_json_pretty();
        assert!(text.contains("whpk_") && !text.contains("whsk_"), "{text}");
    }
    let path = dir.join(format!("{name}-{v1a}.json"));
    std::fs::write(&path, receiver.to_json_pretty()).unwrap();
    (sender, path.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_accepts_every_scheme_at_once_and_refuses_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let mut senders = Vec::new();
    let mut args = vec![
        "listen".to_owned(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--store".into(),
        format!("sqlite:{}", dir.path().join("r.db").display()),
        "--output".into(),
        "quiet".into(),
    ];
    for (name, v1a) in [
        ("standard-webhooks", true),
        ("svix", false),
        ("github", false),
        ("shopify", false),
        ("stripe", false),
        ("slack", false),
        ("body-hmac-sha256", false),
    ] {
        let (sender, path) = files(dir.path(), name, v1a);
        senders.push(sender);
        args.extend(["--signature-file".to_owned(), path]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = Process::spawn(&args, &[]);
    for (index, sender) in senders.iter().enumerate() {
        let keyring = sender.keyring().unwrap();
        let body = envelope(1, &[&format!("e{index}")]);
        let signed = keyring.sign_headers(&format!("msg_{index}"), unix_now(), body.as_bytes());
        let headers: Vec<(&str, &str)> = signed
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = post(process.addr, "/webhook", &headers, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            sender.scheme,
            reply.error()
        );
        let tampered = body.replace("\"accountId\":1", "\"accountId\":2");
        let reply = post(process.addr, "/webhook", &headers, tampered).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", sender.scheme);
        assert_eq!(reply.error(), "no_matching_signature", "{}", sender.scheme);
    }
    process.kill();
}

/// A capture line received at `at_secs`.
fn capture(headers: Vec<(String, String)>, body: &str, at_secs: i64) -> String {
    CaptureRecord {
        received_at_ms: at_secs * 1000,
        method: "POST".into(),
        path: "/webhook".into(),
        headers,
        body: body.as_bytes().to_vec(),
        verdict: Verdict::Refused,
        reason: None,
    }
    .to_json_line()
}

fn check(dir: &Path, line: String, file: &str) -> String {
    let path = dir.join("capture.jsonl");
    std::fs::write(&path, line + "\n").unwrap();
    let path = path.display().to_string();
    let (code, stdout, stderr) = run_cli(&["check", &path, "--signature-file", file], &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    stdout
}

fn assert_says(stdout: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}

#[test]
fn check_explains_each_scheme_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let body = envelope(7, &["x"]);

    // GitHub signature written in base64 instead of hex.
    let (github, github_file) = files(dir.path(), "github", false);
    let secret = github.keyring().unwrap().entries()[0]
        .key
        .hmac()
        .unwrap()
        .clone();
    let base64 =
        verify::Encoding::Base64.encode(&verify::signature::body_tag(&secret, body.as_bytes()));
    let line = capture(
        vec![("x-hub-signature-256".into(), format!("sha256={base64}"))],
        &body,
        now,
    );
    assert_says(
        &check(dir.path(), line, &github_file),
        &[
            "malformed_signature",
            "x-hub-signature-256 is base64 but the signature file says hex",
        ],
    );

    // A Stripe request checked with the GitHub file: the headers of another scheme.
    let (stripe, stripe_file) = files(dir.path(), "stripe", false);
    let stripe_headers = stripe
        .keyring()
        .unwrap()
        .sign_headers("m", now, body.as_bytes());
    let line = capture(stripe_headers.clone(), &body, now);
    assert_says(
        &check(dir.path(), line, &github_file),
        &[
            "missing_header:x-hub-signature-256",
            "carries the headers of stripe",
        ],
    );

    // A Stripe request whose signer base64-decoded the whsec_ secret, as Standard Webhooks does.
    let text = stripe.secrets[0].secret.clone();
    let decoded = verify::SigningSecret::parse(&text).unwrap();
    let wrong = Keyring::new(
        Scheme::from_name("stripe").unwrap(),
        vec![verify::KeyEntry::new(decoded)],
    );
    let line = capture(wrong.sign_headers("m", now, body.as_bytes()), &body, now);
    assert_says(
        &check(dir.path(), line, &stripe_file),
        &[
            "no_matching_signature",
            "base64-decodes the whsec_ text",
            "stripe uses it byte for byte",
        ],
    );

    // A Slack request replayed an hour later: only the time is off.
    let (slack, slack_file) = files(dir.path(), "slack", false);
    let line = capture(
        slack
            .keyring()
            .unwrap()
            .sign_headers("m", now - 3600, body.as_bytes()),
        &body,
        now,
    );
    assert_says(
        &check(dir.path(), line, &slack_file),
        &["timestamp_too_old:3600", "only the time is off"],
    );

    // A v1a request whose body was pretty-printed after signing, checked with the public key.
    let (v1a, v1a_file) = files(dir.path(), "standard-webhooks", true);
    let signed = v1a
        .keyring()
        .unwrap()
        .sign_headers("m", now, body.as_bytes());
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let line = capture(signed, &pretty, now);
    assert_says(
        &check(dir.path(), line, &v1a_file),
        &["no_matching_signature", "whitespace differs", "DOES verify"],
    );
}
