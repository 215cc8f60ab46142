//! The file and its tables: created mode 0600, in WAL mode with `synchronous=FULL`, the tables
//! made on first use and brought up to date.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
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

/// State files written before leases recorded their host and fence get the columns (leases
/// are short-lived, so old rows simply carry none and are judged by their expiry).
pub(super) fn add_lease_columns(connection: &Connection) -> rusqlite::Result<()> {
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

/// Opens the state file at `path` (creating it mode 0600 when absent) in WAL mode with
/// `synchronous=FULL`, waiting up to 5 s on another process's lock, and makes or updates its
/// tables.
///
/// # Errors
/// The file cannot be created or opened, or is not a SQLite database.
pub(super) fn open_file(path: &Path) -> anyhow::Result<Connection> {
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
    Ok(connection)
}
