//! The delivery loop under paused tokio time, with Learning Manager's real numbers: seven days
//! of retries run in well under a second. (Unit tests of `delivery`: tokio's `test-util`
//! feature is a dev-dependency of the sender only.)
//!
//! The transport here is a script instead of HTTP, because under paused time tokio jumps the
//! clock to the next timer whenever the runtime is idle, which would fire the response timeout
//! while a real socket is still talking. Storage is real: every case written with
//! [`on_each_store!`] runs once on a SQLite file and once on a throwaway PostgreSQL database
//! (skipped loudly where PostgreSQL is missing, failed under `CI=true`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Answer, Clock, Engine, Mode, Outbound, Transport};
use crate::config::DeliveryConfig;
use crate::lease::HeldLease;
use crate::manage::WebhookChanges;
use crate::registry::Status;
use crate::retry::RetryPolicy;
use crate::store::sqlite::SqliteState;
use crate::store::{DeliveryFilter, Lease, Queue, Recorded};
use crate::testing::{Harness, NOW_MS};

use common::on_each_store;

/// Answers from a function of the attempt number, and records when each request came.
#[derive(Clone)]
struct Script {
    answer: Arc<dyn Fn(usize) -> Answer + Send + Sync>,
    sent: Arc<Mutex<Vec<(tokio::time::Instant, Outbound)>>>,
}

impl Transport for Script {
    type Lane = ();

    fn lane(&self) {}

    async fn send(&self, _lane: &mut (), request: &Outbound) -> Answer {
        let mut sent = self.sent.lock().expect("lock");
        sent.push((tokio::time::Instant::now(), request.clone()));
        (self.answer)(sent.len())
    }
}

fn status(status: u16, retry_after: Option<&str>) -> Answer {
    Answer::Response {
        status,
        retry_after: retry_after.map(str::to_owned),
        head: String::new(),
    }
}

/// Learning Manager's numbers; the engine wakes rarely so seven days stay cheap to simulate.
fn real_config() -> DeliveryConfig {
    DeliveryConfig {
        retry: RetryPolicy::default(),
        poll_interval: Duration::from_secs(3600),
        lease_ttl: Duration::from_secs(3 * 3600),
        ..DeliveryConfig::default()
    }
}

on_each_store! {
#[tokio::test(start_paused = true)]
async fn seven_days_of_failures_follow_the_schedule_then_disable_the_webhook(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/never", "COURSE_ENROLLMENT");
    // Enqueued "now" in the engine's clock, so retention counts from the engine's start. Two
    // different events (one generator), so the order check below can tell them apart.
    let events = harness.enqueue(&webhook, "COURSE_ENROLLMENT", 2, 1);
    assert_ne!(events[0].event_id, events[1].event_id);

    let script = Script {
        answer: Arc::new(|_| status(500, None)),
        sent: Arc::default(),
    };
    let start = tokio::time::Instant::now();
    let engine = Engine::new(
        harness.state.clone(),
        script.clone(),
        real_config(),
        Clock::starting_at(NOW_MS),
    );
    let report = engine
        .run(
            Mode::Drain(vec![webhook.id.clone()]),
            std::future::pending(),
        )
        .await
        .expect("ran");
    assert_eq!(report.disabled, std::slice::from_ref(&webhook.id));

    let sent = script.sent.lock().expect("lock").clone();
    let offsets: Vec<u64> = sent
        .iter()
        .map(|(at, _)| at.duration_since(start).as_secs())
        .collect();
    // 0, 5, 15, 35, 75, 155, 315, then every 300 s, and a last attempt when the seven days
    // are over.
    assert_eq!(offsets[..9], [0, 5, 15, 35, 75, 155, 315, 615, 915]);
    let (last, every_five_minutes) = offsets.split_last().expect("attempts");
    assert!(every_five_minutes
        .windows(2)
        .skip(6)
        .all(|w| w[1] - w[0] == 300));
    let week = 7 * 24 * 3600;
    assert_eq!(*last, week, "the last attempt is when retention ends");
    assert_eq!(sent.len(), 1 + 6 + (week - 315) as usize / 300 + 1);
    // Strict order: the second event was never sent while the first kept failing.
    assert!(sent
        .iter()
        .all(|(_, request)| request.body == sent[0].1.body));

    let stored = harness.state.webhook(&webhook.id).expect("r").expect("w");
    assert!(matches!(stored.status, Status::Disabled(_)));
    let counts = harness.state.counts(None).expect("counts");
    assert_eq!((counts.pending, counts.expired), (0, 2));
}}

on_each_store! {
#[tokio::test(start_paused = true)]
async fn retry_after_seconds_and_dates_move_the_next_attempt(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/never", "all");
    harness.enqueue(&webhook, "CI_STATS", 1, 2);
    // Attempt 2 is told to come back at an HTTP date one hour after the engine's start.
    let date = "Sat, 28 Nov 2026 01:00:00 GMT";
    assert_eq!(
        verify::timestamp::parse_iso_millis("2026-11-28T00:00:00Z"),
        Some(NOW_MS)
    );
    let script = Script {
        answer: Arc::new(move |n| match n {
            1 => status(429, Some("3600")),
            2 => status(503, Some(date)),
            3 => status(301, None),
            _ => status(204, None),
        }),
        sent: Arc::default(),
    };
    let start = tokio::time::Instant::now();
    let engine = Engine::new(
        harness.state.clone(),
        script.clone(),
        real_config(),
        Clock::starting_at(NOW_MS),
    );
    engine
        .run(
            Mode::Drain(vec![webhook.id.clone()]),
            std::future::pending(),
        )
        .await
        .expect("ran");
    let offsets: Vec<u64> = script
        .sent
        .lock()
        .expect("lock")
        .iter()
        .map(|(at, _)| at.duration_since(start).as_secs())
        .collect();
    // 429 Retry-After 3600 → 3600; the date says 01:00:00, which is now: no sooner than the
    // schedule's first step, 5 s; 301 is a failure and the schedule's third delay applies: 20 s.
    assert_eq!(offsets, [0, 3600, 3605, 3625]);
    let rows = harness
        .state
        .deliveries(&DeliveryFilter {
            limit: 1,
            ..DeliveryFilter::default()
        })
        .expect("rows");
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("delivered", 4));
}}

#[test]
fn debug_output_hides_credentials_and_signatures() {
    let outbound = Outbound {
        url: "https://crm.example/hook".parse().expect("a Target URL"),
        target_policy: common::target_guard::TargetPolicy::AnyAddress,
        headers: vec![
            (
                "authorization".to_owned(),
                "Basic Y3JtOnMzY3JldA==".to_owned(),
            ),
            ("webhook-signature".to_owned(), "v1,c2lnbmF0dXJl".to_owned()),
            ("webhook-id".to_owned(), "msg_1".to_owned()),
        ],
        body: bytes::Bytes::from_static(b"{}"),
    };
    let printed = format!("{outbound:?}");
    assert!(!printed.contains("Y3JtOnMzY3JldA") && !printed.contains("c2lnbmF0dXJl"));
    assert!(printed.contains("msg_1") && printed.contains("[redacted]"));
}

#[tokio::test(start_paused = true)]
async fn the_system_clock_is_the_wall_clock_whatever_tokio_time_does() {
    // A monotonic clock stops during a suspend and ignores NTP steps; signatures and leases
    // need the wall clock. Here tokio's clock jumps an hour, as a suspend looks from inside.
    let system = Clock::system();
    let test_clock = Clock::starting_at(NOW_MS);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let drift = (system.now_ms() - verify::unix_now_ms()).abs();
    assert!(drift < 1000, "system clock drifted {drift} ms");
    assert_eq!(
        test_clock.now_ms(),
        NOW_MS + 3_600_000,
        "test clock follows tokio"
    );
}

#[test]
fn a_registration_waits_for_another_process_writing_instead_of_failing() {
    // Another process (here a second connection) holds the write lock and commits a change
    // while this one registers a webhook: registering reads (the count of five) and then
    // writes, so it must take the write lock first and wait, not fail with "database is
    // locked" when its read snapshot turns stale.
    let harness = Harness::sqlite();
    let path = harness._dir.path().join("sender.db");
    let (locked, is_locked) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || {
        let mut connection = rusqlite::Connection::open(&path).expect("open");
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("lock");
        transaction
            .execute("UPDATE webhooks SET updated_at_ms = updated_at_ms", [])
            .expect("write");
        locked.send(()).expect("signal");
        std::thread::sleep(Duration::from_millis(300));
        transaction.commit().expect("commit");
    });
    is_locked.recv().expect("the other writer holds the lock");
    let webhook = WebhookChanges {
        name: Some("second".into()),
        url: Some("http://127.0.0.1:9/hook".parse().expect("a Target URL")),
        events: Some("all".into()),
        ..WebhookChanges::default()
    }
    .create(NOW_MS)
    .expect("valid");
    harness
        .state
        .insert_webhook(&webhook)
        .expect("registered after waiting for the other writer");
    other.join().expect("other writer");
    assert!(harness.state.webhook(&webhook.id).expect("read").is_some());
}

on_each_store! {
#[test]
fn recording_an_expired_request_disables_the_webhook_in_the_same_transaction(harness: Harness) {
    // A crash right after the outcome is committed must not leave the webhook active with
    // requests queued behind the expired one: `record` itself gives the webhook up.
    let webhook = harness.add("http://127.0.0.1:9/never", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 3, 7);
    let head = harness
        .state
        .pending(&webhook.id, 1, true, NOW_MS, 0)
        .expect("pending")
        .remove(0);
    let lease = harness.lease(&webhook, "pid:1:worker", NOW_MS);
    let recorded = harness
        .state
        .record(&Harness::token(&webhook, &lease), &[crate::store::AttemptRecord {
            request_id: head.id,
            attempt: 2016,
            started_at_ms: NOW_MS + 604_800_000,
            status: Some(500),
            error: None,
            latency_ms: 3,
            response_head: String::new(),
            next: crate::store::RequestState::Expired,
        }])
        .expect("recorded");
    assert_eq!(
        recorded,
        Recorded::Written { expired_events: 3 },
        "the request itself and the two behind it"
    );
    let stored = harness
        .state
        .webhook(&webhook.id)
        .expect("read")
        .expect("kept");
    let Status::Disabled(reason) = stored.status else {
        panic!("still {:?}", stored.status);
    };
    assert!(reason.contains("retention ended"), "{reason}");
    let counts = harness.state.counts(None).expect("counts");
    assert_eq!((counts.pending, counts.expired), (0, 3));
}}

on_each_store! {
#[test]
fn an_edit_does_not_undo_a_disable_that_happened_after_it_read_the_webhook(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "all");
    // The command reads the webhook...
    let mut edited = harness
        .state
        .webhook(&webhook.id)
        .expect("read")
        .expect("kept");
    let read_at_ms = edited.updated_at_ms;
    // ...a worker gives it up at the end of retention meanwhile...
    harness
        .state
        .give_up(&webhook.id, "retention ended", read_at_ms + 10)
        .expect("given up");
    // ...and the command writes its whole record back.
    edited.description = "renamed".into();
    edited.updated_at_ms = read_at_ms + 20;
    let error = harness
        .state
        .update_webhook(&edited, read_at_ms)
        .expect_err("refused");
    assert!(error.to_string().contains("changed meanwhile"), "{error:#}");
    let stored = harness
        .state
        .webhook(&webhook.id)
        .expect("read")
        .expect("kept");
    assert!(
        matches!(stored.status, Status::Disabled(_)),
        "still disabled"
    );
    // Read again, the edit goes through.
    let mut again = stored;
    let read_at_ms = again.updated_at_ms;
    again.description = "renamed".into();
    harness
        .state
        .update_webhook(&again, read_at_ms)
        .expect("written");
}}

/// Answers after `delay` (tokio time), failing the very first request once, and records
/// when each body was sent.
#[derive(Clone)]
struct Slow {
    delay: Duration,
    sent: Arc<Mutex<Vec<(tokio::time::Instant, bytes::Bytes)>>>,
}

impl Transport for Slow {
    type Lane = ();

    fn lane(&self) {}

    async fn send(&self, _lane: &mut (), request: &Outbound) -> Answer {
        tokio::time::sleep(self.delay).await;
        let mut sent = self.sent.lock().expect("lock");
        let first_of_all = sent.is_empty();
        sent.push((tokio::time::Instant::now(), request.body.clone()));
        status(if first_of_all { 500 } else { 200 }, None)
    }
}

on_each_store! {
#[tokio::test(start_paused = true)]
async fn with_relaxed_order_a_retry_is_not_starved_by_a_long_queue_behind_it(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    // 4 lanes at 10 ms a request: the queue takes about 20 s to go through.
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 8000, 3);
    let transport = Slow {
        delay: Duration::from_millis(10),
        sent: Arc::default(),
    };
    let start = tokio::time::Instant::now();
    let engine = Engine::new(
        harness.state.clone(),
        transport.clone(),
        DeliveryConfig {
            parallel: 4,
            poll_interval: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(3600),
            ..DeliveryConfig::default()
        },
        Clock::starting_at(NOW_MS),
    );
    engine
        .run(
            Mode::Drain(vec![webhook.id.clone()]),
            std::future::pending(),
        )
        .await
        .expect("ran");
    let sent = transport.sent.lock().expect("lock").clone();
    let first_body = sent[0].1.clone();
    let retried: Vec<f64> = sent
        .iter()
        .skip(1)
        .filter(|(_, body)| *body == first_body)
        .map(|(at, _)| at.duration_since(start).as_secs_f64())
        .collect();
    let queue_took = sent
        .last()
        .expect("sent")
        .0
        .duration_since(start)
        .as_secs_f64();
    assert_eq!(retried.len(), 1, "retried once, then delivered");
    // Due 5 s after the failure: found within a poll interval or so, not after the queue.
    assert!(
        retried[0] < 6.0 && queue_took > 15.0,
        "retry at {:.2} s, queue done at {queue_took:.2} s",
        retried[0]
    );
}}

#[test]
fn a_lease_from_another_pid_namespace_is_judged_by_its_expiry_not_by_its_pid() {
    let harness = Harness::sqlite();
    let webhook = harness.add("http://127.0.0.1:9/hook", "all");
    let path = harness._dir.path().join("sender.db");
    let connection = rusqlite::Connection::open(&path).expect("open");
    // A pid that runs nowhere here, held until far in the future.
    let write = |host: &str| {
        connection
            .execute(
                "INSERT INTO leases (webhook_id, owner, pid, expires_at_ms, host)
                 VALUES (?1, 'pid:999999999:other', 999999999, ?2, ?3)
                 ON CONFLICT (webhook_id) DO UPDATE SET owner = excluded.owner,
                     pid = excluded.pid, expires_at_ms = excluded.expires_at_ms,
                     host = excluded.host",
                rusqlite::params![webhook.id.as_str(), NOW_MS + 60_000, host],
            )
            .expect("lease");
    };
    // Written from another container (another pid namespace): its pid means nothing here,
    // so the lease holds until it expires.
    write("another-boot/pid:[1]");
    let lease = harness
        .state
        .try_lease(&webhook.id, "pid:1:me", NOW_MS, 15_000)
        .expect("lease");
    assert!(matches!(lease, Lease::HeldBy(_)), "{lease:?}");
    assert!(matches!(
        harness
            .state
            .try_lease(&webhook.id, "pid:1:me", NOW_MS + 60_001, 15_000)
            .expect("lease"),
        Lease::Acquired { .. }
    ));
    // Written in this pid space by a process that is gone: taken at once.
    let here: String = connection
        .query_row(
            "SELECT host FROM leases WHERE webhook_id = ?1",
            [webhook.id.as_str()],
            |row| row.get(0),
        )
        .expect("host");
    write(&here);
    assert!(matches!(
        harness
            .state
            .try_lease(&webhook.id, "pid:1:me", NOW_MS, 15_000)
            .expect("lease"),
        Lease::Acquired { .. }
    ));
}

#[test]
fn a_state_file_from_before_lease_hosts_is_brought_up_to_date() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.db");
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute_batch(
            "CREATE TABLE leases (webhook_id TEXT PRIMARY KEY, owner TEXT NOT NULL,
                                  pid INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL);
             INSERT INTO leases VALUES ('wh_old', 'pid:1:old', 1, 0);",
        )
        .expect("old layout");
    let state = SqliteState::open(&path).expect("opened and updated");
    let lease = state
        .try_lease(
            &crate::registry::WebhookId("wh_old".into()),
            "pid:2:new",
            NOW_MS,
            1000,
        )
        .expect("lease");
    assert!(
        matches!(lease, Lease::Acquired { .. }),
        "the expired old lease is taken: {lease:?}"
    );
}

on_each_store! {
#[tokio::test]
async fn the_oldest_staged_event_says_when_a_batch_goes(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT_BATCH");
    let state = &harness.state;
    assert_eq!(state.oldest_staged_at_ms(&webhook.id).expect("read"), None);
    harness.enqueue(&webhook, "COURSE_ENROLLMENT_BATCH", 3, 4);
    assert_eq!(
        state.oldest_staged_at_ms(&webhook.id).expect("read"),
        Some(NOW_MS)
    );
    let other = harness.add("http://127.0.0.1:9/other", "CI_STATS");
    assert_eq!(state.oldest_staged_at_ms(&other.id).expect("read"), None);
    // Made into a request: nothing is staged any more.
    state
        .flush_batches(&webhook.id, NOW_MS, 60_000, 100, true)
        .expect("flush");
    assert_eq!(state.oldest_staged_at_ms(&webhook.id).expect("read"), None);
}}

on_each_store! {
#[tokio::test(start_paused = true)]
async fn a_batch_filled_by_another_process_goes_out_without_waiting_for_the_interval(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT_BATCH");
    // One batch event staged before the worker starts: due at the end of the 60 s interval.
    harness.enqueue(&webhook, "COURSE_ENROLLMENT_BATCH", 1, 4);
    let script = Script {
        answer: Arc::new(|_| status(200, None)),
        sent: Arc::default(),
    };
    let engine = Engine::new(
        harness.state.clone(),
        script.clone(),
        DeliveryConfig {
            batch_interval: Duration::from_secs(60),
            batch_size: 100,
            poll_interval: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(3600),
            ..DeliveryConfig::default()
        },
        Clock::starting_at(NOW_MS),
    );
    let start = tokio::time::Instant::now();
    // A second process (here: the same state file) fills the batch one second in.
    let other_process = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        harness.enqueue(&webhook, "COURSE_ENROLLMENT_BATCH", 99, 5);
        tokio::time::sleep(Duration::from_secs(20)).await;
    };
    engine.run(Mode::Serve, other_process).await.expect("ran");
    let sent = script.sent.lock().expect("lock").clone();
    assert!(
        !sent.is_empty(),
        "the full batch went out before the interval ended"
    );
    let first = sent[0].0.duration_since(start).as_secs_f64();
    let events = serde_json::from_slice::<serde_json::Value>(&sent[0].1.body).expect("json")
        ["events"]
        .as_array()
        .expect("events")
        .len();
    assert!(
        first < 3.0 && events == 100,
        "{events} events at {first:.2} s"
    );
}}

on_each_store! {
#[tokio::test(start_paused = true)]
async fn the_worker_builds_a_signer_once_per_version_of_the_registration(harness: Harness) {
    let webhook = crate::manage::add(
        &*harness.state,
        WebhookChanges {
            name: Some("signed".into()),
            url: Some("http://127.0.0.1:9/hook".parse().expect("a Target URL")),
            events: Some("COURSE_ENROLLMENT".into()),
            auth: Some(crate::registry::AuthMethod::Signature),
            ..WebhookChanges::default()
        },
    )
    .expect("added");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 1, 6);
    // Three failures, then a 2xx: retried after 1, 2 and 4 s while the worker reads the
    // registration again every 100 ms, about seventy reads of an unchanged registration.
    let script = Script {
        answer: Arc::new(|attempt| status(if attempt <= 3 { 500 } else { 200 }, None)),
        sent: Arc::default(),
    };
    let engine = Engine::new(
        harness.state.clone(),
        script.clone(),
        DeliveryConfig {
            poll_interval: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(3600),
            retry: RetryPolicy {
                initial: Duration::from_secs(1),
                cap: Duration::from_secs(4),
                ..RetryPolicy::default()
            },
            ..DeliveryConfig::default()
        },
        Clock::starting_at(NOW_MS),
    );
    let drain = || engine.run(Mode::Drain(vec![webhook.id.clone()]), std::future::pending());
    drain().await.expect("ran");
    assert_eq!(script.sent.lock().expect("lock").len(), 4);
    assert_eq!(engine.signer_builds(), 1, "one signer while nothing changed");

    // A rotation is a new version of the registration: the next request is signed by a signer
    // built anew, with both secrets.
    crate::manage::rotate_secret(
        &*harness.state,
        webhook.id.as_str(),
        Duration::from_secs(3600),
        None,
    )
    .expect("rotated");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 1, 7);
    drain().await.expect("ran");
    assert_eq!(engine.signer_builds(), 2, "built again after the rotation");
    let signatures: Vec<usize> = script
        .sent
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, request)| {
            let (_, value) = request
                .headers
                .iter()
                .find(|(name, _)| name == "webhook-signature")
                .expect("signed");
            value.split(' ').count()
        })
        .collect();
    assert_eq!(signatures, [1, 1, 1, 1, 2]);
}}

/// The record of a first attempt of `request_id` at `at_ms` that ended in `next`.
fn first_attempt(
    request_id: i64,
    at_ms: i64,
    next: crate::store::RequestState,
) -> crate::store::AttemptRecord {
    crate::store::AttemptRecord {
        request_id,
        attempt: 1,
        started_at_ms: at_ms,
        status: Some(if next == crate::store::RequestState::Delivered {
            200
        } else {
            500
        }),
        error: None,
        latency_ms: 2,
        response_head: String::new(),
        next,
    }
}

on_each_store! {
#[test]
fn a_lease_has_one_holder_and_a_larger_fence_at_every_change_of_hands(harness: Harness) {
    let webhook = harness.add("http://127.0.0.1:9/hook", "all");
    let first = harness.lease(&webhook, "pid:1:a", NOW_MS);
    let first_fence = Harness::token(&webhook, &first).fence;
    // Another worker is kept out while the lease runs (the holder's pid is this live process).
    assert_eq!(
        harness.lease(&webhook, "pid:1:b", NOW_MS + 1000),
        Lease::HeldBy(HeldLease {
            owner: "pid:1:a".into(),
            expires_at_ms: NOW_MS + 60_000
        })
    );
    // The holder renews under the same fence.
    assert_eq!(
        harness.lease(&webhook, "pid:1:a", NOW_MS + 2000),
        Lease::Acquired { fence: first_fence }
    );
    // Once it lapses another takes it, with a larger fence, and the first cannot renew.
    let second = harness.lease(&webhook, "pid:1:b", NOW_MS + 62_001);
    let second_fence = Harness::token(&webhook, &second).fence;
    assert!(second_fence > first_fence, "{first_fence} then {second_fence}");
    assert_eq!(
        harness.lease(&webhook, "pid:1:a", NOW_MS + 62_002),
        Lease::HeldBy(HeldLease {
            owner: "pid:1:b".into(),
            expires_at_ms: NOW_MS + 122_001
        })
    );
    // Released and taken again, even by a former holder: never a number given before.
    harness.state.release_lease(&webhook.id, "pid:1:b").expect("released");
    let third = harness.lease(&webhook, "pid:1:a", NOW_MS + 62_003);
    assert!(Harness::token(&webhook, &third).fence > second_fence);
}
}

on_each_store! {
#[test]
fn a_worker_that_stalled_past_its_lease_records_nothing_over_the_new_holder(harness: Harness) {
    use crate::store::RequestState;
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 2, 8);
    let stalled = Harness::token(&webhook, &harness.lease(&webhook, "pid:1:a", NOW_MS));
    let head = harness
        .state
        .pending(&webhook.id, 1, true, NOW_MS, 0)
        .expect("pending")
        .remove(0);
    // The first worker stalls past its lease with the head in flight; another takes over,
    // sends the head again and records it delivered.
    let current = Harness::token(&webhook, &harness.lease(&webhook, "pid:1:b", NOW_MS + 60_001));
    assert_eq!(
        harness
            .state
            .record(&current, &[first_attempt(head.id, NOW_MS + 60_002, RequestState::Delivered)])
            .expect("recorded"),
        Recorded::Written { expired_events: 0 }
    );
    // The stalled worker wakes with a failure to record: it would put the head back.
    assert_eq!(
        harness
            .state
            .record(&stalled, &[first_attempt(head.id, NOW_MS, RequestState::RetryAt(NOW_MS + 5000))])
            .expect("answered"),
        Recorded::Fenced
    );
    let detail = harness.state.delivery(&head.msg_id).expect("read").expect("kept");
    assert_eq!(detail.summary.state, "delivered");
    assert_eq!(detail.attempt_log.len(), 1, "only the holder's attempt");
    let counts = harness.state.counts(Some(&webhook.id)).expect("counts");
    assert_eq!((counts.pending, counts.delivered), (1, 1));
    let next = harness
        .state
        .pending(&webhook.id, 1, true, NOW_MS, 0)
        .expect("pending");
    assert_ne!(next[0].id, head.id, "the queue moved on");
}
}

#[test]
fn postgres_prunes_finished_requests_after_retention_and_keeps_pending_ones() {
    use crate::store::RequestState;
    let Some(harness) = Harness::postgres("sender pruning of finished requests") else {
        return;
    };
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 2, 9);
    let lease = Harness::token(&webhook, &harness.lease(&webhook, "pid:1:a", NOW_MS));
    let head = harness
        .state
        .pending(&webhook.id, 1, true, NOW_MS, 0)
        .expect("pending")
        .remove(0);
    // Delivered more than the kept week ago.
    let long_ago = verify::unix_now_ms() - crate::store::postgres::FINISHED_KEPT_FOR_MS - 60_000;
    harness
        .state
        .record(
            &lease,
            &[first_attempt(head.id, long_ago, RequestState::Delivered)],
        )
        .expect("recorded");
    assert_eq!(harness.state.counts(None).expect("counts").delivered, 1);
    // A worker's look for work prunes (at most once a minute per process).
    harness.state.webhooks_with_work().expect("looked");
    let counts = harness.state.counts(None).expect("counts");
    assert_eq!((counts.delivered, counts.pending), (0, 1));
    assert!(harness
        .state
        .delivery(&head.msg_id)
        .expect("read")
        .is_none());
}

/// Log output written to memory, for tests that count lines.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn run_waits_for_a_held_lease_quietly_and_delivers_once_it_lapses() {
    let harness = Harness::sqlite();
    let webhook = harness.add("http://127.0.0.1:9/hook", "COURSE_ENROLLMENT");
    harness.enqueue(&webhook, "COURSE_ENROLLMENT", 3, 5);
    // Held from another pid namespace, so only its expiry (30 s on) or a release frees it.
    let path = harness._dir.path().join("sender.db");
    let hold = move |owner: &str| {
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute(
                "INSERT INTO leases (webhook_id, owner, pid, expires_at_ms, host)
                 VALUES (?1, ?2, 999999999, ?3, 'another-boot/pid:[1]')
                 ON CONFLICT (webhook_id) DO UPDATE SET owner = excluded.owner",
                rusqlite::params![webhook.id.as_str(), owner, NOW_MS + 30_000],
            )
            .expect("lease");
    };
    hold("run/pid:999999999:first");
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let script = Script {
        answer: Arc::new(|_| status(200, None)),
        sent: Arc::default(),
    };
    let config = DeliveryConfig {
        poll_interval: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(15),
        ..real_config()
    };
    let start = tokio::time::Instant::now();
    let engine = Engine::new(
        harness.state.clone(),
        script.clone(),
        config,
        Clock::starting_at(NOW_MS),
    );
    let (report, ()) = tokio::join!(
        engine.run(Mode::Serve, tokio::time::sleep(Duration::from_secs(60))),
        async {
            // The lease changes hands (same expiry) while the worker waits.
            tokio::time::sleep(Duration::from_secs(10)).await;
            hold("run/pid:999999999:second");
        }
    );
    report.expect("ran");

    let sent = script.sent.lock().expect("lock").clone();
    let offsets: Vec<u64> = sent
        .iter()
        .map(|(at, _)| at.duration_since(start).as_secs())
        .collect();
    // Nothing while the lease is held; all three once it lapses (looked at within a poll).
    assert_eq!(offsets, [30, 30, 30]);
    let log = String::from_utf8(log.0.lock().expect("lock").clone()).expect("utf8");
    let holders: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("another worker delivers to this webhook"))
        .map(|line| {
            line.split("owner=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("")
        })
        .collect();
    // Once per holder, not once per look (about 30 looks).
    assert_eq!(
        holders,
        ["run/pid:999999999:first", "run/pid:999999999:second"],
        "{log}"
    );
}
