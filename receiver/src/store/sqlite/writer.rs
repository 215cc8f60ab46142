//! The writer thread: it owns the connection, takes every job waiting in its queue, runs them
//! in ONE transaction and commits once (group commit; see the module above), then answers.
//! It also owns the store's dedupe keys in memory (`super::keys`), which decide duplicates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use super::checkpointer::Checkpointer;
use super::connection::open_writer;
use super::jobs::{store_error, AcceptReply, Job, PruneOrder};
use super::keys::{Fingerprint, KeyChanges, KeySet, TOMBSTONE_ROW};
use super::lock::ListenLock;
use super::maintenance::{prune_batch, Durability};
use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;
use crate::routing::Routes;
use crate::store::forward::sql::{self as forward_sql, Dialect};
use crate::store::forward::{JobOutcome, JobSignals};
use crate::store::maintenance::PruneBatch;
use crate::store::{within_refusal_budget, AcceptedRequest, RefusedRequest, StoreError};

/// Most jobs in one transaction, so one huge batch cannot starve its first callers.
const MAX_BATCH: usize = 1024;

/// What the writer was told at open.
#[derive(Clone)]
pub(super) struct Settings {
    /// How many refused requests to keep.
    pub(super) keep_refused: u32,
    /// The forwarding targets: a request that stores a new event a target takes gets a job
    /// for it (none: forwarding is off).
    pub(super) routes: Arc<Routes>,
}

/// The thread that owns the connection.
pub(super) struct Writer {
    path: PathBuf,
    checkpointer: Option<Checkpointer>,
    /// `None` after a failure: the next batch reopens, which clears any broken state.
    connection: Option<Connection>,
    /// Every stored key's fingerprint and row (see `super::keys`).
    keys: KeySet,
    /// Whether `keys` must be read again from the store before the next transaction: after a
    /// failed commit, which may have reached the disk all the same (an error while syncing),
    /// so only the store can say which keys it holds.
    keys_stale: bool,
    /// This process is the store's one listener while this is held; let go once the
    /// connection is closed.
    lock: Option<ListenLock>,
    settings: Settings,
    metrics: Arc<Metrics>,
    signals: Arc<JobSignals>,
}

/// Jobs of one batch, sorted by kind.
#[derive(Default)]
struct Batch {
    accepts: Vec<(Arc<AcceptedRequest>, AcceptReply)>,
    refusals: Vec<RefusedRequest>,
    health: Vec<oneshot::Sender<Result<(), StoreError>>>,
    close: Vec<oneshot::Sender<Result<(), StoreError>>>,
    forwarded: Vec<(JobOutcome, oneshot::Sender<Result<(), StoreError>>)>,
    notes: Vec<JobOutcome>,
    prunes: Vec<(PruneOrder, oneshot::Sender<Result<PruneBatch, StoreError>>)>,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Accept(request, reply) => self.accepts.push((request, reply)),
            Job::Refuse(refused) => self.refusals.push(refused),
            Job::Health(reply) => self.health.push(reply),
            Job::Close(reply) => self.close.push(reply),
            Job::ForwardDone(done, reply) => self.forwarded.push((done, reply)),
            Job::ForwardNote(note) => self.notes.push(note),
            Job::Prune(order, reply) => self.prunes.push((order, reply)),
        }
    }
}

/// Everything one group transaction writes.
struct Work<'a> {
    requests: &'a [&'a AcceptedRequest],
    forwarded: &'a [&'a JobOutcome],
    health_check: bool,
}

impl Writer {
    /// Starts the writer thread over `connection` (from [`open_writer`]), with the store's
    /// `keys` (read from it under `lock`), taking jobs from `jobs` until a close job or until
    /// every sender is gone.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(super) fn start(
        path: &Path,
        (connection, keys, lock): (Connection, KeySet, ListenLock),
        settings: Settings,
        metrics: Arc<Metrics>,
        signals: Arc<JobSignals>,
        jobs: mpsc::Receiver<Job>,
    ) -> anyhow::Result<()> {
        let writer = Writer {
            path: path.to_owned(),
            checkpointer: Checkpointer::start(path),
            connection: Some(connection),
            keys,
            keys_stale: false,
            lock: Some(lock),
            settings,
            metrics,
            signals,
        };
        std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || writer.run(jobs))
            .context("starting the store writer thread")?;
        Ok(())
    }

    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut batch = Batch::default();
            batch.push(first);
            let mut taken = 1;
            while taken < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
                taken += 1;
            }
            let closing = std::mem::take(&mut batch.close);
            let prunes = std::mem::take(&mut batch.prunes);
            self.write_batch(batch);
            // After the batch's answers: a prune's transaction never delays requests that
            // were already waiting, and the next batch waits for one short transaction.
            for (order, reply) in prunes {
                let _ = reply.send(self.prune(&order));
            }
            if !closing.is_empty() {
                // Stop taking jobs; what is still queued gets "the store is closed".
                jobs.close();
                let result = self.finish();
                // Let go before answering: whoever waited for the close may open the store
                // again at once.
                self.lock = None;
                for reply in closing {
                    let _ = reply.send(result.clone());
                }
                return;
            }
        }
        let _ = self.finish();
    }

    /// One batch of the listener's prune, in a transaction of its own.
    fn prune(&mut self, order: &PruneOrder) -> Result<PruneBatch, StoreError> {
        let mut changes = KeyChanges::default();
        let result = self.connection_and_keys().and_then(|(connection, _)| {
            prune_batch(
                connection,
                order.rule,
                order.cursor,
                Durability::Deferred,
                false,
                &mut changes,
            )
            .map_err(store_error)
        });
        match &result {
            Ok(batch) => {
                // Committed: the keys it removed leave the set, or stay as tombstones'.
                self.keys.apply(changes);
                if let Some(checkpointer) = &self.checkpointer {
                    if batch.pruned != crate::store::maintenance::Pruned::default() {
                        checkpointer.wal_grew();
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "pruning failed");
                self.failed();
            }
        }
        result
    }

    /// Checkpoints the WAL into the database file and closes the connection.
    fn finish(&mut self) -> Result<(), StoreError> {
        // Stop the checkpointer first, so the final TRUNCATE checkpoint does not wait on it.
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        let Some(connection) = self.connection.take() else {
            return Ok(());
        };
        let checkpoint = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        let closed = connection.close().map_err(|(_, error)| error);
        checkpoint.and(closed).map_err(|error| {
            tracing::warn!(%error, "closing the store");
            StoreError(error.to_string())
        })
    }

    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self.connection.is_none() {
            let connection = open_writer(&self.path).map_err(|error| {
                StoreError(format!("reopening {}: {error}", self.path.display()))
            })?;
            self.connection = Some(connection);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| StoreError("no connection".to_owned()))
    }

    /// The connection and the dedupe keys, read again from the store first if a failure
    /// left them in doubt.
    fn connection_and_keys(&mut self) -> Result<(&mut Connection, &mut KeySet), StoreError> {
        self.connection()?;
        let (Some(connection), keys) = (self.connection.as_mut(), &mut self.keys) else {
            return Err(StoreError("no connection".to_owned()));
        };
        if self.keys_stale {
            *keys = KeySet::load(connection).map_err(store_error)?;
            self.keys_stale = false;
        }
        Ok((connection, keys))
    }

    /// After a failed transaction: the connection is reopened and the keys read again.
    fn failed(&mut self) {
        self.connection = None;
        self.keys_stale = true;
    }

    fn write_batch(&mut self, batch: Batch) {
        let Batch {
            accepts,
            refusals,
            health,
            forwarded,
            notes,
            ..
        } = batch;
        if accepts.is_empty()
            && refusals.is_empty()
            && health.is_empty()
            && forwarded.is_empty()
            && notes.is_empty()
        {
            return;
        }
        let started = Instant::now();
        let keep_refused = self.settings.keep_refused;
        if !accepts.is_empty() || !forwarded.is_empty() || !health.is_empty() {
            self.commit_durably(accepts, health, forwarded, started);
        }
        if !refusals.is_empty() || !notes.is_empty() {
            let metrics = Arc::clone(&self.metrics);
            let kept = self
                .connection()
                .map_err(|error| error.0)
                .and_then(|connection| {
                    keep_best_effort(connection, &refusals, &notes, keep_refused, &metrics)
                        .map_err(|error| error.to_string())
                });
            if let Err(error) = kept {
                tracing::debug!(%error, "keeping refused requests or forwarding notes failed");
                // A connection left in an unknown state is reopened by the next batch.
                self.connection = None;
            }
        }
    }

    /// The group commit of accepted requests, forwarding marks and a health check, and the
    /// answers to them once it is on disk.
    fn commit_durably(
        &mut self,
        accepts: Vec<(Arc<AcceptedRequest>, AcceptReply)>,
        health: Vec<oneshot::Sender<Result<(), StoreError>>>,
        forwarded: Vec<(JobOutcome, oneshot::Sender<Result<(), StoreError>>)>,
        started: Instant,
    ) {
        let routes = Arc::clone(&self.settings.routes);
        let now_ms = verify::unix_now_ms();
        let requests: Vec<&AcceptedRequest> = accepts
            .iter()
            .map(|(request, _)| request.as_ref())
            .collect();
        let done: Vec<&JobOutcome> = forwarded.iter().map(|(done, _)| done).collect();
        let work = Work {
            requests: &requests,
            forwarded: &done,
            health_check: !health.is_empty(),
        };
        let result = self.connection_and_keys().and_then(|(connection, keys)| {
            group_transaction(connection, keys, &work, &routes, now_ms)
        });
        match result {
            Ok(outcomes) => {
                self.committed(started, &outcomes);
                for reply in health {
                    let _ = reply.send(Ok(()));
                }
                for (_, reply) in forwarded {
                    let _ = reply.send(Ok(()));
                }
                for ((_, reply), outcome) in accepts.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::warn!(%error, jobs = accepts.len(), "group commit failed; retrying each request alone");
                self.failed();
                self.metrics.set_store_up(false);
                for reply in health {
                    let _ = reply.send(Err(error.clone()));
                }
                // The forwarder keeps the job and marks it again later.
                for (_, reply) in forwarded {
                    let _ = reply.send(Err(error.clone()));
                }
                // Retry alone, so one job's failure cannot fail the others.
                for (request, reply) in accepts {
                    let started = Instant::now();
                    let alone = Work {
                        requests: &[request.as_ref()],
                        forwarded: &[],
                        health_check: false,
                    };
                    let single = self.connection_and_keys().and_then(|(connection, keys)| {
                        group_transaction(connection, keys, &alone, &routes, now_ms)
                    });
                    let answer = match single {
                        Ok(outcomes) => {
                            self.committed(started, &outcomes);
                            // One request in, one outcome out.
                            outcomes.into_iter().next().ok_or_else(|| error.clone())
                        }
                        Err(error) => {
                            self.failed();
                            Err(error)
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Everything a successful commit of `outcomes` (one per accepted request) means, for the
    /// group commit and for a request retried alone alike: metrics, the store is up, the WAL
    /// grew, forward jobs to wake the forwarder for.
    fn committed(&self, started: Instant, outcomes: &[AcceptOutcome]) {
        self.metrics
            .observe_commit(started.elapsed(), outcomes.len());
        self.metrics.set_store_up(true);
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wal_grew();
        }
        self.forward_jobs_queued(outcomes);
        for outcome in outcomes {
            self.metrics.observe_events(outcome);
        }
    }

    /// After a commit: wakes the forwarders of the targets it queued jobs for.
    fn forward_jobs_queued(&self, outcomes: &[AcceptOutcome]) {
        let queued = outcomes
            .iter()
            .fold(0, |mask, outcome| mask | outcome.forward_targets);
        if queued != 0 {
            self.signals
                .queued(self.settings.routes.targets_of_mask(queued));
        }
    }
}

/// Runs one transaction over every job and commits once. `Err` when anything in it failed:
/// then nothing of it is stored, and the caller retries each request alone, so one request's
/// failure never fails (or acknowledges) another. The keys of the events it stored join
/// `keys` once it committed, and only then.
fn group_transaction(
    connection: &mut Connection,
    keys: &mut KeySet,
    work: &Work<'_>,
    routes: &Routes,
    now_ms: i64,
) -> Result<Vec<AcceptOutcome>, StoreError> {
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_error)?;
    let (outcomes, added) = {
        let mut inserts = Inserts::prepare(&transaction, keys, routes).map_err(store_error)?;
        let outcomes = work
            .requests
            .iter()
            .map(|request| inserts.insert_request(request, now_ms))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        (outcomes, inserts.finish().map_err(store_error)?)
    };
    for outcome in work.forwarded {
        record_outcome(&transaction, outcome).map_err(store_error)?;
    }
    if work.health_check {
        transaction
            .execute(
                "UPDATE health SET checked_at_ms = ?1 WHERE id = 1",
                [now_ms],
            )
            .map_err(store_error)?;
    }
    transaction.commit().map_err(store_error)?;
    for (fingerprint, row) in added {
        keys.insert(fingerprint, row);
    }
    Ok(outcomes)
}

/// Keeps refused requests and notes of failed forwarding attempts, after the batch's answers
/// went out: they are best effort, so their transaction is not synced (`synchronous=NORMAL`;
/// the next durable commit syncs them along) and its failure fails nobody.
fn keep_best_effort(
    connection: &mut Connection,
    refusals: &[RefusedRequest],
    notes: &[JobOutcome],
    keep_refused: u32,
    metrics: &Metrics,
) -> rusqlite::Result<()> {
    let kept = within_refusal_budget(refusals, metrics);
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let written = (|| {
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        insert_refusals(&transaction, &kept, keep_refused)?;
        insert_notes(&transaction, notes)?;
        transaction.commit()
    })();
    // Back to FULL whatever happened: accepted requests must never commit unsynced.
    connection.pragma_update(None, "synchronous", "FULL")?;
    written
}

fn insert_notes(connection: &Connection, notes: &[JobOutcome]) -> rusqlite::Result<()> {
    for note in notes {
        record_outcome(connection, note)?;
    }
    Ok(())
}

/// Records what an attempt did to its job, and the attempt (the statements both stores use).
/// A job `receiver erase` removed while it was being sent is gone: nothing to record (its
/// attempt would break the foreign key and fail the whole group commit).
fn record_outcome(connection: &Connection, outcome: &JobOutcome) -> rusqlite::Result<()> {
    let (update, values) = forward_sql::outcome_update(outcome);
    let attempt =
        forward_sql::attempt_values(outcome.job_id, &outcome.attempt, outcome.result.outcome());
    for (statement, values) in [(update, values), (forward_sql::INSERT_ATTEMPT, attempt)] {
        let changed = connection
            .prepare_cached(&Dialect::Sqlite.render(statement))?
            .execute(rusqlite::params_from_iter(
                values.iter().map(super::forward_control::sqlite_value),
            ))?;
        if changed == 0 {
            break;
        }
    }
    Ok(())
}

/// The statements that store accepted requests, taken from the statement cache once per
/// transaction rather than once per request (each `prepare_cached` hashes the SQL text and
/// moves the statement out of and back into the cache).
struct Inserts<'c> {
    request: rusqlite::CachedStatement<'c>,
    event: rusqlite::CachedStatement<'c>,
    /// Whether a row holds a key: how a candidate of the dedupe keys is confirmed.
    holds_key: rusqlite::CachedStatement<'c>,
    /// Whether a tombstone holds a key (`dedupe_keys`, by its unique index): the key of an
    /// event pruned or erased within the dedupe window.
    tombstone: rusqlite::CachedStatement<'c>,
    /// The keys stored before this transaction.
    keys: &'c KeySet,
    /// The keys this transaction stored, by fingerprint, with their rows: they join `keys`
    /// only if it commits.
    added: std::collections::HashMap<Fingerprint, Vec<i64>>,
    /// `Some` when forwarding is on.
    forward_job: Option<rusqlite::CachedStatement<'c>>,
    routes: &'c Routes,
    /// The next queue place, read from `forward_order` at the first job of the transaction
    /// and written back by [`Inserts::finish`]: two statements per commit, not per job.
    next_order: Option<i64>,
    /// Whether a place was handed out.
    orders_taken: bool,
    connection: &'c Connection,
}

impl<'c> Inserts<'c> {
    fn prepare(
        connection: &'c Connection,
        keys: &'c KeySet,
        routes: &'c Routes,
    ) -> rusqlite::Result<Self> {
        Ok(Inserts {
            request: connection.prepare_cached(
                "INSERT INTO requests (received_at_ms, method, path, headers, body, auth, account_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            // No unique index: the dedupe keys decided the event is new (see `stored`).
            event: connection.prepare_cached(
                "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length, user_id, lo_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?,
            holds_key: connection.prepare_cached(
                "SELECT 1 FROM events WHERE id = ?1 AND account_id = ?2 AND event_id = ?3",
            )?,
            tombstone: connection.prepare_cached(
                "SELECT 1 FROM dedupe_keys WHERE account_id = ?1 AND event_id = ?2",
            )?,
            keys,
            added: std::collections::HashMap::new(),
            forward_job: if routes.is_on() {
                Some(connection.prepare_cached(&Dialect::Sqlite.render(forward_sql::INSERT_JOB))?)
            } else {
                None
            },
            routes,
            next_order: None,
            orders_taken: false,
            connection,
        })
    }

    /// The next queue place (the write lock is held: the transaction began IMMEDIATE).
    fn take_order(&mut self) -> rusqlite::Result<i64> {
        let next = match self.next_order {
            Some(next) => next,
            None => self.connection.query_row(
                "SELECT next FROM forward_order WHERE id = 1",
                [],
                |row| row.get(0),
            )?,
        };
        self.next_order = Some(next + 1);
        self.orders_taken = true;
        Ok(next)
    }

    /// Writes the next queue place back when places were handed out, and gives the keys the
    /// transaction stored, to add to the set once it committed.
    fn finish(self) -> rusqlite::Result<Vec<(Fingerprint, i64)>> {
        if let (true, Some(next)) = (self.orders_taken, self.next_order) {
            self.connection
                .prepare_cached("UPDATE forward_order SET next = ?1 WHERE id = 1")?
                .execute([next])?;
        }
        Ok(self
            .added
            .into_iter()
            .flat_map(|(fingerprint, rows)| rows.into_iter().map(move |row| (fingerprint, row)))
            .collect())
    }

    /// Whether the store holds `(account_id, event_id)`: stored before this transaction or
    /// earlier in it, or left by a pruned or erased event as a tombstone. The set names the
    /// rows that may hold it; each is read to confirm, so a row removed meanwhile by another
    /// program, or another key with the same fingerprint, never makes a false duplicate. A
    /// key the set does not know is in no row and no tombstone (every key enters through
    /// this writer, and a tombstone only replaces an event's row).
    fn stored(
        &mut self,
        fingerprint: Fingerprint,
        account_id: i64,
        event_id: &str,
    ) -> rusqlite::Result<bool> {
        let earlier = self.added.get(&fingerprint).into_iter().flatten().copied();
        let mut candidates = 0;
        for row in self.keys.candidates(fingerprint).chain(earlier) {
            candidates += 1;
            if row != TOMBSTONE_ROW && self.holds_key.exists(params![row, account_id, event_id])? {
                return Ok(true);
            }
        }
        // Its event's row is gone: pruned or erased, perhaps by another process, which
        // leaves a tombstone within the dedupe window.
        Ok(candidates > 0 && self.tombstone.exists(params![account_id, event_id])?)
    }

    fn insert_request(
        &mut self,
        request: &AcceptedRequest,
        now_ms: i64,
    ) -> rusqlite::Result<AcceptOutcome> {
        self.request.execute(params![
            request.received_at_ms,
            request.method,
            request.path,
            request.headers_json,
            request.body.as_ref(),
            request.auth,
            request.account_id,
        ])?;
        let request_id = self.connection.last_insert_rowid();
        let mut new = Vec::with_capacity(request.events.len());
        for event in &request.events {
            // A look at the keys, then the insert: not a race, since this thread is the
            // store's only writer of events (the lock file keeps other listeners out) and
            // runs one transaction at a time, so nothing can store the key in between. Two
            // racing requests, or the same event twice in one request, meet here in turn.
            let fingerprint = self.keys.fingerprint(request.account_id, &event.event_id);
            if self.stored(fingerprint, request.account_id, &event.event_id)? {
                new.push(false);
                continue;
            }
            self.event.execute(params![
                request.account_id,
                event.event_id,
                request_id,
                event.event_name,
                event.timestamp_ms,
                event.known,
                event.raw.start,
                event.raw.len(),
                event.user_id,
                event.lo_id,
            ])?;
            self.added
                .entry(fingerprint)
                .or_default()
                .push(self.connection.last_insert_rowid());
            new.push(true);
        }
        // The jobs commit with the request or not at all: a 2xx means "stored AND queued". A
        // target gets the request when one of its NEW events is one the target takes: the
        // duplicates went with the request that first stored them.
        let mut forward_targets = 0;
        if self.forward_job.is_some() {
            let routes = self.routes;
            forward_targets = request
                .events
                .iter()
                .zip(&new)
                .filter(|(_, new)| **new)
                .fold(0, |mask, (event, _)| {
                    mask | routes.mask_of(&event.event_name)
                });
            for target in routes.targets_of_mask(forward_targets) {
                let order = self.take_order()?;
                if let Some(insert) = &mut self.forward_job {
                    insert.execute(params![request_id, target, order, now_ms])?;
                }
            }
        }
        Ok(AcceptOutcome {
            new,
            forward_targets,
        })
    }
}

fn insert_refusals(
    connection: &Connection,
    refusals: &[&RefusedRequest],
    keep_refused: u32,
) -> rusqlite::Result<()> {
    let mut insert = connection.prepare_cached(
        "INSERT INTO refused_requests (received_at_ms, method, path, headers, body, status, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for refused in refusals {
        insert.execute(params![
            refused.received_at_ms,
            refused.method,
            refused.path,
            refused.headers_json,
            refused.body.as_ref(),
            refused.status,
            refused.reason,
        ])?;
    }
    // Keep the newest `keep_refused`: ids only grow, so everything below the cut goes.
    connection
        .prepare_cached(
            "DELETE FROM refused_requests WHERE id <= (SELECT MAX(id) FROM refused_requests) - ?1",
        )?
        .execute([keep_refused])?;
    Ok(())
}
