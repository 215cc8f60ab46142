//! The queue: events enqueued (requests at once, batch events staged), batches made when due,
//! and the pending requests handed out in order.

use anyhow::Context as _;
use rusqlite::{params, Transaction, TransactionBehavior};

use super::connection::SqliteState;
use crate::registry::WebhookId;
use crate::store::batching::{
    batch_requests, enqueued, flush_plan, Enqueued, FlushPlan, RequestToWrite, StagedEvent,
};
use crate::store::{NewDelivery, PendingRequest};

/// [`Queue::enqueue`](crate::store::Queue::enqueue) in this store.
pub(super) fn enqueue(
    store: &SqliteState,
    deliveries: &[NewDelivery],
    now_ms: i64,
) -> anyhow::Result<()> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for delivery in deliveries {
        match enqueued(delivery)? {
            Enqueued::Request(request) => insert_request(
                &transaction,
                delivery.webhook_id.as_str(),
                &request,
                now_ms,
                "pending",
            )?,
            Enqueued::Staged { event_json } => {
                transaction
                    .prepare_cached(
                        "INSERT INTO staged_events (webhook_id, account_id, event_id, event_name,
                         event_json, enqueued_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        delivery.webhook_id.as_str(),
                        delivery.account_id,
                        delivery.event.event_id,
                        delivery.event.event_name,
                        event_json,
                        now_ms
                    ])?;
            }
        }
    }
    transaction
        .commit()
        .context("committing the queued events")?;
    Ok(())
}

/// [`Queue::webhooks_with_work`](crate::store::Queue::webhooks_with_work) in this store.
pub(super) fn webhooks_with_work(store: &SqliteState) -> anyhow::Result<Vec<WebhookId>> {
    let connection = store.lock();
    let mut statement = connection.prepare_cached(
        "SELECT id FROM webhooks WHERE status = 'active' AND (
             EXISTS (SELECT 1 FROM requests r WHERE r.webhook_id = webhooks.id AND r.state = 'pending')
             OR EXISTS (SELECT 1 FROM staged_events s WHERE s.webhook_id = webhooks.id))
         ORDER BY created_at_ms, id",
    )?;
    let ids = statement
        .query_map([], |row| row.get::<_, String>(0).map(WebhookId))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// [`Queue::flush_batches`](crate::store::Queue::flush_batches) in this store.
pub(super) fn flush_batches(
    store: &SqliteState,
    webhook_id: &WebhookId,
    now_ms: i64,
    interval_ms: i64,
    max_events: usize,
    force: bool,
) -> anyhow::Result<Option<i64>> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut staged = staged_events(&transaction, webhook_id.as_str())?;
    match flush_plan(&staged, now_ms, interval_ms, max_events, force) {
        FlushPlan::Empty => return Ok(None),
        FlushPlan::WaitUntil(due) => return Ok(Some(due)),
        FlushPlan::Take(count) => {
            staged.truncate(count);
            requests_from_staged(
                &transaction,
                webhook_id.as_str(),
                staged,
                max_events,
                now_ms,
                "pending",
            )?;
        }
    }
    let next: Option<i64> = transaction.query_row(
        "SELECT MIN(enqueued_at_ms) FROM staged_events WHERE webhook_id = ?1",
        [webhook_id.as_str()],
        |row| row.get(0),
    )?;
    transaction.commit().context("committing the batch")?;
    Ok(next.map(|oldest| oldest.saturating_add(interval_ms)))
}

/// [`Queue::pending`](crate::store::Queue::pending) in this store.
pub(super) fn pending(
    store: &SqliteState,
    webhook_id: &WebhookId,
    limit: usize,
    strict: bool,
    now_ms: i64,
    after_id: i64,
) -> anyhow::Result<Vec<PendingRequest>> {
    let connection = store.lock();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let read = |row: &rusqlite::Row<'_>| {
        Ok(PendingRequest {
            id: row.get(0)?,
            msg_id: row.get(1)?,
            webhook_id: webhook_id.clone(),
            body: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)?),
            created_at_ms: row.get(3)?,
            attempts: row.get(4)?,
            next_attempt_at_ms: row.get(5)?,
        })
    };
    let rows = if strict {
        connection
            .prepare_cached(
                "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts, r.next_attempt_at_ms
                 FROM requests r JOIN request_bodies b ON b.request_id = r.id
                 WHERE r.webhook_id = ?1 AND r.state = 'pending' ORDER BY r.id LIMIT ?2",
            )?
            .query_map(params![webhook_id.as_str(), limit], read)?
            .collect::<Result<Vec<_>, _>>()?
    } else {
        connection
            .prepare_cached(
                "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts, r.next_attempt_at_ms
                 FROM requests r JOIN request_bodies b ON b.request_id = r.id
                 WHERE r.webhook_id = ?1 AND r.state = 'pending' AND r.id > ?4
                   AND r.next_attempt_at_ms <= ?3
                 ORDER BY r.id LIMIT ?2",
            )?
            .query_map(params![webhook_id.as_str(), limit, now_ms, after_id], read)?
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(rows)
}

/// [`Queue::next_due`](crate::store::Queue::next_due) in this store.
pub(super) fn next_due(store: &SqliteState, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>> {
    let next = store.lock().query_row(
        "SELECT MIN(next_attempt_at_ms) FROM requests WHERE webhook_id = ?1 AND state = 'pending'",
        [webhook_id.as_str()],
        |row| row.get(0),
    )?;
    Ok(next)
}

/// Inserts one request in `state` and deletes the staged events it is made of.
pub(super) fn insert_request(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    request: &RequestToWrite,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    transaction
        .prepare_cached(
            "INSERT INTO requests (msg_id, webhook_id, account_id, event_names, event_count,
             created_at_ms, state, next_attempt_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
        )?
        .execute(params![
            crate::registry::new_msg_id(),
            webhook_id,
            request.account_id,
            request.event_names,
            i64::try_from(request.event_ids.len())?,
            now_ms,
            state
        ])?;
    transaction
        .prepare_cached(
            "INSERT INTO request_bodies (request_id, body, event_ids) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            transaction.last_insert_rowid(),
            request.body,
            request.event_ids_json()?
        ])?;
    let mut delete = transaction.prepare_cached("DELETE FROM staged_events WHERE seq = ?1")?;
    for seq in &request.staged_seqs {
        delete.execute([seq])?;
    }
    Ok(())
}

pub(super) fn staged_events(
    transaction: &Transaction<'_>,
    webhook_id: &str,
) -> anyhow::Result<Vec<StagedEvent>> {
    let mut statement = transaction.prepare_cached(
        "SELECT seq, account_id, event_id, event_name, event_json, enqueued_at_ms
         FROM staged_events WHERE webhook_id = ?1 ORDER BY seq",
    )?;
    let rows = statement
        .query_map([webhook_id], |row| {
            Ok(StagedEvent {
                seq: row.get(0)?,
                account_id: row.get(1)?,
                event_id: row.get(2)?,
                event_name: row.get(3)?,
                event_json: row.get(4)?,
                enqueued_at_ms: row.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Turns staged events into requests of at most `max_events` per account, in `state`.
pub(super) fn requests_from_staged(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    staged: Vec<StagedEvent>,
    max_events: usize,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    for request in batch_requests(staged, max_events) {
        insert_request(transaction, webhook_id, &request, now_ms, state)?;
    }
    Ok(())
}
