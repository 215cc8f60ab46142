//! The forwarder's side of the SQLite store: it reads the queue on a connection of its own
//! and marks jobs done through the writer thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _};
use tokio::sync::{mpsc, oneshot, Notify};

use super::jobs::{store_error, ForwardDone, ForwardNote, Job};
use crate::store::{ForwardJob, ForwardQueue, StoreError, StoreFuture};

/// The forwarding queue of a `SqliteStore`: reads on its own connection, writes through the
/// store's writer thread (so marks ride the group commit).
pub struct SqliteForwardQueue {
    jobs: mpsc::Sender<Job>,
    // A std Mutex: locked only inside `spawn_blocking`, never across `.await`.
    reader: Arc<Mutex<Connection>>,
    jobs_signal: Arc<Notify>,
}

impl SqliteForwardQueue {
    /// The queue of the store at `path`, with a read connection of its own; marks go through
    /// `jobs` to the store's writer, which wakes `jobs_signal` after a commit that queued jobs.
    ///
    /// # Errors
    /// The store file cannot be opened again.
    pub(super) fn open(
        path: &Path,
        jobs: mpsc::Sender<Job>,
        jobs_signal: Arc<Notify>,
    ) -> anyhow::Result<SqliteForwardQueue> {
        let connection = Connection::open(path)
            .and_then(|connection| {
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(connection)
            })
            .with_context(|| format!("opening the store {} for forwarding", path.display()))?;
        Ok(SqliteForwardQueue {
            jobs,
            reader: Arc::new(Mutex::new(connection)),
            jobs_signal,
        })
    }

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
