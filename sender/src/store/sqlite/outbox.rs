//! Each webhook's health, written with the outcomes that change it, and the operator's
//! notifications: queued in that same transaction, claimed and sent in order.

use anyhow::Context as _;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::connection::SqliteState;
use crate::registry::WebhookId;
use crate::store::recovery::{with_expired_counts, FINISHED_NOTIFICATIONS_KEPT_MS};
use crate::store::{
    notification_body, ClaimedNotification, HealthChange, NotificationKind, NotificationView,
};

/// Stores `change` (the webhook's health and its notices) inside the transaction that records
/// the outcomes; a disable's notice gets `expired` (requests, events).
pub(super) fn write_health(
    transaction: &Transaction<'_>,
    webhook_id: &WebhookId,
    change: &HealthChange,
    expired: (u64, u64),
) -> anyhow::Result<()> {
    transaction
        .prepare_cached(
            "INSERT INTO webhook_health (webhook_id, consecutive_failures, state, since_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (webhook_id) DO UPDATE SET consecutive_failures = excluded.consecutive_failures,
                 state = excluded.state, since_ms = excluded.since_ms",
        )?
        .execute(params![
            webhook_id.as_str(),
            change.health.consecutive_failures,
            change.health.state.as_str(),
            change.health.since_ms
        ])?;
    for notice in &change.notices {
        let mut notice = notice.clone();
        if notice.kind == NotificationKind::Disabled {
            notice.detail = with_expired_counts(&notice.detail, webhook_id, expired.0, expired.1);
        }
        transaction
            .prepare_cached(
                "INSERT INTO notifications (msg_id, webhook_id, kind, body, created_at_ms, state,
                     next_attempt_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?5)",
            )?
            .execute(params![
                crate::registry::new_msg_id(),
                webhook_id.as_str(),
                notice.kind.as_str(),
                notification_body(webhook_id, &notice),
                notice.at_ms
            ])?;
    }
    Ok(())
}

/// [`Outbox::claim_notification`](crate::store::Outbox::claim_notification) in this store.
pub(super) fn claim_notification(
    store: &SqliteState,
    owner: &str,
    now_ms: i64,
    claim_ms: i64,
) -> anyhow::Result<Option<ClaimedNotification>> {
    let mut connection = store.lock();
    // A look first, without the write lock: usually nothing is pending.
    let pending: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE state = 'pending')",
        [],
        |row| row.get(0),
    )?;
    if !pending {
        return Ok(None);
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = transaction
        .query_row(
            "SELECT id, msg_id, body, attempts, created_at_ms, next_attempt_at_ms, claimed_by,
                 claimed_until_ms
             FROM notifications WHERE state = 'pending' ORDER BY id LIMIT 1",
            [],
            |row| {
                Ok((
                    ClaimedNotification {
                        id: row.get(0)?,
                        msg_id: row.get(1)?,
                        body: row.get(2)?,
                        attempts: row.get(3)?,
                        created_at_ms: row.get(4)?,
                    },
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, i64>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((claimed, due_ms, holder, held_until_ms)) = head else {
        return Ok(None);
    };
    let held_by_other = held_until_ms > now_ms && holder.as_deref() != Some(owner);
    if due_ms > now_ms || held_by_other {
        return Ok(None);
    }
    transaction.execute(
        "UPDATE notifications SET claimed_by = ?2, claimed_until_ms = ?3 WHERE id = ?1",
        params![claimed.id, owner, now_ms.saturating_add(claim_ms)],
    )?;
    transaction.commit().context("committing the claim")?;
    Ok(Some(claimed))
}

/// [`Outbox::notification_attempted`](crate::store::Outbox::notification_attempted) in this
/// store; a sent notification also prunes those finished long ago.
pub(super) fn notification_attempted(
    store: &SqliteState,
    id: i64,
    owner: &str,
    now_ms: i64,
    error: Option<&str>,
    next_attempt_at_ms: Option<i64>,
) -> anyhow::Result<bool> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = match (error, next_attempt_at_ms) {
        (None, _) => "sent",
        (Some(_), Some(_)) => "pending",
        (Some(_), None) => "dropped",
    };
    let finished_at = (state != "pending").then_some(now_ms);
    let changed = transaction.execute(
        "UPDATE notifications SET state = ?3, attempts = attempts + 1, last_error = ?4,
             next_attempt_at_ms = COALESCE(?5, next_attempt_at_ms), finished_at_ms = ?6,
             claimed_by = NULL, claimed_until_ms = 0
         WHERE id = ?1 AND claimed_by = ?2 AND state = 'pending'",
        params![id, owner, state, error, next_attempt_at_ms, finished_at],
    )?;
    if state != "pending" {
        transaction.execute(
            "DELETE FROM notifications WHERE state <> 'pending' AND finished_at_ms < ?1",
            [now_ms.saturating_sub(FINISHED_NOTIFICATIONS_KEPT_MS)],
        )?;
    }
    transaction
        .commit()
        .context("committing the notification's attempt")?;
    Ok(changed == 1)
}

/// [`Outbox::notifications`](crate::store::Outbox::notifications) in this store.
pub(super) fn notifications(
    store: &SqliteState,
    limit: usize,
) -> anyhow::Result<Vec<NotificationView>> {
    let connection = store.lock();
    let rows = connection
        .prepare_cached(
            "SELECT msg_id, webhook_id, kind, state, attempts, body FROM notifications
             ORDER BY id DESC LIMIT ?1",
        )?
        .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(NotificationView {
                msg_id: row.get(0)?,
                webhook_id: row.get(1)?,
                kind: row.get(2)?,
                state: row.get(3)?,
                attempts: row.get(4)?,
                body: String::from_utf8_lossy(&row.get::<_, Vec<u8>>(5)?).into_owned(),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
