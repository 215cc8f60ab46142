//! The operator's notifications are sent at least once, and once per event of a webhook:
//! - a worker SIGKILLed between the disable and its notification (the operator's endpoint
//!   refusing it meanwhile): after a restart the notification arrives, under the `webhook-id`
//!   it had, and is acknowledged (both stores);
//! - three `sender run` workers on one PostgreSQL database: each event (failing, disabled,
//!   recovered) is one notification, sent once, not one per worker.

use std::time::Duration;

use serde_json::{json, Value};

use common::on_each_store;

use super::{cli, cli_json, SenderRun};
use crate::sender::Harness;
use crate::support::endpoint::{FakeEndpoint, Received, Reply};
use crate::support::receiver::{free_addr, wait_until};

/// The `type` of each notification received, in order.
fn kinds(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|n| n.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Registers a webhook to an address where nothing listens; gives its id.
fn webhook_to_nowhere(state: &str) -> (String, std::net::SocketAddr) {
    let addr = free_addr();
    let url = format!("http://{addr}/webhook");
    let added = cli_json(
        state,
        &[
            "webhooks",
            "add",
            "--name",
            "CRM sync",
            "--url",
            &url,
            "--events",
            "COURSE_ENROLLMENT",
            "--json",
        ],
    );
    (added["id"].as_str().expect("id").to_owned(), addr)
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_its_disable_is_told_tells_it_after_a_restart(harness: Harness) {
    killed_between_the_disable_and_its_notification(harness).await;
}
}

async fn killed_between_the_disable_and_its_notification(harness: Harness) {
    let state = harness.location.as_str();
    let (id, _) = webhook_to_nowhere(state);
    let operator = FakeEndpoint::start().await;
    // The failing notification is taken; from then on the operator's endpoint refuses.
    operator.script([Reply::ok()]);
    operator.answer(Reply::status(503));
    crate::sender::enqueue(state, 2).await;
    let notify = ["--notify-url", &operator.url()];
    let run = SenderRun::start(state, &notify).await;
    let arrived = wait_until(Duration::from_secs(30), || async {
        kinds(&operator.received()).contains(&"webhook.disabled".to_owned())
    })
    .await;
    assert!(arrived, "{:?}", kinds(&operator.received()));
    let refused_id = operator
        .received()
        .iter()
        .find(|n| n.json()["type"] == "webhook.disabled")
        .and_then(|n| n.header("webhook-id").map(str::to_owned))
        .expect("an id");

    // SIGKILL: the disable is recorded, its notification is not acknowledged.
    let mut process = run.process;
    process.child.kill().expect("SIGKILL");
    process.child.wait().expect("reaped");
    let queued = harness.state.notifications(10).expect("read");
    let pending: Vec<(&str, &str)> = queued
        .iter()
        .map(|n| (n.kind.as_str(), n.state.as_str()))
        .collect();
    assert_eq!(
        pending,
        [("webhook.disabled", "pending"), ("webhook.failing", "sent")]
    );
    assert_eq!(queued[0].msg_id, refused_id);

    // Restarted, with the endpoint answering: the same notification arrives and is taken.
    operator.answer(Reply::ok());
    let seen = operator.received().len();
    let run = SenderRun::start(state, &notify).await;
    let after = operator.wait_for(seen + 1, Duration::from_secs(30)).await;
    let again = &after[seen];
    assert_eq!(again.json()["type"], "webhook.disabled");
    assert_eq!(again.header("webhook-id"), Some(refused_id.as_str()));
    assert_eq!(again.json()["webhookId"], id.as_str());
    let sent = wait_until(Duration::from_secs(10), || async {
        harness
            .state
            .notifications(10)
            .expect("read")
            .iter()
            .all(|n| n.state == "sent")
    })
    .await;
    assert!(sent, "{:?}", harness.state.notifications(10));
    assert_eq!(
        kinds(&operator.received())
            .iter()
            .filter(|kind| *kind == "webhook.failing")
            .count(),
        1,
        "the failing notification, acknowledged before the kill, went once"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_postgresql_send_one_notification_per_event() {
    let Some(harness) = Harness::postgres("three_workers_send_one_notification_per_event") else {
        return;
    };
    let state = harness.location.as_str();
    let (id, addr) = webhook_to_nowhere(state);
    let operator = FakeEndpoint::start().await;
    crate::sender::enqueue(state, 3).await;
    let notify = ["--notify-url", &operator.url()];
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(SenderRun::start(state, &notify).await);
    }
    let disabled = wait_until(Duration::from_secs(30), || async {
        harness
            .state
            .notifications(10)
            .expect("read")
            .iter()
            .any(|n| n.kind == "webhook.disabled" && n.state == "sent")
    })
    .await;
    assert!(disabled, "{:?}", harness.state.notifications(10));

    // The webhook's receiver is back: activate, recover, and the first 2xx is told once.
    let app = FakeEndpoint::start_on(addr).await;
    cli(state, &["webhooks", "activate", &id], 0);
    cli(state, &["deliveries", "recover", "--webhook", &id], 0);
    app.wait_for(3, Duration::from_secs(30)).await;
    let recovered = wait_until(Duration::from_secs(30), || async {
        harness
            .state
            .notifications(10)
            .expect("read")
            .iter()
            .any(|n| n.kind == "webhook.recovered" && n.state == "sent")
    })
    .await;
    assert!(recovered, "{:?}", harness.state.notifications(10));
    for worker in workers {
        worker.stop().await;
    }
    let queued = harness.state.notifications(10).expect("read");
    let mut queued_kinds: Vec<&str> = queued.iter().map(|n| n.kind.as_str()).collect();
    queued_kinds.reverse();
    assert_eq!(
        queued_kinds,
        ["webhook.failing", "webhook.disabled", "webhook.recovered"],
        "one notification per event, whichever worker held the webhook"
    );
    let received = operator.received();
    assert_eq!(
        kinds(&received),
        ["webhook.failing", "webhook.disabled", "webhook.recovered"]
    );
    let ids: Vec<Option<&str>> = received.iter().map(|n| n.header("webhook-id")).collect();
    let stored: Vec<Option<&str>> = queued
        .iter()
        .rev()
        .map(|n| Some(n.msg_id.as_str()))
        .collect();
    assert_eq!(ids, stored);
    let recovered: Value = received[2].json();
    assert_eq!(recovered["detail"]["status"], json!(200), "{recovered}");
}
