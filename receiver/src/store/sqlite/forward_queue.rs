//! The forwarders' side of the SQLite store: they read the queues on a connection of their
//! own and record deliveries and parks through the writer thread (so they ride its group
//! commit), failed attempts best effort through the same thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::jobs::Job;
use crate::routing::Routes;
use crate::store::forward::sql::{self, Dialect, SqlSession, Value};
use crate::store::forward::{
    control, AdoptReport, AttemptResult, ForwardJob, ForwardQueue, JobOutcome, JobSignals,
    TargetBacklog,
};
use crate::store::{StoreError, StoreFuture};

/// The forwarding queues of a `SqliteStore`: reads on its own connection, outcomes through
/// the store's writer thread.
pub struct SqliteForwardQueue {
    jobs: mpsc::Sender<Job>,
    // A std Mutex: locked only inside `spawn_blocking`, never across `.await`.
    reader: Arc<Mutex<Connection>>,
    signals: Arc<JobSignals>,
}

impl SqliteForwardQueue {
    /// The queues of the store at `path`, with a connection of their own; outcomes go
    /// through `jobs` to the store's writer, which wakes `signals` after a commit that
    /// queued jobs.
    ///
    /// # Errors
    /// The store file cannot be opened again.
    pub(super) fn open(
        path: &Path,
        jobs: mpsc::Sender<Job>,
        signals: Arc<JobSignals>,
    ) -> anyhow::Result<SqliteForwardQueue> {
        let connection = Connection::open(path)
            .and_then(|connection| {
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                // The adoption of jobs queued before targets had names writes here.
                connection.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
                Ok(connection)
            })
            .with_context(|| format!("opening the store {} for forwarding", path.display()))?;
        Ok(SqliteForwardQueue {
            jobs,
            reader: Arc::new(Mutex::new(connection)),
            signals,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let connection = reader
                .lock()
                .map_err(|_| StoreError("the forwarding reader is poisoned".to_owned()))?;
            query(&connection).map_err(|error| StoreError(format!("{error:#}")))
        })
        .await
        .map_err(|error| StoreError(error.to_string()))?
    }
}

impl ForwardQueue for SqliteForwardQueue {
    fn head<'a>(
        &'a self,
        target: &'a str,
    ) -> StoreFuture<'a, Result<Option<ForwardJob>, StoreError>> {
        let target = target.to_owned();
        Box::pin(self.read(move |connection| {
            let rows = SqlSession::query(
                connection,
                &Dialect::Sqlite.render(sql::HEAD),
                &[Value::text(&target)],
            )?;
            rows.first().map(sql::head_job).transpose()
        }))
    }

    fn record(&self, outcome: JobOutcome) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let AttemptResult::Failed { .. } = outcome.result {
                // Never wait: a failure is for people; the forwarder keeps its schedule in
                // memory.
                let _ = self.jobs.try_send(Job::ForwardNote(outcome));
                return Ok(());
            }
            let (reply, answer) = oneshot::channel();
            self.jobs
                .send(Job::ForwardDone(outcome, reply))
                .await
                .map_err(|_| StoreError("the store is closed".to_owned()))?;
            answer
                .await
                .map_err(|_| StoreError("the store writer stopped".to_owned()))?
        })
    }

    fn backlog(&self) -> StoreFuture<'_, Result<Vec<TargetBacklog>, StoreError>> {
        Box::pin(self.read(|connection| control::backlog(connection)))
    }

    fn adopt_untargeted(&self, routes: Routes) -> StoreFuture<'_, Result<AdoptReport, StoreError>> {
        Box::pin(async move {
            let report = self
                .read(move |connection| {
                    control::adopt_untargeted(connection, &routes, verify::unix_now_ms())
                })
                .await?;
            if report.queued > 0 {
                self.signals.all();
            }
            Ok(report)
        })
    }

    fn changes(&self, target: &str) -> watch::Receiver<u64> {
        self.signals.subscribe(target)
    }

    fn wake_all(&self) {
        self.signals.all();
    }
}
