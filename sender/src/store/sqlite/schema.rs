//! The file and its tables: created mode 0600, in WAL mode with `synchronous=FULL`, the tables
//! made on first use and brought up to date by ordered steps, each recorded in
//! `PRAGMA user_version`.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::Connection;

/// One step of the layout: what brings a file from the previous step's version to `version`,
/// run in the transaction that records the version in `PRAGMA user_version`.
struct Step {
    /// The version after this step; steps go up.
    version: i64,
    /// The change.
    apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// The steps, in order. A file at version 0 (a new one, or one written before the versions:
/// those have the version 1 tables, less perhaps the lease columns, which step 1 adds) runs
/// them all; a file at a step's version runs those after it; a later version is refused (a
/// newer sender wrote it). A change of layout is a step appended here.
const STEPS: &[Step] = &[
    Step {
        version: 1,
        apply: version_1,
    },
    Step {
        version: 2,
        apply: version_2,
    },
];

/// Version 1: the tables as they were before the versions ([`SCHEMA`]), made when missing,
/// and the lease columns added later to that layout.
fn version_1(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)?;
    add_lease_columns(connection)
}

/// Version 2: a message may be queued again (`deliveries resend`, `recover`), so a request's
/// `msg_id` (its `webhook-id`) is no longer unique: SQLite cannot drop a constraint, so the
/// table is rebuilt, its rows, ids and id sequence kept; `resend_of` names the row a request
/// copies. Each webhook's health and the operator's notifications get their tables.
fn version_2(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(VERSION_2)
}

const VERSION_2: &str = "
CREATE TABLE requests_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
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
    finished_at_ms INTEGER,
    -- The row this request copies (queued again), or NULL for a message's first request.
    resend_of INTEGER
);
INSERT INTO requests_v2 (id, msg_id, webhook_id, account_id, event_names, event_count,
    created_at_ms, state, attempts, next_attempt_at_ms, last_status, last_error, finished_at_ms)
SELECT id, msg_id, webhook_id, account_id, event_names, event_count, created_at_ms, state,
    attempts, next_attempt_at_ms, last_status, last_error, finished_at_ms FROM requests;
-- The id sequence goes on from where it was (ids of deleted rows are never given again).
DELETE FROM sqlite_sequence WHERE name = 'requests_v2';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'requests_v2', MAX(seq) FROM (
        SELECT seq FROM sqlite_sequence WHERE name = 'requests'
        UNION ALL SELECT COALESCE(MAX(id), 0) FROM requests_v2);
DROP TABLE requests;
ALTER TABLE requests_v2 RENAME TO requests;
CREATE INDEX requests_pending ON requests (webhook_id, id) WHERE state = 'pending';
CREATE INDEX requests_by_msg ON requests (msg_id);
CREATE INDEX requests_by_webhook ON requests (webhook_id, id);
-- A webhook's health: failed attempts in a row, and whether that made it failing or disabled.
CREATE TABLE webhook_health (
    webhook_id TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    state TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
-- The operator's notifications (--notify-url), sent in id order.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_at_ms INTEGER
);
CREATE INDEX notifications_pending ON notifications (id) WHERE state = 'pending';
";

/// The tables of version 1, as files had them before the versions began.
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
    bring_up(&connection, STEPS)
        .with_context(|| format!("preparing the tables of {}", path.display()))?;
    Ok(connection)
}

/// Brings the file to the latest version: the steps after its version, in ONE transaction
/// with the version's record, so two processes opening a file at once do it once (the other
/// waits for the write lock, then finds the file up to date) and a crash part-way leaves the
/// file as it was.
///
/// # Errors
/// The file has a version this build does not know (a newer sender wrote it); a step failed.
fn bring_up(connection: &Connection, steps: &[Step]) -> anyhow::Result<()> {
    let latest = steps.last().map_or(0, |step| step.version);
    let version = |connection: &Connection| -> rusqlite::Result<i64> {
        connection.pragma_query_value(None, "user_version", |row| row.get(0))
    };
    if version(connection)? == latest {
        return Ok(());
    }
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let applied = (|| {
        let found = version(connection)?;
        anyhow::ensure!(
            found <= latest,
            "the state has layout version {found}, this sender knows up to {latest}: use the \
             sender that wrote it, or a new --state"
        );
        for step in steps.iter().filter(|step| step.version > found) {
            (step.apply)(connection)?;
            connection.pragma_update(None, "user_version", step.version)?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => connection.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteState;
    use crate::store::{DeliveryFilter, Queue as _, Recovery as _};

    /// A state file as the sender wrote it before the versions: the version 1 tables, user
    /// version 0, a webhook, a delivered request with its attempt, a pending one, a staged
    /// event, and a deleted request whose id must never be given again.
    fn todays_file(path: &Path) {
        let connection = Connection::open(path).expect("create");
        connection.execute_batch(SCHEMA).expect("version 1 tables");
        connection
            .execute_batch(
                "INSERT INTO webhooks (id, name, description, url, events, auth, status,
                     created_at_ms, updated_at_ms)
                 VALUES ('wh_old', 'Old', '', 'http://127.0.0.1:9/hook', 'all', 'none', 'active', 1, 1);
                 INSERT INTO requests (id, msg_id, webhook_id, account_id, event_names, event_count,
                     created_at_ms, state, attempts, next_attempt_at_ms, last_status, finished_at_ms)
                 VALUES (1, 'msg_delivered', 'wh_old', 1010, 'COURSE_ENROLLMENT', 1, 10, 'delivered', 1, 10, 200, 11),
                        (2, 'msg_pending', 'wh_old', 1010, 'COURSE_ENROLLMENT', 1, 20, 'pending', 0, 20, NULL, NULL),
                        (3, 'msg_deleted', 'wh_old', 1010, 'COURSE_ENROLLMENT', 1, 30, 'pending', 0, 30, NULL, NULL);
                 DELETE FROM requests WHERE id = 3;
                 INSERT INTO request_bodies (request_id, body, event_ids)
                 VALUES (1, CAST('{\"accountId\":1010,\"events\":[]}' AS BLOB), '[\"e1\"]'),
                        (2, CAST('{\"accountId\":1010,\"events\":[2]}' AS BLOB), '[\"e2\"]');
                 INSERT INTO attempts (request_id, attempt, started_at_ms, status, latency_ms, response_head)
                 VALUES (1, 1, 10, 200, 1, 'ok');
                 INSERT INTO staged_events (webhook_id, account_id, event_id, event_name, event_json, enqueued_at_ms)
                 VALUES ('wh_old', 1010, 'e9', 'COURSE_ENROLLMENT_BATCH', CAST('{}' AS BLOB), 40);",
            )
            .expect("rows");
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, 0);
    }

    #[test]
    fn a_file_of_the_unversioned_layout_is_brought_up_in_place_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sender.db");
        todays_file(&path);
        let state = SqliteState::open(&path).expect("opened and brought up");
        let listed = state
            .deliveries(&DeliveryFilter {
                limit: 10,
                ..DeliveryFilter::default()
            })
            .expect("list");
        let rows: Vec<(i64, &str, &str)> = listed
            .iter()
            .map(|r| (r.row, r.id.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (2, "msg_pending", "pending"),
                (1, "msg_delivered", "delivered")
            ]
        );
        let detail = state
            .delivery("msg_delivered")
            .expect("read")
            .expect("kept");
        assert_eq!(
            (detail.attempt_log.len(), detail.event_ids.as_slice()),
            (1, ["e1".to_owned()].as_slice())
        );
        assert_eq!(state.counts(None).expect("counts").staged, 1);
        // The message may be queued again now, under a row number never given before.
        let resent = state
            .resend("msg_delivered", 50)
            .expect("resend")
            .expect("found");
        assert_eq!(resent.row, 4, "ids go on after the deleted 3");
        let version: i64 = state
            .lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, 2);
        drop(state);
        // Opened again: nothing to do, nothing lost.
        let state = SqliteState::open(&path).expect("opened again");
        assert_eq!(state.counts(None).expect("counts").pending, 2);
    }

    #[test]
    fn a_file_of_a_later_layout_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sender.db");
        drop(SqliteState::open(&path).expect("new file"));
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", 9)
            .expect("a later version");
        let error = SqliteState::open(&path).expect_err("refused");
        assert!(
            format!("{error:#}").contains("layout version 9, this sender knows up to 2"),
            "{error:#}"
        );
    }
}
