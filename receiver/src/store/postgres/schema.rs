//! The receiver's tables in PostgreSQL, their version, and what is checked of a database at
//! first use.

use common::postgres_schema::{self, Layout, Step};
use deadpool_postgres::Object;

/// The receiver's tables and how a database gets them (`common::postgres_schema`): the
/// steps in order, each bringing the tables to its version (recorded in `receiver_schema`).
/// Version 1 is the whole layout below; version 2 adds the dedupe keys that outlive their
/// pruned or erased events. A change of layout is a step appended here.
pub(crate) const LAYOUT: Layout = Layout {
    program: "receiver",
    lock: SCHEMA_LOCK,
    version_table: "receiver_schema",
    steps: &[
        Step {
            version: 1,
            sql: SCHEMA,
            creates: TABLE_NAMES,
        },
        Step {
            version: 2,
            sql: DEDUPE_KEYS,
            creates: &["receiver_dedupe_keys"],
        },
    ],
    late_tables: None,
};

/// The tables of version 1, created together on first use. Times are epoch milliseconds, as in
/// the SQLite store; `receiver_events.event` is the event's JSON exactly as received (type
/// `json` keeps the text as it is).
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

/// Version 2: the `(account_id, event_id)` keys of events that retention or erasure deleted,
/// kept until `--dedupe-window` after their request was received, so a late retry of such an
/// event is still a duplicate (the batch statement looks them up; pruning and erasure write
/// them, in append order). And events by request: pruning and erasure delete a request's
/// events by it, and the foreign key's check on each deleted request needs it too (without it,
/// a scan of every event per request).
const DEDUPE_KEYS: &str = "
CREATE TABLE receiver_dedupe_keys (
    id               bigserial PRIMARY KEY,
    account_id       bigint  NOT NULL,
    event_id         text    NOT NULL,
    received_at_ms   bigint  NOT NULL,  -- when the request that stored the event arrived
    UNIQUE (account_id, event_id)
);
CREATE INDEX receiver_dedupe_keys_by_time ON receiver_dedupe_keys (received_at_ms);
CREATE INDEX receiver_events_by_request ON receiver_events (request_id);
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

/// The advisory lock held while the tables are prepared. Advisory lock keys are one 64-bit
/// space per database, shared with other programs: the receiver's are fixed random-looking
/// numbers, `0x7265_6376_0000_000N` (this one; 2 in `batch.rs`, 3 in `forward_queue.rs`).
const SCHEMA_LOCK: i64 = 0x7265_6376_0000_0001;

/// Creates the tables when the database has none of them, brings them to the latest
/// version, or checks it (see [`LAYOUT`]). Under an advisory lock, so receivers starting
/// together do it once.
///
/// # Errors
/// The database cannot be reached, or holds receiver tables of a version this receiver did
/// not write, or tables of these names that are not ours.
pub(crate) async fn prepare_schema(client: &mut Object) -> anyhow::Result<()> {
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
pub(super) async fn warn_if_not_durable(client: &Object) {
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
