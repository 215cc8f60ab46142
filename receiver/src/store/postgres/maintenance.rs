//! Pruning and erasure on the shared store: the batches every receiver's pruner runs, and
//! [`PostgresMaintenance`], the same work for `receiver prune` and `receiver erase`.
//!
//! Why each removing transaction first takes `SHARE ROW EXCLUSIVE` on `receiver_events`: a
//! batch statement reads the dedupe keys in its snapshot, taken when it starts, and its
//! `ON CONFLICT` then sees the latest committed rows. Without the lock, a statement that began
//! before a prune committed (no key yet) and reached the conflict check after it (the event
//! row gone) would store the event again. The lock conflicts with the `ROW EXCLUSIVE` every
//! batch statement holds from its start to its commit, so a prune waits for the statements in
//! flight, and the statements that come while it runs wait for its commit and then take a
//! snapshot that holds its keys. The mode also conflicts with itself, so two receivers (or a
//! receiver and `receiver prune`) prune one after the other and never both remove a request.
//! Readers (`events`, the inspector) are not held up. The cost: commits pause for one batch's
//! transaction, a few milliseconds.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context as _;
use common::postgres::DatabaseUrl;
use deadpool_postgres::Object;

use super::schema::prepare_schema;
use crate::erasure::{BodyEvents, ErasureSelector};
use crate::store::maintenance::{
    held_by_forwarding, Erased, ErasureTargets, Maintenance, PruneBatch, PruneCursor, PruneRule,
    Pruned, PRUNE_BATCH,
};

/// How many bodies one read of an erasure's search takes.
const SEARCH_CHUNK: i64 = 1000;

/// The lock of every removing transaction (see the module's documentation), given up after a
/// while (the batch fails, and the next pass tries again) rather than queueing every commit
/// behind a wait that does not end.
const LOCK_EVENTS: &str = "SET LOCAL lock_timeout = '10s';
LOCK TABLE receiver_events IN SHARE ROW EXCLUSIVE MODE";

/// Removes the requests `$1` with the events they stored and their forward jobs, writes the
/// keys of those events whose request was received at or after `$2`, and returns a row per
/// request removed (`id`, NULL) and per event removed (`request_id`, `event_id`). The foreign
/// keys are checked at the end of the statement, when the events are gone.
const REMOVE_REQUESTS: &str = "
WITH gone_events AS (
    DELETE FROM receiver_events WHERE request_id = ANY($1::int8[])
    RETURNING request_id, account_id, event_id, received_at_ms
),
kept_keys AS (
    INSERT INTO receiver_dedupe_keys (account_id, event_id, received_at_ms)
    SELECT account_id, event_id, received_at_ms FROM gone_events
    WHERE received_at_ms >= $2::int8
    ORDER BY account_id, event_id
    ON CONFLICT (account_id, event_id) DO NOTHING
),
gone_jobs AS (
    DELETE FROM receiver_forward_jobs WHERE request_id = ANY($1::int8[])
),
gone_requests AS (
    DELETE FROM receiver_requests WHERE id = ANY($1::int8[]) RETURNING id
)
SELECT request_id, event_id FROM gone_events
UNION ALL SELECT id, NULL FROM gone_requests";

/// What a dry run of [`REMOVE_REQUESTS`] would return.
const WOULD_REMOVE: &str = "
SELECT request_id, event_id FROM receiver_events WHERE request_id = ANY($1::int8[])
UNION ALL SELECT id, NULL FROM receiver_requests WHERE id = ANY($1::int8[])";

/// What [`remove_requests`] removed: how many requests, and `(request_id, event_id)` of each
/// event.
struct Removed {
    requests: u64,
    events: Vec<(i64, String)>,
}

/// Removes (or, dry, finds) the requests `ids` with their events. Counted from what the
/// statement removed, not from `ids`: a request already gone is not counted twice.
async fn remove_requests(
    client: &impl tokio_postgres::GenericClient,
    ids: &[i64],
    keys_before_ms: i64,
    dry_run: bool,
) -> Result<Removed, tokio_postgres::Error> {
    let mut removed = Removed {
        requests: 0,
        events: Vec::new(),
    };
    if ids.is_empty() {
        return Ok(removed);
    }
    let rows = if dry_run {
        client.query(WOULD_REMOVE, &[&ids]).await?
    } else {
        client
            .query(REMOVE_REQUESTS, &[&ids, &keys_before_ms])
            .await?
    };
    for row in &rows {
        match row.get::<_, Option<String>>(1) {
            Some(event_id) => removed.events.push((row.get(0), event_id)),
            None => removed.requests += 1,
        }
    }
    Ok(removed)
}

/// One batch of a prune (see `Store::prune_batch`), in one transaction on `client`; a dry run
/// only reads (and takes no lock).
pub(super) async fn prune_batch(
    client: &mut tokio_postgres::Client,
    rule: PruneRule,
    cursor: PruneCursor,
    dry_run: bool,
) -> Result<PruneBatch, tokio_postgres::Error> {
    let limit = PRUNE_BATCH as i64;
    let transaction = client.transaction().await?;
    if !dry_run {
        transaction.batch_execute(LOCK_EVENTS).await?;
    }
    // Held from here: what a commit may wait for.
    let started = Instant::now();
    let mut pruned = Pruned::default();
    let mut more = false;
    if !dry_run {
        pruned.keys_expired = transaction
            .execute(
                "DELETE FROM receiver_dedupe_keys WHERE id IN (
                     SELECT id FROM receiver_dedupe_keys WHERE received_at_ms < $1
                     ORDER BY received_at_ms LIMIT $2)",
                &[&rule.keys_before_ms, &limit],
            )
            .await?;
        more |= pruned.keys_expired == PRUNE_BATCH as u64;
    }
    let mut next = cursor;
    if let Some(before_ms) = rule.received_before_ms {
        // Refused requests: ids follow arrival (near enough), so those to prune are a prefix.
        let refused = transaction
            .query(
                "SELECT id, received_at_ms FROM receiver_refused_requests WHERE id > $1
                 ORDER BY id LIMIT $2",
                &[&cursor.refused, &limit],
            )
            .await?;
        let old: Vec<i64> = refused
            .iter()
            .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)))
            .take_while(|(_, received)| *received < before_ms)
            .map(|(id, _)| id)
            .collect();
        if let Some(last) = old.last() {
            if !dry_run {
                transaction
                    .execute(
                        "DELETE FROM receiver_refused_requests WHERE id > $1 AND id <= $2",
                        &[&cursor.refused, last],
                    )
                    .await?;
            }
            pruned.refused = old.len() as u64;
            next.refused = *last;
        }
        more |= old.len() == PRUNE_BATCH;

        // Accepted requests, oldest first; the first one not old enough ends the pass, one
        // held by its forwarding is passed over.
        let rows = transaction
            .query(
                &format!(
                    "SELECT r.id, r.received_at_ms, {} FROM receiver_requests r
                     WHERE r.id > $1 ORDER BY r.id LIMIT $2",
                    held_by_forwarding("receiver_forward_jobs")
                ),
                &[&cursor.requests, &limit],
            )
            .await?;
        let mut prune = Vec::new();
        let mut reached_the_end = false;
        for row in &rows {
            let id: i64 = row.get(0);
            let received_at_ms: i64 = row.get(1);
            if received_at_ms >= before_ms {
                reached_the_end = true;
                break;
            }
            next.requests = id;
            let held: bool = row.get(2);
            if !held {
                prune.push(id);
            }
        }
        let removed = remove_requests(&transaction, &prune, rule.keys_before_ms, dry_run).await?;
        pruned.requests = removed.requests;
        pruned.events = removed.events.len() as u64;
        more |= rows.len() == PRUNE_BATCH && !reached_the_end;
    }
    if dry_run {
        transaction.rollback().await?;
    } else {
        transaction.commit().await?;
    }
    Ok(PruneBatch {
        pruned,
        next,
        more,
        held: started.elapsed(),
    })
}

/// Reads `table`'s bodies in chunks, oldest first, and gives the ids of those that carry an
/// event `selector` names (only requests of `account` when given).
async fn search(
    client: &impl tokio_postgres::GenericClient,
    table: &str,
    account: Option<i64>,
    selector: &ErasureSelector,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let filter = if account.is_some() {
        " AND account_id = $3"
    } else {
        ""
    };
    let sql = format!("SELECT id, body FROM {table} WHERE id > $1{filter} ORDER BY id LIMIT $2");
    let statement = client.prepare(&sql).await?;
    let mut found = Vec::new();
    let mut after = 0_i64;
    loop {
        let rows = match &account {
            Some(account) => {
                client
                    .query(&statement, &[&after, &SEARCH_CHUNK, account])
                    .await?
            }
            None => client.query(&statement, &[&after, &SEARCH_CHUNK]).await?,
        };
        let Some(last) = rows.last() else {
            return Ok(found);
        };
        after = last.get(0);
        found.extend(rows.iter().filter_map(|row| {
            let body: &[u8] = row.get(1);
            BodyEvents::read(body, Some(selector))
                .filter(BodyEvents::any_named)
                .map(|_| row.get::<_, i64>(0))
        }));
    }
}

/// Removes (or, dry, counts) one batch of an erasure in one transaction on `client`.
async fn erase_batch(
    client: &mut tokio_postgres::Client,
    selector: &ErasureSelector,
    targets: &ErasureTargets,
    keys_before_ms: i64,
    dry_run: bool,
) -> Result<Erased, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    if !dry_run {
        transaction.batch_execute(LOCK_EVENTS).await?;
    }
    // Read again inside the transaction: what is gone meanwhile is not counted, and the
    // bodies say which events the selector names.
    let rows = transaction
        .query(
            "SELECT id, body FROM receiver_requests WHERE id = ANY($1::int8[])",
            &[&targets.requests],
        )
        .await?;
    let bodies: HashMap<i64, Option<BodyEvents>> = rows
        .iter()
        .map(|row| {
            let body: &[u8] = row.get(1);
            (row.get(0), BodyEvents::read(body, Some(selector)))
        })
        .collect();
    let ids: Vec<i64> = bodies.keys().copied().collect();
    let removed = remove_requests(&transaction, &ids, keys_before_ms, dry_run).await?;
    let named = |request: i64, event_id: &str| {
        bodies
            .get(&request)
            .and_then(Option::as_ref)
            .is_some_and(|body| body.names(event_id))
    };
    let refused = if dry_run {
        transaction
            .query_one(
                "SELECT COUNT(*) FROM receiver_refused_requests WHERE id = ANY($1::int8[])",
                &[&targets.refused],
            )
            .await?
            .get::<_, i64>(0)
    } else {
        i64::try_from(
            transaction
                .execute(
                    "DELETE FROM receiver_refused_requests WHERE id = ANY($1::int8[])",
                    &[&targets.refused],
                )
                .await?,
        )
        .unwrap_or(i64::MAX)
    };
    if dry_run {
        transaction.rollback().await?;
    } else {
        transaction.commit().await?;
    }
    Ok(Erased {
        requests: removed.requests,
        events: removed.events.len() as u64,
        other_events: removed
            .events
            .iter()
            .filter(|(request, event_id)| !named(*request, event_id))
            .count() as u64,
        refused: u64::try_from(refused).unwrap_or(0),
    })
}

/// `receiver prune` and `receiver erase` on a PostgreSQL store: a connection and a small
/// runtime of their own, since the commands are not async.
pub struct PostgresMaintenance {
    runtime: tokio::runtime::Runtime,
    client: Object,
}

impl PostgresMaintenance {
    /// Connects and brings the receiver's tables to this build's layout (creating them in an
    /// empty database, as a listener would).
    ///
    /// # Errors
    /// The database cannot be reached, or holds tables this receiver cannot use. The message
    /// shows the URL without its password.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<PostgresMaintenance> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let client = runtime
            .block_on(async {
                let pool = url.pool("receiver-maintenance", 1)?;
                let mut client = pool.get().await?;
                prepare_schema(&mut client).await?;
                anyhow::Ok(client)
            })
            .with_context(|| format!("opening the store {url}"))?;
        Ok(PostgresMaintenance { runtime, client })
    }
}

impl Maintenance for PostgresMaintenance {
    fn prune_batch(
        &mut self,
        rule: PruneRule,
        cursor: PruneCursor,
        dry_run: bool,
    ) -> anyhow::Result<PruneBatch> {
        let client: &mut tokio_postgres::Client = &mut self.client;
        self.runtime
            .block_on(prune_batch(client, rule, cursor, dry_run))
            .map_err(|error| anyhow::anyhow!(super::error::describe(&error)))
    }

    fn find_erasure(&mut self, selector: &ErasureSelector) -> anyhow::Result<ErasureTargets> {
        let client: &tokio_postgres::Client = &self.client;
        self.runtime
            .block_on(async {
                Ok(ErasureTargets {
                    requests: search(client, "receiver_requests", selector.account(), selector)
                        .await?,
                    refused: search(client, "receiver_refused_requests", None, selector).await?,
                })
            })
            .map_err(|error: tokio_postgres::Error| anyhow::anyhow!(super::error::describe(&error)))
    }

    fn erase_batch(
        &mut self,
        selector: &ErasureSelector,
        targets: &ErasureTargets,
        keys_before_ms: i64,
        dry_run: bool,
    ) -> anyhow::Result<Erased> {
        let client: &mut tokio_postgres::Client = &mut self.client;
        self.runtime
            .block_on(erase_batch(
                client,
                selector,
                targets,
                keys_before_ms,
                dry_run,
            ))
            .map_err(|error| anyhow::anyhow!(super::error::describe(&error)))
    }
}
