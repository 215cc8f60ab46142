//! Leases: renewed by their holder or read by a waiting worker in one statement, taken under
//! the row's lock when free, given back keeping their fence number.

use tokio_postgres::Row;

use super::connection::{Db, PostgresState};
use crate::lease::HeldLease;
use crate::registry::WebhookId;
use crate::store::lease_row::{own_pid, process_identity_space, LeaseRow};
use crate::store::Lease;

/// [`Queue::try_lease`](crate::store::Queue::try_lease) in this store.
pub(super) fn try_lease(
    store: &PostgresState,
    webhook_id: &WebhookId,
    owner: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> anyhow::Result<Lease> {
    let (webhook_id, owner) = (webhook_id.as_str().to_owned(), owner.to_owned());
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    store.call(move |pool, trips| async move {
        let mut client = pool.get().await?;
        {
            // One statement for the two usual cases. The holder renews (its fence stays);
            // a worker waiting for another's lease reads the row, which neither waits for
            // nor holds up the holder. (The SELECT sees the row as it was before the
            // UPDATE: the renewal is told by `renewed`.)
            let db = Db::new(&client, &trips);
            let row = db
                .query_opt(
                    "WITH renewed AS (
                         UPDATE sender_leases SET expires_at_ms = $3
                         WHERE webhook_id = $1 AND owner = $2 RETURNING fence)
                     SELECT (SELECT fence FROM renewed), owner, pid, host, fence,
                            expires_at_ms
                     FROM sender_leases WHERE webhook_id = $1",
                    &[&webhook_id, &owner, &expires_at_ms],
                )
                .await?;
            match row {
                Some(row) => {
                    if let Some(fence) = row.get::<_, Option<i64>>(0) {
                        return Ok(Lease::Acquired { fence });
                    }
                    if let Some(held) = lease_row(&row, 1).held_against(&owner, now_ms) {
                        return Ok(Lease::HeldBy(held));
                    }
                }
                None => {
                    db.execute(
                        "INSERT INTO sender_leases
                             (webhook_id, owner, pid, host, fence, expires_at_ms)
                         VALUES ($1, '', 0, '', 0, 0) ON CONFLICT (webhook_id) DO NOTHING",
                        &[&webhook_id],
                    )
                    .await?;
                }
            }
        }
        // The lease looks free: take it under the row's lock, looking again.
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        let Some(row) = db
            .query_opt(
                "SELECT owner, pid, host, fence, expires_at_ms FROM sender_leases
                 WHERE webhook_id = $1 FOR UPDATE SKIP LOCKED",
                &[&webhook_id],
            )
            .await?
        else {
            // Another worker is taking it (or writing under it) right now. Whoever takes
            // it holds it until about `expires_at_ms`; the waiter looks again before that
            // anyway (one poll interval), and learns the holder's name then.
            return Ok(Lease::HeldBy(HeldLease {
                owner: "another worker".to_owned(),
                expires_at_ms,
            }));
        };
        let row = lease_row(&row, 0);
        let fence = row.fence_for(&owner);
        if let Some(held) = row.held_against(&owner, now_ms) {
            return Ok(Lease::HeldBy(held));
        }
        db.execute(
            "UPDATE sender_leases SET owner = $2, pid = $3, host = $4, fence = $5,
                 expires_at_ms = $6 WHERE webhook_id = $1",
            &[
                &webhook_id,
                &owner,
                &own_pid(),
                &process_identity_space(),
                &fence,
                &expires_at_ms,
            ],
        )
        .await?;
        transaction.commit().await?;
        Ok(Lease::Acquired { fence })
    })
}

/// [`Queue::release_lease`](crate::store::Queue::release_lease) in this store.
pub(super) fn release_lease(
    store: &PostgresState,
    webhook_id: &WebhookId,
    owner: &str,
) -> anyhow::Result<()> {
    let (webhook_id, owner) = (webhook_id.as_str().to_owned(), owner.to_owned());
    store.call(|pool, trips| async move {
        let client = pool.get().await?;
        Db::new(&client, &trips)
            .execute(RELEASE_LEASE, &[&webhook_id, &owner])
            .await?;
        Ok(())
    })
}

/// [`Queue::release_lease_if_idle`](crate::store::Queue::release_lease_if_idle) in this store.
pub(super) fn release_lease_if_idle(
    store: &PostgresState,
    webhook_id: &WebhookId,
    owner: &str,
) -> anyhow::Result<bool> {
    let (webhook_id, owner) = (webhook_id.as_str().to_owned(), owner.to_owned());
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        // Exclusive against the share lock of `enqueue`: see there.
        db.execute(
            "SELECT 1 FROM sender_leases WHERE webhook_id = $1 AND owner = $2 FOR UPDATE",
            &[&webhook_id, &owner],
        )
        .await?;
        let waiting: bool = db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sender_requests
                                WHERE webhook_id = $1 AND state = 'pending')
                     OR EXISTS (SELECT 1 FROM sender_staged_events WHERE webhook_id = $1)",
                &[&webhook_id],
            )
            .await?
            .get(0);
        if waiting {
            return Ok(false);
        }
        db.execute(RELEASE_LEASE, &[&webhook_id, &owner]).await?;
        transaction.commit().await?;
        Ok(true)
    })
}

/// The lease columns `owner, pid, host, fence, expires_at_ms` of `row`, from column `first` on.
pub(super) fn lease_row(row: &Row, first: usize) -> LeaseRow {
    LeaseRow {
        owner: row.get(first),
        pid: row.get(first + 1),
        host: row.get(first + 2),
        fence: row.get(first + 3),
        expires_at_ms: row.get(first + 4),
    }
}

/// Gives a lease up, keeping its row and fence number.
pub(super) const RELEASE_LEASE: &str =
    "UPDATE sender_leases SET owner = '', expires_at_ms = 0 WHERE webhook_id = $1 AND owner = $2";
