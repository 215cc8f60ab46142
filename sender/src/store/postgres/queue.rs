//! The queue: events enqueued (requests at once, batch events staged), batches made when due,
//! the pending requests handed out in order, and finished requests pruned after a while.

use std::sync::atomic::Ordering;

use anyhow::Context as _;
use deadpool_postgres::GenericClient;

use super::connection::{Db, PostgresState};
use super::notify::WORK_CHANNEL;
use crate::registry::WebhookId;
use crate::store::batching::{
    batch_requests, enqueued, flush_plan, Enqueued, FlushPlan, RequestToWrite, StagedEvent,
};
use crate::store::{NewDelivery, PendingRequest};

/// How long finished requests (delivered or expired) and their attempts are kept for
/// `deliveries list` before they are pruned: the SPEC's retention.
pub const FINISHED_KEPT_FOR_MS: i64 = 7 * 24 * 3600 * 1000;

/// How often a process prunes finished requests, at most.
pub(super) const PRUNE_EVERY_MS: i64 = 60_000;

/// [`Queue::enqueue`](crate::store::Queue::enqueue) in this store.
pub(super) fn enqueue(
    store: &PostgresState,
    deliveries: &[NewDelivery],
    now_ms: i64,
) -> anyhow::Result<()> {
    let mut writes = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        writes.push((
            delivery.webhook_id.as_str().to_owned(),
            delivery.account_id,
            delivery.event.event_id.clone(),
            delivery.event.event_name.clone(),
            enqueued(delivery)?,
        ));
    }
    let mut webhooks: Vec<String> = writes.iter().map(|write| write.0.clone()).collect();
    webhooks.sort();
    webhooks.dedup();
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        // A worker releasing an idle lease holds its row exclusively while it looks for
        // work: either it sees these events, or this enqueue waits and the lease is free
        // for whoever delivers them.
        db.execute(
            "SELECT 1 FROM sender_leases WHERE webhook_id = ANY($1) FOR SHARE",
            &[&webhooks],
        )
        .await?;
        for (webhook_id, account_id, event_id, event_name, write) in &writes {
            match write {
                Enqueued::Request(request) => {
                    insert_request(&db, webhook_id, request, now_ms, "pending").await?;
                }
                Enqueued::Staged { event_json } => {
                    db.execute(
                        "INSERT INTO sender_staged_events (webhook_id, account_id, event_id,
                             event_name, event_json, enqueued_at_ms)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            webhook_id, account_id, event_id, event_name, event_json, &now_ms,
                        ],
                    )
                    .await?;
                }
            }
        }
        // Delivered to the listeners at the commit.
        db.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
            .await?;
        transaction
            .commit()
            .await
            .context("committing the queued events")?;
        Ok(())
    })
}

/// [`Queue::webhooks_with_work`](crate::store::Queue::webhooks_with_work) in this store.
pub(super) fn webhooks_with_work(store: &PostgresState) -> anyhow::Result<Vec<WebhookId>> {
    let now_ms = verify::unix_now_ms();
    let prune = store.last_prune_ms.load(Ordering::Relaxed) <= now_ms - PRUNE_EVERY_MS;
    if prune {
        store.last_prune_ms.store(now_ms, Ordering::Relaxed);
    }
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        if prune {
            prune_finished(&db, now_ms - FINISHED_KEPT_FOR_MS).await?;
        }
        let rows = db
            .query(
                "SELECT id FROM sender_webhooks w WHERE status = 'active' AND (
                     EXISTS (SELECT 1 FROM sender_requests r
                             WHERE r.webhook_id = w.id AND r.state = 'pending')
                     OR EXISTS (SELECT 1 FROM sender_staged_events s WHERE s.webhook_id = w.id))
                 ORDER BY created_at_ms, id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| WebhookId(row.get(0))).collect())
    })
}

/// [`Queue::flush_batches`](crate::store::Queue::flush_batches) in this store.
pub(super) fn flush_batches(
    store: &PostgresState,
    webhook_id: &WebhookId,
    now_ms: i64,
    interval_ms: i64,
    max_events: usize,
    force: bool,
) -> anyhow::Result<Option<i64>> {
    let webhook_id = webhook_id.as_str().to_owned();
    store.call(move |pool, trips| async move {
        let mut client = pool.get().await?;
        // Nothing staged (the usual case for real-time events): one read, no transaction.
        let staged: bool = Db::new(&client, &trips)
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sender_staged_events WHERE webhook_id = $1)",
                &[&webhook_id],
            )
            .await?
            .get(0);
        if !staged {
            return Ok(None);
        }
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        // One flush of a webhook at a time: the lease row is the webhook's lock.
        db.execute(
            "SELECT 1 FROM sender_leases WHERE webhook_id = $1 FOR UPDATE",
            &[&webhook_id],
        )
        .await?;
        let mut staged = staged_events(&db, &webhook_id).await?;
        match flush_plan(&staged, now_ms, interval_ms, max_events, force) {
            FlushPlan::Empty => return Ok(None),
            FlushPlan::WaitUntil(due) => return Ok(Some(due)),
            FlushPlan::Take(count) => {
                staged.truncate(count);
                requests_from_staged(&db, &webhook_id, staged, max_events, now_ms, "pending")
                    .await?;
            }
        }
        let oldest: Option<i64> = db
            .query_one(
                "SELECT MIN(enqueued_at_ms) FROM sender_staged_events WHERE webhook_id = $1",
                &[&webhook_id],
            )
            .await?
            .get(0);
        transaction.commit().await.context("committing the batch")?;
        Ok(oldest.map(|oldest| oldest.saturating_add(interval_ms)))
    })
}

/// [`Queue::pending`](crate::store::Queue::pending) in this store.
pub(super) fn pending(
    store: &PostgresState,
    webhook_id: &WebhookId,
    limit: usize,
    strict: bool,
    now_ms: i64,
    after_id: i64,
) -> anyhow::Result<Vec<PendingRequest>> {
    let id = webhook_id.clone();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let rows = if strict {
            db.query(
                "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts,
                     r.next_attempt_at_ms
                 FROM sender_requests r JOIN sender_request_bodies b ON b.request_id = r.id
                 WHERE r.webhook_id = $1 AND r.state = 'pending' ORDER BY r.id LIMIT $2",
                &[&id.as_str(), &limit],
            )
            .await?
        } else {
            db.query(
                "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts,
                     r.next_attempt_at_ms
                 FROM sender_requests r JOIN sender_request_bodies b ON b.request_id = r.id
                 WHERE r.webhook_id = $1 AND r.state = 'pending' AND r.id > $4
                   AND r.next_attempt_at_ms <= $3
                 ORDER BY r.id LIMIT $2",
                &[&id.as_str(), &limit, &now_ms, &after_id],
            )
            .await?
        };
        rows.iter()
            .map(|row| {
                Ok(PendingRequest {
                    id: row.get(0),
                    msg_id: row.get(1),
                    webhook_id: id.clone(),
                    body: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)),
                    created_at_ms: row.get(3),
                    attempts: u32::try_from(row.get::<_, i64>(4))?,
                    next_attempt_at_ms: row.get(5),
                })
            })
            .collect()
    })
}

/// [`Queue::next_due`](crate::store::Queue::next_due) in this store.
pub(super) fn next_due(
    store: &PostgresState,
    webhook_id: &WebhookId,
) -> anyhow::Result<Option<i64>> {
    let webhook_id = webhook_id.as_str().to_owned();
    store.call(|pool, trips| async move {
        let client = pool.get().await?;
        Ok(Db::new(&client, &trips)
            .query_one(
                "SELECT MIN(next_attempt_at_ms) FROM sender_requests
                 WHERE webhook_id = $1 AND state = 'pending'",
                &[&webhook_id],
            )
            .await?
            .get(0))
    })
}

/// Inserts one request in `state` and deletes the staged events it is made of.
pub(super) async fn insert_request<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    request: &RequestToWrite,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    let event_count = i64::try_from(request.event_ids.len())?;
    let id: i64 = db
        .query_one(
            "INSERT INTO sender_requests (msg_id, webhook_id, account_id, event_names,
                 event_count, created_at_ms, state, next_attempt_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $6) RETURNING id",
            &[
                &crate::registry::new_msg_id(),
                &webhook_id,
                &request.account_id,
                &request.event_names,
                &event_count,
                &now_ms,
                &state,
            ],
        )
        .await?
        .get(0);
    db.execute(
        "INSERT INTO sender_request_bodies (request_id, body, event_ids) VALUES ($1, $2, $3)",
        &[&id, &request.body, &request.event_ids_json()?],
    )
    .await?;
    if !request.staged_seqs.is_empty() {
        db.execute(
            "DELETE FROM sender_staged_events WHERE seq = ANY($1)",
            &[&request.staged_seqs],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn staged_events<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
) -> anyhow::Result<Vec<StagedEvent>> {
    let rows = db
        .query(
            "SELECT seq, account_id, event_id, event_name, event_json, enqueued_at_ms
             FROM sender_staged_events WHERE webhook_id = $1 ORDER BY seq",
            &[&webhook_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| StagedEvent {
            seq: row.get(0),
            account_id: row.get(1),
            event_id: row.get(2),
            event_name: row.get(3),
            event_json: row.get(4),
            enqueued_at_ms: row.get(5),
        })
        .collect())
}

/// Turns staged events into requests of at most `max_events` per account, in `state`.
pub(super) async fn requests_from_staged<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    staged: Vec<StagedEvent>,
    max_events: usize,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    for request in batch_requests(staged, max_events) {
        insert_request(db, webhook_id, &request, now_ms, state).await?;
    }
    Ok(())
}

/// Deletes finished requests (and their bodies and attempts) that finished before
/// `before_ms`.
pub(super) async fn prune_finished<C: GenericClient>(
    db: &Db<'_, C>,
    before_ms: i64,
) -> anyhow::Result<()> {
    db.execute(
        "WITH gone AS (
             DELETE FROM sender_requests
             WHERE state <> 'pending' AND finished_at_ms < $1 RETURNING id
         ), bodies AS (
             DELETE FROM sender_request_bodies WHERE request_id IN (SELECT id FROM gone)
         )
         DELETE FROM sender_attempts WHERE request_id IN (SELECT id FROM gone)",
        &[&before_ms],
    )
    .await?;
    Ok(())
}
