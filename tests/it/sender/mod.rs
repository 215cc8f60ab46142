//! Sender tests against fake endpoints: the registry command line, the delivery engine with
//! its retry schedule over real HTTP (compressed durations; the seven-day schedule under paused
//! tokio time is a unit test of `sender::delivery`), and Python's `standardwebhooks` verifying what the sender signs.

mod cli;
mod connect_timeout;
mod delivery;
mod least_privilege;
mod python;
mod remote_text;
mod replay;
mod run_worker;
mod scale_out;
mod two_workers;

use std::sync::Arc;
use std::time::Duration;

use sender::config::DeliveryConfig;
use sender::delivery::{Engine, Mode, RunReport};
use sender::generate::{route, EventRecipe};
use sender::manage::WebhookChanges;
use sender::registry::{Webhook, WebhookId};
use sender::retry::RetryPolicy;
use sender::store::postgres::PostgresState;
use sender::store::sqlite::SqliteState;
use sender::store::State;
use verify::OutgoingEvent;

/// Every duration of the engine shrunk to milliseconds.
pub fn fast_config() -> DeliveryConfig {
    DeliveryConfig {
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_millis(300),
        retry: RetryPolicy {
            initial: Duration::from_millis(20),
            cap: Duration::from_millis(80),
            retention: Duration::from_secs(30),
        },
        batch_interval: Duration::from_millis(100),
        batch_size: 10,
        parallel: 1,
        lease_ttl: Duration::from_secs(3),
        poll_interval: Duration::from_millis(10),
        ca_file: None,
    }
}

/// A state: a SQLite file in a temporary directory, or a fresh PostgreSQL database.
pub struct Harness {
    _dir: tempfile::TempDir,
    /// The state.
    pub state: Arc<dyn State>,
    /// What `--state` names it as.
    pub location: String,
}

impl Harness {
    /// A SQLite state.
    pub fn new() -> Self {
        Self::sqlite()
    }

    /// A SQLite state in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sender.db");
        let state = Arc::new(SqliteState::open(&path).expect("open state"));
        let location = format!("sqlite:{}", path.display());
        Self {
            _dir: dir,
            state,
            location,
        }
    }

    /// A fresh PostgreSQL database, or `None` (after a loud SKIPPED line) without PostgreSQL.
    pub fn postgres(what: &str) -> Option<Self> {
        let location = common::test_postgres::test_database(what)?;
        let url = common::postgres::DatabaseUrl::parse(&location).expect("test URL");
        let state = Arc::new(PostgresState::open(&url).expect("open state"));
        Some(Self {
            _dir: tempfile::tempdir().expect("temp dir"),
            state,
            location,
        })
    }

    /// Registers a webhook for `url` and `events`, with further changes from `edit`.
    pub fn add(&self, url: &str, events: &str, edit: impl FnOnce(&mut WebhookChanges)) -> Webhook {
        let mut changes = WebhookChanges {
            name: Some("test".into()),
            url: Some(url.parse().expect("a Target URL")),
            events: Some(events.into()),
            ..WebhookChanges::default()
        };
        edit(&mut changes);
        let webhook = changes
            .create(verify::unix_now_ms())
            .expect("valid webhook");
        self.state.insert_webhook(&webhook).expect("insert");
        webhook
    }

    /// Enqueues `count` events of `name` (seeded by `seed`) for every subscribed webhook.
    pub fn enqueue(&self, name: &str, count: usize, seed: u64) -> Vec<OutgoingEvent> {
        let kind = verify::lookup(name).expect("catalogue name");
        let recipe = EventRecipe {
            kind,
            count,
            account_id: 1010,
            set: Vec::new(),
            data: None,
            seed,
            time_style: verify::TimeStyle::Iso,
        };
        let now = verify::unix_now_ms();
        let events = recipe.events(now);
        let webhooks = self.state.webhooks().expect("webhooks");
        let deliveries = route(&events, 1010, kind, &webhooks);
        self.state.enqueue(&deliveries, now).expect("enqueue");
        events
    }

    /// Delivers until the queues of `ids` are empty, at most 30 s.
    pub async fn drain(&self, config: DeliveryConfig, ids: &[&WebhookId]) -> RunReport {
        let engine = Engine::http(self.state.clone(), config);
        let ids = ids.iter().map(|id| (*id).clone()).collect();
        tokio::time::timeout(
            Duration::from_secs(30),
            engine.run(Mode::Drain(ids), std::future::pending()),
        )
        .await
        .expect("drained within 30 s")
        .expect("engine ran")
    }
}

/// A child process killed when dropped, whose stdout lines arrive on a channel.
pub struct Spawned {
    /// The process.
    pub child: std::process::Child,
    /// Its stdout, line by line.
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Spawned {
    /// Spawns `command` with stdout piped (and stdin piped, so closing it can stop the child).
    pub fn spawn(command: &mut std::process::Command) -> Self {
        use std::io::BufRead as _;
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next stdout line, waiting at most `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> String {
        tokio::time::timeout(timeout, self.lines.recv())
            .await
            .expect("a line within the timeout")
            .expect("the process closed its stdout")
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the process did not exit in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by name (`TERM`, `INT`) with kill(1): the workspace forbids `unsafe`.
pub fn send_signal(pid: u32, signal: &str) -> i32 {
    std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill")
        .code()
        .unwrap_or(-1)
}

/// Runs `sender --state STATE ARGS` (logging warnings only) to completion: (exit code,
/// stdout, stderr).
pub fn sender_output(state: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_it-sender"))
        .args(["--state", state])
        .args(args)
        .stdin(std::process::Stdio::null())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sender");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `sender --state STATE ARGS` (logging warnings only) to success in a blocking thread.
pub async fn run_sender(state: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_it-sender"));
    command
        .args(["--state", state])
        .args(args)
        .env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || command.output().expect("run sender"))
        .await
        .expect("joined");
    assert!(output.status.success(), "{args:?}: {output:?}");
    output
}

/// Enqueues `count` COURSE_ENROLLMENT events with `sender trigger --enqueue-only`; gives their
/// `eventId`s in trigger order.
pub async fn enqueue(state: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let output = run_sender(
        state,
        &[
            "trigger",
            "COURSE_ENROLLMENT",
            "--count",
            &count,
            "--enqueue-only",
            "--json",
        ],
    )
    .await;
    let queued: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON summary");
    queued["eventIds"]
        .as_array()
        .expect("eventIds")
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect()
}
