//! Running the sender for months (SPEC section 9, sender part), with real processes: an outage
//! recovered (`deliveries recover` / `resend`, `webhooks activate`), the operator told
//! (notifications, also across a SIGKILL and with several workers on PostgreSQL), `/metrics`
//! read by Prometheus's own parser, and the keep-alive connection a receiver closed while idle.
//!
//! What the tests here share: `sender run` as a process with its metrics address, the
//! operator's signature file, Python's `standardwebhooks` verifying what arrived, and a scrape
//! of `/metrics` read by Python's `prometheus_client`.

mod keep_alive;
mod metrics_format;
mod notifications;
mod outage;
mod usage;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::sender::Spawned;
use crate::support::endpoint::Received;

/// The engine's numbers shrunk so that an outage past retention takes seconds.
pub(crate) const FAST: &[&str] = &[
    "--retention",
    "4s",
    "--retry-initial",
    "100ms",
    "--retry-max",
    "200ms",
    "--poll-interval",
    "20ms",
    "--batch-interval",
    "200ms",
    "--connect-timeout",
    "1s",
    "--response-timeout",
    "1s",
    "--lease-ttl",
    "3s",
];

/// `sender run` as a process, stopped (SIGKILL) when dropped.
pub(crate) struct SenderRun {
    pub process: Spawned,
    /// Where `--metrics` listens, when asked for.
    pub metrics: Option<SocketAddr>,
}

impl SenderRun {
    /// Starts `sender --state STATE run FAST ARGS` and reads its first lines (the second is
    /// the metrics address when `args` has `--metrics`).
    pub async fn start(state: &str, args: &[&str]) -> SenderRun {
        Self::start_with_numbers(state, FAST, args).await
    }

    /// [`SenderRun::start`] with other engine numbers than [`FAST`].
    pub async fn start_with_numbers(state: &str, numbers: &[&str], args: &[&str]) -> SenderRun {
        let mut command = Command::new(env!("CARGO_BIN_EXE_it-sender"));
        command
            .args(["--state", state, "run"])
            .args(numbers)
            .args(args)
            .stderr(Stdio::null())
            .env("RUST_LOG", "warn");
        let mut process = Spawned::spawn(&mut command);
        let first = process.next_line(Duration::from_secs(20)).await;
        assert!(
            first.starts_with("sender run: working the queue"),
            "{first}"
        );
        let metrics = if args.contains(&"--metrics") {
            let line = process.next_line(Duration::from_secs(20)).await;
            let addr = line
                .strip_prefix("metrics on http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"));
            Some(addr)
        } else {
            None
        };
        SenderRun { process, metrics }
    }

    /// The families of its `/metrics`, as Prometheus's Python parser reads them.
    pub async fn metrics(&self) -> Vec<Value> {
        let addr = self.metrics.expect("started with --metrics");
        let reply = crate::support::receiver::get(addr, "/metrics").await;
        assert_eq!(reply.status, http::StatusCode::OK);
        let text = String::from_utf8(reply.body.to_vec()).expect("UTF-8");
        crate::support::prometheus::families(&text)
    }

    /// Stops it with SIGTERM and waits (bounded) for a clean exit.
    pub async fn stop(mut self) {
        crate::sender::send_signal(self.process.child.id(), "TERM");
        let status = self.process.wait(Duration::from_secs(15)).await;
        assert!(status.success(), "sender run exited with {status}");
    }
}

/// Writes the operator's signature file (Standard Webhooks, one fresh secret) to `dir`.
pub(crate) fn operator_signature_file(dir: &Path) -> PathBuf {
    let secret = base64::engine::general_purpose::STANDARD.encode(random_bytes());
    let file = serde_json::json!({"version": 1, "webhookId": "operator", "webhookName": "operator",
        "scheme": "standard-webhooks", "algorithm": "HMAC-SHA256", "toleranceSeconds": 300,
        "secrets": [{"secret": format!("whsec_{secret}"), "createdAt": "2026-01-01T00:00:00Z",
                     "expiresAt": null}]});
    let path = dir.join("operator.json");
    std::fs::write(&path, file.to_string()).expect("write the operator's file");
    path
}

/// 32 random bytes for a test secret.
fn random_bytes() -> [u8; 32] {
    let (mut rng, _) = crate::support::rng::Rng::from_clock();
    let mut bytes = [0u8; 32];
    for byte in &mut bytes {
        *byte = rng.next().to_le_bytes()[0];
    }
    bytes
}

/// Whether Python's `standardwebhooks` (not our code) verifies each of `requests` with the
/// secrets of `file`: one verdict per request, in order.
pub(crate) fn verified_by_python(file: &Path, requests: &[Received]) -> Vec<bool> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/standardwebhooks_verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for request in requests {
            let headers: serde_json::Map<String, Value> = request
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), Value::from(value.clone())))
                .collect();
            let line = serde_json::json!({
                "headers": headers,
                "body": String::from_utf8_lossy(&request.body),
            });
            writeln!(stdin, "{line}").expect("write a request");
        }
    }
    let output = child.wait_with_output().expect("the verifier ran");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a verdict")["verified"] == true)
        .collect()
}

/// Whether the Python packages the checks need are here (`standardwebhooks`,
/// `prometheus_client`); a test returns early when not (loudly skipped, failed under CI).
pub(crate) fn python_available(what: &str) -> bool {
    crate::support::external::python_module("standardwebhooks", "standardwebhooks", what)
        && crate::support::prometheus::parser_available(what)
}

/// `sender --state STATE ARGS` to completion, expecting `code`; gives standard output.
pub(crate) fn cli(state: &str, args: &[&str], code: i32) -> String {
    let (exit, stdout, stderr) = crate::sender::sender_output(state, args);
    assert_eq!(exit, Some(code), "sender {args:?}: {stdout}{stderr}");
    stdout
}

/// `cli` for a JSON answer.
pub(crate) fn cli_json(state: &str, args: &[&str]) -> Value {
    serde_json::from_str(&cli(state, args, 0)).expect("JSON")
}
