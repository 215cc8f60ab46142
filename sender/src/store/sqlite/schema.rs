//! The file and its tables: created mode 0600, in WAL mode with `synchronous=FULL`, the tables
//! made on first use and brought up to date by ordered steps, each recording its version in
//! `PRAGMA user_version` (as the receiver's store does). A state at the latest version is
//! opened without a single statement that changes its layout.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::Connection;

/// One step of the layout: the statements that bring a state from the previous step's
/// version to `version`, recorded in `PRAGMA user_version` in the same transaction.
pub(super) struct Step {
    /// The version after this step; steps go up.
    pub(super) version: i64,
    /// The statements.
    pub(super) sql: &'static str,
}

/// The steps, in order; a change of layout is a step appended here. Version 1 is the layout
/// of the states written before the versions (`user_version` 0): its statements create only
/// what is missing, so such a state is brought to version 1 by them (and its leases by
/// [`add_lease_columns`]). Version 2 records, per webhook, whether its deliveries may reach
/// internal addresses (see `registry::Webhook::target_policy`).
pub(super) const STEPS: &[Step] = &[
    Step {
        version: 1,
        sql: SCHEMA,
    },
    Step {
        version: 2,
        sql: VERSION_2,
    },
];

/// Version 2: the rule a webhook's Target URL was given under.
const VERSION_2: &str = "
-- 1: the URL was given through pages reachable from other hosts; deliveries and tests then
-- connect to public addresses only.
ALTER TABLE webhooks ADD COLUMN public_targets_only INTEGER NOT NULL DEFAULT 0;
";

/// Version 1, the whole layout before the versions began.
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

/// Brings the state on `connection` to the latest version with [`STEPS`]: nothing at all when
/// it is there already (a read of `user_version`, and of whether the tables are a sender's);
/// else, in ONE transaction under the write lock (another process may be doing the same: the
/// version is read again under the lock), the steps after its version. A state of a newer
/// layout, or a file holding another program's tables, is refused before anything changes.
///
/// # Errors
/// The file is of another layout or program; a step failed (nothing of it is kept then).
pub(super) fn bring_up(connection: &Connection) -> anyhow::Result<()> {
    bring_up_with(connection, STEPS)
}

/// [`bring_up`] with `steps` (the tests give steps of their own).
pub(super) fn bring_up_with(connection: &Connection, steps: &[Step]) -> anyhow::Result<()> {
    let latest = steps.last().map_or(0, |step| step.version);
    if layout_version(connection, steps)? == Some(latest) {
        return Ok(());
    }
    connection.execute_batch("BEGIN IMMEDIATE;")?;
    let applied = layout_version(connection, steps).and_then(|found| {
        let found = found.unwrap_or(0);
        for step in steps.iter().filter(|step| step.version > found) {
            connection.execute_batch(step.sql).with_context(|| {
                format!("bringing the state to layout version {}", step.version)
            })?;
            if step.version == 1 {
                // A state from before the versions may predate the lease columns too.
                add_lease_columns(connection)?;
            }
            connection.pragma_update(None, "user_version", step.version)?;
        }
        connection.execute_batch("COMMIT;")?;
        Ok(())
    });
    if let Err(error) = applied {
        let _ = connection.execute_batch("ROLLBACK;");
        return Err(error);
    }
    Ok(())
}

/// The layout version of the state on `connection`: `None` for a new file (no tables),
/// `Some(0)` for a sender state from before the versions, else the version a step recorded.
///
/// # Errors
/// A version no step of this build wrote (a newer sender's), or tables that are not a
/// sender's (`user_version` set by another program, or a version without its tables).
fn layout_version(connection: &Connection, steps: &[Step]) -> anyhow::Result<Option<i64>> {
    let latest = steps.last().map_or(0, |step| step.version);
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // Tables only a sender state has (`requests` is a receiver's table name too).
    let ours: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN
             ('webhooks', 'request_bodies', 'staged_events', 'attempts', 'leases', 'secret_key')",
        [],
        |row| row.get(0),
    )?;
    let tables: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if version == 0 && tables == 0 {
        return Ok(None);
    }
    if ours == 0 {
        anyhow::bail!(
            "the file holds tables that are not a sender state's (another program's, such as a \
             receiver's store?): give --state a file of its own"
        );
    }
    if version == 0 || steps.iter().any(|step| step.version == version) {
        return Ok(Some(version));
    }
    anyhow::bail!(
        "the state has layout version {version}, this sender reads version {latest}: use the \
         sender that wrote it, or another --state"
    )
}

/// Opens the state file at `path` (creating it mode 0600 when absent) in WAL mode with
/// `synchronous=FULL`, waiting up to 5 s on another process's lock, and makes or updates its
/// tables.
///
/// # Errors
/// The file cannot be created or opened, or is not a SQLite database; its layout is another.
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
    bring_up(&connection).with_context(|| format!("preparing the tables of {}", path.display()))?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::OptionalExtension as _;

    use super::*;

    fn version(connection: &Connection) -> i64 {
        connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_state_gets_every_step_and_an_up_to_date_one_nothing() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), 2);
        connection
            .prepare("SELECT public_targets_only FROM webhooks")
            .unwrap();
        // Up to date: not one statement that changes the layout (a write would need the
        // write lock, which a reader holding a transaction keeps from it: none is taken).
        connection.execute_batch("PRAGMA query_only = ON;").unwrap();
        bring_up(&connection).unwrap();
    }

    #[test]
    fn a_state_made_by_the_layout_before_the_versions_is_brought_up_and_keeps_its_rows() {
        let connection = Connection::open_in_memory().unwrap();
        // What the sender before the versions made: SCHEMA at every opening, user_version 0.
        connection.execute_batch(SCHEMA).unwrap();
        connection
            .execute_batch(
                "INSERT INTO webhooks VALUES ('wh_kept', 'CRM', '', 'http://127.0.0.1:9/hook',
                     'all', 'none', NULL, NULL, NULL, 'active', NULL, 1, 2);
                 INSERT INTO secret_key VALUES (1, 'sealed:v1:record');
                 INSERT INTO leases (webhook_id, owner, pid, expires_at_ms, host, fence)
                     VALUES ('wh_kept', 'run/pid:1', 1, 5, 'h', 3);",
            )
            .unwrap();
        assert_eq!(version(&connection), 0);
        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), 2);
        let (url, public_only, fence): (String, i64, i64) = connection
            .query_row(
                "SELECT url, public_targets_only, fence FROM webhooks JOIN leases
                 ON leases.webhook_id = webhooks.id WHERE id = 'wh_kept'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (url.as_str(), public_only, fence),
            ("http://127.0.0.1:9/hook", 0, 3)
        );
        let record: String = connection
            .query_row("SELECT key_check FROM secret_key", [], |row| row.get(0))
            .unwrap();
        assert_eq!(record, "sealed:v1:record");

        // Older still: leases without their host and fence, and no key record table.
        let older = Connection::open_in_memory().unwrap();
        older
            .execute_batch(
                "CREATE TABLE webhooks (id TEXT PRIMARY KEY, name TEXT NOT NULL,
                     description TEXT NOT NULL, url TEXT NOT NULL, events TEXT NOT NULL,
                     auth TEXT NOT NULL, basic_username TEXT, basic_password TEXT,
                     signature_file TEXT, status TEXT NOT NULL, disabled_reason TEXT,
                     created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);
                 CREATE TABLE leases (webhook_id TEXT PRIMARY KEY, owner TEXT NOT NULL,
                     pid INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL);
                 INSERT INTO leases VALUES ('wh_old', 'run', 1, 5);",
            )
            .unwrap();
        bring_up(&older).unwrap();
        assert_eq!(version(&older), 2);
        let fence: i64 = older
            .query_row(
                "SELECT fence FROM leases WHERE webhook_id = 'wh_old'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(fence, 0);
        older.prepare("SELECT key_check FROM secret_key").unwrap();
    }

    #[test]
    fn a_newer_layout_or_another_program_s_tables_are_refused_untouched() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        connection.pragma_update(None, "user_version", 7).unwrap();
        let error = format!("{:#}", bring_up(&connection).unwrap_err());
        assert!(
            error.contains("layout version 7") && error.contains("reads version 2"),
            "{error}"
        );
        let receiver = Connection::open_in_memory().unwrap();
        receiver
            .execute_batch("CREATE TABLE events (id INTEGER); PRAGMA user_version = 2;")
            .unwrap();
        let error = format!("{:#}", bring_up(&receiver).unwrap_err());
        assert!(error.contains("not a sender state"), "{error}");
        assert_eq!(version(&receiver), 2);
    }

    #[test]
    fn a_failing_step_leaves_the_state_at_its_version() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        let broken = [
            Step {
                version: 1,
                sql: SCHEMA,
            },
            Step {
                version: 2,
                sql: VERSION_2,
            },
            Step {
                version: 3,
                sql: "CREATE TABLE notes (id INTEGER); INSERT INTO no_such_table VALUES (1);",
            },
        ];
        assert!(bring_up_with(&connection, &broken).is_err());
        assert_eq!(version(&connection), 2);
        let notes: Option<i64> = connection
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE name = 'notes'",
                [],
                |row| row.get(0),
            )
            .optional()
            .unwrap();
        assert_eq!(notes, None);
    }
}
