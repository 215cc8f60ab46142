//! `sender run` as a user stops it: Ctrl-C (SIGINT) while a delivery is in flight. The
//! attempt finishes and is recorded, the worker says it stopped, and it exits 0 with nothing
//! on standard output beyond its ready line. (SIGTERM is tested in `cli`.)

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::endpoint::{FakeEndpoint, Reply};
use crate::support::logged::Logged;

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

fn state_arg(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}

/// Runs `sender --state DB ARGS` to success.
async fn sender(db: &Path, args: &[&str]) -> Output {
    super::run_sender(&state_arg(db), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_cleanly_on_sigint_after_recording_the_attempt_in_flight() {
    let endpoint = FakeEndpoint::start().await;
    // Slow enough that the signal arrives while the request is in flight.
    endpoint.answer(Reply::ok().delayed(Duration::from_millis(500)));
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let url = endpoint.url();
    sender(
        &db,
        &[
            "webhooks", "add", "--name", "crm", "--url", &url, "--events", "all",
        ],
    )
    .await;
    let mut run = Logged::spawn(
        Command::new(SENDER)
            .args(["--state", &state_arg(&db), "run", "--poll-interval", "20ms"])
            .env("RUST_LOG", "info"),
    );
    let ready = run
        .wait_for_line("sender run: working the queue", Duration::from_secs(15))
        .await;
    sender(
        &db,
        &["trigger", "COURSE_ENROLLMENT", "--enqueue-only", "--json"],
    )
    .await;
    endpoint.wait_for(1, Duration::from_secs(15)).await;

    run.signal("INT");
    let status = run.wait_exit(Duration::from_secs(10)).await;
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(
        status.code(),
        Some(0),
        "exit 0 after SIGINT, not killed by it: {status:?}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout,
        format!("{ready}\n"),
        "only the ready line on stdout"
    );
    assert!(stderr.contains("sender run: stopped"), "{stderr}");
    for alarming in ["ERROR", "error:", "panicked"] {
        assert!(!stderr.contains(alarming), "{alarming} in: {stderr}");
    }

    // The request in flight was answered and recorded before the exit: nothing is left to
    // send twice.
    let list = sender(&db, &["deliveries", "list", "--json"]).await;
    let rows: Value = serde_json::from_slice(&list.stdout).expect("JSON rows");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["state"].as_str(), rows[0]["attempts"].as_u64()),
        (Some("delivered"), Some(1)),
        "{rows:?}"
    );
    assert_eq!(endpoint.received().len(), 1);
}

#[test]
fn unreadable_certificates_stop_run_and_trigger_at_start_not_the_deliveries() {
    // A broken CA file is the operator's to fix: exit 2 before anything is sent, rather than
    // failed deliveries that would disable the customer's https webhook after retention.
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let state = state_arg(&db);
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut command = Command::new(SENDER);
        command.arg("--state").arg(&state).args(args);
        for (name, value) in envs {
            command.env(name, value);
        }
        command.output().expect("run sender")
    };
    let added = run(
        &[
            "webhooks",
            "add",
            "--name",
            "crm",
            "--url",
            "https://crm.example/hook",
            "--events",
            "all",
        ],
        &[],
    );
    assert!(added.status.success(), "{added:?}");
    let missing = dir.path().join("missing-ca.pem");
    let missing = missing.to_str().expect("utf8");
    for (args, envs) in [
        (vec!["run", "--ca-file", missing], vec![]),
        (vec!["run"], vec![("SSL_CERT_FILE", missing)]),
        (
            vec!["trigger", "COURSE_ENROLLMENT"],
            vec![("SSL_CERT_FILE", missing)],
        ),
    ] {
        let output = run(&args, &envs);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("missing-ca.pem"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing started: {output:?}");
    }
}

#[test]
fn trigger_says_who_delivers_when_another_worker_holds_the_webhook() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let state = state_arg(&db);
    let run = |args: &[&str]| {
        Command::new(SENDER)
            .arg("--state")
            .arg(&state)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run sender")
    };
    let added = run(&[
        "webhooks",
        "add",
        "--name",
        "crm",
        "--url",
        "http://127.0.0.1:9/hook",
        "--events",
        "all",
        "--json",
    ]);
    assert!(added.status.success(), "{added:?}");
    let id = serde_json::from_slice::<Value>(&added.stdout).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let connection = rusqlite::Connection::open(&db).expect("open");
    for (holder, expected) in [
        ("run/pid:1:x", "`sender run` (run/pid:1:x) delivers it"),
        (
            "trigger/pid:1:y",
            "another `sender trigger` (trigger/pid:1:y) is delivering to this webhook",
        ),
    ] {
        // A live-looking lease for an hour (no pid space recorded: judged by its expiry).
        connection
            .execute(
                "INSERT INTO leases (webhook_id, owner, pid, expires_at_ms) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (webhook_id) DO UPDATE SET owner = excluded.owner",
                rusqlite::params![id, holder, verify::unix_now_ms() + 3_600_000],
            )
            .expect("lease");
        let output = run(&["trigger", "COURSE_ENROLLMENT"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout.contains(expected), "{stdout}");
    }
}
