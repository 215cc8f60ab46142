//! The Prometheus text of `/metrics`: the attempts this process made (counted as they are
//! judged) and, read from the state at each scrape, every webhook's backlog.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::registry::WebhookId;
use crate::store::Backlog;

/// The outcome label of an attempt: its status class, or `error` when no answer came.
pub fn outcome_label(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "error",
    }
}

/// The attempts this process made, per webhook and outcome.
#[derive(Debug, Default)]
pub struct AttemptCounters {
    // A std Mutex, never held across an await: one short map update per attempt.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl AttemptCounters {
    /// Counts one attempt at `webhook` that got `status` (or no answer).
    pub fn attempted(&self, webhook: &WebhookId, status: Option<u16>) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts
            .entry((webhook.as_str().to_owned(), outcome_label(status)))
            .or_default() += 1;
    }

    /// Forgets the counts of webhooks not in `kept` (deleted since), so the map stays as small
    /// as the registrations.
    pub fn retain(&self, kept: &[WebhookId]) {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(webhook, _), _| kept.iter().any(|id| id.as_str() == webhook));
    }

    fn snapshot(&self) -> BTreeMap<(String, &'static str), u64> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A label value as the text format writes it (`\`, `"` and line feeds escaped).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A per-webhook gauge: its name, help text, and its value for a backlog at a time (epoch ms).
type Gauge = (&'static str, &'static str, fn(&Backlog, i64) -> String);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition: `backlogs` (`None` when the state did not answer) read at `now_ms`, and
/// the attempt counters.
pub fn render(counters: &AttemptCounters, backlogs: Option<&[Backlog]>, now_ms: i64) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "sender_state_up",
        "gauge",
        "Whether the state store answered this scrape.",
    );
    let _ = writeln!(out, "sender_state_up {}", u8::from(backlogs.is_some()));
    if let Some(backlogs) = backlogs {
        let gauges: [Gauge; 4] = [
            (
                "sender_requests_pending",
                "Requests waiting to be delivered or retried, per webhook.",
                |backlog, _| backlog.pending.to_string(),
            ),
            (
                "sender_oldest_pending_age_seconds",
                "Age of the webhook's oldest pending request (0 when none is pending).",
                |backlog, now_ms| {
                    let age_ms = backlog
                        .oldest_pending_ms
                        .map_or(0, |oldest| now_ms.saturating_sub(oldest).max(0));
                    format!("{:.3}", age_ms as f64 / 1000.0)
                },
            ),
            (
                "sender_events_staged",
                "Batch events waiting for their webhook's batch.",
                |backlog, _| backlog.staged.to_string(),
            ),
            (
                "sender_webhook_disabled",
                "1 when the sender disabled the webhook at the end of retention.",
                |backlog, _| u8::from(backlog.disabled).to_string(),
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut out, name, "gauge", help);
            for backlog in backlogs {
                let _ = writeln!(
                    out,
                    "{name}{{webhook=\"{}\"}} {}",
                    label(backlog.webhook_id.as_str()),
                    value(backlog, now_ms)
                );
            }
        }
    }
    family(
        &mut out,
        "sender_attempts_total",
        "counter",
        "Delivery attempts this process made, per webhook and outcome (status class, or error when no answer came).",
    );
    for ((webhook, outcome), count) in counters.snapshot() {
        // Webhooks deleted since stop being shown; the state's list is the truth.
        if backlogs
            .is_some_and(|backlogs| !backlogs.iter().any(|b| b.webhook_id.as_str() == webhook))
        {
            continue;
        }
        let _ = writeln!(
            out,
            "sender_attempts_total{{webhook=\"{}\",outcome=\"{outcome}\"}} {count}",
            label(&webhook)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlogs_and_attempts_render_as_the_text_format() {
        let counters = AttemptCounters::default();
        let id = WebhookId("wh_a".into());
        counters.attempted(&id, Some(503));
        counters.attempted(&id, Some(503));
        counters.attempted(&id, None);
        counters.attempted(&WebhookId("wh_deleted".into()), Some(200));
        let backlogs = [Backlog {
            webhook_id: id,
            disabled: true,
            pending: 3,
            oldest_pending_ms: Some(1_000),
            staged: 2,
        }];
        let text = render(&counters, Some(&backlogs), 3_500);
        for line in [
            "sender_state_up 1",
            "sender_requests_pending{webhook=\"wh_a\"} 3",
            "sender_oldest_pending_age_seconds{webhook=\"wh_a\"} 2.500",
            "sender_events_staged{webhook=\"wh_a\"} 2",
            "sender_webhook_disabled{webhook=\"wh_a\"} 1",
            "sender_attempts_total{webhook=\"wh_a\",outcome=\"5xx\"} 2",
            "sender_attempts_total{webhook=\"wh_a\",outcome=\"error\"} 1",
            "# TYPE sender_attempts_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("wh_deleted"));
        let down = render(&counters, None, 0);
        assert!(down.contains("sender_state_up 0") && !down.contains("sender_requests_pending{"));
        assert!(
            down.contains("wh_deleted"),
            "without the state, every counter shows"
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
