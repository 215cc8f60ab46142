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
//! With `--forward-to`, a batch also inserts its forward jobs, under a transaction-level
//! advisory lock, so job ids are handed out in commit order across receivers; one receiver at
//! a time forwards: the one whose session holds the forwarding advisory lock (the lease),
//! which the server frees the moment that receiver's connection ends (a crash included).
//!
//! Tables are prefixed `receiver_` so that the sender's tables and anyone else's can share the
//! database; they are created on first use under an advisory lock, with their version in
//! `receiver_schema`. Refused requests are kept best effort (`synchronous_commit = off`) and
//! bounded for the whole database.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use common::postgres::DatabaseUrl;
use common::postgres_schema::{self, Layout, Step};
use deadpool_postgres::{GenericClient as _, Object, Pool};
use tokio::sync::{mpsc, oneshot, Notify, OnceCell};
use tokio_postgres::types::ToSql;
use verify::CaptureRecord;

use super::{
    query, AcceptedRequest, CaptureFilter, EventFilter, EventQuery, ForwardJob, ForwardQueue,
    RefusedRequest, Store, StoreError, StoreFuture, StoredEvent,
};
use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;

mod requests;

pub use requests::{PostgresRequestPool, PostgresRequestReader, GAP_WAIT, LATE_WINDOW};

/// The receiver's tables and how a database gets them (`common::postgres_schema`): the
/// steps in order, each bringing the tables to its version (recorded in `receiver_schema`).
/// Version 1 is the whole layout below; a change of layout is a step appended here.
pub(super) const LAYOUT: Layout = Layout {
    program: "receiver",
    lock: SCHEMA_LOCK,
    version_table: "receiver_schema",
    steps: &[Step {
        version: 1,
        sql: SCHEMA,
        creates: TABLE_NAMES,
    }],
    late_tables: None,
};

/// The tables of version 1, created together on first use. Times are epoch milliseconds, as in the SQLite
/// store; `receiver_events.event` is the event's JSON exactly as received (type `json` keeps
/// the text as it is).
const SCHEMA: &str = "
CREATE TABLE receiver_schema (
    version          integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE receiver_requests (
    id               bigserial PRIMARY KEY,
    received_at_ms   bigint  NOT NULL,
    method           text    NOT NULL,
    path             text    NOT NULL,
    headers          text    NOT NULL,  -- JSON array of [name, value]
    body             bytea   NOT NULL,  -- byte for byte
    auth             text    NOT NULL,  -- none | basic | signature
    account_id       bigint  NOT NULL
);
CREATE TABLE receiver_events (
    id               bigserial PRIMARY KEY,
    account_id       bigint  NOT NULL,
    event_id         text    NOT NULL,
    request_id       bigint  NOT NULL REFERENCES receiver_requests (id),
    event_name       text    NOT NULL,
    timestamp_ms     bigint  NOT NULL,  -- the event's own time
    received_at_ms   bigint  NOT NULL,  -- when its request arrived
    known            boolean NOT NULL,  -- the name is in the catalogue
    event            json    NOT NULL,
    UNIQUE (account_id, event_id)
);
CREATE INDEX receiver_events_by_time ON receiver_events (timestamp_ms);
CREATE INDEX receiver_events_by_name ON receiver_events (event_name, timestamp_ms);
CREATE TABLE receiver_refused_requests (
    id               bigserial PRIMARY KEY,
    received_at_ms   bigint  NOT NULL,
    method           text    NOT NULL,
    path             text    NOT NULL,
    headers          text    NOT NULL,
    body             bytea   NOT NULL,
    status           integer NOT NULL,
    reason           text    NOT NULL
);
CREATE TABLE receiver_health (
    id               integer PRIMARY KEY CHECK (id = 1),
    checked_at_ms    bigint  NOT NULL
);
INSERT INTO receiver_health (id, checked_at_ms) VALUES (1, 0);
CREATE TABLE receiver_forward_jobs (
    id               bigserial PRIMARY KEY,
    request_id       bigint  NOT NULL UNIQUE REFERENCES receiver_requests (id),
    queued_at_ms     bigint  NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    forwarded_at_ms  bigint             -- NULL while pending
);
CREATE INDEX receiver_forward_jobs_pending ON receiver_forward_jobs (id)
    WHERE forwarded_at_ms IS NULL;
";

/// Every table of [`SCHEMA`]: tables of these names without a `receiver_schema` row are
/// another program's, and are left alone.
const TABLE_NAMES: &[&str] = &[
    "receiver_schema",
    "receiver_requests",
    "receiver_events",
    "receiver_refused_requests",
    "receiver_health",
    "receiver_forward_jobs",
];

/// Advisory lock keys (one 64-bit space per database, shared with other programs: these are
/// fixed random numbers, so a clash with someone else's key is as unlikely as it gets).
const SCHEMA_LOCK: i64 = 0x7265_6376_0000_0001;
/// Held (per transaction) while a batch inserts forward jobs: job ids follow commit order.
const FORWARD_ORDER_LOCK: i64 = 0x7265_6376_0000_0002;
/// Held (per session) by the one receiver that forwards.
const FORWARD_LEASE_LOCK: i64 = 0x7265_6376_0000_0003;

/// Requests waiting for a writer; senders wait (back-pressure) when it is full.
const QUEUE_CAPACITY: usize = 4096;
/// Most requests in one statement.
const MAX_BATCH: usize = 512;
/// Writer tasks: while some wait for their commit, another gathers the next batch.
const WRITERS: usize = 3;
/// Connections in the pool: the writers, health checks, refusals and forwarding notes.
const POOL_SIZE: usize = WRITERS + 3;
/// Longest a commit may take before its requests get 503 (the transaction may still commit;
/// the sender's retry then counts duplicates).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Refusals waiting to be kept; more are dropped (counted).
const REFUSAL_QUEUE: usize = 2048;

/// The statement of one batch. `$1`–`$7` are the requests' columns, `$8`–`$13` the events'
/// (with the 1-based position of their request); it returns `(request position, eventId)` of
/// every event stored now. `{lock}` and `{jobs}` are filled in for forwarding.
const ACCEPT_TEMPLATE: &str = "
WITH r AS MATERIALIZED (
    SELECT nextval('receiver_requests_id_seq') AS id, r.received_at_ms, r.method, r.path,
           r.headers, r.body, r.auth, r.account_id, r.ord
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[],
                $7::int8[])
         WITH ORDINALITY AS r (received_at_ms, method, path, headers, body, auth, account_id, ord)
         {lock}
),
requests AS (
    INSERT INTO receiver_requests (id, received_at_ms, method, path, headers, body, auth, account_id)
    SELECT id, received_at_ms, method, path, headers, body, auth, account_id FROM r
),
new_events AS (
    INSERT INTO receiver_events
        (account_id, event_id, request_id, event_name, timestamp_ms, received_at_ms, known, event)
    SELECT r.account_id, e.event_id, r.id, e.event_name, e.timestamp_ms, r.received_at_ms,
           e.known, e.event::json
    FROM unnest($8::int8[], $9::text[], $10::text[], $11::int8[], $12::bool[], $13::text[])
         WITH ORDINALITY AS e (request_ord, event_id, event_name, timestamp_ms, known, event, ord)
    JOIN r ON r.ord = e.request_ord
    ORDER BY r.account_id, e.event_id, e.ord
    ON CONFLICT (account_id, event_id) DO NOTHING
    RETURNING request_id, event_id
){jobs}
SELECT r.ord, n.event_id FROM new_events n JOIN r ON r.id = n.request_id";

/// The batch statement without forwarding.
fn accept_statement(queue_forwarding: bool) -> String {
    if queue_forwarding {
        ACCEPT_TEMPLATE
            .replace(
                "{lock}",
                &format!(", (SELECT pg_advisory_xact_lock({FORWARD_ORDER_LOCK})) AS lock"),
            )
            .replace(
                "{jobs}",
                ",
jobs AS (
    INSERT INTO receiver_forward_jobs (request_id, queued_at_ms)
    SELECT DISTINCT request_id, $14::int8 FROM new_events ORDER BY request_id
)",
            )
    } else {
        ACCEPT_TEMPLATE.replace("{lock}", "").replace("{jobs}", "")
    }
}

/// The table names of this layout, for the shared read queries.
const TABLES: query::Tables = query::Tables {
    requests: "receiver_requests",
    events: "receiver_events",
    forward_jobs: "receiver_forward_jobs",
    refused: "receiver_refused_requests",
    raw_text: "e.event::text",
    placeholder: |n| format!("${n}"),
};

/// A failed commit, and whether retrying its requests one by one may help.
struct CommitError {
    error: StoreError,
    /// The database refused the statement (bad data in one request, say), as opposed to the
    /// connection failing: alone, the other requests may go in.
    retry_alone: bool,
}

impl CommitError {
    fn connection(error: impl std::fmt::Display) -> Self {
        Self {
            error: StoreError(error.to_string()),
            retry_alone: false,
        }
    }

    fn database(error: &tokio_postgres::Error) -> Self {
        Self {
            error: store_error(error),
            retry_alone: error.as_db_error().is_some() && !error.is_closed(),
        }
    }
}

/// The client's error in words: the server's message and code when it sent one (the
/// client's own `Display` says only "db error"), else the cause. Neither holds the password.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

fn store_error(error: &tokio_postgres::Error) -> StoreError {
    StoreError(describe(error))
}

/// A pool's error in words: the connection's own error when connecting failed.
fn describe_pool_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => {
            format!("connecting to the database: {}", describe(error))
        }
        other => other.to_string(),
    }
}

/// Creates the tables when the database has none of them, brings them to the latest
/// version, or checks it (see [`LAYOUT`]). Under an advisory lock, so receivers starting
/// together do it once.
///
/// # Errors
/// The database cannot be reached, or holds receiver tables of a version this receiver did
/// not write, or tables of these names that are not ours.
pub(super) async fn prepare_schema(client: &mut Object) -> anyhow::Result<()> {
    let prepared = postgres_schema::prepare(client, &LAYOUT).await?;
    if prepared.found == 0 {
        tracing::info!(version = prepared.version, "created the receiver tables");
    } else if prepared.found != prepared.version {
        tracing::info!(
            from = prepared.found,
            to = prepared.version,
            "upgraded the receiver tables"
        );
    }
    Ok(())
}

/// A server with `synchronous_commit = off` acknowledges commits it may still lose: every 2xx
/// would break the promise, so say so loudly (the setting is the database owner's to change).
async fn warn_if_not_durable(client: &Object) {
    if let Ok(row) = client.query_one("SHOW synchronous_commit", &[]).await {
        let setting: String = row.get(0);
        if setting == "off" {
            tracing::error!(
                "the database has synchronous_commit = off: a commit may be lost in a crash after \
                 the receiver answered 2xx; set it to on for the receiver's role or database"
            );
        }
    }
}

/// What the store's tasks share.
struct Inner {
    pool: Pool,
    url: DatabaseUrl,
    /// Set once the tables were created or checked; tried again after a failure.
    schema: OnceCell<()>,
    keep_refused: u32,
    queue_forwarding: bool,
    accept_sql: String,
    metrics: Arc<Metrics>,
    /// Woken after a commit that queued forward jobs.
    jobs_signal: Arc<Notify>,
}

impl Inner {
    /// A pooled connection on which the tables are known to exist.
    async fn client(&self) -> Result<Object, CommitError> {
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
        let columns = BatchColumns::new(requests)?;
        let now_ms = verify::unix_now_ms();
        let mut parameters = columns.parameters();
        if self.queue_forwarding {
            parameters.push(&now_ms);
        }
        let rows = tokio::time::timeout(COMMIT_TIMEOUT, client.query(&statement, &parameters))
            .await
            .map_err(|_| CommitError::connection("the commit timed out"))?
            .map_err(|error| CommitError::database(&error))?;
        let mut stored: Vec<HashSet<String>> = vec![HashSet::new(); requests.len()];
        for row in rows {
            let position: i64 = row.get(0);
            let event_id: String = row.get(1);
            let index = usize::try_from(position - 1).unwrap_or(usize::MAX);
            if let Some(set) = stored.get_mut(index) {
                set.insert(event_id);
            }
        }
        Ok(requests
            .iter()
            .zip(stored)
            .map(|(request, mut stored_now)| {
                // The first of repeats within a request is the one stored (rows go in by
                // position); `remove` makes the later ones duplicates.
                let new: Vec<bool> = request
                    .events
                    .iter()
                    .map(|event| stored_now.remove(&event.event_id))
                    .collect();
                let queued_for_forwarding = self.queue_forwarding && new.contains(&true);
                AcceptOutcome {
                    new,
                    queued_for_forwarding,
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
            .filter(|outcome| outcome.queued_for_forwarding)
            .count();
        if queued > 0 {
            self.metrics.forward_queued(queued as u64);
            self.jobs_signal.notify_one();
        }
        for outcome in outcomes {
            self.metrics.observe_events(outcome);
        }
    }

    /// Commits a batch and answers each request; a batch the database refused is retried
    /// one request at a time.
    async fn write_batch(&self, batch: Vec<(Arc<AcceptedRequest>, AcceptReply)>) {
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
    async fn health(&self) -> Result<(), StoreError> {
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

/// The columns of a batch as arrays, one element per request or per event.
struct BatchColumns<'a> {
    received_at: Vec<i64>,
    methods: Vec<&'a str>,
    paths: Vec<&'a str>,
    headers: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    auths: Vec<&'a str>,
    accounts: Vec<i64>,
    event_requests: Vec<i64>,
    event_ids: Vec<&'a str>,
    event_names: Vec<&'a str>,
    event_times: Vec<i64>,
    event_known: Vec<bool>,
    event_json: Vec<&'a str>,
}

impl<'a> BatchColumns<'a> {
    fn new(requests: &[&'a AcceptedRequest]) -> Result<Self, CommitError> {
        let events = requests.iter().map(|request| request.events.len()).sum();
        let mut columns = BatchColumns {
            received_at: Vec::with_capacity(requests.len()),
            methods: Vec::with_capacity(requests.len()),
            paths: Vec::with_capacity(requests.len()),
            headers: Vec::with_capacity(requests.len()),
            bodies: Vec::with_capacity(requests.len()),
            auths: Vec::with_capacity(requests.len()),
            accounts: Vec::with_capacity(requests.len()),
            event_requests: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            event_names: Vec::with_capacity(events),
            event_times: Vec::with_capacity(events),
            event_known: Vec::with_capacity(events),
            event_json: Vec::with_capacity(events),
        };
        for (position, request) in (1_i64..).zip(requests) {
            columns.received_at.push(request.received_at_ms);
            columns.methods.push(request.method);
            columns.paths.push(&request.path);
            columns.headers.push(&request.headers_json);
            columns.bodies.push(&request.body);
            columns.auths.push(request.auth);
            columns.accounts.push(request.account_id);
            for event in &request.events {
                // The envelope parser read it as JSON, so it is UTF-8.
                let json = std::str::from_utf8(event.raw_text(&request.body)).map_err(|_| {
                    CommitError::connection("an event's JSON is not UTF-8".to_owned())
                })?;
                columns.event_requests.push(position);
                columns.event_ids.push(&event.event_id);
                columns.event_names.push(&event.event_name);
                columns.event_times.push(event.timestamp_ms);
                columns.event_known.push(event.known);
                columns.event_json.push(json);
            }
        }
        Ok(columns)
    }

    /// `$1`–`$13` of the batch statement.
    fn parameters(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.received_at,
            &self.methods,
            &self.paths,
            &self.headers,
            &self.bodies,
            &self.auths,
            &self.accounts,
            &self.event_requests,
            &self.event_ids,
            &self.event_names,
            &self.event_times,
            &self.event_known,
            &self.event_json,
        ]
    }
}

/// Where a writer answers an accepted request, once its batch committed (or not).
type AcceptReply = oneshot::Sender<Result<AcceptOutcome, StoreError>>;

/// An accepted request waiting for a writer, and where to answer it.
type AcceptJob = (Arc<AcceptedRequest>, AcceptReply);

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
        queue_forwarding: bool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<PostgresStore> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("the PostgreSQL store runs inside a tokio runtime")?;
        let inner = Arc::new(Inner {
            pool: url.pool("receiver", POOL_SIZE)?,
            url: url.clone(),
            schema: OnceCell::new(),
            keep_refused,
            queue_forwarding,
            accept_sql: accept_statement(queue_forwarding),
            metrics: Arc::clone(&metrics),
            jobs_signal: Arc::new(Notify::new()),
        });
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

    /// The forwarding queue over this store: jobs are read and marked by the receiver that
    /// holds the forwarding lease.
    pub fn forward_queue(&self) -> PostgresForwardQueue {
        PostgresForwardQueue {
            inner: Arc::clone(&self.inner),
            lease: tokio::sync::Mutex::new(None),
        }
    }
}

/// A writer: takes every request waiting (up to [`MAX_BATCH`]) and commits them together.
async fn write_accepts(
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
async fn write_refusals(inner: Arc<Inner>, mut queue: mpsc::Receiver<RefusedRequest>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(refused) => batch.push(refused),
                Err(_) => break,
            }
        }
        let kept = super::within_refusal_budget(&batch, &inner.metrics);
        if let Err(error) = inner.keep_refusals(&kept).await {
            tracing::debug!(%error, "keeping refused requests failed");
            for _ in &kept {
                inner.metrics.refusal_not_kept();
            }
        }
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
}

/// The forwarding queue of a [`PostgresStore`]. Only the receiver whose session holds the
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

/// Read access for `receiver events` and `receiver export`: a connection and a small runtime
/// of its own, since those commands are not async.
pub struct PostgresReader {
    runtime: tokio::runtime::Runtime,
    // A std Mutex: locked only in these blocking methods, around `block_on`.
    client: Mutex<Object>,
}

impl PostgresReader {
    /// Connects and checks that the receiver's tables are there, of this version.
    ///
    /// # Errors
    /// The database cannot be reached, or has no receiver tables, or tables of another
    /// version. The message shows the URL without its password.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<PostgresReader> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let client = runtime
            .block_on(async {
                let pool = url.pool("receiver-reader", 1)?;
                let client = pool.get().await?;
                let Some(version) = postgres_schema::stored_version(&client, &LAYOUT).await?
                else {
                    anyhow::bail!("no receiver tables there (a receiver listening with this --store creates them)")
                };
                // A reader writes nothing: tables of an older version wait for a listener
                // to bring them up.
                if version != LAYOUT.version() {
                    anyhow::bail!(
                        "the receiver tables there are of version {version}, this receiver reads version {}",
                        LAYOUT.version()
                    );
                }
                Ok(client)
            })
            .with_context(|| format!("opening the store {url}"))?;
        Ok(PostgresReader {
            runtime,
            client: Mutex::new(client),
        })
    }

    fn client(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Object>> {
        self.client
            .lock()
            .map_err(|_| anyhow::anyhow!("the store reader is poisoned"))
    }
}

/// The shared queries' values as PostgreSQL parameters.
fn postgres_values(values: &[query::SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| match value {
            query::SqlValue::Integer(integer) => integer as &(dyn ToSql + Sync),
            query::SqlValue::Text(text) => text as &(dyn ToSql + Sync),
        })
        .collect()
}

/// Rows fetched per round trip when an export streams captures.
const CAPTURE_PAGE: i32 = 256;

impl EventQuery for PostgresReader {
    fn events(&self, filter: &EventFilter) -> anyhow::Result<Vec<StoredEvent>> {
        let query = query::events(&TABLES, filter);
        let client = self.client()?;
        let rows = self
            .runtime
            .block_on(client.query(&query.sql, &postgres_values(&query.values)))?;
        Ok(rows
            .into_iter()
            .map(|row| StoredEvent {
                account_id: row.get(0),
                event_id: row.get(1),
                event_name: row.get(2),
                timestamp_ms: row.get(3),
                received_at_ms: row.get(4),
                known: row.get(5),
                raw: row.get(6),
                request_id: row.get(7),
                auth: row.get(8),
                forwarding: query::forwarding_state(i64::from(row.get::<_, i32>(9))),
            })
            .collect())
    }

    fn count(&self, filter: &EventFilter) -> anyhow::Result<u64> {
        let query = query::count(&TABLES, filter);
        let client = self.client()?;
        let count: i64 = self
            .runtime
            .block_on(client.query_one(&query.sql, &postgres_values(&query.values)))?
            .get(0);
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
        let mut client = self.client()?;
        let runtime = &self.runtime;
        // A portal in a read-only transaction: the export is read in pages, never whole.
        let transaction = runtime.block_on(client.transaction())?;
        let portal =
            runtime.block_on(transaction.bind(&query.sql, &postgres_values(&query.values)))?;
        let mut handed = 0;
        loop {
            let rows = runtime.block_on(transaction.query_portal(&portal, CAPTURE_PAGE))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let body: Vec<u8> = row.get(4);
                let account: Option<i64> = row.get(6);
                if !query::capture_matches(filter, account, &body) {
                    continue;
                }
                let headers: String = row.get(3);
                each(query::capture_record(
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    &headers,
                    body,
                    row.get(5),
                ))?;
                handed += 1;
            }
        }
        runtime.block_on(transaction.commit())?;
        Ok(handed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarding_statement_locks_and_queues_the_plain_one_does_not() {
        let plain = accept_statement(false);
        assert!(!plain.contains("{lock}") && !plain.contains("{jobs}"));
        assert!(!plain.contains("pg_advisory_xact_lock"));
        assert!(!plain.contains("receiver_forward_jobs"));
        let forwarding = accept_statement(true);
        assert!(forwarding.contains("pg_advisory_xact_lock"));
        assert!(forwarding.contains("INSERT INTO receiver_forward_jobs"));
        assert!(forwarding.contains("$14::int8"));
    }
}
