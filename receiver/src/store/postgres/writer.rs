//! What the store's tasks share ([`Inner`]: the pool, the schema prepared once, the settings)
//! and the group commit: writer tasks that take every request waiting and store them with one
//! statement, and the best-effort keeping of refusals.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::DatabaseUrl;
use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot, OnceCell};

use super::batch::{accept_statement, BatchColumns};
use super::error::{describe_pool_error, store_error, CommitError};
use super::schema::{prepare_schema, warn_if_not_durable};
use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;
use crate::routing::Routes;
use crate::store::forward::JobSignals;
use crate::store::{within_refusal_budget, AcceptedRequest, NewEvent, RefusedRequest, StoreError};

/// Most requests in one statement.
const MAX_BATCH: usize = 512;
/// Longest a commit may take before its requests get 503 (the transaction may still commit;
/// the sender's retry then counts duplicates).
pub(super) const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a writer answers an accepted request, once its batch committed (or not).
pub(super) type AcceptReply = oneshot::Sender<Result<AcceptOutcome, StoreError>>;

/// An accepted request waiting for a writer, and where to answer it.
pub(super) type AcceptJob = (Arc<AcceptedRequest>, AcceptReply);

/// What the store's tasks share.
pub(super) struct Inner {
    /// The connections of this receiver.
    pub(super) pool: Pool,
    url: DatabaseUrl,
    /// Set once the tables were created or checked; tried again after a failure.
    schema: OnceCell<()>,
    keep_refused: u32,
    /// The forwarding targets (none: forwarding is off).
    pub(super) routes: Routes,
    accept_sql: String,
    /// The receiver's counters.
    pub(super) metrics: Arc<Metrics>,
    /// Wakes the forwarders of the targets a commit queued jobs for.
    pub(super) signals: JobSignals,
}

impl Inner {
    /// The shared state of a store on `pool`; nothing is connected yet.
    pub(super) fn new(
        pool: Pool,
        url: &DatabaseUrl,
        keep_refused: u32,
        routes: Routes,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pool,
            url: url.clone(),
            schema: OnceCell::new(),
            keep_refused,
            accept_sql: accept_statement(routes.is_on()),
            signals: JobSignals::new(&routes),
            routes,
            metrics,
        }
    }

    /// A pooled connection on which the tables are known to exist.
    pub(super) async fn client(&self) -> Result<Object, CommitError> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|error| CommitError::connection(describe_pool_error(&error)))?;
        // Concurrent first requests wait for one preparation instead of each running it.
        self.schema
            .get_or_try_init(|| async {
                prepare_schema(&mut client).await?;
                warn_if_not_durable(&client).await;
                anyhow::Ok(())
            })
            .await
            .map_err(|error| {
                tracing::error!(store = %self.url, "{error:#}");
                CommitError::connection(format!("{error:#}"))
            })?;
        Ok(client)
    }

    /// Stores `requests` in one statement; their outcomes in order.
    async fn commit(
        &self,
        requests: &[&AcceptedRequest],
    ) -> Result<Vec<AcceptOutcome>, CommitError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.accept_sql)
            .await
            .map_err(|error| CommitError::database(&error))?;
        let columns = BatchColumns::new(requests, &self.routes)?;
        let now_ms = verify::unix_now_ms();
        let targets: Vec<&str> = self
            .routes
            .routes()
            .iter()
            .map(|route| route.target.as_str())
            .collect();
        let mut parameters = columns.parameters();
        if self.routes.is_on() {
            parameters.push(&now_ms);
            parameters.push(columns.event_targets());
            parameters.push(&targets);
        }
        let rows = tokio::time::timeout(COMMIT_TIMEOUT, client.query(&statement, &parameters))
            .await
            .map_err(|_| CommitError::connection("the commit timed out"))?
            .map_err(|error| CommitError::database(&error))?;
        // Per request, the ids of its events stored now (a `Vec::new` allocates nothing).
        let mut stored: Vec<Vec<String>> = vec![Vec::new(); requests.len()];
        for row in rows {
            let position: i64 = row.get(0);
            let event_id: String = row.get(1);
            let index = usize::try_from(position - 1).unwrap_or(usize::MAX);
            if let Some(ids) = stored.get_mut(index) {
                ids.push(event_id);
            }
        }
        Ok(requests
            .iter()
            .zip(stored)
            .map(|(request, stored_now)| {
                let new = new_events(&request.events, stored_now);
                // The statement queued a job per target one of the new events' masks names.
                let forward_targets = request
                    .events
                    .iter()
                    .zip(&new)
                    .filter(|(_, new)| **new)
                    .fold(0, |mask, (event, _)| {
                        mask | self.routes.mask_of(&event.event_name)
                    });
                AcceptOutcome {
                    new,
                    forward_targets,
                }
            })
            .collect())
    }

    /// Metrics and wake-ups after `outcomes` were committed.
    fn committed(&self, started: Instant, outcomes: &[AcceptOutcome]) {
        self.metrics
            .observe_commit(started.elapsed(), outcomes.len());
        self.metrics.set_store_up(true);
        let queued = outcomes
            .iter()
            .fold(0, |mask, outcome| mask | outcome.forward_targets);
        if queued != 0 {
            self.signals.queued(self.routes.targets_of_mask(queued));
        }
        for outcome in outcomes {
            self.metrics.observe_events(outcome);
        }
    }

    /// Commits a batch and answers each request; a batch the database refused is retried
    /// one request at a time.
    pub(super) async fn write_batch(&self, batch: Vec<(Arc<AcceptedRequest>, AcceptReply)>) {
        let started = Instant::now();
        let requests: Vec<&AcceptedRequest> =
            batch.iter().map(|(request, _)| request.as_ref()).collect();
        match self.commit(&requests).await {
            Ok(outcomes) => {
                self.committed(started, &outcomes);
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(failed) if failed.retry_alone && batch.len() > 1 => {
                tracing::warn!(error = %failed.error, requests = batch.len(), "group commit failed; retrying each request alone");
                for (request, reply) in batch {
                    let started = Instant::now();
                    let answer = match self.commit(&[request.as_ref()]).await {
                        Ok(outcomes) => {
                            self.committed(started, &outcomes);
                            outcomes
                                .into_iter()
                                .next()
                                .ok_or_else(|| failed.error.clone())
                        }
                        Err(alone) => Err(alone.error),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(failed) => {
                tracing::warn!(error = %failed.error, requests = batch.len(), "commit failed");
                self.metrics.set_store_up(false);
                for (_, reply) in batch {
                    let _ = reply.send(Err(failed.error.clone()));
                }
            }
        }
    }

    /// A real write, so `/healthz` fails exactly when a commit would.
    pub(super) async fn health(&self) -> Result<(), StoreError> {
        let checked = async {
            let client = self.client().await.map_err(|failed| failed.error)?;
            client
                .execute(
                    "UPDATE receiver_health SET checked_at_ms = $1 WHERE id = 1",
                    &[&verify::unix_now_ms()],
                )
                .await
                .map_err(|error| store_error(&error))?;
            Ok(())
        };
        let result = tokio::time::timeout(COMMIT_TIMEOUT, checked)
            .await
            .unwrap_or_else(|_| Err(StoreError("the health check timed out".to_owned())));
        self.metrics.set_store_up(result.is_ok());
        result
    }

    /// Keeps refused requests, unsynced, and trims the table to the newest `keep_refused`
    /// for the whole database.
    async fn keep_refusals(&self, refusals: &[&RefusedRequest]) -> Result<(), StoreError> {
        let failed = |error: tokio_postgres::Error| store_error(&error);
        let mut client = self.client().await.map_err(|failed| failed.error)?;
        let transaction = client.transaction().await.map_err(failed)?;
        transaction
            .batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(failed)?;
        let received: Vec<i64> = refusals.iter().map(|r| r.received_at_ms).collect();
        let methods: Vec<&str> = refusals.iter().map(|r| r.method.as_str()).collect();
        let paths: Vec<&str> = refusals.iter().map(|r| r.path.as_str()).collect();
        let headers: Vec<&str> = refusals.iter().map(|r| r.headers_json.as_str()).collect();
        let bodies: Vec<&[u8]> = refusals.iter().map(|r| r.body.as_ref()).collect();
        let statuses: Vec<i32> = refusals.iter().map(|r| i32::from(r.status)).collect();
        let reasons: Vec<&str> = refusals.iter().map(|r| r.reason.as_str()).collect();
        transaction
            .execute(
                "INSERT INTO receiver_refused_requests
                     (received_at_ms, method, path, headers, body, status, reason)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[],
                                      $5::bytea[], $6::int4[], $7::text[])",
                &[
                    &received, &methods, &paths, &headers, &bodies, &statuses, &reasons,
                ],
            )
            .await
            .map_err(failed)?;
        // Keep the newest `keep_refused`: ids only grow, so everything below the cut goes.
        transaction
            .execute(
                "DELETE FROM receiver_refused_requests
                 WHERE id <= (SELECT MAX(id) FROM receiver_refused_requests) - $1",
                &[&i64::from(self.keep_refused)],
            )
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)
    }
}

/// A writer: takes every request waiting (up to [`MAX_BATCH`]) and commits them together.
pub(super) async fn write_accepts(
    inner: Arc<Inner>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<AcceptJob>>>,
) {
    loop {
        let mut batch = Vec::new();
        {
            // A tokio Mutex, held while waiting on purpose: one writer gathers at a time,
            // the others are committing.
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        inner.write_batch(batch).await;
    }
}

/// Keeps refusals in batches, best effort.
pub(super) async fn write_refusals(inner: Arc<Inner>, mut queue: mpsc::Receiver<RefusedRequest>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(refused) => batch.push(refused),
                Err(_) => break,
            }
        }
        let kept = within_refusal_budget(&batch, &inner.metrics);
        if let Err(error) = inner.keep_refusals(&kept).await {
            tracing::debug!(%error, "keeping refused requests failed");
            for _ in &kept {
                inner.metrics.refusal_not_kept();
            }
        }
    }
}

/// Which of `events` (one request's, in order) were stored now, given the ids the statement
/// returned for the request. Each id comes back once (the key is unique), so as many ids as
/// events means every event is new, and none means every one is a duplicate: only a request
/// with both needs the set. There, the first of repeats within a request is the one stored
/// (rows go in by position), and `remove` makes the later ones duplicates.
fn new_events(events: &[NewEvent], stored_now: Vec<String>) -> Vec<bool> {
    if stored_now.len() == events.len() {
        return vec![true; events.len()];
    }
    if stored_now.is_empty() {
        return vec![false; events.len()];
    }
    let mut stored_now: HashSet<String> = stored_now.into_iter().collect();
    events
        .iter()
        .map(|event| stored_now.remove(&event.event_id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(ids: &[&str]) -> Vec<NewEvent> {
        ids.iter()
            .map(|id| NewEvent {
                event_id: (*id).to_owned(),
                event_name: "COURSE_COMPLETED".to_owned(),
                timestamp_ms: 0,
                known: true,
                raw: 0..0,
                user_id: None,
                lo_id: None,
            })
            .collect()
    }

    fn stored(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn new_events_reads_what_the_statement_returned() {
        let cases: [(&[&str], &[&str], &[bool]); 6] = [
            (&["a", "b"], &["b", "a"], &[true, true]),
            (&["a", "b"], &[], &[false, false]),
            (&["a", "b", "c"], &["c"], &[false, false, true]),
            // Repeats within a request: the first is stored, the later ones are duplicates.
            (&["a", "a"], &["a"], &[true, false]),
            (&["a", "b", "a"], &["a", "b"], &[true, true, false]),
            (&[], &[], &[]),
        ];
        for (sent, returned, expected) in cases {
            assert_eq!(
                new_events(&events(sent), stored(returned)),
                expected,
                "{sent:?} {returned:?}"
            );
        }
    }
}
