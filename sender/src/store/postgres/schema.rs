//! The tables: created on first use under an advisory lock, with a layout version; tables of
//! our names that are not ours (or of another version) are refused.

use std::sync::atomic::{AtomicU64, Ordering};

use common::postgres_schema::{self, LateTables, Layout, Step};

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

/// The advisory lock that serialises schema creation across processes ("sndr" in ASCII).
pub(super) const SCHEMA_LOCK: i64 = 0x736e_6472;

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

/// The key record (see `crate::sealing`), made also in databases whose tables predate it: a
/// table the layout may lack, as nothing but a key's presence depends on it.
pub(super) const SECRET_KEY_TABLE: &str = "
CREATE TABLE IF NOT EXISTS sender_secret_key (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    key_check TEXT NOT NULL
);
";

pub(super) const SCHEMA: &str = "
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

/// Creates the tables unless they exist, or brings them to the latest version, under an
/// advisory lock (see [`LAYOUT`]); refuses tables of our names that carry no layout version,
/// or one this build did not write.
pub(super) async fn create_schema(
    client: &mut deadpool_postgres::Object,
    trips: &AtomicU64,
) -> anyhow::Result<()> {
    let prepared = postgres_schema::prepare(client, &LAYOUT).await?;
    trips.fetch_add(prepared.round_trips, Ordering::Relaxed);
    Ok(())
}
