//! The shared store: any number of receivers on one PostgreSQL database (SPEC section 7).
//!
//! Each receiver group-commits its concurrent requests: a few writer tasks take every request
//! waiting in the queue and store the whole batch with ONE statement in its own transaction
//! (autocommit), so a batch costs one round trip and one WAL flush. The statement inserts the
//! requests, then their events with `INSERT … ON CONFLICT (account_id, event_id) DO NOTHING
//! RETURNING`, rows sorted by key: two batches (of one receiver or of two) that hold the same
//! keys take their index locks in the same order, so they wait for each other and never
//! deadlock, and the one that waits sees the other's commit and counts a duplicate. So the
//! `stored` / `duplicates` of every answer are true even when two receivers race on one event.
//! If a batch fails inside the database (one request's data), it is retried one request at a
//! time so that no request fails because of another; if the connection fails, every request
//! of the batch gets 503.
//!
//! With `--forward-to`, a batch also inserts its forward jobs (one per target that takes one
//! of a request's new events), under a transaction-level advisory lock, so job ids and queue
//! places are handed out in commit order across receivers; per target, one receiver at a
//! time forwards: the one whose session holds that target's advisory lock (its lease), which
//! the server frees the moment that receiver's connection ends (a crash included).
//!
//! Tables are prefixed `receiver_` so that the sender's tables and anyone else's can share the
//! database; they are created on first use under an advisory lock, with their version in
//! `receiver_schema`. Refused requests are kept best effort (`synchronous_commit = off`) and
//! bounded for the whole database.
//!
//! Its parts: `schema` (the tables, their version and the checks at first use), `writer`
//! (what the store's tasks share, and the group commit), `batch` (one batch's statement and
//! its columns), `error` (the database's errors in words), `forward_queue` (the forwarding
//! lease and queue), `reader` (`events` and `export`), `requests` (the inspector's reads),
//! `maintenance` (pruning and erasure, by any receiver or command, one at a time).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use common::postgres::DatabaseUrl;
use tokio::sync::{mpsc, oneshot};

use super::maintenance::{PruneBatch, PruneCursor, PruneRule};
use super::{AcceptedRequest, RefusedRequest, Store, StoreError, StoreFuture};
use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;
use crate::routing::Routes;
use writer::{write_accepts, write_refusals, AcceptJob, Inner};

mod batch;
mod error;
mod forward_control;
mod forward_queue;
mod maintenance;
mod reader;
mod requests;
pub(super) mod schema;
mod writer;

pub use forward_queue::PostgresForwardQueue;
pub use maintenance::PostgresMaintenance;
pub use reader::PostgresReader;
pub use requests::{PostgresRequestPool, PostgresRequestReader, GAP_WAIT, LATE_WINDOW};

/// Requests waiting for a writer; senders wait (back-pressure) when it is full.
const QUEUE_CAPACITY: usize = 4096;
/// Writer tasks: while some wait for their commit, another gathers the next batch.
const WRITERS: usize = 3;
/// Connections in the pool: the writers, health checks, refusals and forwarding notes.
const POOL_SIZE: usize = WRITERS + 3;
/// Refusals waiting to be kept; more are dropped (counted).
const REFUSAL_QUEUE: usize = 2048;

/// The PostgreSQL store of one receiver. Cheap to share behind an `Arc`.
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// `None` once closed.
    accepts: Mutex<Option<mpsc::Sender<AcceptJob>>>,
    refusals: Mutex<Option<mpsc::Sender<RefusedRequest>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

impl PostgresStore {
    /// Starts the writers for the database at `url`. Nothing is connected yet: the first
    /// commit (or health check) connects and creates the tables if needed.
    ///
    /// # Errors
    /// Not inside a tokio runtime, or the pool cannot be built.
    pub fn open(
        url: &DatabaseUrl,
        keep_refused: u32,
        routes: Routes,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<PostgresStore> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("the PostgreSQL store runs inside a tokio runtime")?;
        let inner = Arc::new(Inner::new(
            url.pool("receiver", POOL_SIZE)?,
            url,
            keep_refused,
            routes,
            Arc::clone(&metrics),
        ));
        let (accepts, accept_queue) = mpsc::channel(QUEUE_CAPACITY);
        let accept_queue = Arc::new(tokio::sync::Mutex::new(accept_queue));
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            tasks.push(runtime.spawn(write_accepts(Arc::clone(&inner), Arc::clone(&accept_queue))));
        }
        // Create (or check) the tables now rather than at the first request, so `events` and
        // `export` find them; a database that is down now is tried again at first use.
        let preparing = Arc::clone(&inner);
        runtime.spawn(async move {
            let _ = preparing.client().await;
        });
        let (refusals, refusal_queue) = mpsc::channel(REFUSAL_QUEUE);
        tasks.push(runtime.spawn(write_refusals(Arc::clone(&inner), refusal_queue)));
        metrics.set_store_up(true);
        Ok(PostgresStore {
            inner,
            accepts: Mutex::new(Some(accepts)),
            refusals: Mutex::new(Some(refusals)),
            tasks: Mutex::new(tasks),
            closed: AtomicBool::new(false),
        })
    }

    /// The forwarding queues over this store: a target's jobs are read by the receiver that
    /// holds that target's lease, and recorded by any.
    pub fn forward_queue(&self) -> PostgresForwardQueue {
        PostgresForwardQueue::new(Arc::clone(&self.inner))
    }
}

impl Store for PostgresStore {
    fn accept(
        &self,
        request: Arc<AcceptedRequest>,
    ) -> StoreFuture<'_, Result<AcceptOutcome, StoreError>> {
        let sender = self.accepts.lock().ok().and_then(|sender| sender.clone());
        Box::pin(async move {
            let sender = sender.ok_or_else(|| StoreError("the store is closed".to_owned()))?;
            let (reply, answer) = oneshot::channel();
            sender
                .send((request, reply))
                .await
                .map_err(|_| StoreError("the store is closed".to_owned()))?;
            answer
                .await
                .map_err(|_| StoreError("the store writer stopped".to_owned()))?
        })
    }

    fn record_refusal(&self, refused: RefusedRequest) {
        let sender = self.refusals.lock().ok().and_then(|sender| sender.clone());
        // Never wait: a full queue drops the refusal (counted).
        if sender.is_none_or(|sender| sender.try_send(refused).is_err()) {
            self.inner.metrics.refusal_not_kept();
        }
    }

    fn check_health(&self) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Relaxed) {
                return Err(StoreError("the store is closed".to_owned()));
            }
            self.inner.health().await
        })
    }

    fn close(&self) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Relaxed);
            // Dropping the senders ends the tasks once they have written what is queued.
            if let Ok(mut sender) = self.accepts.lock() {
                sender.take();
            }
            if let Ok(mut sender) = self.refusals.lock() {
                sender.take();
            }
            let tasks = self
                .tasks
                .lock()
                .map(|mut tasks| std::mem::take(&mut *tasks))
                .unwrap_or_default();
            for task in tasks {
                let _ = task.await;
            }
            self.inner.pool.close();
            Ok(())
        })
    }

    fn prune_batch(
        &self,
        rule: PruneRule,
        cursor: PruneCursor,
    ) -> StoreFuture<'_, Result<PruneBatch, StoreError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Relaxed) {
                return Err(StoreError("the store is closed".to_owned()));
            }
            let mut client = self.inner.client().await.map_err(|failed| failed.error)?;
            let client: &mut tokio_postgres::Client = &mut client;
            maintenance::prune_batch(client, rule, cursor, false)
                .await
                .map_err(|error| error::store_error(&error))
        })
    }
}
