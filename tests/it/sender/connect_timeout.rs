//! The connect timeout (SPEC section 5: 10 s by default, configurable): a Target URL that
//! accepts no connection in time costs one failed attempt of about the configured length,
//! logged as a connect timeout, and the request is retried until the endpoint answers. The
//! unresponsive address is a loopback listener whose accept queue is full, so its SYNs are
//! dropped; durations are in milliseconds.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sender::delivery::{Engine, Mode};
use sender::store::DeliveryFilter;
use serde_json::Value;

use super::{fast_config, Harness};
use crate::support::endpoint::{FakeEndpoint, Unresponsive};

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// The connect timeout the tests configure.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(150);

/// Runs `sender --state DB ARGS` in a blocking thread, so this runtime keeps serving.
async fn sender(db: &std::path::Path, args: &[&str]) -> Output {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_is_a_failed_attempt_retried_until_the_endpoint_answers() {
    let unresponsive = Unresponsive::start().await;
    let addr = unresponsive.addr;
    let harness = Harness::new();
    let webhook = harness.add(&unresponsive.url(), "all", |_| {});
    let events = harness.enqueue("COURSE_ENROLLMENT", 1, 21);
    let mut config = fast_config();
    config.connect_timeout = CONNECT_TIMEOUT;
    let engine = Engine::http(harness.state.clone(), config);
    let run = tokio::spawn({
        let id = webhook.id.clone();
        async move {
            engine
                .run(Mode::Drain(vec![id]), std::future::pending())
                .await
        }
    });

    // Two timed-out attempts logged: the first failed and was retried.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = harness
            .state
            .deliveries(&DeliveryFilter {
                limit: 5,
                ..DeliveryFilter::default()
            })
            .expect("rows");
        if let Some(row) = rows.into_iter().find(|row| row.attempts >= 2) {
            break row;
        }
        assert!(Instant::now() < deadline, "no retried attempt logged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(row.state, "pending", "still to be delivered");
    // The address starts answering: the next retry gets through.
    drop(unresponsive);
    let endpoint = FakeEndpoint::start_on(addr).await;
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("drained")
        .expect("joined")
        .expect("ran");

    let received = endpoint.received();
    assert_eq!(received.len(), 1, "delivered once, when it could connect");
    assert_eq!(received[0].event_ids(), [events[0].event_id.clone()]);
    let detail = harness
        .state
        .delivery(&row.id)
        .expect("read")
        .expect("found");
    assert_eq!(detail.summary.state, "delivered");
    let (last, failed) = detail.attempt_log.split_last().expect("attempts");
    assert_eq!(last.status, Some(200));
    assert!(failed.len() >= 2, "{:?}", detail.attempt_log);
    for attempt in failed {
        let error = attempt.error.clone().unwrap_or_default();
        assert_eq!(attempt.status, None, "no answer: {attempt:?}");
        assert!(error.contains("connect timeout"), "{error}");
        // About the configured 150 ms: not the 10 s default, not an instant refusal.
        assert!(
            (150..2000).contains(&attempt.latency_ms),
            "attempt took {} ms",
            attempt.latency_ms
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_with_connect_timeout_shows_timed_out_attempts_and_leaves_the_event_queued() {
    let unresponsive = Unresponsive::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let url = unresponsive.url();
    let added = sender(
        &db,
        &[
            "webhooks", "add", "--name", "crm", "--url", &url, "--events", "all",
        ],
    )
    .await;
    assert!(added.status.success(), "{added:?}");

    let started = Instant::now();
    let trigger = sender(
        &db,
        &[
            "trigger",
            "COURSE_COMPLETED",
            "--connect-timeout",
            "150ms",
            "--retry-initial",
            "20ms",
            "--retry-max",
            "40ms",
            "--wait",
            "900ms",
        ],
    )
    .await;
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&trigger.stdout);
    assert_eq!(trigger.status.code(), Some(1), "not delivered: {stdout}");
    assert!(
        stdout.contains("1 request(s) still queued after --wait 900ms"),
        "{stdout}"
    );
    assert!(took < Duration::from_secs(5), "trigger took {took:?}");

    let list = sender(&db, &["deliveries", "list", "--json"]).await;
    let rows: Value = serde_json::from_slice(&list.stdout).expect("JSON rows");
    let row = &rows.as_array().expect("array")[0];
    assert_eq!(row["state"], "pending");
    let attempts = row["attempts"].as_u64().expect("attempts");
    // 900 ms of 150 ms attempts and 20-40 ms pauses: several, fewer on a busy machine.
    assert!((2..=6).contains(&attempts), "{attempts} attempts");

    let id = row["id"].as_str().expect("id");
    let shown = sender(&db, &["deliveries", "show", id, "--json"]).await;
    let detail: Value = serde_json::from_slice(&shown.stdout).expect("JSON detail");
    let log = detail["attemptLog"].as_array().expect("attempt log");
    assert_eq!(log.len() as u64, attempts);
    for attempt in log {
        let error = attempt["error"].as_str().unwrap_or_default();
        assert!(error.contains("connect timeout"), "{attempt}");
        assert!(attempt["status"].is_null(), "{attempt}");
        let latency = attempt["latencyMs"].as_i64().expect("latency");
        assert!((150..2000).contains(&latency), "{attempt}");
    }
    // The text view a user reads says so too.
    let text = sender(&db, &["deliveries", "show", id]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("#1") && text.contains("connect timeout"),
        "{text}"
    );
}
