//! The sender's secrets at rest (`--secret-key-file`), as an operator and a thief meet them,
//! on both stores: a key file made 0600 and never overwritten; Basic passwords and signing
//! secrets absent from the raw state (the SQL rows, and the SQLite file's bytes) once a key is
//! given, a password stored before the key included; deliveries still signed so that real
//! receivers accept them; a state without its key, or with another, refused with exit 2
//! naming the flag, never signing with garbage; a rotation to a new key after which the old
//! one no longer opens the state; a sealed value moved to another webhook does not open; and
//! the key's content in no output, debug logs included.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::on_each_store;

use crate::end_to_end::Receiver;
use crate::sender::Harness;

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// The Basic password: it must never be found in the raw state once a key is given.
const PASSWORD: &str = "correct-horse-PLAINTEXT-42";

/// `sender --state STATE [--secret-key-file KEY] ARGS`, debug logs on.
fn sender(state: &str, key: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(SENDER);
    command.args(["--state", state]);
    if let Some(key) = key {
        command.arg("--secret-key-file").arg(key);
    }
    command
        .args(args)
        .env("RUST_LOG", "debug")
        .env_remove("SENDER_SECRET_KEY_FILE")
        .env_remove("SENDER_BASIC_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn shown(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{}", shown(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// Exit 2 with an error that says `words`.
fn refused(output: &Output, words: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{}", shown(output));
    for word in words {
        assert!(stderr.contains(word), "{word:?} in {stderr}");
    }
    stderr
}

fn generate_key(state: &str, path: &Path) -> String {
    ok(sender(
        state,
        None,
        &["secret-key", "generate", "--out", path.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Every row of the webhooks and of the key record, as text, read with SQL beside the sender.
async fn raw_rows(harness: &Harness) -> String {
    if let Some(path) = harness.location.strip_prefix("sqlite:") {
        let db = rusqlite::Connection::open(path).unwrap();
        let mut text = String::new();
        for table in ["webhooks", "secret_key"] {
            let mut statement = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for column in 0..columns {
                    let value = row.get_ref(column).unwrap();
                    text.push_str(&format!("{:?}|", value.as_str().unwrap_or_default()));
                }
                text.push('\n');
            }
        }
        return text;
    }
    let (client, connection) = tokio_postgres::connect(&harness.location, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT w::text FROM sender_webhooks w UNION ALL SELECT k::text FROM sender_secret_key k",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0) + "\n")
        .collect()
}

/// What a thief with a copy of the state finds: the rows, and on SQLite the bytes of the file
/// and its write-ahead log (free pages included).
async fn stolen_state(harness: &Harness) -> String {
    let mut text = raw_rows(harness).await;
    if let Some(path) = harness.location.strip_prefix("sqlite:") {
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}

/// Runs SQL on the state beside the sender (`{webhooks}` stands for the table's name).
async fn execute(harness: &Harness, sql: &str) {
    if let Some(path) = harness.location.strip_prefix("sqlite:") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.execute_batch(&sql.replace("{webhooks}", "webhooks"))
            .unwrap();
        return;
    }
    let (client, connection) = tokio_postgres::connect(&harness.location, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&sql.replace("{webhooks}", "sender_webhooks"))
        .await
        .unwrap();
}

/// The `whsec_` secret of a signature file.
fn secret_of(signature_file: &Path) -> String {
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(signature_file).unwrap()).unwrap();
    let secret = file["secrets"][0]["secret"].as_str().unwrap();
    secret.strip_prefix("whsec_").unwrap().to_owned()
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_sign_correctly_and_move_to_a_new_key(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let state = harness.location.clone();
    let key = dir.path().join("sender.key");
    let key_text = generate_key(&state, &key);
    let mut outputs = Vec::new();

    // A key file is never overwritten: losing it loses the secrets.
    let again = sender(&state, None, &["secret-key", "generate", "--out", key.to_str().unwrap()]);
    refused(&again, &["exists already"]);
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim(), key_text);
    outputs.push(again);

    // A webhook registered before any key: its password is plain text in the state, which the
    // raw reading sees.
    let basic_receiver = Receiver::start(
        dir.path(),
        "basic",
        &["--basic-user", "crm", "--basic-password", PASSWORD],
    );
    let basic_url = basic_receiver.url();
    ok(sender(&state, None, &[
        "webhooks", "add", "--name", "CRM", "--url", &basic_url,
        "--events", "COURSE_ENROLLMENT", "--auth", "basic",
        "--username", "crm", "--password", PASSWORD,
    ]));
    assert!(raw_rows(&harness).await.contains(PASSWORD), "plain before the key");

    // The first command given the key seals it; a webhook added with the key is sealed from
    // the start.
    let listed = sender(&state, Some(&key), &["webhooks", "list"]);
    assert!(listed.status.success(), "{}", shown(&listed));
    outputs.push(listed);
    let signed_id = ok(sender(&state, Some(&key), &[
        "webhooks", "add", "--name", "LMS", "--url", "http://127.0.0.1:9/webhook",
        "--events", "COURSE_ENROLLMENT", "--auth", "signature",
    ]))
    .trim()
    .to_owned();
    let signature = dir.path().join("signature.json");
    ok(sender(&state, Some(&key), &[
        "webhooks", "signature", &signed_id, "--out", signature.to_str().unwrap(),
    ]));
    let secret = secret_of(&signature);
    let signed_receiver = Receiver::start(
        dir.path(),
        "signed",
        &["--signature-file", signature.to_str().unwrap()],
    );
    ok(sender(&state, Some(&key), &[
        "webhooks", "edit", &signed_id, "--url", &signed_receiver.url(),
    ]));
    let stolen = stolen_state(&harness).await;
    assert!(!stolen.contains(PASSWORD), "the password is sealed at rest");
    assert!(!stolen.contains(&secret), "the signing secret is sealed at rest");
    assert!(raw_rows(&harness).await.contains("sealed:v1:"));

    // Deliveries are signed as before: both real receivers accept and store them.
    let delivered = sender(&state, Some(&key), &["trigger", "COURSE_ENROLLMENT", "--count", "2"]);
    assert!(delivered.status.success(), "{}", shown(&delivered));
    outputs.push(delivered);
    assert_eq!((basic_receiver.count(), signed_receiver.count()), (2, 2));

    // Without the key, or with another one: a usage error naming the flag, nothing sent.
    let without = sender(&state, None, &["trigger", "COURSE_ENROLLMENT"]);
    refused(&without, &["sealed", "--secret-key-file", "SENDER_SECRET_KEY_FILE"]);
    outputs.push(without);
    let other = dir.path().join("other.key");
    let other_text = generate_key(&state, &other);
    let wrong = sender(&state, Some(&other), &["trigger", "COURSE_ENROLLMENT"]);
    refused(&wrong, &["--secret-key-file", "another key"]);
    outputs.push(wrong);
    assert_eq!((basic_receiver.count(), signed_receiver.count()), (2, 2));

    // Rotation: every secret moves to the new key in one step; the old key no longer opens
    // the state, the new one delivers, and the receivers' files stay valid.
    let new = dir.path().join("new.key");
    let new_text = generate_key(&state, &new);
    let rotated = sender(&state, Some(&key), &[
        "secret-key", "rotate", "--new-key-file", new.to_str().unwrap(),
    ]);
    let said = ok(rotated);
    assert!(said.contains("2 webhook(s)"), "{said}");
    let old = sender(&state, Some(&key), &["webhooks", "list"]);
    refused(&old, &["another key"]);
    outputs.push(old);
    let delivered = sender(&state, Some(&new), &["trigger", "COURSE_ENROLLMENT"]);
    assert!(delivered.status.success(), "{}", shown(&delivered));
    outputs.push(delivered);
    assert_eq!((basic_receiver.count(), signed_receiver.count()), (3, 3));
    let again = dir.path().join("signature-again.json");
    ok(sender(&state, Some(&new), &[
        "webhooks", "signature", &signed_id, "--out", again.to_str().unwrap(),
    ]));
    assert_eq!(secret_of(&again), secret);
    let stolen = stolen_state(&harness).await;
    assert!(!stolen.contains(PASSWORD) && !stolen.contains(&secret));

    // No key's content in any output, debug logs included.
    for output in &outputs {
        let text = shown(output);
        for key in [&key_text, &other_text, &new_text] {
            assert!(!text.contains(key.as_str()), "a key in the output: {text}");
        }
    }
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_secret_moved_to_another_webhook_does_not_open(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let state = harness.location.clone();
    let key = dir.path().join("sender.key");
    generate_key(&state, &key);
    let mut ids = Vec::new();
    for (name, password) in [("A", "password-of-A"), ("B", "password-of-B")] {
        let id = ok(sender(&state, Some(&key), &[
            "webhooks", "add", "--name", name, "--url", "http://127.0.0.1:9/webhook",
            "--events", "all", "--auth", "basic", "--username", "u", "--password", password,
        ]));
        ids.push(id.trim().to_owned());
    }
    // Someone with write access to the database gives B the sealed password of A.
    execute(
        &harness,
        &format!(
            "UPDATE {{webhooks}} SET basic_password = \
             (SELECT basic_password FROM {{webhooks}} WHERE id = '{a}') WHERE id = '{b}'",
            a = ids[0],
            b = ids[1]
        ),
    )
    .await;
    let listed = sender(&state, Some(&key), &["webhooks", "test", &ids[1]]);
    refused(&listed, &[&format!("webhook {}", ids[1]), "do not open"]);
}}
