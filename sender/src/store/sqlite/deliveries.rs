//! What `deliveries list|show` and the admin pages read: counts, requests newest first, one
//! request with its attempts.

use rusqlite::{params, OptionalExtension};
use verify::timestamp::format_iso_millis;

use super::connection::SqliteState;
use crate::registry::WebhookId;
use crate::store::rows::RequestRow;
use crate::store::{AttemptView, DeliveryDetail, DeliveryFilter, DeliverySummary, QueueCounts};

pub(super) fn read_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliverySummary> {
    Ok(RequestRow {
        row: row.get("id")?,
        resend_of: row.get("resend_of")?,
        msg_id: row.get("msg_id")?,
        webhook_id: row.get("webhook_id")?,
        account_id: row.get("account_id")?,
        event_names: row.get("event_names")?,
        event_count: row.get("event_count")?,
        state: row.get("state")?,
        attempts: row.get("attempts")?,
        last_status: row.get("last_status")?,
        last_error: row.get("last_error")?,
        created_at_ms: row.get("created_at_ms")?,
        next_attempt_at_ms: row.get("next_attempt_at_ms")?,
    }
    .into_summary())
}

/// [`Queue::counts`](crate::store::Queue::counts) in this store.
pub(super) fn counts(
    store: &SqliteState,
    webhook_id: Option<&WebhookId>,
) -> anyhow::Result<QueueCounts> {
    let connection = store.lock();
    let filter = webhook_id.map(WebhookId::as_str);
    let mut counts = QueueCounts::default();
    let mut statement = connection.prepare_cached(
        "SELECT state, COUNT(*) FROM requests WHERE ?1 IS NULL OR webhook_id = ?1 GROUP BY state",
    )?;
    let rows = statement
        .query_map([filter], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (state, count) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        match state.as_str() {
            "pending" => counts.pending = count,
            "delivered" => counts.delivered = count,
            _ => counts.expired += count,
        }
    }
    let staged: i64 = connection.query_row(
        "SELECT COUNT(*) FROM staged_events WHERE ?1 IS NULL OR webhook_id = ?1",
        [filter],
        |row| row.get(0),
    )?;
    counts.staged = u64::try_from(staged).unwrap_or(0);
    Ok(counts)
}

/// [`Queue::deliveries`](crate::store::Queue::deliveries) in this store.
pub(super) fn deliveries(
    store: &SqliteState,
    filter: &DeliveryFilter,
) -> anyhow::Result<Vec<DeliverySummary>> {
    let connection = store.lock();
    let mut statement = connection.prepare(
        "SELECT * FROM requests WHERE (?1 IS NULL OR webhook_id = ?1) AND (?2 IS NULL OR state = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = statement
        .query_map(
            params![
                filter.webhook_id.as_ref().map(WebhookId::as_str),
                filter.state,
                i64::try_from(filter.limit).unwrap_or(i64::MAX)
            ],
            read_summary,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// [`Queue::delivery`](crate::store::Queue::delivery) in this store: a message queued again
/// has several requests; its id gives the newest, a row number the one it names.
pub(super) fn delivery(store: &SqliteState, id: &str) -> anyhow::Result<Option<DeliveryDetail>> {
    let connection = store.lock();
    let row_id: i64 = id.parse().unwrap_or(-1);
    let found = connection
        .query_row(
            "SELECT r.*, b.body, b.event_ids FROM requests r
             JOIN request_bodies b ON b.request_id = r.id WHERE r.msg_id = ?1 OR r.id = ?2
             ORDER BY r.id DESC LIMIT 1",
            params![id, row_id],
            |row| {
                let body: Vec<u8> = row.get("body")?;
                let ids: String = row.get("event_ids")?;
                Ok((row.get::<_, i64>("id")?, read_summary(row)?, body, ids))
            },
        )
        .optional()?;
    let Some((request_id, summary, body, ids)) = found else {
        return Ok(None);
    };
    let mut statement = connection.prepare(
        "SELECT attempt, started_at_ms, status, error, latency_ms, response_head FROM attempts
         WHERE request_id = ?1 ORDER BY id",
    )?;
    let attempt_log = statement
        .query_map([request_id], |row| {
            Ok(AttemptView {
                attempt: row.get(0)?,
                at: format_iso_millis(row.get(1)?),
                status: row.get(2)?,
                error: row.get(3)?,
                latency_ms: row.get(4)?,
                response_head: row.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(DeliveryDetail {
        summary,
        event_ids: serde_json::from_str(&ids).unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
        attempt_log,
    }))
}

/// [`Queue::oldest_staged_at_ms`](crate::store::Queue::oldest_staged_at_ms) in this store.
pub(super) fn oldest_staged_at_ms(
    store: &SqliteState,
    webhook_id: &WebhookId,
) -> anyhow::Result<Option<i64>> {
    let connection = store.lock();
    Ok(connection.query_row(
        "SELECT MIN(enqueued_at_ms) FROM staged_events WHERE webhook_id = ?1",
        [webhook_id.as_str()],
        |row| row.get(0),
    )?)
}
