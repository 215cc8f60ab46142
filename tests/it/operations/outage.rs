//! The outage story end to end, with real processes, on each store: an endpoint down past a
//! short `--retention`; `/metrics` shows the backlog and its age; the operator is told, signed
//! and in order (failing, then disabled with the count); the webhook is disabled; `webhooks
//! activate` says the count; `recover --dry-run` sends nothing; `recover` delivers every event,
//! first successes in the original order, one request at a time, each under the `webhook-id` it
//! had and with a valid fresh signature (the real receiver verifies it); the operator is told
//! it recovered after the first 2xx; and `resend` of a delivered request goes again.

use std::time::Duration;

use serde_json::{json, Value};

use common::on_each_store;

use super::{
    cli, cli_json, operator_signature_file, python_available, verified_by_python, SenderRun,
};
use crate::sender::Harness;
use crate::support::endpoint::{FakeEndpoint, Received};
use crate::support::prometheus::sample;
use crate::support::receiver::{free_addr, run_cli, wait_until, Process};

/// A notification's body.
fn body(received: &Received) -> Value {
    received.json()
}

/// The receiver's captures (`receiver export`), in the order they arrived.
fn captures(store: &str) -> Vec<Value> {
    let (code, stdout, stderr) = run_cli(&["export", "--store", store], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a capture"))
        .collect()
}

/// A capture's header.
fn header<'a>(capture: &'a Value, name: &str) -> Option<&'a str> {
    capture["headers"]
        .as_array()?
        .iter()
        .find(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|pair| pair[1].as_str())
}

/// The webhook's requests, oldest first.
fn requests(state: &str, id: &str) -> Vec<Value> {
    let mut listed = cli_json(
        state,
        &[
            "deliveries",
            "list",
            "--webhook",
            id,
            "--limit",
            "100",
            "--json",
        ],
    )
    .as_array()
    .expect("a list")
    .clone();
    listed.reverse();
    listed
}

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_retention_is_told_then_recovered_in_order(harness: Harness) {
    outage(&harness.location).await;
}
}

async fn outage(state: &str) {
    if !python_available("the outage story") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let receiver_addr = free_addr();
    let url = format!("http://{receiver_addr}/webhook");
    let added = cli_json(
        state,
        &[
            "webhooks",
            "add",
            "--name",
            "CRM sync",
            "--url",
            &url,
            "--auth",
            "signature",
            "--events",
            "COURSE_ENROLLMENT,COURSE_ENROLLMENT_BATCH",
            "--json",
        ],
    );
    let id = added["id"].as_str().expect("id").to_owned();
    let crm_file = dir.path().join("crm.json");
    cli(
        state,
        &[
            "webhooks",
            "signature",
            &id,
            "--out",
            &crm_file.display().to_string(),
        ],
        0,
    );
    let operator = FakeEndpoint::start().await;
    let operator_file = operator_signature_file(dir.path());
    let realtime = crate::sender::enqueue(state, 3).await;
    let batch = cli_json(
        state,
        &[
            "trigger",
            "COURSE_ENROLLMENT_BATCH",
            "--count",
            "2",
            "--enqueue-only",
            "--json",
        ],
    )["eventIds"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect::<Vec<_>>();
    let run = SenderRun::start(
        state,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--notify-url",
            &operator.url(),
            "--notify-signature-file",
            &operator_file.display().to_string(),
        ],
    )
    .await;

    // While the endpoint is down: the backlog (three requests and the batch's) and its age.
    let of_webhook = json!({"webhook": id});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = run.metrics().await;
        let backlog = sample(&seen, "sender_requests_pending", &of_webhook) == Some(4.0)
            && sample(&seen, "sender_oldest_pending_age_seconds", &of_webhook)
                .is_some_and(|age| age >= 0.5);
        if backlog {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlog never showed: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&seen, "sender_webhook_disabled", &of_webhook),
        Some(0.0)
    );
    assert_eq!(sample(&seen, "sender_state_up", &json!({})), Some(1.0));
    let refused = sample(
        &seen,
        "sender_attempts_total",
        &json!({"webhook": id, "outcome": "error"}),
    );
    assert!(refused.is_some_and(|count| count >= 1.0), "{seen:#?}");

    // Told, in order: failing after five failed attempts in a row, then disabled with what
    // expired (three requests, the batch's, five events); signed, as Python verifies.
    let told = operator.wait_for(2, Duration::from_secs(30)).await;
    let kinds: Vec<Value> = told.iter().map(|n| body(n)["type"].clone()).collect();
    assert_eq!(kinds, [json!("webhook.failing"), json!("webhook.disabled")]);
    for notification in &told {
        let body = body(notification);
        assert_eq!(
            (body["webhookId"].as_str(), body["webhookName"].as_str()),
            (Some(id.as_str()), Some("CRM sync"))
        );
        assert!(
            body["at"].as_str().is_some_and(|at| at.ends_with('Z')),
            "{body}"
        );
    }
    let failing = body(&told[0]);
    assert_eq!(failing["detail"]["consecutiveFailures"], 5, "{failing}");
    assert!(
        failing["detail"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{failing}"
    );
    let disabled = body(&told[1]);
    assert_eq!(
        (
            disabled["detail"]["expiredRequests"].clone(),
            disabled["detail"]["expiredEvents"].clone()
        ),
        (json!(4), json!(5)),
        "{disabled}"
    );
    assert_eq!(
        disabled["detail"]["recover"],
        format!("sender deliveries recover --webhook {id}")
    );
    assert_eq!(verified_by_python(&operator_file, &told), [true, true]);
    assert_ne!(told[0].header("webhook-id"), told[1].header("webhook-id"));

    // Disabled: on the webhook and on /metrics.
    let shown = cli_json(state, &["webhooks", "show", &id, "--json"]);
    assert_eq!(shown["status"], "disabled", "{shown}");
    let now = run.metrics().await;
    assert_eq!(
        sample(&now, "sender_webhook_disabled", &of_webhook),
        Some(1.0)
    );
    assert_eq!(
        sample(&now, "sender_requests_pending", &of_webhook),
        Some(0.0)
    );
    let originals = requests(state, &id);
    assert_eq!(originals.len(), 4);
    assert!(
        originals.iter().all(|r| r["state"] == "expired"),
        "{originals:#?}"
    );

    // The receiver is back; activating says what expired and how to recover it.
    let store = format!("sqlite:{}", dir.path().join("crm.db").display());
    let listen = receiver_addr.to_string();
    let crm_file_arg = crm_file.display().to_string();
    let _receiver = Process::spawn(
        &[
            "listen",
            "--listen",
            &listen,
            "--path",
            "/webhook",
            "--store",
            &store,
            "--ui",
            "off",
            "--output",
            "quiet",
            "--signature-file",
            &crm_file_arg,
        ],
        &[],
    );
    let activated = cli(state, &["webhooks", "activate", &id], 0);
    assert!(
        activated.contains(&format!("{id} is now active")),
        "{activated}"
    );
    assert!(
        activated.contains("4 expired requests (5 events)"),
        "{activated}"
    );
    assert!(
        activated.contains(&format!("sender deliveries recover --webhook {id}")),
        "{activated}"
    );

    // A dry run counts and queues nothing.
    let dry = cli(
        state,
        &["deliveries", "recover", "--webhook", &id, "--dry-run"],
        0,
    );
    assert!(
        dry.contains("would queue 4 expired requests (5 events)"),
        "{dry}"
    );
    for original in &originals {
        assert!(dry.contains(original["id"].as_str().expect("id")), "{dry}");
    }
    assert_eq!(requests(state, &id).len(), 4, "nothing queued");
    assert!(captures(&store).is_empty(), "nothing sent");

    // Recover: every event delivered, in the original order, one request at a time, each
    // under its old webhook-id with a fresh signature the receiver verifies.
    let recovered_at_secs = verify::unix_now();
    let queued = cli(state, &["deliveries", "recover", "--webhook", &id], 0);
    assert!(
        queued.contains("queued 4 expired requests (5 events)"),
        "{queued}"
    );
    let delivered = wait_until(Duration::from_secs(30), || async {
        let all = requests(state, &id);
        all.len() == 8 && all[4..].iter().all(|r| r["state"] == "delivered")
    })
    .await;
    assert!(delivered, "{:#?}", requests(state, &id));
    let all = requests(state, &id);
    let original_ids: Vec<&str> = originals
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    let copy_ids: Vec<&str> = all[4..]
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        copy_ids, original_ids,
        "the same webhook-ids, in the original order"
    );
    let arrived = captures(&store);
    assert_eq!(arrived.len(), 4, "{arrived:#?}");
    let arrived_ids: Vec<&str> = arrived
        .iter()
        .map(|c| header(c, "webhook-id").expect("id"))
        .collect();
    assert_eq!(
        arrived_ids, original_ids,
        "first successes in the original order"
    );
    for capture in &arrived {
        assert_eq!(capture["verdict"], "accepted", "{capture}");
        let timestamp: i64 = header(capture, "webhook-timestamp")
            .expect("timestamp")
            .parse()
            .expect("seconds");
        assert!(
            timestamp >= recovered_at_secs - 1,
            "a fresh timestamp: {capture}"
        );
    }
    // One at a time: each copy's successful attempt started after the previous one's answer.
    let mut previous_end = 0;
    for copy in &copy_ids {
        let detail = cli_json(state, &["deliveries", "show", copy, "--json"]);
        let attempts = detail["attemptLog"].as_array().expect("attempts");
        let success = attempts.last().expect("an attempt");
        assert_eq!(success["status"], 200, "{detail}");
        let started = verify::timestamp::parse_instant_millis(success["at"].as_str().expect("at"))
            .expect("ms");
        assert!(
            started >= previous_end,
            "{copy} started before the previous answer"
        );
        previous_end = started + success["latencyMs"].as_i64().expect("latency");
    }
    let (code, events, stderr) = run_cli(&["events", "list", "--store", &store, "--json"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut stored: Vec<String> = serde_json::from_str::<Vec<Value>>(&events)
        .expect("JSON")
        .iter()
        .map(|e| e["eventId"].as_str().expect("id").to_owned())
        .collect();
    let mut sent: Vec<String> = realtime.iter().chain(&batch).cloned().collect();
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent, "every event, each once");

    // Recovered: told after the first 2xx.
    let told = operator.wait_for(3, Duration::from_secs(30)).await;
    let recovered = body(&told[2]);
    assert_eq!(recovered["type"], "webhook.recovered", "{recovered}");
    assert_eq!(
        recovered["detail"]["requestId"].as_str(),
        Some(original_ids[0]),
        "{recovered}"
    );
    assert_eq!(verified_by_python(&operator_file, &told[2..]), [true]);

    // Resend a delivered request: once more under its webhook-id, freshly signed; the
    // receiver's deduplication keeps its events once.
    let first = original_ids[0];
    let resent = cli(state, &["deliveries", "resend", first], 0);
    assert!(
        resent.contains(&format!("queued {first} again for {id}")),
        "{resent}"
    );
    let again = wait_until(Duration::from_secs(30), || async {
        captures(&store).len() == 5
    })
    .await;
    assert!(again, "the resent request never arrived");
    let last = captures(&store).pop().expect("the resend");
    assert_eq!(
        (header(&last, "webhook-id"), last["verdict"].as_str()),
        (Some(first), Some("accepted"))
    );
    assert_eq!(last["body"], arrived[0]["body"], "the same bytes");
    let (_, events, _) = run_cli(&["events", "list", "--store", &store, "--json"], &[]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&events)
            .expect("JSON")
            .len(),
        5
    );

    run.stop().await;
}
