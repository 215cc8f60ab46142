//! `GET /metrics` of `sender run --metrics` and of `sender admin`, read by Prometheus's own
//! text parser (the official Python client's, not our code): every family with its type, help
//! text and labels, and nothing else; `/healthz` answers 200 while the state answers and 503
//! while its database is gone, on the metrics address and on the admin's own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use super::{cli_json, SenderRun};
use crate::support::admin::TOKEN;
use crate::support::prometheus::{families, parser_available, sample};
use crate::support::receiver::{free_addr, get, request, send, wait_until};

/// One family: name (as the parser names it: a counter without `_total`), type, help text,
/// and the label names of each sample name.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
}

const PER_WEBHOOK: &[(&str, &[&str])] = &[("", &["webhook"])];

const EXPECTED: &[Family] = &[
    Family {
        name: "sender_state_up",
        kind: "gauge",
        help: "Whether the state store answered this scrape.",
        labels: &[("", &[])],
    },
    Family {
        name: "sender_requests_pending",
        kind: "gauge",
        help: "Requests waiting to be delivered or retried, per webhook.",
        labels: PER_WEBHOOK,
    },
    Family {
        name: "sender_oldest_pending_age_seconds",
        kind: "gauge",
        help: "Age of the webhook's oldest pending request (0 when none is pending).",
        labels: PER_WEBHOOK,
    },
    Family {
        name: "sender_events_staged",
        kind: "gauge",
        help: "Batch events waiting for their webhook's batch.",
        labels: PER_WEBHOOK,
    },
    Family {
        name: "sender_webhook_disabled",
        kind: "gauge",
        help: "1 when the sender disabled the webhook at the end of retention.",
        labels: PER_WEBHOOK,
    },
    Family {
        name: "sender_attempts",
        kind: "counter",
        help: "Delivery attempts this process made, per webhook and outcome (status class, or error when no answer came).",
        labels: &[("_total", &["webhook", "outcome"])],
    },
];

/// Checks `families` against [`EXPECTED`], family by family.
fn check_families(found: &[Value]) {
    let names: BTreeSet<&str> = found
        .iter()
        .map(|family| family["name"].as_str().expect("name"))
        .collect();
    let expected: BTreeSet<&str> = EXPECTED.iter().map(|family| family.name).collect();
    assert_eq!(names, expected, "families");
    for want in EXPECTED {
        let family = found
            .iter()
            .find(|family| family["name"] == want.name)
            .expect("found");
        assert_eq!(family["type"], want.kind, "{}", want.name);
        assert_eq!(family["help"], want.help, "{}", want.name);
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for sample in family["samples"].as_array().expect("samples") {
            let suffix = sample["name"]
                .as_str()
                .and_then(|name| name.strip_prefix(want.name))
                .expect("a sample of the family")
                .to_owned();
            let names = sample["labels"]
                .as_object()
                .expect("labels")
                .keys()
                .cloned();
            labels.entry(suffix).or_default().extend(names);
        }
        let wanted: BTreeMap<String, BTreeSet<String>> = want
            .labels
            .iter()
            .map(|(suffix, names)| {
                let names = names.iter().map(|name| (*name).to_owned()).collect();
                ((*suffix).to_owned(), names)
            })
            .collect();
        assert_eq!(labels, wanted, "{}", want.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_prometheus_parser_and_healthz_follows_the_database() {
    if !parser_available("the sender's /metrics with Python's Prometheus parser") {
        return;
    }
    let cluster = match common::test_postgres::TestCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => {
            common::test_postgres::skip_or_fail(
                "the sender's /healthz through a database outage",
                &error,
            );
            return;
        }
    };
    let state = cluster.create_database().expect("database");
    let url = format!("http://{}/webhook", free_addr());
    let added = cli_json(
        &state,
        &[
            "webhooks", "add", "--name", "CRM", "--url", &url, "--events", "all", "--json",
        ],
    );
    let id = added["id"].as_str().expect("id").to_owned();
    crate::sender::enqueue(&state, 2).await;
    cli_json(
        &state,
        &[
            "trigger",
            "COURSE_ENROLLMENT_BATCH",
            "--count",
            "1",
            "--enqueue-only",
            "--json",
        ],
    );
    // A retention of an hour: the webhook stays pending (and failing) through the test.
    let numbers = [
        "--retry-initial",
        "100ms",
        "--retry-max",
        "200ms",
        "--poll-interval",
        "20ms",
    ];
    let run = SenderRun::start_with_numbers(&state, &numbers, &["--metrics", "127.0.0.1:0"]).await;
    let metrics = run.metrics.expect("its address");

    // Every family once a failed attempt is counted; the values are the queue's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        let found = run.metrics().await;
        let failed = sample(
            &found,
            "sender_attempts_total",
            &json!({"webhook": id, "outcome": "error"}),
        );
        if failed.is_some_and(|count| count >= 1.0) {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{found:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    check_families(&found);
    let of_webhook = json!({"webhook": id});
    assert!(sample(&found, "sender_requests_pending", &of_webhook).is_some_and(|n| n >= 2.0));
    assert!(
        sample(&found, "sender_oldest_pending_age_seconds", &of_webhook)
            .is_some_and(|age| age > 0.0)
    );

    // /healthz: 200 while the database answers, 503 while it is gone, 200 again after.
    let health = |addr| async move { get(addr, "/healthz").await.status.as_u16() };
    assert_eq!(health(metrics).await, 200);
    assert_eq!(get(metrics, "/elsewhere").await.status.as_u16(), 404);
    cluster.stop().expect("database stopped");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            health(metrics).await == 503
        })
        .await,
        "/healthz said nothing of the outage"
    );
    let down = families(std::str::from_utf8(&get(metrics, "/metrics").await.body).expect("UTF-8"));
    assert_eq!(sample(&down, "sender_state_up", &json!({})), Some(0.0));
    cluster.restart().expect("database back");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            health(metrics).await == 200
        })
        .await,
        "/healthz did not come back"
    );
    run.stop().await;

    // `sender admin` answers both on its own address: /healthz without the token (a probe),
    // /metrics with it (as every page), and on --metrics without it.
    let admin =
        crate::support::admin::AdminProcess::start_with(&state, &["--metrics", "127.0.0.1:0"])
            .await;
    assert_eq!(health(admin.addr).await, 200);
    let refused = get(admin.addr, "/metrics").await;
    assert_eq!(refused.status.as_u16(), 401);
    // Its own worker's attempts show once it made one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let found = loop {
        let allowed = send(
            admin.addr,
            request(
                admin.addr,
                http::Method::GET,
                "/metrics",
                &[("x-admin-token", TOKEN)],
                "",
            ),
        )
        .await;
        assert_eq!(allowed.status.as_u16(), 200);
        let found = families(std::str::from_utf8(&allowed.body).expect("UTF-8"));
        let failed = sample(
            &found,
            "sender_attempts_total",
            &json!({"webhook": id, "outcome": "error"}),
        );
        if failed.is_some() {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{found:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    check_families(&found);
    let own = admin.metrics.expect("the admin's --metrics address");
    assert_eq!(get(own, "/metrics").await.status.as_u16(), 200);
    admin.stop().await;
}
