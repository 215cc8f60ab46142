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

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context as _};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use verify::timestamp::format_iso_millis;

use crate::queue::{
    AttemptRecord, AttemptView, DeliveryDetail, DeliveryFilter, DeliverySummary, Lease,
    NewDelivery, PendingRequest, Queue, QueueCounts, RequestState,
};
use crate::registry::{
    Auth, BasicAuth, EventSelection, Registry, Status, Webhook, WebhookId, MAX_WEBHOOKS,
};
use crate::UsageError;

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
    host TEXT NOT NULL DEFAULT ''
);
";

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
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteState")
    }
}

impl SqliteState {
    /// Opens (creating with mode 0600 when absent) the database at `path` and its tables.
    ///
    /// # Errors
    /// When the file cannot be created or opened, or is not a SQLite database.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // The file holds secrets: create it readable by its owner only, before SQLite does.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
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
        add_lease_host_column(&connection)
            .with_context(|| format!("updating the tables of {}", path.display()))?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn read_webhook(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Webhook, String>> {
    let id: String = row.get("id")?;
    let events: String = row.get("events")?;
    let auth: String = row.get("auth")?;
    let username: Option<String> = row.get("basic_username")?;
    let password: Option<String> = row.get("basic_password")?;
    let signature_file: Option<String> = row.get("signature_file")?;
    let status: String = row.get("status")?;
    let reason: Option<String> = row.get("disabled_reason")?;
    let parsed = (|| {
        let events = if events == "all" {
            EventSelection::All
        } else {
            EventSelection::Names(events.split(',').map(str::to_owned).collect())
        };
        let auth = match auth.as_str() {
            "none" => Auth::None,
            "basic" => Auth::Basic(BasicAuth {
                username: username.unwrap_or_default(),
                password: password.unwrap_or_default(),
            }),
            "signature" => {
                let text = signature_file.unwrap_or_default();
                Auth::Signature(
                    verify::SignatureFile::from_json(text.as_bytes())
                        .map_err(|e| format!("webhook {id}: stored signature file: {e}"))?,
                )
            }
            other => return Err(format!("webhook {id}: unknown auth method {other:?}")),
        };
        let status = match status.as_str() {
            "active" => Status::Active,
            "retired" => Status::Retired,
            _ => Status::Disabled(reason.unwrap_or_default()),
        };
        Ok((events, auth, status))
    })();
    let (events, auth, status) = match parsed {
        Ok(parts) => parts,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(Webhook {
        id: WebhookId(id),
        name: row.get("name")?,
        description: row.get("description")?,
        url: row.get("url")?,
        events,
        auth,
        status,
        created_at_ms: row.get("created_at_ms")?,
        updated_at_ms: row.get("updated_at_ms")?,
    }))
}

/// A webhook's stored fields, secrets included, bound as `?1` … `?11` in this order (id,
/// name, description, url, events, auth, basic_username, basic_password, signature_file,
/// status, disabled_reason); INSERT and UPDATE add their own parameters after them.
fn column_values(webhook: &Webhook) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let (username, password, signature_file) = match &webhook.auth {
        Auth::None => (None, None, None),
        Auth::Basic(basic) => (
            Some(basic.username.clone()),
            Some(basic.password.clone()),
            None,
        ),
        Auth::Signature(file) => (None, None, Some(file.to_json_pretty())),
    };
    let reason = match &webhook.status {
        Status::Disabled(reason) => Some(reason.clone()),
        _ => None,
    };
    vec![
        Value::Text(webhook.id.as_str().to_owned()),
        Value::Text(webhook.name.clone()),
        Value::Text(webhook.description.clone()),
        Value::Text(webhook.url.clone()),
        Value::Text(webhook.events.to_text()),
        Value::Text(webhook.auth.method().to_owned()),
        Value::from(username),
        Value::from(password),
        Value::from(signature_file),
        Value::Text(webhook.status.as_str().to_owned()),
        Value::from(reason),
    ]
}

impl Registry for SqliteState {
    fn insert_webhook(&self, webhook: &Webhook) -> anyhow::Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let count: i64 =
            transaction.query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_WEBHOOKS {
            return Err(UsageError(format!(
                "{count} webhooks are registered, the most allowed is {MAX_WEBHOOKS}; delete or edit one (`sender webhooks list`)"
            ))
            .into());
        }
        let mut values = column_values(webhook);
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
        let mut values = column_values(webhook);
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
            if exists {
                bail!(
                    "webhook {} was changed meanwhile (by `sender run` or another command); \
                     nothing was written: look at it with `sender webhooks show {}` and run the \
                     command again",
                    webhook.id,
                    webhook.id
                );
            }
            bail!("webhook {} was deleted meanwhile", webhook.id);
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
            .map(|parsed| parsed.map_err(anyhow::Error::msg))
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
            .map(|parsed| parsed.map_err(anyhow::Error::msg))
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
}

/// State files written before leases recorded their host get the column (leases are
/// short-lived, so old rows simply carry none and are judged by their expiry).
fn add_lease_host_column(connection: &Connection) -> rusqlite::Result<()> {
    let has_host = connection
        .prepare("SELECT 1 FROM pragma_table_info('leases') WHERE name = 'host'")?
        .exists([])?;
    if !has_host {
        connection.execute_batch("ALTER TABLE leases ADD COLUMN host TEXT NOT NULL DEFAULT ''")?;
    }
    Ok(())
}

/// The space in which this process's pid names it: the boot and the pid namespace. Two
/// processes sharing the state file from two containers see different pid namespaces, where
/// the other's pid means nothing; `""` when it cannot be told (not Linux).
fn process_identity_space() -> &'static str {
    static SPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPACE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
        let namespace = std::fs::read_link("/proc/self/ns/pid");
        match (boot, namespace) {
            (Ok(boot), Ok(namespace)) => format!("{}/{}", boot.trim(), namespace.display()),
            _ => String::new(),
        }
    })
}

/// Whether the process that owns a lease still runs. Its pid is judged only when it was
/// written in this process's pid space (same boot, same pid namespace), where a reaped
/// process has no /proc entry; otherwise the lease's expiry alone decides.
fn process_alive(pid: i64, host: &str) -> bool {
    let here = process_identity_space();
    if here.is_empty() || host != here {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Inserts one request of already-serialised events.
#[allow(clippy::too_many_arguments)]
fn insert_request(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    account_id: i64,
    names: &BTreeSet<String>,
    event_ids: &[String],
    body: &[u8],
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
            account_id,
            names.iter().cloned().collect::<Vec<_>>().join(","),
            i64::try_from(event_ids.len())?,
            now_ms,
            state
        ])?;
    transaction
        .prepare_cached(
            "INSERT INTO request_bodies (request_id, body, event_ids) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            transaction.last_insert_rowid(),
            body,
            serde_json::to_string(event_ids)?
        ])?;
    Ok(())
}

/// Staged events of one webhook, oldest first: (seq, account, id, name, json, enqueued).
type Staged = (i64, i64, String, String, Vec<u8>, i64);

fn staged_events(transaction: &Transaction<'_>, webhook_id: &str) -> anyhow::Result<Vec<Staged>> {
    let mut statement = transaction.prepare_cached(
        "SELECT seq, account_id, event_id, event_name, event_json, enqueued_at_ms
         FROM staged_events WHERE webhook_id = ?1 ORDER BY seq",
    )?;
    let rows = statement
        .query_map([webhook_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<Result<Vec<Staged>, _>>()?;
    Ok(rows)
}

/// Turns staged events into requests of at most `max_events` per account, in `state`.
fn requests_from_staged(
    transaction: &Transaction<'_>,
    webhook_id: &str,
    staged: Vec<Staged>,
    max_events: usize,
    now_ms: i64,
    state: &str,
) -> anyhow::Result<()> {
    // Group per account, keeping the order of arrival inside each group.
    let mut accounts: Vec<(i64, Vec<Staged>)> = Vec::new();
    for event in staged {
        match accounts.iter_mut().find(|(account, _)| *account == event.1) {
            Some((_, events)) => events.push(event),
            None => accounts.push((event.1, vec![event])),
        }
    }
    for (account_id, events) in accounts {
        for chunk in events.chunks(max_events.max(1)) {
            let names: BTreeSet<String> = chunk.iter().map(|e| e.3.clone()).collect();
            let ids: Vec<String> = chunk.iter().map(|e| e.2.clone()).collect();
            let body =
                verify::payload::envelope_bytes(account_id, chunk.iter().map(|e| e.4.as_slice()));
            insert_request(
                transaction,
                webhook_id,
                account_id,
                &names,
                &ids,
                &body,
                now_ms,
                state,
            )?;
            let mut delete =
                transaction.prepare_cached("DELETE FROM staged_events WHERE seq = ?1")?;
            for event in chunk {
                delete.execute([event.0])?;
            }
        }
    }
    Ok(())
}

fn read_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliverySummary> {
    let state: String = row.get("state")?;
    let next: i64 = row.get("next_attempt_at_ms")?;
    Ok(DeliverySummary {
        id: row.get("msg_id")?,
        webhook_id: row.get("webhook_id")?,
        account_id: row.get("account_id")?,
        event_names: row.get("event_names")?,
        event_count: row.get("event_count")?,
        attempts: row.get("attempts")?,
        last_status: row.get("last_status")?,
        last_error: row.get("last_error")?,
        created_at: format_iso_millis(row.get("created_at_ms")?),
        next_attempt_at: (state == "pending").then(|| format_iso_millis(next)),
        state,
    })
}

impl Queue for SqliteState {
    fn enqueue(&self, deliveries: &[NewDelivery], now_ms: i64) -> anyhow::Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for delivery in deliveries {
            let event_json = serde_json::to_vec(&delivery.event)?;
            match delivery.class {
                verify::EventClass::RealTime => {
                    let body = verify::payload::envelope_bytes(
                        delivery.account_id,
                        std::iter::once(&event_json[..]),
                    );
                    insert_request(
                        &transaction,
                        delivery.webhook_id.as_str(),
                        delivery.account_id,
                        &BTreeSet::from([delivery.event.event_name.clone()]),
                        std::slice::from_ref(&delivery.event.event_id),
                        &body,
                        now_ms,
                        "pending",
                    )?;
                }
                verify::EventClass::Batch => {
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
        // A plain read first (WAL: it never waits for, nor holds up, the holder's writes): a
        // worker waiting for the lease asks once per poll interval, and nearly always finds it
        // still held.
        let read_lease =
            |connection: &Connection| -> rusqlite::Result<Option<crate::lease::HeldLease>> {
                let row: Option<(String, i64, i64, String)> = connection
                    .prepare_cached(
                        "SELECT owner, pid, expires_at_ms, host FROM leases WHERE webhook_id = ?1",
                    )?
                    .query_row([webhook_id.as_str()], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()?;
                Ok(row.and_then(|(holder, pid, expires_at_ms, host)| {
                    let live =
                        holder != owner && expires_at_ms > now_ms && process_alive(pid, &host);
                    live.then_some(crate::lease::HeldLease {
                        owner: holder,
                        expires_at_ms,
                    })
                }))
            };
        if let Some(held) = read_lease(&connection)? {
            return Ok(Lease::HeldBy(held));
        }
        // IMMEDIATE: take the write lock, then look again, so two processes cannot both see
        // the lease free.
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(held) = read_lease(&transaction)? {
            return Ok(Lease::HeldBy(held));
        }
        transaction.execute(
            "INSERT INTO leases (webhook_id, owner, pid, expires_at_ms, host)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (webhook_id) DO UPDATE SET owner = ?2, pid = ?3, expires_at_ms = ?4,
                 host = ?5",
            params![
                webhook_id.as_str(),
                owner,
                i64::from(std::process::id()),
                now_ms.saturating_add(ttl_ms),
                process_identity_space()
            ],
        )?;
        transaction.commit()?;
        Ok(Lease::Acquired)
    }

    fn release_lease(&self, webhook_id: &WebhookId, owner: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "DELETE FROM leases WHERE webhook_id = ?1 AND owner = ?2",
            params![webhook_id.as_str(), owner],
        )?;
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
        transaction.execute(
            "DELETE FROM leases WHERE webhook_id = ?1 AND owner = ?2",
            params![webhook_id.as_str(), owner],
        )?;
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
        let staged = staged_events(&transaction, webhook_id.as_str())?;
        let Some(oldest) = staged.first().map(|e| e.5) else {
            return Ok(None);
        };
        let due = force
            || oldest.saturating_add(interval_ms) <= now_ms
            || staged.len() >= max_events.max(1);
        if !due {
            return Ok(Some(oldest.saturating_add(interval_ms)));
        }
        if force || oldest.saturating_add(interval_ms) <= now_ms {
            requests_from_staged(
                &transaction,
                webhook_id.as_str(),
                staged,
                max_events,
                now_ms,
                "pending",
            )?;
        } else {
            // Full but not yet due: send only the full batches, keep the rest collecting.
            let full = staged.len() / max_events.max(1) * max_events.max(1);
            let taken: Vec<Staged> = staged.into_iter().take(full).collect();
            requests_from_staged(
                &transaction,
                webhook_id.as_str(),
                taken,
                max_events,
                now_ms,
                "pending",
            )?;
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

    fn record(&self, attempts: &[AttemptRecord]) -> anyhow::Result<u64> {
        let mut connection = self.lock();
        // Outcomes need not survive a power cut (see the module docs): not synced, and the
        // connection goes back to FULL before the lock is released, whatever happens.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        let result = record_attempts(&mut connection, attempts);
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
fn record_attempts(connection: &mut Connection, attempts: &[AttemptRecord]) -> anyhow::Result<u64> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                let finished = record.started_at_ms.saturating_add(record.latency_ms);
                let (state, next, finished_at) = match record.next {
                    RequestState::Delivered => ("delivered", finished, Some(finished)),
                    RequestState::RetryAt(at) => ("pending", at, None),
                    RequestState::Expired => ("expired", finished, Some(finished)),
                };
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
        let reason = format!(
            "retention ended: request {} (queued {}) undelivered after {} attempts",
            record.request_id,
            format_iso_millis(created_ms),
            record.attempt
        );
        let now_ms = record.started_at_ms.saturating_add(record.latency_ms);
        expired_events += u64::try_from(events).unwrap_or(0)
            + expire_webhook(&transaction, &webhook_id, &reason, now_ms)?;
    }
    transaction.commit().context("committing attempts")?;
    Ok(expired_events)
}
