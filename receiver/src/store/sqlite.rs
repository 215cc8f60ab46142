//! The embedded store: one SQLite file in WAL mode, written by one thread with group commit.
//!
//! Why one writer thread: SQLite allows one writer at a time anyway, and a thread that owns the
//! connection can take every job waiting in its queue, run them all in ONE transaction and
//! commit once, so N concurrent requests cost one disk sync instead of N (group commit). If
//! anything in the batch fails (one request's insert, or the commit itself), the whole
//! transaction is rolled back and every request is retried in a transaction of its own, so no
//! request is failed or acknowledged because of another; failures are rare, so the common path
//! pays for no savepoints. Answers go back through oneshot channels only after `COMMIT`
//! returned, and `synchronous=FULL` makes `COMMIT` wait for the disk.
//!
//! Forwarding (`--forward-to`) adds the `forward_jobs` table: the job of a request is inserted
//! by `insert_request`, inside the request's own transaction, and marks of jobs done ride the
//! next group commit through the same writer, so there is still one writer. The forwarder
//! reads the queue on a connection of its own ([`SqliteForwardQueue`]); WAL readers never
//! block the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _};
use tokio::sync::{mpsc, oneshot, Notify};
use verify::CaptureRecord;

use super::{
    query, AcceptedRequest, CaptureFilter, EventFilter, EventQuery, ForwardJob, ForwardQueue,
    RefusedRequest, Store, StoreError, StoreFuture, StoredEvent,
};
use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;

mod requests;

/// Jobs waiting for the writer; senders wait (back-pressure) when it is full.
const QUEUE_CAPACITY: usize = 4096;
/// Most jobs in one transaction, so one huge batch cannot starve its first callers.
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id              INTEGER PRIMARY KEY,
    received_at_ms  INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    headers         TEXT    NOT NULL,  -- JSON array of [name, value]
    body            BLOB    NOT NULL,  -- byte for byte
    auth            TEXT    NOT NULL,  -- none | basic | signature
    account_id      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    request_id      INTEGER NOT NULL REFERENCES requests(id),
    event_name      TEXT    NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    known           INTEGER NOT NULL,
    -- The event's JSON is the bytes [raw_start, raw_start + raw_length) of its request's
    -- body: kept once, in the body, rather than copied (see `RAW_TEXT`).
    raw_start       INTEGER NOT NULL,
    raw_length      INTEGER NOT NULL,
    UNIQUE (account_id, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp_ms);
CREATE INDEX IF NOT EXISTS events_by_name ON events (event_name, timestamp_ms);
CREATE TABLE IF NOT EXISTS refused_requests (
    id              INTEGER PRIMARY KEY,
    received_at_ms  INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    status          INTEGER NOT NULL,
    reason          TEXT    NOT NULL
);
-- One row that a health check rewrites, so /healthz proves a real commit works.
CREATE TABLE IF NOT EXISTS health (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at_ms   INTEGER NOT NULL
);
INSERT OR IGNORE INTO health (id, checked_at_ms) VALUES (1, 0);
-- The durable inbox of --forward-to: one job per request to forward, in id order.
CREATE TABLE IF NOT EXISTS forward_jobs (
    id               INTEGER PRIMARY KEY,
    request_id       INTEGER NOT NULL UNIQUE REFERENCES requests(id),
    queued_at_ms     INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    forwarded_at_ms  INTEGER            -- NULL while pending
);
-- Only pending jobs: finding the next one never walks the forwarded history.
CREATE INDEX IF NOT EXISTS forward_jobs_pending ON forward_jobs (id) WHERE forwarded_at_ms IS NULL;
";

/// The layout version in `PRAGMA user_version`: a store of another layout is refused with a
/// clear message rather than misread. Version 2 keeps events' JSON as offsets into the body.
const LAYOUT_VERSION: i64 = 2;

/// An event's JSON text, as a SQL expression over `events e JOIN requests r`.
const RAW_TEXT: &str = "substr(r.body, e.raw_start + 1, e.raw_length)";

/// Where the writer answers an accepted request, once its transaction committed (or not).
type AcceptReply = oneshot::Sender<Result<AcceptOutcome, StoreError>>;

enum Job {
    Accept(Arc<AcceptedRequest>, AcceptReply),
    Refuse(RefusedRequest),
    Health(oneshot::Sender<Result<(), StoreError>>),
    Close(oneshot::Sender<Result<(), StoreError>>),
    ForwardDone(ForwardDone, oneshot::Sender<Result<(), StoreError>>),
    ForwardNote(ForwardNote),
}

/// A job the app acknowledged.
struct ForwardDone {
    job_id: i64,
    attempts: u32,
    at_ms: i64,
}

/// A failed attempt, kept best effort.
struct ForwardNote {
    job_id: i64,
    attempts: u32,
    error: String,
}

/// The SQLite store. Cheap to share behind an `Arc`; the connection lives in the writer thread.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    path: PathBuf,
    /// Woken by the writer after a commit that queued forward jobs.
    jobs_signal: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    ///
    /// # Errors
    /// The file cannot be opened or created, or is not a database of this schema.
    ///
    /// With `queue_forwarding`, every request that stores a new event also gets a forward
    /// job in its transaction (see [`SqliteStore::forward_queue`]).
    pub fn open(
        path: &Path,
        keep_refused: u32,
        queue_forwarding: bool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<SqliteStore> {
        // The store holds whole bodies and credential headers: a new one is created readable
        // by its owner only before SQLite opens it, since SQLite gives its -wal and -shm
        // files the main file's mode. An existing store keeps the mode its owner gave it
        // (perhaps on purpose), with a warning.
        common::files::create_private(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        if common::files::readable_by_others(path) {
            tracing::warn!(
                store = %path.display(),
                "the store can be read by other users of this machine and holds whole \
                 requests; `chmod 600` it and its -wal and -shm files"
            );
        }
        // Open once here so that a wrong path fails at startup, not at the first request.
        let connection =
            open_writer(path).with_context(|| format!("opening the store {}", path.display()))?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let jobs_signal = Arc::new(Notify::new());
        let writer = Writer {
            path: path.to_owned(),
            checkpointer: Checkpointer::start(path),
            connection: Some(connection),
            settings: Settings {
                keep_refused,
                queue_forwarding,
            },
            metrics: Arc::clone(&metrics),
            jobs_signal: Arc::clone(&jobs_signal),
        };
        std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .context("starting the store writer thread")?;
        metrics.set_store_up(true);
        Ok(SqliteStore {
            jobs: sender,
            metrics,
            path: path.to_owned(),
            jobs_signal,
        })
    }

    /// The forwarding queue over this store, with a read connection of its own.
    ///
    /// # Errors
    /// The store file cannot be opened again.
    pub fn forward_queue(&self) -> anyhow::Result<SqliteForwardQueue> {
        let connection = Connection::open(&self.path)
            .and_then(|connection| {
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(connection)
            })
            .with_context(|| format!("opening the store {} for forwarding", self.path.display()))?;
        Ok(SqliteForwardQueue {
            jobs: self.jobs.clone(),
            reader: Arc::new(Mutex::new(connection)),
            jobs_signal: Arc::clone(&self.jobs_signal),
        })
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(make(reply))
            .await
            .map_err(|_| StoreError("the store is closed".to_owned()))?;
        answer
            .await
            .map_err(|_| StoreError("the store writer stopped".to_owned()))?
    }
}

impl Store for SqliteStore {
    fn accept(
        &self,
        request: Arc<AcceptedRequest>,
    ) -> StoreFuture<'_, Result<AcceptOutcome, StoreError>> {
        Box::pin(self.submit(|reply| Job::Accept(request, reply)))
    }

    fn record_refusal(&self, refused: RefusedRequest) {
        // Never wait, and leave half of the queue to accepted requests: a flood of refusals
        // must not make them wait for a place.
        let room = self.jobs.capacity() > QUEUE_CAPACITY / 2;
        if !room || self.jobs.try_send(Job::Refuse(refused)).is_err() {
            self.metrics.refusal_not_kept();
        }
    }

    fn check_health(&self) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(self.submit(Job::Health))
    }

    fn close(&self) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(self.submit(Job::Close))
    }
}

fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    // Before anything changes the file: another program's database is refused untouched.
    check_layout(&connection, true)?;
    // WAL: readers (`receiver events`) never block the writer. FULL: a commit returns only
    // after the WAL is synced, which is what "no 2xx before the data is on disk" needs.
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database refused WAL mode (got {mode})"
        )));
    }
    connection.execute_batch(
        // Checkpoints run in the checkpointer thread; the writer checkpoints itself only as a
        // backstop when the WAL grows past 10 000 pages (40 MB) because that thread fell behind.
        // fullfsync: on macOS a plain fsync does not reach the platter (F_FULLFSYNC does);
        // elsewhere SQLite ignores these two.
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=10000;
         PRAGMA fullfsync=ON; PRAGMA checkpoint_fullfsync=ON;",
    )?;
    // One transaction, layout version included: a crash while a new store is created leaves
    // an empty file (created again at the next start), never tables without their version.
    // The layout is checked again inside it, under the write lock: another program may have
    // created tables since the first look.
    connection.execute_batch("BEGIN IMMEDIATE;")?;
    let created = check_layout(&connection, true).and_then(|()| {
        connection.execute_batch(&format!(
            "{SCHEMA} PRAGMA user_version = {LAYOUT_VERSION}; COMMIT;"
        ))
    });
    if let Err(error) = created {
        let _ = connection.execute_batch("ROLLBACK;");
        return Err(error);
    }
    Ok(connection)
}

/// Refuses a store written in another layout. A file with no tables yet is new (when
/// `may_create`), and gets this layout.
fn check_layout(connection: &Connection, may_create: bool) -> rusqlite::Result<()> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == LAYOUT_VERSION {
        return Ok(());
    }
    let tables: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if version == 0 && tables == 0 && may_create {
        return Ok(());
    }
    Err(rusqlite::Error::InvalidParameterName(format!(
        "the store has layout version {version}, this receiver reads version {LAYOUT_VERSION}: \
         start a new store (--store sqlite:NEW_PATH), or read this one with the receiver that wrote it"
    )))
}

/// What the writer was told at open.
#[derive(Clone, Copy)]
struct Settings {
    keep_refused: u32,
    queue_forwarding: bool,
}

struct Writer {
    path: PathBuf,
    checkpointer: Option<Checkpointer>,
    /// `None` after a failure: the next batch reopens, which clears any broken state.
    connection: Option<Connection>,
    settings: Settings,
    metrics: Arc<Metrics>,
    jobs_signal: Arc<Notify>,
}

/// Jobs of one batch, sorted by kind.
#[derive(Default)]
struct Batch {
    accepts: Vec<(Arc<AcceptedRequest>, AcceptReply)>,
    refusals: Vec<RefusedRequest>,
    health: Vec<oneshot::Sender<Result<(), StoreError>>>,
    close: Vec<oneshot::Sender<Result<(), StoreError>>>,
    forwarded: Vec<(ForwardDone, oneshot::Sender<Result<(), StoreError>>)>,
    notes: Vec<ForwardNote>,
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
        }
    }
}

/// Everything one group transaction writes.
struct Work<'a> {
    requests: &'a [&'a AcceptedRequest],
    forwarded: &'a [&'a ForwardDone],
    health_check: bool,
}

impl Writer {
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
            self.write_batch(batch);
            if !closing.is_empty() {
                // Stop taking jobs; what is still queued gets "the store is closed".
                jobs.close();
                let result = self.finish();
                for reply in closing {
                    let _ = reply.send(result.clone());
                }
                return;
            }
        }
        let _ = self.finish();
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
        let settings = self.settings;
        if !accepts.is_empty() || !forwarded.is_empty() || !health.is_empty() {
            self.commit_durably(accepts, health, forwarded, started);
        }
        if !refusals.is_empty() || !notes.is_empty() {
            let metrics = Arc::clone(&self.metrics);
            let kept = self
                .connection()
                .map_err(|error| error.0)
                .and_then(|connection| {
                    keep_best_effort(
                        connection,
                        &refusals,
                        &notes,
                        settings.keep_refused,
                        &metrics,
                    )
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
        forwarded: Vec<(ForwardDone, oneshot::Sender<Result<(), StoreError>>)>,
        started: Instant,
    ) {
        let settings = self.settings;
        let now_ms = verify::unix_now_ms();
        let requests: Vec<&AcceptedRequest> = accepts
            .iter()
            .map(|(request, _)| request.as_ref())
            .collect();
        let done: Vec<&ForwardDone> = forwarded.iter().map(|(done, _)| done).collect();
        let work = Work {
            requests: &requests,
            forwarded: &done,
            health_check: !health.is_empty(),
        };
        let result = self
            .connection()
            .and_then(|connection| group_transaction(connection, &work, settings, now_ms));
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
                self.connection = None;
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
                    let single = self.connection().and_then(|connection| {
                        group_transaction(connection, &alone, settings, now_ms)
                    });
                    let answer = match single {
                        Ok(outcomes) => {
                            self.committed(started, &outcomes);
                            // One request in, one outcome out.
                            outcomes.into_iter().next().ok_or_else(|| error.clone())
                        }
                        Err(error) => {
                            self.connection = None;
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

    /// After a commit: counts the forward jobs it queued and wakes the forwarder.
    fn forward_jobs_queued(&self, outcomes: &[AcceptOutcome]) {
        let queued = outcomes
            .iter()
            .filter(|outcome| outcome.queued_for_forwarding)
            .count();
        if queued > 0 {
            self.metrics.forward_queued(queued as u64);
            self.jobs_signal.notify_one();
        }
    }
}

/// Least time between two background checkpoints under steady load.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// A thread with its own connection that copies the WAL into the database file (PASSIVE
/// checkpoints), so the page copying and the database file's sync stay off the commit path
/// and out of the answers' latency. Readers and the writer are never blocked by it.
struct Checkpointer {
    signals: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// `None` when the thread or its connection cannot start: the writer's backstop
    /// autocheckpoint then does the work.
    fn start(path: &Path) -> Option<Checkpointer> {
        let connection = Connection::open(path)
            .and_then(|connection| {
                connection.busy_timeout(std::time::Duration::from_secs(1))?;
                connection.execute_batch(
                    "PRAGMA synchronous=FULL; PRAGMA fullfsync=ON; PRAGMA checkpoint_fullfsync=ON;",
                )?;
                Ok(connection)
            })
            .map_err(|error| tracing::warn!(%error, "no background checkpointer"))
            .ok()?;
        let (signals, receiver) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpointer".to_owned())
            .spawn(move || Self::run(&connection, &receiver))
            .map_err(|error| tracing::warn!(%error, "no background checkpointer"))
            .ok()?;
        Some(Checkpointer { signals, thread })
    }

    fn run(connection: &Connection, signals: &std::sync::mpsc::Receiver<()>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut dirty = false;
        let mut last = Instant::now();
        loop {
            match signals.recv_timeout(CHECKPOINT_INTERVAL) {
                Ok(()) => dirty = true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if dirty && last.elapsed() >= CHECKPOINT_INTERVAL {
                if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::debug!(%error, "background checkpoint");
                }
                dirty = false;
                last = Instant::now();
            }
        }
    }

    /// A commit added frames to the WAL.
    fn wal_grew(&self) {
        let _ = self.signals.send(());
    }

    fn stop(self) {
        drop(self.signals);
        let _ = self.thread.join();
    }
}

fn store_error(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

/// Runs one transaction over every job and commits once. `Err` when anything in it failed:
/// then nothing of it is stored, and the caller retries each request alone, so one request's
/// failure never fails (or acknowledges) another.
fn group_transaction(
    connection: &mut Connection,
    work: &Work<'_>,
    settings: Settings,
    now_ms: i64,
) -> Result<Vec<AcceptOutcome>, StoreError> {
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_error)?;
    let outcomes = {
        let mut inserts =
            Inserts::prepare(&transaction, settings.queue_forwarding).map_err(store_error)?;
        work.requests
            .iter()
            .map(|request| inserts.insert_request(request, now_ms))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?
    };
    for done in work.forwarded {
        transaction
            .prepare_cached(
                "UPDATE forward_jobs SET forwarded_at_ms = ?1, attempts = ?2, last_error = NULL
                 WHERE id = ?3",
            )
            .and_then(|mut update| update.execute(params![done.at_ms, done.attempts, done.job_id]))
            .map_err(store_error)?;
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
    Ok(outcomes)
}

/// Keeps refused requests and notes of failed forwarding attempts, after the batch's answers
/// went out: they are best effort, so their transaction is not synced (`synchronous=NORMAL`;
/// the next durable commit syncs them along) and its failure fails nobody.
fn keep_best_effort(
    connection: &mut Connection,
    refusals: &[RefusedRequest],
    notes: &[ForwardNote],
    keep_refused: u32,
    metrics: &Metrics,
) -> rusqlite::Result<()> {
    let kept = super::within_refusal_budget(refusals, metrics);
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

fn insert_notes(connection: &Connection, notes: &[ForwardNote]) -> rusqlite::Result<()> {
    let mut update = connection.prepare_cached(
        "UPDATE forward_jobs SET attempts = ?1, last_error = ?2
         WHERE id = ?3 AND forwarded_at_ms IS NULL",
    )?;
    for note in notes {
        update.execute(params![note.attempts, note.error, note.job_id])?;
    }
    Ok(())
}

/// The statements that store accepted requests, taken from the statement cache once per
/// transaction rather than once per request (each `prepare_cached` hashes the SQL text and
/// moves the statement out of and back into the cache).
struct Inserts<'c> {
    request: rusqlite::CachedStatement<'c>,
    event: rusqlite::CachedStatement<'c>,
    /// `Some` when forwarding is on.
    forward_job: Option<rusqlite::CachedStatement<'c>>,
    connection: &'c Connection,
}

impl<'c> Inserts<'c> {
    fn prepare(connection: &'c Connection, queue_forwarding: bool) -> rusqlite::Result<Self> {
        Ok(Inserts {
            request: connection.prepare_cached(
                "INSERT INTO requests (received_at_ms, method, path, headers, body, auth, account_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            event: connection.prepare_cached(
                "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (account_id, event_id) DO NOTHING",
            )?,
            forward_job: if queue_forwarding {
                Some(connection.prepare_cached(
                    "INSERT INTO forward_jobs (request_id, queued_at_ms) VALUES (?1, ?2)",
                )?)
            } else {
                None
            },
            connection,
        })
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
            // One insert-if-absent: the unique key decides, so two racing requests (or the
            // same event twice in one request) cannot both store it.
            let inserted = self.event.execute(params![
                request.account_id,
                event.event_id,
                request_id,
                event.event_name,
                event.timestamp_ms,
                event.known,
                event.raw.start,
                event.raw.len(),
            ])?;
            new.push(inserted == 1);
        }
        // The job commits with the request or not at all: a 2xx means "stored AND queued". A
        // request whose events were all duplicates brings the app nothing new, so it is not
        // forwarded again (its events went with the request that first stored them).
        let queued_for_forwarding = match &mut self.forward_job {
            Some(insert) if new.iter().any(|new| *new) => {
                insert.execute(params![request_id, now_ms])?;
                true
            }
            _ => false,
        };
        Ok(AcceptOutcome {
            new,
            queued_for_forwarding,
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

/// The forwarding queue of a [`SqliteStore`]: reads on its own connection, writes through the
/// store's writer thread (so marks ride the group commit).
pub struct SqliteForwardQueue {
    jobs: mpsc::Sender<Job>,
    // A std Mutex: locked only inside `spawn_blocking`, never across `.await`.
    reader: Arc<Mutex<Connection>>,
    jobs_signal: Arc<Notify>,
}

impl SqliteForwardQueue {
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let connection = reader
                .lock()
                .map_err(|_| StoreError("the forwarding reader is poisoned".to_owned()))?;
            query(&connection).map_err(store_error)
        })
        .await
        .map_err(|error| StoreError(error.to_string()))?
    }
}

impl ForwardQueue for SqliteForwardQueue {
    fn next_pending(&self) -> StoreFuture<'_, Result<Option<ForwardJob>, StoreError>> {
        Box::pin(self.read(|connection| {
            connection
                .prepare_cached(
                    "SELECT j.id, j.request_id, r.received_at_ms, r.headers, r.body, j.attempts
                     FROM forward_jobs j JOIN requests r ON r.id = j.request_id
                     WHERE j.forwarded_at_ms IS NULL ORDER BY j.id LIMIT 1",
                )?
                .query_row([], |row| {
                    let headers: String = row.get(3)?;
                    let body: Vec<u8> = row.get(4)?;
                    Ok(ForwardJob {
                        job_id: row.get(0)?,
                        request_id: row.get(1)?,
                        received_at_ms: row.get(2)?,
                        headers: serde_json::from_str(&headers).unwrap_or_default(),
                        body: body.into(),
                        attempts: row.get(5)?,
                    })
                })
                .optional()
        }))
    }

    fn mark_forwarded(
        &self,
        job_id: i64,
        attempts: u32,
    ) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let done = ForwardDone {
                job_id,
                attempts,
                at_ms: verify::unix_now_ms(),
            };
            self.jobs
                .send(Job::ForwardDone(done, reply))
                .await
                .map_err(|_| StoreError("the store is closed".to_owned()))?;
            answer
                .await
                .map_err(|_| StoreError("the store writer stopped".to_owned()))?
        })
    }

    fn note_failure(&self, job_id: i64, attempts: u32, error: String) {
        // Never wait: a note is for people, the attempt count in memory is what matters.
        let _ = self.jobs.try_send(Job::ForwardNote(ForwardNote {
            job_id,
            attempts,
            error,
        }));
    }

    fn pending_count(&self) -> StoreFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.read(|connection| {
            connection.query_row(
                "SELECT COUNT(*) FROM forward_jobs WHERE forwarded_at_ms IS NULL",
                [],
                |row| {
                    row.get::<_, i64>(0)
                        .map(|count| u64::try_from(count).unwrap_or(0))
                },
            )
        }))
    }

    fn jobs_added(&self) -> StoreFuture<'_, ()> {
        // `notify_one` keeps a permit when nobody waits, so a wake-up is never lost.
        Box::pin(self.jobs_signal.notified())
    }
}

/// Read access for `receiver events` and `receiver export`, on its own connection.
pub struct SqliteReader {
    connection: Connection,
}

impl SqliteReader {
    /// Opens an existing store for reading. It may be in use by a listener at the same time.
    ///
    /// # Errors
    /// The file does not exist or is not a store.
    pub fn open(path: &Path) -> anyhow::Result<SqliteReader> {
        if !path.exists() {
            anyhow::bail!("no store at {} (give --store sqlite:PATH)", path.display());
        }
        // Read-write without create: a read-only WAL reader would need the -shm file to exist.
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening the store {}", path.display()))?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let has_events: Option<String> = connection
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'events'",
                [],
                |row| row.get(0),
            )
            .optional()
            .with_context(|| format!("reading the store {}", path.display()))?;
        if has_events.is_none() {
            anyhow::bail!(
                "{} is not a receiver store (no events table)",
                path.display()
            );
        }
        check_layout(&connection, false)
            .with_context(|| format!("reading the store {}", path.display()))?;
        Ok(SqliteReader { connection })
    }
}

/// The table names of this layout, for the shared read queries.
const TABLES: query::Tables = query::Tables {
    requests: "requests",
    events: "events",
    forward_jobs: "forward_jobs",
    refused: "refused_requests",
    raw_text: RAW_TEXT,
    placeholder: |n| format!("?{n}"),
};

/// The shared queries' values as SQLite values.
fn sqlite_values(values: Vec<query::SqlValue>) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    values
        .into_iter()
        .map(|value| match value {
            query::SqlValue::Integer(integer) => Value::Integer(integer),
            query::SqlValue::Text(text) => Value::Text(text),
        })
        .collect()
}

impl EventQuery for SqliteReader {
    fn events(&self, filter: &EventFilter) -> anyhow::Result<Vec<StoredEvent>> {
        let query = query::events(&TABLES, filter);
        let mut statement = self.connection.prepare(&query.sql)?;
        let values = sqlite_values(query.values);
        let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
            Ok(StoredEvent {
                account_id: row.get(0)?,
                event_id: row.get(1)?,
                event_name: row.get(2)?,
                timestamp_ms: row.get(3)?,
                received_at_ms: row.get(4)?,
                known: row.get(5)?,
                raw: String::from_utf8_lossy(&row.get::<_, Vec<u8>>(6)?).into_owned(),
                request_id: row.get(7)?,
                auth: row.get(8)?,
                forwarding: query::forwarding_state(row.get(9)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count(&self, filter: &EventFilter) -> anyhow::Result<u64> {
        let query = query::count(&TABLES, filter);
        let count: i64 = self.connection.query_row(
            &query.sql,
            rusqlite::params_from_iter(sqlite_values(query.values)),
            |row| row.get(0),
        )?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn captures(
        &self,
        filter: &CaptureFilter,
        each: &mut dyn FnMut(CaptureRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let Some(query) = query::captures(&TABLES, filter) else {
            return Ok(0);
        };
        let mut statement = self.connection.prepare(&query.sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(sqlite_values(query.values)))?;
        let mut handed = 0;
        while let Some(row) = rows.next()? {
            let body: Vec<u8> = row.get(4)?;
            let account: Option<i64> = row.get(6)?;
            if !query::capture_matches(filter, account, &body) {
                continue;
            }
            let headers: String = row.get(3)?;
            each(query::capture_record(
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                &headers,
                body,
                row.get(5)?,
            ))?;
            handed += 1;
        }
        Ok(handed)
    }
}
