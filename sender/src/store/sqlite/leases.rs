//! Leases: read without a lock by a waiting worker, taken or renewed under the write lock when
//! free, given back keeping their fence number.

use rusqlite::{params, Connection, OptionalExtension};

use super::connection::SqliteState;
use crate::registry::WebhookId;
use crate::store::lease_row::{own_pid, process_identity_space, LeaseRow};
use crate::store::Lease;

/// Gives a lease up, keeping its row and fence number (see the `fence` column).
pub(super) const RELEASE_LEASE: &str =
    "UPDATE leases SET owner = '', expires_at_ms = 0 WHERE webhook_id = ?1 AND owner = ?2";

/// [`Queue::try_lease`](crate::store::Queue::try_lease) in this store.
pub(super) fn try_lease(
    store: &SqliteState,
    webhook_id: &WebhookId,
    owner: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> anyhow::Result<Lease> {
    let mut connection = store.lock();
    let read_lease = |connection: &Connection| -> rusqlite::Result<Option<LeaseRow>> {
        connection
            .prepare_cached(
                "SELECT owner, pid, host, fence, expires_at_ms FROM leases
                 WHERE webhook_id = ?1",
            )?
            .query_row([webhook_id.as_str()], |row| {
                Ok(LeaseRow {
                    owner: row.get(0)?,
                    pid: row.get(1)?,
                    host: row.get(2)?,
                    fence: row.get(3)?,
                    expires_at_ms: row.get(4)?,
                })
            })
            .optional()
    };
    // A plain read first (WAL: it never waits for, nor holds up, the holder's writes): a
    // worker waiting for the lease asks once per poll interval, and nearly always finds it
    // still held.
    if let Some(held) = read_lease(&connection)?.and_then(|row| row.held_against(owner, now_ms)) {
        return Ok(Lease::HeldBy(held));
    }
    // IMMEDIATE: take the write lock, then look again, so two processes cannot both see
    // the lease free.
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let fence = match read_lease(&transaction)? {
        None => 1,
        Some(row) => {
            let fence = row.fence_for(owner);
            if let Some(held) = row.held_against(owner, now_ms) {
                return Ok(Lease::HeldBy(held));
            }
            fence
        }
    };
    transaction.execute(
        "INSERT INTO leases (webhook_id, owner, pid, expires_at_ms, host, fence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (webhook_id) DO UPDATE SET owner = ?2, pid = ?3, expires_at_ms = ?4,
             host = ?5, fence = ?6",
        params![
            webhook_id.as_str(),
            owner,
            own_pid(),
            now_ms.saturating_add(ttl_ms),
            process_identity_space(),
            fence
        ],
    )?;
    transaction.commit()?;
    Ok(Lease::Acquired { fence })
}

/// [`Queue::release_lease`](crate::store::Queue::release_lease) in this store.
pub(super) fn release_lease(
    store: &SqliteState,
    webhook_id: &WebhookId,
    owner: &str,
) -> anyhow::Result<()> {
    store
        .lock()
        .execute(RELEASE_LEASE, params![webhook_id.as_str(), owner])?;
    Ok(())
}

/// [`Queue::release_lease_if_idle`](crate::store::Queue::release_lease_if_idle) in this store.
pub(super) fn release_lease_if_idle(
    store: &SqliteState,
    webhook_id: &WebhookId,
    owner: &str,
) -> anyhow::Result<bool> {
    let mut connection = store.lock();
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let waiting: bool = transaction.query_row(
        "SELECT EXISTS (SELECT 1 FROM requests WHERE webhook_id = ?1 AND state = 'pending')
             OR EXISTS (SELECT 1 FROM staged_events WHERE webhook_id = ?1)",
        [webhook_id.as_str()],
        |row| row.get(0),
    )?;
    if waiting {
        return Ok(false);
    }
    transaction.execute(RELEASE_LEASE, params![webhook_id.as_str(), owner])?;
    transaction.commit()?;
    Ok(true)
}
