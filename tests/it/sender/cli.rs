//! The `sender` program as a user runs it: registrations, validation, exit codes, secrets
//! kept out of output, the signature file's mode, `webhooks test`, `trigger`, `deliveries`,
//! `sign`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::on_each_store;
use serde_json::Value;

use super::Harness;
use crate::support::endpoint::{refused_addr, FakeEndpoint, Reply};

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

fn sender(state: &Path, args: &[&str]) -> Output {
    sender_at(&format!("sqlite:{}", state.display()), args)
}

/// `sender --state LOCATION ARGS` (a `sqlite:` path or a `postgres://` URL).
fn sender_at(location: &str, args: &[&str]) -> Output {
    Command::new(SENDER)
        .arg("--state")
        .arg(location)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SENDER_BASIC_PASSWORD")
        .output()
        .expect("run sender")
}

/// Runs in a blocking thread so the fake endpoint in this runtime can answer.
async fn sender_async(location: &str, args: &[&str]) -> Output {
    let location = location.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sender_at(&location, &args)
    })
    .await
    .expect("joined")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn json(output: Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_lifecycle_validation_and_the_limit_of_five(harness: Harness) {
    let db = harness.location.clone();
    let sender = |location: &String, args: &[&str]| sender_at(location, args);
    let added = json(sender(
        &db,
        &[
            "webhooks",
            "add",
            "--json",
            "--name",
            "CRM sync",
            "--url",
            "http://127.0.0.1:9/hook",
            "--events",
            "COURSE_ENROLLMENT,COURSE_COMPLETED",
            "--auth",
            "basic",
            "--username",
            "crm",
            "--password",
            "hunter22",
        ],
    ));
    let id = added["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("wh_"), "{id}");
    assert_eq!(added["auth"], "basic");
    assert_eq!(
        added["events"],
        serde_json::json!(["COURSE_ENROLLMENT", "COURSE_COMPLETED"])
    );
    if let Some(path) = db.strip_prefix("sqlite:") {
        let mode = std::fs::metadata(path).expect("db").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state holds secrets");
    }

    for n in 2..=5 {
        let text = ok(sender(
            &db,
            &[
                "webhooks",
                "add",
                "--name",
                &format!("hook {n}"),
                "--url",
                "https://example.com/h",
                "--events",
                "all",
            ],
        ));
        assert!(text.trim().starts_with("wh_"), "{text}");
    }
    let sixth = sender(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "six",
            "--url",
            "http://x/h",
            "--events",
            "all",
        ],
    );
    assert_eq!(sixth.status.code(), Some(2));
    assert!(
        stderr(&sixth).contains("the most allowed is 5"),
        "{}",
        stderr(&sixth)
    );

    let list = json(sender(&db, &["webhooks", "list", "--json"]));
    assert_eq!(list.as_array().expect("array").len(), 5);
    let text_list = ok(sender(&db, &["webhooks", "list"]));
    for shown in [list.to_string(), text_list] {
        assert!(
            !shown.contains("hunter22"),
            "secrets stay out of list: {shown}"
        );
    }

    // Retire, activate, edit, show, delete.
    ok(sender(&db, &["webhooks", "retire", &id]));
    assert_eq!(
        json(sender(&db, &["webhooks", "show", &id, "--json"]))["status"],
        "retired"
    );
    ok(sender(&db, &["webhooks", "activate", &id]));
    let edited = json(sender(
        &db,
        &[
            "webhooks",
            "edit",
            &id,
            "--json",
            "--events",
            "all",
            "--description",
            "d",
        ],
    ));
    assert_eq!(
        (edited["events"][0].as_str(), edited["status"].as_str()),
        (Some("all"), Some("active"))
    );
    assert_eq!(
        edited["username"], "crm",
        "edit keeps what it is not told to change"
    );
    ok(sender(&db, &["webhooks", "delete", &id]));
    let missing = sender(&db, &["webhooks", "show", &id]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).starts_with("error: no webhook"),
        "{}",
        stderr(&missing)
    );
}
}

#[test]
fn bad_input_is_refused_with_status_2_and_an_actionable_message() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let check = |args: &[&str], expected: &str| {
        let output = sender(&db, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert_eq!(
            message.matches("error:").count(),
            1,
            "printed once: {message}"
        );
    };
    let add = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "webhooks",
            "add",
            "--name",
            "n",
            "--url",
            "http://127.0.0.1:9/h",
            "--events",
            "all",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let run = |extra: &[&str], expected: &str| {
        let args = add(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        check(&refs, expected);
    };
    check(
        &[
            "webhooks",
            "add",
            "--name",
            "n",
            "--url",
            "ftp://h/x",
            "--events",
            "all",
        ],
        "is not http or https",
    );
    check(
        &[
            "webhooks",
            "add",
            "--name",
            "n",
            "--url",
            "http://h/x",
            "--events",
            "COURSE_ENROLMENT",
        ],
        "did you mean COURSE_ENROLLMENT",
    );
    run(
        &["--auth", "basic", "--username", "u"],
        "needs a non-empty --password",
    );
    run(&["--scheme", "body-hmac-sha256"], "add --auth signature");
    run(
        &["--auth", "basic", "--username", "a:b", "--password", "p"],
        "must not contain ':'",
    );
    check(&["trigger", "NOT_AN_EVENT"], "unknown event");
    check(
        &["trigger", "COURSE_ENROLLMENT", "--set", "novalue"],
        "expected FIELD=VALUE",
    );
    for (state, expected) in [
        ("mysql://u:s3cret@db/x", "unsupported store"),
        (
            "postgres://u:s3cret@db:notaport/x",
            "invalid PostgreSQL URL",
        ),
        (
            // Nothing listens there: a configuration problem, told without the password.
            "postgres://u:s3cret@127.0.0.1:1/x",
            "cannot open the state database postgres://u:***@127.0.0.1:1/x",
        ),
    ] {
        let refused = Command::new(SENDER)
            .args(["--state", state, "webhooks", "list"])
            .output()
            .expect("run");
        assert_eq!(refused.status.code(), Some(2), "{state}");
        let text = stderr(&refused);
        assert!(
            text.contains(expected) && !text.contains("s3cret"),
            "{text}"
        );
    }
    check(
        &["deliveries", "list", "--status", "lost"],
        "use pending, delivered or expired",
    );
    check(&["webhooks", "frobnicate"], "unrecognized subcommand");
}

#[test]
fn signature_file_is_written_0600_rotates_and_signs_curl_ready_headers() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let id = ok(sender(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "CRM",
            "--url",
            "http://127.0.0.1:9/h",
            "--events",
            "all",
            "--auth",
            "signature",
        ],
    ))
    .trim()
    .to_owned();
    let file = dir.path().join("sig.json");
    std::fs::write(&file, "old content, wider mode").expect("pre-existing file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    ok(sender(
        &db,
        &[
            "webhooks",
            "signature",
            &id,
            "--out",
            file.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(
        std::fs::metadata(&file).expect("m").permissions().mode() & 0o777,
        0o600
    );
    // Never onto the state itself (or its write-ahead log), under any spelling: that would
    // replace every registration with one signature file.
    for onto in [db.clone(), dir.path().join("./sender.db-wal")] {
        let refused = sender(
            &db,
            &[
                "webhooks",
                "signature",
                &id,
                "--out",
                onto.to_str().expect("utf8"),
            ],
        );
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("choose another file"),
            "{}",
            stderr(&refused)
        );
    }
    assert!(
        ok(sender(&db, &["webhooks", "list"])).contains(&id),
        "the state is whole"
    );
    let signature =
        verify::SignatureFile::from_json(&std::fs::read(&file).expect("read")).expect("valid file");
    assert_eq!(signature.webhook_id, id);
    let secret = signature.secrets[0].secret.clone();
    let shown = ok(sender(&db, &["webhooks", "list", "--json"]))
        + &ok(sender(&db, &["webhooks", "show", &id]));
    assert!(!shown.contains(&secret), "{shown}");

    // An overlap past the year 9999 cannot be written in the file: refused, nothing rotated.
    let too_long = sender(
        &db,
        &["webhooks", "rotate-secret", &id, "--overlap", "3000000d"],
    );
    assert_eq!(too_long.status.code(), Some(2), "{too_long:?}");
    assert!(stderr(&too_long).contains("past the year 9999"));
    ok(sender(
        &db,
        &["webhooks", "rotate-secret", &id, "--overlap", "1h"],
    ));
    ok(sender(
        &db,
        &[
            "webhooks",
            "signature",
            &id,
            "--out",
            file.to_str().expect("utf8"),
        ],
    ));
    let rotated =
        verify::SignatureFile::from_json(&std::fs::read(&file).expect("read")).expect("valid");
    assert_eq!(rotated.secrets.len(), 2);
    assert_eq!(rotated.secrets[0].secret, secret);
    assert!(rotated.secrets[0].expires_at.is_some() && rotated.secrets[1].expires_at.is_none());

    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"accountId":1010,"events":[]}"#).expect("body");
    let signed = json(sender(
        &db,
        &[
            "sign",
            "--json",
            "--signature-file",
            file.to_str().expect("utf8"),
            "--id",
            "msg_fixed",
            body.to_str().expect("utf8"),
        ],
    ));
    let headers: Vec<(String, String)> =
        serde_json::from_value(signed["headers"].clone()).expect("pairs");
    rotated
        .keyring()
        .expect("keyring")
        .verify(&headers, br#"{"accountId":1010,"events":[]}"#)
        .expect("sign's headers verify");
    assert_eq!(
        headers[0],
        ("webhook-id".to_owned(), "msg_fixed".to_owned())
    );
    let curl = signed["curl"].as_str().expect("curl");
    assert!(
        curl.starts_with("curl ")
            && curl.contains("webhook-signature: v1,")
            && curl.contains("--data-binary @"),
        "{curl}"
    );
    let text = ok(sender(
        &db,
        &[
            "sign",
            "--signature-file",
            file.to_str().expect("utf8"),
            "--timestamp",
            "2026-11-28T00:00:00Z",
            body.to_str().expect("utf8"),
        ],
    ));
    assert!(text.contains("webhook-timestamp: 1795824000"), "{text}");
}

/// Every `--scheme`: the receiver's file verifies what `sender sign` prints (headers and a
/// curl line for each), a v1a receiver file holds only the public key and cannot sign, and a
/// rotation keeps the key kind.
#[test]
fn every_scheme_signs_and_the_receiver_file_verifies_it() {
    let dir = tempfile::tempdir().expect("dir");
    let body = dir.path().join("body.json");
    let bytes = br#"{"accountId":1010,"events":[]}"#;
    std::fs::write(&body, bytes).expect("body");
    let body = body.to_str().expect("utf8");
    for (index, (scheme, signature_header)) in [
        ("standard-webhooks", "webhook-signature: v1,"),
        ("standard-webhooks-v1a", "webhook-signature: v1a,"),
        ("svix", "svix-signature: v1,"),
        ("body-hmac-sha256", "x-alm-signature: "),
        ("github", "x-hub-signature-256: sha256="),
        ("shopify", "x-shopify-hmac-sha256: "),
        ("stripe", "stripe-signature: t="),
        ("slack", "x-slack-signature: v0="),
    ]
    .into_iter()
    .enumerate()
    {
        let db = dir.path().join(format!("sender-{index}.db"));
        let id = ok(sender(
            &db,
            &[
                "webhooks",
                "add",
                "--name",
                scheme,
                "--url",
                "http://127.0.0.1:9/h",
                "--events",
                "all",
                "--auth",
                "signature",
                "--scheme",
                scheme,
            ],
        ))
        .trim()
        .to_owned();
        ok(sender(
            &db,
            &["webhooks", "rotate-secret", &id, "--overlap", "1h"],
        ));
        let receiver_file = dir.path().join(format!("receiver-{index}.json"));
        let signing_file = dir.path().join(format!("signing-{index}.json"));
        let (receiver_path, signing_path) = (
            receiver_file.to_str().expect("utf8"),
            signing_file.to_str().expect("utf8"),
        );
        ok(sender(
            &db,
            &["webhooks", "signature", &id, "--out", receiver_path],
        ));
        ok(sender(
            &db,
            &[
                "webhooks",
                "signature",
                &id,
                "--signing",
                "--out",
                signing_path,
            ],
        ));
        let receiver = verify::SignatureFile::from_json(&std::fs::read(&receiver_file).expect("r"))
            .expect("receiver file");
        assert_eq!(receiver.secrets.len(), 2, "{scheme}: rotated");
        let signed = json(sender(
            &db,
            &["sign", "--json", "--signature-file", signing_path, body],
        ));
        let headers: Vec<(String, String)> =
            serde_json::from_value(signed["headers"].clone()).expect("pairs");
        let found = receiver
            .keyring()
            .expect("keyring")
            .verify(&headers, bytes)
            .unwrap_or_else(|error| panic!("{scheme}: {error}"));
        assert_eq!(
            found.key_index, 0,
            "{scheme}: both keys sign during the overlap"
        );
        let curl = signed["curl"].as_str().expect("curl");
        assert!(curl.contains(signature_header), "{scheme}: {curl}");
        let text = ok(sender(
            &db,
            &["sign", "--signature-file", signing_path, body],
        ));
        assert!(
            text.contains(signature_header) && text.contains("curl "),
            "{scheme}: {text}"
        );
        if scheme == "standard-webhooks-v1a" {
            let receiver_text = std::fs::read_to_string(&receiver_file).expect("r");
            assert!(
                receiver_text.matches("whpk_").count() == 2 && !receiver_text.contains("whsk_"),
                "{receiver_text}"
            );
            let refused = sender(&db, &["sign", "--signature-file", receiver_path, body]);
            assert_eq!(refused.status.code(), Some(2), "{refused:?}");
            assert!(
                stderr(&refused).contains("only verifies"),
                "{}",
                stderr(&refused)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_test_reports_status_latency_and_an_auth_hint() {
    let endpoint = FakeEndpoint::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite:{}", dir.path().join("sender.db").display());
    let url = endpoint.url();
    let id = ok(sender_async(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "CRM",
            "--url",
            &url,
            "--events",
            "LEARNER_PROGRESS",
            "--auth",
            "basic",
            "--username",
            "crm",
            "--password",
            "pw",
        ],
    )
    .await)
    .trim()
    .to_owned();
    let report = json(sender_async(&db, &["webhooks", "test", &id, "--json"]).await);
    assert_eq!(report["status"], 200);
    assert!(report["latencyMs"].is_u64());
    let received = endpoint.received();
    let body = verify::parse_envelope(&received[0].body).expect("realistic envelope");
    assert_eq!(
        body.events[0].event_name, "LEARNER_PROGRESS",
        "the webhook's first event"
    );
    verify::BasicCredentials::new("crm", "pw")
        .expect("c")
        .verify(&received[0].headers)
        .expect("basic");

    endpoint.answer(Reply::status(401).header("www-authenticate", "Basic realm=\"webhooks\""));
    let refused = sender_async(&db, &["webhooks", "test", &id]).await;
    assert_eq!(refused.status.code(), Some(1));
    let text = stdout(&refused);
    assert!(
        text.contains("401") && text.contains("hint:") && text.contains("credentials"),
        "{text}"
    );

    let closed = format!("http://{}/webhook", refused_addr());
    let down = sender_async(
        &db,
        &[
            "webhooks",
            "test",
            "--url",
            &closed,
            "--connect-timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(down.status.code(), Some(1));
    assert!(stdout(&down).contains("refused"), "{}", stdout(&down));

    // `--url` with a signature file alone signs (the method follows from the flag), and the
    // report carries the answer's first bytes.
    endpoint.answer(Reply::ok());
    let secret = verify::SigningSecret::generate();
    let file = verify::SignatureFile::new("wh_x", "x", &verify::Scheme::default(), &secret, 0);
    let file_path = dir.path().join("sig.json");
    std::fs::write(&file_path, file.to_json_pretty()).expect("write");
    let signed = json(
        sender_async(
            &db,
            &[
                "webhooks",
                "test",
                "--url",
                &url,
                "--signature-file",
                &file_path.display().to_string(),
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(signed["status"], 200);
    assert_eq!(signed["response"], "{\"status\":200}");
    let last = endpoint.received().pop().expect("a request");
    verify::Keyring::single(secret)
        .verify(&last.headers, &last.body)
        .expect("signed with the file's secret");
    // A username RFC 7617 forbids is refused before anything is sent.
    let colon = sender_async(
        &db,
        &[
            "webhooks",
            "test",
            "--url",
            &url,
            "--username",
            "a:b",
            "--password",
            "p",
        ],
    )
    .await;
    assert_eq!(
        colon.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&colon.stderr)
    );
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_delivers_itself_and_deliveries_show_the_attempts(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.script([Reply::status(500)]);
    let db = harness.location.clone();
    let url = endpoint.url();
    ok(sender_async(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "a",
            "--url",
            &url,
            "--events",
            "COURSE_COMPLETED,COURSE_COMPLETED_BATCH",
        ],
    )
    .await);
    let fast = ["--retry-initial", "20ms", "--poll-interval", "10ms"];
    let mut args = vec![
        "trigger",
        "COURSE_COMPLETED",
        "--count",
        "3",
        "--account",
        "77",
        "--set",
        "userId=42",
        "--data",
        r#"{"hasPassed":false}"#,
        "--json",
    ];
    args.extend(fast);
    let result = json(sender_async(&db, &args).await);
    assert_eq!(result["webhooks"][0]["delivered"], 3);
    let mut args = vec![
        "trigger",
        "COURSE_COMPLETED_BATCH",
        "--count",
        "5",
        "--time-style",
        "epoch-ms",
    ];
    args.extend(fast);
    ok(sender_async(&db, &args).await);

    let received = endpoint.received();
    assert_eq!(
        received.len(),
        5,
        "500 + retry, 2 more real-time, 1 batch of 5"
    );
    let first = verify::parse_envelope(&received[0].body).expect("envelope");
    assert_eq!(first.account_id, 77);
    assert!(first.events[0].data.get().contains("\"userId\":42"));
    assert!(first.events[0].data.get().contains("\"hasPassed\":false"));
    let batch = verify::parse_envelope(&received[4].body).expect("batch");
    assert_eq!(batch.events.len(), 5);
    assert!(matches!(
        batch.events[0].timestamp,
        verify::EventTime::EpochMillis(_)
    ));

    let list = json(sender_async(&db, &["deliveries", "list", "--json"]).await);
    let rows = list.as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    let retried = rows
        .iter()
        .find(|r| r["attempts"] == 2)
        .expect("retried row");
    let id = retried["id"].as_str().expect("id");
    let shown = json(sender_async(&db, &["deliveries", "show", id, "--json"]).await);
    let statuses: Vec<i64> = shown["attemptLog"]
        .as_array()
        .expect("log")
        .iter()
        .map(|a| a["status"].as_i64().expect("status"))
        .collect();
    assert_eq!(statuses, [500, 200]);
    assert_eq!(
        shown["body"].as_str().map(str::as_bytes),
        Some(&received[0].body[..])
    );
    let text = ok(sender_async(&db, &["deliveries", "show", id]).await);
    assert!(text.contains("#1") && text.contains("500"), "{text}");
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_leaves_work_to_a_running_worker_which_stops_cleanly_on_sigterm(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    let db = harness.location.clone();
    let url = endpoint.url();
    ok(sender_async(
        &db,
        &[
            "webhooks", "add", "--name", "a", "--url", &url, "--events", "all",
        ],
    )
    .await);
    let mut run = crate::sender::Spawned::spawn(
        Command::new(SENDER)
            .args([
                "--state",
                &db,
                "run",
                "--poll-interval",
                "20ms",
                "--batch-interval",
                "200ms",
            ])
            .env("RUST_LOG", "warn"),
    );
    let ready = run.next_line(Duration::from_secs(15)).await;
    assert!(
        ready.starts_with("sender run: working the queue"),
        "{ready}"
    );
    ok(sender_async(
        &db,
        &[
            "trigger",
            "COURSE_ENROLLMENT",
            "--count",
            "4",
            "--enqueue-only",
        ],
    )
    .await);
    ok(sender_async(
        &db,
        &[
            "trigger",
            "LEARNER_PROGRESS",
            "--count",
            "3",
            "--enqueue-only",
        ],
    )
    .await);
    let received = endpoint.wait_for(5, Duration::from_secs(15)).await;
    assert_eq!(
        received.iter().map(|r| r.event_ids().len()).sum::<usize>(),
        7
    );
    // A self-delivering trigger while `run` works: whoever holds the lease delivers, once.
    ok(sender_async(&db, &["trigger", "COURSE_ENROLLMENT", "--count", "2"]).await);
    endpoint.wait_for(7, Duration::from_secs(15)).await;

    assert_eq!(crate::sender::send_signal(run.child.id(), "TERM"), 0);
    let status = run.wait(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "stopped cleanly after SIGTERM: {status:?}"
    );
    assert_eq!(endpoint.received().len(), 7);
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_triggers_share_one_queue_and_every_event_goes_once(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(Reply::ok().delayed(Duration::from_millis(2)));
    let db = harness.location.clone();
    let url = endpoint.url();
    ok(sender_async(
        &db,
        &[
            "webhooks", "add", "--name", "a", "--url", &url, "--events", "all",
        ],
    )
    .await);
    // Three self-delivering triggers at once: whoever holds the webhook's lease delivers; the
    // others leave their events to it, and none is stranded.
    let runs = (0..3).map(|n| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let seed = n.to_string();
            sender_at(
                &db,
                &[
                    "trigger",
                    "COURSE_ENROLLMENT",
                    "--count",
                    "20",
                    "--seed",
                    &seed,
                    "--json",
                ],
            )
        })
    });
    let mut expected: Vec<String> = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        let parsed = json(run.await.expect("joined"));
        expected.extend(
            parsed["eventIds"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_str().expect("id").to_owned()),
        );
    }
    let received = endpoint.wait_for(60, Duration::from_secs(20)).await;
    let mut seen: Vec<String> = received.iter().flat_map(|r| r.event_ids()).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "each of the 60 events once");
}}
