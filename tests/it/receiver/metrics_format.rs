//! `GET /metrics` read by a real Prometheus text-format parser (the official Python client's,
//! not our code): every family the receiver exposes, with its type, help text and labels, and
//! nothing else.
//!
//! Why a parser test and not the `prometheus-client` crate: the receiver's dozen atomics and
//! two histograms render in one small function, while the crate (and its derive macro) would
//! enter every build on this 2-core machine; what the crate would guarantee, a well-formed
//! exposition, is what this test checks with an independent reader.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::receiver::{envelope, free_addr, get, metric, FakeApp, InProcess};

const PARSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/prometheus_families.py");

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

/// Every family, with forwarding on (its three families appear only then), the pruner's
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
        help: "Requests stored and waiting to be forwarded.",
        labels: &[("", &[])],
    },
    counter(
        "receiver_forwarded",
        "Requests the app acknowledged with 2xx.",
    ),
    counter(
        "receiver_forward_failures",
        "Forwarding attempts that failed (no answer or not 2xx).",
    ),
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

/// The families the Python parser reads in `text`.
fn parse_with_python(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(PARSER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_prometheus_parser_family_by_family() {
    if !crate::support::external::python_module(
        "prometheus_client",
        "prometheus_client",
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
    let families = parse_with_python(&text);
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
