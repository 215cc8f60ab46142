//! The sender's secrets at rest (`--secret-key-file`), as an operator and a thief meet them,
//! on both stores: a key file made 0600 and never overwritten; Basic passwords and signing
//! secrets absent from the raw state (the SQL rows, and the SQLite file's bytes) once a key is
//! given, a password stored before the key included; deliveries still signed so that real
//! receivers accept them; a state without its key, or with another, refused with exit 2
//! naming the flag, never signing with garbage; a rotation to a new key after which the old
//! one no longer opens the state; a sealed value moved to another webhook does not open; and
//! the key's content in no output, debug logs included.
//!
//! And what the review of issue 20 found: a rotation under a running `sender admin` no
//! longer lets it write secrets under the retired key (which wedged the state); a plain
//! password that looks sealed stays plain until a key seals it; a password whose webhook is
//! pointed elsewhere in the database (its URL or username) no longer opens; a state sealed
//! by the first layout is brought to this one; a key file other users may read is refused.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::on_each_store;

use base64::Engine as _;
use http::Method;
use serde_json::json;

use crate::end_to_end::Receiver;
use crate::sender::Harness;
use crate::support::admin::AdminProcess;
use crate::support::endpoint::FakeEndpoint;

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
    assert!(raw_rows(&harness).await.contains("sealed:v2:"));

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
    refused(&listed, &[&format!("webhook {}", ids[1]), "does not open"]);
}}

/// The `Authorization` header a Basic `user:password` sends.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_a_running_admin_leaves_the_state_usable(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let state = harness.location.clone();
    let (old, new) = (dir.path().join("old.key"), dir.path().join("new.key"));
    generate_key(&state, &old);
    generate_key(&state, &new);
    let endpoint = FakeEndpoint::start().await;
    let old_arg = old.display().to_string();
    let admin = AdminProcess::start_with(&state, &["--secret-key-file", &old_arg]).await;
    let add = |name: &str| {
        json!({"name": name, "url": endpoint.url(), "events": ["COURSE_ENROLLMENT"],
               "auth": "basic", "username": "crm", "password": PASSWORD})
    };
    let first = admin
        .json(Method::POST, "/api/webhooks", Some(add("first")), 201)
        .await;
    let id = first["id"].as_str().unwrap().to_owned();
    let without_secrets =
        json!({"name": "plain", "url": endpoint.url(), "events": ["COURSE_COMPLETED"]});
    let plain = admin
        .json(Method::POST, "/api/webhooks", Some(without_secrets), 201)
        .await;
    // A new password that reads as a sealed value is a field error.
    let lookalike = json!({"name": "x", "url": endpoint.url(), "events": ["all"],
        "auth": "basic", "username": "u", "password": "sealed:v1:AAAA"});
    let refused_lookalike = admin
        .json(Method::POST, "/api/webhooks", Some(lookalike), 422)
        .await;
    assert_eq!(refused_lookalike["field"], "password", "{refused_lookalike}");

    // The operator rotates the key while the admin runs with the old one.
    ok(sender(&state, Some(&old), &[
        "secret-key", "rotate", "--new-key-file", new.to_str().unwrap(),
    ]));

    // The admin writes nothing under the retired key: an add, and an edit of a webhook it
    // can still read (it has no secret), are refused as changed meanwhile; a webhook whose
    // secret it cannot open any more is not even read.
    let plain_path = format!("/api/webhooks/{}", plain["id"].as_str().unwrap());
    for (method, path, body) in [
        (Method::POST, "/api/webhooks".to_owned(), add("second")),
        (
            Method::PATCH,
            plain_path,
            json!({"description": "edited", "version": plain["version"]}),
        ),
    ] {
        let answer = admin.json(method.clone(), &path, Some(body), 409).await;
        assert_eq!(answer["error"], "changed", "{method} {path}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains("another key meanwhile"), "{message}");
    }
    let answer = admin
        .json(
            Method::PATCH,
            &format!("/api/webhooks/{id}"),
            Some(json!({"description": "edited", "version": first["version"]})),
            422,
        )
        .await;
    assert!(
        answer["message"].as_str().unwrap().contains("does not open"),
        "{answer}"
    );
    admin.stop().await;

    // The state is whole: the new key lists and delivers, with the password as it was.
    let listed = ok(sender(&state, Some(&new), &["webhooks", "list"]));
    assert_eq!(listed.lines().count(), 3, "a header and two webhooks: {listed}");
    assert!(!listed.contains("second") && !listed.contains("edited"), "{listed}");
    let delivered = sender(&state, Some(&new), &["trigger", "COURSE_ENROLLMENT"]);
    assert!(delivered.status.success(), "{}", shown(&delivered));
    let received = endpoint.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].header("authorization"),
        Some(basic("crm", PASSWORD).as_str())
    );
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_password_that_looks_sealed_is_plain_until_a_key_seals_it(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let state = harness.location.clone();
    let endpoint = FakeEndpoint::start().await;
    let lookalike = "sealed:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    // No longer accepted as a new password...
    let refused_add = sender(&state, None, &[
        "webhooks", "add", "--name", "x", "--url", &endpoint.url(), "--events", "all",
        "--auth", "basic", "--username", "crm", "--password", lookalike,
    ]);
    refused(&refused_add, &["--password must not start with `sealed:`"]);
    // ...but the sender before this one stored it, plain, in a state without a key.
    let id = ok(sender(&state, None, &[
        "webhooks", "add", "--name", "CRM", "--url", &endpoint.url(),
        "--events", "COURSE_ENROLLMENT", "--auth", "basic", "--username", "crm",
        "--password", PASSWORD,
    ]))
    .trim()
    .to_owned();
    execute(
        &harness,
        &format!("UPDATE {{webhooks}} SET basic_password = '{lookalike}' WHERE id = '{id}'"),
    )
    .await;
    // The state has no key record: the value is the password, whatever it looks like.
    ok(sender(&state, None, &["webhooks", "list"]));
    let delivered = sender(&state, None, &["trigger", "COURSE_ENROLLMENT"]);
    assert!(delivered.status.success(), "{}", shown(&delivered));
    // Given a key, it is sealed like any plain password, and still sent as it is.
    let key = dir.path().join("sender.key");
    generate_key(&state, &key);
    ok(sender(&state, Some(&key), &["webhooks", "list"]));
    let rows = raw_rows(&harness).await;
    assert!(!rows.contains(lookalike) && rows.contains("sealed:v2:"), "{rows}");
    let delivered = sender(&state, Some(&key), &["trigger", "COURSE_ENROLLMENT"]);
    assert!(delivered.status.success(), "{}", shown(&delivered));
    let received = endpoint.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(
            request.header("authorization"),
            Some(basic("crm", lookalike).as_str())
        );
    }
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_pointed_elsewhere_in_the_database_no_longer_opens(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let state = harness.location.clone();
    let key = dir.path().join("sender.key");
    generate_key(&state, &key);
    let (crm, attacker) = (FakeEndpoint::start().await, FakeEndpoint::start().await);
    let id = ok(sender(&state, Some(&key), &[
        "webhooks", "add", "--name", "CRM", "--url", &crm.url(), "--events", "all",
        "--auth", "basic", "--username", "crm", "--password", PASSWORD,
    ]))
    .trim()
    .to_owned();
    // Someone with write access to the database (not to the key) points the webhook at
    // their own server, or changes the user the password goes with.
    for change in [
        format!("url = '{}'", attacker.url()),
        "basic_username = 'admin'".to_owned(),
    ] {
        execute(
            &harness,
            &format!("UPDATE {{webhooks}} SET {change} WHERE id = '{id}'"),
        )
        .await;
        let test = sender(&state, Some(&key), &["webhooks", "test", &id]);
        refused(&test, &[&format!("webhook {id}"), "Basic password does not open"]);
        assert!(attacker.received().is_empty(), "nothing went to the attacker");
        execute(
            &harness,
            &format!(
                "UPDATE {{webhooks}} SET url = '{}', basic_username = 'crm' WHERE id = '{id}'",
                crm.url()
            ),
        )
        .await;
    }
    // Put back, it opens again; the operator's edit of the URL seals it anew for the new one.
    let test = sender(&state, Some(&key), &["webhooks", "test", &id]);
    assert!(test.status.success(), "{}", shown(&test));
    ok(sender(&state, Some(&key), &["webhooks", "edit", &id, "--url", &attacker.url()]));
    let test = sender(&state, Some(&key), &["webhooks", "test", &id]);
    assert!(test.status.success(), "{}", shown(&test));
    assert_eq!(attacker.received().len(), 1);
    assert_eq!(crm.received().len(), 1);
}}

/// A value sealed as the sender before this layout sealed it (`sealed:v1:`, bound to the
/// column and the webhook only), under the key of the file at `key_file`.
fn seal_v1(key_file: &Path, plaintext: &str, associated: &str) -> String {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine
        .decode(std::fs::read_to_string(key_file).unwrap().trim())
        .unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).unwrap());
    // A fixed nonce is fine for a test value sealed once.
    let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| u8::try_from(i).unwrap() + 1);
    let mut sealed = plaintext.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(associated.as_bytes()),
        &mut sealed,
    )
    .unwrap();
    let mut stored = nonce.to_vec();
    stored.extend_from_slice(&sealed);
    format!("sealed:v1:{}", engine.encode(stored))
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_sealed_by_the_first_layout_is_brought_to_this_one(harness: Harness) {
    let dir = tempfile::tempdir().unwrap();
    let state = harness.location.clone();
    let key = dir.path().join("sender.key");
    generate_key(&state, &key);
    let endpoint = FakeEndpoint::start().await;
    let id = ok(sender(&state, None, &[
        "webhooks", "add", "--name", "CRM", "--url", &endpoint.url(),
        "--events", "COURSE_ENROLLMENT", "--auth", "basic", "--username", "crm",
        "--password", PASSWORD,
    ]))
    .trim()
    .to_owned();
    // What the sender before this layout left: its key record and the password sealed as
    // it sealed them.
    let record = seal_v1(&key, "sender secret key", "sender/key_check\0");
    let password = seal_v1(&key, PASSWORD, &format!("sender/basic_password\0{id}"));
    let table = if state.starts_with("sqlite:") { "secret_key" } else { "sender_secret_key" };
    execute(
        &harness,
        &format!(
            "INSERT INTO {table} (id, key_check) VALUES (1, '{record}');
             UPDATE {{webhooks}} SET basic_password = '{password}' WHERE id = '{id}'"
        ),
    )
    .await;
    // Opened with the key, it is brought up and delivers the password as it was.
    let delivered = sender(&state, Some(&key), &["trigger", "COURSE_ENROLLMENT"]);
    assert!(delivered.status.success(), "{}", shown(&delivered));
    assert_eq!(
        endpoint.received()[0].header("authorization"),
        Some(basic("crm", PASSWORD).as_str())
    );
    let rows = raw_rows(&harness).await;
    assert!(!rows.contains("sealed:v1:") && rows.contains("sealed:v2:"), "{rows}");
    // The first layout's value copied back no longer opens: it is bound to nothing else.
    execute(
        &harness,
        &format!("UPDATE {{webhooks}} SET basic_password = '{password}' WHERE id = '{id}'"),
    )
    .await;
    let test = sender(&state, Some(&key), &["webhooks", "test", &id]);
    refused(&test, &["does not open"]);
}}

#[test]
fn a_key_file_other_users_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    let key = dir.path().join("sender.key");
    let text = generate_key(&state, &key);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let listed = sender(&state, Some(&key), &["webhooks", "list"]);
    let stderr = refused(&listed, &["--secret-key-file", "chmod 600"]);
    assert!(!stderr.contains(&text), "{stderr}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(sender(&state, Some(&key), &["webhooks", "list"]));
}
