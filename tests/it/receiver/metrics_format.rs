//! `GET /metrics` read by a real Prometheus text-format parser (the official Python client's,
//! not our code): every family the receiver exposes, with its type, help text and labels, and
//! nothing else.
//!
//! Why a parser test and not the `prometheus-client` crate: the receiver's dozen atomics and
//! two histograms render in one small function, while the crate (and its derive macro) would
//! enter every build on this 2-core machine; what the crate would guarantee, a well-formed
//! exposition, is what this test checks with an independent reader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::receiver::{envelope, free_addr, get, metric, FakeApp, InProcess};

/// One family as the receiver should expose it: name (as the parser names it: a counter
/// without `_total`), type, help text, and the label names of each sample name.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    labels: &'static [(&'static str, &'static [&'static str])],
}

/// A counter without labels: one sample, `NAME_total`.
const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "counter",
        help,
        labels: &[("_total", &[])],
    }
}

const HISTOGRAM_LABELS: &[(&str, &[&str])] =
    &[("_bucket", &["le"]), ("_sum", &[]), ("_count", &[])];

/// Every family, with forwarding on (its six families appear only then), the pruner's
/// included (there whether or not a retention is set: it also drops expired dedupe keys).
const EXPECTED: &[Family] = &[
    Family {
        name: "receiver_requests",
        kind: "counter",
        help: "Requests answered, by status code.",
        labels: &[("_total", &["answer"])],
    },
    Family {
        name: "receiver_refusals",
        kind: "counter",
        help: "Refused requests, by reason code.",
        labels: &[("_total", &["reason"])],
    },
    counter(
        "receiver_events_stored",
        "Events stored for the first time.",
    ),
    counter(
        "receiver_events_duplicate",
        "Events acknowledged but already stored.",
    ),
    counter(
        "receiver_refusals_not_kept",
        "Refused requests not kept because the store queue was full.",
    ),
    counter(
        "receiver_output_lines_dropped",
        "Output lines dropped because standard output did not keep up.",
    ),
    Family {
        name: "receiver_connections_open",
        kind: "gauge",
        help: "Connections being served.",
        labels: &[("", &[])],
    },
    Family {
        name: "receiver_store_up",
        kind: "gauge",
        help: "Whether the last store commit succeeded.",
        labels: &[("", &[])],
    },
    Family {
        name: "receiver_forward_pending",
        kind: "gauge",
        help: "Forward jobs waiting, all targets (a request waiting for two targets counts twice).",
        labels: &[("", &[])],
    },
    counter(
        "receiver_forwarded",
        "Requests an app acknowledged with 2xx, all targets.",
    ),
    counter(
        "receiver_forward_failures",
        "Forwarding attempts that failed (no answer or not 2xx), all targets.",
    ),
    Family {
        name: "receiver_forward_jobs",
        kind: "gauge",
        help: "Forward jobs by target and state: pending (waiting or being tried), parked (refused by the app, waiting for a retry).",
        labels: &[("", &["state", "target"])],
    },
    Family {
        name: "receiver_forward_oldest_pending_seconds",
        kind: "gauge",
        help: "Age of the oldest pending forward job, by target (0 when none waits).",
        labels: &[("", &["target"])],
    },
    Family {
        name: "receiver_forward_attempts",
        kind: "counter",
        help: "Forwarding attempts by target and outcome: delivered (2xx), failed (tried again, holding the queue), parked (refused for good).",
        labels: &[("_total", &["outcome", "target"])],
    },
    Family {
        name: "receiver_commit_seconds",
        kind: "histogram",
        help: "Time to run and commit one group transaction.",
        labels: HISTOGRAM_LABELS,
    },
    Family {
        name: "receiver_commit_batch_requests",
        kind: "histogram",
        help: "Accepted requests per group commit.",
        labels: HISTOGRAM_LABELS,
    },
    counter(
        "receiver_pruned_requests",
        "Accepted requests removed by the retention.",
    ),
    counter("receiver_pruned_events", "Events removed with them."),
    counter(
        "receiver_pruned_refused",
        "Refused requests removed by the retention.",
    ),
    counter(
        "receiver_dedupe_keys_expired",
        "Dedupe keys of removed events dropped at the end of their window.",
    ),
    Family {
        name: "receiver_prune_batch_seconds",
        kind: "histogram",
        help: "How long one prune batch held the store (commits wait as long).",
        labels: HISTOGRAM_LABELS,
    },
    Family {
        name: "receiver_prune_longest_batch_seconds",
        kind: "gauge",
        help: "The longest a prune batch held the store since start.",
        labels: &[("", &[])],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_prometheus_parser_family_by_family() {
    if !crate::support::prometheus::parser_available(
        "the /metrics check with Python's Prometheus parser",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = FakeApp::start_at(free_addr(), 200).await;
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.forward = Some(receiver::forward::ForwardConfig::new(
        format!("http://{}/app", app.addr).parse().unwrap(),
    ));
    let receiver = InProcess::start(config).await;
    // One of each: stored, duplicate, refused with a reason, answered 404.
    assert_eq!(receiver.post(&[], envelope(7, &["a"])).await.status, 200);
    assert_eq!(receiver.post(&[], envelope(7, &["a"])).await.status, 200);
    assert_eq!(receiver.post(&[], "not json").await.status, 400);
    assert_eq!(get(receiver.addr, "/elsewhere").await.status, 404);
    assert!(app.wait_acknowledged(1, Duration::from_secs(10)).await);
    // The forwarded counter moves once the job is marked done, just after the app's 2xx.
    assert!(
        crate::support::receiver::wait_until(Duration::from_secs(10), || async {
            metric(receiver.addr, "receiver_forwarded_total").await == Some(1.0)
        })
        .await
    );

    let text = String::from_utf8(get(receiver.addr, "/metrics").await.body.to_vec()).unwrap();
    let families = crate::support::prometheus::families(&text);
    let found: Vec<&str> = families
        .iter()
        .map(|family| family["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|family| family.name).collect();
    assert_eq!(
        found.iter().collect::<BTreeSet<_>>(),
        expected.iter().collect::<BTreeSet<_>>(),
        "families"
    );
    for want in EXPECTED {
        let family = families
            .iter()
            .find(|family| family["name"] == want.name)
            .unwrap();
        assert_eq!(family["type"], want.kind, "{}", want.name);
        assert_eq!(family["help"], want.help, "{}", want.name);
        // Label names by sample name (the suffix after the family's name).
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for sample in family["samples"].as_array().unwrap() {
            let suffix = sample["name"]
                .as_str()
                .unwrap()
                .strip_prefix(want.name)
                .unwrap()
                .to_owned();
            let names = sample["labels"].as_object().unwrap().keys().cloned();
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
    // The values the parser read are the ones the traffic made.
    let value = |name: &str, labels: Value| -> f64 {
        families
            .iter()
            .flat_map(|family| family["samples"].as_array().unwrap())
            .find(|sample| sample["name"] == name && sample["labels"] == labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        value(
            "receiver_requests_total",
            serde_json::json!({"answer": "200"})
        ),
        2.0
    );
    assert_eq!(
        value(
            "receiver_requests_total",
            serde_json::json!({"answer": "404"})
        ),
        1.0
    );
    assert_eq!(
        value(
            "receiver_refusals_total",
            serde_json::json!({"reason": "invalid_json"})
        ),
        1.0
    );
    assert_eq!(
        value("receiver_events_stored_total", serde_json::json!({})),
        1.0
    );
    assert_eq!(
        value("receiver_events_duplicate_total", serde_json::json!({})),
        1.0
    );
    assert_eq!(value("receiver_store_up", serde_json::json!({})), 1.0);
    let target = format!("http://{}/app", app.addr);
    assert_eq!(
        value(
            "receiver_forward_attempts_total",
            serde_json::json!({"target": target, "outcome": "delivered"})
        ),
        1.0
    );
    assert_eq!(
        value(
            "receiver_forward_jobs",
            serde_json::json!({"target": target, "state": "parked"})
        ),
        0.0
    );
    assert_eq!(
        value(
            "receiver_commit_batch_requests_bucket",
            serde_json::json!({"le": "+Inf"})
        ),
        value(
            "receiver_commit_batch_requests_count",
            serde_json::json!({})
        ),
    );
    receiver.stop().await.unwrap();
}
