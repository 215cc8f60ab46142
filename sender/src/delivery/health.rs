//! A webhook's health followed through its outcomes, as pure code: failed attempts in a row,
//! the moment they make it failing ([`FAILING_AFTER`]), a disable at the end of retention, the
//! first 2xx after either; and the operator notifications each change makes. The worker feeds
//! it every judged answer and hands what changed to the store with the outcomes' commit, so a
//! change is written once, by the lease holder, in the transaction of the outcome that made it.

use serde_json::{json, Map, Value};
use verify::timestamp::format_iso_millis;

use crate::store::{
    AttemptRecord, HealthChange, HealthState, Notice, NotificationKind, RequestState,
    WebhookHealth, FAILING_AFTER,
};

/// The health of the webhook a worker holds, between commits.
#[derive(Debug, Clone)]
pub(super) struct HealthTracker {
    /// As the store has it (read when the lease was taken, then as committed).
    stored: WebhookHealth,
    /// With the outcomes judged since the last commit.
    current: WebhookHealth,
    /// Notifications the outcomes since the last commit made.
    notices: Vec<Notice>,
    /// Whether to queue notifications (`--notify-url`); the health is kept either way.
    notify: bool,
}

impl HealthTracker {
    /// Starts from the stored health. A worker works only active webhooks, so one stored as
    /// disabled was activated again since: it is failing until its first 2xx (which tells it
    /// recovered), and a second end of retention is a second disable, told again.
    pub(super) fn new(stored: WebhookHealth, notify: bool) -> Self {
        let mut current = stored;
        if current.state == HealthState::Disabled {
            current.state = HealthState::Failing;
        }
        Self {
            stored,
            current,
            notices: Vec::new(),
            notify,
        }
    }

    /// Follows one judged attempt at the request `msg_id` of the webhook `webhook_name`.
    pub(super) fn judged(&mut self, record: &AttemptRecord, msg_id: &str, webhook_name: &str) {
        let at_ms = record.started_at_ms.saturating_add(record.latency_ms);
        let outcome = |detail: &mut Map<String, Value>| {
            detail.insert("requestId".into(), json!(msg_id));
            detail.insert("lastStatus".into(), json!(record.status));
            detail.insert("lastError".into(), json!(record.error));
        };
        let health = &mut self.current;
        let mut notice = None;
        match record.next {
            RequestState::Delivered => {
                if health.state != HealthState::Ok {
                    let mut detail = Map::new();
                    detail.insert("failedAttempts".into(), json!(health.consecutive_failures));
                    detail.insert(
                        "failingSince".into(),
                        json!(format_iso_millis(health.since_ms)),
                    );
                    detail.insert("requestId".into(), json!(msg_id));
                    detail.insert("status".into(), json!(record.status));
                    notice = Some((NotificationKind::Recovered, detail));
                    *health = WebhookHealth {
                        consecutive_failures: 0,
                        state: HealthState::Ok,
                        since_ms: at_ms,
                    };
                } else {
                    health.consecutive_failures = 0;
                }
            }
            RequestState::RetryAt(next_ms) => {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                if health.state == HealthState::Ok && health.consecutive_failures >= FAILING_AFTER {
                    health.state = HealthState::Failing;
                    health.since_ms = at_ms;
                    let mut detail = Map::new();
                    detail.insert(
                        "consecutiveFailures".into(),
                        json!(health.consecutive_failures),
                    );
                    outcome(&mut detail);
                    detail.insert("nextAttemptAt".into(), json!(format_iso_millis(next_ms)));
                    notice = Some((NotificationKind::Failing, detail));
                }
            }
            RequestState::Expired => {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                // Several requests may run out in one commit (relaxed order): one disable.
                if health.state != HealthState::Disabled {
                    health.state = HealthState::Disabled;
                    health.since_ms = at_ms;
                    let mut detail = Map::new();
                    detail.insert("reason".into(), json!("retention ended"));
                    detail.insert(
                        "consecutiveFailures".into(),
                        json!(health.consecutive_failures),
                    );
                    outcome(&mut detail);
                    notice = Some((NotificationKind::Disabled, detail));
                }
            }
        }
        if let (Some((kind, detail)), true) = (notice, self.notify) {
            self.notices.push(Notice {
                kind,
                webhook_name: webhook_name.to_owned(),
                at_ms,
                detail,
            });
        }
    }

    /// What to write with the commit about to start, its notices taken out: `None` when
    /// nothing changed (the usual case, a 2xx after a 2xx, costs no write).
    pub(super) fn take_change(&mut self) -> Option<HealthChange> {
        (self.current != self.stored || !self.notices.is_empty()).then(|| HealthChange {
            health: self.current,
            notices: std::mem::take(&mut self.notices),
        })
    }

    /// The commit that carried `written` is on disk: its health is the stored one now (answers
    /// judged meanwhile are in the next change).
    pub(super) fn committed(&mut self, written: &HealthChange) {
        self.stored = written.health;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(next: RequestState, at_ms: i64) -> AttemptRecord {
        AttemptRecord {
            request_id: 1,
            attempt: 1,
            started_at_ms: at_ms,
            status: match next {
                RequestState::Delivered => Some(200),
                _ => Some(503),
            },
            error: None,
            latency_ms: 0,
            response_head: String::new(),
            next,
        }
    }

    fn kinds(change: Option<&HealthChange>) -> Vec<&'static str> {
        change
            .map(|change| change.notices.iter().map(|n| n.kind.as_str()).collect())
            .unwrap_or_default()
    }

    /// Takes the change and commits it, as the worker does.
    fn commit(tracker: &mut HealthTracker) -> Option<HealthChange> {
        let change = tracker.take_change();
        if let Some(change) = &change {
            tracker.committed(change);
        }
        change
    }

    #[test]
    fn five_failures_in_a_row_make_it_failing_once_and_a_2xx_recovers_it() {
        let mut tracker = HealthTracker::new(WebhookHealth::default(), true);
        tracker.judged(&attempt(RequestState::Delivered, 1), "msg_a", "CRM");
        assert!(
            commit(&mut tracker).is_none(),
            "2xx after 2xx writes nothing"
        );
        for at in 0..4 {
            tracker.judged(&attempt(RequestState::RetryAt(100), at), "msg_a", "CRM");
        }
        let change = commit(&mut tracker);
        assert_eq!(
            change.as_ref().map(|c| c.health.consecutive_failures),
            Some(4)
        );
        assert!(kinds(change.as_ref()).is_empty());
        tracker.judged(&attempt(RequestState::RetryAt(100), 5), "msg_a", "CRM");
        let change = commit(&mut tracker).expect("a change");
        assert_eq!(kinds(Some(&change)), ["webhook.failing"]);
        assert_eq!(
            (change.health.state, change.health.since_ms),
            (HealthState::Failing, 5)
        );
        let detail = &change.notices[0].detail;
        assert_eq!(detail["consecutiveFailures"], 5);
        assert_eq!(detail["requestId"], "msg_a");
        assert_eq!(detail["lastStatus"], 503);
        assert_eq!(change.notices[0].webhook_name, "CRM");
        // More failures: counted, no second notice.
        tracker.judged(&attempt(RequestState::RetryAt(100), 6), "msg_a", "CRM");
        assert!(kinds(commit(&mut tracker).as_ref()).is_empty());
        tracker.judged(&attempt(RequestState::Delivered, 7), "msg_a", "CRM");
        let change = commit(&mut tracker).expect("a change");
        assert_eq!(kinds(Some(&change)), ["webhook.recovered"]);
        assert_eq!(change.notices[0].detail["failedAttempts"], 6);
        assert_eq!(
            change.health,
            WebhookHealth {
                consecutive_failures: 0,
                state: HealthState::Ok,
                since_ms: 7
            }
        );
        tracker.judged(&attempt(RequestState::Delivered, 8), "msg_b", "CRM");
        assert!(commit(&mut tracker).is_none());
    }

    #[test]
    fn answers_judged_while_a_commit_is_under_way_go_with_the_next_one() {
        let mut tracker = HealthTracker::new(WebhookHealth::default(), true);
        for at in 0..5 {
            tracker.judged(&attempt(RequestState::RetryAt(100), at), "msg_a", "CRM");
        }
        let first = tracker.take_change().expect("failing");
        tracker.judged(&attempt(RequestState::Delivered, 6), "msg_a", "CRM");
        tracker.committed(&first);
        let second = tracker.take_change().expect("recovered");
        assert_eq!(kinds(Some(&first)), ["webhook.failing"]);
        assert_eq!(kinds(Some(&second)), ["webhook.recovered"]);
        assert_eq!(second.health.state, HealthState::Ok);
    }

    #[test]
    fn a_disable_is_told_whatever_came_before_and_its_first_2xx_after_too() {
        let mut tracker = HealthTracker::new(WebhookHealth::default(), true);
        tracker.judged(&attempt(RequestState::RetryAt(9), 1), "msg_a", "CRM");
        tracker.judged(&attempt(RequestState::Expired, 2), "msg_a", "CRM");
        let change = commit(&mut tracker).expect("a change");
        assert_eq!(kinds(Some(&change)), ["webhook.disabled"]);
        assert_eq!(change.health.state, HealthState::Disabled);
        assert_eq!(change.notices[0].detail["consecutiveFailures"], 2);
        tracker.judged(&attempt(RequestState::Delivered, 3), "msg_b", "CRM");
        assert_eq!(kinds(commit(&mut tracker).as_ref()), ["webhook.recovered"]);
    }

    #[test]
    fn requests_running_out_together_are_one_disable_and_a_reactivated_webhook_is_told_again() {
        let mut tracker = HealthTracker::new(WebhookHealth::default(), true);
        tracker.judged(&attempt(RequestState::Expired, 1), "msg_a", "CRM");
        tracker.judged(&attempt(RequestState::Expired, 1), "msg_b", "CRM");
        let change = commit(&mut tracker).expect("a change");
        assert_eq!(kinds(Some(&change)), ["webhook.disabled"]);
        // Activated again (a new lease pass reads it disabled), still down: told again.
        let mut tracker = HealthTracker::new(change.health, true);
        tracker.judged(&attempt(RequestState::Expired, 9), "msg_c", "CRM");
        assert_eq!(kinds(commit(&mut tracker).as_ref()), ["webhook.disabled"]);
        // Or back: its first 2xx tells it recovered.
        let mut tracker = HealthTracker::new(change.health, true);
        tracker.judged(&attempt(RequestState::Delivered, 9), "msg_c", "CRM");
        assert_eq!(kinds(commit(&mut tracker).as_ref()), ["webhook.recovered"]);
    }

    #[test]
    fn without_notifications_the_health_is_kept_and_nothing_is_queued() {
        let mut tracker = HealthTracker::new(WebhookHealth::default(), false);
        for at in 0..5 {
            tracker.judged(&attempt(RequestState::RetryAt(100), at), "msg_a", "CRM");
        }
        let change = commit(&mut tracker).expect("a change");
        assert_eq!(change.health.state, HealthState::Failing);
        assert!(change.notices.is_empty());
    }
}
