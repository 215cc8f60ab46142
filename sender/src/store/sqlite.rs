//! The SQLite state: registrations and the delivery queue in one database file.
//!
//! WAL mode with `synchronous=FULL` by default: a commit is on disk (the WAL is synced) before
//! the call returns, so an event `trigger` accepted survives a power cut as well as the sender
//! being killed, and so does a batch request's `webhook-id` once it is made. Only [`record`]
//! commits with `synchronous=NORMAL`: its commits survive a killed process (the data is in the
//! operating system's cache, which is what the crash test checks) and a power cut can lose only
//! the last outcomes, whose requests are then sent again with the same id and bytes, which
//! at-least-once delivery allows; the next synced commit makes them durable too (WAL frames
//! are synced in order). Syncing every group of outcomes would cost a disk flush every few
//! milliseconds for no guarantee the SPEC asks for. Connections wait up to 5 s on a lock so
//! that `trigger` and `run` can share the file.
//!
//! [`record`]: Queue::record

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use verify::timestamp::format_iso_millis;

use super::batching::{
    batch_requests, enqueued, flush_plan, Enqueued, FlushPlan, RequestToWrite, StagedEvent,
};
use super::lease_row::{own_pid, process_identity_space, LeaseRow};
use super::rows::{
    changed_meanwhile, outcome_columns, retention_reason, room_for_another, too_many_webhooks,
    RequestRow, SealingPass, WebhookRow,
};
use super::{
    AttemptRecord, AttemptView, DeliveryDetail, DeliveryFilter, DeliverySummary, Lease, LeaseToken,
    NewDelivery, PendingRequest, Queue, QueueCounts, Recorded, Registry, RequestState,
};
use crate::registry::{Webhook, WebhookId};
use crate::sealing::{self, SecretColumns, SecretKey};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhooks (
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
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    event_names TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    finished_at_ms INTEGER
);
-- Only pending rows are indexed: a delivered request leaves the index (one delete) instead of
-- moving inside it, which keeps the per-delivery write small.
CREATE INDEX IF NOT EXISTS requests_pending ON requests (webhook_id, id) WHERE state = 'pending';
-- The bytes never change, so they live apart from the row every attempt updates: that row
-- stays small and a commit of many outcomes touches few pages.
CREATE TABLE IF NOT EXISTS request_bodies (
    request_id INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    event_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staged_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_json BLOB NOT NULL,
    enqueued_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS staged_by_webhook ON staged_events (webhook_id, seq);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    latency_ms INTEGER NOT NULL,
    response_head TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_request ON attempts (request_id, attempt);
CREATE TABLE IF NOT EXISTS leases (
    webhook_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    -- Where `pid` means something: see `process_identity_space`.
    host TEXT NOT NULL DEFAULT '',
    -- Larger at every change of hands; the row stays when the lease is released, so a
    -- number is never given twice (see `Queue::record`).
    fence INTEGER NOT NULL DEFAULT 0
);
-- The key that seals the secrets, if any (see `crate::sealing`): one row holding a value sealed
-- under it.
CREATE TABLE IF NOT EXISTS secret_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_check TEXT NOT NULL
);
";

/// Gives a lease up, keeping its row and fence number (see the `fence` column).
const RELEASE_LEASE: &str =
    "UPDATE leases SET owner = '', expires_at_ms = 0 WHERE webhook_id = ?1 AND owner = ?2";

/// Attempt rows written by one multi-row INSERT when outcomes are recorded in a group.
const ATTEMPT_ROWS: usize = 16;
/// The multi-row INSERT of [`ATTEMPT_ROWS`] attempts, built once.
static INSERT_MANY_ATTEMPTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO attempts (request_id, attempt, started_at_ms, status, error, latency_ms,
         response_head) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?)"; ATTEMPT_ROWS].join(", ")
    )
});

/// Registrations and queue in a SQLite file.
///
/// One connection behind a std `Mutex`: every method holds it for one short statement or
/// transaction and never across an `.await` (the engine calls these from `spawn_blocking`).
pub struct SqliteState {
    connection: Mutex<Connection>,
    /// Seals and opens the secret columns (see `crate::sealing`).
    secret_key: Option<SecretKey>,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteState")
    }
}

impl SqliteState {
    /// Opens (creating with mode 0600 when absent) the database at `path` and its tables,
    /// without a secret key.
    ///
    /// # Errors
    /// When the file cannot be created or opened, or is not a SQLite database; when its
    /// secrets are sealed.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with_secret_key(path, None)
    }

    /// Opens the database at `path` as [`SqliteState::open`] does, with the key that seals
    /// its secrets: given a key, plain secrets are sealed under it before this returns.
    ///
    /// # Errors
    /// As [`SqliteState::open`]; the secrets are sealed under another key.
    pub fn open_with_secret_key(
        path: &Path,
        secret_key: Option<SecretKey>,
    ) -> anyhow::Result<Self> {
        // The file holds secrets: create it readable by its owner only, before SQLite does.
        common::files::create_private(path)
            .with_context(|| format!("creating state database {}", path.display()))?;
        let connection = Connection::open(path)
            .with_context(|| format!("opening state database {}", path.display()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .context("setting the busy timeout")?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("switching {} to WAL mode", path.display()))?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .context("setting synchronous=FULL")?;
        // On macOS a plain fsync does not reach the disk; elsewhere SQLite ignores these.
        connection
            .execute_batch("PRAGMA fullfsync=ON; PRAGMA checkpoint_fullfsync=ON;")
            .context("setting fullfsync")?;
        connection
            .execute_batch(SCHEMA)
            .with_context(|| format!("creating the tables of {}", path.display()))?;
        add_lease_columns(&connection)
            .with_context(|| format!("updating the tables of {}", path.display()))?;
        let state = Self {
            connection: Mutex::new(connection),
            secret_key,
        };
        if state.secret_key.is_none() {
            // Nothing to write without a key: a read, no write lock, refuses a sealed state.
            let recorded: Option<String> = state
                .lock()
                .query_row("SELECT key_check FROM secret_key WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .optional()
                .context("reading the secret key record")?;
            sealing::admit(recorded.as_deref(), None)?;
            return Ok(state);
        }
        state
            .sealing_pass(|rows, recorded| {
                let written = sealing::admit(recorded, state.secret_key.as_ref())?;
                let pass = SealingPass::seal_plain(rows, state.secret_key.as_ref())?;
                pass.log_sealed(state.secret_key.as_ref());
                Ok((written, pass))
            })
            .with_context(|| format!("state database {}", path.display()))?;
        Ok(state)
    }

    /// Runs one pass over the secret columns in one transaction: `plan` reads the rows and
    /// the key record and says what to write (a new key record, changed rows).
    fn sealing_pass(
        &self,
        plan: impl FnOnce(
            &[SecretColumns],
            Option<&str>,
        ) -> anyhow::Result<(Option<String>, SealingPass)>,
    ) -> anyhow::Result<u64> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded: Option<String> = transaction
            .query_row("SELECT key_check FROM secret_key WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .context("reading the secret key record")?;
        let rows = transaction
            .prepare("SELECT id, basic_password, signature_file FROM webhooks ORDER BY id")?
            .query_map([], |row| {
                Ok(SecretColumns {
                    webhook_id: row.get(0)?,
                    basic_password: row.get(1)?,
                    signature_file: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
            .context("reading the secrets")?;
        let (record, pass) = plan(&rows, recorded.as_deref())?;
        if record.is_none() && pass.changed.is_empty() {
            return Ok(pass.with_secrets);
        }
        if let Some(record) = record {
            transaction.execute(
                "INSERT INTO secret_key (id, key_check) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET key_check = excluded.key_check",
                [record],
            )?;
        }
        // `updated_at_ms` stays: sealing changes how a secret is kept, not the webhook, and
        // an edit read before it must still apply.
        for row in &pass.changed {
            transaction.execute(
                "UPDATE webhooks SET basic_password = ?2, signature_file = ?3 WHERE id = ?1",
                params![row.webhook_id, row.basic_password, row.signature_file],
            )?;
        }
        transaction
            .commit()
            .context("committing the sealed secrets")?;
        if !pass.changed.is_empty() {
            scrub(&connection);
        }
        Ok(pass.with_secrets)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// After secrets were sealed or moved to a new key: their old values (plain text, or sealed
/// under the retired key) stay in the file's free space and in the WAL until overwritten, so
/// the file is rewritten (VACUUM) and the WAL emptied, and a copy of the file holds only what
/// is sealed now. Best effort, with a warning: another process reading the state can keep the
/// WAL from emptying until it moves on.
fn scrub(connection: &Connection) {
    let scrubbed = connection.execute_batch("VACUUM").and_then(|()| {
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        })
    });
    match scrubbed {
        Ok(0) => {}
        Ok(_) => tracing::warn!(
            "another process holds the state open: the write-ahead log still holds the \
             secrets' old values until it is checkpointed"
        ),
        Err(error) => tracing::warn!(
            %error,
            "could not rewrite the state file: its free space may still hold the secrets' \
             old values"
        ),
    }
}

fn read_webhook(row: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookRow> {
    Ok(WebhookRow {
        id: row.get("id")?,
        name: row.get("name")?,
        description: row.get("description")?,
        url: row.get("url")?,
        events: row.get("events")?,
        auth: row.get("auth")?,
        basic_username: row.get("basic_username")?,
        basic_password: row.get("basic_password")?,
        signature_file: row.get("signature_file")?,
        status: row.get("status")?,
        disabled_reason: row.get("disabled_reason")?,
        created_at_ms: row.get("created_at_ms")?,
        updated_at_ms: row.get("updated_at_ms")?,
    })
}

/// A webhook's stored fields, secrets included, bound as `?1` … `?11` in this order (id,
/// name, description, url, events, auth, basic_username, basic_password, signature_file,
/// status, disabled_reason); INSERT and UPDATE add their own parameters after them.
fn column_values(
    webhook: &Webhook,
    key: Option<&SecretKey>,
) -> anyhow::Result<Vec<rusqlite::types::Value>> {
    use rusqlite::types::Value;
    let row = WebhookRow::of(webhook, key)?;
    Ok(vec![
        Value::Text(row.id),
        Value::Text(row.name),
        Value::Text(row.description),
        Value::Text(row.url),
        Value::Text(row.events),
        Value::Text(row.auth),
        Value::from(row.basic_username),
        Value::from(row.basic_password),
        Value::from(row.signature_file),
        Value::Text(row.status),
        Value::from(row.disabled_reason),
    ])
}

impl Registry for SqliteState {
    fn insert_webhook(&self, webhook: &Webhook) -> anyhow::Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let count: i64 =
            transaction.query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))?;
        if !room_for_another(count) {
            return Err(too_many_webhooks(count));
        }
        let mut values = column_values(webhook, self.secret_key.as_ref())?;
        values.extend([webhook.created_at_ms.into(), webhook.updated_at_ms.into()]);
        transaction
            .execute(
                "INSERT INTO webhooks (id, name, description, url, events, auth, basic_username,
                 basic_password, signature_file, status, disabled_reason, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                rusqlite::params_from_iter(values),
            )
            .context("storing the webhook")?;
        transaction.commit().context("committing the webhook")?;
        Ok(())
    }

    fn update_webhook(&self, webhook: &Webhook, read_at_ms: i64) -> anyhow::Result<()> {
        let mut values = column_values(webhook, self.secret_key.as_ref())?;
        values.extend([webhook.updated_at_ms.into(), read_at_ms.into()]);
        let connection = self.lock();
        let changed = connection
            .execute(
                "UPDATE webhooks SET name = ?2, description = ?3, url = ?4, events = ?5, auth = ?6,
                 basic_username = ?7, basic_password = ?8, signature_file = ?9, status = ?10,
                 disabled_reason = ?11, updated_at_ms = ?12 WHERE id = ?1 AND updated_at_ms = ?13",
                rusqlite::params_from_iter(values),
            )
            .context("updating the webhook")?;
        if changed == 0 {
            let exists = connection
                .query_row(
                    "SELECT 1 FROM webhooks WHERE id = ?1",
                    [webhook.id.as_str()],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            return Err(changed_meanwhile(&webhook.id, exists));
        }
        Ok(())
    }

    fn webhook(&self, id: &WebhookId) -> anyhow::Result<Option<Webhook>> {
        let connection = self.lock();
        let found = connection
            .query_row(
                "SELECT * FROM webhooks WHERE id = ?1",
                [id.as_str()],
                read_webhook,
            )
            .optional()
            .context("reading the webhook")?;
        found
            .map(|row| row.into_webhook(self.secret_key.as_ref()))
            .transpose()
    }

    fn webhooks(&self) -> anyhow::Result<Vec<Webhook>> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT * FROM webhooks ORDER BY created_at_ms, id")?;
        let rows = statement
            .query_map([], read_webhook)?
            .collect::<Result<Vec<_>, _>>()
            .context("reading the webhooks")?;
        rows.into_iter()
            .map(|row| row.into_webhook(self.secret_key.as_ref()))
            .collect()
    }

    fn delete_webhook(&self, id: &WebhookId) -> anyhow::Result<Option<u64>> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pending: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM requests WHERE webhook_id = ?1 AND state = 'pending'",
            [id.as_str()],
            |r| r.get(0),
        )?;
        let staged: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM staged_events WHERE webhook_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )?;
        let deleted = transaction.execute("DELETE FROM webhooks WHERE id = ?1", [id.as_str()])?;
        if deleted == 0 {
            return Ok(None);
        }
        // Attempts and requests go with the webhook: its history means nothing without it.
        transaction.execute(
            "DELETE FROM attempts WHERE request_id IN (SELECT id FROM requests WHERE webhook_id = ?1)",
            [id.as_str()],
        )?;
        transaction.execute(
            "DELETE FROM request_bodies WHERE request_id IN (SELECT id FROM requests WHERE webhook_id = ?1)",
            [id.as_str()],
        )?;
        transaction.execute("DELETE FROM requests WHERE webhook_id = ?1", [id.as_str()])?;
        transaction.execute(
            "DELETE FROM staged_events WHERE webhook_id = ?1",
            [id.as_str()],
        )?;
        transaction.execute("DELETE FROM leases WHERE webhook_id = ?1", [id.as_str()])?;
        transaction.commit().context("committing the deletion")?;
        Ok(Some(u64::try_from(pending + staged).unwrap_or(0)))
    }

    fn reseal_secrets(&self, new: &SecretKey) -> anyhow::Result<u64> {
        let current = self.secret_key.as_ref();
        self.sealing_pass(|rows, recorded| {
            sealing::admit(recorded, current)?;
            let pass = SealingPass::reseal(rows, current, new)?;
            Ok((Some(new.key_check()?), pass))
        })
    }
}

/// State files written before leases recorded their host and fence get the columns (leases
/// are short-lived, so old rows simply carry none and are judged by their expiry).
fn add_lease_columns(connection: &Connection) -> rusqlite::Result<()> {
    for (column, definition) in [
        ("host", "host TEXT NOT NULL DEFAULT ''"),
        ("fence", "fence INTEGER NOT NULL DEFAULT 0"),
    ] {
        let present = connection
            .prepare("SELECT 1 FROM pragma_table_info('leases') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            connection.execute_batch(&format!("ALTER TABLE leases ADD COLUMN {definition}"))?;
        }
    }
    Ok(())
}

/// Inserts one request in `state` and deletes the staged events it is made of.
fn insert_request(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    request: &RequestToWrite,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    transaction
        .prepare_cached(
            "INSERT INTO requests (msg_id, webhook_id, account_id, event_names, event_count,
             created_at_ms, state, next_attempt_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
        )?
        .execute(params![
            crate::registry::new_msg_id(),
            webhook_id,
            request.account_id,
            request.event_names,
            i64::try_from(request.event_ids.len())?,
            now_ms,
            state
        ])?;
    transaction
        .prepare_cached(
            "INSERT INTO request_bodies (request_id, body, event_ids) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            transaction.last_insert_rowid(),
            request.body,
            request.event_ids_json()?
        ])?;
    let mut delete = transaction.prepare_cached("DELETE FROM staged_events WHERE seq = ?1")?;
    for seq in &request.staged_seqs {
        delete.execute([seq])?;
    }
    Ok(())
}

fn staged_events(
    transaction: &Transaction<'_>,
    webhook_id: &str,
) -> anyhow::Result<Vec<StagedEvent>> {
    let mut statement = transaction.prepare_cached(
        "SELECT seq, account_id, event_id, event_name, event_json, enqueued_at_ms
         FROM staged_events WHERE webhook_id = ?1 ORDER BY seq",
    )?;
    let rows = statement
        .query_map([webhook_id], |row| {
            Ok(StagedEvent {
                seq: row.get(0)?,
                account_id: row.get(1)?,
                event_id: row.get(2)?,
                event_name: row.get(3)?,
                event_json: row.get(4)?,
                enqueued_at_ms: row.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Turns staged events into requests of at most `max_events` per account, in `state`.
fn requests_from_staged(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    staged: Vec<StagedEvent>,
    max_events: usize,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    for request in batch_requests(staged, max_events) {
        insert_request(transaction, webhook_id, &request, now_ms, state)?;
    }
    Ok(())
}

fn read_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliverySummary> {
    Ok(RequestRow {
        msg_id: row.get("msg_id")?,
        webhook_id: row.get("webhook_id")?,
        account_id: row.get("account_id")?,
        event_names: row.get("event_names")?,
        event_count: row.get("event_count")?,
        state: row.get("state")?,
        attempts: row.get("attempts")?,
        last_status: row.get("last_status")?,
        last_error: row.get("last_error")?,
        created_at_ms: row.get("created_at_ms")?,
        next_attempt_at_ms: row.get("next_attempt_at_ms")?,
    }
    .into_summary())
}

impl Queue for SqliteState {
    fn enqueue(&self, deliveries: &[NewDelivery], now_ms: i64) -> anyhow::Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for delivery in deliveries {
            match enqueued(delivery)? {
                Enqueued::Request(request) => insert_request(
                    &transaction,
                    delivery.webhook_id.as_str(),
                    &request,
                    now_ms,
                    "pending",
                )?,
                Enqueued::Staged { event_json } => {
                    transaction
                        .prepare_cached(
                            "INSERT INTO staged_events (webhook_id, account_id, event_id, event_name,
                             event_json, enqueued_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(params![
                            delivery.webhook_id.as_str(),
                            delivery.account_id,
                            delivery.event.event_id,
                            delivery.event.event_name,
                            event_json,
                            now_ms
                        ])?;
                }
            }
        }
        transaction
            .commit()
            .context("committing the queued events")?;
        Ok(())
    }

    fn webhooks_with_work(&self) -> anyhow::Result<Vec<WebhookId>> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT id FROM webhooks WHERE status = 'active' AND (
                 EXISTS (SELECT 1 FROM requests r WHERE r.webhook_id = webhooks.id AND r.state = 'pending')
                 OR EXISTS (SELECT 1 FROM staged_events s WHERE s.webhook_id = webhooks.id))
             ORDER BY created_at_ms, id",
        )?;
        let ids = statement
            .query_map([], |row| row.get::<_, String>(0).map(WebhookId))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    fn try_lease(
        &self,
        webhook_id: &WebhookId,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> anyhow::Result<Lease> {
        let mut connection = self.lock();
        let read_lease = |connection: &Connection| -> rusqlite::Result<Option<LeaseRow>> {
            connection
                .prepare_cached(
                    "SELECT owner, pid, host, fence, expires_at_ms FROM leases
                     WHERE webhook_id = ?1",
                )?
                .query_row([webhook_id.as_str()], |row| {
                    Ok(LeaseRow {
                        owner: row.get(0)?,
                        pid: row.get(1)?,
                        host: row.get(2)?,
                        fence: row.get(3)?,
                        expires_at_ms: row.get(4)?,
                    })
                })
                .optional()
        };
        // A plain read first (WAL: it never waits for, nor holds up, the holder's writes): a
        // worker waiting for the lease asks once per poll interval, and nearly always finds it
        // still held.
        if let Some(held) = read_lease(&connection)?.and_then(|row| row.held_against(owner, now_ms))
        {
            return Ok(Lease::HeldBy(held));
        }
        // IMMEDIATE: take the write lock, then look again, so two processes cannot both see
        // the lease free.
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let fence = match read_lease(&transaction)? {
            None => 1,
            Some(row) => {
                let fence = row.fence_for(owner);
                if let Some(held) = row.held_against(owner, now_ms) {
                    return Ok(Lease::HeldBy(held));
                }
                fence
            }
        };
        transaction.execute(
            "INSERT INTO leases (webhook_id, owner, pid, expires_at_ms, host, fence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (webhook_id) DO UPDATE SET owner = ?2, pid = ?3, expires_at_ms = ?4,
                 host = ?5, fence = ?6",
            params![
                webhook_id.as_str(),
                owner,
                own_pid(),
                now_ms.saturating_add(ttl_ms),
                process_identity_space(),
                fence
            ],
        )?;
        transaction.commit()?;
        Ok(Lease::Acquired { fence })
    }

    fn release_lease(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<()> {
        self.lock()
            .execute(RELEASE_LEASE, params![webhook_id.as_str(), owner])?;
        Ok(())
    }

    fn release_lease_if_idle(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<bool> {
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let waiting: bool = transaction.query_row(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE webhook_id = ?1 AND state = 'pending')
                 OR EXISTS (SELECT 1 FROM staged_events WHERE webhook_id = ?1)",
            [webhook_id.as_str()],
            |row| row.get(0),
        )?;
        if waiting {
            return Ok(false);
        }
        transaction.execute(RELEASE_LEASE, params![webhook_id.as_str(), owner])?;
        transaction.commit()?;
        Ok(true)
    }

    fn flush_batches(
        &self,
        webhook_id: &WebhookId,
        now_ms: i64,
        interval_ms: i64,
        max_events: usize,
        force: bool,
    ) -> anyhow::Result<Option<i64>> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut staged = staged_events(&transaction, webhook_id.as_str())?;
        match flush_plan(&staged, now_ms, interval_ms, max_events, force) {
            FlushPlan::Empty => return Ok(None),
            FlushPlan::WaitUntil(due) => return Ok(Some(due)),
            FlushPlan::Take(count) => {
                staged.truncate(count);
                requests_from_staged(
                    &transaction,
                    webhook_id.as_str(),
                    staged,
                    max_events,
                    now_ms,
                    "pending",
                )?;
            }
        }
        let next: Option<i64> = transaction.query_row(
            "SELECT MIN(enqueued_at_ms) FROM staged_events WHERE webhook_id = ?1",
            [webhook_id.as_str()],
            |row| row.get(0),
        )?;
        transaction.commit().context("committing the batch")?;
        Ok(next.map(|oldest| oldest.saturating_add(interval_ms)))
    }

    fn pending(
        &self,
        webhook_id: &WebhookId,
        limit: usize,
        strict: bool,
        now_ms: i64,
        after_id: i64,
    ) -> anyhow::Result<Vec<PendingRequest>> {
        let connection = self.lock();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let read = |row: &rusqlite::Row<'_>| {
            Ok(PendingRequest {
                id: row.get(0)?,
                msg_id: row.get(1)?,
                webhook_id: webhook_id.clone(),
                body: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)?),
                created_at_ms: row.get(3)?,
                attempts: row.get(4)?,
                next_attempt_at_ms: row.get(5)?,
            })
        };
        let rows = if strict {
            connection
                .prepare_cached(
                    "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts, r.next_attempt_at_ms
                     FROM requests r JOIN request_bodies b ON b.request_id = r.id
                     WHERE r.webhook_id = ?1 AND r.state = 'pending' ORDER BY r.id LIMIT ?2",
                )?
                .query_map(params![webhook_id.as_str(), limit], read)?
                .collect::<Result<Vec<_>, _>>()?
        } else {
            connection
                .prepare_cached(
                    "SELECT r.id, r.msg_id, b.body, r.created_at_ms, r.attempts, r.next_attempt_at_ms
                     FROM requests r JOIN request_bodies b ON b.request_id = r.id
                     WHERE r.webhook_id = ?1 AND r.state = 'pending' AND r.id > ?4
                       AND r.next_attempt_at_ms <= ?3
                     ORDER BY r.id LIMIT ?2",
                )?
                .query_map(params![webhook_id.as_str(), limit, now_ms, after_id], read)?
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(rows)
    }

    fn next_due(&self, webhook_id: &WebhookId) -> anyhow::Result<Option<i64>> {
        let next = self.lock().query_row(
            "SELECT MIN(next_attempt_at_ms) FROM requests WHERE webhook_id = ?1 AND state = 'pending'",
            [webhook_id.as_str()],
            |row| row.get(0),
        )?;
        Ok(next)
    }

    fn record(&self, lease: &LeaseToken, attempts: &[AttemptRecord]) -> anyhow::Result<Recorded> {
        let mut connection = self.lock();
        // Outcomes need not survive a power cut (see the module docs): not synced, and the
        // connection goes back to FULL before the lock is released, whatever happens.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        let result = record_attempts(&mut connection, lease, attempts);
        connection.pragma_update(None, "synchronous", "FULL")?;
        result
    }

    fn give_up(&self, webhook_id: &WebhookId, reason: &str, now_ms: i64) -> anyhow::Result<u64> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired = expire_webhook(&transaction, webhook_id.as_str(), reason, now_ms)?;
        transaction.commit().context("committing the expiry")?;
        Ok(expired)
    }

    fn counts(&self, webhook_id: Option<&WebhookId>) -> anyhow::Result<QueueCounts> {
        let connection = self.lock();
        let filter = webhook_id.map(WebhookId::as_str);
        let mut counts = QueueCounts::default();
        let mut statement = connection.prepare_cached(
            "SELECT state, COUNT(*) FROM requests WHERE ?1 IS NULL OR webhook_id = ?1 GROUP BY state",
        )?;
        let rows = statement
            .query_map([filter], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (state, count) in rows {
            let count = u64::try_from(count).unwrap_or(0);
            match state.as_str() {
                "pending" => counts.pending = count,
                "delivered" => counts.delivered = count,
                _ => counts.expired += count,
            }
        }
        let staged: i64 = connection.query_row(
            "SELECT COUNT(*) FROM staged_events WHERE ?1 IS NULL OR webhook_id = ?1",
            [filter],
            |row| row.get(0),
        )?;
        counts.staged = u64::try_from(staged).unwrap_or(0);
        Ok(counts)
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> anyhow::Result<Vec<DeliverySummary>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT * FROM requests WHERE (?1 IS NULL OR webhook_id = ?1) AND (?2 IS NULL OR state = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement
            .query_map(
                params![
                    filter.webhook_id.as_ref().map(WebhookId::as_str),
                    filter.state,
                    i64::try_from(filter.limit).unwrap_or(i64::MAX)
                ],
                read_summary,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn delivery(&self, id: &str) -> anyhow::Result<Option<DeliveryDetail>> {
        let connection = self.lock();
        let row_id: i64 = id.parse().unwrap_or(-1);
        let found = connection
            .query_row(
                "SELECT r.*, b.body, b.event_ids FROM requests r
                 JOIN request_bodies b ON b.request_id = r.id WHERE r.msg_id = ?1 OR r.id = ?2",
                params![id, row_id],
                |row| {
                    let body: Vec<u8> = row.get("body")?;
                    let ids: String = row.get("event_ids")?;
                    Ok((row.get::<_, i64>("id")?, read_summary(row)?, body, ids))
                },
            )
            .optional()?;
        let Some((request_id, summary, body, ids)) = found else {
            return Ok(None);
        };
        let mut statement = connection.prepare(
            "SELECT attempt, started_at_ms, status, error, latency_ms, response_head FROM attempts
             WHERE request_id = ?1 ORDER BY id",
        )?;
        let attempt_log = statement
            .query_map([request_id], |row| {
                Ok(AttemptView {
                    attempt: row.get(0)?,
                    at: format_iso_millis(row.get(1)?),
                    status: row.get(2)?,
                    error: row.get(3)?,
                    latency_ms: row.get(4)?,
                    response_head: row.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(DeliveryDetail {
            summary,
            event_ids: serde_json::from_str(&ids).unwrap_or_default(),
            body: String::from_utf8_lossy(&body).into_owned(),
            attempt_log,
        }))
    }
}

/// Disables a webhook whose retention ended and expires its pending requests and staged
/// events, inside the caller's transaction. Gives the number of events expired.
fn expire_webhook(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    reason: &str,
    now_ms: i64,
) -> anyhow::Result<u64> {
    transaction.execute(
        "UPDATE webhooks SET status = 'disabled', disabled_reason = ?2, updated_at_ms = ?3
         WHERE id = ?1",
        params![webhook_id, reason, now_ms],
    )?;
    let staged = staged_events(transaction, webhook_id)?;
    requests_from_staged(
        transaction,
        webhook_id,
        staged,
        usize::MAX,
        now_ms,
        "expired",
    )?;
    let expired: i64 = transaction.query_row(
        "SELECT COALESCE(SUM(event_count), 0) FROM requests
         WHERE webhook_id = ?1 AND (state = 'pending' OR (state = 'expired' AND finished_at_ms IS NULL))",
        [webhook_id],
        |row| row.get(0),
    )?;
    transaction.execute(
        "UPDATE requests SET state = 'expired', finished_at_ms = ?2
         WHERE webhook_id = ?1 AND (state = 'pending' OR (state = 'expired' AND finished_at_ms IS NULL))",
        params![webhook_id, now_ms],
    )?;
    Ok(u64::try_from(expired).unwrap_or(0))
}

/// The body of [`Queue::record`]: attempts and new states in one transaction, and the expiry
/// of the webhook of any request whose retention ended.
fn record_attempts(
    connection: &mut Connection,
    lease: &LeaseToken,
    attempts: &[AttemptRecord],
) -> anyhow::Result<Recorded> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let fence: Option<i64> = transaction
        .query_row(
            "SELECT fence FROM leases WHERE webhook_id = ?1",
            [lease.webhook_id.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    if fence != Some(lease.fence) {
        return Ok(Recorded::Fenced);
    }
    {
        // Full groups of attempt rows go in one multi-row INSERT: one statement run instead
        // of `ATTEMPT_ROWS`, which is most of what an INSERT costs besides its B-tree work.
        let mut insert = transaction.prepare_cached(
            "INSERT INTO attempts (request_id, attempt, started_at_ms, status, error, latency_ms,
                 response_head) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut update = transaction.prepare_cached(
            "UPDATE requests SET state = ?2, attempts = ?3, next_attempt_at_ms = ?4,
                 last_status = ?5, last_error = ?6, finished_at_ms = ?7
                 WHERE id = ?1 AND state = 'pending'",
        )?;
        for chunk in attempts.chunks(ATTEMPT_ROWS) {
            if chunk.len() == ATTEMPT_ROWS {
                let mut insert_many = transaction.prepare_cached(&INSERT_MANY_ATTEMPTS)?;
                for (row, record) in chunk.iter().enumerate() {
                    let first = row * 7;
                    insert_many.raw_bind_parameter(first + 1, record.request_id)?;
                    insert_many.raw_bind_parameter(first + 2, record.attempt)?;
                    insert_many.raw_bind_parameter(first + 3, record.started_at_ms)?;
                    insert_many.raw_bind_parameter(first + 4, record.status)?;
                    insert_many.raw_bind_parameter(first + 5, &record.error)?;
                    insert_many.raw_bind_parameter(first + 6, record.latency_ms)?;
                    insert_many.raw_bind_parameter(first + 7, &record.response_head)?;
                }
                insert_many.raw_execute()?;
            } else {
                for record in chunk {
                    insert.execute(params![
                        record.request_id,
                        record.attempt,
                        record.started_at_ms,
                        record.status,
                        record.error,
                        record.latency_ms,
                        record.response_head
                    ])?;
                }
            }
            // `state = 'pending'`: an outcome that comes in after the webhook was given up
            // (relaxed order has several in flight) must not bring its request back.
            for record in chunk {
                let (state, next, finished_at) = outcome_columns(record);
                update.execute(params![
                    record.request_id,
                    state,
                    record.attempt,
                    next,
                    record.status,
                    record.error,
                    finished_at
                ])?;
            }
        }
    }
    let mut expired_events = 0;
    for record in attempts
        .iter()
        .filter(|record| record.next == RequestState::Expired)
    {
        let (webhook_id, events, created_ms): (String, i64, i64) = transaction.query_row(
            "SELECT webhook_id, event_count, created_at_ms FROM requests WHERE id = ?1",
            [record.request_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let reason = retention_reason(record, created_ms);
        let now_ms = record.started_at_ms.saturating_add(record.latency_ms);
        expired_events += u64::try_from(events).unwrap_or(0)
            + expire_webhook(&transaction, &webhook_id, &reason, now_ms)?;
    }
    transaction.commit().context("committing attempts")?;
    Ok(Recorded::Written { expired_events })
}
