//! The receiver's tables in PostgreSQL, their version, and what is checked of a database at
//! first use.

use common::postgres_schema::{self, Layout, Step};
use deadpool_postgres::Object;

/// The receiver's tables and how a database gets them (`common::postgres_schema`): the
/// steps in order, each bringing the tables to its version (recorded in `receiver_schema`).
/// Version 1 is the whole layout below, version 2 adds what searches read; a change of layout
/// is a step appended here.
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
            sql: SEARCH_AND_REPORTING,
            creates: &[],
        },
    ],
    late_tables: None,
};

/// Searching and reporting (SPEC section 10):
/// - the learner (`data.userId`) and learning object (`data.loId`) indexed as `->>` reads them
///   (a string decoded, a number as written: `crate::search`'s meaning), so a search for one
///   reads the index, not the table. Each commit pays for them: the expression computed from
///   the JSON and a B-tree entry per index and event (measured in `bench/`, see the README);
/// - the events of a request (the inspector's overview tells duplicates by it); request ids
///   grow, so its entries go to its end.
///
/// `receiver_events` itself is the relation reports query (the SQLite store has a view of
/// that name with the same columns).
const SEARCH_AND_REPORTING: &str = "
CREATE INDEX receiver_events_by_user ON receiver_events ((event -> 'data' ->> 'userId'));
CREATE INDEX receiver_events_by_lo ON receiver_events ((event -> 'data' ->> 'loId'));
CREATE INDEX receiver_events_by_request ON receiver_events (request_id);
";

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made by version 1 of the layout, with a few rows, is brought to the latest
    /// in place: its rows stay, and searches and reports find them by the new indexes.
    #[tokio::test]
    async fn a_database_of_version_1_is_brought_up_keeping_its_rows() {
        let Some(url) = common::test_postgres::test_database("receiver schema version 1") else {
            return;
        };
        let url = common::postgres::DatabaseUrl::parse(&url).unwrap();
        let pool = url.pool("schema-test", 1).unwrap();
        let mut client = pool.get().await.unwrap();
        let version_1 = Layout {
            steps: &LAYOUT.steps[..1],
            ..LAYOUT
        };
        postgres_schema::prepare(&mut client, &version_1)
            .await
            .unwrap();
        client
            .batch_execute(
                r#"INSERT INTO receiver_requests VALUES
                       (1, 5, 'POST', '/webhook', '[]', '\x7b7d', 'none', 1010);
                   INSERT INTO receiver_events (account_id, event_id, request_id, event_name,
                                                timestamp_ms, received_at_ms, known, event)
                   VALUES (1010, 'kept', 1, 'COURSE_COMPLETED', 1, 5, true,
                           '{"data":{"userId":4279332,"loId":"course:7374992"}}'),
                          (1010, 'other', 1, 'COURSE_COMPLETED', 1, 5, true,
                           '{"data":{"userId":"42"}}');"#,
            )
            .await
            .unwrap();

        let prepared = postgres_schema::prepare(&mut client, &LAYOUT)
            .await
            .unwrap();
        assert_eq!((prepared.found, prepared.version), (1, LAYOUT.version()));
        assert!(LAYOUT.version() >= 2);
        for (sql, expected) in [
            (
                "SELECT event_id FROM receiver_events WHERE event -> 'data' ->> 'userId' = '4279332'",
                "kept",
            ),
            (
                "SELECT event_id FROM receiver_events WHERE event -> 'data' ->> 'userId' = '42'",
                "other",
            ),
            (
                "SELECT event_id FROM receiver_events WHERE event -> 'data' ->> 'loId' = 'course:7374992'",
                "kept",
            ),
        ] {
            let found: String = client.query_one(sql, &[]).await.unwrap().get(0);
            assert_eq!(found, expected, "{sql}");
        }
        let indexes: Vec<String> = client
            .query(
                "SELECT indexname::text FROM pg_indexes WHERE tablename = 'receiver_events'
                 ORDER BY indexname",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        for index in [
            "receiver_events_by_user",
            "receiver_events_by_lo",
            "receiver_events_by_request",
        ] {
            assert!(indexes.iter().any(|name| name == index), "{indexes:?}");
        }
    }
}
