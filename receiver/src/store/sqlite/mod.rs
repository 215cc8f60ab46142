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
//! Why commits only append: the thread also decides duplicates, from the store's keys it holds
//! in memory (`keys`), so the events table needs no index on its random keys; one listener per
//! store (`lock`) keeps those keys the only way a key enters the store.
//!
//! Forwarding (`--forward-to`) adds the `forward_jobs` table: a request's jobs (one per target
//! that takes one of its new events) are inserted by `insert_request`, inside the request's
//! own transaction, and deliveries and parks ride the next group commit through the same
//! writer, so the listener has one writer. The forwarders read the queues on a connection of
//! their own ([`SqliteForwardQueue`]); WAL readers never block the writer. An operator's
//! retry or skip (`receiver forward`, the inspector) commits on a connection of its own,
//! under SQLite's write lock like every commit.
//!
//! Its parts: `schema` (the layout and its version), `jobs` (what goes to the writer thread
//! and comes back), `writer` (the thread and its group commit), `checkpointer` (the WAL copied
//! into the file off the commit path), `forward_queue` (the forwarder's side), `reader`
//! (`events` and `export`), `requests` (the inspector's reads), `maintenance` (pruning and
//! erasure: the listener's prunes run in the writer thread, between group commits), `backup`
//! (`receiver backup`), `keys` (the dedupe keys in memory), `lock` (one listener per store).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use super::forward::JobSignals;
use super::maintenance::{PruneBatch, PruneCursor, PruneRule};
use super::{AcceptedRequest, RefusedRequest, Store, StoreError, StoreFuture};
use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;
use crate::routing::Routes;
use jobs::{Job, PruneOrder};
use writer::{Settings, Writer};

mod backup;
mod checkpointer;
mod connection;
mod forward_control;
mod forward_queue;
mod jobs;
mod keys;
mod lock;
mod maintenance;
mod reader;
mod requests;
mod schema;
mod writer;

pub use backup::backup;
pub use forward_queue::SqliteForwardQueue;
pub use maintenance::SqliteMaintenance;
pub use reader::SqliteReader;

/// Jobs waiting for the writer; senders wait (back-pressure) when it is full.
const QUEUE_CAPACITY: usize = 4096;

/// The SQLite store. Cheap to share behind an `Arc`; the connection lives in the writer thread.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    path: PathBuf,
    /// Woken by the writer after a commit that queued forward jobs.
    signals: Arc<JobSignals>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and starts the writer thread.
    ///
    /// # Errors
    /// The file cannot be opened or created, or is not a database of this schema.
    ///
    /// With forwarding on (`routes` names targets), every request gets a forward job in its
    /// transaction for each target that takes one of its new events (see
    /// [`SqliteStore::forward_queue`]).
    pub fn open(
        path: &Path,
        keep_refused: u32,
        routes: Routes,
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
        // One listener per store, before anything is written: its dedupe keys are in memory.
        let lock = lock::ListenLock::take(path)?;
        // Open once here so that a wrong path fails at startup, not at the first request.
        let connection = connection::open_writer(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        let loading = std::time::Instant::now();
        let keys = keys::KeySet::load(&connection)
            .with_context(|| format!("reading the dedupe keys of {}", path.display()))?;
        tracing::info!(
            keys = keys.len(),
            seconds = loading.elapsed().as_secs_f64(),
            "dedupe keys read from the store"
        );
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let signals = Arc::new(JobSignals::new(&routes));
        Writer::start(
            path,
            (connection, keys, lock),
            Settings {
                keep_refused,
                routes: Arc::new(routes),
            },
            Arc::clone(&metrics),
            Arc::clone(&signals),
            receiver,
        )?;
        metrics.set_store_up(true);
        Ok(SqliteStore {
            jobs: sender,
            metrics,
            path: path.to_owned(),
            signals,
        })
    }

    /// The forwarding queues over this store, with a connection of their own.
    ///
    /// # Errors
    /// The store file cannot be opened again.
    pub fn forward_queue(&self) -> anyhow::Result<SqliteForwardQueue> {
        SqliteForwardQueue::open(&self.path, self.jobs.clone(), Arc::clone(&self.signals))
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

    fn prune_batch(
        &self,
        rule: PruneRule,
        cursor: PruneCursor,
    ) -> StoreFuture<'_, Result<PruneBatch, StoreError>> {
        Box::pin(self.submit(move |reply| Job::Prune(PruneOrder { rule, cursor }, reply)))
    }
}
