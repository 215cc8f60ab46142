//! Counters and histograms for `GET /metrics`, in the Prometheus text format (version 0.0.4).
//!
//! Hand-written rather than a metrics crate: a dozen atomics and one small map are all the
//! receiver needs, and the exposition format is a stable, documented text format. That the text
//! is well-formed is checked by an independent reader: `tests/it/receiver/metrics_format.rs`
//! parses it with the official Prometheus Python client, family by family (leaner than
//! building `prometheus-client` and its derive macro into every build).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::accept_outcome::AcceptOutcome;

mod forwarding;
pub use forwarding::ForwardMetrics;

/// Upper bounds, in seconds, of the commit latency buckets.
const COMMIT_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the group-commit batch size buckets (requests per commit).
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The status codes counted by answer; anything else counts as `other`.
const ANSWERS: &[u16] = &[200, 400, 401, 404, 405, 408, 413, 415, 503];

/// A cumulative histogram with fixed buckets. The sum is kept in millionths so it fits an
/// atomic integer.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_millionths: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_millionths: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int conversion: negative or huge values cannot wrap.
        let millionths = (value * 1_000_000.0) as u64;
        self.sum_millionths.fetch_add(millionths, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_millionths.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }

    /// `(upper bound, observations in that bucket alone)` for each bucket that has any.
    fn non_empty_buckets(&self) -> Vec<(f64, u64)> {
        let mut previous = 0;
        let mut buckets = Vec::new();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let cumulative = count.load(Ordering::Relaxed);
            if cumulative > previous {
                buckets.push((*bound, cumulative - previous));
            }
            previous = cumulative;
        }
        let total = self.count.load(Ordering::Relaxed);
        if total > previous {
            buckets.push((f64::INFINITY, total - previous));
        }
        buckets
    }
}

/// The receiver's counters, shared by the service and the store writer.
pub struct Metrics {
    answers: Vec<AtomicU64>,
    other_answers: AtomicU64,
    // Reason codes are a small closed set once numbers are cut off (see `refusal_label`); a
    // std Mutex is fine because it is held only for one map update, never across `.await`.
    refusals: Mutex<BTreeMap<String, u64>>,
    events_stored: AtomicU64,
    events_duplicate: AtomicU64,
    refusals_not_kept: AtomicU64,
    output_lines_dropped: AtomicU64,
    connections_open: AtomicI64,
    store_up: AtomicBool,
    commit_seconds: Histogram,
    batch_sizes: Histogram,
    /// The forwarding families (`--forward-to`), per target.
    pub forwarding: ForwardMetrics,
    pruning: Pruning,
}

/// What the listener's pruner removed, and how long its batches held the store.
struct Pruning {
    requests: AtomicU64,
    events: AtomicU64,
    refused: AtomicU64,
    keys_expired: AtomicU64,
    batch_seconds: Histogram,
    longest_batch_micros: AtomicU64,
}

impl Pruning {
    fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 4] = [
            (
                "receiver_pruned_requests_total",
                "Accepted requests removed by the retention.",
                &self.requests,
            ),
            (
                "receiver_pruned_events_total",
                "Events removed with them.",
                &self.events,
            ),
            (
                "receiver_pruned_refused_total",
                "Refused requests removed by the retention.",
                &self.refused,
            ),
            (
                "receiver_dedupe_keys_expired_total",
                "Dedupe keys of removed events dropped at the end of their window.",
                &self.keys_expired,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        self.batch_seconds.render(
            out,
            "receiver_prune_batch_seconds",
            "How long one prune batch held the store (commits wait as long).",
        );
        let _ = writeln!(
            out,
            "# HELP receiver_prune_longest_batch_seconds The longest a prune batch held the store since start.\n# TYPE receiver_prune_longest_batch_seconds gauge\nreceiver_prune_longest_batch_seconds {}",
            self.longest_batch_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            answers: ANSWERS.iter().map(|_| AtomicU64::new(0)).collect(),
            other_answers: AtomicU64::new(0),
            refusals: Mutex::new(BTreeMap::new()),
            events_stored: AtomicU64::new(0),
            events_duplicate: AtomicU64::new(0),
            refusals_not_kept: AtomicU64::new(0),
            output_lines_dropped: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            store_up: AtomicBool::new(false),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BUCKETS),
            batch_sizes: Histogram::new(BATCH_SIZE_BUCKETS),
            forwarding: ForwardMetrics::default(),
            pruning: Pruning {
                requests: AtomicU64::new(0),
                events: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                keys_expired: AtomicU64::new(0),
                batch_seconds: Histogram::new(COMMIT_SECONDS_BUCKETS),
                longest_batch_micros: AtomicU64::new(0),
            },
        }
    }
}

/// A reason code without its variable number (`timestamp_too_old:412` → `timestamp_too_old`),
/// so the label set stays small.
fn refusal_label(reason: &str) -> &str {
    match reason.split_once(':') {
        Some((code, _)) if code.starts_with("timestamp_too_") => code,
        _ => reason,
    }
}

impl Metrics {
    /// Counts one answer.
    pub fn answered(&self, status: u16) {
        match ANSWERS.iter().position(|code| *code == status) {
            Some(index) => self.answers[index].fetch_add(1, Ordering::Relaxed),
            None => self.other_answers.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Counts one refusal by its reason code.
    pub fn refused(&self, reason: &str) {
        let label = refusal_label(reason);
        if let Ok(mut refusals) = self.refusals.lock() {
            *refusals.entry(label.to_owned()).or_default() += 1;
        }
    }

    /// Counts the events of one committed request.
    pub fn observe_events(&self, outcome: &AcceptOutcome) {
        self.events_stored
            .fetch_add(outcome.stored() as u64, Ordering::Relaxed);
        self.events_duplicate
            .fetch_add(outcome.duplicates() as u64, Ordering::Relaxed);
    }

    /// Records one commit: how long it took and how many requests it carried.
    pub fn observe_commit(&self, latency: Duration, requests: usize) {
        self.commit_seconds.observe(latency.as_secs_f64());
        if requests > 0 {
            self.batch_sizes.observe(requests as f64);
        }
    }

    /// Whether the last commit succeeded.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Relaxed);
    }

    /// A refused request could not be queued for keeping.
    pub fn refusal_not_kept(&self) {
        self.refusals_not_kept.fetch_add(1, Ordering::Relaxed);
    }

    /// An output line was dropped because standard output did not keep up.
    pub fn output_line_dropped(&self) {
        self.output_lines_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection_delta(&self, delta: i64) {
        self.connections_open.fetch_add(delta, Ordering::Relaxed);
    }

    /// One batch of the listener's prune: how long it held the store, and what it removed.
    pub fn observe_prune(
        &self,
        held: Duration,
        requests: u64,
        events: u64,
        refused: u64,
        keys_expired: u64,
    ) {
        let pruning = &self.pruning;
        pruning.requests.fetch_add(requests, Ordering::Relaxed);
        pruning.events.fetch_add(events, Ordering::Relaxed);
        pruning.refused.fetch_add(refused, Ordering::Relaxed);
        pruning
            .keys_expired
            .fetch_add(keys_expired, Ordering::Relaxed);
        pruning.batch_seconds.observe(held.as_secs_f64());
        let micros = u64::try_from(held.as_micros()).unwrap_or(u64::MAX);
        pruning
            .longest_batch_micros
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// Group-commit batch sizes seen so far: `(upper bound, commits)` per non-empty bucket.
    pub fn batch_size_buckets(&self) -> Vec<(f64, u64)> {
        self.batch_sizes.non_empty_buckets()
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP receiver_requests_total Requests answered, by status code.\n");
        out.push_str("# TYPE receiver_requests_total counter\n");
        for (code, count) in ANSWERS.iter().zip(&self.answers) {
            let _ = writeln!(
                out,
                "receiver_requests_total{{answer=\"{code}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "receiver_requests_total{{answer=\"other\"}} {}",
            self.other_answers.load(Ordering::Relaxed)
        );
        out.push_str("# HELP receiver_refusals_total Refused requests, by reason code.\n");
        out.push_str("# TYPE receiver_refusals_total counter\n");
        if let Ok(refusals) = self.refusals.lock() {
            for (reason, count) in refusals.iter() {
                // Reason codes hold no quotes or backslashes; escape anyway, as the format asks.
                let reason = reason.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "receiver_refusals_total{{reason=\"{reason}\"}} {count}"
                );
            }
        }
        let counters: [(&str, &str, u64); 4] = [
            (
                "receiver_events_stored_total",
                "Events stored for the first time.",
                self.events_stored.load(Ordering::Relaxed),
            ),
            (
                "receiver_events_duplicate_total",
                "Events acknowledged but already stored.",
                self.events_duplicate.load(Ordering::Relaxed),
            ),
            (
                "receiver_refusals_not_kept_total",
                "Refused requests not kept because the store queue was full.",
                self.refusals_not_kept.load(Ordering::Relaxed),
            ),
            (
                "receiver_output_lines_dropped_total",
                "Output lines dropped because standard output did not keep up.",
                self.output_lines_dropped.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP receiver_connections_open Connections being served.\n# TYPE receiver_connections_open gauge\nreceiver_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP receiver_store_up Whether the last store commit succeeded.\n# TYPE receiver_store_up gauge\nreceiver_store_up {}",
            u8::from(self.store_up.load(Ordering::Relaxed))
        );
        self.forwarding.render(&mut out, verify::unix_now_ms());
        self.commit_seconds.render(
            &mut out,
            "receiver_commit_seconds",
            "Time to run and commit one group transaction.",
        );
        self.batch_sizes.render(
            &mut out,
            "receiver_commit_batch_requests",
            "Accepted requests per group commit.",
        );
        self.pruning.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.answered(200);
        metrics.answered(401);
        metrics.answered(418);
        metrics.refused("timestamp_too_old:412");
        metrics.refused("timestamp_too_old:9000");
        metrics.refused("missing_header:webhook-id");
        metrics.observe_commit(Duration::from_millis(3), 5);
        metrics.observe_events(&AcceptOutcome {
            new: vec![true, false, true],
            ..AcceptOutcome::default()
        });
        let text = metrics.render();
        for line in [
            "receiver_requests_total{answer=\"200\"} 1",
            "receiver_requests_total{answer=\"other\"} 1",
            "receiver_refusals_total{reason=\"timestamp_too_old\"} 2",
            "receiver_refusals_total{reason=\"missing_header:webhook-id\"} 1",
            "receiver_events_stored_total 2",
            "receiver_events_duplicate_total 1",
            "receiver_commit_batch_requests_bucket{le=\"4\"} 0",
            "receiver_commit_batch_requests_bucket{le=\"8\"} 1",
            "receiver_commit_batch_requests_count 1",
            "receiver_commit_seconds_bucket{le=\"0.005\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert_eq!(metrics.batch_size_buckets(), vec![(8.0, 1)]);
    }
}
