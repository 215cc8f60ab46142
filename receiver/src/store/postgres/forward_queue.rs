//! Forwarding from the shared store: per target, one receiver at a time holds the lease (a
//! session advisory lock on the target) and reads that target's jobs; any receiver records
//! outcomes, counts the backlog and adopts jobs queued before targets had names.
//!
//! The leases live on one session per receiver, taken out of the pool for good: the locks
//! are that session's, and the server frees them all the moment it ends (the receiver stops,
//! dies or loses its connection); another receiver takes each within a second (its
//! forwarders look again at every idle poll). A forwarder that lost its session mid-attempt
//! may send its request once more than needed: at least once, as after a crash.
//!
//! Receivers of the layout before several targets forwarded under one exclusive lock
//! (`LEGACY_LEASE`); this session holds it shared, so while one of them still forwards
//! (say, during a rolling upgrade) no receiver of this build does, and the other way round:
//! the old one would send every target's jobs to its single URL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object};
use tokio::sync::watch;

use super::error::store_error;
use super::forward_control::{postgres_parameters, postgres_row, Driver, PostgresSession};
use super::writer::Inner;
use crate::routing::Routes;
use crate::store::forward::sql::{self, Dialect};
use crate::store::forward::{
    control, AdoptReport, ForwardJob, ForwardQueue, JobOutcome, TargetBacklog,
};
use crate::store::{StoreError, StoreFuture};

/// The one lease of the layout before several targets, held exclusively by the receivers
/// of that build, and shared by this one's.
const LEGACY_LEASE: i64 = 0x7265_6376_0000_0003;
/// The first key of the per-target leases (`pg_try_advisory_lock(int4, int4)`: two-key locks
/// are a key space apart from the one-key locks above): `recv` in ASCII.
const TARGET_LEASE_CLASS: i32 = 0x7265_6376;
/// Longest an outcome's statements may take.
const RECORD_TIMEOUT: Duration = Duration::from_secs(15);

/// The second key of `target`'s lease: FNV-1a of its URL, the same on every host and build.
/// Two targets of one hash would share a lease: one receiver would forward both, which is
/// still one at a time per target.
fn lease_key(target: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in target.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// The session that holds this receiver's leases, and which targets it holds.
struct LeaseSession {
    client: ClientWrapper,
    held: HashSet<String>,
}

/// The forwarding queues of a `PostgresStore`.
pub struct PostgresForwardQueue {
    inner: Arc<Inner>,
    /// `None` until a forwarder first looks, and after the session ended. A tokio Mutex:
    /// held across the queries made on that session.
    lease: tokio::sync::Mutex<Option<LeaseSession>>,
    /// Said once until it changes: a receiver of the older layout forwards.
    older_receiver_said: AtomicBool,
}

impl PostgresForwardQueue {
    /// The queues over the store's shared state; no lease is held yet.
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            lease: tokio::sync::Mutex::new(None),
            older_receiver_said: AtomicBool::new(false),
        }
    }

    /// The head of `target`'s queue, if this receiver holds (or now takes) its lease.
    async fn head_if_leased(&self, target: &str) -> Result<Option<ForwardJob>, StoreError> {
        let failed = |error: tokio_postgres::Error| store_error(&error);
        let mut lease = self.lease.lock().await;
        if lease
            .as_ref()
            .is_some_and(|session| session.client.is_closed())
        {
            tracing::warn!(
                "the session holding this receiver's forwarding leases ended; taking them again"
            );
            *lease = None;
        }
        if lease.is_none() {
            let session = self.inner.client().await.map_err(|failed| failed.error)?;
            let shared: bool = session
                .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&LEGACY_LEASE])
                .await
                .map_err(failed)?
                .get(0);
            if !shared {
                if !self.older_receiver_said.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "a receiver of an older version forwards from this database (it holds \
                         the single forwarding lease); stop or upgrade it: until then this one \
                         does not forward"
                    );
                }
                return Ok(None);
            }
            self.older_receiver_said.store(false, Ordering::Relaxed);
            *lease = Some(LeaseSession {
                client: Object::take(session),
                held: HashSet::new(),
            });
        }
        let Some(session) = lease.as_mut() else {
            return Ok(None);
        };
        if !session.held.contains(target) {
            let taken: bool = session
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&TARGET_LEASE_CLASS, &lease_key(target)],
                )
                .await
                .map_err(failed)?
                .get(0);
            if !taken {
                // Another receiver forwards to this target.
                return Ok(None);
            }
            tracing::info!(%target, "this receiver holds the forwarding lease of the target");
            session.held.insert(target.to_owned());
        }
        let statement = session
            .client
            .prepare_cached(&Dialect::Postgres.render(sql::HEAD))
            .await
            .map_err(failed)?;
        let rows = session
            .client
            .query(&statement, &[&target])
            .await
            .map_err(failed)?;
        match rows.first() {
            None => Ok(None),
            Some(row) => postgres_row(row)
                .and_then(|row| sql::head_job(&row))
                .map(Some)
                .map_err(|error| StoreError(format!("{error:#}"))),
        }
    }

    /// Records an outcome and its attempt in one transaction (nothing for a job erased
    /// meanwhile).
    async fn record_outcome(&self, outcome: &JobOutcome) -> Result<(), StoreError> {
        let failed = |error: tokio_postgres::Error| store_error(&error);
        let recorded = async {
            let mut client = self.inner.client().await.map_err(|failed| failed.error)?;
            let transaction = client.transaction().await.map_err(failed)?;
            let (update, values) = sql::outcome_update(outcome);
            let attempt =
                sql::attempt_values(outcome.job_id, &outcome.attempt, outcome.result.outcome());
            for (statement, values) in [(update, values), (sql::INSERT_ATTEMPT, attempt)] {
                let parameters = postgres_parameters(&values);
                let changed = transaction
                    .execute(&Dialect::Postgres.render(statement), &parameters)
                    .await
                    .map_err(failed)?;
                // The job was erased while it was being sent (`receiver erase`; the update
                // waited for that removal's commit, or holds the row against it): nothing
                // to record, and an attempt would break the foreign key.
                if changed == 0 {
                    break;
                }
            }
            transaction.commit().await.map_err(failed)
        };
        tokio::time::timeout(RECORD_TIMEOUT, recorded)
            .await
            .unwrap_or_else(|_| Err(StoreError("recording the attempt timed out".to_owned())))
    }

    /// Runs `work` on a pooled connection, as a blocking session on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PostgresSession<'_>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let client = self.inner.client().await.map_err(|failed| failed.error)?;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let session = PostgresSession {
                client: &client,
                runtime: Driver::Shared(&runtime),
            };
            work(&session).map_err(|error| StoreError(format!("{error:#}")))
        })
        .await
        .map_err(|error| StoreError(error.to_string()))?
    }
}

impl ForwardQueue for PostgresForwardQueue {
    fn head<'a>(
        &'a self,
        target: &'a str,
    ) -> StoreFuture<'a, Result<Option<ForwardJob>, StoreError>> {
        Box::pin(self.head_if_leased(target))
    }

    fn record(&self, outcome: JobOutcome) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.record_outcome(&outcome).await })
    }

    fn backlog(&self) -> StoreFuture<'_, Result<Vec<TargetBacklog>, StoreError>> {
        Box::pin(self.blocking(|session| control::backlog(session)))
    }

    fn adopt_untargeted(&self, routes: Routes) -> StoreFuture<'_, Result<AdoptReport, StoreError>> {
        Box::pin(async move {
            let report = self
                .blocking(move |session| {
                    control::adopt_untargeted(session, &routes, verify::unix_now_ms())
                })
                .await?;
            if report.queued > 0 {
                self.inner.signals.all();
            }
            Ok(report)
        })
    }

    fn changes(&self, target: &str) -> watch::Receiver<u64> {
        // Jobs committed by this receiver; other receivers' jobs are found by the idle poll.
        self.inner.signals.subscribe(target)
    }

    fn wake_all(&self) {
        self.inner.signals.all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_are_stable_and_differ_by_target() {
        // FNV-1a 32 of "a" is 0xe40c292c: the same key on every host and build.
        assert_eq!(
            lease_key("a"),
            i32::from_ne_bytes(0xe40c_292c_u32.to_ne_bytes())
        );
        assert_ne!(
            lease_key("http://crm/hooks"),
            lease_key("http://reporting/hooks")
        );
    }
}
