//! The PostgreSQL state (SPEC section 7): registrations, queue, attempts and leases in one
//! database that any number of `sender run` workers (and `trigger`, `webhooks`, `deliveries`)
//! share.
//!
//! - Tables are prefixed `sender_` (the receiver's may share the database) and carry a layout
//!   version in `sender_schema`; they are created on first use, under an advisory lock so two
//!   processes starting at once do not race. Tables of that name that are not ours are refused.
//! - Per webhook one worker delivers, in order: a row of `sender_leases` names the holder,
//!   its expiry and a *fence* number. One statement renews a worker's own lease or, for a
//!   worker waiting for another's, reads holder and expiry without waiting for the holder's
//!   locks (the wait itself is [`crate::lease`]'s); taking a free lease reads
//!   the row with `FOR UPDATE SKIP LOCKED` (another worker in the middle of taking it is
//!   passed over, not waited for) and commits at once. No transaction is ever open
//!   while a request is on the wire: the engine reads the head of the queue, commits, sends,
//!   and only then records the outcome.
//! - Enqueues and registrations commit synchronously (on disk before the call returns);
//!   outcomes commit without waiting for the WAL flush (see `write_unsynced`), as the SQLite
//!   store's do.
//! - An outcome is recorded by one statement that writes only while the lease row still has
//!   the worker's fence, and holds the row locked while it writes, so a takeover cannot slip
//!   in between: a worker that stalled past its lease (SIGSTOP, a long GC pause of a VM)
//!   records nothing over the new holder's progress. The new holder resends what the stalled
//!   one had in flight: at least once, same bytes, same `webhook-id`.
//! - An enqueue locks the lease rows of its webhooks in share mode, and an idle worker releases
//!   its lease under an exclusive lock after looking for work, so work enqueued while a
//!   worker gives up its lease is never stranded.
//! - Finished requests (delivered, expired) are pruned after [`FINISHED_KEPT_FOR_MS`], so the
//!   tables do not grow with the traffic; pending ones sit in a partial index.
//! - Sessions carry `idle_in_transaction_session_timeout` (see `common::postgres`), so a
//!   process stopped inside a transaction cannot hold locks for long.
//!
//! The trait methods are synchronous (the engine calls them from `spawn_blocking`); each runs
//! its queries on a small runtime of this store's own, so that they may also be called from
//! synchronous code and from inside another runtime.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use common::postgres::DatabaseUrl;
use common::postgres_schema::{self, LateTables, Layout, Step};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{
    batch_requests, changed_meanwhile, enqueued, flush_plan, outcome_columns, own_pid,
    process_identity_space, retention_reason, room_for_another, too_many_webhooks, Enqueued,
    FlushPlan, LeaseRow, RequestRow, RequestToWrite, SealingPass, StagedEvent, WebhookRow,
};
use crate::lease::HeldLease;
use crate::queue::{
    AttemptRecord, AttemptView, DeliveryDetail, DeliveryFilter, DeliverySummary, Lease, LeaseToken,
    NewDelivery, PendingRequest, Queue, QueueCounts, Recorded, RequestState,
};
use crate::registry::{Registry, Webhook, WebhookId};
use crate::sealing::{self, SecretColumns, SecretKey};

/// The sender's tables and how a database gets them (`common::postgres_schema`): the steps in
/// order, each bringing the tables to its version (recorded in `sender_schema`), and the key
/// record, made also in databases whose tables predate it. Version 1 is the whole layout of
/// [`SCHEMA`]; a change of layout is a step appended here.
const LAYOUT: Layout = Layout {
    program: "sender",
    lock: SCHEMA_LOCK,
    version_table: "sender_schema",
    steps: &[Step {
        version: 1,
        sql: SCHEMA,
        creates: TABLES,
    }],
    late_tables: Some(LateTables {
        sql: SECRET_KEY_TABLE,
        creates: &["sender_secret_key"],
    }),
};

/// How long finished requests (delivered or expired) and their attempts are kept for
/// `deliveries list` before they are pruned: the SPEC's retention.
pub const FINISHED_KEPT_FOR_MS: i64 = 7 * 24 * 3600 * 1000;

/// How often a process prunes finished requests, at most.
const PRUNE_EVERY_MS: i64 = 60_000;

/// Connections per process: a worker per webhook (at most five) and the commands' reads.
const POOL_SIZE: usize = 8;

/// The advisory lock that serialises schema creation across processes ("sndr" in ASCII).
const SCHEMA_LOCK: i64 = 0x736e_6472;

/// The tables of [`SCHEMA`]; tables of these names (or the key record's) without a
/// `sender_schema` row are someone else's, and refused.
const TABLES: &[&str] = &[
    "sender_schema",
    "sender_webhooks",
    "sender_requests",
    "sender_request_bodies",
    "sender_staged_events",
    "sender_attempts",
    "sender_leases",
];

/// The advisory lock that serialises passes over the secrets ("snky"): two processes given a
/// key at once must not record two keys.
const SEALING_LOCK: i64 = 0x736e_6b79;

/// The key record (see `crate::sealing`), made also in databases whose tables predate it: a
/// table the layout may lack, as nothing but a key's presence depends on it.
const SECRET_KEY_TABLE: &str = "
CREATE TABLE IF NOT EXISTS sender_secret_key (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    key_check TEXT NOT NULL
);
";

const SCHEMA: &str = "
CREATE TABLE sender_schema (version BIGINT NOT NULL);
CREATE TABLE sender_webhooks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    auth TEXT NOT NULL,
    basic_username TEXT,
    basic_password TEXT,
    signature_file TEXT,
    status TEXT NOT NULL,
    disabled_reason TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE TABLE sender_requests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    event_names TEXT NOT NULL,
    event_count BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    finished_at_ms BIGINT
);
-- The queue proper: only pending rows, so a finished request leaves it at once.
CREATE INDEX sender_requests_pending ON sender_requests (webhook_id, id) WHERE state = 'pending';
CREATE INDEX sender_requests_finished ON sender_requests (finished_at_ms) WHERE state <> 'pending';
-- The bytes never change: apart from the row every attempt updates, so updates stay small.
CREATE TABLE sender_request_bodies (
    request_id BIGINT PRIMARY KEY,
    body BYTEA NOT NULL,
    event_ids TEXT NOT NULL
);
CREATE TABLE sender_staged_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_json BYTEA NOT NULL,
    enqueued_at_ms BIGINT NOT NULL
);
CREATE INDEX sender_staged_by_webhook ON sender_staged_events (webhook_id, seq);
CREATE TABLE sender_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    latency_ms BIGINT NOT NULL,
    response_head TEXT
);
CREATE INDEX sender_attempts_by_request ON sender_attempts (request_id, attempt);
-- One row per webhook ever leased; a release keeps it, so fence numbers are never reused.
CREATE TABLE sender_leases (
    webhook_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pid BIGINT NOT NULL,
    host TEXT NOT NULL,
    fence BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
";

const WEBHOOK_COLUMNS: &str = "id, name, description, url, events, auth, basic_username,
    basic_password, signature_file, status, disabled_reason, created_at_ms, updated_at_ms";

const SUMMARY_COLUMNS: &str = "r.msg_id, r.webhook_id, r.account_id, r.event_names,
    r.event_count, r.state, r.attempts, r.last_status, r.last_error, r.created_at_ms,
    r.next_attempt_at_ms";

/// The record of outcomes, as one statement: it locks the lease row if it still has the
/// worker's fence, and writes the attempts and the requests' new states only then.
const RECORD: &str = "
WITH lease AS (
    SELECT fence FROM sender_leases WHERE webhook_id = $1 AND fence = $2 FOR UPDATE
), outcome AS (
    SELECT o.* FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
                           $8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::bigint[])
        AS o(request_id, attempt, started_at_ms, status, error, latency_ms, response_head,
             state, next_attempt_at_ms, finished_at_ms)
    WHERE EXISTS (SELECT 1 FROM lease)
), inserted AS (
    INSERT INTO sender_attempts (request_id, attempt, started_at_ms, status, error, latency_ms,
                                 response_head)
    SELECT request_id, attempt, started_at_ms, status, error, latency_ms, response_head
    FROM outcome
), updated AS (
    -- `state = 'pending'`: an outcome that comes in after the webhook was given up must not
    -- bring its request back.
    UPDATE sender_requests r SET state = o.state, attempts = o.attempt,
        next_attempt_at_ms = o.next_attempt_at_ms, last_status = o.status,
        last_error = o.error, finished_at_ms = o.finished_at_ms
    FROM outcome o WHERE r.id = o.request_id AND r.state = 'pending'
)
SELECT count(*) FROM lease";

/// Registrations and queue in a PostgreSQL database.
pub struct PostgresState {
    pool: Pool,
    url: DatabaseUrl,
    /// Dropped with `shutdown_background`, which is allowed inside another runtime.
    runtime: Option<tokio::runtime::Runtime>,
    round_trips: Arc<AtomicU64>,
    last_prune_ms: AtomicI64,
    /// Raised by a NOTIFY on [`WORK_CHANNEL`] (see [`listen_for_work`]).
    work: Arc<tokio::sync::Notify>,
    /// Set once the listening connection is started.
    listening: std::sync::OnceLock<()>,
    /// Seals and opens the secret columns (see `crate::sealing`).
    secret_key: Option<SecretKey>,
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

/// Statements on one connection or transaction, counting round trips to the server.
struct Db<'a, C> {
    client: &'a C,
    trips: &'a AtomicU64,
}

impl<'a, C: GenericClient> Db<'a, C> {
    fn new(client: &'a C, trips: &'a AtomicU64) -> Self {
        Self { client, trips }
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        // Cached per connection: after the first use a statement costs one round trip.
        let statement = self.client.prepare_cached(sql).await?;
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.client.query(&statement, params).await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> anyhow::Result<Row> {
        self.query_opt(sql, params)
            .await?
            .context("the database returned no row")
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.client.prepare_cached(sql).await?;
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.client.execute(&statement, params).await
    }
}

impl PostgresState {
    /// Connects to `url` and creates the tables on first use, without a secret key.
    ///
    /// # Errors
    /// The database cannot be reached, or holds tables of our names that are not ours or of
    /// another layout version; its secrets are sealed.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<Self> {
        Self::open_with_secret_key(url, None)
    }

    /// Connects as [`PostgresState::open`] does, with the key that seals the secrets: given a
    /// key, plain secrets are sealed under it before this returns.
    ///
    /// # Errors
    /// As [`PostgresState::open`]; the secrets are sealed under another key.
    pub fn open_with_secret_key(
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
        let state = Self {
            pool,
            url: url.clone(),
            runtime: Some(runtime),
            round_trips: Arc::default(),
            last_prune_ms: AtomicI64::new(i64::MIN),
            work: Arc::default(),
            listening: std::sync::OnceLock::new(),
            secret_key,
        };
        state
            .call(|pool, trips| async move {
                let mut client = pool.get().await?;
                create_schema(&mut client, &trips).await
            })
            .with_context(|| format!("preparing the sender's tables in {url}"))?;
        let Some(key) = state.secret_key.clone() else {
            // Nothing to write without a key: a read, no lock, refuses a sealed state.
            let recorded = state
                .call(|pool, trips| async move {
                    let client = pool.get().await?;
                    let db = Db::new(&client, &trips);
                    let row = db
                        .query_opt("SELECT key_check FROM sender_secret_key WHERE id = 1", &[])
                        .await
                        .context("reading the secret key record")?;
                    Ok(row.map(|row| row.get::<_, String>(0)))
                })
                .with_context(|| format!("PostgreSQL state {url}"))?;
            sealing::admit(recorded.as_deref(), None)?;
            return Ok(state);
        };
        let key = Some(key);
        state
            .sealing_pass(move |rows, recorded| {
                let written = sealing::admit(recorded, key.as_ref())?;
                let pass = SealingPass::seal_plain(rows, key.as_ref())?;
                pass.log_sealed(key.as_ref());
                Ok((written, pass))
            })
            .with_context(|| format!("PostgreSQL state {url}"))?;
        Ok(state)
    }

    /// Runs one pass over the secret columns in one transaction, one process at a time:
    /// `plan` reads the rows and the key record and says what to write (a new key record,
    /// changed rows).
    fn sealing_pass(
        &self,
        plan: impl FnOnce(&[SecretColumns], Option<&str>) -> anyhow::Result<(Option<String>, SealingPass)>
            + Send
            + 'static,
    ) -> anyhow::Result<u64> {
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            db.execute("SELECT pg_advisory_xact_lock($1)", &[&SEALING_LOCK])
                .await?;
            let recorded: Option<String> = db
                .query_opt("SELECT key_check FROM sender_secret_key WHERE id = 1", &[])
                .await
                .context("reading the secret key record")?
                .map(|row| row.get(0));
            let rows: Vec<SecretColumns> = db
                .query(
                    "SELECT id, basic_password, signature_file FROM sender_webhooks
                     ORDER BY id FOR UPDATE",
                    &[],
                )
                .await
                .context("reading the secrets")?
                .iter()
                .map(|row| SecretColumns {
                    webhook_id: row.get(0),
                    basic_password: row.get(1),
                    signature_file: row.get(2),
                })
                .collect();
            let (record, pass) = plan(&rows, recorded.as_deref())?;
            if record.is_none() && pass.changed.is_empty() {
                return Ok(pass.with_secrets);
            }
            if let Some(record) = record {
                db.execute(
                    "INSERT INTO sender_secret_key (id, key_check) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET key_check = EXCLUDED.key_check",
                    &[&record],
                )
                .await?;
            }
            // `updated_at_ms` stays: sealing changes how a secret is kept, not the webhook,
            // and an edit read before it must still apply.
            for row in &pass.changed {
                db.execute(
                    "UPDATE sender_webhooks SET basic_password = $2, signature_file = $3
                     WHERE id = $1",
                    &[&row.webhook_id, &row.basic_password, &row.signature_file],
                )
                .await?;
            }
            transaction
                .commit()
                .await
                .context("committing the sealed secrets")?;
            Ok(pass.with_secrets)
        })
    }

    /// Statements sent to the server so far (the benchmark reports round trips per delivery).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs `work` on this store's runtime and waits for it, from any thread (inside another
    /// runtime too: the wait is a plain channel, not a nested runtime).
    fn call<T, F>(&self, work: impl FnOnce(Pool, Arc<AtomicU64>) -> F) -> anyhow::Result<T>
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

/// The channel an enqueue notifies, so idle workers look for work at once.
const WORK_CHANNEL: &str = "sender_work";

/// Holds a connection that LISTENs on [`WORK_CHANNEL`] and raises `work` on each
/// notification, reconnecting (once a second) whenever the connection is lost. Polling
/// stays the fallback: a lost notification only delays work to the next poll.
async fn listen_for_work(config: tokio_postgres::Config, work: Arc<tokio::sync::Notify>) {
    loop {
        if let Ok((client, mut connection)) = config.connect(tokio_postgres::NoTls).await {
            let messages = async {
                while let Some(message) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => wake(&work),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            };
            tokio::pin!(messages);
            let listen = format!("LISTEN {WORK_CHANNEL}");
            let subscribed = tokio::select! {
                result = client.batch_execute(&listen) => result.is_ok(),
                () = &mut messages => false,
            };
            if subscribed {
                // Work may have come while no one listened.
                wake(&work);
                messages.await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Wakes every engine waiting for work now, and leaves a permit for one that is in the middle
/// of a pass: its pass may have read the queue before the enqueue committed, and without the
/// permit the work would wait for the next poll.
fn wake(work: &tokio::sync::Notify) {
    work.notify_waiters();
    work.notify_one();
}

/// Creates the tables unless they exist, or brings them to the latest version, under an
/// advisory lock (see [`LAYOUT`]); refuses tables of our names that carry no layout version,
/// or one this build did not write.
async fn create_schema(
    client: &mut deadpool_postgres::Object,
    trips: &AtomicU64,
) -> anyhow::Result<()> {
    let prepared = postgres_schema::prepare(client, &LAYOUT).await?;
    trips.fetch_add(prepared.round_trips, Ordering::Relaxed);
    Ok(())
}

/// A webhook's stored fields, secrets included, bound as `$1` … `$11` in this order (id,
/// name, description, url, events, auth, basic_username, basic_password, signature_file,
/// status, disabled_reason); INSERT and UPDATE add their own parameters after them.
fn column_params(row: &WebhookRow) -> [&(dyn ToSql + Sync); 11] {
    [
        &row.id,
        &row.name,
        &row.description,
        &row.url,
        &row.events,
        &row.auth,
        &row.basic_username,
        &row.basic_password,
        &row.signature_file,
        &row.status,
        &row.disabled_reason,
    ]
}

fn read_webhook(row: &Row) -> WebhookRow {
    WebhookRow {
        id: row.get("id"),
        name: row.get("name"),
        description: row.get("description"),
        url: row.get("url"),
        events: row.get("events"),
        auth: row.get("auth"),
        basic_username: row.get("basic_username"),
        basic_password: row.get("basic_password"),
        signature_file: row.get("signature_file"),
        status: row.get("status"),
        disabled_reason: row.get("disabled_reason"),
        created_at_ms: row.get("created_at_ms"),
        updated_at_ms: row.get("updated_at_ms"),
    }
}

fn read_summary(row: &Row) -> DeliverySummary {
    RequestRow {
        msg_id: row.get("msg_id"),
        webhook_id: row.get("webhook_id"),
        account_id: row.get("account_id"),
        event_names: row.get("event_names"),
        event_count: row.get("event_count"),
        state: row.get("state"),
        attempts: row.get("attempts"),
        last_status: row.get("last_status"),
        last_error: row.get("last_error"),
        created_at_ms: row.get("created_at_ms"),
        next_attempt_at_ms: row.get("next_attempt_at_ms"),
    }
    .into_summary()
}

/// Inserts one request in `state` and deletes the staged events it is made of.
async fn insert_request<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    request: &RequestToWrite,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    let event_count = i64::try_from(request.event_ids.len())?;
    let id: i64 = db
        .query_one(
            "INSERT INTO sender_requests (msg_id, webhook_id, account_id, event_names,
                 event_count, created_at_ms, state, next_attempt_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $6) RETURNING id",
            &[
                &crate::registry::new_msg_id(),
                &webhook_id,
                &request.account_id,
                &request.event_names,
                &event_count,
                &now_ms,
                &state,
            ],
        )
        .await?
        .get(0);
    db.execute(
        "INSERT INTO sender_request_bodies (request_id, body, event_ids) VALUES ($1, $2, $3)",
        &[&id, &request.body, &request.event_ids_json()?],
    )
    .await?;
    if !request.staged_seqs.is_empty() {
        db.execute(
            "DELETE FROM sender_staged_events WHERE seq = ANY($1)",
            &[&request.staged_seqs],
        )
        .await?;
    }
    Ok(())
}

async fn staged_events<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
) -> anyhow::Result<Vec<StagedEvent>> {
    let rows = db
        .query(
            "SELECT seq, account_id, event_id, event_name, event_json, enqueued_at_ms
             FROM sender_staged_events WHERE webhook_id = $1 ORDER BY seq",
            &[&webhook_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| StagedEvent {
            seq: row.get(0),
            account_id: row.get(1),
            event_id: row.get(2),
            event_name: row.get(3),
            event_json: row.get(4),
            enqueued_at_ms: row.get(5),
        })
        .collect())
}

/// Turns staged events into requests of at most `max_events` per account, in `state`.
async fn requests_from_staged<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    staged: Vec<StagedEvent>,
    max_events: usize,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    for request in batch_requests(staged, max_events) {
        insert_request(db, webhook_id, &request, now_ms, state).await?;
    }
    Ok(())
}

/// Disables a webhook whose retention ended and expires its pending requests and staged
/// events, inside the caller's transaction. Gives the number of events expired.
async fn expire_webhook<C: GenericClient>(
    db: &Db<'_, C>,
    webhook_id: &str,
    reason: &str,
    now_ms: i64,
) -> anyhow::Result<u64> {
    db.execute(
        "UPDATE sender_webhooks SET status = 'disabled', disabled_reason = $2, updated_at_ms = $3
         WHERE id = $1",
        &[&webhook_id, &reason, &now_ms],
    )
    .await?;
    let staged = staged_events(db, webhook_id).await?;
    requests_from_staged(db, webhook_id, staged, usize::MAX, now_ms, "expired").await?;
    let expired: i64 = db
        .query_one(
            "WITH gone AS (
                 UPDATE sender_requests SET state = 'expired', finished_at_ms = $2
                 WHERE webhook_id = $1
                   AND (state = 'pending' OR (state = 'expired' AND finished_at_ms IS NULL))
                 RETURNING event_count)
             SELECT COALESCE(SUM(event_count), 0)::BIGINT FROM gone",
            &[&webhook_id, &now_ms],
        )
        .await?
        .get(0);
    Ok(u64::try_from(expired).unwrap_or(0))
}

/// The statement parameters of a group of outcomes, one array per column of [`RECORD`].
struct OutcomeColumns {
    request_id: Vec<i64>,
    attempt: Vec<i64>,
    started_at_ms: Vec<i64>,
    status: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    latency_ms: Vec<i64>,
    response_head: Vec<String>,
    state: Vec<&'static str>,
    next_attempt_at_ms: Vec<i64>,
    finished_at_ms: Vec<Option<i64>>,
}

impl OutcomeColumns {
    fn of(records: &[AttemptRecord]) -> Self {
        let mut columns = Self {
            request_id: Vec::with_capacity(records.len()),
            attempt: Vec::with_capacity(records.len()),
            started_at_ms: Vec::with_capacity(records.len()),
            status: Vec::with_capacity(records.len()),
            error: Vec::with_capacity(records.len()),
            latency_ms: Vec::with_capacity(records.len()),
            response_head: Vec::with_capacity(records.len()),
            state: Vec::with_capacity(records.len()),
            next_attempt_at_ms: Vec::with_capacity(records.len()),
            finished_at_ms: Vec::with_capacity(records.len()),
        };
        for record in records {
            let (state, next, finished) = outcome_columns(record);
            columns.request_id.push(record.request_id);
            columns.attempt.push(i64::from(record.attempt));
            columns.started_at_ms.push(record.started_at_ms);
            columns.status.push(record.status.map(i64::from));
            columns.error.push(record.error.clone());
            columns.latency_ms.push(record.latency_ms);
            columns.response_head.push(record.response_head.clone());
            columns.state.push(state);
            columns.next_attempt_at_ms.push(next);
            columns.finished_at_ms.push(finished);
        }
        columns
    }

    /// Runs [`RECORD`] in a transaction of its own with `synchronous_commit` off: the
    /// outcomes survive a killed worker and a crashed server process, and a power cut of the
    /// database host can lose only the last ones, whose requests are then sent again with the
    /// same id and bytes (at least once); the next synced commit makes them durable too. The
    /// same trade as the SQLite store's unsynced outcomes. `false` when fenced out.
    async fn write_unsynced(
        &self,
        client: &deadpool_postgres::Object,
        trips: &AtomicU64,
        lease: &LeaseToken,
    ) -> anyhow::Result<bool> {
        let statement = client.prepare_cached(RECORD).await?;
        let params = self.params(lease);
        // Polled together, the three go out back to back on the connection: one round trip.
        let (begun, rows, committed) = tokio::join!(
            client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            client.query(&statement, &params),
            client.batch_execute("COMMIT"),
        );
        trips.fetch_add(1, Ordering::Relaxed);
        begun?;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                // The COMMIT of a failed transaction rolled it back; nothing was written.
                return Err(error.into());
            }
        };
        committed?;
        let held: i64 = rows.first().context("the database returned no row")?.get(0);
        Ok(held == 1)
    }

    /// The parameters of [`RECORD`], in order.
    fn params<'a>(&'a self, lease: &'a LeaseToken) -> [&'a (dyn ToSql + Sync); 12] {
        [
            &lease.webhook_id.0,
            &lease.fence,
            &self.request_id,
            &self.attempt,
            &self.started_at_ms,
            &self.status,
            &self.error,
            &self.latency_ms,
            &self.response_head,
            &self.state,
            &self.next_attempt_at_ms,
            &self.finished_at_ms,
        ]
    }

    /// Runs [`RECORD`] inside the caller's transaction; `false` when fenced out.
    async fn write<C: GenericClient>(
        &self,
        db: &Db<'_, C>,
        lease: &LeaseToken,
    ) -> anyhow::Result<bool> {
        let held: i64 = db.query_one(RECORD, &self.params(lease)).await?.get(0);
        Ok(held == 1)
    }
}

impl Registry for PostgresState {
    fn insert_webhook(&self, webhook: &Webhook) -> anyhow::Result<()> {
        let row = WebhookRow::of(webhook, self.secret_key.as_ref())?;
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            // Two processes registering at once must not both see room for a fifth.
            db.execute(
                "LOCK TABLE sender_webhooks IN SHARE ROW EXCLUSIVE MODE",
                &[],
            )
            .await?;
            let count: i64 = db
                .query_one("SELECT count(*) FROM sender_webhooks", &[])
                .await?
                .get(0);
            if !room_for_another(count) {
                return Err(too_many_webhooks(count));
            }
            db.execute(
                &format!(
                    "INSERT INTO sender_webhooks ({WEBHOOK_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ),
                &[
                    &column_params(&row)[..],
                    &[&row.created_at_ms, &row.updated_at_ms],
                ]
                .concat(),
            )
            .await
            .context("storing the webhook")?;
            transaction
                .commit()
                .await
                .context("committing the webhook")?;
            Ok(())
        })
    }

    fn update_webhook(&self, webhook: &Webhook, read_at_ms: i64) -> anyhow::Result<()> {
        let row = WebhookRow::of(webhook, self.secret_key.as_ref())?;
        let id = webhook.id.clone();
        self.call(|pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            // One statement: it applies only if nobody changed the webhook since it was read,
            // whichever process that was.
            let changed = db
                .execute(
                    "UPDATE sender_webhooks SET name = $2, description = $3, url = $4,
                         events = $5, auth = $6, basic_username = $7, basic_password = $8,
                         signature_file = $9, status = $10, disabled_reason = $11,
                         updated_at_ms = $12
                     WHERE id = $1 AND updated_at_ms = $13",
                    &[&column_params(&row)[..], &[&row.updated_at_ms, &read_at_ms]].concat(),
                )
                .await
                .context("updating the webhook")?;
            if changed == 0 {
                let exists = db
                    .query_opt("SELECT 1 FROM sender_webhooks WHERE id = $1", &[&row.id])
                    .await?
                    .is_some();
                return Err(changed_meanwhile(&id, exists));
            }
            Ok(())
        })
    }

    fn webhook(&self, id: &WebhookId) -> anyhow::Result<Option<Webhook>> {
        let id = id.as_str().to_owned();
        let found = self.call(|pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            let row = db
                .query_opt(
                    &format!("SELECT {WEBHOOK_COLUMNS} FROM sender_webhooks WHERE id = $1"),
                    &[&id],
                )
                .await
                .context("reading the webhook")?;
            Ok(row.as_ref().map(read_webhook))
        })?;
        found
            .map(|row| row.into_webhook(self.secret_key.as_ref()))
            .transpose()
    }

    fn webhooks(&self) -> anyhow::Result<Vec<Webhook>> {
        let rows = self.call(|pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            let rows = db
                .query(
                    &format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM sender_webhooks ORDER BY created_at_ms, id"
                    ),
                    &[],
                )
                .await
                .context("reading the webhooks")?;
            Ok(rows.iter().map(read_webhook).collect::<Vec<_>>())
        })?;
        rows.into_iter()
            .map(|row| row.into_webhook(self.secret_key.as_ref()))
            .collect()
    }

    fn delete_webhook(&self, id: &WebhookId) -> anyhow::Result<Option<u64>> {
        let id = id.as_str().to_owned();
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            let waiting: i64 = db
                .query_one(
                    "SELECT (SELECT count(*) FROM sender_requests
                             WHERE webhook_id = $1 AND state = 'pending')
                          + (SELECT count(*) FROM sender_staged_events WHERE webhook_id = $1)",
                    &[&id],
                )
                .await?
                .get(0);
            if db
                .execute("DELETE FROM sender_webhooks WHERE id = $1", &[&id])
                .await?
                == 0
            {
                return Ok(None);
            }
            // Attempts and requests go with the webhook: its history means nothing without it.
            for statement in [
                "DELETE FROM sender_attempts WHERE request_id IN
                     (SELECT id FROM sender_requests WHERE webhook_id = $1)",
                "DELETE FROM sender_request_bodies WHERE request_id IN
                     (SELECT id FROM sender_requests WHERE webhook_id = $1)",
                "DELETE FROM sender_requests WHERE webhook_id = $1",
                "DELETE FROM sender_staged_events WHERE webhook_id = $1",
                "DELETE FROM sender_leases WHERE webhook_id = $1",
            ] {
                db.execute(statement, &[&id]).await?;
            }
            transaction
                .commit()
                .await
                .context("committing the deletion")?;
            Ok(Some(u64::try_from(waiting).unwrap_or(0)))
        })
    }

    fn reseal_secrets(&self, new: &SecretKey) -> anyhow::Result<u64> {
        let (current, new) = (self.secret_key.clone(), new.clone());
        self.sealing_pass(move |rows, recorded| {
            sealing::admit(recorded, current.as_ref())?;
            let pass = SealingPass::reseal(rows, current.as_ref(), &new)?;
            Ok((Some(new.key_check()?), pass))
        })
    }
}

impl Queue for PostgresState {
    fn enqueue(&self, deliveries: &[NewDelivery], now_ms: i64) -> anyhow::Result<()> {
        let mut writes = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            writes.push((
                delivery.webhook_id.as_str().to_owned(),
                delivery.account_id,
                delivery.event.event_id.clone(),
                delivery.event.event_name.clone(),
                enqueued(delivery)?,
            ));
        }
        let mut webhooks: Vec<String> = writes.iter().map(|write| write.0.clone()).collect();
        webhooks.sort();
        webhooks.dedup();
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            // A worker releasing an idle lease holds its row exclusively while it looks for
            // work: either it sees these events, or this enqueue waits and the lease is free
            // for whoever delivers them.
            db.execute(
                "SELECT 1 FROM sender_leases WHERE webhook_id = ANY($1) FOR SHARE",
                &[&webhooks],
            )
            .await?;
            for (webhook_id, account_id, event_id, event_name, write) in &writes {
                match write {
                    Enqueued::Request(request) => {
                        insert_request(&db, webhook_id, request, now_ms, "pending").await?;
                    }
                    Enqueued::Staged { event_json } => {
                        db.execute(
                            "INSERT INTO sender_staged_events (webhook_id, account_id, event_id,
                                 event_name, event_json, enqueued_at_ms)
                             VALUES ($1, $2, $3, $4, $5, $6)",
                            &[
                                webhook_id, account_id, event_id, event_name, event_json, &now_ms,
                            ],
                        )
                        .await?;
                    }
                }
            }
            // Delivered to the listeners at the commit.
            db.execute("SELECT pg_notify($1, '')", &[&WORK_CHANNEL])
                .await?;
            transaction
                .commit()
                .await
                .context("committing the queued events")?;
            Ok(())
        })
    }

    fn webhooks_with_work(&self) -> anyhow::Result<Vec<WebhookId>> {
        let now_ms = verify::unix_now_ms();
        let prune = self.last_prune_ms.load(Ordering::Relaxed) <= now_ms - PRUNE_EVERY_MS;
        if prune {
            self.last_prune_ms.store(now_ms, Ordering::Relaxed);
        }
        self.call(move |pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            if prune {
                prune_finished(&db, now_ms - FINISHED_KEPT_FOR_MS).await?;
            }
            let rows = db
                .query(
                    "SELECT id FROM sender_webhooks w WHERE status = 'active' AND (
                         EXISTS (SELECT 1 FROM sender_requests r
                                 WHERE r.webhook_id = w.id AND r.state = 'pending')
                         OR EXISTS (SELECT 1 FROM sender_staged_events s WHERE s.webhook_id = w.id))
                     ORDER BY created_at_ms, id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|row| WebhookId(row.get(0))).collect())
        })
    }

    fn try_lease(
        &self,
        webhook_id: &WebhookId,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> anyhow::Result<Lease> {
        let (webhook_id, owner) = (webhook_id.as_str().to_owned(), owner.to_owned());
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        self.call(move |pool, trips| async move {
            let mut client = pool.get().await?;
            {
                // One statement for the two usual cases. The holder renews (its fence stays);
                // a worker waiting for another's lease reads the row, which neither waits for
                // nor holds up the holder. (The SELECT sees the row as it was before the
                // UPDATE: the renewal is told by `renewed`.)
                let db = Db::new(&client, &trips);
                let row = db
                    .query_opt(
                        "WITH renewed AS (
                             UPDATE sender_leases SET expires_at_ms = $3
                             WHERE webhook_id = $1 AND owner = $2 RETURNING fence)
                         SELECT (SELECT fence FROM renewed), owner, pid, host, fence,
                                expires_at_ms
                         FROM sender_leases WHERE webhook_id = $1",
                        &[&webhook_id, &owner, &expires_at_ms],
                    )
                    .await?;
                match row {
                    Some(row) => {
                        if let Some(fence) = row.get::<_, Option<i64>>(0) {
                            return Ok(Lease::Acquired { fence });
                        }
                        if let Some(held) = lease_row(&row, 1).held_against(&owner, now_ms) {
                            return Ok(Lease::HeldBy(held));
                        }
                    }
                    None => {
                        db.execute(
                            "INSERT INTO sender_leases
                                 (webhook_id, owner, pid, host, fence, expires_at_ms)
                             VALUES ($1, '', 0, '', 0, 0) ON CONFLICT (webhook_id) DO NOTHING",
                            &[&webhook_id],
                        )
                        .await?;
                    }
                }
            }
            // The lease looks free: take it under the row's lock, looking again.
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            let Some(row) = db
                .query_opt(
                    "SELECT owner, pid, host, fence, expires_at_ms FROM sender_leases
                     WHERE webhook_id = $1 FOR UPDATE SKIP LOCKED",
                    &[&webhook_id],
                )
                .await?
            else {
                // Another worker is taking it (or writing under it) right now. Whoever takes
                // it holds it until about `expires_at_ms`; the waiter looks again before that
                // anyway (one poll interval), and learns the holder's name then.
                return Ok(Lease::HeldBy(HeldLease {
                    owner: "another worker".to_owned(),
                    expires_at_ms,
                }));
            };
            let row = lease_row(&row, 0);
            let fence = row.fence_for(&owner);
            if let Some(held) = row.held_against(&owner, now_ms) {
                return Ok(Lease::HeldBy(held));
            }
            db.execute(
                "UPDATE sender_leases SET owner = $2, pid = $3, host = $4, fence = $5,
                     expires_at_ms = $6 WHERE webhook_id = $1",
                &[
                    &webhook_id,
                    &owner,
                    &own_pid(),
                    &process_identity_space(),
                    &fence,
                    &expires_at_ms,
                ],
            )
            .await?;
            transaction.commit().await?;
            Ok(Lease::Acquired { fence })
        })
    }

    fn release_lease(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<()> {
        let (webhook_id, owner) = (webhook_id.as_str().to_owned(), owner.to_owned());
        self.call(|pool, trips| async move {
            let client = pool.get().await?;
            Db::new(&client, &trips)
                .execute(RELEASE_LEASE, &[&webhook_id, &owner])
                .await?;
            Ok(())
        })
    }

    fn release_lease_if_idle(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<bool> {
        let (webhook_id, owner) = (webhook_id.as_str().to_owned(), owner.to_owned());
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            // Exclusive against the share lock of `enqueue`: see there.
            db.execute(
                "SELECT 1 FROM sender_leases WHERE webhook_id = $1 AND owner = $2 FOR UPDATE",
                &[&webhook_id, &owner],
            )
            .await?;
            let waiting: bool = db
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM sender_requests
                                    WHERE webhook_id = $1 AND state = 'pending')
                         OR EXISTS (SELECT 1 FROM sender_staged_events WHERE webhook_id = $1)",
                    &[&webhook_id],
                )
                .await?
                .get(0);
            if waiting {
                return Ok(false);
            }
            db.execute(RELEASE_LEASE, &[&webhook_id, &owner]).await?;
            transaction.commit().await?;
            Ok(true)
        })
    }

    fn flush_batches(
        &self,
        webhook_id: &WebhookId,
        now_ms: i64,
        interval_ms: i64,
        max_events: usize,
        force: bool,
    ) -> anyhow::Result<Option<i64>> {
        let webhook_id = webhook_id.as_str().to_owned();
        self.call(move |pool, trips| async move {
            let mut client = pool.get().await?;
            // Nothing staged (the usual case for real-time events): one read, no transaction.
            let staged: bool = Db::new(&client, &trips)
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM sender_staged_events WHERE webhook_id = $1)",
                    &[&webhook_id],
                )
                .await?
                .get(0);
            if !staged {
                return Ok(None);
            }
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            // One flush of a webhook at a time: the lease row is the webhook's lock.
            db.execute(
                "SELECT 1 FROM sender_leases WHERE webhook_id = $1 FOR UPDATE",
                &[&webhook_id],
            )
            .await?;
            let mut staged = staged_events(&db, &webhook_id).await?;
            match flush_plan(&staged, now_ms, interval_ms, max_events, force) {
                FlushPlan::Empty => return Ok(None),
                FlushPlan::WaitUntil(due) => return Ok(Some(due)),
                FlushPlan::Take(count) => {
                    staged.truncate(count);
                    requests_from_staged(&db, &webhook_id, staged, max_events, now_ms, "pending")
                        .await?;
                }
            }
            let oldest: Option<i64> = db
                .query_one(
                    "SELECT MIN(enqueued_at_ms) FROM sender_staged_events WHERE webhook_id = $1",
                    &[&webhook_id],
                )
                .await?
                .get(0);
            transaction.commit().await.context("committing the batch")?;
            Ok(oldest.map(|oldest| oldest.saturating_add(interval_ms)))
        })
    }

    fn pending(
        &self,
        webhook_id: &WebhookId,
        limit: usize,
        strict: bool,
        now_ms: i64,
        after_id: i64,
    ) -> anyhow::Result<Vec<PendingRequest>> {
        let id = webhook_id.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            let rows = if strict {
                db.query(
                    "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts,
                         r.next_attempt_at_ms
                     FROM sender_requests r JOIN sender_request_bodies b ON b.request_id = r.id
                     WHERE r.webhook_id = $1 AND r.state = 'pending' ORDER BY r.id LIMIT $2",
                    &[&id.as_str(), &limit],
                )
                .await?
            } else {
                db.query(
                    "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts,
                         r.next_attempt_at_ms
                     FROM sender_requests r JOIN sender_request_bodies b ON b.request_id = r.id
                     WHERE r.webhook_id = $1 AND r.state = 'pending' AND r.id > $4
                       AND r.next_attempt_at_ms <= $3
                     ORDER BY r.id LIMIT $2",
                    &[&id.as_str(), &limit, &now_ms, &after_id],
                )
                .await?
            };
            rows.iter()
                .map(|row| {
                    Ok(PendingRequest {
                        id: row.get(0),
                        msg_id: row.get(1),
                        webhook_id: id.clone(),
                        body: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)),
                        created_at_ms: row.get(3),
                        attempts: u32::try_from(row.get::<_, i64>(4))?,
                        next_attempt_at_ms: row.get(5),
                    })
                })
                .collect()
        })
    }

    fn next_due(&self, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>> {
        let webhook_id = webhook_id.as_str().to_owned();
        self.call(|pool, trips| async move {
            let client = pool.get().await?;
            Ok(Db::new(&client, &trips)
                .query_one(
                    "SELECT MIN(next_attempt_at_ms) FROM sender_requests
                     WHERE webhook_id = $1 AND state = 'pending'",
                    &[&webhook_id],
                )
                .await?
                .get(0))
        })
    }

    fn record(&self, lease: &LeaseToken, attempts: &[AttemptRecord]) -> anyhow::Result<Recorded> {
        let columns = OutcomeColumns::of(attempts);
        let lease = lease.clone();
        let expired: Vec<AttemptRecord> = attempts
            .iter()
            .filter(|record| record.next == RequestState::Expired)
            .cloned()
            .collect();
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            if expired.is_empty() {
                // The common case: one statement in a transaction that does not wait for the
                // WAL flush, sent with its BEGIN and COMMIT in one round trip (pipelined).
                return Ok(if columns.write_unsynced(&client, &trips, &lease).await? {
                    Recorded::Written { expired_events: 0 }
                } else {
                    Recorded::Fenced
                });
            }
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            if !columns.write(&db, &lease).await? {
                return Ok(Recorded::Fenced);
            }
            let mut expired_events = 0;
            for record in &expired {
                let row = db
                    .query_one(
                        "SELECT event_count, created_at_ms FROM sender_requests WHERE id = $1",
                        &[&record.request_id],
                    )
                    .await?;
                let (events, created_ms): (i64, i64) = (row.get(0), row.get(1));
                let reason = retention_reason(record, created_ms);
                let now_ms = record.started_at_ms.saturating_add(record.latency_ms);
                expired_events += u64::try_from(events).unwrap_or(0)
                    + expire_webhook(&db, lease.webhook_id.as_str(), &reason, now_ms).await?;
            }
            transaction.commit().await.context("committing attempts")?;
            Ok(Recorded::Written { expired_events })
        })
    }

    fn give_up(&self, webhook_id: &WebhookId, reason: &str, now_ms: i64) -> anyhow::Result<u64> {
        let (webhook_id, reason) = (webhook_id.as_str().to_owned(), reason.to_owned());
        self.call(move |pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let expired =
                expire_webhook(&Db::new(&transaction, &trips), &webhook_id, &reason, now_ms)
                    .await?;
            transaction
                .commit()
                .await
                .context("committing the expiry")?;
            Ok(expired)
        })
    }

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        // Only a delivery engine asks: short commands (`webhooks list`) never open the
        // listening connection.
        let runtime = self.runtime.as_ref()?;
        self.listening.get_or_init(|| {
            runtime.spawn(listen_for_work(
                self.url.config().clone(),
                self.work.clone(),
            ));
        });
        Some(self.work.clone())
    }

    fn counts(&self, webhook_id: Option<&WebhookId>) -> anyhow::Result<QueueCounts> {
        let filter = webhook_id.map(|id| id.as_str().to_owned());
        self.call(|pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            let mut counts = QueueCounts::default();
            let rows = db
                .query(
                    "SELECT state, count(*) FROM sender_requests
                     WHERE $1::text IS NULL OR webhook_id = $1 GROUP BY state",
                    &[&filter],
                )
                .await?;
            for row in rows {
                let count = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
                match row.get::<_, &str>(0) {
                    "pending" => counts.pending = count,
                    "delivered" => counts.delivered = count,
                    _ => counts.expired += count,
                }
            }
            let staged: i64 = db
                .query_one(
                    "SELECT count(*) FROM sender_staged_events
                     WHERE $1::text IS NULL OR webhook_id = $1",
                    &[&filter],
                )
                .await?
                .get(0);
            counts.staged = u64::try_from(staged).unwrap_or(0);
            Ok(counts)
        })
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> anyhow::Result<Vec<DeliverySummary>> {
        let webhook_id = filter.webhook_id.as_ref().map(|id| id.as_str().to_owned());
        let state = filter.state.clone();
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        self.call(|pool, trips| async move {
            let client = pool.get().await?;
            let rows = Db::new(&client, &trips)
                .query(
                    &format!(
                        "SELECT {SUMMARY_COLUMNS} FROM sender_requests r
                         WHERE ($1::text IS NULL OR r.webhook_id = $1)
                           AND ($2::text IS NULL OR r.state = $2)
                         ORDER BY r.id DESC LIMIT $3"
                    ),
                    &[&webhook_id, &state, &limit],
                )
                .await?;
            Ok(rows.iter().map(read_summary).collect())
        })
    }

    fn delivery(&self, id: &str) -> anyhow::Result<Option<DeliveryDetail>> {
        let id = id.to_owned();
        let row_id: i64 = id.parse().unwrap_or(-1);
        self.call(move |pool, trips| async move {
            let client = pool.get().await?;
            let db = Db::new(&client, &trips);
            let Some(row) = db
                .query_opt(
                    &format!(
                        "SELECT r.id, {SUMMARY_COLUMNS}, b.body, b.event_ids FROM sender_requests r
                         JOIN sender_request_bodies b ON b.request_id = r.id
                         WHERE r.msg_id = $1 OR r.id = $2"
                    ),
                    &[&id, &row_id],
                )
                .await?
            else {
                return Ok(None);
            };
            let request_id: i64 = row.get("id");
            let body: Vec<u8> = row.get("body");
            let ids: String = row.get("event_ids");
            let attempt_log = db
                .query(
                    "SELECT attempt, started_at_ms, status, error, latency_ms, response_head
                     FROM sender_attempts WHERE request_id = $1 ORDER BY id",
                    &[&request_id],
                )
                .await?
                .iter()
                .map(|attempt| AttemptView {
                    attempt: attempt.get(0),
                    at: verify::timestamp::format_iso_millis(attempt.get(1)),
                    status: attempt.get(2),
                    error: attempt.get(3),
                    latency_ms: attempt.get(4),
                    response_head: attempt.get(5),
                })
                .collect();
            Ok(Some(DeliveryDetail {
                summary: read_summary(&row),
                event_ids: serde_json::from_str(&ids).unwrap_or_default(),
                body: String::from_utf8_lossy(&body).into_owned(),
                attempt_log,
            }))
        })
    }
}

/// The lease columns `owner, pid, host, fence, expires_at_ms` of `row`, from column `first` on.
fn lease_row(row: &Row, first: usize) -> LeaseRow {
    LeaseRow {
        owner: row.get(first),
        pid: row.get(first + 1),
        host: row.get(first + 2),
        fence: row.get(first + 3),
        expires_at_ms: row.get(first + 4),
    }
}

/// Gives a lease up, keeping its row and fence number.
const RELEASE_LEASE: &str =
    "UPDATE sender_leases SET owner = '', expires_at_ms = 0 WHERE webhook_id = $1 AND owner = $2";

/// Deletes finished requests (and their bodies and attempts) that finished before
/// `before_ms`.
async fn prune_finished<C: GenericClient>(db: &Db<'_, C>, before_ms: i64) -> anyhow::Result<()> {
    db.execute(
        "WITH gone AS (
             DELETE FROM sender_requests
             WHERE state <> 'pending' AND finished_at_ms < $1 RETURNING id
         ), bodies AS (
             DELETE FROM sender_request_bodies WHERE request_id IN (SELECT id FROM gone)
         )
         DELETE FROM sender_attempts WHERE request_id IN (SELECT id FROM gone)",
        &[&before_ms],
    )
    .await?;
    Ok(())
}
