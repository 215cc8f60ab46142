//! Outcomes recorded under the lease's fence, in one statement, and the expiry of a webhook
//! whose retention ended (in the same transaction as the outcome that ended it).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::connection::{Db, PostgresState};
use super::queue::{requests_from_staged, staged_events};
use crate::registry::WebhookId;
use crate::store::rows::{outcome_columns, retention_reason};
use crate::store::{AttemptRecord, HealthChange, LeaseToken, Recorded, RequestState};

/// The record of outcomes, as one statement: it locks the lease row if it still has the
/// worker's fence, and writes the attempts and the requests' new states only then.
pub(super) const RECORD: &str = "
WITH lease AS (
    SELECT fence FROM sender_leases WHERE webhook_id = $1 AND fence = $2 FOR UPDATE
), outcome AS (
    SELECT o.* FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
                           $8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::bigint[])
        AS o(request_id, attempt, started_at_ms, status, error, latency_ms, response_head,
             state, next_attempt_at_ms, finished_at_ms)
    WHERE EXISTS (SELECT 1 FROM lease)
), inserted AS (
    INSERT INTO sender_attempts (request_id, attempt, started_at_ms, status, error, latency_ms,
                                 response_head)
    SELECT request_id, attempt, started_at_ms, status, error, latency_ms, response_head
    FROM outcome
), updated AS (
    -- `state = 'pending'`: an outcome that comes in after the webhook was given up must not
    -- bring its request back.
    UPDATE sender_requests r SET state = o.state, attempts = o.attempt,
        next_attempt_at_ms = o.next_attempt_at_ms, last_status = o.status,
        last_error = o.error, finished_at_ms = o.finished_at_ms
    FROM outcome o WHERE r.id = o.request_id AND r.state = 'pending'
)
SELECT count(*) FROM lease";

/// The statement parameters of a group of outcomes, one array per column of [`RECORD`].
struct OutcomeColumns {
    request_id: Vec<i64>,
    attempt: Vec<i64>,
    started_at_ms: Vec<i64>,
    status: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    latency_ms: Vec<i64>,
    response_head: Vec<String>,
    state: Vec<&'static str>,
    next_attempt_at_ms: Vec<i64>,
    finished_at_ms: Vec<Option<i64>>,
}

impl OutcomeColumns {
    fn of(records: &[AttemptRecord]) -> Self {
        let mut columns = Self {
            request_id: Vec::with_capacity(records.len()),
            attempt: Vec::with_capacity(records.len()),
            started_at_ms: Vec::with_capacity(records.len()),
            status: Vec::with_capacity(records.len()),
            error: Vec::with_capacity(records.len()),
            latency_ms: Vec::with_capacity(records.len()),
            response_head: Vec::with_capacity(records.len()),
            state: Vec::with_capacity(records.len()),
            next_attempt_at_ms: Vec::with_capacity(records.len()),
            finished_at_ms: Vec::with_capacity(records.len()),
        };
        for record in records {
            let (state, next, finished) = outcome_columns(record);
            columns.request_id.push(record.request_id);
            columns.attempt.push(i64::from(record.attempt));
            columns.started_at_ms.push(record.started_at_ms);
            columns.status.push(record.status.map(i64::from));
            columns.error.push(record.error.clone());
            columns.latency_ms.push(record.latency_ms);
            columns.response_head.push(record.response_head.clone());
            columns.state.push(state);
            columns.next_attempt_at_ms.push(next);
            columns.finished_at_ms.push(finished);
        }
        columns
    }

    /// Runs [`RECORD`] in a transaction of its own with `synchronous_commit` off: the
    /// outcomes survive a killed worker and a crashed server process, and a power cut of the
    /// database host can lose only the last ones, whose requests are then sent again with the
    /// same id and bytes (at least once); the next synced commit makes them durable too. The
    /// same trade as the SQLite store's unsynced outcomes. `false` when fenced out.
    async fn write_unsynced(
        &self,
        client: &deadpool_postgres::Object,
        trips: &AtomicU64,
        lease: &LeaseToken,
    ) -> anyhow::Result<bool> {
        let statement = client.prepare_cached(RECORD).await?;
        let params = self.params(lease);
        // Polled together, the three go out back to back on the connection: one round trip.
        let (begun, rows, committed) = tokio::join!(
            client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            client.query(&statement, &params),
            client.batch_execute("COMMIT"),
        );
        trips.fetch_add(1, Ordering::Relaxed);
        begun?;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                // The COMMIT of a failed transaction rolled it back; nothing was written.
                return Err(error.into());
            }
        };
        committed?;
        let held: i64 = rows.first().context("the database returned no row")?.get(0);
        Ok(held == 1)
    }

    /// The parameters of [`RECORD`], in order.
    fn params<'a>(&'a self, lease: &'a LeaseToken) -> [&'a (dyn ToSql + Sync); 12] {
        [
            &lease.webhook_id.0,
            &lease.fence,
            &self.request_id,
            &self.attempt,
            &self.started_at_ms,
            &self.status,
            &self.error,
            &self.latency_ms,
            &self.response_head,
            &self.state,
            &self.next_attempt_at_ms,
            &self.finished_at_ms,
        ]
    }

    /// Runs [`RECORD`] inside the caller's transaction; `false` when fenced out.
    async fn write<C: GenericClient>(
        &self,
        db: &Db<'_, C>,
        lease: &LeaseToken,
    ) -> anyhow::Result<bool> {
        let held: i64 = db.query_one(RECORD, &self.params(lease)).await?.get(0);
        Ok(held == 1)
    }
}

/// [`Queue::record_outcomes`](crate::store::Queue::record_outcomes) in this store.
pub(super) fn record(
    store: &PostgresState,
    lease: &LeaseToken,
    attempts: &[AttemptRecord],
    health: Option<&HealthChange>,
) -> anyhow::Result<Recorded> {
    let columns = OutcomeColumns::of(attempts);
    let lease = lease.clone();
    let expired: Vec<AttemptRecord> = attempts
        .iter()
        .filter(|record| record.next == RequestState::Expired)
        .cloned()
        .collect();
    let health = health.cloned();
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        if expired.is_empty() && health.is_none() {
            // The common case: one statement in a transaction that does not wait for the
            // WAL flush, sent with its BEGIN and COMMIT in one round trip (pipelined).
            return Ok(if columns.write_unsynced(&client, &trips, &lease).await? {
                Recorded::Written { expired_events: 0 }
            } else {
                Recorded::Fenced
            });
        }
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        if !columns.write(&db, &lease).await? {
            return Ok(Recorded::Fenced);
        }
        let (mut expired_requests, mut expired_events) = (0, 0);
        for record in &expired {
            let row = db
                .query_one(
                    "SELECT event_count, created_at_ms FROM sender_requests WHERE id = $1",
                    &[&record.request_id],
                )
                .await?;
            let (events, created_ms): (i64, i64) = (row.get(0), row.get(1));
            let reason = retention_reason(record, created_ms);
            let now_ms = record.started_at_ms.saturating_add(record.latency_ms);
            let (requests, more_events) =
                expire_webhook(&db, lease.webhook_id.as_str(), &reason, now_ms).await?;
            expired_requests += 1 + requests;
            expired_events += u64::try_from(events).unwrap_or(0) + more_events;
        }
        if let Some(change) = &health {
            super::outbox::write_health(
                &db,
                &lease.webhook_id,
                change,
                (expired_requests, expired_events),
            )
            .await?;
        }
        // Synced (the session default): a change of health is rare, and the notifications it
        // queued must not be lost once the outcome that made them is acted on.
        transaction.commit().await.context("committing attempts")?;
        Ok(Recorded::Written { expired_events })
    })
}

/// [`Queue::give_up`](crate::store::Queue::give_up) in this store.
pub(super) fn give_up(
    store: &PostgresState,
    webhook_id: &WebhookId,
    reason: &str,
    now_ms: i64,
) -> anyhow::Result<u64> {
    let (webhook_id, reason) = (webhook_id.as_str().to_owned(), reason.to_owned());
    store.call(move |pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let (_, expired_events) =
            expire_webhook(&Db::new(&transaction, &trips), &webhook_id, &reason, now_ms).await?;
        transaction
            .commit()
            .await
            .context("committing the expiry")?;
        Ok(expired_events)
    })
}

/// Disables a webhook whose retention ended and expires its pending requests and staged
/// events, inside the caller's transaction. Gives the numbers of requests and events expired.
pub(super) async fn expire_webhook<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    reason: &str,
    now_ms: i64,
) -> anyhow::Result<(u64, u64)> {
    db.execute(
        "UPDATE sender_webhooks SET status = 'disabled', disabled_reason = $2, updated_at_ms = $3
         WHERE id = $1",
        &[&webhook_id, &reason, &now_ms],
    )
    .await?;
    let staged = staged_events(db, webhook_id).await?;
    requests_from_staged(db, webhook_id, staged, usize::MAX, now_ms, "expired").await?;
    let row = db
        .query_one(
            "WITH gone AS (
                 UPDATE sender_requests SET state = 'expired', finished_at_ms = $2
                 WHERE webhook_id = $1
                   AND (state = 'pending' OR (state = 'expired' AND finished_at_ms IS NULL))
                 RETURNING event_count)
             SELECT count(*), COALESCE(SUM(event_count), 0)::BIGINT FROM gone",
            &[&webhook_id, &now_ms],
        )
        .await?;
    let (requests, events): (i64, i64) = (row.get(0), row.get(1));
    Ok((
        u64::try_from(requests).unwrap_or(0),
        u64::try_from(events).unwrap_or(0),
    ))
}
