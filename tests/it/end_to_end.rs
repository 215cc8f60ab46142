//! The sender delivering to the real receiver, run as a process, over loopback.
//!
//! - Every event of every catalogue name arrives, verifies and is stored exactly once, for
//!   None, Basic, Signature with Standard Webhooks and with body-hmac-sha256, and across a
//!   secret rotation.
//! - The sender is killed with SIGKILL at random moments while delivering thousands of
//!   events; after restarts every event is stored, each exactly once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use sender::registry::{Auth, AuthMethod, SchemeName, Webhook};
use sender::store::Queue;

use crate::sender::{fast_config, Harness, Spawned};
use crate::support::receiver::{run_cli, Process};

/// A receiver process with its own store, and how the sender must authenticate to it.
pub(crate) struct Receiver {
    process: Process,
    store: PathBuf,
}

impl Receiver {
    /// `receiver listen` on 127.0.0.1:0 with a SQLite store `NAME.db` in `dir`, and `auth`.
    pub(crate) fn start(dir: &Path, name: &str, auth: &[&str]) -> Receiver {
        let store = dir.join(format!("{name}.db"));
        let store_arg = format!("sqlite:{}", store.display());
        let mut args = vec![
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--path",
            "/webhook",
            "--store",
            &store_arg,
            "--output",
            "quiet",
        ];
        args.extend_from_slice(auth);
        let process = Process::spawn(&args, &[]);
        Receiver { process, store }
    }

    /// Its webhook URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/webhook", self.process.addr)
    }

    /// `receiver events list --json`.
    fn events(&self) -> Vec<Value> {
        let store = format!("sqlite:{}", self.store.display());
        let (code, stdout, stderr) = run_cli(&["events", "list", "--store", &store, "--json"], &[]);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str::<Value>(&stdout)
            .expect("JSON")
            .as_array()
            .expect("array")
            .clone()
    }

    /// `receiver events count --json`.
    pub(crate) fn count(&self) -> u64 {
        let store = format!("sqlite:{}", self.store.display());
        let (code, stdout, stderr) =
            run_cli(&["events", "count", "--store", &store, "--json"], &[]);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str::<Value>(&stdout).expect("JSON")["count"]
            .as_u64()
            .expect("count")
    }
}

fn signature_file(harness: &Harness, webhook: &Webhook, dir: &Path) -> PathBuf {
    let stored = harness.state.webhook(&webhook.id).expect("r").expect("w");
    let Auth::Signature(file) = stored.auth else {
        panic!("a signature webhook")
    };
    let path = dir.join(format!("{}.json", webhook.id));
    std::fs::write(&path, file.to_json_pretty()).expect("write signature file");
    path
}

fn set_url(harness: &Harness, webhook: &Webhook, url: &str) {
    let mut stored = harness.state.webhook(&webhook.id).expect("r").expect("w");
    stored.url = url.parse().expect("a Target URL");
    harness
        .state
        .update_webhook(&stored, stored.updated_at_ms)
        .expect("update");
}

/// The stored events' ids, checking each is there once and carries its name.
fn stored_ids(receiver: &Receiver) -> Vec<String> {
    let events = receiver.events();
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["eventId"].as_str().expect("eventId").to_owned())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "every event stored once");
    assert!(events.iter().all(|e| e["known"] == true), "catalogue names");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalogue_event_reaches_the_receiver_once_for_every_auth_method() {
    let dir = tempfile::tempdir().expect("dir");
    let harness = Harness::new();
    let placeholder = "http://127.0.0.1:9/webhook";
    let none = harness.add(placeholder, "all", |_| {});
    let basic = harness.add(placeholder, "all", |c| {
        c.auth = Some(AuthMethod::Basic);
        c.username = Some("crm".into());
        c.password = Some("pa:ss word".into());
    });
    let standard = harness.add(placeholder, "all", |c| {
        c.auth = Some(AuthMethod::Signature);
    });
    let body_hmac = harness.add(placeholder, "all", |c| {
        c.auth = Some(AuthMethod::Signature);
        c.scheme = Some(SchemeName::BodyHmacSha256);
        c.signature_prefix = Some("sha256=".into());
    });
    let standard_file = signature_file(&harness, &standard, dir.path());
    let body_hmac_file = signature_file(&harness, &body_hmac, dir.path());
    let receivers = [
        Receiver::start(dir.path(), "none", &[]),
        Receiver::start(
            dir.path(),
            "basic",
            &["--basic-user", "crm", "--basic-password", "pa:ss word"],
        ),
        Receiver::start(
            dir.path(),
            "standard",
            &["--signature-file", standard_file.to_str().expect("utf8")],
        ),
        Receiver::start(
            dir.path(),
            "body-hmac",
            &["--signature-file", body_hmac_file.to_str().expect("utf8")],
        ),
    ];
    let webhooks = [&none, &basic, &standard, &body_hmac];
    for (webhook, receiver) in webhooks.iter().zip(&receivers) {
        set_url(&harness, webhook, &receiver.url());
    }
    let mut expected: Vec<String> = Vec::new();
    for (index, kind) in verify::CATALOG.iter().enumerate() {
        let events = harness.enqueue(kind.name, 2, 1000 + index as u64);
        expected.extend(events.into_iter().map(|e| e.event_id));
    }
    let ids: Vec<_> = webhooks.iter().map(|w| &w.id).collect();
    harness.drain(fast_config(), &ids).await;

    // Rotate the Standard Webhooks secret; the receiver restarts on the rotated file (old and
    // new secrets), as the receiving team would deploy it, and the sender signs with both.
    let mut stored = harness.state.webhook(&standard.id).expect("r").expect("w");
    if let Auth::Signature(file) = &mut stored.auth {
        file.rotate(&verify::SigningSecret::generate(), verify::unix_now(), 3600);
    }
    harness
        .state
        .update_webhook(&stored, stored.updated_at_ms)
        .expect("rotate");
    let [none_rx, basic_rx, mut standard_rx, hmac_rx] = receivers;
    // Stopped first, as systemd restarts a service: one `listen` per SQLite store.
    standard_rx.process.signal("TERM");
    assert_eq!(standard_rx.process.wait_exit(), Some(0));
    let rotated_file = signature_file(&harness, &standard, dir.path());
    let standard_rx = Receiver {
        process: Process::spawn(
            &[
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &format!("sqlite:{}", standard_rx.store.display()),
                "--output",
                "quiet",
                "--signature-file",
                rotated_file.to_str().expect("utf8"),
            ],
            &[],
        ),
        store: standard_rx.store.clone(),
    };
    set_url(&harness, &standard, &standard_rx.url());
    for (index, kind) in verify::CATALOG.iter().enumerate() {
        let events = harness.enqueue(kind.name, 1, 2000 + index as u64);
        expected.extend(events.into_iter().map(|e| e.event_id));
    }
    harness.drain(fast_config(), &ids).await;

    let counts = harness.state.counts(None).expect("counts");
    assert_eq!((counts.pending, counts.staged, counts.expired), (0, 0, 0));
    let rows = harness
        .state
        .deliveries(&sender::store::DeliveryFilter {
            limit: 10_000,
            ..Default::default()
        })
        .expect("rows");
    assert!(
        rows.iter()
            .all(|r| r.attempts == 1 && r.last_status == Some(200)),
        "every request accepted at the first attempt"
    );
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    for receiver in [&none_rx, &basic_rx, &standard_rx, &hmac_rx] {
        let mut ids = stored_ids(receiver);
        ids.sort();
        assert_eq!(ids, expected_sorted, "{}", receiver.url());
        assert_eq!(receiver.count(), expected.len() as u64);
    }
}

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

fn sender_cli(state: &Path, args: &[&str]) -> String {
    let output = Command::new(SENDER)
        .arg("--state")
        .arg(format!("sqlite:{}", state.display()))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sender");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A pseudo-random number in `range` (test timing only; no extra crate for it).
fn random_in(range: std::ops::Range<u64>) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos() as u64;
    range.start + nanos.wrapping_mul(6_364_136_223_846_793_005) % (range.end - range.start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_event_and_stores_none_twice() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("dir");
    let receiver = Receiver::start(dir.path(), "crash", &[]);
    let state = dir.path().join("sender.db");
    sender_cli(
        &state,
        &[
            "webhooks",
            "add",
            "--name",
            "crash",
            "--url",
            &receiver.url(),
            "--events",
            "all",
        ],
    );
    // A few thousand events: real-time ones (a request each) and batch ones (100 a request).
    let mut expected: Vec<String> = Vec::new();
    for (name, count) in [
        ("COURSE_ENROLLMENT", "1200"),
        ("LEARNER_PROGRESS", "1000"),
        ("COURSE_COMPLETED", "800"),
    ] {
        let out = sender_cli(
            &state,
            &[
                "trigger",
                name,
                "--count",
                count,
                "--enqueue-only",
                "--json",
            ],
        );
        let parsed: Value = serde_json::from_str(&out).expect("trigger --json");
        expected.extend(
            parsed["eventIds"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_str().expect("id").to_owned()),
        );
    }
    assert_eq!(expected.len(), 3000);

    let run = || {
        Spawned::spawn(
            Command::new(SENDER)
                .args([
                    "--state",
                    &format!("sqlite:{}", state.display()),
                    "run",
                    "--poll-interval",
                    "20ms",
                    "--batch-interval",
                    "50ms",
                    "--retry-initial",
                    "50ms",
                ])
                .env("RUST_LOG", "warn"),
        )
    };
    let pending = || -> u64 {
        let db = sender::store::sqlite::SqliteState::open(&state).expect("open");
        let counts = db.counts(None).expect("counts");
        counts.pending + counts.staged
    };
    let mut kills = 0;
    let mut killed_mid_queue = 0;
    while kills < 6 && started.elapsed() < Duration::from_secs(20) {
        let mut worker = run();
        tokio::time::sleep(Duration::from_millis(random_in(150..900))).await;
        worker.child.kill().expect("SIGKILL");
        worker.child.wait().expect("reap");
        kills += 1;
        if pending() > 0 {
            killed_mid_queue += 1;
        } else {
            break;
        }
    }
    assert!(killed_mid_queue >= 1, "at least one kill hit a busy queue");
    // The last worker finishes the queue; it says when SIGTERM will stop it cleanly.
    let mut worker = run();
    let ready = worker.next_line(Duration::from_secs(15)).await;
    assert!(
        ready.starts_with("sender run: working the queue"),
        "{ready}"
    );
    let deadline = started + Duration::from_secs(55);
    while pending() > 0 {
        assert!(Instant::now() < deadline, "{} still queued", pending());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(crate::sender::send_signal(worker.child.id(), "TERM"), 0);
    assert!(worker.wait(Duration::from_secs(15)).await.success());

    let mut stored = stored_ids(&receiver);
    stored.sort();
    expected.sort();
    assert_eq!(stored.len(), 3000, "every event stored once");
    assert_eq!(stored, expected);
    eprintln!(
        "crash test: {kills} SIGKILLs ({killed_mid_queue} mid-queue) in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_target_urls_are_delivered_over_tls_trusting_only_known_cas() {
    let dir = tempfile::tempdir().expect("dir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("key");
    let receiver = Receiver::start(
        dir.path(),
        "tls",
        &[
            "--tls-cert",
            cert.to_str().expect("utf8"),
            "--tls-key",
            key.to_str().expect("utf8"),
        ],
    );
    assert!(receiver
        .process
        .first_line
        .starts_with("listening on https://"));
    let url = format!("https://127.0.0.1:{}/webhook", receiver.process.addr.port());

    // `webhooks test`: an unknown CA is refused; with --ca-file the same request is accepted.
    let state = dir.path().join("sender.db");
    let test = |extra: &[&str]| {
        let mut args = vec!["webhooks", "test", "--url", url.as_str()];
        args.extend_from_slice(extra);
        Command::new(SENDER)
            .arg("--state")
            .arg(format!("sqlite:{}", state.display()))
            .args(&args)
            .env("RUST_LOG", "warn")
            .env_remove("SENDER_CA_FILE")
            .output()
            .expect("run sender")
    };
    let untrusted = test(&[]);
    assert_eq!(untrusted.status.code(), Some(1));
    let text = String::from_utf8_lossy(&untrusted.stdout).to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("issuer"),
        "{text}"
    );
    let trusted = test(&["--ca-file", cert.to_str().expect("utf8")]);
    assert_eq!(
        trusted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&trusted.stdout)
    );

    // The engine over TLS, keep-alive connections included.
    let harness = Harness::new();
    let webhook = harness.add(&url, "all", |_| {});
    let events = harness.enqueue("COURSE_ENROLLMENT", 5, 77);
    let mut config = fast_config();
    config.ca_file = Some(cert.clone());
    harness.drain(config, &[&webhook.id]).await;
    let stored = stored_ids(&receiver);
    assert_eq!(stored.len(), 6, "the test event and the five queued ones");
    for event in &events {
        assert!(stored.contains(&event.event_id));
    }
}
