//! The store's layout: its tables, the version `PRAGMA user_version` records, the ordered
//! steps that bring a file to it, and the check that refuses a file of another layout before
//! anything changes it.

use rusqlite::Connection;

/// One step of the layout: the statements that bring a store from the previous step's version
/// to `version`, recorded in `PRAGMA user_version` in the same transaction.
#[derive(Clone, Copy)]
struct Step {
    /// The version after this step; steps go up.
    version: i64,
    /// The statements, run in one transaction with the version's record.
    sql: &'static str,
}

/// The steps, in order. A new store runs them all; a store at the version of one of them runs
/// those after it; any other version is refused with what to do (version 1, the layout that
/// kept a second copy of each event's JSON, is one: no step leads from it). Version 2 keeps
/// events' JSON as offsets into the body; version 3 forwards to several targets (a job per
/// request and target, with its state, its place in its target's queue and every attempt);
/// version 4 adds the dedupe keys that outlive their pruned or erased events; version 5
/// ([`SEARCH_AND_REPORTING`]) adds what searches and reports read; version 6 leaves dedupe to
/// the listener's keys in memory ([`APPEND_ONLY_EVENTS`]). A change of
/// layout is a step appended here.
const STEPS: &[Step] = &[
    Step {
        version: 2,
        sql: VERSION_2,
    },
    Step {
        version: 3,
        sql: VERSION_3,
    },
    Step {
        version: 4,
        sql: VERSION_4,
    },
    Step {
        version: 5,
        sql: SEARCH_AND_REPORTING,
    },
    Step {
        version: 6,
        sql: APPEND_ONLY_EVENTS,
    },
];

/// The whole layout of version 2, made in a new store.
const VERSION_2: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id              INTEGER PRIMARY KEY,
    received_at_ms  INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    headers         TEXT    NOT NULL,  -- JSON array of [name, value]
    body            BLOB    NOT NULL,  -- byte for byte
    auth            TEXT    NOT NULL,  -- none | basic | signature
    account_id      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    request_id      INTEGER NOT NULL REFERENCES requests(id),
    event_name      TEXT    NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    known           INTEGER NOT NULL,
    -- The event's JSON is the bytes [raw_start, raw_start + raw_length) of its request's
    -- body: kept once, in the body, rather than copied (see `RAW_TEXT`).
    raw_start       INTEGER NOT NULL,
    raw_length      INTEGER NOT NULL,
    UNIQUE (account_id, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp_ms);
CREATE INDEX IF NOT EXISTS events_by_name ON events (event_name, timestamp_ms);
CREATE TABLE IF NOT EXISTS refused_requests (
    id              INTEGER PRIMARY KEY,
    received_at_ms  INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    status          INTEGER NOT NULL,
    reason          TEXT    NOT NULL
);
-- One row that a health check rewrites, so /healthz proves a real commit works.
CREATE TABLE IF NOT EXISTS health (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at_ms   INTEGER NOT NULL
);
INSERT OR IGNORE INTO health (id, checked_at_ms) VALUES (1, 0);
-- The durable inbox of --forward-to: one job per request to forward, in id order.
CREATE TABLE IF NOT EXISTS forward_jobs (
    id               INTEGER PRIMARY KEY,
    request_id       INTEGER NOT NULL UNIQUE REFERENCES requests(id),
    queued_at_ms     INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    forwarded_at_ms  INTEGER            -- NULL while pending
);
-- Only pending jobs: finding the next one never walks the forwarded history.
CREATE INDEX IF NOT EXISTS forward_jobs_pending ON forward_jobs (id) WHERE forwarded_at_ms IS NULL;
";

/// From version 2 to 3: forwarding to several targets. `forward_jobs` is made again (SQLite
/// cannot drop the `UNIQUE (request_id)` in place) with a job per request and target, each
/// job's state and place in its target's queue; `forward_attempts` keeps every attempt;
/// `forward_order` hands out the queue places. A job of version 2 keeps its id, attempts and
/// time, gets the target `''` (the receiver gives it to its targets at its next start with
/// forwarding, as if its request had just arrived) and its id as its place.
const VERSION_3: &str = "
CREATE TABLE forward_jobs_3 (
    id                  INTEGER PRIMARY KEY,
    request_id          INTEGER NOT NULL REFERENCES requests(id),
    -- The --forward-to URL; '' for a job queued before targets had names.
    target              TEXT    NOT NULL DEFAULT '',
    state               TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'parked', 'skipped', 'forwarded')),
    -- Its place in its target's queue: commit order, and the end of it after a retry.
    queue_order         INTEGER NOT NULL,
    queued_at_ms        INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    last_attempt_at_ms  INTEGER,
    next_attempt_at_ms  INTEGER,
    forwarded_at_ms     INTEGER,            -- NULL until the app answered 2xx
    UNIQUE (request_id, target)
);
INSERT INTO forward_jobs_3 (id, request_id, target, state, queue_order, queued_at_ms, attempts,
                            last_error, forwarded_at_ms)
SELECT id, request_id, '', CASE WHEN forwarded_at_ms IS NULL THEN 'pending' ELSE 'forwarded' END,
       id, queued_at_ms, attempts, last_error, forwarded_at_ms
FROM forward_jobs;
DROP TABLE forward_jobs;
ALTER TABLE forward_jobs_3 RENAME TO forward_jobs;
-- Each queue's head, and the counts and oldest times of the metrics, from these alone.
CREATE INDEX forward_jobs_pending ON forward_jobs (target, queue_order, queued_at_ms)
    WHERE state = 'pending';
CREATE INDEX forward_jobs_parked ON forward_jobs (target, queue_order, queued_at_ms)
    WHERE state = 'parked';
CREATE TABLE forward_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES forward_jobs(id) ON DELETE CASCADE,
    at_ms       INTEGER NOT NULL,
    status      INTEGER,                    -- the app's status; NULL without an answer
    error       TEXT,                       -- why there was no answer
    latency_us  INTEGER NOT NULL,
    answer      BLOB    NOT NULL,           -- the first KiB of the answer's body
    outcome     TEXT    NOT NULL            -- delivered | failed | parked
);
CREATE INDEX forward_attempts_by_job ON forward_attempts (job_id, id);
-- The next queue place (one row): taken by the writer's commits and by retries, both under
-- SQLite's write lock, so places follow commit order.
CREATE TABLE forward_order (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    next  INTEGER NOT NULL
);
INSERT INTO forward_order (id, next) SELECT 1, COALESCE(MAX(id), 0) + 1 FROM forward_jobs;
";

/// Version 4: the `(account_id, event_id)` keys of events that retention or erasure deleted,
/// kept until `--dedupe-window` after their request was received, so a late retry of such an
/// event is still a duplicate. Rows go in append order (the rowid), written by pruning and
/// erasure only, never on the commit path, which only looks keys up.
///
/// And forward job ids that are never used twice (`AUTOINCREMENT`): once erasure or retention
/// can remove the newest job, SQLite would give its id to the next one, and the answer to an
/// erased job still being sent would be recorded on that new job (marked forwarded, never
/// sent). `forward_jobs` and `forward_attempts` are made again, rows and ids kept; the
/// attempts first, so no cascade runs.
const VERSION_4: &str = "
CREATE TABLE forward_jobs_4 (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id          INTEGER NOT NULL REFERENCES requests(id),
    target              TEXT    NOT NULL DEFAULT '',
    state               TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'parked', 'skipped', 'forwarded')),
    queue_order         INTEGER NOT NULL,
    queued_at_ms        INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    last_attempt_at_ms  INTEGER,
    next_attempt_at_ms  INTEGER,
    forwarded_at_ms     INTEGER,
    UNIQUE (request_id, target)
);
INSERT INTO forward_jobs_4 (id, request_id, target, state, queue_order, queued_at_ms, attempts,
                            last_error, last_attempt_at_ms, next_attempt_at_ms, forwarded_at_ms)
SELECT id, request_id, target, state, queue_order, queued_at_ms, attempts, last_error,
       last_attempt_at_ms, next_attempt_at_ms, forwarded_at_ms
FROM forward_jobs;
CREATE TABLE forward_attempts_4 (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES forward_jobs_4(id) ON DELETE CASCADE,
    at_ms       INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    latency_us  INTEGER NOT NULL,
    answer      BLOB    NOT NULL,
    outcome     TEXT    NOT NULL
);
INSERT INTO forward_attempts_4 SELECT id, job_id, at_ms, status, error, latency_us, answer, outcome
FROM forward_attempts;
DROP TABLE forward_attempts;
DROP TABLE forward_jobs;
-- Renaming rewrites forward_attempts_4's reference to the new name.
ALTER TABLE forward_jobs_4 RENAME TO forward_jobs;
ALTER TABLE forward_attempts_4 RENAME TO forward_attempts;
CREATE INDEX forward_jobs_pending ON forward_jobs (target, queue_order, queued_at_ms)
    WHERE state = 'pending';
CREATE INDEX forward_jobs_parked ON forward_jobs (target, queue_order, queued_at_ms)
    WHERE state = 'parked';
CREATE INDEX forward_attempts_by_job ON forward_attempts (job_id, id);
CREATE TABLE dedupe_keys (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,  -- when the request that stored the event arrived
    UNIQUE (account_id, event_id)
);
-- Expiry walks the oldest keys first.
CREATE INDEX dedupe_keys_by_time ON dedupe_keys (received_at_ms);
";

/// From version 4 to 5: searching and reporting (SPEC section 10):
/// - `user_id` and `lo_id`: `data.userId` and `data.loId` as a search compares them (a string
///   decoded, a number as written: `crate::search`), written with each event. No index: a
///   search reads this narrow table whole (0.1 s a million events), where an index would add
///   a page at a random place of its B-tree to every commit (the writes issue 26 counts).
///   Existing rows get them here from their JSON (`->` gives a number's text as written).
/// - `events_by_request`: the events of a request (the inspector's overview tells duplicates
///   by it). Request ids only grow, so it is appended to at its end, one page per commit.
/// - `receiver_events`: the relation reports query, with the columns and names of the
///   PostgreSQL table, `event` as JSON text, so one SQL runs on either store. The `sqlite3` of
///   Debian stable (3.40) reads it: `->` / `->>` are 3.38's, and the event's slice of the body
///   is cast to text (a BLOB would be JSONB to SQLite 3.45 and later).
const SEARCH_AND_REPORTING: &str = "
ALTER TABLE events ADD COLUMN user_id TEXT;
ALTER TABLE events ADD COLUMN lo_id TEXT;
UPDATE events
SET user_id = CASE json_type(s.event, '$.data.userId')
                  WHEN 'text' THEN s.event ->> '$.data.userId'
                  WHEN 'integer' THEN s.event -> '$.data.userId'
                  WHEN 'real' THEN s.event -> '$.data.userId' END,
    lo_id = CASE json_type(s.event, '$.data.loId')
                  WHEN 'text' THEN s.event ->> '$.data.loId'
                  WHEN 'integer' THEN s.event -> '$.data.loId'
                  WHEN 'real' THEN s.event -> '$.data.loId' END
FROM (SELECT e.id, CAST(substr(r.body, e.raw_start + 1, e.raw_length) AS TEXT) AS event
      FROM events e JOIN requests r ON r.id = e.request_id) AS s
WHERE s.id = events.id;
CREATE INDEX events_by_request ON events (request_id);
CREATE VIEW receiver_events AS
SELECT e.id, e.account_id, e.event_id, e.request_id, e.event_name, e.timestamp_ms,
       r.received_at_ms, e.known,
       CAST(substr(r.body, e.raw_start + 1, e.raw_length) AS TEXT) AS event
FROM events e JOIN requests r ON r.id = e.request_id;
";

/// Version 6: the events table without its `UNIQUE (account_id, event_id)` index, so a
/// commit only appends (issue 26). With random event ids that index put each new event on a
/// page of its own, at a random place: the largest part of what every commit wrote, twice
/// (the WAL, then the checkpoint). The listener decides duplicates from its keys in memory
/// (`keys.rs`), read from this table at its start; one listener per store (`lock.rs`).
/// `events_by_request` finds a request's events (the inspector's verdicts, pruning); request
/// ids only grow, so it is appended to at its end. The indexes by time and by name go too:
/// even appended to, each cost every commit two or three pages (its last leaf, the sibling
/// a split balances with, their parent), a quarter of what a commit wrote; `events` and the
/// reports read the narrow table whole instead (a million events in a fraction of a second,
/// measured in the README). SQLite drops a table constraint only by making the table again:
/// same columns, same ids; `legacy_alter_table` lets the rename leave the `receiver_events`
/// view as it is (it names `events`, there again once renamed) instead of refusing it while
/// `events` is gone.
const APPEND_ONLY_EVENTS: &str = "
PRAGMA legacy_alter_table = ON;
CREATE TABLE events_6 (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    request_id      INTEGER NOT NULL REFERENCES requests(id),
    event_name      TEXT    NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    known           INTEGER NOT NULL,
    raw_start       INTEGER NOT NULL,
    raw_length      INTEGER NOT NULL,
    user_id         TEXT,
    lo_id           TEXT
);
INSERT INTO events_6 (id, account_id, event_id, request_id, event_name, timestamp_ms, known,
                      raw_start, raw_length, user_id, lo_id)
SELECT id, account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start,
       raw_length, user_id, lo_id
FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_6 RENAME TO events;
PRAGMA legacy_alter_table = OFF;
CREATE INDEX events_by_request ON events (request_id);
";

/// An event's JSON text, as a SQL expression over `events e JOIN requests r`.
pub(super) const RAW_TEXT: &str = "substr(r.body, e.raw_start + 1, e.raw_length)";

/// The version of the store on `connection` when this receiver can work with it: 0 for a new
/// file (no tables yet) when `may_create`, the version of a step (a listener brings it up
/// with the steps after it) when `may_create`, else only the latest. Any other
/// layout is refused with what to do.
///
/// # Errors
/// The store is of another layout, or cannot be read.
pub(super) fn check_layout(connection: &Connection, may_create: bool) -> rusqlite::Result<i64> {
    check_layout_of(connection, may_create, STEPS)
}

/// Brings the store on `connection` to the latest version: the steps after its version, in
/// ONE transaction with their version records, so a crash while a store is created or brought
/// up leaves it as it was (a new file stays empty and is created again at the next start,
/// never tables without their version). The layout is checked again inside the transaction,
/// under the write lock: another program may have created tables since the first look.
///
/// # Errors
/// The store is of another layout, or a step failed (nothing of it is kept then).
pub(super) fn bring_up(connection: &Connection) -> rusqlite::Result<()> {
    bring_up_with(connection, STEPS)
}

/// [`check_layout`] against `steps` (the tests give steps of their own).
fn check_layout_of(
    connection: &Connection,
    may_create: bool,
    steps: &[Step],
) -> rusqlite::Result<i64> {
    let latest = steps.last().map_or(0, |step| step.version);
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == latest {
        return Ok(version);
    }
    let tables: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if version == 0 && tables == 0 && may_create {
        return Ok(0);
    }
    let known = steps.iter().any(|step| step.version == version);
    if known && may_create {
        return Ok(version);
    }
    Err(rusqlite::Error::InvalidParameterName(if known {
        format!(
            "the store has layout version {version}, this receiver reads version {latest}: \
             `receiver listen` with this --store brings it up first"
        )
    } else {
        format!(
            "the store has layout version {version}, this receiver reads version {latest}: \
             start a new store (--store sqlite:NEW_PATH), or read this one with the receiver \
             that wrote it"
        )
    }))
}

/// [`bring_up`] with `steps`.
fn bring_up_with(connection: &Connection, steps: &[Step]) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE;")?;
    let applied = check_layout_of(connection, true, steps).and_then(|found| {
        for step in steps.iter().filter(|step| step.version > found) {
            connection.execute_batch(step.sql)?;
            connection.pragma_update(None, "user_version", step.version)?;
        }
        connection.execute_batch("COMMIT;")
    });
    if let Err(error) = applied {
        let _ = connection.execute_batch("ROLLBACK;");
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(connection: &Connection) -> i64 {
        connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    fn tables(connection: &Connection) -> Vec<String> {
        let mut statement = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let names = statement.query_map([], |row| row.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    /// The latest version of this build.
    fn latest() -> i64 {
        STEPS.last().unwrap().version
    }

    #[test]
    fn a_new_store_gets_the_latest_layout_and_keeps_it() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), latest());
        assert_eq!(
            tables(&connection),
            [
                "dedupe_keys",
                "events",
                "forward_attempts",
                "forward_jobs",
                "forward_order",
                "health",
                "refused_requests",
                "requests",
                "sqlite_sequence"
            ]
        );
        bring_up(&connection).unwrap();
        assert_eq!(check_layout(&connection, false).unwrap(), latest());
    }

    /// A store as version 3 made it (several targets, before the dedupe keys), with rows, is
    /// brought up in place by the listener and keeps them; the new table starts empty.
    #[test]
    fn a_store_of_version_3_gains_the_dedupe_keys_and_keeps_its_rows() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up_with(&connection, &STEPS[..2]).unwrap();
        assert_eq!(version(&connection), 3);
        connection
            .execute_batch(
                "INSERT INTO requests VALUES (1, 0, 'POST', '/', '[]', x'7b7d', 'none', 1010);
                 INSERT INTO events (account_id, event_id, request_id, event_name,
                                     timestamp_ms, known, raw_start, raw_length)
                 VALUES (1010, 'kept', 1, 'COURSE_COMPLETED', 0, 1, 0, 2);
                 INSERT INTO forward_jobs (request_id, target, state, queue_order, queued_at_ms)
                 VALUES (1, 'http://a/', 'parked', 1, 5);
                 INSERT INTO forward_attempts (job_id, at_ms, status, latency_us, answer, outcome)
                 VALUES (1, 6, 400, 10, x'', 'parked');",
            )
            .unwrap();
        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), latest());
        let kept: (String, i64, String, i64) = connection
            .query_row(
                "SELECT e.event_id, r.account_id, j.state, j.queued_at_ms
                 FROM events e JOIN requests r ON r.id = e.request_id
                 JOIN forward_jobs j ON j.request_id = r.id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .unwrap();
        assert_eq!(kept, ("kept".to_owned(), 1010, "parked".to_owned(), 5));
        let attempts: i64 = connection
            .query_row(
                "SELECT COUNT(*) FROM forward_attempts WHERE job_id = 1",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(attempts, 1, "the attempts are kept with their job");
        // The newest job removed (as erasure does), the next one gets a new id.
        connection
            .execute_batch(
                "DELETE FROM forward_attempts; DELETE FROM forward_jobs;
                 INSERT INTO forward_jobs (request_id, target, queue_order, queued_at_ms)
                 VALUES (1, 'http://b/', 2, 7);",
            )
            .unwrap();
        let id: i64 = connection
            .query_row("SELECT id FROM forward_jobs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(id, 2, "a removed job's id is not given again");
        let keys: i64 = connection
            .query_row("SELECT COUNT(*) FROM dedupe_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(keys, 0);
    }

    #[test]
    fn a_layout_without_a_step_is_refused_untouched() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE events (raw TEXT); PRAGMA user_version = 1;")
            .unwrap();
        for refused in [
            bring_up(&connection).map(drop),
            check_layout(&connection, false).map(drop),
        ] {
            let message = refused.unwrap_err().to_string();
            assert!(
                message.contains("layout version 1") && message.contains("start a new store"),
                "{message}"
            );
        }
        assert_eq!(version(&connection), 1);
        assert_eq!(tables(&connection), ["events"]);
    }

    /// This build's steps and one more, the shape a next layout takes.
    fn with_next_step(sql: &'static str) -> Vec<Step> {
        let mut steps: Vec<Step> = STEPS.to_vec();
        steps.push(Step {
            version: latest() + 1,
            sql,
        });
        steps
    }

    #[test]
    fn a_store_of_an_earlier_step_is_brought_up_and_keeps_its_rows() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        connection
            .execute_batch(
                "INSERT INTO requests VALUES (1, 0, 'POST', '/', '[]', x'7b7d', 'none', 1010);
                 INSERT INTO events (account_id, event_id, request_id, event_name,
                                     timestamp_ms, known, raw_start, raw_length)
                 VALUES (1010, 'kept', 1, 'COURSE_COMPLETED', 0, 1, 0, 2);",
            )
            .unwrap();
        let next = with_next_step("ALTER TABLE events ADD COLUMN note TEXT NOT NULL DEFAULT '';");
        // A reader of the newer build waits for a listener to bring the store up.
        let waiting = check_layout_of(&connection, false, &next).unwrap_err();
        assert!(
            waiting.to_string().contains("brings it up first"),
            "{waiting}"
        );

        bring_up_with(&connection, &next).unwrap();
        assert_eq!(version(&connection), latest() + 1);
        let (event, note): (String, String) = connection
            .query_row("SELECT event_id, note FROM events", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!((event.as_str(), note.as_str()), ("kept", ""));
        // And the build before it refuses the newer store.
        assert!(check_layout(&connection, true).is_err());
    }

    #[test]
    fn an_earlier_store_gets_the_search_columns_and_the_reporting_view_keeping_its_rows() {
        // From the layout before this step (4, the dedupe keys), the one before that (3,
        // several forward targets) and version 2, which go through the steps between.
        for (steps, from) in [(3, 4), (2, 3), (1, 2)] {
            a_store_gets_the_search_columns_keeping_its_rows(steps, from);
        }
    }

    fn a_store_gets_the_search_columns_keeping_its_rows(steps: usize, from: i64) {
        let connection = Connection::open_in_memory().unwrap();
        bring_up_with(&connection, &STEPS[..steps]).unwrap();
        assert_eq!(version(&connection), from);
        // Three events as version 2 keeps them: offsets into their request's body.
        let events = [
            r#"{"eventId":"n","eventName":"COURSE_COMPLETED","timestamp":1,"data":{"userId":4279332,"loId":"course:7374992"}}"#,
            r#"{"eventId":"s","eventName":"COURSE_ENROLLMENT","timestamp":2,"data":{"userId":"42","loId":"lp:\u0031","score":1.50}}"#,
            r#"{"eventId":"o","eventName":"CI_STATS","timestamp":3,"data":{"loInstanceId":"course:1_2","userId":{"a":1}}}"#,
        ];
        for (index, event) in (1_i64..).zip(events) {
            let body = format!(r#"{{"accountId":1010,"events":[{event}]}}"#);
            connection
                .execute(
                    "INSERT INTO requests VALUES (?1, ?1, 'POST', '/webhook', '[]', ?2, 'none', 1010)",
                    rusqlite::params![index, body.as_bytes()],
                )
                .unwrap();
            connection
                .execute(
                    "INSERT INTO events (account_id, event_id, request_id, event_name,
                                         timestamp_ms, known, raw_start, raw_length)
                     VALUES (1010, ?1, ?2, 'X', ?2, 1, ?3, ?4)",
                    rusqlite::params![
                        &event[12..13],
                        index,
                        body.find(event).unwrap(),
                        event.len()
                    ],
                )
                .unwrap();
        }

        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), latest());
        let mut statement = connection
            .prepare("SELECT event_id, user_id, lo_id FROM events ORDER BY id")
            .unwrap();
        let found: Vec<(String, Option<String>, Option<String>)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("n", Some("4279332"), Some("course:7374992")),
            ("s", Some("42"), Some("lp:1")),
            ("o", None, None),
        ];
        assert_eq!(found.len(), expected.len());
        for ((event_id, user_id, lo_id), (want_id, want_user, want_lo)) in
            found.iter().zip(expected)
        {
            assert_eq!(event_id, want_id);
            assert_eq!(user_id.as_deref(), want_user, "{event_id}");
            assert_eq!(lo_id.as_deref(), want_lo, "{event_id}");
        }
        // The same as the listener takes them from new events (`crate::search`).
        for ((_, stored, _), event) in found.iter().zip(events) {
            let data = crate::search::FieldPath::parse("data")
                .unwrap()
                .lookup(event)
                .unwrap();
            assert_eq!(*stored, crate::search::scalar_at(data, "userId"), "{event}");
        }
        // The reporting relation: every event, with its JSON exactly as received.
        let (count, json): (i64, String) = connection
            .query_row(
                "SELECT COUNT(*), MIN(event) FROM receiver_events WHERE request_id = 2",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((count, json.as_str()), (1, events[1]));
        let learner: String = connection
            .query_row(
                "SELECT CAST(event -> 'data' ->> 'userId' AS TEXT) FROM receiver_events
                 WHERE event_id = 'n'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(learner, "4279332");
    }

    #[test]
    fn a_failing_step_leaves_the_store_at_its_version() {
        let connection = Connection::open_in_memory().unwrap();
        bring_up(&connection).unwrap();
        let broken = with_next_step(
            "CREATE TABLE notes (id INTEGER); INSERT INTO no_such_table VALUES (1);",
        );
        assert!(bring_up_with(&connection, &broken).is_err());
        assert_eq!(version(&connection), latest());
        assert!(!tables(&connection).contains(&"notes".to_owned()));
    }

    #[test]
    fn a_version_2_store_gets_several_targets_and_keeps_its_jobs() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("PRAGMA foreign_keys = ON;")
            .unwrap();
        bring_up_with(&connection, &STEPS[..1]).unwrap();
        assert_eq!(version(&connection), 2);
        connection
            .execute_batch(
                "INSERT INTO requests VALUES (1, 10, 'POST', '/', '[]', x'7b7d', 'none', 1010);
                 INSERT INTO requests VALUES (2, 20, 'POST', '/', '[]', x'7b7d', 'none', 1010);
                 INSERT INTO forward_jobs (id, request_id, queued_at_ms, attempts, last_error,
                                           forwarded_at_ms)
                 VALUES (1, 1, 11, 2, NULL, 12), (2, 2, 21, 3, 'the app answered 503', NULL);",
            )
            .unwrap();

        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), latest());
        // Each job as `id target state place attempts last_error forwarded_at`.
        let jobs: Vec<String> = connection
            .prepare(
                "SELECT id, target, state, queue_order, attempts, last_error, forwarded_at_ms
                 FROM forward_jobs ORDER BY id",
            )
            .unwrap()
            .query_map([], |row| {
                Ok(format!(
                    "{} {:?} {} {} {} {:?} {:?}",
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            jobs,
            [
                r#"1 "" forwarded 1 2 None Some(12)"#,
                r#"2 "" pending 2 3 Some("the app answered 503") None"#,
            ]
        );
        let next: i64 = connection
            .query_row("SELECT next FROM forward_order", [], |row| row.get(0))
            .unwrap();
        assert_eq!(next, 3, "new places come after the kept jobs");
        let keys: i64 = connection
            .query_row("SELECT COUNT(*) FROM dedupe_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(keys, 0, "the dedupe keys' table comes with the steps after");
        // A request may now have a job per target, and an attempt goes with its job.
        connection
            .execute_batch(
                "INSERT INTO forward_jobs (request_id, target, queue_order, queued_at_ms)
                 VALUES (2, 'http://a/', 3, 30), (2, 'http://b/', 4, 30);
                 INSERT INTO forward_attempts (job_id, at_ms, status, latency_us, answer, outcome)
                 VALUES (2, 40, 503, 10, x'', 'failed');
                 DELETE FROM forward_jobs WHERE id = 2;",
            )
            .unwrap();
        let attempts: i64 = connection
            .query_row("SELECT COUNT(*) FROM forward_attempts", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(attempts, 0, "a job's attempts go with it");
    }

    /// The names of the indexes on `table`.
    fn indexes(connection: &Connection, table: &str) -> Vec<String> {
        let mut statement = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name")
            .unwrap();
        let names = statement.query_map([table], |row| row.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_version_5_store_loses_the_unique_index_and_keeps_its_events_ids_and_view() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("PRAGMA foreign_keys = ON;")
            .unwrap();
        bring_up_with(&connection, &STEPS[..4]).unwrap();
        assert_eq!(version(&connection), 5);
        assert!(indexes(&connection, "events").contains(&"sqlite_autoindex_events_1".to_owned()));
        connection
            .execute_batch(
                "INSERT INTO requests VALUES (1, 10, 'POST', '/', '[]', x'7b7d', 'none', 1010);
                 INSERT INTO requests VALUES (2, 20, 'POST', '/', '[]', x'7b7d', 'none', 1010);
                 INSERT INTO events (id, account_id, event_id, request_id, event_name,
                                     timestamp_ms, known, raw_start, raw_length, user_id, lo_id)
                 VALUES (5, 1010, 'a', 1, 'COURSE_COMPLETED', 100, 1, 0, 2, '42', 'course:1'),
                        (9, 1010, 'b', 2, 'COURSE_ENROLLMENT', 200, 0, 0, 2, NULL, NULL);",
            )
            .unwrap();

        bring_up(&connection).unwrap();
        assert_eq!(version(&connection), 6);
        assert_eq!(
            indexes(&connection, "events"),
            ["events_by_request"],
            "no index on the keys, the times or the names: commits only append"
        );
        let rows: Vec<String> = connection
            .prepare(
                "SELECT id, account_id, event_id, request_id, event_name, timestamp_ms, known,
                        raw_start, raw_length, user_id, lo_id
                 FROM events ORDER BY id",
            )
            .unwrap()
            .query_map([], |row| {
                Ok(format!(
                    "{} {} {} {} {} {} {} {} {} {:?} {:?}",
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, bool>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, i64>(8)?,
                    row.get::<_, Option<String>>(9)?,
                    row.get::<_, Option<String>>(10)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                r#"5 1010 a 1 COURSE_COMPLETED 100 true 0 2 Some("42") Some("course:1")"#,
                "9 1010 b 2 COURSE_ENROLLMENT 200 false 0 2 None None"
            ]
        );
        // Still a request's events, found by the request.
        let plan: String = connection
            .query_row(
                "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE request_id = 2",
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("events_by_request"), "{plan}");
        // The reports' relation reads the new table.
        let reported: (i64, String) = connection
            .query_row(
                "SELECT COUNT(*), group_concat(event, '|') FROM receiver_events",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(reported, (2, "{}|{}".to_owned()));
        let renames_left_alone: i64 = connection
            .pragma_query_value(None, "legacy_alter_table", |row| row.get(0))
            .unwrap();
        assert_eq!(renames_left_alone, 0);
        // And an event without its request is refused, as before.
        let orphan = connection.execute_batch(
            "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms,
                                 known, raw_start, raw_length)
             VALUES (1010, 'c', 77, 'X', 0, 1, 0, 2);",
        );
        assert!(orphan.is_err());
    }
}
