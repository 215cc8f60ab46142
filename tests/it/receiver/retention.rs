//! Retention on both stores: the listener prunes what passed `--retain` while it serves, a
//! retry of a pruned event within the dedupe window is still a duplicate, a request whose
//! forward job is not yet forwarded is never pruned, `receiver prune` does it once from the
//! command line, and two receivers pruning one PostgreSQL database at once lose nothing.

use std::time::Duration;

use http::StatusCode;
use receiver::forward::{ForwardConfig, RetryPolicy};
use receiver::retention::Retention;

use crate::support::receiver::{
    envelope, free_addr, metric, run_cli, wait_until, FakeApp, InProcess,
};
use crate::support::store::{for_each_store, StoreKind, TestStore};

/// A retention of one second: the listener's pass every 5 s prunes what a test stored.
fn one_second() -> Retention {
    Retention {
        retain: Some(Duration::from_secs(1)),
        dedupe_window: Duration::from_secs(3600),
    }
}

/// Forwarding to `app` with quick retries.
fn forward_to(app: std::net::SocketAddr) -> ForwardConfig {
    let mut forward = ForwardConfig::new(format!("http://{app}/inbox").parse().unwrap());
    forward.retry = RetryPolicy {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    forward
}

/// Long enough for two passes of a one-second retention (one every 5 s) and their batches.
const PRUNED_WITHIN: Duration = Duration::from_secs(20);

async fn count(store: &TestStore, table: &str) -> i64 {
    store.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
}

for_each_store!(the_listener_prunes_and_a_retried_pruned_event_is_still_a_duplicate);

async fn the_listener_prunes_and_a_retried_pruned_event_is_still_a_duplicate(store: TestStore) {
    let mut config = store.config();
    config.retention = one_second();
    let receiver = InProcess::start(config).await;
    let stored = receiver.post(&[], envelope(7, &["old-1", "old-2"])).await;
    assert_eq!(stored.json()["stored"], 2);
    let refused = receiver.post(&[], "{not json").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    let pruned = wait_until(PRUNED_WITHIN, || async {
        count(&store, "{requests}").await == 0
            && count(&store, "{events}").await == 0
            && count(&store, "{refused}").await == 0
    })
    .await;
    assert!(pruned, "the listener pruned what passed the retention");
    assert_eq!(count(&store, "{dedupe_keys}").await, 2);
    assert_eq!(
        metric(receiver.addr, "receiver_pruned_events_total").await,
        Some(2.0)
    );

    // Learning Manager retries the pruned request: acknowledged, nothing stored again.
    let retried = receiver.post(&[], envelope(7, &["old-1", "old-2"])).await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.json()["stored"], 0);
    assert_eq!(retried.json()["duplicates"], 2);
    let mixed = receiver.post(&[], envelope(7, &["old-2", "new"])).await;
    assert_eq!(mixed.json()["stored"], 1);
    assert_eq!(mixed.json()["duplicates"], 1);
    assert_eq!(
        store
            .text("SELECT event_id FROM {events} ORDER BY id")
            .await
            .as_deref(),
        Some("new")
    );
    // Another account's event of the same id is another key.
    let other_account = receiver.post(&[], envelope(8, &["old-1"])).await;
    assert_eq!(other_account.json()["stored"], 1);
    receiver.stop().await.unwrap();
}

for_each_store!(requests_not_yet_forwarded_survive_pruning);

async fn requests_not_yet_forwarded_survive_pruning(store: TestStore) {
    let app_addr = free_addr();
    let mut config = store.config();
    config.retention = one_second();
    config.forward = Some(forward_to(app_addr));
    let receiver = InProcess::start(config).await;
    let bodies: Vec<String> = (0..3)
        .map(|index| envelope(7, &[&format!("held-{index}")]))
        .collect();
    for body in &bodies {
        assert_eq!(
            receiver.post(&[], body.clone()).await.status,
            StatusCode::OK
        );
    }
    // The app is down. Wait for a pass that starts after the requests passed the retention
    // (the first one runs at the start): it passes over them all.
    let addr = receiver.addr;
    let passes = wait_until(PRUNED_WITHIN, || async move {
        metric(addr, "receiver_prune_batch_seconds_count").await >= Some(2.0)
    })
    .await;
    assert!(passes, "the pruner ran a second pass");
    assert_eq!(count(&store, "{requests}").await, 3);
    assert_eq!(count(&store, "{events}").await, 3);
    assert_eq!(
        count(&store, "{forward_jobs} WHERE state = 'pending'").await,
        3
    );

    // The app comes up: each request is forwarded, in order, and then pruned.
    let app = FakeApp::start_at(app_addr, 200).await;
    assert!(app.wait_acknowledged(3, PRUNED_WITHIN).await);
    let acknowledged: Vec<String> = app
        .acknowledged_bodies()
        .iter()
        .map(|body| String::from_utf8_lossy(body).into_owned())
        .collect();
    assert_eq!(acknowledged, bodies);
    let pruned = wait_until(PRUNED_WITHIN, || async {
        count(&store, "{requests}").await == 0 && count(&store, "{forward_jobs}").await == 0
    })
    .await;
    assert!(pruned, "forwarded requests are pruned");
    receiver.stop().await.unwrap();
}

for_each_store!(a_request_parked_on_one_target_survives_pruning_until_skipped);

/// Forwarded to one app and parked by the other (it answers 400): the parked job holds the
/// request (an operator's retry would send its body); once skipped, nothing holds it.
async fn a_request_parked_on_one_target_survives_pruning_until_skipped(store: TestStore) {
    let delivering = FakeApp::start_at(free_addr(), 200).await;
    let refusing = FakeApp::start_at(free_addr(), 400).await;
    let mut forward = forward_to(delivering.addr);
    forward.targets.push(receiver::forward::ForwardTarget::new(
        format!("http://{}/reports", refusing.addr).parse().unwrap(),
    ));
    let mut config = store.config();
    config.retention = one_second();
    config.forward = Some(forward);
    let receiver = InProcess::start(config).await;
    let reply = receiver.post(&[], envelope(7, &["parked-1"])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let settled = wait_until(PRUNED_WITHIN, || async {
        count(&store, "{forward_jobs} WHERE state = 'forwarded'").await == 1
            && count(&store, "{forward_jobs} WHERE state = 'parked'").await == 1
    })
    .await;
    assert!(settled, "forwarded to one target, parked on the other");

    let addr = receiver.addr;
    let passes = wait_until(PRUNED_WITHIN, || async move {
        metric(addr, "receiver_prune_batch_seconds_count").await >= Some(2.0)
    })
    .await;
    assert!(passes, "the pruner ran a second pass");
    assert_eq!(
        count(&store, "{requests}").await,
        1,
        "the parked job holds it"
    );
    assert_eq!(count(&store, "{events}").await, 1);

    // The operator gives up on it (as `receiver forward skip` does): pruned at the next pass.
    store
        .execute("UPDATE {forward_jobs} SET state = 'skipped' WHERE state = 'parked'")
        .await;
    let pruned = wait_until(PRUNED_WITHIN, || async {
        count(&store, "{requests}").await == 0 && count(&store, "{forward_jobs}").await == 0
    })
    .await;
    assert!(pruned, "a skipped job holds nothing");
    assert_eq!(count(&store, "{dedupe_keys}").await, 1);
    receiver.stop().await.unwrap();
}

/// Sets every stored request's receipt an hour back (the events' copy of it too, on
/// PostgreSQL), as if they had arrived then.
async fn an_hour_ago(store: &TestStore) {
    store
        .execute("UPDATE {requests} SET received_at_ms = received_at_ms - 3600000")
        .await;
    if store.kind == StoreKind::Postgres {
        store
            .execute("UPDATE {events} SET received_at_ms = received_at_ms - 3600000")
            .await;
    }
}

/// `receiver ARGS --store STORE --json`, which must succeed; its JSON.
fn json_of(args: &[&str], store: &TestStore) -> serde_json::Value {
    let store_arg = store.store_arg();
    let mut all = args.to_vec();
    all.extend(["--store", &store_arg, "--json"]);
    let (code, stdout, stderr) = run_cli(&all, &[]);
    assert_eq!(code, Some(0), "{all:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{all:?} printed {stdout:?}"))
}

for_each_store!(receiver_prune_removes_once_and_keeps_keys_for_the_window);

async fn receiver_prune_removes_once_and_keeps_keys_for_the_window(store: TestStore) {
    // Four old requests (one a batch of two), all queued for a forward that never happens.
    let mut config = store.config();
    config.forward = Some(forward_to(free_addr()));
    let receiver = InProcess::start(config).await;
    for body in [
        envelope(7, &["a"]),
        envelope(7, &["b"]),
        envelope(7, &["c1", "c2"]),
        envelope(7, &["d"]),
    ] {
        assert_eq!(receiver.post(&[], body).await.status, StatusCode::OK);
    }
    receiver.stop().await.unwrap();
    // a, b and c were forwarded; d was not.
    store
        .execute(
            "UPDATE {forward_jobs} SET state = 'forwarded', forwarded_at_ms = 1 WHERE request_id IN
             (SELECT id FROM {requests} ORDER BY id LIMIT 3)",
        )
        .await;
    an_hour_ago(&store).await;
    let receiver = InProcess::start(store.config()).await;
    assert_eq!(
        receiver.post(&[], envelope(7, &["e"])).await.json()["stored"],
        1
    );
    receiver.stop().await.unwrap();

    let expected = serde_json::json!({"requests": 3, "events": 4, "refusedRequests": 0});
    let dry = json_of(&["prune", "--older-than", "30m", "--dry-run"], &store);
    assert_eq!(dry, expected);
    assert_eq!(
        count(&store, "{requests}").await,
        5,
        "a dry run removes nothing"
    );
    assert_eq!(count(&store, "{events}").await, 6);

    assert_eq!(json_of(&["prune", "--older-than", "30m"], &store), expected);
    assert_eq!(count(&store, "{events}").await, 2);
    assert_eq!(
        count(&store, "{events} WHERE event_id IN ('d', 'e')").await,
        2,
        "d waits for its forward, e is recent"
    );
    assert_eq!(count(&store, "{forward_jobs}").await, 1);
    assert_eq!(count(&store, "{dedupe_keys}").await, 4);

    // Everything before tomorrow, with a ten-minute window: e goes (d still waits), and the
    // keys of a, b and c, received an hour ago, end; e's stays.
    let tomorrow = (verify::unix_now_ms() + 86_400_000).to_string();
    let second = json_of(
        &["prune", "--before", &tomorrow, "--dedupe-window", "10m"],
        &store,
    );
    assert_eq!(
        second,
        serde_json::json!({"requests": 1, "events": 1, "refusedRequests": 0})
    );
    assert_eq!(count(&store, "{dedupe_keys}").await, 1);
    assert_eq!(count(&store, "{dedupe_keys} WHERE event_id = 'e'").await, 1);

    let receiver = InProcess::start(store.config()).await;
    // Past its window, a retry is stored again; within it, a duplicate.
    assert_eq!(
        receiver.post(&[], envelope(7, &["a"])).await.json()["stored"],
        1
    );
    assert_eq!(
        receiver.post(&[], envelope(7, &["e"])).await.json()["duplicates"],
        1
    );
    receiver.stop().await.unwrap();

    // The sentence, and a store that is not there.
    let store_arg = store.store_arg();
    let (code, stdout, _) = run_cli(
        &[
            "prune",
            "--older-than",
            "1h",
            "--dry-run",
            "--store",
            &store_arg,
        ],
        &[],
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout.trim(),
        "would prune 0 requests (0 events) and 0 refused requests"
    );
    let (code, _, stderr) = run_cli(&["prune", "--store", &store_arg], &[]);
    assert_eq!(
        code,
        Some(2),
        "--older-than or --before is required: {stderr}"
    );
    if store.kind == StoreKind::Sqlite {
        let missing = format!("sqlite:{}", store.dir().join("none.db").display());
        let (code, _, stderr) = run_cli(&["prune", "--older-than", "1h", "--store", &missing], &[]);
        assert_eq!(code, Some(2));
        assert!(stderr.contains("no store at"), "{stderr}");
    }
}

/// Two receivers on one PostgreSQL database prune the same old requests at once while both
/// store new ones and Learning Manager retries old ones: every old request goes exactly once
/// (their counts add up), the ones waiting for their forward stay, every key is kept, and no
/// retry is stored again, before, during or after its request's removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_receivers_pruning_one_postgres_database_lose_nothing() {
    let Some(store) =
        TestStore::postgres("two_receivers_pruning_one_postgres_database_lose_nothing")
    else {
        return;
    };
    const OLD: usize = 600;
    let filler = InProcess::start(store.config()).await;
    let addr = filler.addr;
    let mut posting = tokio::task::JoinSet::new();
    for lane in 0..8 {
        posting.spawn(async move {
            for index in (lane..OLD).step_by(8) {
                let body = envelope(7, &[&format!("old-{index}")]);
                let reply = crate::support::receiver::post(addr, "/webhook", &[], body).await;
                assert_eq!(reply.json()["stored"], 1);
            }
        });
    }
    while let Some(done) = posting.join_next().await {
        done.unwrap();
    }
    filler.stop().await.unwrap();
    // One in ten waits for a forward (queued by a receiver that forwarded, once).
    store
        .execute(
            "INSERT INTO {forward_jobs} (request_id, queued_at_ms)
             SELECT request_id, 0 FROM {events}
             WHERE substr(event_id, 5)::int % 10 = 0",
        )
        .await;
    an_hour_ago(&store).await;

    let retention = Retention {
        retain: Some(Duration::from_secs(1800)),
        dedupe_window: Duration::from_secs(86_400),
    };
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let mut config = store.config();
        config.retention = retention;
        receivers.push(InProcess::start(config).await);
    }
    let addrs: Vec<_> = receivers.iter().map(|receiver| receiver.addr).collect();
    // Meanwhile: new events, and retries of old ones, to both receivers.
    let mut load = tokio::task::JoinSet::new();
    for (lane, addr) in addrs.iter().copied().enumerate() {
        load.spawn(async move {
            let mut retried = 0;
            for round in 0..150 {
                let new = envelope(9, &[&format!("new-{lane}-{round}")]);
                let reply = crate::support::receiver::post(addr, "/webhook", &[], new).await;
                assert_eq!(reply.json()["stored"], 1);
                let old = envelope(7, &[&format!("old-{}", (round * 7 + lane) % OLD)]);
                let reply = crate::support::receiver::post(addr, "/webhook", &[], old).await;
                assert_eq!(reply.status, StatusCode::OK);
                assert_eq!(
                    reply.json()["duplicates"],
                    1,
                    "a retried old event is a duplicate"
                );
                retried += 1;
            }
            retried
        });
    }
    let mut retried = 0;
    while let Some(done) = load.join_next().await {
        retried += done.unwrap();
    }
    assert_eq!(retried, 300);
    let held = (OLD / 10) as i64;
    // A backlog is pruned at a slow pace (a fiftieth of the store's time): a bound to spare.
    let pruned = wait_until(Duration::from_secs(90), || async {
        count(&store, "{events} WHERE event_id LIKE 'old-%'").await == held
    })
    .await;
    assert!(pruned, "the old requests were pruned");
    let (mut requests, mut events) = (0.0, 0.0);
    for addr in &addrs {
        requests += metric(*addr, "receiver_pruned_requests_total")
            .await
            .unwrap();
        events += metric(*addr, "receiver_pruned_events_total").await.unwrap();
    }
    assert_eq!(
        (requests, events),
        ((OLD - OLD / 10) as f64, (OLD - OLD / 10) as f64)
    );
    assert_eq!(
        count(
            &store,
            "{events} WHERE event_id LIKE 'old-%' AND substr(event_id, 5)::int % 10 = 0"
        )
        .await,
        held,
        "the requests waiting for their forward stayed"
    );
    assert_eq!(
        count(&store, "{dedupe_keys}").await,
        (OLD - OLD / 10) as i64
    );
    assert_eq!(
        count(&store, "{events} WHERE event_id LIKE 'new-%'").await,
        300
    );
    // The retries themselves are kept as requests (of no event), and they are recent.
    assert_eq!(
        count(&store, "{requests} WHERE account_id = 7").await,
        held + 300
    );
    for receiver in receivers {
        receiver.stop().await.unwrap();
    }
}
