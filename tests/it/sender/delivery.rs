//! The delivery engine over real HTTP against the fake endpoint, with compressed durations.

use std::time::Duration;

use common::on_each_store;
use sender::delivery::{Engine, Mode};
use sender::registry::{AuthMethod, SchemeName, Status};
use sender::store::DeliveryFilter;
use verify::SignatureFile;

use super::{fast_config, Harness};
use crate::support::endpoint::{refused_addr, FakeEndpoint, Received, Reply};

const MS: Duration = Duration::from_millis(1);

/// Gaps between consecutive requests.
fn gaps(received: &[Received]) -> Vec<Duration> {
    received
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .collect()
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_on_schedule_with_the_same_id_and_body_in_order(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.script([
        Reply::status(500),
        Reply::status(503),
        Reply::status(500),
        Reply::status(502),
    ]);
    // Signed, so every request carries a `webhook-id` that retries must keep.
    let webhook = harness.add(&endpoint.url(), "COURSE_ENROLLMENT", |c| {
        c.auth = Some(AuthMethod::Signature);
    });
    let events = harness.enqueue("COURSE_ENROLLMENT", 3, 1);
    let report = harness.drain(fast_config(), &[&webhook.id]).await;
    assert!(report.disabled.is_empty());

    let received = endpoint.received();
    assert_eq!(received.len(), 7, "4 failures + 3 deliveries");
    // The first request is sent five times with the same id and the same bytes.
    let first = &received[0];
    let first_id = first
        .header("webhook-id")
        .expect("a signed request has an id");
    for retry in &received[1..5] {
        assert_eq!(
            retry.header("webhook-id"),
            Some(first_id),
            "same id on every retry"
        );
        assert_eq!(retry.body, first.body, "same bytes on every retry");
    }
    let next_id = received[5].header("webhook-id").expect("id");
    assert_ne!(next_id, first_id, "the next request is another message");
    // Strict order: nothing after the first event is sent until it is acknowledged.
    let order: Vec<String> = received.iter().flat_map(Received::event_ids).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(order[..5], [ids[0]; 5]);
    assert_eq!(order[5..], ids[1..]);
    // 20 ms, 40 ms, 80 ms, then capped at 80 ms.
    let expected = [20, 40, 80, 80];
    for (gap, want) in gaps(&received[..5]).iter().zip(expected) {
        // Measured at the endpoint, so a request held up on its way (a busy machine) can
        // shorten the next gap by that much: a few milliseconds of slack below.
        assert!(
            *gap + MS * 5 >= MS * want && *gap < MS * (want + 1500),
            "gap {gap:?}, expected about {want} ms"
        );
    }
    // Every attempt is logged.
    let rows = harness
        .state
        .deliveries(&DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        })
        .expect("deliveries");
    let first_row = rows
        .iter()
        .find(|r| r.attempts == 5)
        .expect("the retried request");
    let detail = harness
        .state
        .delivery(&first_row.id)
        .expect("read")
        .expect("found");
    let statuses: Vec<Option<i64>> = detail.attempt_log.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [Some(500), Some(503), Some(500), Some(502), Some(200)]
    );
    assert_eq!(detail.summary.state, "delivered");
    assert!(detail.attempt_log[0]
        .response_head
        .as_deref()
        .is_some_and(|h| h.contains("500")));
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.script([Reply::status(429).header("retry-after", "1")]);
    let webhook = harness.add(&endpoint.url(), "all", |_| {});
    harness.enqueue("CI_STATS", 1, 2);
    harness.drain(fast_config(), &[&webhook.id]).await;
    let received = endpoint.received();
    assert_eq!(received.len(), 2);
    let gap = gaps(&received)[0];
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_secs(4),
        "Retry-After: 1 gave a gap of {gap:?} (the schedule alone says 20 ms)"
    );
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_count_as_failures_and_are_not_followed(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    let elsewhere = FakeEndpoint::start().await;
    endpoint.script([
        Reply::status(301).header("location", &elsewhere.url()),
        Reply::status(307).header("location", &elsewhere.url()),
    ]);
    let webhook = harness.add(&endpoint.url(), "all", |_| {});
    harness.enqueue("COURSE_COMPLETED", 1, 3);
    harness.drain(fast_config(), &[&webhook.id]).await;
    assert_eq!(endpoint.received().len(), 3, "301, 307, then 200");
    assert!(
        elsewhere.received().is_empty(),
        "Location is never followed"
    );
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_slower_than_the_timeout_is_a_failure(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.script([Reply::ok().delayed(Duration::from_secs(2))]);
    let webhook = harness.add(&endpoint.url(), "all", |_| {});
    harness.enqueue("COURSE_ENROLLMENT", 2, 4);
    harness.drain(fast_config(), &[&webhook.id]).await;
    let received = endpoint.received();
    assert_eq!(
        received.len(),
        3,
        "the slow attempt, its retry, the second event"
    );
    assert_eq!(received[0].body, received[1].body);
    let gap = gaps(&received)[0];
    // 300 ms response timeout + 20 ms first retry delay.
    assert!(gap >= MS * 320 && gap < MS * 3000, "gap {gap:?}");
    let rows = harness
        .state
        .deliveries(&DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        })
        .expect("rows");
    let retried = rows.iter().find(|r| r.attempts == 2).expect("retried row");
    let detail = harness
        .state
        .delivery(&retried.id)
        .expect("read")
        .expect("row");
    let error = detail.attempt_log[0].error.clone().unwrap_or_default();
    assert!(error.contains("response timeout"), "{error}");
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_until_the_endpoint_comes_up(harness: Harness) {
    let addr = refused_addr();
    let webhook = harness.add(&format!("http://{addr}/webhook"), "all", |_| {});
    harness.enqueue("LEARNING_OBJECT_DRAFT", 2, 5);
    let engine = Engine::http(harness.state.clone(), fast_config());
    let run = tokio::spawn({
        let engine = engine.clone();
        let id = webhook.id.clone();
        async move {
            engine
                .run(Mode::Drain(vec![id]), std::future::pending())
                .await
        }
    });
    // Wait until a few refused attempts are logged, then start listening on that port.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = harness
            .state
            .deliveries(&DeliveryFilter {
                limit: 5,
                ..DeliveryFilter::default()
            })
            .expect("rows");
        if rows.iter().any(|r| r.attempts >= 3) {
            let row = rows.iter().find(|r| r.attempts >= 3).expect("row");
            let error = row.last_error.clone().unwrap_or_default();
            assert!(error.contains("refused"), "{error}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refused attempts logged"
        );
        tokio::time::sleep(MS * 5).await;
    }
    let endpoint = FakeEndpoint::start_on(addr).await;
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("drained")
        .expect("joined")
        .expect("ran");
    let received = endpoint.received();
    assert_eq!(received.len(), 2, "each event once the endpoint is up");
    assert_eq!(harness.state.counts(None).expect("counts").delivered, 2);
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_end_disables_the_webhook_and_expires_its_pending_events(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(Reply::status(500));
    let healthy = FakeEndpoint::start().await;
    let failing = harness.add(&endpoint.url(), "all", |_| {});
    let other = harness.add(&healthy.url(), "all", |_| {});
    harness.enqueue("COURSE_ENROLLMENT", 3, 6);
    harness.enqueue("COURSE_ENROLLMENT_BATCH", 4, 7);
    let mut config = fast_config();
    // Long enough that a busy machine still fits several attempts between enqueue and the end.
    config.retry.retention = Duration::from_millis(1200);
    let report = harness.drain(config, &[&failing.id, &other.id]).await;
    assert_eq!(report.disabled, std::slice::from_ref(&failing.id));

    // Attempts at about 0, 20, 60, 140 ms, then every 80 ms, and a last one when the 1200 ms
    // retention ends: up to eighteen, fewer when a loaded machine runs them late; all are of
    // the first event.
    let received = endpoint.received();
    assert!(
        (3..=18).contains(&received.len()),
        "{} attempts",
        received.len()
    );
    assert!(received.iter().all(|r| r.body == received[0].body));
    let webhook = harness
        .state
        .webhook(&failing.id)
        .expect("read")
        .expect("kept");
    assert!(matches!(webhook.status, Status::Disabled(ref reason) if reason.contains("retention")));
    let counts = harness.state.counts(Some(&failing.id)).expect("counts");
    assert_eq!((counts.pending, counts.staged, counts.delivered), (0, 0, 0));
    assert_eq!(
        counts.expired,
        3 + 1,
        "3 real-time requests and 1 batch of 4"
    );
    // The other webhook is unaffected: its own queue, its own order.
    assert_eq!(healthy.received().len(), 4);
    assert_eq!(
        harness.state.counts(Some(&other.id)).expect("c").delivered,
        4
    );
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_events_are_collected_per_interval_or_until_full(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    harness.add(
        &endpoint.url(),
        "LEARNER_PROGRESS,COURSE_ENROLLMENT",
        |_| {},
    );
    let mut config = fast_config();
    config.batch_interval = Duration::from_millis(400);
    config.batch_size = 10;
    let engine = Engine::http(harness.state.clone(), config);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        engine
            .run(Mode::Serve, async {
                let _ = stop_rx.await;
            })
            .await
    });
    let started = std::time::Instant::now();
    // 23 batch events: two full batches go at once, the remaining 3 after the interval.
    let batch = harness.enqueue("LEARNER_PROGRESS", 23, 8);
    let realtime = harness.enqueue("COURSE_ENROLLMENT", 1, 9);
    let received = endpoint.wait_for(4, Duration::from_secs(10)).await;
    let sizes: Vec<usize> = received.iter().map(|r| r.event_ids().len()).collect();
    let last = received
        .iter()
        .find(|r| r.event_ids().len() == 3)
        .expect("partial batch");
    assert!(
        last.at.duration_since(started) >= Duration::from_millis(380),
        "the partial batch waited for its interval"
    );
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 3, 10, 10], "{sizes:?}");
    let ids: Vec<String> = received
        .iter()
        .filter(|r| r.event_ids().len() > 1)
        .flat_map(Received::event_ids)
        .collect();
    let expected: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, expected, "batch events in order, each once");
    assert!(received
        .iter()
        .any(|r| r.event_ids() == [realtime[0].event_id.clone()]));
    // One envelope per request, in the documented byte form.
    let parsed = verify::parse_envelope(&received[0].body).expect("valid envelope");
    assert_eq!(parsed.account_id, 1010);
    stop_tx.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stopped")
        .expect("joined")
        .expect("ran");
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_verify_with_both_schemes_and_during_a_rotation(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    let standard = harness.add(&endpoint.url(), "COURSE_ENROLLMENT", |c| {
        c.auth = Some(AuthMethod::Signature);
    });
    let body_hmac = harness.add(&endpoint.url(), "COURSE_ENROLLMENT", |c| {
        c.auth = Some(AuthMethod::Signature);
        c.scheme = Some(SchemeName::BodyHmacSha256);
        c.signature_prefix = Some("sha256=".into());
    });
    let basic = harness.add(&endpoint.url(), "COURSE_ENROLLMENT", |c| {
        c.auth = Some(AuthMethod::Basic);
        c.username = Some("crm".into());
        c.password = Some("s3cret:with:colons".into());
    });
    let file_of = |id| match harness.state.webhook(id).expect("r").expect("w").auth {
        sender::registry::Auth::Signature(file) => file,
        other => panic!("{other:?}"),
    };
    let old_file = file_of(&standard.id);
    harness.enqueue("COURSE_ENROLLMENT", 2, 10);
    harness
        .drain(fast_config(), &[&standard.id, &body_hmac.id, &basic.id])
        .await;

    // Rotate the standard webhook's secret; both secrets sign until the overlap ends.
    let mut webhook = harness.state.webhook(&standard.id).expect("r").expect("w");
    if let sender::registry::Auth::Signature(file) = &mut webhook.auth {
        file.rotate(&verify::SigningSecret::generate(), verify::unix_now(), 3600);
    }
    harness
        .state
        .update_webhook(&webhook, webhook.updated_at_ms)
        .expect("update");
    let rotated_file = file_of(&standard.id);
    harness.enqueue("COURSE_ENROLLMENT", 2, 11);
    harness
        .drain(fast_config(), &[&standard.id, &body_hmac.id, &basic.id])
        .await;

    let received = endpoint.received();
    assert_eq!(received.len(), 12);
    let keyring = |file: &SignatureFile| file.keyring().expect("keyring");
    let only_new = {
        let mut file = rotated_file.clone();
        file.secrets.remove(0);
        file
    };
    let hmac_keyring = keyring(&file_of(&body_hmac.id));
    let basic_credentials = verify::BasicCredentials::new("crm", "s3cret:with:colons").expect("c");
    let (mut standard_seen, mut hmac_seen, mut basic_seen) = (0, 0, 0);
    for request in &received {
        let headers = &request.headers;
        if request.header("webhook-signature").is_some() {
            standard_seen += 1;
            let signatures = request
                .header("webhook-signature")
                .expect("sig")
                .split(' ')
                .count();
            if standard_seen <= 2 {
                keyring(&old_file)
                    .verify(headers, &request.body)
                    .expect("old secret");
                assert_eq!(signatures, 1);
            } else {
                // During the rotation each request carries both signatures.
                assert_eq!(signatures, 2);
                keyring(&old_file)
                    .verify(headers, &request.body)
                    .expect("old still verifies");
                keyring(&only_new)
                    .verify(headers, &request.body)
                    .expect("new verifies");
            }
        } else if request.header("x-alm-signature").is_some() {
            hmac_seen += 1;
            assert!(request
                .header("x-alm-signature")
                .expect("h")
                .starts_with("sha256="));
            hmac_keyring
                .verify(headers, &request.body)
                .expect("body-hmac verifies");
        } else {
            basic_seen += 1;
            basic_credentials.verify(headers).expect("basic verifies");
        }
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    assert_eq!((standard_seen, hmac_seen, basic_seen), (4, 4, 4));
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_does_not_hold_up_another_and_order_holds_per_webhook(harness: Harness) {
    let slow = FakeEndpoint::start().await;
    slow.answer(Reply::status(500));
    // 20 ms per answer: the fast webhook's events take at least 400 ms in all, while the slow
    // one fails and retries every 20 to 80 ms.
    let fast = FakeEndpoint::start().await;
    fast.answer(Reply::ok().delayed(Duration::from_millis(20)));
    let a = harness.add(&slow.url(), "COURSE_ENROLLMENT", |_| {});
    let b = harness.add(&fast.url(), "COURSE_ENROLLMENT", |_| {});
    let events = harness.enqueue("COURSE_ENROLLMENT", 20, 12);
    // The slow webhook fails until the fast one has every event: were the fast one held up
    // behind it, that would never come, and the drain would time out.
    let recover_when_fast_is_done = async {
        fast.wait_for(events.len(), Duration::from_secs(30)).await;
        slow.answer(Reply::ok());
    };
    let ids = [&a.id, &b.id];
    let ((), _) = tokio::join!(
        recover_when_fast_is_done,
        harness.drain(fast_config(), &ids)
    );
    let expected: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let (slow_received, fast_received) = (slow.received(), fast.received());
    // Both were worked at once: the slow one was already failing before the fast one was done.
    let fast_done = fast_received.last().expect("fast requests").at;
    assert!(
        slow_received[0].at < fast_done && slow_received[0].status == 500,
        "the slow webhook's first attempt came after the fast one had finished"
    );
    let mut seen_slow: Vec<String> = slow_received
        .iter()
        .flat_map(Received::event_ids)
        .collect();
    seen_slow.dedup();
    assert_eq!(seen_slow, expected);
    let seen_fast: Vec<String> = fast_received
        .iter()
        .flat_map(Received::event_ids)
        .collect();
    assert_eq!(seen_fast, expected);
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_mode_delivers_everything_once_and_retired_webhooks_get_nothing(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    let retired = FakeEndpoint::start().await;
    let webhook = harness.add(&endpoint.url(), "all", |_| {});
    let off = harness.add(&retired.url(), "all", |c| c.active = Some(false));
    let events = harness.enqueue("COURSE_COMPLETED", 200, 13);
    let mut config = fast_config();
    config.parallel = 8;
    harness.drain(config, &[&webhook.id, &off.id]).await;
    let mut seen: Vec<String> = endpoint
        .received()
        .iter()
        .flat_map(Received::event_ids)
        .collect();
    seen.sort();
    let mut expected: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(endpoint.received().iter().all(|r| r.path == "/webhook"));
    assert!(retired.received().is_empty());
    assert_eq!(
        harness.state.counts(Some(&off.id)).expect("c").pending,
        0,
        "not even queued"
    );
}}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_never_deliver_to_the_same_webhook_at_once(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    // Slow answers keep the first engine busy while the second one looks for work.
    endpoint.answer(Reply::ok().delayed(MS * 5));
    let webhook = harness.add(&endpoint.url(), "all", |_| {});
    let events = harness.enqueue("COURSE_ENROLLMENT", 60, 14);
    let first = Engine::http(harness.state.clone(), fast_config());
    let second = Engine::http(harness.state.clone(), fast_config());
    let ids = vec![webhook.id.clone()];
    let (a, b) = tokio::join!(
        first.run(Mode::Drain(ids.clone()), std::future::pending()),
        second.run(Mode::Drain(ids.clone()), std::future::pending()),
    );
    let handed = a.expect("a").handed_over.len() + b.expect("b").handed_over.len();
    assert!(handed >= 1, "one engine found the lease taken");
    let seen: Vec<String> = endpoint
        .received()
        .iter()
        .flat_map(Received::event_ids)
        .collect();
    let expected: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    // Handed over mid-way or not, every event went exactly once and in order: two engines
    // on one webhook would show as a repeat or a swap here.
    assert_eq!(seen, expected);
}}
