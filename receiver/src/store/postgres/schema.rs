//! The receiver's tables in PostgreSQL, their version, and what is checked of a database at
//! first use.

use common::postgres_schema::{self, Layout, Step};
use deadpool_postgres::Object;

/// The receiver's tables and how a database gets them (`common::postgres_schema`): the
/// steps in order, each bringing the tables to its version (recorded in `receiver_schema`).
/// Version 1 is the whole layout below; version 2 forwards to several targets; version 3
/// adds what searches read. A change of layout is a step appended here.
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
            sql: SEVERAL_TARGETS,
            creates: &["receiver_forward_attempts"],
        },
        Step {
            version: 3,
            sql: SEARCH_AND_REPORTING,
            creates: &[],
        },
    ],
    late_tables: None,
};

/// From version 2 to 3: searching and reporting (SPEC section 10):
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

/// From version 1 to 2: forwarding to several targets, as the SQLite layout's version 3. A
/// job per request and target (the unique key becomes `(request_id, target)`), each job's
/// state and place in its target's queue (`queue_order`, from a sequence of its own taken
/// under the lock that orders job inserts), and every attempt in
/// `receiver_forward_attempts`. A job of version 1 keeps its id, attempts and time, gets the
/// target `''` (given to the targets at the next start with forwarding) and its id as its
/// place. `target` keeps the default `''` so that a receiver of version 1 still running on
/// the database keeps storing (its jobs are given to targets the same way).
const SEVERAL_TARGETS: &str = "
ALTER TABLE receiver_forward_jobs DROP CONSTRAINT receiver_forward_jobs_request_id_key;
ALTER TABLE receiver_forward_jobs
    ADD COLUMN target text NOT NULL DEFAULT '',
    ADD COLUMN state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'parked', 'skipped', 'forwarded')),
    ADD COLUMN queue_order bigint,
    ADD COLUMN last_attempt_at_ms bigint,
    ADD COLUMN next_attempt_at_ms bigint,
    ALTER COLUMN attempts TYPE bigint;
UPDATE receiver_forward_jobs
SET queue_order = id,
    state = CASE WHEN forwarded_at_ms IS NULL THEN 'pending' ELSE 'forwarded' END;
CREATE SEQUENCE receiver_forward_order_seq OWNED BY receiver_forward_jobs.queue_order;
SELECT setval('receiver_forward_order_seq',
              COALESCE((SELECT MAX(id) FROM receiver_forward_jobs), 0) + 1, false);
ALTER TABLE receiver_forward_jobs
    ALTER COLUMN queue_order SET DEFAULT nextval('receiver_forward_order_seq'),
    ALTER COLUMN queue_order SET NOT NULL,
    ADD CONSTRAINT receiver_forward_jobs_request_target UNIQUE (request_id, target);
DROP INDEX receiver_forward_jobs_pending;
-- Each queue's head, and the counts and oldest times of the metrics, from these alone.
CREATE INDEX receiver_forward_jobs_pending
    ON receiver_forward_jobs (target, queue_order, queued_at_ms) WHERE state = 'pending';
CREATE INDEX receiver_forward_jobs_parked
    ON receiver_forward_jobs (target, queue_order, queued_at_ms) WHERE state = 'parked';
CREATE TABLE receiver_forward_attempts (
    id          bigserial PRIMARY KEY,
    job_id      bigint  NOT NULL REFERENCES receiver_forward_jobs (id) ON DELETE CASCADE,
    at_ms       bigint  NOT NULL,
    status      bigint,                     -- the app's status; NULL without an answer
    error       text,                       -- why there was no answer
    latency_us  bigint  NOT NULL,
    answer      bytea   NOT NULL,           -- the first KiB of the answer's body
    outcome     text    NOT NULL            -- delivered | failed | parked
);
CREATE INDEX receiver_forward_attempts_by_job ON receiver_forward_attempts (job_id, id);
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
/// numbers, `0x7265_6376_0000_000N` (this one; 2 in `batch.rs`, 3 in `forward_queue.rs`); the
/// per-target forwarding leases are two-key locks (`forward_queue.rs`), a space of their own.
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

    /// A database made by version 2 of the layout (several forward targets, the one before
    /// the search's step) or by version 1, with a few rows, is brought to the latest in place:
    /// its rows stay, and searches and reports find them by the new indexes.
    #[tokio::test]
    async fn a_database_of_version_2_or_1_is_brought_up_keeping_its_rows() {
        for from in [2, 1] {
            brought_up_keeping_its_rows(from).await;
        }
    }

    async fn brought_up_keeping_its_rows(from: usize) {
        let Some(url) =
            common::test_postgres::test_database(&format!("receiver schema version {from}"))
        else {
            return;
        };
        let url = common::postgres::DatabaseUrl::parse(&url).unwrap();
        let pool = url.pool("schema-test", 1).unwrap();
        let mut client = pool.get().await.unwrap();
        let earlier = Layout {
            steps: &LAYOUT.steps[..from],
            ..LAYOUT
        };
        postgres_schema::prepare(&mut client, &earlier)
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
        assert_eq!(
            (prepared.found, prepared.version),
            (i64::try_from(from).unwrap(), LAYOUT.version())
        );
        assert!(LAYOUT.version() >= 3);
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
