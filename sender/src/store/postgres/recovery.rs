//! Requests queued again (`resend`, `recover`), the head of a queue retried now, and what the
//! Deliveries page, `/metrics` and `/healthz` read.

use anyhow::Context as _;
use deadpool_postgres::GenericClient;

use super::connection::{Db, PostgresState};
use super::deliveries::{read_summary, SUMMARY_COLUMNS};
use super::notify::WORK_CHANNEL;
use crate::registry::WebhookId;
use crate::store::recovery::recover_selection;
use crate::store::{
    Backlog, DeliverySummary, HealthState, RecoverFilter, Recovered, Requeued, StagedView,
    WebhookHealth, RECOVERED_IDS_SHOWN,
};

/// Copies the requests `rows` (in this order) as new pending requests of their webhook, with
/// ids in that same order (same `msg_id`, body and event ids; made now, so their retention
/// starts now), inside the caller's transaction: two statements whatever their number.
/// Locks the webhook's lease row in share mode first, as an enqueue does, and notifies the
/// idle workers at the commit.
async fn copy_requests<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    rows: &[i64],
    now_ms: i64,
) -> anyhow::Result<Vec<i64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // A worker releasing an idle lease holds its row exclusively while it looks for work:
    // either it sees these requests, or this waits and the lease is free for whoever takes
    // them (see `queue.rs`).
    db.execute(
        "SELECT 1 FROM sender_leases WHERE webhook_id = $1 FOR SHARE",
        &[&webhook_id],
    )
    .await?;
    // Ids taken first and sorted, so the copies' order (the queue's order) is the order of
    // `rows` whatever order the server hands the numbers out in.
    let count = i64::try_from(rows.len())?;
    let mut ids: Vec<i64> = db
        .query(
            "SELECT nextval(pg_get_serial_sequence('sender_requests', 'id'))
             FROM generate_series(1::bigint, $1::bigint)",
            &[&count],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    ids.sort_unstable();
    db.execute(
        "WITH copies AS (
             SELECT c.old_id, c.new_id FROM unnest($1::bigint[], $2::bigint[]) AS c(old_id, new_id)
         ), inserted AS (
             INSERT INTO sender_requests (id, msg_id, webhook_id, account_id, event_names,
                 event_count, created_at_ms, state, next_attempt_at_ms, resend_of)
             OVERRIDING SYSTEM VALUE
             SELECT c.new_id, r.msg_id, r.webhook_id, r.account_id, r.event_names, r.event_count,
                 $3, 'pending', $3, r.id
             FROM copies c JOIN sender_requests r ON r.id = c.old_id
         )
         INSERT INTO sender_request_bodies (request_id, body, event_ids)
         SELECT c.new_id, b.body, b.event_ids
         FROM copies c JOIN sender_request_bodies b ON b.request_id = c.old_id",
        &[&rows, &ids, &now_ms],
    )
    .await?;
    db.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
        .await?;
    Ok(ids)
}

/// [`Recovery::resend`](crate::store::Recovery::resend) in this store.
pub(super) fn resend(
    store: &PostgresState,
    id: &str,
    now_ms: i64,
) -> anyhow::Result<Option<Requeued>> {
    let id = id.to_owned();
    let row_number: i64 = id.parse().unwrap_or(-1);
    store.call(move |pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        let Some(found) = db
            .query_opt(
                "SELECT id, msg_id, webhook_id, event_count FROM sender_requests
                 WHERE msg_id = $1 OR id = $2 ORDER BY id DESC LIMIT 1",
                &[&id, &row_number],
            )
            .await?
        else {
            return Ok(None);
        };
        let (row, msg_id, webhook_id, events): (i64, String, String, i64) =
            (found.get(0), found.get(1), found.get(2), found.get(3));
        let behind: i64 = db
            .query_one(
                "SELECT count(*) FROM sender_requests WHERE webhook_id = $1 AND state = 'pending'",
                &[&webhook_id],
            )
            .await?
            .get(0);
        let copies = copy_requests(&db, &webhook_id, &[row], now_ms).await?;
        transaction
            .commit()
            .await
            .context("committing the resend")?;
        Ok(Some(Requeued {
            msg_id,
            row: copies.first().copied().unwrap_or_default(),
            webhook_id: WebhookId(webhook_id),
            events: u64::try_from(events).unwrap_or(0),
            behind: u64::try_from(behind).unwrap_or(0),
        }))
    })
}

/// [`Recovery::recover`](crate::store::Recovery::recover) in this store.
pub(super) fn recover(
    store: &PostgresState,
    filter: &RecoverFilter,
    dry_run: bool,
    now_ms: i64,
) -> anyhow::Result<Recovered> {
    let filter = filter.clone();
    let selection = recover_selection(
        "sender_requests",
        filter.status,
        "$1",
        "$2::bigint",
        "$3::bigint",
    );
    store.call(move |pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        let webhook_id = filter.webhook_id.as_str();
        let chosen = db
            .query(
                &selection,
                &[&webhook_id, &filter.since_ms, &filter.until_ms],
            )
            .await?;
        let mut recovered = Recovered::default();
        let mut rows = Vec::with_capacity(chosen.len());
        for row in &chosen {
            rows.push(row.get::<_, i64>(0));
            recovered.requests += 1;
            recovered.events += u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            if recovered.ids.len() < RECOVERED_IDS_SHOWN {
                recovered.ids.push(row.get(1));
            }
        }
        if !dry_run {
            copy_requests(&db, webhook_id, &rows, now_ms).await?;
            transaction
                .commit()
                .await
                .context("committing the recovery")?;
        }
        Ok(recovered)
    })
}

/// [`Recovery::retry_head`](crate::store::Recovery::retry_head) in this store.
pub(super) fn retry_head(
    store: &PostgresState,
    webhook_id: &WebhookId,
    now_ms: i64,
) -> anyhow::Result<Option<DeliverySummary>> {
    let webhook_id = webhook_id.as_str().to_owned();
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let row = Db::new(&client, &trips)
            .query_opt(
                &format!(
                    "WITH head AS (
                         SELECT id FROM sender_requests WHERE webhook_id = $1 AND state = 'pending'
                         ORDER BY id LIMIT 1)
                     UPDATE sender_requests r
                     SET next_attempt_at_ms = LEAST(r.next_attempt_at_ms, $2)
                     FROM head WHERE r.id = head.id
                     RETURNING {SUMMARY_COLUMNS}"
                ),
                &[&webhook_id, &now_ms],
            )
            .await?;
        Ok(row.as_ref().map(read_summary))
    })
}

/// [`Recovery::staged`](crate::store::Recovery::staged) in this store.
pub(super) fn staged(
    store: &PostgresState,
    webhook_id: &WebhookId,
    limit: usize,
) -> anyhow::Result<Vec<StagedView>> {
    let webhook_id = webhook_id.as_str().to_owned();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let rows = Db::new(&client, &trips)
            .query(
                "SELECT event_id, event_name, account_id, enqueued_at_ms FROM sender_staged_events
                 WHERE webhook_id = $1 ORDER BY seq LIMIT $2",
                &[&webhook_id, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| StagedView {
                event_id: row.get(0),
                event_name: row.get(1),
                account_id: row.get(2),
                staged_at_ms: row.get(3),
            })
            .collect())
    })
}

/// [`Recovery::backlogs`](crate::store::Recovery::backlogs) in this store.
pub(super) fn backlogs(store: &PostgresState) -> anyhow::Result<Vec<Backlog>> {
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let rows = Db::new(&client, &trips)
            .query(
                "SELECT w.id, w.status,
                     (SELECT count(*) FROM sender_requests r
                      WHERE r.webhook_id = w.id AND r.state = 'pending'),
                     (SELECT r.created_at_ms FROM sender_requests r
                      WHERE r.webhook_id = w.id AND r.state = 'pending' ORDER BY r.id LIMIT 1),
                     (SELECT count(*) FROM sender_staged_events s WHERE s.webhook_id = w.id)
                 FROM sender_webhooks w ORDER BY w.created_at_ms, w.id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Backlog {
                webhook_id: WebhookId(row.get(0)),
                disabled: row.get::<_, &str>(1) == "disabled",
                pending: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                oldest_pending_ms: row.get(3),
                staged: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
            })
            .collect())
    })
}

/// [`Recovery::health`](crate::store::Recovery::health) in this store.
pub(super) fn health(
    store: &PostgresState,
    webhook_id: &WebhookId,
) -> anyhow::Result<WebhookHealth> {
    let webhook_id = webhook_id.as_str().to_owned();
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let row = Db::new(&client, &trips)
            .query_opt(
                "SELECT consecutive_failures, state, since_ms FROM sender_webhook_health
                 WHERE webhook_id = $1",
                &[&webhook_id],
            )
            .await?;
        Ok(
            row.map_or_else(WebhookHealth::default, |row| WebhookHealth {
                consecutive_failures: u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX),
                state: HealthState::parse(row.get(1)),
                since_ms: row.get(2),
            }),
        )
    })
}

/// [`Recovery::ping`](crate::store::Recovery::ping) in this store: a connection and a read.
pub(super) fn ping(store: &PostgresState) -> anyhow::Result<()> {
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        Db::new(&client, &trips)
            .query_one("SELECT count(*) FROM sender_webhooks", &[])
            .await?;
        Ok(())
    })
}
