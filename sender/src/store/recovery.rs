//! What running the sender for months asks of the storage (SPEC section 9, sender part), as
//! traits beside the queue's: [`Recovery`] (requests queued again, the head of a queue
//! retried now, what the Deliveries page, `/metrics` and `/healthz` read) and [`Outbox`] (the
//! operator's notifications, a durable queue of their own), with the types they share.
//!
//! Invariants every store keeps:
//! - a request queued again (`resend`, `recover`) is a new row behind everything its webhook's
//!   queue holds, with the same `webhook-id` (`msg_…`), the same body bytes and `eventId`s, and
//!   a fresh retention (it counts from the new row's creation); the row it copies is left as it
//!   was, so a message's history shows every time it was queued;
//! - `recover` judges a message by its newest row (a message already queued again and
//!   delivered is not expired any more) and queues each matching message once, in the order
//!   its first row was made, all in one transaction;
//! - a webhook's health (consecutive failed attempts, failing / disabled) and the
//!   notifications its changes make are written in the transaction that records the outcomes
//!   that changed it, under the lease's fence, so each change is recorded once, by the one
//!   worker that holds the webhook, and survives a crash right after;
//! - a notification's body and `webhook-id` are fixed when it is queued; it is sent in the
//!   order notifications were queued, one at a time, by whichever process claims it first,
//!   until a 2xx (a claim lapses after its time, so a process that dies while sending leaves
//!   it to the next).

use serde_json::{json, Map, Value};
use verify::timestamp::format_iso_millis;

use super::DeliverySummary;
use crate::registry::WebhookId;

/// A request queued again for a message: a new row with the message's `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    /// The message's `msg_…` id (the `webhook-id` header).
    pub msg_id: String,
    /// The new row's number (`deliveries show` takes it too).
    pub row: i64,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Events it carries.
    pub events: u64,
    /// Requests of the webhook pending before it: it goes after them.
    pub behind: u64,
}

/// Which messages `deliveries recover` queues again, by the state of a message's newest
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverStatus {
    /// Given up at the end of retention (the default: what an outage leaves).
    Expired,
    /// Not delivered, and its last attempt failed: expired ones that were tried, and pending
    /// ones waiting for a retry.
    Failed,
    /// Acknowledged with a 2xx.
    Delivered,
    /// Every message.
    All,
}

impl RecoverStatus {
    /// The value `--status` takes.
    ///
    /// # Errors
    /// A message naming the four values.
    pub fn parse(text: &str) -> Result<RecoverStatus, String> {
        match text {
            "expired" => Ok(Self::Expired),
            "failed" => Ok(Self::Failed),
            "delivered" => Ok(Self::Delivered),
            "all" => Ok(Self::All),
            other => Err(format!(
                "--status {other:?}: use expired, failed, delivered or all"
            )),
        }
    }

    /// The word `--status` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::All => "all",
        }
    }

    /// The SQL condition on a request row `r` (its newest row) that selects this status;
    /// the same text in both stores.
    pub(crate) fn condition(self) -> &'static str {
        match self {
            Self::Expired => "r.state = 'expired'",
            Self::Failed => {
                "r.state <> 'delivered' AND r.attempts > 0 \
                 AND (r.last_error IS NOT NULL OR r.last_status < 200 OR r.last_status >= 300)"
            }
            Self::Delivered => "r.state = 'delivered'",
            Self::All => "TRUE",
        }
    }
}

/// Which messages of a webhook `deliveries recover` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverFilter {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// By the state of each message's newest request.
    pub status: RecoverStatus,
    /// Only messages first queued at or after this epoch ms.
    pub since_ms: Option<i64>,
    /// Only messages first queued before this epoch ms.
    pub until_ms: Option<i64>,
}

/// What `recover` queued again (or, in a dry run, would).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    /// Requests (one per message).
    pub requests: u64,
    /// Events they carry.
    pub events: u64,
    /// Their `msg_…` ids, in the order they go (at most [`RECOVERED_IDS_SHOWN`]).
    pub ids: Vec<String>,
}

/// How long sent (or dropped) notifications are kept before they are pruned: a week, as
/// finished requests.
pub const FINISHED_NOTIFICATIONS_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Most message ids a [`Recovered`] lists: the count is whole, the list is for a glance.
pub const RECOVERED_IDS_SHOWN: usize = 1000;

/// A batch event waiting for its webhook's batch, as the Deliveries page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedView {
    /// The event's id.
    pub event_id: String,
    /// Its name.
    pub event_name: String,
    /// `accountId`.
    pub account_id: i64,
    /// When it was staged (epoch ms).
    pub staged_at_ms: i64,
}

/// One webhook's queue as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Whether the sender disabled it (end of retention).
    pub disabled: bool,
    /// Requests pending.
    pub pending: u64,
    /// When the oldest pending request was made (epoch ms).
    pub oldest_pending_ms: Option<i64>,
    /// Batch events staged.
    pub staged: u64,
}

/// A webhook's health as its outcomes made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthState {
    /// Answering, or fewer than [`FAILING_AFTER`] failures in a row.
    #[default]
    Ok,
    /// [`FAILING_AFTER`] or more failed attempts in a row.
    Failing,
    /// Disabled at the end of retention, and not delivered to since.
    Disabled,
}

/// Failed attempts in a row that make a webhook failing (`webhook.failing`).
pub const FAILING_AFTER: u32 = 5;

impl HealthState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::Disabled => "disabled",
        }
    }

    /// The state a stored word names (`ok` for anything else).
    pub fn parse(text: &str) -> HealthState {
        match text {
            "failing" => Self::Failing,
            "disabled" => Self::Disabled,
            _ => Self::Ok,
        }
    }
}

/// A webhook's health, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookHealth {
    /// Failed attempts since the last 2xx.
    pub consecutive_failures: u32,
    /// What they amount to.
    pub state: HealthState,
    /// When it entered `state` (epoch ms; 0 for a webhook never failing).
    pub since_ms: i64,
}

/// The kinds of operator notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// [`FAILING_AFTER`] failed attempts in a row.
    Failing,
    /// Disabled automatically at the end of retention.
    Disabled,
    /// The first 2xx after failing (or after a disable).
    Recovered,
}

impl NotificationKind {
    /// The message's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "webhook.failing",
            Self::Disabled => "webhook.disabled",
            Self::Recovered => "webhook.recovered",
        }
    }
}

/// A notification to queue with the outcomes that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Its type.
    pub kind: NotificationKind,
    /// The webhook's name when it happened.
    pub webhook_name: String,
    /// When it happened (epoch ms).
    pub at_ms: i64,
    /// What happened; a disable's counts of expired requests and events are added by the
    /// store, which expires them in the same transaction.
    pub detail: Map<String, Value>,
}

/// A webhook's new health and the notifications the change makes, written with outcomes
/// ([`Queue::record_outcomes`](super::Queue::record_outcomes)).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthChange {
    /// The health to store.
    pub health: WebhookHealth,
    /// Notifications to queue (none when notifications are off).
    pub notices: Vec<Notice>,
}

/// The body of a notification: `{"type", "webhookId", "webhookName", "at", "detail"}`, as its
/// bytes are kept and sent.
pub fn notification_body(webhook_id: &WebhookId, notice: &Notice) -> Vec<u8> {
    json!({
        "type": notice.kind.as_str(),
        "webhookId": webhook_id.as_str(),
        "webhookName": notice.webhook_name,
        "at": format_iso_millis(notice.at_ms),
        "detail": notice.detail,
    })
    .to_string()
    .into_bytes()
}

/// A notification claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedNotification {
    /// Its row.
    pub id: i64,
    /// Its `webhook-id` header, fixed when it was queued.
    pub msg_id: String,
    /// The exact body.
    pub body: Vec<u8>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When it was queued (epoch ms).
    pub created_at_ms: i64,
}

/// A notification as the tests and the logs see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// Its `webhook-id`.
    pub msg_id: String,
    /// The webhook it is about.
    pub webhook_id: String,
    /// `webhook.failing`, …
    pub kind: String,
    /// `pending`, `sent` or `dropped`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The body.
    pub body: String,
}

/// Requests queued again, the head of a queue retried now, and what the pages, `/metrics` and
/// `/healthz` read.
pub trait Recovery: Send + Sync {
    /// Queues the request `id` (`msg_…`, whose newest row is copied, or a row number) again
    /// for its webhook, whatever its state. `None` when there is no such request.
    ///
    /// # Errors
    /// Storage errors.
    fn resend(&self, id: &str, now_ms: i64) -> anyhow::Result<Option<Requeued>>;

    /// Queues every message of `filter` again (one request each, in their original order) in
    /// one transaction, or with `dry_run` only counts them.
    ///
    /// # Errors
    /// Storage errors.
    fn recover(
        &self,
        filter: &RecoverFilter,
        dry_run: bool,
        now_ms: i64,
    ) -> anyhow::Result<Recovered>;

    /// Makes the webhook's oldest pending request (the head of its queue) due now; gives it,
    /// or `None` when nothing is pending. The worker holding the webhook sends it within its
    /// poll interval.
    ///
    /// # Errors
    /// Storage errors.
    fn retry_head(
        &self,
        webhook_id: &WebhookId,
        now_ms: i64,
    ) -> anyhow::Result<Option<DeliverySummary>>;

    /// The webhook's staged batch events, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Storage errors.
    fn staged(&self, webhook_id: &WebhookId, limit: usize) -> anyhow::Result<Vec<StagedView>>;

    /// Every webhook's queue, oldest webhook first.
    ///
    /// # Errors
    /// Storage errors.
    fn backlogs(&self) -> anyhow::Result<Vec<Backlog>>;

    /// The webhook's health (the default for one never recorded).
    ///
    /// # Errors
    /// Storage errors.
    fn health(&self, webhook_id: &WebhookId) -> anyhow::Result<WebhookHealth>;

    /// One cheap statement, to show the store answers (`/healthz`).
    ///
    /// # Errors
    /// The store does not answer.
    fn ping(&self) -> anyhow::Result<()>;
}

/// The operator's notifications: queued with the outcomes that made them, sent by whichever
/// process claims them.
pub trait Outbox: Send + Sync {
    /// Claims the oldest notification not yet sent for `owner` until `now_ms + claim_ms`, if
    /// it is due and nobody else holds a claim on it; `None` otherwise (nothing to send, or
    /// the head is claimed or not due: notifications go in order).
    ///
    /// # Errors
    /// Storage errors.
    fn claim_notification(
        &self,
        owner: &str,
        now_ms: i64,
        claim_ms: i64,
    ) -> anyhow::Result<Option<ClaimedNotification>>;

    /// Records an attempt at a claimed notification: sent (`next_attempt_at_ms` `None`), or
    /// failed with `error` and due again then. Gives `false` when `owner` no longer holds the
    /// claim (nothing written).
    ///
    /// # Errors
    /// Storage errors.
    fn notification_attempted(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        error: Option<&str>,
        next_attempt_at_ms: Option<i64>,
    ) -> anyhow::Result<bool>;

    /// The newest notifications, newest first, at most `limit`.
    ///
    /// # Errors
    /// Storage errors.
    fn notifications(&self, limit: usize) -> anyhow::Result<Vec<NotificationView>>;
}

/// The statement that picks `recover`'s messages in a table of requests (`requests`,
/// `sender_requests`): each message of the webhook `webhook` judged by its newest row, and
/// kept when that row matches `status` and its first row was made in [`since`, `until`)
/// (either may be NULL); one row per message, its newest (`id, msg_id, event_count`), in the
/// order of the messages' first rows. The placeholders are the store's own (`?1`, `$1`).
pub(crate) fn recover_selection(
    table: &str,
    status: RecoverStatus,
    webhook: &str,
    since: &str,
    until: &str,
) -> String {
    format!(
        "WITH messages AS (
             SELECT msg_id, MIN(id) AS first_id, MAX(id) AS last_id,
                 MIN(created_at_ms) AS first_at
             FROM {table} WHERE webhook_id = {webhook} GROUP BY msg_id)
         SELECT r.id, r.msg_id, r.event_count FROM messages m JOIN {table} r ON r.id = m.last_id
         WHERE ({condition})
           AND ({since} IS NULL OR m.first_at >= {since})
           AND ({until} IS NULL OR m.first_at < {until})
         ORDER BY m.first_id",
        condition = status.condition()
    )
}

/// The detail of a disable, with the counts the expiry found.
pub(crate) fn with_expired_counts(
    detail: &Map<String, Value>,
    webhook_id: &WebhookId,
    requests: u64,
    events: u64,
) -> Map<String, Value> {
    let mut detail = detail.clone();
    detail.insert("expiredRequests".into(), json!(requests));
    detail.insert("expiredEvents".into(), json!(events));
    detail.insert(
        "recover".into(),
        json!(format!("sender deliveries recover --webhook {webhook_id}")),
    );
    detail
}
