//! What `deliveries list|show` and the admin pages read: counts, requests newest first, one
//! request with its attempts.

use tokio_postgres::Row;

use super::connection::{Db, PostgresState};
use crate::registry::WebhookId;
use crate::store::rows::RequestRow;
use crate::store::{AttemptView, DeliveryDetail, DeliveryFilter, DeliverySummary, QueueCounts};

pub(super) const SUMMARY_COLUMNS: &str = "r.id, r.resend_of, r.msg_id, r.webhook_id,
    r.account_id, r.event_names, r.event_count, r.state, r.attempts, r.last_status, r.last_error,
    r.created_at_ms, r.next_attempt_at_ms";

pub(super) fn read_summary(row: &Row) -> DeliverySummary {
    RequestRow {
        row: row.get("id"),
        resend_of: row.get("resend_of"),
        msg_id: row.get("msg_id"),
        webhook_id: row.get("webhook_id"),
        account_id: row.get("account_id"),
        event_names: row.get("event_names"),
        event_count: row.get("event_count"),
        state: row.get("state"),
        attempts: row.get("attempts"),
        last_status: row.get("last_status"),
        last_error: row.get("last_error"),
        created_at_ms: row.get("created_at_ms"),
        next_attempt_at_ms: row.get("next_attempt_at_ms"),
    }
    .into_summary()
}

/// [`Queue::counts`](crate::store::Queue::counts) in this store.
pub(super) fn counts(
    store: &PostgresState,
    webhook_id: Option<&WebhookId>,
) -> anyhow::Result<QueueCounts> {
    let filter = webhook_id.map(|id| id.as_str().to_owned());
    store.call(|pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let mut counts = QueueCounts::default();
        let rows = db
            .query(
                "SELECT state, count(*) FROM sender_requests
                 WHERE $1::text IS NULL OR webhook_id = $1 GROUP BY state",
                &[&filter],
            )
            .await?;
        for row in rows {
            let count = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            match row.get::<_, &str>(0) {
                "pending" => counts.pending = count,
                "delivered" => counts.delivered = count,
                _ => counts.expired += count,
            }
        }
        let staged: i64 = db
            .query_one(
                "SELECT count(*) FROM sender_staged_events
                 WHERE $1::text IS NULL OR webhook_id = $1",
                &[&filter],
            )
            .await?
            .get(0);
        counts.staged = u64::try_from(staged).unwrap_or(0);
        Ok(counts)
    })
}

/// [`Queue::deliveries`](crate::store::Queue::deliveries) in this store.
pub(super) fn deliveries(
    store: &PostgresState,
    filter: &DeliveryFilter,
) -> anyhow::Result<Vec<DeliverySummary>> {
    let webhook_id = filter.webhook_id.as_ref().map(|id| id.as_str().to_owned());
    let state = filter.state.clone();
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    store.call(|pool, trips| async move {
        let client = pool.get().await?;
        let rows = Db::new(&client, &trips)
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM sender_requests r
                     WHERE ($1::text IS NULL OR r.webhook_id = $1)
                       AND ($2::text IS NULL OR r.state = $2)
                     ORDER BY r.id DESC LIMIT $3"
                ),
                &[&webhook_id, &state, &limit],
            )
            .await?;
        Ok(rows.iter().map(read_summary).collect())
    })
}

/// [`Queue::delivery`](crate::store::Queue::delivery) in this store: a message queued again
/// has several requests; its id gives the newest, a row number the one it names.
pub(super) fn delivery(store: &PostgresState, id: &str) -> anyhow::Result<Option<DeliveryDetail>> {
    let id = id.to_owned();
    let row_id: i64 = id.parse().unwrap_or(-1);
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let Some(row) = db
            .query_opt(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}, b.body, b.event_ids FROM sender_requests r
                     JOIN sender_request_bodies b ON b.request_id = r.id
                     WHERE r.msg_id = $1 OR r.id = $2 ORDER BY r.id DESC LIMIT 1"
                ),
                &[&id, &row_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let request_id: i64 = row.get("id");
        let body: Vec<u8> = row.get("body");
        let ids: String = row.get("event_ids");
        let attempt_log = db
            .query(
                "SELECT attempt, started_at_ms, status, error, latency_ms, response_head
                 FROM sender_attempts WHERE request_id = $1 ORDER BY id",
                &[&request_id],
            )
            .await?
            .iter()
            .map(|attempt| AttemptView {
                attempt: attempt.get(0),
                at: verify::timestamp::format_iso_millis(attempt.get(1)),
                status: attempt.get(2),
                error: attempt.get(3),
                latency_ms: attempt.get(4),
                response_head: attempt.get(5),
            })
            .collect();
        Ok(Some(DeliveryDetail {
            summary: read_summary(&row),
            event_ids: serde_json::from_str(&ids).unwrap_or_default(),
            body: String::from_utf8_lossy(&body).into_owned(),
            attempt_log,
        }))
    })
}

/// [`Queue::oldest_staged_at_ms`](crate::store::Queue::oldest_staged_at_ms) in this store.
pub(super) fn oldest_staged_at_ms(
    store: &PostgresState,
    webhook_id: &WebhookId,
) -> anyhow::Result<Option<i64>> {
    let webhook_id = webhook_id.as_str().to_owned();
    store.call(|pool, trips| async move {
        let client = pool.get().await?;
        Ok(Db::new(&client, &trips)
            .query_one(
                "SELECT MIN(enqueued_at_ms) FROM sender_staged_events WHERE webhook_id = $1",
                &[&webhook_id],
            )
            .await?
            .get(0))
    })
}
