//! Outcomes recorded under the lease's fence, unsynced (see the module docs of the store), and
//! the expiry of a webhook whose retention ended, in the same transaction as the outcome that
//! ended it.

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::connection::SqliteState;
use super::queue::{requests_from_staged, staged_events};
use crate::registry::WebhookId;
use crate::store::rows::{outcome_columns, retention_reason};
use crate::store::{AttemptRecord, HealthChange, LeaseToken, Recorded, RequestState};

/// Attempt rows written by one multi-row INSERT when outcomes are recorded in a group.
pub(super) const ATTEMPT_ROWS: usize = 16;

/// The multi-row INSERT of [`ATTEMPT_ROWS`] attempts, built once.
pub(super) static INSERT_MANY_ATTEMPTS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO attempts (request_id, attempt, started_at_ms, status, error, latency_ms,
         response_head) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?)"; ATTEMPT_ROWS].join(", ")
        )
    });

/// [`Queue::record_outcomes`](crate::store::Queue::record_outcomes) in this store.
pub(super) fn record(
    store: &SqliteState,
    lease: &LeaseToken,
    attempts: &[AttemptRecord],
    health: Option<&HealthChange>,
) -> anyhow::Result<Recorded> {
    let mut connection = store.lock();
    // Outcomes need not survive a power cut (see the module docs): not synced, and the
    // connection goes back to FULL before the lock is released, whatever happens. A change of
    // health (notifications among it) is synced: it is rare, and what it queues must not be
    // lost once the outcome that made it is acted on.
    let synchronous = if health.is_some() { "FULL" } else { "NORMAL" };
    connection.pragma_update(None, "synchronous", synchronous)?;
    let result = record_attempts(&mut connection, lease, attempts, health);
    connection.pragma_update(None, "synchronous", "FULL")?;
    result
}

/// [`Queue::give_up`](crate::store::Queue::give_up) in this store.
pub(super) fn give_up(
    store: &SqliteState,
    webhook_id: &WebhookId,
    reason: &str,
    now_ms: i64,
) -> anyhow::Result<u64> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (_, expired_events) = expire_webhook(&transaction, webhook_id.as_str(), reason, now_ms)?;
    transaction.commit().context("committing the expiry")?;
    Ok(expired_events)
}

/// Disables a webhook whose retention ended and expires its pending requests and staged
/// events, inside the caller's transaction. Gives the numbers of requests and events expired.
pub(super) fn expire_webhook(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    reason: &str,
    now_ms: i64,
) -> anyhow::Result<(u64, u64)> {
    transaction.execute(
        "UPDATE webhooks SET status = 'disabled', disabled_reason = ?2, updated_at_ms = ?3
         WHERE id = ?1",
        params![webhook_id, reason, now_ms],
    )?;
    let staged = staged_events(transaction, webhook_id)?;
    requests_from_staged(
        transaction,
        webhook_id,
        staged,
        usize::MAX,
        now_ms,
        "expired",
    )?;
    let (requests, events): (i64, i64) = transaction.query_row(
        "SELECT COUNT(*), COALESCE(SUM(event_count), 0) FROM requests
         WHERE webhook_id = ?1 AND (state = 'pending' OR (state = 'expired' AND finished_at_ms IS NULL))",
        [webhook_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    transaction.execute(
        "UPDATE requests SET state = 'expired', finished_at_ms = ?2
         WHERE webhook_id = ?1 AND (state = 'pending' OR (state = 'expired' AND finished_at_ms IS NULL))",
        params![webhook_id, now_ms],
    )?;
    Ok((
        u64::try_from(requests).unwrap_or(0),
        u64::try_from(events).unwrap_or(0),
    ))
}

/// The body of [`Queue::record`](crate::store::Queue::record): attempts and new states in one transaction, and the expiry
/// of the webhook of any request whose retention ended.
pub(super) fn record_attempts(
    connection: &mut Connection,
    lease: &LeaseToken,
    attempts: &[AttemptRecord],
    health: Option<&HealthChange>,
) -> anyhow::Result<Recorded> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let fence: Option<i64> = transaction
        .query_row(
            "SELECT fence FROM leases WHERE webhook_id = ?1",
            [lease.webhook_id.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    if fence != Some(lease.fence) {
        return Ok(Recorded::Fenced);
    }
    {
        // Full groups of attempt rows go in one multi-row INSERT: one statement run instead
        // of `ATTEMPT_ROWS`, which is most of what an INSERT costs besides its B-tree work.
        let mut insert = transaction.prepare_cached(
            "INSERT INTO attempts (request_id, attempt, started_at_ms, status, error, latency_ms,
                 response_head) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut update = transaction.prepare_cached(
            "UPDATE requests SET state = ?2, attempts = ?3, next_attempt_at_ms = ?4,
                 last_status = ?5, last_error = ?6, finished_at_ms = ?7
                 WHERE id = ?1 AND state = 'pending'",
        )?;
        for chunk in attempts.chunks(ATTEMPT_ROWS) {
            if chunk.len() == ATTEMPT_ROWS {
                let mut insert_many = transaction.prepare_cached(&INSERT_MANY_ATTEMPTS)?;
                for (row, record) in chunk.iter().enumerate() {
                    let first = row * 7;
                    insert_many.raw_bind_parameter(first + 1, record.request_id)?;
                    insert_many.raw_bind_parameter(first + 2, record.attempt)?;
                    insert_many.raw_bind_parameter(first + 3, record.started_at_ms)?;
                    insert_many.raw_bind_parameter(first + 4, record.status)?;
                    insert_many.raw_bind_parameter(first + 5, &record.error)?;
                    insert_many.raw_bind_parameter(first + 6, record.latency_ms)?;
                    insert_many.raw_bind_parameter(first + 7, &record.response_head)?;
                }
                insert_many.raw_execute()?;
            } else {
                for record in chunk {
                    insert.execute(params![
                        record.request_id,
                        record.attempt,
                        record.started_at_ms,
                        record.status,
                        record.error,
                        record.latency_ms,
                        record.response_head
                    ])?;
                }
            }
            // `state = 'pending'`: an outcome that comes in after the webhook was given up
            // (relaxed order has several in flight) must not bring its request back.
            for record in chunk {
                let (state, next, finished_at) = outcome_columns(record);
                update.execute(params![
                    record.request_id,
                    state,
                    record.attempt,
                    next,
                    record.status,
                    record.error,
                    finished_at
                ])?;
            }
        }
    }
    let (mut expired_requests, mut expired_events) = (0, 0);
    for record in attempts
        .iter()
        .filter(|record| record.next == RequestState::Expired)
    {
        let (webhook_id, events, created_ms): (String, i64, i64) = transaction.query_row(
            "SELECT webhook_id, event_count, created_at_ms FROM requests WHERE id = ?1",
            [record.request_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let reason = retention_reason(record, created_ms);
        let now_ms = record.started_at_ms.saturating_add(record.latency_ms);
        let (requests, more_events) = expire_webhook(&transaction, &webhook_id, &reason, now_ms)?;
        expired_requests += 1 + requests;
        expired_events += u64::try_from(events).unwrap_or(0) + more_events;
    }
    if let Some(change) = health {
        super::outbox::write_health(
            &transaction,
            &lease.webhook_id,
            change,
            (expired_requests, expired_events),
        )?;
    }
    transaction.commit().context("committing attempts")?;
    Ok(Recorded::Written { expired_events })
}
