//! The store's layout: its tables, the version `PRAGMA user_version` records, and the check
//! that refuses a file of another layout before anything changes it.

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
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

/// The layout version in `PRAGMA user_version`: a store of another layout is refused with a
/// clear message rather than misread. Version 2 keeps events' JSON as offsets into the body.
pub(super) const LAYOUT_VERSION: i64 = 2;

/// An event's JSON text, as a SQL expression over `events e JOIN requests r`.
pub(super) const RAW_TEXT: &str = "substr(r.body, e.raw_start + 1, e.raw_length)";

/// Refuses a store written in another layout. A file with no tables yet is new (when
/// `may_create`), and gets this layout.
pub(super) fn check_layout(connection: &Connection, may_create: bool) -> rusqlite::Result<()> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == LAYOUT_VERSION {
        return Ok(());
    }
    let tables: i64 = connection.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if version == 0 && tables == 0 && may_create {
        return Ok(());
    }
    Err(rusqlite::Error::InvalidParameterName(format!(
        "the store has layout version {version}, this receiver reads version {LAYOUT_VERSION}: \
         start a new store (--store sqlite:NEW_PATH), or read this one with the receiver that wrote it"
    )))
}
