//! The storage of the sender: what the engine, the commands and the admin pages ask of it, as
//! traits ([`Registry`]: registrations; [`Queue`]: the durable delivery queue and its leases;
//! [`State`]: both), and the choice of store ([`open`]).
//!
//! - [`sqlite`]: one file, the embedded default (`--state sqlite:PATH`);
//! - [`postgres`]: one database shared by any number of `sender run` workers
//!   (`--state postgres://…`, SPEC section 7).
//!
//! Queue model: a real-time event becomes one *request* row at once; a batch event waits in a
//! staging table until its webhook's batch is due (interval elapsed or full), then the staged
//! events become one request. Requests of a webhook are worked in id order. Every method is
//! synchronous and short; the engine calls them from `spawn_blocking`.
//!
//! Invariants every implementation keeps, which one suite checks on each (`delivery/tests.rs`,
//! `tests/it/sender`):
//! - an enqueue is all-or-nothing; a request's body and `webhook-id` (`msg_…`) are fixed when
//!   it is written, so every retry, and every restart, resends the same bytes under the same
//!   id and the receiver's deduplication holds;
//! - a webhook's pending requests are handed out in id order, and a failed one keeps its place
//!   at the head (`RetryAt` only moves its time);
//! - a webhook has at most one lease holder at a time; every change of hands gives the lease a
//!   larger *fence* number, never reused (a released lease keeps its row and its number);
//! - [`Queue::record`] writes only while the caller's fence is still the lease's: a worker
//!   that stalled past its lease records nothing over the newer holder's progress;
//! - an update of a webhook applies only if nobody changed it since it was read ("changed
//!   meanwhile"), whichever process changed it;
//! - a webhook is written only while the state's key record is the one of the key the
//!   process holds (checked in the write's transaction: see `crate::sealing::confirm`), so a
//!   process that outlived a key rotation writes nothing instead of secrets nobody can open;
//! - at most [`MAX_WEBHOOKS`](crate::registry::MAX_WEBHOOKS) webhooks, checked in the
//!   transaction that inserts one.
//!
//! What running it for months asks besides ([`Recovery`]: requests queued again, the pages'
//! and the metrics' reads; [`Outbox`]: the operator's notifications) is in `recovery.rs`, with
//! the invariants that go with it.
//!
//! What the two stores share besides the traits: `rows.rs` (a webhook's columns and their
//! sealing, a request's outcome and listing rows), `secrets.rs` (the passes over the secret
//! columns at opening and at a rotation), `batching.rs` (requests made from events, the
//! batch rule) and `lease_row.rs` (whether a lease's holder keeps another worker out, which
//! fence a taker gets).

mod batching;
mod lease_row;
pub mod postgres;
mod recovery;
#[cfg(test)]
mod recovery_tests;
mod rows;
mod secrets;
pub mod sqlite;

pub use recovery::{
    notification_body, Backlog, ClaimedNotification, HealthChange, HealthState, Notice,
    NotificationKind, NotificationView, Outbox, RecoverFilter, RecoverStatus, Recovered, Recovery,
    Requeued, StagedView, WebhookHealth, FAILING_AFTER, RECOVERED_IDS_SHOWN,
};

use std::sync::Arc;

use common::store_location::StoreLocation;
use verify::OutgoingEvent;

use crate::registry::{Webhook, WebhookId};
use crate::sealing::SecretKey;

/// Opens the state `location` names, creating its tables on first use, with the key that
/// seals its secrets (see [`crate::sealing`]): given a key, the state's plain secrets are
/// sealed under it as it opens.
///
/// # Errors
/// The file or database cannot be opened, or holds another program's tables; its secrets
/// are sealed and no key, or another key, is given (a [`UsageError`](crate::UsageError)).
pub fn open(
    location: &StoreLocation,
    secret_key: Option<SecretKey>,
) -> anyhow::Result<Arc<dyn State>> {
    Ok(match location {
        StoreLocation::Sqlite(path) => {
            Arc::new(sqlite::SqliteState::open_with_secret_key(path, secret_key)?)
        }
        StoreLocation::Postgres(url) => Arc::new(postgres::PostgresState::open_with_secret_key(
            url, secret_key,
        )?),
    })
}

/// One event to enqueue for one webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The webhook it goes to.
    pub webhook_id: WebhookId,
    /// `accountId` of the envelope.
    pub account_id: i64,
    /// The event.
    pub event: OutgoingEvent,
    /// Real-time (own request now) or batch (staged).
    pub class: verify::EventClass,
}

/// A request waiting to be (re)sent.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// Row id; requests of a webhook go in this order.
    pub id: i64,
    /// The `webhook-id` header, fixed at creation.
    pub msg_id: String,
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The exact body bytes.
    pub body: bytes::Bytes,
    /// Epoch ms the request was made (retention counts from here).
    pub created_at_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Epoch ms before which it must not be sent.
    pub next_attempt_at_ms: i64,
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The request.
    pub request_id: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Epoch ms the attempt started.
    pub started_at_ms: i64,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// What went wrong without a response (timeout, refused, …).
    pub error: Option<String>,
    /// Milliseconds from start to response (or failure).
    pub latency_ms: i64,
    /// The first bytes of the response body, as text.
    pub response_head: String,
    /// What happens to the request now.
    pub next: RequestState,
}

/// A request's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// A 2xx came back.
    Delivered,
    /// Try again at this epoch ms.
    RetryAt(i64),
    /// Retention ended: the engine gives the webhook up right after recording this.
    Expired,
}

/// What trying to take a webhook's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This worker holds the lease until it releases it or stops renewing it.
    Acquired {
        /// The lease's fence number: larger at every change of hands, never reused. The
        /// worker passes it with every [`Queue::record`], which writes only while it is still
        /// the lease's.
        fence: i64,
    },
    /// Another live worker holds it (its owner tag and expiry).
    HeldBy(crate::lease::HeldLease),
}

impl Lease {
    /// What a worker that tried to take `webhook_id`'s lease proves its writes with: the
    /// token of the lease it acquired, or else who holds it.
    ///
    /// # Errors
    /// The lease is held by another live worker: its owner tag and expiry.
    pub fn token(self, webhook_id: &WebhookId) -> Result<LeaseToken, crate::lease::HeldLease> {
        match self {
            Self::Acquired { fence } => Ok(LeaseToken {
                webhook_id: webhook_id.clone(),
                fence,
            }),
            Self::HeldBy(held) => Err(held),
        }
    }
}

/// What a worker proves with each write: the lease it holds on a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The fence number [`Lease::Acquired`] gave.
    pub fence: i64,
}

/// What [`Queue::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The outcomes are written; this many events expired with a webhook given up.
    Written {
        /// Events expired because a request's retention ended.
        expired_events: u64,
    },
    /// Nothing was written: the lease changed hands since the worker took it.
    Fenced,
}

/// A row of `deliveries list`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySummary {
    /// `msg_…`, also the `webhook-id` header. A message queued again has several requests
    /// with this id.
    pub id: String,
    /// The request's row number: one per request, also for a message queued again.
    pub row: i64,
    /// The row this request copies, when it was queued again (`resend`, `recover`).
    pub resend_of: Option<i64>,
    /// The webhook.
    pub webhook_id: String,
    /// `accountId`.
    pub account_id: i64,
    /// Distinct event names, comma-separated.
    pub event_names: String,
    /// Events in the request.
    pub event_count: i64,
    /// `pending`, `delivered` or `expired`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Status of the last attempt, if it got a response.
    pub last_status: Option<i64>,
    /// Error of the last attempt, if it got none.
    pub last_error: Option<String>,
    /// When the request was made (ISO).
    pub created_at: String,
    /// When the next attempt is due (ISO), for pending requests.
    pub next_attempt_at: Option<String>,
}

/// One attempt as `deliveries show` prints it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// 1 for the first.
    pub attempt: i64,
    /// When it started (ISO).
    pub at: String,
    /// HTTP status, if a response came.
    pub status: Option<i64>,
    /// The error, if none came.
    pub error: Option<String>,
    /// Milliseconds.
    pub latency_ms: i64,
    /// First bytes of the response.
    pub response_head: Option<String>,
}

impl AttemptView {
    /// The status when a response came, else the error.
    pub fn outcome(&self) -> String {
        self.status
            .map(|status| status.to_string())
            .or_else(|| self.error.clone())
            .unwrap_or_default()
    }
}

/// A request with its attempts and body, for `deliveries show`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// The `eventId`s it carries.
    pub event_ids: Vec<String>,
    /// The body as sent (UTF-8 JSON).
    pub body: String,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptView>,
}

/// Filter of `deliveries list`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this webhook.
    pub webhook_id: Option<WebhookId>,
    /// Only this state.
    pub state: Option<String>,
    /// Most rows, newest first.
    pub limit: usize,
}

/// Counts for `trigger` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    /// Requests waiting to be sent or retried.
    pub pending: u64,
    /// Batch events not yet in a request.
    pub staged: u64,
    /// Requests acknowledged with a 2xx.
    pub delivered: u64,
    /// Requests given up at the end of retention.
    pub expired: u64,
}

/// What the delivery engine needs from durable storage.
pub trait Queue: Send + Sync {
    /// Enqueues events in one transaction: each real-time event becomes a request with a fresh
    /// `msg_…` id, each batch event is staged. Nothing is enqueued if anything fails.
    ///
    /// # Errors
    /// Storage errors.
    fn enqueue(&self, deliveries: &[NewDelivery], now_ms: i64) -> anyhow::Result<()>;

    /// Active webhooks with pending requests or staged events.
    ///
    /// # Errors
    /// Storage errors.
    fn webhooks_with_work(&self) -> anyhow::Result<Vec<WebhookId>>;

    /// Takes (or renews) the webhook's lease for `owner` until `now_ms + ttl_ms`, unless a live
    /// other owner holds it. An owner whose process is gone or whose lease ran out loses it.
    ///
    /// Finding the lease held must be cheap and must not block the holder: a worker that waits
    /// for the lease calls this once per poll interval (see [`crate::lease`]), so a store
    /// answers `HeldBy` from a plain read and takes its write lock only when the lease looks
    /// free (checking again under the lock).
    ///
    /// # Errors
    /// Storage errors.
    fn try_lease(
        &self,
        webhook_id: &WebhookId,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> anyhow::Result<Lease>;

    /// Gives the lease up, if `owner` holds it. The lease keeps its fence number, so the next
    /// holder gets a larger one.
    ///
    /// # Errors
    /// Storage errors.
    fn release_lease(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<()>;

    /// Gives the lease up if `owner` holds it and the webhook has no pending request and no
    /// staged event, checked and released in one transaction; `false` when work is waiting
    /// (the lease is then kept).
    ///
    /// # Errors
    /// Storage errors.
    fn release_lease_if_idle(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<bool>;

    /// Turns staged batch events into requests of at most `max_events` (per account): all of
    /// them when `force`, else only when the oldest waited `interval_ms` or a batch is full.
    /// Gives the epoch ms when the next batch falls due, if events remain staged.
    ///
    /// # Errors
    /// Storage errors.
    fn flush_batches(
        &self,
        webhook_id: &WebhookId,
        now_ms: i64,
        interval_ms: i64,
        max_events: usize,
        force: bool,
    ) -> anyhow::Result<Option<i64>>;

    /// Up to `limit` pending requests of the webhook in id order: the oldest, due or not
    /// (`strict`: the head of the line waits), or those due by `now_ms` with an id above
    /// `after_id` (relaxed order, scanning forward).
    ///
    /// # Errors
    /// Storage errors.
    fn pending(
        &self,
        webhook_id: &WebhookId,
        limit: usize,
        strict: bool,
        now_ms: i64,
        after_id: i64,
    ) -> anyhow::Result<Vec<PendingRequest>>;

    /// The soonest `next_attempt_at_ms` among the webhook's pending requests.
    ///
    /// # Errors
    /// Storage errors.
    fn next_due(&self, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>>;

    /// Records attempts of `lease`'s webhook and the requests' new states, in one
    /// transaction, if `lease.fence` is still the lease's fence; else writes nothing and gives
    /// [`Recorded::Fenced`]. A record whose request expired (retention over) also disables its
    /// webhook and expires the webhook's pending requests and staged events in that same
    /// transaction, so a crash cannot leave the webhook active behind an expired request.
    ///
    /// # Errors
    /// Storage errors.
    fn record(&self, lease: &LeaseToken, attempts: &[AttemptRecord]) -> anyhow::Result<Recorded> {
        self.record_outcomes(lease, attempts, None)
    }

    /// [`Queue::record`], and with `health` the webhook's new health and the notifications
    /// its change makes, in the same transaction under the same fence (a disable's notice
    /// gets the counts of what the expiry expired).
    ///
    /// # Errors
    /// Storage errors.
    fn record_outcomes(
        &self,
        lease: &LeaseToken,
        attempts: &[AttemptRecord],
        health: Option<&HealthChange>,
    ) -> anyhow::Result<Recorded>;

    /// Retention ended: disables the webhook with `reason` and marks every pending request and
    /// staged event of it expired. Gives the number of events expired.
    ///
    /// # Errors
    /// Storage errors.
    fn give_up(&self, webhook_id: &WebhookId, reason: &str, now_ms: i64) -> anyhow::Result<u64>;

    /// A signal raised when another process enqueued work, if this store has one (PostgreSQL:
    /// LISTEN/NOTIFY). The engine still polls: a wake-up only comes sooner.
    fn work_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Counts of the webhook's queue, or of all webhooks.
    ///
    /// # Errors
    /// Storage errors.
    fn counts(&self, webhook_id: Option<&WebhookId>) -> anyhow::Result<QueueCounts>;

    /// Requests, newest first.
    ///
    /// # Errors
    /// Storage errors.
    fn deliveries(&self, filter: &DeliveryFilter) -> anyhow::Result<Vec<DeliverySummary>>;

    /// One request by `msg_…` id (or row number) with its attempts.
    ///
    /// # Errors
    /// Storage errors.
    fn delivery(&self, id: &str) -> anyhow::Result<Option<DeliveryDetail>>;

    /// When the webhook's oldest staged batch event was staged (epoch ms), if any waits: its
    /// batch goes out a batch interval later (or sooner, when full). The admin pages say so.
    ///
    /// # Errors
    /// Storage errors.
    fn oldest_staged_at_ms(&self, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>>;
}

/// Storage of registrations.
pub trait Registry: Send + Sync {
    /// Stores a new webhook, refusing it when [`MAX_WEBHOOKS`](crate::registry::MAX_WEBHOOKS)
    /// exist already.
    ///
    /// # Errors
    /// A [`UsageError`](crate::UsageError) for a sixth webhook; storage errors otherwise.
    fn insert_webhook(&self, webhook: &Webhook) -> anyhow::Result<()>;
    /// Replaces a stored webhook's fields, provided it is still as it was read: its stored
    /// `updated_at_ms` is `read_at_ms`. Otherwise someone changed it meanwhile (a worker
    /// disabling it at the end of retention, another edit), and writing every field back
    /// would silently undo that change.
    ///
    /// # Errors
    /// The webhook changed or was deleted meanwhile; storage errors.
    fn update_webhook(&self, webhook: &Webhook, read_at_ms: i64) -> anyhow::Result<()>;
    /// The webhook with this id.
    ///
    /// # Errors
    /// Storage errors, or a stored record that no longer parses.
    fn webhook(&self, id: &WebhookId) -> anyhow::Result<Option<Webhook>>;
    /// Every webhook, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    fn webhooks(&self) -> anyhow::Result<Vec<Webhook>>;
    /// Deletes a webhook and its queue; gives the number of undelivered requests dropped, or
    /// `None` when there was no such webhook.
    ///
    /// # Errors
    /// Storage errors.
    fn delete_webhook(&self, id: &WebhookId) -> anyhow::Result<Option<u64>>;
    /// Seals every webhook's secrets under `new` in one transaction (opening those sealed
    /// under the key the state was opened with) and records `new` as the state's key: from
    /// then on only `new` opens it (see [`crate::sealing`]). Gives the number of webhooks
    /// that hold secrets.
    ///
    /// # Errors
    /// A secret does not open with the current key; storage errors. Nothing is changed then.
    fn reseal_secrets(&self, new: &crate::sealing::SecretKey) -> anyhow::Result<u64>;
}

/// Registrations, queue, recovery and notifications together: what the engine, the commands
/// and the admin pages read and write.
pub trait State: Registry + Queue + Recovery + Outbox {}
impl<S: Registry + Queue + Recovery + Outbox> State for S {}
