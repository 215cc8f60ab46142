//! The connection to the database: [`PostgresState`] itself (a pool, and a small runtime of
//! its own on which every query runs, so the synchronous trait methods may be called from any
//! thread, inside another runtime too), and [`Db`], statements that count their round trips.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use common::postgres::DatabaseUrl;
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::sealing::SecretKey;

/// Connections per process: a worker per webhook (at most five) and the commands' reads.
const POOL_SIZE: usize = 8;

/// Registrations and queue in a PostgreSQL database.
pub struct PostgresState {
    pub(super) pool: Pool,
    pub(super) url: DatabaseUrl,
    /// Dropped with `shutdown_background`, which is allowed inside another runtime.
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    pub(super) round_trips: Arc<AtomicU64>,
    pub(super) last_prune_ms: AtomicI64,
    /// Raised by a NOTIFY on the work channel (see `notify.rs`).
    pub(super) work: Arc<tokio::sync::Notify>,
    /// Set once the listening connection is started.
    pub(super) listening: std::sync::OnceLock<()>,
    /// Seals and opens the secret columns (see `crate::sealing`).
    pub(super) secret_key: Option<SecretKey>,
}

impl std::fmt::Debug for PostgresState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresState")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresState {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresState {
    /// Starts the store's runtime and its pool of connections to `url` (connecting lazily).
    ///
    /// # Errors
    /// The runtime cannot be started; the pool cannot be built.
    pub(super) fn connect(
        url: &DatabaseUrl,
        secret_key: Option<SecretKey>,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sender-postgres")
            .enable_all()
            .build()
            .context("starting the PostgreSQL runtime")?;
        let pool = url.pool("sender", POOL_SIZE)?;
        Ok(Self {
            pool,
            url: url.clone(),
            runtime: Some(runtime),
            round_trips: Arc::default(),
            last_prune_ms: AtomicI64::new(i64::MIN),
            work: Arc::default(),
            listening: std::sync::OnceLock::new(),
            secret_key,
        })
    }

    /// Statements sent to the server so far (the benchmark reports round trips per delivery).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs `work` on this store's runtime and waits for it, from any thread (inside another
    /// runtime too: the wait is a plain channel, not a nested runtime).
    pub(super) fn call<T, F>(
        &self,
        work: impl FnOnce(Pool, Arc<AtomicU64>) -> F,
    ) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .context("the PostgreSQL state is closed")?;
        let future = work(self.pool.clone(), self.round_trips.clone());
        let (done, result) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = done.send(future.await);
        });
        let url = &self.url;
        result
            .recv()
            .map_err(|_| anyhow::anyhow!("the PostgreSQL task for {url} stopped"))?
            .map_err(|error| {
                // Database trouble names the database; a refusal (a sixth webhook, a stale
                // edit) is the user's to read as it is.
                let from_database = error.chain().any(|cause| {
                    cause.is::<tokio_postgres::Error>()
                        || cause.is::<deadpool_postgres::PoolError>()
                });
                if from_database {
                    error.context(format!("PostgreSQL state {url}"))
                } else {
                    error
                }
            })
    }
}

/// Statements on one connection or transaction, counting round trips to the server.
pub(super) struct Db<'a, C> {
    client: &'a C,
    trips: &'a AtomicU64,
}

impl<'a, C: GenericClient> Db<'a, C> {
    pub(super) fn new(client: &'a C, trips: &'a AtomicU64) -> Self {
        Self { client, trips }
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        // Cached per connection: after the first use a statement costs one round trip.
        let statement = self.client.prepare_cached(sql).await?;
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.client.query(&statement, params).await
    }

    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub(super) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Row> {
        self.query_opt(sql, params)
            .await?
            .context("the database returned no row")
    }

    pub(super) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.client.prepare_cached(sql).await?;
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.client.execute(&statement, params).await
    }
}
