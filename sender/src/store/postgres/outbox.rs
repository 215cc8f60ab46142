//! Each webhook's health, written with the outcomes that change it, and the operator's
//! notifications: queued in that same transaction, claimed and sent in order by whichever
//! process claims the head first.

use anyhow::Context as _;
use deadpool_postgres::GenericClient;

use super::connection::{Db, PostgresState};
use crate::registry::WebhookId;
use crate::store::recovery::{with_expired_counts, FINISHED_NOTIFICATIONS_KEPT_MS};
use crate::store::{
    notification_body, ClaimedNotification, HealthChange, NotificationKind, NotificationView,
};

/// Stores `change` (the webhook's health and its notices) inside the transaction that records
/// the outcomes; a disable's notice gets `expired` (requests, events).
pub(super) async fn write_health<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &WebhookId,
    change: &HealthChange,
    expired: (u64, u64),
) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO sender_webhook_health (webhook_id, consecutive_failures, state, since_ms)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (webhook_id) DO UPDATE SET
             consecutive_failures = excluded.consecutive_failures, state = excluded.state,
             since_ms = excluded.since_ms",
        &[
            &webhook_id.as_str(),
            &i64::from(change.health.consecutive_failures),
            &change.health.state.as_str(),
            &change.health.since_ms,
        ],
    )
    .await?;
    for notice in &change.notices {
        let mut notice = notice.clone();
        if notice.kind == NotificationKind::Disabled {
            notice.detail = with_expired_counts(&notice.detail, webhook_id, expired.0, expired.1);
        }
        db.execute(
            "INSERT INTO sender_notifications (msg_id, webhook_id, kind, body, created_at_ms,
                 state, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $5)",
            &[
                &crate::registry::new_msg_id(),
                &webhook_id.as_str(),
                &notice.kind.as_str(),
                &notification_body(webhook_id, &notice),
                &notice.at_ms,
            ],
        )
        .await?;
    }
    Ok(())
}

/// [`Outbox::claim_notification`](crate::store::Outbox::claim_notification) in this store:
/// one statement that locks the head (waiting for another process's claim statement, never
/// for a send), and claims it only when it is due and not claimed by a live other claim.
pub(super) fn claim_notification(
    store: &PostgresState,
    owner: &str,
    now_ms: i64,
    claim_ms: i64,
) -> anyhow::Result<Option<ClaimedNotification>> {
    let owner = owner.to_owned();
    let until_ms = now_ms.saturating_add(claim_ms);
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let row = Db::new(&client, &trips)
            .query_opt(
                "WITH head AS (
                     SELECT id FROM sender_notifications WHERE state = 'pending'
                     ORDER BY id LIMIT 1 FOR UPDATE)
                 UPDATE sender_notifications n SET claimed_by = $1, claimed_until_ms = $3
                 FROM head
                 WHERE n.id = head.id AND n.next_attempt_at_ms <= $2
                   AND (n.claimed_until_ms <= $2 OR n.claimed_by = $1)
                 RETURNING n.id, n.msg_id, n.body, n.attempts, n.created_at_ms",
                &[&owner, &now_ms, &until_ms],
            )
            .await?;
        Ok(row.map(|row| ClaimedNotification {
            id: row.get(0),
            msg_id: row.get(1),
            body: row.get(2),
            attempts: u32::try_from(row.get::<_, i64>(3)).unwrap_or(u32::MAX),
            created_at_ms: row.get(4),
        }))
    })
}

/// [`Outbox::notification_attempted`](crate::store::Outbox::notification_attempted) in this
/// store; a sent notification also prunes those finished long ago.
pub(super) fn notification_attempted(
    store: &PostgresState,
    id: i64,
    owner: &str,
    now_ms: i64,
    error: Option<&str>,
    next_attempt_at_ms: Option<i64>,
) -> anyhow::Result<bool> {
    let owner = owner.to_owned();
    let error = error.map(str::to_owned);
    let state = match (&error, next_attempt_at_ms) {
        (None, _) => "sent",
        (Some(_), Some(_)) => "pending",
        (Some(_), None) => "dropped",
    };
    let finished_at = (state != "pending").then_some(now_ms);
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let changed = db
            .execute(
                "UPDATE sender_notifications SET state = $3, attempts = attempts + 1,
                     last_error = $4, next_attempt_at_ms = COALESCE($5, next_attempt_at_ms),
                     finished_at_ms = $6, claimed_by = NULL, claimed_until_ms = 0
                 WHERE id = $1 AND claimed_by = $2 AND state = 'pending'",
                &[
                    &id,
                    &owner,
                    &state,
                    &error,
                    &next_attempt_at_ms,
                    &finished_at,
                ],
            )
            .await
            .context("recording the notification's attempt")?;
        if state != "pending" {
            db.execute(
                "DELETE FROM sender_notifications WHERE state <> 'pending' AND finished_at_ms < $1",
                &[&now_ms.saturating_sub(FINISHED_NOTIFICATIONS_KEPT_MS)],
            )
            .await?;
        }
        Ok(changed == 1)
    })
}

/// [`Outbox::notifications`](crate::store::Outbox::notifications) in this store.
pub(super) fn notifications(
    store: &PostgresState,
    limit: usize,
) -> anyhow::Result<Vec<NotificationView>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    store.call(move |pool, trips| async move {
        let client = pool.get().await?;
        let rows = Db::new(&client, &trips)
            .query(
                "SELECT msg_id, webhook_id, kind, state, attempts, body FROM sender_notifications
                 ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| NotificationView {
                msg_id: row.get(0),
                webhook_id: row.get(1),
                kind: row.get(2),
                state: row.get(3),
                attempts: row.get(4),
                body: String::from_utf8_lossy(row.get::<_, &[u8]>(5)).into_owned(),
            })
            .collect())
    })
}
