//! The forwarding families of `GET /metrics`, per target: jobs pending and parked and the age
//! of the oldest pending job (read from the store by the forwarder's backlog task, so they
//! count every receiver's jobs on a shared database, and an operator's retries and skips),
//! and attempts by outcome (this receiver's).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::backlog::TargetBacklog;

/// What `/metrics` says about forwarding; rendered only when forwarding is on.
#[derive(Default)]
pub struct ForwardMetrics {
    enabled: AtomicBool,
    // std Mutexes, held for one map update or one render, never across `.await`.
    /// The targets of this receiver (shown even when nothing waits) and the last backlog.
    backlog: Mutex<BTreeMap<String, TargetBacklog>>,
    /// `(target, outcome)` → attempts.
    attempts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

/// The outcomes counted, so every target shows each (a rate of zero is a rate).
const OUTCOMES: [&str; 3] = ["delivered", "failed", "parked"];

/// A label value as the text format wants it: backslash, quote and line feed escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl ForwardMetrics {
    /// Forwarding is on, to `targets`.
    pub fn start(&self, targets: impl IntoIterator<Item = String>) {
        self.enabled.store(true, Ordering::Relaxed);
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        for target in targets {
            for outcome in OUTCOMES {
                attempts.entry((target.clone(), outcome)).or_insert(0);
            }
            backlog.insert(
                target.clone(),
                TargetBacklog {
                    target,
                    pending: 0,
                    parked: 0,
                    oldest_pending_queued_at_ms: None,
                },
            );
        }
    }

    /// The backlog as the store counted it just now: targets not in it have nothing waiting.
    pub fn set_backlog(&self, counted: Vec<TargetBacklog>) {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        for entry in backlog.values_mut() {
            entry.pending = 0;
            entry.parked = 0;
            entry.oldest_pending_queued_at_ms = None;
        }
        for entry in counted {
            backlog.insert(entry.target.clone(), entry);
        }
    }

    /// One attempt to `target` ended with `outcome` (`delivered`, `failed` or `parked`).
    pub fn attempted(&self, target: &str, outcome: &'static str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        *attempts.entry((target.to_owned(), outcome)).or_default() += 1;
    }

    /// The families, at `now_ms` (the age of the oldest pending job is counted from it).
    pub(super) fn render(&self, out: &mut String, now_ms: i64) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let pending: u64 = backlog.values().map(|entry| entry.pending).sum();
        let count = |outcome: &str| -> u64 {
            attempts
                .iter()
                .filter(|((_, counted), _)| *counted == outcome)
                .map(|(_, count)| count)
                .sum()
        };
        let _ = writeln!(
            out,
            "# HELP receiver_forward_pending Forward jobs waiting, all targets (a request waiting for two targets counts twice).\n# TYPE receiver_forward_pending gauge\nreceiver_forward_pending {pending}"
        );
        let _ = writeln!(
            out,
            "# HELP receiver_forwarded_total Requests an app acknowledged with 2xx, all targets.\n# TYPE receiver_forwarded_total counter\nreceiver_forwarded_total {}",
            count("delivered")
        );
        let _ = writeln!(
            out,
            "# HELP receiver_forward_failures_total Forwarding attempts that failed (no answer or not 2xx), all targets.\n# TYPE receiver_forward_failures_total counter\nreceiver_forward_failures_total {}",
            count("failed") + count("parked")
        );
        out.push_str(
            "# HELP receiver_forward_jobs Forward jobs by target and state: pending (waiting or being tried), parked (refused by the app, waiting for a retry).\n# TYPE receiver_forward_jobs gauge\n",
        );
        for entry in backlog.values() {
            let target = label(&entry.target);
            let _ = writeln!(
                out,
                "receiver_forward_jobs{{target=\"{target}\",state=\"pending\"}} {}\nreceiver_forward_jobs{{target=\"{target}\",state=\"parked\"}} {}",
                entry.pending, entry.parked
            );
        }
        out.push_str(
            "# HELP receiver_forward_oldest_pending_seconds Age of the oldest pending forward job, by target (0 when none waits).\n# TYPE receiver_forward_oldest_pending_seconds gauge\n",
        );
        for entry in backlog.values() {
            let age_ms = entry
                .oldest_pending_queued_at_ms
                .map_or(0, |queued| now_ms.saturating_sub(queued).max(0));
            let _ = writeln!(
                out,
                "receiver_forward_oldest_pending_seconds{{target=\"{}\"}} {:.3}",
                label(&entry.target),
                age_ms as f64 / 1000.0
            );
        }
        out.push_str(
            "# HELP receiver_forward_attempts_total Forwarding attempts by target and outcome: delivered (2xx), failed (tried again, holding the queue), parked (refused for good).\n# TYPE receiver_forward_attempts_total counter\n",
        );
        for ((target, outcome), count) in attempts.iter() {
            let _ = writeln!(
                out,
                "receiver_forward_attempts_total{{target=\"{}\",outcome=\"{outcome}\"}} {count}",
                label(target)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_target_backlog_age_and_attempts() {
        let metrics = ForwardMetrics::default();
        let mut out = String::new();
        metrics.render(&mut out, 0);
        assert!(out.is_empty(), "nothing while forwarding is off");
        metrics.start(["http://crm/".to_owned(), "http://rep/\"x\"".to_owned()]);
        metrics.set_backlog(vec![TargetBacklog {
            target: "http://crm/".to_owned(),
            pending: 3,
            parked: 1,
            oldest_pending_queued_at_ms: Some(10_000),
        }]);
        metrics.attempted("http://crm/", "failed");
        metrics.attempted("http://crm/", "parked");
        metrics.attempted("http://rep/\"x\"", "delivered");
        metrics.render(&mut out, 22_500);
        for line in [
            "receiver_forward_pending 3",
            "receiver_forwarded_total 1",
            "receiver_forward_failures_total 2",
            "receiver_forward_jobs{target=\"http://crm/\",state=\"pending\"} 3",
            "receiver_forward_jobs{target=\"http://crm/\",state=\"parked\"} 1",
            "receiver_forward_jobs{target=\"http://rep/\\\"x\\\"\",state=\"pending\"} 0",
            "receiver_forward_oldest_pending_seconds{target=\"http://crm/\"} 12.500",
            "receiver_forward_oldest_pending_seconds{target=\"http://rep/\\\"x\\\"\"} 0.000",
            "receiver_forward_attempts_total{target=\"http://crm/\",outcome=\"failed\"} 1",
            "receiver_forward_attempts_total{target=\"http://crm/\",outcome=\"delivered\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
        }
        // A later count without the target: nothing waits there any more.
        metrics.set_backlog(Vec::new());
        let mut out = String::new();
        metrics.render(&mut out, 22_500);
        assert!(out.contains("receiver_forward_jobs{target=\"http://crm/\",state=\"pending\"} 0"));
    }
}
