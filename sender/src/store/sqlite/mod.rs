//! The SQLite state: registrations and the delivery queue in one database file.
//!
//! WAL mode with `synchronous=FULL` by default: a commit is on disk (the WAL is synced) before
//! the call returns, so an event `trigger` accepted survives a power cut as well as the sender
//! being killed, and so does a batch request's `webhook-id` once it is made. Only [`record`]
//! commits with `synchronous=NORMAL`: its commits survive a killed process (the data is in the
//! operating system's cache, which is what the crash test checks) and a power cut can lose only
//! the last outcomes, whose requests are then sent again with the same id and bytes, which
//! at-least-once delivery allows; the next synced commit makes them durable too (WAL frames
//! are synced in order). Syncing every group of outcomes would cost a disk flush every few
//! milliseconds for no guarantee the SPEC asks for. Connections wait up to 5 s on a lock so
//! that `trigger` and `run` can share the file.
//!
//! Layout, one file per job, the trait implementations below handing each method to its file:
//! `connection.rs` (the state: one connection behind a lock), `schema.rs` (the file, its
//! pragmas, its tables and the steps of their layout), `secrets.rs` (the key record and the
//! transaction of a pass over the secrets, the scrub after it),
//! `webhooks.rs` (registrations), `queue.rs` (enqueue, batches, pending requests),
//! `leases.rs`, `record.rs` (outcomes under the fence, the expiry at the end of retention),
//! `deliveries.rs` (what `deliveries` and the pages read), `recovery.rs` (requests queued
//! again, the head retried now, the reads of the Deliveries page and the metrics) and
//! `outbox.rs` (each webhook's health and the operator's notifications).
//!
//! [`record`]: Queue::record

mod connection;
mod deliveries;
mod leases;
mod outbox;
mod queue;
mod record;
mod recovery;
mod schema;
mod secrets;
mod webhooks;

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;

pub use connection::SqliteState;

use crate::registry::{Webhook, WebhookId};
use crate::sealing::SecretKey;
use crate::store::{
    AttemptRecord, Backlog, ClaimedNotification, DeliveryDetail, DeliveryFilter, DeliverySummary,
    HealthChange, Lease, LeaseToken, NewDelivery, NotificationView, Outbox, PendingRequest, Queue,
    QueueCounts, Recorded, RecoverFilter, Recovered, Recovery, Registry, Requeued, StagedView,
    WebhookHealth,
};

impl SqliteState {
    /// Opens (creating with mode 0600 when absent) the database at `path` and its tables,
    /// without a secret key.
    ///
    /// # Errors
    /// When the file cannot be created or opened, or is not a SQLite database; when its
    /// secrets are sealed.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with_secret_key(path, None)
    }

    /// Opens the database at `path` as [`SqliteState::open`] does, with the key that seals
    /// its secrets: given a key, plain secrets are sealed under it before this returns.
    ///
    /// # Errors
    /// As [`SqliteState::open`]; the secrets are sealed under another key.
    pub fn open_with_secret_key(
        path: &Path,
        secret_key: Option<SecretKey>,
    ) -> anyhow::Result<Self> {
        let connection = schema::open_file(path)?;
        let state = Self {
            connection: Mutex::new(connection),
            secret_key,
        };
        crate::store::secrets::admit_at_opening(&state)
            .with_context(|| format!("state database {}", path.display()))?;
        Ok(state)
    }
}

impl Registry for SqliteState {
    fn insert_webhook(&self, webhook: &Webhook) -> anyhow::Result<()> {
        webhooks::insert_webhook(self, webhook)
    }

    fn update_webhook(&self, webhook: &Webhook, read_at_ms: i64) -> anyhow::Result<()> {
        webhooks::update_webhook(self, webhook, read_at_ms)
    }

    fn webhook(&self, id: &WebhookId) -> anyhow::Result<Option<Webhook>> {
        webhooks::webhook(self, id)
    }

    fn webhooks(&self) -> anyhow::Result<Vec<Webhook>> {
        webhooks::webhooks(self)
    }

    fn delete_webhook(&self, id: &WebhookId) -> anyhow::Result<Option<u64>> {
        webhooks::delete_webhook(self, id)
    }

    fn reseal_secrets(&self, new: &SecretKey) -> anyhow::Result<u64> {
        crate::store::secrets::reseal_secrets(self, new)
    }
}

impl Queue for SqliteState {
    fn enqueue(&self, deliveries: &[NewDelivery], now_ms: i64) -> anyhow::Result<()> {
        queue::enqueue(self, deliveries, now_ms)
    }

    fn webhooks_with_work(&self) -> anyhow::Result<Vec<WebhookId>> {
        queue::webhooks_with_work(self)
    }

    fn try_lease(
        &self,
        webhook_id: &WebhookId,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> anyhow::Result<Lease> {
        leases::try_lease(self, webhook_id, owner, now_ms, ttl_ms)
    }

    fn release_lease(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<()> {
        leases::release_lease(self, webhook_id, owner)
    }

    fn release_lease_if_idle(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<bool> {
        leases::release_lease_if_idle(self, webhook_id, owner)
    }

    fn flush_batches(
        &self,
        webhook_id: &WebhookId,
        now_ms: i64,
        interval_ms: i64,
        max_events: usize,
        force: bool,
    ) -> anyhow::Result<Option<i64>> {
        queue::flush_batches(self, webhook_id, now_ms, interval_ms, max_events, force)
    }

    fn pending(
        &self,
        webhook_id: &WebhookId,
        limit: usize,
        strict: bool,
        now_ms: i64,
        after_id: i64,
    ) -> anyhow::Result<Vec<PendingRequest>> {
        queue::pending(self, webhook_id, limit, strict, now_ms, after_id)
    }

    fn next_due(&self, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>> {
        queue::next_due(self, webhook_id)
    }

    fn record_outcomes(
        &self,
        lease: &LeaseToken,
        attempts: &[AttemptRecord],
        health: Option<&HealthChange>,
    ) -> anyhow::Result<Recorded> {
        record::record(self, lease, attempts, health)
    }

    fn give_up(&self, webhook_id: &WebhookId, reason: &str, now_ms: i64) -> anyhow::Result<u64> {
        record::give_up(self, webhook_id, reason, now_ms)
    }

    fn counts(&self, webhook_id: Option<&WebhookId>) -> anyhow::Result<QueueCounts> {
        deliveries::counts(self, webhook_id)
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> anyhow::Result<Vec<DeliverySummary>> {
        deliveries::deliveries(self, filter)
    }

    fn delivery(&self, id: &str) -> anyhow::Result<Option<DeliveryDetail>> {
        deliveries::delivery(self, id)
    }

    fn oldest_staged_at_ms(&self, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>> {
        deliveries::oldest_staged_at_ms(self, webhook_id)
    }
}

impl Recovery for SqliteState {
    fn resend(&self, id: &str, now_ms: i64) -> anyhow::Result<Option<Requeued>> {
        recovery::resend(self, id, now_ms)
    }

    fn recover(
        &self,
        filter: &RecoverFilter,
        dry_run: bool,
        now_ms: i64,
    ) -> anyhow::Result<Recovered> {
        recovery::recover(self, filter, dry_run, now_ms)
    }

    fn retry_head(
        &self,
        webhook_id: &WebhookId,
        now_ms: i64,
    ) -> anyhow::Result<Option<DeliverySummary>> {
        recovery::retry_head(self, webhook_id, now_ms)
    }

    fn staged(&self, webhook_id: &WebhookId, limit: usize) -> anyhow::Result<Vec<StagedView>> {
        recovery::staged(self, webhook_id, limit)
    }

    fn backlogs(&self) -> anyhow::Result<Vec<Backlog>> {
        recovery::backlogs(self)
    }

    fn health(&self, webhook_id: &WebhookId) -> anyhow::Result<WebhookHealth> {
        recovery::health(self, webhook_id)
    }

    fn ping(&self) -> anyhow::Result<()> {
        recovery::ping(self)
    }
}

impl Outbox for SqliteState {
    fn claim_notification(
        &self,
        owner: &str,
        now_ms: i64,
        claim_ms: i64,
    ) -> anyhow::Result<Option<ClaimedNotification>> {
        outbox::claim_notification(self, owner, now_ms, claim_ms)
    }

    fn notification_attempted(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        error: Option<&str>,
        next_attempt_at_ms: Option<i64>,
    ) -> anyhow::Result<bool> {
        outbox::notification_attempted(self, id, owner, now_ms, error, next_attempt_at_ms)
    }

    fn notifications(&self, limit: usize) -> anyhow::Result<Vec<NotificationView>> {
        outbox::notifications(self, limit)
    }
}
