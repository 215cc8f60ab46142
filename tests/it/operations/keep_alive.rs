//! A receiver that closes a kept-alive connection while it is idle (its header timeout) must
//! not cost the next attempt the whole response timeout: every attempt reports the status the
//! receiver really answered.
//!
//! The bug this pins: after a 401, the retry waited longer than the receiver's idle limit, the
//! receiver closed the connection, and the sender's next attempt went onto that dead
//! connection and waited for an answer until its response timeout ("response timeout: no
//! complete response within 5s") while the receiver answered everyone else at once.

use std::time::Duration;

use sender::config::DeliveryConfig;
use sender::delivery::{Engine, Mode};
use sender::manage::WebhookChanges;
use sender::registry::{Auth, AuthMethod, BasicAuth};
use sender::retry::RetryPolicy;
use sender::store::DeliveryFilter;
use verify::RedactedString;

use crate::sender::Harness;
use crate::support::receiver::Process;

/// The newest request.
fn one_request() -> DeliveryFilter {
    DeliveryFilter {
        limit: 1,
        ..DeliveryFilter::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_401_then_200_gets_every_attempt_judged_by_its_real_status() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    // The receiver closes a kept-alive connection idle for 300 ms; the sender retries every
    // 700 ms, so every retry finds its connection closed by the receiver meanwhile.
    let receiver = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--path",
            "/webhook",
            "--store",
            &store,
            "--ui",
            "off",
            "--output",
            "quiet",
            "--header-timeout",
            "300ms",
            "--basic-user",
            "crm",
            "--basic-password",
            "right-password",
        ],
        &[],
    );
    let harness = Harness::new();
    let webhook = harness.add(
        &format!("http://{}/webhook", receiver.addr),
        "COURSE_ENROLLMENT",
        |changes: &mut WebhookChanges| {
            changes.auth = Some(AuthMethod::Basic);
            changes.username = Some("crm".into());
            changes.password = Some(RedactedString::from("wrong-password".to_owned()));
        },
    );
    harness.enqueue("COURSE_ENROLLMENT", 1, 7);
    let response_timeout = Duration::from_secs(3);
    let config = DeliveryConfig {
        response_timeout,
        retry: RetryPolicy {
            initial: Duration::from_millis(700),
            cap: Duration::from_millis(700),
            retention: Duration::from_secs(60),
        },
        poll_interval: Duration::from_millis(20),
        ..crate::sender::fast_config()
    };
    let engine = Engine::http(harness.state.clone(), config);
    let drain = tokio::spawn({
        let ids = vec![webhook.id.clone()];
        async move { engine.run(Mode::Drain(ids), std::future::pending()).await }
    });

    // Three refusals, then the right password: the fourth attempt is accepted.
    let attempts = |harness: &Harness| {
        let listed = harness.state.deliveries(&one_request()).expect("list");
        listed.first().map_or(0, |summary| summary.attempts)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while attempts(&harness) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "three attempts within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fixed = harness
        .state
        .webhook(&webhook.id)
        .expect("read")
        .expect("found");
    fixed.auth = Auth::Basic(BasicAuth {
        username: "crm".into(),
        password: "right-password".into(),
    });
    let read_at = fixed.updated_at_ms;
    fixed.updated_at_ms = read_at + 1;
    harness
        .state
        .update_webhook(&fixed, read_at)
        .expect("fix the password");
    tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("delivered within 30 s")
        .expect("joined")
        .expect("engine ran");

    let listed = harness.state.deliveries(&one_request()).expect("list");
    let detail = harness
        .state
        .delivery(&listed[0].id)
        .expect("read")
        .expect("found");
    assert_eq!(detail.summary.state, "delivered", "{detail:#?}");
    let outcomes: Vec<String> = detail.attempt_log.iter().map(|a| a.outcome()).collect();
    assert!(outcomes.len() >= 4, "{outcomes:?}");
    let (refused, accepted) = outcomes.split_at(outcomes.len() - 1);
    assert!(
        refused.iter().all(|outcome| outcome == "401"),
        "{outcomes:?}"
    );
    assert_eq!(accepted, ["200"], "{outcomes:?}");
    for attempt in &detail.attempt_log {
        assert!(
            u128::try_from(attempt.latency_ms).expect("positive")
                < response_timeout.as_millis() / 2,
            "attempt {} waited {} ms for a receiver that answers at once: {outcomes:?}",
            attempt.attempt,
            attempt.latency_ms
        );
    }
}
