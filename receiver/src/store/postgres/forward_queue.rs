//! Forwarding from the shared store: one receiver at a time holds the lease (a session
//! advisory lock) and reads the jobs; any receiver marks them.

use std::sync::Arc;

use deadpool_postgres::Object;

use super::error::store_error;
use super::writer::Inner;
use crate::store::{ForwardJob, ForwardQueue, StoreError, StoreFuture};

/// Held (per session) by the one receiver that forwards.
const FORWARD_LEASE_LOCK: i64 = 0x7265_6376_0000_0003;

/// The forwarding queue of a `PostgresStore`. Only the receiver whose session holds the
/// lease (a session advisory lock) reads jobs; the others find none and look again at the
/// forwarder's next poll, so one takes over within a second of the holder's end.
pub struct PostgresForwardQueue {
    inner: Arc<Inner>,
    /// The session that holds the lease, taken out of the pool for good: it is never handed
    /// to other work, and dropping it ends the session, which frees the lock. A tokio Mutex:
    /// held across the queries made on that session.
    lease: tokio::sync::Mutex<Option<deadpool_postgres::ClientWrapper>>,
}

impl PostgresForwardQueue {
    /// The queue over the store's shared state; no lease is held yet.
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            lease: tokio::sync::Mutex::new(None),
        }
    }

    /// The next job, if this receiver holds (or now takes) the lease.
    async fn next_if_leased(&self) -> Result<Option<ForwardJob>, StoreError> {
        let failed = |error: tokio_postgres::Error| store_error(&error);
        let mut lease = self.lease.lock().await;
        if lease.as_ref().is_some_and(|session| session.is_closed()) {
            // The session ended, and its lock with it.
            *lease = None;
        }
        // A session kept here holds the lease (only those are kept), so the lock is taken
        // once: taking it again would stack it.
        let session = match lease.take() {
            Some(session) => session,
            None => {
                let session = self.inner.client().await.map_err(|failed| failed.error)?;
                let taken: bool = session
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&FORWARD_LEASE_LOCK])
                    .await
                    .map_err(failed)?
                    .get(0);
                if !taken {
                    // Another receiver forwards; the session goes back to the pool.
                    return Ok(None);
                }
                tracing::info!("this receiver holds the forwarding lease");
                Object::take(session)
            }
        };
        let row = session
            .query_opt(
                "SELECT j.id, j.request_id, r.received_at_ms, r.headers, r.body, j.attempts
                 FROM receiver_forward_jobs j JOIN receiver_requests r ON r.id = j.request_id
                 WHERE j.forwarded_at_ms IS NULL ORDER BY j.id LIMIT 1",
                &[],
            )
            .await;
        *lease = Some(session);
        let Some(row) = row.map_err(failed)? else {
            return Ok(None);
        };
        let headers: String = row.get(3);
        let body: Vec<u8> = row.get(4);
        let attempts: i32 = row.get(5);
        Ok(Some(ForwardJob {
            job_id: row.get(0),
            request_id: row.get(1),
            received_at_ms: row.get(2),
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: body.into(),
            attempts: u32::try_from(attempts).unwrap_or(0),
        }))
    }
}

impl ForwardQueue for PostgresForwardQueue {
    fn next_pending(&self) -> StoreFuture<'_, Result<Option<ForwardJob>, StoreError>> {
        Box::pin(self.next_if_leased())
    }

    fn mark_forwarded(
        &self,
        job_id: i64,
        attempts: u32,
    ) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // Any session may mark: the app did answer 2xx, whoever holds the lease now.
            let client = self.inner.client().await.map_err(|failed| failed.error)?;
            client
                .execute(
                    "UPDATE receiver_forward_jobs
                     SET forwarded_at_ms = $1, attempts = $2, last_error = NULL WHERE id = $3",
                    &[
                        &verify::unix_now_ms(),
                        &i32::try_from(attempts).unwrap_or(i32::MAX),
                        &job_id,
                    ],
                )
                .await
                .map_err(|error| store_error(&error))?;
            Ok(())
        })
    }

    fn note_failure(&self, job_id: i64, attempts: u32, error: String) {
        let inner = Arc::clone(&self.inner);
        // Best effort and never waited for: a note is for people.
        tokio::spawn(async move {
            let Ok(client) = inner.client().await else {
                return;
            };
            let _ = client
                .execute(
                    "UPDATE receiver_forward_jobs SET attempts = $1, last_error = $2
                     WHERE id = $3 AND forwarded_at_ms IS NULL",
                    &[
                        &i32::try_from(attempts).unwrap_or(i32::MAX),
                        &error,
                        &job_id,
                    ],
                )
                .await;
        });
    }

    fn pending_count(&self) -> StoreFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let client = self.inner.client().await.map_err(|failed| failed.error)?;
            let count: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM receiver_forward_jobs WHERE forwarded_at_ms IS NULL",
                    &[],
                )
                .await
                .map_err(|error| store_error(&error))?
                .get(0);
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn jobs_added(&self) -> StoreFuture<'_, ()> {
        // Jobs committed by this receiver; other receivers' jobs are found by the forwarder's
        // idle poll.
        Box::pin(self.inner.jobs_signal.notified())
    }
}
