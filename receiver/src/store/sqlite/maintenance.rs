//! Pruning and erasure on the SQLite store: the batches the listener's writer runs between its
//! group commits, and [`SqliteMaintenance`], the same work on a connection of its own for
//! `receiver prune` and `receiver erase`.
//!
//! A request's events are found through its body: each event's `(account_id, event_id)` key,
//! with the request's id (`events_by_request`) to tell the events it stored from duplicates;
//! the body is read with the listener's parser, so it gives the same keys the listener stored.
//! Foreign keys are not enforced inside these transactions (SQLite would look for a deleted
//! request's events once more): the events go first.
//!
//! What a batch did to the stored keys ([`KeyChanges`]) goes back to the listener's writer,
//! which keeps its dedupe keys in memory (`super::keys`) in step: a removed event's key stays
//! there as a tombstone's while its window lasts, and leaves with it. The commands' batches
//! (another process) need not tell: the listener confirms every key it finds by reading the
//! store, so a row they removed is simply not confirmed.

use std::path::Path;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::keys::{KeyChanges, RemovedKey};
use crate::erasure::{BodyEvents, ErasureSelector};
use crate::store::maintenance::{
    held_by_forwarding, Erased, ErasureTargets, Maintenance, PruneBatch, PruneCursor, PruneRule,
    Pruned, PRUNE_BATCH,
};

/// How many bodies one read of an erasure's search takes.
const SEARCH_CHUNK: i64 = 1000;

/// Whether a transaction's commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// The listener's prunes: the next synced commit takes them to disk (atomic all the same;
    /// a prune lost in a crash is done again).
    Deferred,
    /// The commands: the removal is on disk when they report it.
    Synced,
}

/// Runs `work` in one write transaction with foreign keys off and the given durability, and
/// puts both settings back whatever happened (the writer's commits need them).
fn in_write_transaction<T>(
    connection: &mut Connection,
    durability: Durability,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    // Both pragmas are no-ops inside a transaction, so they are set around it.
    connection.pragma_update(None, "foreign_keys", false)?;
    if durability == Durability::Deferred {
        connection.pragma_update(None, "synchronous", "NORMAL")?;
    }
    let result = (|| -> rusqlite::Result<T> {
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = work(&transaction)?;
        transaction.commit()?;
        Ok(value)
    })();
    let restored = connection
        .pragma_update(None, "synchronous", "FULL")
        .and_then(|()| connection.pragma_update(None, "foreign_keys", true));
    let value = result?;
    restored?;
    Ok(value)
}

/// One batch of a prune (see `Store::prune_batch`), in one transaction on `connection`; a dry
/// run only reads. What it did to the stored keys is added to `changes` (valid once it
/// returned `Ok`).
pub(super) fn prune_batch(
    connection: &mut Connection,
    rule: PruneRule,
    cursor: PruneCursor,
    durability: Durability,
    dry_run: bool,
    changes: &mut KeyChanges,
) -> rusqlite::Result<PruneBatch> {
    let started = Instant::now();
    let mut batch = if dry_run {
        let transaction = connection.transaction()?;
        let batch = prune_within(&transaction, rule, cursor, true, changes)?;
        transaction.rollback()?;
        batch
    } else {
        in_write_transaction(connection, durability, |transaction| {
            prune_within(transaction, rule, cursor, false, changes)
        })?
    };
    batch.held = started.elapsed();
    Ok(batch)
}

/// The work of [`prune_batch`] inside its transaction.
fn prune_within(
    connection: &Connection,
    rule: PruneRule,
    cursor: PruneCursor,
    dry_run: bool,
    changes: &mut KeyChanges,
) -> rusqlite::Result<PruneBatch> {
    let limit = PRUNE_BATCH as i64;
    let mut pruned = Pruned::default();
    let mut more = false;
    if !dry_run {
        let expired: Vec<(i64, String)> = connection
            .prepare_cached(
                "DELETE FROM dedupe_keys WHERE id IN (
                     SELECT id FROM dedupe_keys WHERE received_at_ms < ?1
                     ORDER BY received_at_ms LIMIT ?2)
                 RETURNING account_id, event_id",
            )?
            .query_map(params![rule.keys_before_ms, limit], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        pruned.keys_expired = expired.len() as u64;
        changes.expired.extend(expired);
        more |= pruned.keys_expired == PRUNE_BATCH as u64;
    }
    let mut next = cursor;
    let Some(before_ms) = rule.received_before_ms else {
        return Ok(PruneBatch {
            pruned,
            next,
            more,
            held: std::time::Duration::ZERO,
        });
    };

    // Refused requests: ids follow arrival, so the ones to prune are a prefix.
    let refused: Vec<(i64, i64)> = connection
        .prepare_cached(
            "SELECT id, received_at_ms FROM refused_requests WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![cursor.refused, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let old: Vec<i64> = refused
        .iter()
        .take_while(|(_, received)| *received < before_ms)
        .map(|(id, _)| *id)
        .collect();
    if let Some(last) = old.last() {
        if !dry_run {
            connection
                .prepare_cached("DELETE FROM refused_requests WHERE id > ?1 AND id <= ?2")?
                .execute(params![cursor.refused, last])?;
        }
        pruned.refused = old.len() as u64;
        next.refused = *last;
    }
    more |= old.len() == PRUNE_BATCH;

    // Accepted requests, oldest first. Ids follow commit order and a request commits within
    // its body timeout of its receipt, so the first one not old enough ends the pass; one held
    // by its forwarding is passed over (the next pass looks at it again).
    let sql = format!(
        "SELECT r.id, r.received_at_ms, {} FROM requests r
         WHERE r.id > ?1 ORDER BY r.id LIMIT ?2",
        held_by_forwarding("forward_jobs")
    );
    // Read first, then remove: rows are not deleted under a statement still reading them.
    // Bodies are read only for the requests that go (a held one may be passed over often).
    let rows: Vec<(i64, i64, bool)> = connection
        .prepare_cached(&sql)?
        .query_map(params![cursor.requests, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let looked_at = rows.len();
    let mut reached_the_end = false;
    for (id, received_at_ms, held) in rows {
        if received_at_ms >= before_ms {
            reached_the_end = true;
            break;
        }
        next.requests = id;
        if held {
            continue;
        }
        let body: Vec<u8> = connection
            .prepare_cached("SELECT body FROM requests WHERE id = ?1")?
            .query_row([id], |row| row.get(0))?;
        let request = StoredRequest {
            id,
            received_at_ms,
            body: &body,
        };
        let removed = remove_request(
            connection,
            &request,
            None,
            rule.keys_before_ms,
            dry_run,
            changes,
        )?;
        pruned.requests += 1;
        pruned.events += removed.events;
    }
    more |= looked_at == PRUNE_BATCH && !reached_the_end;
    Ok(PruneBatch {
        pruned,
        next,
        more,
        held: std::time::Duration::ZERO,
    })
}

/// A stored request about to be removed.
struct StoredRequest<'b> {
    id: i64,
    received_at_ms: i64,
    body: &'b [u8],
}

/// Removes (or, dry, counts) one request, the events it stored and its forward jobs, writing
/// the dedupe keys of its events when it was received at or after `keys_before_ms`. The counts
/// are those of [`Erased`]: `other_events` are the events `selector` does not name.
fn remove_request(
    connection: &Connection,
    request: &StoredRequest<'_>,
    selector: Option<&ErasureSelector>,
    keys_before_ms: i64,
    dry_run: bool,
    changes: &mut KeyChanges,
) -> rusqlite::Result<Erased> {
    let mut removed = Erased {
        requests: 1,
        ..Erased::default()
    };
    let keep_keys = request.received_at_ms >= keys_before_ms;
    match BodyEvents::read(request.body, selector) {
        Some(body) => {
            // By the key and the request's id: an event of the body that was a duplicate
            // belongs to another request (or, repeated in the body, went with its first copy)
            // and is not this request's.
            let mut remove = connection.prepare_cached(if dry_run {
                "SELECT id FROM events WHERE account_id = ?1 AND event_id = ?2 AND request_id = ?3"
            } else {
                "DELETE FROM events WHERE account_id = ?1 AND event_id = ?2 AND request_id = ?3
                 RETURNING id"
            })?;
            let mut keep = connection.prepare_cached(
                "INSERT INTO dedupe_keys (account_id, event_id, received_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, event_id) DO NOTHING",
            )?;
            for event in &body.events {
                let found: Option<i64> = remove
                    .query_row(
                        params![body.account_id, event.event_id, request.id],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(row) = found else {
                    continue;
                };
                if !dry_run {
                    if keep_keys {
                        keep.execute(params![
                            body.account_id,
                            event.event_id,
                            request.received_at_ms
                        ])?;
                    }
                    changes.removed.push(RemovedKey {
                        account_id: body.account_id,
                        event_id: event.event_id.to_string(),
                        row,
                        tombstone: keep_keys,
                    });
                }
                removed.events += 1;
                if !event.named {
                    removed.other_events += 1;
                }
            }
        }
        None => {
            // A stored body is always an envelope (it was read to be stored); should one not
            // read, its events are found by scanning, which is slow but removes them all.
            tracing::warn!(
                request = request.id,
                "a stored body did not read as an envelope; its events are looked for one by one"
            );
            let keys: Vec<(i64, String, i64)> = connection
                .prepare_cached(
                    "SELECT account_id, event_id, id FROM events WHERE request_id = ?1",
                )?
                .query_map([request.id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            removed.events = keys.len() as u64;
            removed.other_events = if selector.is_some() {
                removed.events
            } else {
                0
            };
            if !dry_run {
                connection
                    .prepare_cached("DELETE FROM events WHERE request_id = ?1")?
                    .execute([request.id])?;
                if keep_keys {
                    let mut keep = connection.prepare_cached(
                        "INSERT INTO dedupe_keys (account_id, event_id, received_at_ms)
                         VALUES (?1, ?2, ?3) ON CONFLICT (account_id, event_id) DO NOTHING",
                    )?;
                    for (account_id, event_id, _) in &keys {
                        keep.execute(params![account_id, event_id, request.received_at_ms])?;
                    }
                }
                changes
                    .removed
                    .extend(
                        keys.into_iter()
                            .map(|(account_id, event_id, row)| RemovedKey {
                                account_id,
                                event_id,
                                row,
                                tombstone: keep_keys,
                            }),
                    );
            }
        }
    }
    if !dry_run {
        // Foreign keys are off here (see `in_write_transaction`), so the attempts' cascade
        // is done by hand.
        connection
            .prepare_cached(
                "DELETE FROM forward_attempts
                 WHERE job_id IN (SELECT id FROM forward_jobs WHERE request_id = ?1)",
            )?
            .execute([request.id])?;
        connection
            .prepare_cached("DELETE FROM forward_jobs WHERE request_id = ?1")?
            .execute([request.id])?;
        connection
            .prepare_cached("DELETE FROM requests WHERE id = ?1")?
            .execute([request.id])?;
    }
    Ok(removed)
}

/// Reads `table`'s bodies in chunks of short reads, oldest first, and gives the ids of those
/// that carry an event `selector` names (only requests of `account` when given).
fn search(
    connection: &Connection,
    table: &str,
    account: Option<i64>,
    selector: &ErasureSelector,
) -> rusqlite::Result<Vec<i64>> {
    let filter = if account.is_some() {
        " AND account_id = ?3"
    } else {
        ""
    };
    let sql = format!("SELECT id, body FROM {table} WHERE id > ?1{filter} ORDER BY id LIMIT ?2");
    let mut statement = connection.prepare(&sql)?;
    let mut found = Vec::new();
    let mut after = 0_i64;
    loop {
        let chunk: Vec<(i64, Vec<u8>)> = match account {
            Some(account) => statement
                .query_map(params![after, SEARCH_CHUNK, account], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?,
            None => statement
                .query_map(params![after, SEARCH_CHUNK], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?,
        };
        let Some((last, _)) = chunk.last() else {
            return Ok(found);
        };
        after = *last;
        found.extend(chunk.iter().filter_map(|(id, body)| {
            BodyEvents::read(body, Some(selector))
                .filter(BodyEvents::any_named)
                .map(|_| *id)
        }));
    }
}

/// `receiver prune` and `receiver erase` on a SQLite store, on a connection of their own
/// (synced commits; the listener's writer waits for each short transaction).
pub struct SqliteMaintenance {
    connection: Connection,
}

impl SqliteMaintenance {
    /// Opens the store at `path`, which must exist, bringing it to this build's layout.
    ///
    /// # Errors
    /// No store there, or one of another layout.
    pub fn open(path: &Path) -> anyhow::Result<SqliteMaintenance> {
        use anyhow::Context as _;
        if !path.exists() {
            anyhow::bail!("no store at {} (give --store sqlite:PATH)", path.display());
        }
        let connection = super::connection::open_writer(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        Ok(SqliteMaintenance { connection })
    }
}

impl Maintenance for SqliteMaintenance {
    fn prune_batch(
        &mut self,
        rule: PruneRule,
        cursor: PruneCursor,
        dry_run: bool,
    ) -> anyhow::Result<PruneBatch> {
        // Another process than the listener's: its key changes are not told (see above).
        Ok(prune_batch(
            &mut self.connection,
            rule,
            cursor,
            Durability::Synced,
            dry_run,
            &mut KeyChanges::default(),
        )?)
    }

    fn find_erasure(&mut self, selector: &ErasureSelector) -> anyhow::Result<ErasureTargets> {
        Ok(ErasureTargets {
            requests: search(&self.connection, "requests", selector.account(), selector)?,
            refused: search(&self.connection, "refused_requests", None, selector)?,
        })
    }

    fn erase_batch(
        &mut self,
        selector: &ErasureSelector,
        targets: &ErasureTargets,
        keys_before_ms: i64,
        dry_run: bool,
    ) -> anyhow::Result<Erased> {
        let work = |connection: &Connection| -> rusqlite::Result<Erased> {
            let mut erased = Erased::default();
            for id in &targets.requests {
                let row: Option<(i64, Vec<u8>)> = connection
                    .prepare_cached("SELECT received_at_ms, body FROM requests WHERE id = ?1")?
                    .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                // Gone meanwhile (pruned, or erased by another command).
                let Some((received_at_ms, body)) = row else {
                    continue;
                };
                let request = StoredRequest {
                    id: *id,
                    received_at_ms,
                    body: &body,
                };
                erased += remove_request(
                    connection,
                    &request,
                    Some(selector),
                    keys_before_ms,
                    dry_run,
                    &mut KeyChanges::default(),
                )?;
            }
            for id in &targets.refused {
                let gone = if dry_run {
                    connection
                        .prepare_cached("SELECT COUNT(*) FROM refused_requests WHERE id = ?1")?
                        .query_row([id], |row| row.get::<_, i64>(0))?
                } else {
                    connection
                        .prepare_cached("DELETE FROM refused_requests WHERE id = ?1")?
                        .execute([id])? as i64
                };
                erased.refused += u64::try_from(gone).unwrap_or(0);
            }
            Ok(erased)
        };
        if dry_run {
            let transaction = self.connection.transaction()?;
            let erased = work(&transaction)?;
            transaction.rollback()?;
            Ok(erased)
        } else {
            Ok(in_write_transaction(
                &mut self.connection,
                Durability::Synced,
                work,
            )?)
        }
    }
}
