//! Text a target chooses cannot forge what the sender's operator sees: the first bytes of an
//! answer, kept with each attempt, are shown by `deliveries show` with their terminal controls
//! and invisible characters escaped (`\u{1b}`), as `--json` writes them as JSON escapes; a
//! replay's lines about the requests that were not acknowledged too.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::endpoint::{FakeEndpoint, Reply};

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// An answer that would retitle the terminal, clear it (a C1 CSI), and reverse what follows.
const HOSTILE: &str = "ok\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}DENIAL\u{ad}";

/// How it must be shown on a terminal.
const SHOWN: &str = r"ok\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}DENIAL\u{ad}";

/// Whether `text` holds one of the hostile characters itself.
fn holds_raw_control(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{9b}' | '\u{202e}' | '\u{ad}'))
}

/// `sender --state sqlite:DB ARGS`, in a blocking thread so the endpoint keeps answering.
async fn sender(db: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(SENDER);
    command
        .arg("--state")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env("RUST_LOG", "warn");
    tokio::task::spawn_blocking(move || command.output().expect("run sender"))
        .await
        .expect("joined")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn hostile_reply(status: u16) -> Reply {
    Reply {
        body: HOSTILE.to_owned(),
        ..Reply::status(status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_show_escapes_what_the_target_answered() {
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(hostile_reply(200));
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let url = endpoint.url();
    let added = sender(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "a",
            "--url",
            &url,
            "--events",
            "COURSE_COMPLETED",
        ],
    )
    .await;
    assert!(added.status.success(), "{added:?}");
    let triggered = sender(&db, &["trigger", "COURSE_COMPLETED"]).await;
    assert!(triggered.status.success(), "{triggered:?}");

    let list: Value = serde_json::from_str(&stdout(
        &sender(&db, &["deliveries", "list", "--json"]).await,
    ))
    .expect("JSON");
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let text = stdout(&sender(&db, &["deliveries", "show", &id]).await);
    assert!(!holds_raw_control(&text), "{text:?}");
    assert!(text.contains(SHOWN), "{text}");

    let json = stdout(&sender(&db, &["deliveries", "show", &id, "--json"]).await);
    assert!(!holds_raw_control(&json), "{json:?}");
    let shown: Value = serde_json::from_str(&json).expect("still JSON");
    assert_eq!(
        shown["attemptLog"][0]["responseHead"], HOSTILE,
        "same value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_escapes_the_answers_of_what_was_not_acknowledged() {
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(hostile_reply(500));
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("envelopes.jsonl");
    std::fs::write(
        &source,
        r#"{"accountId":1010,"events":[{"eventId":"r1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-27T10:00:00.000Z","data":{"userId":1}}]}"#
            .to_owned()
            + "\n",
    )
    .expect("write");
    let to = endpoint.url();
    let source = source.display().to_string();
    let db = dir.path().join("sender.db");
    let output = sender(&db, &["replay", &source, "--to", &to]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(!holds_raw_control(&text), "{text:?}");
    assert!(
        text.contains("not acknowledged: ") && text.contains(&format!("500 {SHOWN}")),
        "{text}"
    );
    let output = sender(&db, &["--json", "replay", &source, "--to", &to]).await;
    let json = stdout(&output);
    assert!(!holds_raw_control(&json), "{json:?}");
    let summary: Value = serde_json::from_str(&json).expect("still JSON");
    assert_eq!(summary["acknowledged"], 0, "{summary}");
}
