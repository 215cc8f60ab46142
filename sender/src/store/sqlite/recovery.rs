//! Requests queued again (`resend`, `recover`), the head of a queue retried now, and what the
//! Deliveries page, `/metrics` and `/healthz` read.

use anyhow::Context as _;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::connection::SqliteState;
use super::deliveries::read_summary;
use crate::registry::WebhookId;
use crate::store::recovery::recover_selection;
use crate::store::{
    Backlog, DeliverySummary, HealthState, RecoverFilter, Recovered, Requeued, StagedView,
    WebhookHealth, RECOVERED_IDS_SHOWN,
};

/// Copies request `row` as a new pending request of its webhook (same `msg_id`, body and
/// event ids; made now, so its retention starts now), inside the caller's transaction. Gives
/// the new row.
fn copy_request(transaction: &Transaction<'_>, row: i64, now_ms: i64) -> anyhow::Result<i64> {
    transaction
        .prepare_cached(
            "INSERT INTO requests (msg_id, webhook_id, account_id, event_names, event_count,
                 created_at_ms, state, next_attempt_at_ms, resend_of)
             SELECT msg_id, webhook_id, account_id, event_names, event_count, ?2, 'pending', ?2,
                 id
             FROM requests WHERE id = ?1",
        )?
        .execute(params![row, now_ms])?;
    let copy = transaction.last_insert_rowid();
    transaction
        .prepare_cached(
            "INSERT INTO request_bodies (request_id, body, event_ids)
             SELECT ?1, body, event_ids FROM request_bodies WHERE request_id = ?2",
        )?
        .execute(params![copy, row])?;
    Ok(copy)
}

/// [`Recovery::resend`](crate::store::Recovery::resend) in this store.
pub(super) fn resend(
    store: &SqliteState,
    id: &str,
    now_ms: i64,
) -> anyhow::Result<Option<Requeued>> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row_number: i64 = id.parse().unwrap_or(-1);
    let found: Option<(i64, String, String, i64)> = transaction
        .query_row(
            "SELECT id, msg_id, webhook_id, event_count FROM requests
             WHERE msg_id = ?1 OR id = ?2 ORDER BY id DESC LIMIT 1",
            params![id, row_number],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((row, msg_id, webhook_id, events)) = found else {
        return Ok(None);
    };
    let behind: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM requests WHERE webhook_id = ?1 AND state = 'pending'",
        [&webhook_id],
        |row| row.get(0),
    )?;
    let copy = copy_request(&transaction, row, now_ms)?;
    transaction.commit().context("committing the resend")?;
    Ok(Some(Requeued {
        msg_id,
        row: copy,
        webhook_id: WebhookId(webhook_id),
        events: u64::try_from(events).unwrap_or(0),
        behind: u64::try_from(behind).unwrap_or(0),
    }))
}

/// [`Recovery::recover`](crate::store::Recovery::recover) in this store.
pub(super) fn recover(
    store: &SqliteState,
    filter: &RecoverFilter,
    dry_run: bool,
    now_ms: i64,
) -> anyhow::Result<Recovered> {
    let mut connection = store.lock();
    // A dry run only reads: no write lock.
    let behavior = if dry_run {
        TransactionBehavior::Deferred
    } else {
        TransactionBehavior::Immediate
    };
    let transaction = connection.transaction_with_behavior(behavior)?;
    let chosen: Vec<(i64, String, i64)> = transaction
        .prepare(&recover_selection(
            "requests",
            filter.status,
            "?1",
            "?2",
            "?3",
        ))?
        .query_map(
            params![filter.webhook_id.as_str(), filter.since_ms, filter.until_ms],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut recovered = Recovered::default();
    for (row, msg_id, events) in chosen {
        if !dry_run {
            copy_request(&transaction, row, now_ms)?;
        }
        recovered.requests += 1;
        recovered.events += u64::try_from(events).unwrap_or(0);
        if recovered.ids.len() < RECOVERED_IDS_SHOWN {
            recovered.ids.push(msg_id);
        }
    }
    if dry_run {
        // Nothing written: the read ends without a commit.
        drop(transaction);
    } else {
        transaction.commit().context("committing the recovery")?;
    }
    Ok(recovered)
}

/// [`Recovery::retry_head`](crate::store::Recovery::retry_head) in this store.
pub(super) fn retry_head(
    store: &SqliteState,
    webhook_id: &WebhookId,
    now_ms: i64,
) -> anyhow::Result<Option<DeliverySummary>> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head: Option<i64> = transaction
        .query_row(
            "SELECT id FROM requests WHERE webhook_id = ?1 AND state = 'pending'
             ORDER BY id LIMIT 1",
            [webhook_id.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    let Some(head) = head else {
        return Ok(None);
    };
    transaction.execute(
        "UPDATE requests SET next_attempt_at_ms = MIN(next_attempt_at_ms, ?2) WHERE id = ?1",
        params![head, now_ms],
    )?;
    let summary =
        transaction.query_row("SELECT * FROM requests WHERE id = ?1", [head], read_summary)?;
    transaction.commit().context("committing the retry")?;
    Ok(Some(summary))
}

/// [`Recovery::staged`](crate::store::Recovery::staged) in this store.
pub(super) fn staged(
    store: &SqliteState,
    webhook_id: &WebhookId,
    limit: usize,
) -> anyhow::Result<Vec<StagedView>> {
    let connection = store.lock();
    let rows = connection
        .prepare_cached(
            "SELECT event_id, event_name, account_id, enqueued_at_ms FROM staged_events
             WHERE webhook_id = ?1 ORDER BY seq LIMIT ?2",
        )?
        .query_map(
            params![
                webhook_id.as_str(),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| {
                Ok(StagedView {
                    event_id: row.get(0)?,
                    event_name: row.get(1)?,
                    account_id: row.get(2)?,
                    staged_at_ms: row.get(3)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// [`Recovery::backlogs`](crate::store::Recovery::backlogs) in this store.
pub(super) fn backlogs(store: &SqliteState) -> anyhow::Result<Vec<Backlog>> {
    let connection = store.lock();
    let rows = connection
        .prepare_cached(
            "SELECT w.id, w.status,
                 (SELECT COUNT(*) FROM requests r WHERE r.webhook_id = w.id AND r.state = 'pending'),
                 (SELECT r.created_at_ms FROM requests r
                  WHERE r.webhook_id = w.id AND r.state = 'pending' ORDER BY r.id LIMIT 1),
                 (SELECT COUNT(*) FROM staged_events s WHERE s.webhook_id = w.id)
             FROM webhooks w ORDER BY w.created_at_ms, w.id",
        )?
        .query_map([], |row| {
            Ok(Backlog {
                webhook_id: WebhookId(row.get(0)?),
                disabled: row.get::<_, String>(1)? == "disabled",
                pending: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                oldest_pending_ms: row.get(3)?,
                staged: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// [`Recovery::health`](crate::store::Recovery::health) in this store.
pub(super) fn health(store: &SqliteState, webhook_id: &WebhookId) -> anyhow::Result<WebhookHealth> {
    let found = store
        .lock()
        .query_row(
            "SELECT consecutive_failures, state, since_ms FROM webhook_health
             WHERE webhook_id = ?1",
            [webhook_id.as_str()],
            |row| {
                Ok(WebhookHealth {
                    consecutive_failures: row.get(0)?,
                    state: HealthState::parse(&row.get::<_, String>(1)?),
                    since_ms: row.get(2)?,
                })
            },
        )
        .optional()?;
    Ok(found.unwrap_or_default())
}

/// [`Recovery::ping`](crate::store::Recovery::ping) in this store: a read of the file.
pub(super) fn ping(store: &SqliteState) -> anyhow::Result<()> {
    store
        .lock()
        .query_row("SELECT COUNT(*) FROM webhooks", [], |row| {
            row.get::<_, i64>(0)
        })
        .context("reading the state file")?;
    Ok(())
}
