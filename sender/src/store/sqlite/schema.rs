//! The file and its tables: created mode 0600, in WAL mode with `synchronous=FULL`, the tables
//! made on first use and brought up to date by ordered steps, each recording its version in
//! `PRAGMA user_version` (as the receiver's store does). A state at the latest version is
//! opened without a single statement that changes its layout.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::Connection;

/// One step of the layout: what brings a file from the previous step's version to `version`,
/// run in the transaction that records the version in `PRAGMA user_version`.
pub(super) struct Step {
    /// The version after this step; steps go up.
    pub(super) version: i64,
    /// The change.
    pub(super) apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// The steps, in order. A file at version 0 (a new one, or one written before the versions:
/// those have the version 1 tables, less perhaps the lease columns, which step 1 adds) runs
/// them all; a file at a step's version runs those after it; a later version is refused (a
/// newer sender wrote it). A change of layout is a step appended here.
pub(super) const STEPS: &[Step] = &[
    Step {
        version: 1,
        apply: version_1,
    },
    Step {
        version: 2,
        apply: version_2,
    },
    Step {
        version: 3,
        apply: version_3,
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

/// Version 3: per webhook, whether its deliveries may reach internal addresses (see
/// `registry::Webhook::target_policy`).
fn version_3(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(VERSION_3)
}

/// Version 3: the rule a webhook's Target URL was given under.
const VERSION_3: &str = "
-- 1: the URL was given through pages reachable from other hosts; deliveries and tests then
-- connect to public addresses only.
ALTER TABLE webhooks ADD COLUMN public_targets_only INTEGER NOT NULL DEFAULT 0;
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
            (step.apply)(connection).with_context(|| {
                format!("bringing the state to layout version {}", step.version)
            })?;
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
    use crate::store::sqlite::SqliteState;
    use crate::store::{DeliveryFilter, Queue as _, Recovery as _, Registry as _};

    fn version(connection: &Connection) -> i64 {
        connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    /// A state file as the sender wrote it before the versions: the version 1 tables, user
    /// version 0, a webhook, a delivered request with its attempt, a pending one, a staged
    /// event, and a deleted request whose id must never be given again.
    fn file_before_the_versions(path: &Path) {
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
        assert_eq!(version(&connection), 0);
    }

    #[test]
    fn a_file_of_the_unversioned_layout_is_brought_up_in_place_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sender.db");
        file_before_the_versions(&path);
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
        assert_eq!(version(&state.lock()), 3);
        let webhook = state.webhooks().expect("webhooks").remove(0);
        assert_eq!(
            webhook.target_policy,
            common::target_guard::TargetPolicy::AnyAddress
        );
        drop(state);
        // Opened again: nothing to do, nothing lost.
        let state = SqliteState::open(&path).expect("opened again");
        assert_eq!(state.counts(None).expect("counts").pending, 2);
    }

    #[test]
    fn a_file_of_layout_version_2_is_brought_up_in_place_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sender.db");
        // What the sender of layout version 2 made: its two steps, then rows of every kind,
        // a request queued again among them.
        let connection = Connection::open(&path).unwrap();
        version_1(&connection).unwrap();
        version_2(&connection).unwrap();
        connection.pragma_update(None, "user_version", 2).unwrap();
        connection
            .execute_batch(
                "INSERT INTO webhooks (id, name, description, url, events, auth, basic_username,
                     basic_password, status, created_at_ms, updated_at_ms)
                 VALUES ('wh_v2', 'CRM', '', 'http://127.0.0.1:9/hook', 'all', 'basic', 'crm',
                     'plain password', 'active', 1, 2);
                 INSERT INTO requests (id, msg_id, webhook_id, account_id, event_names, event_count,
                     created_at_ms, state, attempts, next_attempt_at_ms, last_status, finished_at_ms,
                     resend_of)
                 VALUES (1, 'msg_a', 'wh_v2', 1010, 'COURSE_ENROLLMENT', 1, 10, 'delivered', 1, 10, 200, 11, NULL),
                        (2, 'msg_a', 'wh_v2', 1010, 'COURSE_ENROLLMENT', 1, 20, 'pending', 0, 20, NULL, NULL, 1);
                 INSERT INTO request_bodies (request_id, body, event_ids)
                 VALUES (1, CAST('{}' AS BLOB), '[\"e1\"]'), (2, CAST('{}' AS BLOB), '[\"e1\"]');
                 INSERT INTO webhook_health (webhook_id, consecutive_failures, state, since_ms)
                 VALUES ('wh_v2', 5, 'failing', 15);
                 INSERT INTO notifications (msg_id, webhook_id, kind, body, created_at_ms, state,
                     next_attempt_at_ms)
                 VALUES ('msg_note', 'wh_v2', 'webhook.failing', CAST('{}' AS BLOB), 15, 'pending', 15);",
            )
            .unwrap();
        drop(connection);

        let state = SqliteState::open(&path).expect("opened and brought up");
        assert_eq!(version(&state.lock()), 3);
        let webhook = state.webhooks().unwrap().remove(0);
        assert_eq!(
            (
                webhook.id.as_str(),
                webhook.url.as_str(),
                webhook.target_policy
            ),
            (
                "wh_v2",
                "http://127.0.0.1:9/hook",
                common::target_guard::TargetPolicy::AnyAddress
            )
        );
        let rows: Vec<(i64, String, Option<i64>)> = state
            .deliveries(&DeliveryFilter {
                limit: 10,
                ..DeliveryFilter::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| (r.row, r.id, r.resend_of))
            .collect();
        assert_eq!(
            rows,
            [
                (2, "msg_a".to_owned(), Some(1)),
                (1, "msg_a".to_owned(), None)
            ]
        );
        let kept: (i64, String, i64) = state
            .lock()
            .query_row(
                "SELECT consecutive_failures, state, (SELECT COUNT(*) FROM notifications)
                 FROM webhook_health WHERE webhook_id = 'wh_v2'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, (5, "failing".to_owned(), 1));
    }

    #[test]
    fn a_new_state_gets_every_step_and_an_up_to_date_one_nothing() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), 3);
        connection
            .prepare("SELECT public_targets_only FROM webhooks")
            .unwrap();
        connection
            .prepare("SELECT resend_of FROM requests, webhook_health, notifications")
            .unwrap();
        // Up to date: not one statement that changes the layout (a write would need the
        // write lock, which a reader holding a transaction keeps from it: none is taken).
        connection.execute_batch("PRAGMA query_only = ON;").unwrap();
        bring_up(&connection).unwrap();
    }

    #[test]
    fn a_state_made_by_the_layout_before_the_versions_keeps_its_key_record_and_leases() {
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
        assert_eq!(version(&connection), 3);
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
        assert_eq!(version(&older), 3);
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
        connection.pragma_update(None, "user_version", 9).unwrap();
        let error = format!("{:#}", bring_up(&connection).unwrap_err());
        assert!(
            error.contains("layout version 9") && error.contains("reads version 3"),
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
        fn broken(connection: &Connection) -> rusqlite::Result<()> {
            connection.execute_batch(
                "CREATE TABLE notes (id INTEGER); INSERT INTO no_such_table VALUES (1);",
            )
        }
        let mut steps: Vec<Step> = STEPS
            .iter()
            .map(|step| Step {
                version: step.version,
                apply: step.apply,
            })
            .collect();
        steps.push(Step {
            version: 4,
            apply: broken,
        });
        assert!(bring_up_with(&connection, &steps).is_err());
        assert_eq!(version(&connection), 3);
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
