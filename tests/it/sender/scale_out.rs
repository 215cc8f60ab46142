//! Many `sender run` workers on one PostgreSQL database (SPEC section 7), as real processes:
//! killed and restarted at random, or stopped past their lease and resumed. Per webhook the
//! requests still go one at a time and in order, and every event arrives at least once with
//! its `webhook-id`. Also: a database outage pauses deliveries and they resume by themselves,
//! an enqueue wakes an idle worker (LISTEN/NOTIFY) before its poll, and an edit read before
//! another process changed the webhook is refused.
//!
//! Each test makes its own database on the throwaway cluster of `common::test_postgres`
//! (skipped loudly without PostgreSQL, failed under `CI=true`).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sender::store::postgres::PostgresState;
use sender::store::Queue;
use serde_json::Value;

use super::enqueue;
use crate::support::endpoint::{FakeEndpoint, Received, Reply};
use crate::support::logged::Logged;
use crate::support::receiver::wait_until;
use crate::support::rng::Rng;

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// `sender --state STATE …` with the engine's durations shrunk for a test.
fn sender(state: &str) -> Command {
    let mut command = Command::new(SENDER);
    command
        .arg("--state")
        .arg(state)
        .env("RUST_LOG", "warn")
        .env("SENDER_POLL_INTERVAL", "20ms")
        .env("SENDER_RETRY_INITIAL", "5ms")
        .env("SENDER_RETRY_MAX", "20ms")
        .env("SENDER_RESPONSE_TIMEOUT", "3s");
    command
}

/// Registers a signed webhook for COURSE_ENROLLMENT at `url`; gives its id.
async fn add_webhook(state: &str, name: &str, url: &str) -> String {
    let args = [
        "webhooks",
        "add",
        "--name",
        name,
        "--url",
        url,
        "--auth",
        "signature",
        "--events",
        "COURSE_ENROLLMENT",
        "--json",
    ];
    let output = super::run_sender(state, &args).await;
    let record: Value = serde_json::from_slice(&output.stdout).expect("JSON record");
    record["id"].as_str().expect("id").to_owned()
}

/// A `sender run` worker with this lease TTL.
fn worker(state: &str, lease_ttl: &str) -> Logged {
    Logged::spawn(sender(state).args(["run", "--lease-ttl", lease_ttl]))
}

/// The event ids in the order they first arrived.
fn first_arrivals(received: &[Received]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .flat_map(Received::event_ids)
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Every arrival carries a `webhook-id`, the same one for every arrival of an event, and no
/// two events share one.
fn check_message_ids(received: &[Received]) {
    let mut by_event: HashMap<String, String> = HashMap::new();
    for request in received {
        let msg_id = request
            .header("webhook-id")
            .expect("every request carries its webhook-id")
            .to_owned();
        for event in request.event_ids() {
            let first = by_event
                .entry(event.clone())
                .or_insert_with(|| msg_id.clone());
            assert_eq!(*first, msg_id, "event {event} came under two webhook-ids");
        }
    }
    let mut ids: Vec<&String> = by_event.values().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), by_event.len(), "one webhook-id per event");
}

/// Waits (bounded) until `endpoint` has seen each of `count` events at least once.
async fn wait_all_arrived(endpoint: &FakeEndpoint, count: usize, deadline: Instant) -> bool {
    let limit = deadline.saturating_duration_since(Instant::now());
    wait_until(limit, || async {
        first_arrivals(&endpoint.received()).len() >= count
    })
    .await
}

/// The queue's counts, read from the database.
fn counts(state: &str) -> sender::store::QueueCounts {
    let url = common::postgres::DatabaseUrl::parse(state).expect("url");
    PostgresState::open(&url)
        .expect("open")
        .counts(None)
        .expect("counts")
}

/// Stops workers with SIGTERM; each must exit 0.
async fn stop(workers: &mut [Logged]) {
    for worker in workers.iter() {
        worker.signal("TERM");
    }
    for worker in workers {
        let status = worker.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success(), "{status:?}: {}", worker.stderr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_killed_at_random_deliver_2000_events_to_two_webhooks_in_order_one_request_at_a_time(
) {
    let Some(state) = common::test_postgres::test_database("sender scale-out under SIGKILL") else {
        return;
    };
    let endpoints = [FakeEndpoint::start().await, FakeEndpoint::start().await];
    for endpoint in &endpoints {
        endpoint.fail_at_random(100);
    }
    add_webhook(&state, "crm", &endpoints[0].url()).await;
    add_webhook(&state, "reporting", &endpoints[1].url()).await;
    let mut events = enqueue(&state, 1500).await;

    let mut workers: Vec<Logged> = (0..3).map(|_| worker(&state, "2s")).collect();
    let started = Instant::now();
    // A bound, not an expectation: 11 s here at a load average of 6, 24 s at 11.
    let deadline = started + Duration::from_secs(120);
    // Which worker to kill and when; the seed is printed so a failure can be replayed.
    let (mut dice, seed) = Rng::from_clock();
    eprintln!("scale-out: kill schedule seed {seed}");
    let (mut kills, mut kills_mid_delivery) = (0, 0);
    let total = 2000;
    while kills < 12 {
        tokio::time::sleep(Duration::from_millis(100 + dice.below(150))).await;
        let victim = usize::try_from(dice.below(3)).expect("small");
        workers[victim].signal("KILL");
        workers[victim].wait_exit(Duration::from_secs(10)).await;
        kills += 1;
        if endpoints
            .iter()
            .any(|endpoint| first_arrivals(&endpoint.received()).len() < total)
        {
            kills_mid_delivery += 1;
        }
        workers[victim] = worker(&state, "2s");
        if kills == 3 {
            // More events while the workers run and die.
            events.extend(enqueue(&state, 500).await);
        }
    }
    for endpoint in &endpoints {
        if !wait_all_arrived(endpoint, total, deadline).await {
            let logs: Vec<String> = workers.iter().map(Logged::stderr).collect();
            panic!(
                "only {} of {total} events arrived; queue {:?}; workers' stderr: {logs:#?}",
                first_arrivals(&endpoint.received()).len(),
                counts(&state)
            );
        }
    }
    let took = started.elapsed();
    stop(&mut workers).await;

    assert!(
        kills_mid_delivery >= 10,
        "{kills_mid_delivery} of {kills} kills came while events were still on their way"
    );
    for endpoint in &endpoints {
        let received = endpoint.received();
        assert_eq!(
            endpoint.max_in_flight(),
            1,
            "a request started before the previous one to that webhook was answered"
        );
        assert_eq!(
            first_arrivals(&received),
            events,
            "first deliveries in trigger order"
        );
        check_message_ids(&received);
        assert!(
            received.len() > total,
            "random failures were retried: {} requests",
            received.len()
        );
    }
    let counts = counts(&state);
    assert_eq!((counts.pending, counts.delivered), (0, 2 * total as u64));
    eprintln!("scale-out: {kills} kills, all delivered in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_lease_records_nothing_over_the_new_holder() {
    let Some(state) = common::test_postgres::test_database("sender fencing under SIGSTOP") else {
        return;
    };
    let endpoint = FakeEndpoint::start().await;
    // Slow answers: the stopped worker has a request in flight when it stops.
    endpoint.answer(Reply::ok().delayed(Duration::from_millis(300)));
    add_webhook(&state, "crm", &endpoint.url()).await;
    let events = enqueue(&state, 12).await;

    let stalled = worker(&state, "1s");
    endpoint.wait_for(1, Duration::from_secs(20)).await;
    stalled.signal("STOP");
    let in_flight = endpoint.received()[0]
        .header("webhook-id")
        .expect("id")
        .to_owned();
    // The new worker waits for the stopped one's lease to run out (its process still exists),
    // then sends the request in flight again and goes on.
    let holder = worker(&state, "1s");
    endpoint.wait_for(4, Duration::from_secs(20)).await;
    stalled.signal("CONT");
    assert!(
        wait_all_arrived(
            &endpoint,
            events.len(),
            Instant::now() + Duration::from_secs(30)
        )
        .await,
        "not every event arrived"
    );
    // Until the stalled worker has tried to record its outcome.
    stalled
        .wait_for_stderr("lease changed hands", Duration::from_secs(20))
        .await;
    stop(&mut [stalled, holder]).await;

    let received = endpoint.received();
    assert_eq!(
        endpoint.max_in_flight(),
        1,
        "two requests to one webhook at once"
    );
    assert_eq!(first_arrivals(&received), events);
    let sent_twice = received
        .iter()
        .filter(|request| request.header("webhook-id") == Some(in_flight.as_str()))
        .count();
    assert_eq!(
        sent_twice, 2,
        "the stalled worker's request, then the new holder's"
    );
    let url = common::postgres::DatabaseUrl::parse(&state).expect("url");
    let detail = PostgresState::open(&url)
        .expect("open")
        .delivery(&in_flight)
        .expect("read")
        .expect("kept");
    assert_eq!(
        (detail.summary.state.as_str(), detail.attempt_log.len()),
        ("delivered", 1),
        "only the holder's attempt is recorded, not the stalled worker's: {:?}",
        detail.attempt_log
    );
    let counts = counts(&state);
    assert_eq!((counts.pending, counts.delivered), (0, 12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_pause_while_the_database_is_gone_and_resume_by_themselves() {
    let cluster = match common::test_postgres::TestCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => {
            common::test_postgres::skip_or_fail("sender through a database outage", &error);
            return;
        }
    };
    let state = cluster.create_database().expect("database");
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(Reply::ok().delayed(Duration::from_millis(50)));
    add_webhook(&state, "crm", &endpoint.url()).await;
    let events = enqueue(&state, 20).await;
    let mut run = worker(&state, "2s");
    endpoint.wait_for(5, Duration::from_secs(20)).await;

    cluster.stop().expect("database stopped");
    let seen_at_stop = endpoint.received().len();
    run.wait_for_stderr("deliveries paused", Duration::from_secs(20))
        .await;
    // Nothing goes out that could not be recorded: at most the request in flight at the stop.
    assert!(
        endpoint.received().len() <= seen_at_stop + 1,
        "{} requests after the stop",
        endpoint.received().len() - seen_at_stop
    );
    cluster.restart().expect("database back");
    let resumed = Instant::now() + Duration::from_secs(30);
    assert!(
        wait_all_arrived(&endpoint, events.len(), resumed).await,
        "deliveries did not resume: {}",
        run.stderr()
    );
    run.wait_for_stderr("deliveries resume", Duration::from_secs(20))
        .await;
    stop(std::slice::from_mut(&mut run)).await;
    assert_eq!(first_arrivals(&endpoint.received()), events);
    assert_eq!(endpoint.max_in_flight(), 1);
    let counts = counts(&state);
    assert_eq!((counts.pending, counts.delivered), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_an_enqueue_not_by_its_poll() {
    let Some(state) = common::test_postgres::test_database("sender woken by NOTIFY") else {
        return;
    };
    let endpoint = FakeEndpoint::start().await;
    add_webhook(&state, "crm", &endpoint.url()).await;
    // A poll interval far longer than the wait below: only the notification can be in time.
    let mut run = Logged::spawn(sender(&state).args(["run", "--poll-interval", "60s"]));
    run.wait_for_line("sender run: working the queue", Duration::from_secs(15))
        .await;
    let events = enqueue(&state, 3).await;
    let received = endpoint.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(first_arrivals(&received), events);
    stop(std::slice::from_mut(&mut run)).await;
}

#[test]
fn an_edit_is_refused_when_another_process_changed_the_webhook_after_it_was_read() {
    use sender::manage::WebhookChanges;
    use sender::registry::Status;
    use sender::store::Registry;
    let Some(state) = common::test_postgres::test_database("sender changed meanwhile") else {
        return;
    };
    // Two stores on one database, each with its own connections: two processes.
    let url = common::postgres::DatabaseUrl::parse(&state).expect("url");
    let (command, worker) = (
        PostgresState::open(&url).expect("open"),
        PostgresState::open(&url).expect("open"),
    );
    let webhook = WebhookChanges {
        name: Some("crm".into()),
        url: Some("http://127.0.0.1:9/hook".parse().expect("a Target URL")),
        events: Some("all".into()),
        ..WebhookChanges::default()
    }
    .create(verify::unix_now_ms())
    .expect("valid");
    command.insert_webhook(&webhook).expect("registered");
    let mut edited = command.webhook(&webhook.id).expect("read").expect("kept");
    let read_at_ms = edited.updated_at_ms;
    worker
        .give_up(&webhook.id, "retention ended", read_at_ms + 10)
        .expect("disabled by the worker");
    edited.description = "renamed".into();
    edited.updated_at_ms = read_at_ms + 20;
    let error = command
        .update_webhook(&edited, read_at_ms)
        .expect_err("refused");
    assert!(error.to_string().contains("changed meanwhile"), "{error:#}");
    let stored = worker.webhook(&webhook.id).expect("read").expect("kept");
    assert!(matches!(stored.status, Status::Disabled(_)), "{stored:?}");
}
