//! Environment variables alone configure `receiver` (SPEC section 3: each flag also reads
//! one): Basic credentials, TLS files, and forwarding with its timeouts, backoff and
//! re-signing. Each test sets no flag for the setting it checks, and checks an effect that
//! the default would not have. (`process` covers LISTEN, PATH, STORE, SIGNATURE_FILE, OUTPUT
//! and MAX_BODY.)

use std::time::{Duration, Instant};

use http::StatusCode;
use verify::{unix_now, BasicCredentials, Keyring, Scheme, SignatureFile, SigningSecret};

use super::tls::{make_certificate, post_tls};
use crate::support::receiver::{
    envelope, free_addr, post, raw_exchange, run_cli, wait_until, FakeApp, Process,
};

fn store_in(dir: &std::path::Path) -> String {
    format!("sqlite:{}", dir.join("r.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_from_the_environment_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let process = Process::spawn(
        &["listen", "--listen", "127.0.0.1:0", "--output", "quiet"],
        &[
            ("RECEIVER_STORE", &store),
            ("RECEIVER_BASIC_USER", "crm"),
            ("RECEIVER_BASIC_PASSWORD", "env-pa55word"),
        ],
    );
    let body = envelope(1, &["env-basic"]);
    let anonymous = post(process.addr, "/webhook", &[], body.clone()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.error(), "basic_missing");
    assert_eq!(
        anonymous.headers["www-authenticate"],
        "Basic realm=\"webhooks\""
    );
    let wrong = BasicCredentials::new("crm", "guess").unwrap();
    let reply = post(
        process.addr,
        "/webhook",
        &[("authorization", &wrong.authorization_header())],
        body.clone(),
    )
    .await;
    assert_eq!(reply.error(), "basic_mismatch");
    let right = BasicCredentials::new("crm", "env-pa55word").unwrap();
    let reply = post(
        process.addr,
        "/webhook",
        &[("authorization", &right.authorization_header())],
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    process.kill();

    // The auth method shows on every stored event.
    let (code, stdout, stderr) =
        run_cli(&["events", "list", "--json"], &[("RECEIVER_STORE", &store)]);
    assert_eq!(code, Some(0), "{stderr}");
    let events: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(events[0]["auth"], "basic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_files_from_the_environment_serve_https() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = make_certificate(dir.path());
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let store = store_in(dir.path());
    let process = Process::spawn(
        &["listen", "--listen", "127.0.0.1:0", "--output", "quiet"],
        &[
            ("RECEIVER_STORE", &store),
            ("RECEIVER_TLS_CERT", &cert),
            ("RECEIVER_TLS_KEY", &key),
        ],
    );
    assert_eq!(
        process.first_line,
        format!("listening on https://{}/webhook", process.addr)
    );
    let (status, answer) = post_tls(process.addr, &certificate, envelope(1, &["env-tls"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["stored"], 1);
    // Plain HTTP gets no HTTP answer on that port.
    let plain = raw_exchange(process.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1"), "{plain}");
    process.kill();
}

/// `events list --json`: the `forwarding` state of every event.
fn forwarding_states(store: &str) -> Vec<String> {
    let (code, stdout, stderr) = run_cli(&["events", "list", "--store", store, "--json"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["forwarding"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_settings_from_the_environment_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let app_secret = SigningSecret::generate();
    let app_file = SignatureFile::new("wh_app", "app", &Scheme::default(), &app_secret, unix_now());
    let app_file_path = dir.path().join("app.json");
    std::fs::write(&app_file_path, app_file.to_json_pretty()).unwrap();
    // The app answers, but slower than an attempt may last (the receiver bounds one by the
    // connect timeout plus the answer timeout: 250 ms here): every attempt times out.
    let app = FakeApp::start_at(free_addr(), 200).await;
    app.set_delay(Duration::from_millis(800));
    let forward_to = format!("http://{}/inbox", app.addr);
    // A second target, for progress only, in the same variable: targets are separated by
    // spaces there.
    let progress_app = FakeApp::start_at(free_addr(), 200).await;
    let targets = format!(
        "{forward_to} LEARNER_PROGRESS=http://{}/progress",
        progress_app.addr
    );
    let app_file_arg = app_file_path.display().to_string();
    let process = Process::spawn(
        &["listen", "--listen", "127.0.0.1:0", "--output", "quiet"],
        &[
            ("RECEIVER_STORE", &store),
            ("RECEIVER_FORWARD_TO", &targets),
            ("RECEIVER_FORWARD_SIGNATURE_FILE", &app_file_arg),
            ("RECEIVER_FORWARD_TIMEOUT", "150ms"),
            ("RECEIVER_FORWARD_RETRY_MIN", "20ms"),
            ("RECEIVER_FORWARD_RETRY_MAX", "20ms"),
            ("RECEIVER_FORWARD_CONNECT_TIMEOUT", "100ms"),
        ],
    );
    let body = envelope(7, &["env-forward"]);
    let reply = post(process.addr, "/webhook", &[], body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Three attempts within 1.5 s: with the default connect timeout (10 s), answer timeout
    // (30 s) or first retry delay (1 s) there would be one or two.
    let started = Instant::now();
    let retried = wait_until(Duration::from_millis(1500), || async {
        app.requests().len() >= 3
    })
    .await;
    assert!(
        retried,
        "{} attempts in {:?}",
        app.requests().len(),
        started.elapsed()
    );
    assert_eq!(forwarding_states(&store), ["pending"]);

    // The app now refuses at once: retries stay 20 ms apart (RECEIVER_FORWARD_RETRY_MAX), so
    // a second brings ten more; doubling from 20 ms would bring at most six.
    app.set_status(500);
    app.set_delay(Duration::ZERO);
    let before = app.requests().len();
    let started = Instant::now();
    let capped = wait_until(Duration::from_secs(1), || async {
        app.requests().len() >= before + 10
    })
    .await;
    assert!(
        capped,
        "{} attempts in {:?}",
        app.requests().len() - before,
        started.elapsed()
    );

    // The app accepts: the request is forwarded and marked so.
    app.set_status(200);
    let forwarded = wait_until(Duration::from_secs(10), || async {
        forwarding_states(&store) == ["forwarded"]
    })
    .await;
    assert!(forwarded, "{:?}", forwarding_states(&store));

    // Every attempt went to the path of RECEIVER_FORWARD_TO, byte for byte, and carried a
    // fresh signature of RECEIVER_FORWARD_SIGNATURE_FILE's secret.
    let keyring = Keyring::single(app_secret);
    for attempt in app.requests() {
        assert_eq!(attempt.path, "/inbox");
        assert_eq!(attempt.body, body.as_bytes());
        keyring
            .verify(&attempt.headers, &attempt.body)
            .expect("signed with the app's secret");
    }
    // The enrolment was for the first target only.
    let jobs = crate::support::forwarding::forward_list(&store, &[]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["target"], forward_to.as_str());
    assert!(progress_app.requests().is_empty());
    process.kill();
}
