//! The PostgreSQL state (SPEC section 7): registrations, queue, attempts and leases in one
//! database that any number of `sender run` workers (and `trigger`, `webhooks`, `deliveries`)
//! share.
//!
//! - Tables are prefixed `sender_` (the receiver's may share the database) and carry a layout
//!   version in `sender_schema`; they are created on first use, under an advisory lock so two
//!   processes starting at once do not race. Tables of that name that are not ours are refused.
//! - Per webhook one worker delivers, in order: a row of `sender_leases` names the holder,
//!   its expiry and a *fence* number. One statement renews a worker's own lease or, for a
//!   worker waiting for another's, reads holder and expiry without waiting for the holder's
//!   locks (the wait itself is [`crate::lease`]'s); taking a free lease reads
//!   the row with `FOR UPDATE SKIP LOCKED` (another worker in the middle of taking it is
//!   passed over, not waited for) and commits at once. No transaction is ever open
//!   while a request is on the wire: the engine reads the head of the queue, commits, sends,
//!   and only then records the outcome.
//! - Enqueues and registrations commit synchronously (on disk before the call returns);
//!   outcomes commit without waiting for the WAL flush (see `write_unsynced`), as the SQLite
//!   store's do.
//! - An outcome is recorded by one statement that writes only while the lease row still has
//!   the worker's fence, and holds the row locked while it writes, so a takeover cannot slip
//!   in between: a worker that stalled past its lease (SIGSTOP, a long GC pause of a VM)
//!   records nothing over the new holder's progress. The new holder resends what the stalled
//!   one had in flight: at least once, same bytes, same `webhook-id`.
//! - An enqueue locks the lease rows of its webhooks in share mode, and an idle worker releases
//!   its lease under an exclusive lock after looking for work, so work enqueued while a
//!   worker gives up its lease is never stranded.
//! - Finished requests (delivered, expired) are pruned after [`FINISHED_KEPT_FOR_MS`], so the
//!   tables do not grow with the traffic; pending ones sit in a partial index.
//! - Sessions carry `idle_in_transaction_session_timeout` (see `common::postgres`), so a
//!   process stopped inside a transaction cannot hold locks for long.
//!
//! The trait methods are synchronous (the engine calls them from `spawn_blocking`); each runs
//! its queries on a small runtime of this store's own, so that they may also be called from
//! synchronous code and from inside another runtime.
//!
//! Layout, one file per job, the trait implementations below handing each method to its file:
//! `connection.rs` (the state, its runtime and pool, statements that count round trips),
//! `schema.rs` (the tables and the steps of their layout), `secrets.rs` (the key record and
//! the transaction of a pass over the secrets),
//! `webhooks.rs` (registrations), `queue.rs` (enqueue, batches, pending requests, pruning),
//! `notify.rs` (LISTEN/NOTIFY), `leases.rs`, `record.rs` (outcomes under the fence, the expiry
//! at the end of retention), `deliveries.rs` (what `deliveries` and the pages read),
//! `recovery.rs` (requests queued again, the head retried now, the reads of the Deliveries page
//! and the metrics) and `outbox.rs` (each webhook's health and the operator's notifications).

mod connection;
mod deliveries;
mod leases;
mod notify;
mod outbox;
mod queue;
mod record;
mod recovery;
mod schema;
mod secrets;
mod webhooks;

use std::sync::Arc;

use anyhow::Context as _;
use common::postgres::DatabaseUrl;

pub use connection::PostgresState;
pub use queue::FINISHED_KEPT_FOR_MS;

use crate::registry::{Webhook, WebhookId};
use crate::sealing::SecretKey;
use crate::store::{
    AttemptRecord, Backlog, ClaimedNotification, DeliveryDetail, DeliveryFilter, DeliverySummary,
    HealthChange, Lease, LeaseToken, NewDelivery, NotificationView, Outbox, PendingRequest, Queue,
    QueueCounts, Recorded, RecoverFilter, Recovered, Recovery, Registry, Requeued, StagedView,
    WebhookHealth,
};

impl PostgresState {
    /// Connects to `url` and creates the tables on first use, without a secret key.
    ///
    /// # Errors
    /// The database cannot be reached, or holds tables of our names that are not ours or of
    /// another layout version; its secrets are sealed.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<Self> {
        Self::open_with_secret_key(url, None)
    }

    /// Connects as [`PostgresState::open`] does, with the key that seals the secrets: given a
    /// key, plain secrets are sealed under it before this returns.
    ///
    /// # Errors
    /// As [`PostgresState::open`]; the secrets are sealed under another key.
    pub fn open_with_secret_key(
        url: &DatabaseUrl,
        secret_key: Option<SecretKey>,
    ) -> anyhow::Result<Self> {
        let state = Self::connect(url, secret_key)?;
        state
            .call(|pool, trips| async move {
                let mut client = pool.get().await?;
                schema::create_schema(&mut client, &trips).await
            })
            .with_context(|| format!("preparing the sender's tables in {url}"))?;
        crate::store::secrets::admit_at_opening(&state)
            .with_context(|| format!("PostgreSQL state {url}"))?;
        Ok(state)
    }
}

impl Registry for PostgresState {
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

impl Queue for PostgresState {
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

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        notify::work_signal(self)
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

impl Recovery for PostgresState {
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

impl Outbox for PostgresState {
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
