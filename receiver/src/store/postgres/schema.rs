//! The receiver's tables in PostgreSQL, their version, and what is checked of a database at
//! first use.

use common::postgres_schema::{self, Layout, Step};
use deadpool_postgres::Object;

/// The receiver's tables and how a database gets them (`common::postgres_schema`): the
/// steps in order, each bringing the tables to its version (recorded in `receiver_schema`).
/// Version 1 is the whole layout below; version 2 forwards to several targets; version 3 adds
/// the dedupe keys that outlive their pruned or erased events; version 4 adds what searches
/// read. A change of layout is a step appended here.
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
            sql: DEDUPE_KEYS,
            creates: &["receiver_dedupe_keys"],
        },
        Step {
            version: 4,
            sql: SEARCH_AND_REPORTING,
            creates: &[],
        },
    ],
};

/// From version 3 to 4: searching and reporting (SPEC section 10). The learner
/// (`data.userId`) and learning object (`data.loId`) indexed as `->>` reads them (a string
/// decoded, a number as written: `crate::search`'s meaning), so a search for one reads the
/// index, not the table. Each commit pays for them: the expression computed from the JSON and a
/// B-tree entry per index and event (measured in `bench/`, see the README). The events of a
/// request, which the inspector's overview tells duplicates by, have their index since
/// version 3 (`receiver_events_by_request`).
///
/// `receiver_events` itself is the relation reports query (the SQLite store has a view of
/// that name with the same columns).
const SEARCH_AND_REPORTING: &str = "
CREATE INDEX receiver_events_by_user ON receiver_events ((event -> 'data' ->> 'userId'));
CREATE INDEX receiver_events_by_lo ON receiver_events ((event -> 'data' ->> 'loId'));
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

/// Version 3: the `(account_id, event_id)` keys of events that retention or erasure deleted,
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

    /// A database whose receiver tables a receiver of version 1 made (one target), with rows,
    /// is brought up in place by the next start and keeps them; the dedupe keys start empty.
    #[tokio::test]
    async fn tables_of_version_1_gain_the_dedupe_keys_and_keep_their_rows() {
        brought_up_from(
            1,
            "tables_of_version_1_gain_the_dedupe_keys_and_keep_their_rows",
        )
        .await;
    }

    /// The same from version 2 (several targets, before the dedupe keys).
    #[tokio::test]
    async fn tables_of_version_2_gain_the_dedupe_keys_and_keep_their_rows() {
        brought_up_from(
            2,
            "tables_of_version_2_gain_the_dedupe_keys_and_keep_their_rows",
        )
        .await;
    }

    /// Tables made by the steps up to `version`, with a request, its event and its forward
    /// job (the columns every version has), brought up to the latest by `prepare_schema`.
    async fn brought_up_from(version: i64, what: &str) {
        let Some(url) = common::test_postgres::test_database(what) else {
            return;
        };
        let url = common::postgres::DatabaseUrl::parse(&url).expect("test URL");
        let pool = url.pool("schema-test", 1).expect("pool");
        let mut client = pool.get().await.expect("connect");
        let steps = usize::try_from(version).expect("a version");
        let earlier = Layout {
            steps: &LAYOUT.steps[..steps],
            ..LAYOUT
        };
        postgres_schema::prepare(&mut client, &earlier)
            .await
            .expect("the earlier version");
        client
            .batch_execute(
                "INSERT INTO receiver_requests (received_at_ms, method, path, headers, body, auth, account_id)
                 VALUES (5, 'POST', '/webhook', '[]', '\\x7b7d', 'none', 1010);
                 INSERT INTO receiver_events (account_id, event_id, request_id, event_name,
                     timestamp_ms, received_at_ms, known, event)
                 SELECT 1010, 'kept', id, 'COURSE_COMPLETED', 0, 5, true, '{}' FROM receiver_requests;
                 INSERT INTO receiver_forward_jobs (request_id, queued_at_ms)
                 SELECT id, 6 FROM receiver_requests;",
            )
            .await
            .expect("rows of the earlier version");

        prepare_schema(&mut client).await.expect("brought up");
        let versions: Vec<i64> = client
            .query(
                "SELECT version::int8 FROM receiver_schema ORDER BY version",
                &[],
            )
            .await
            .expect("versions")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, (1..=LAYOUT.version()).collect::<Vec<_>>());
        let kept = client
            .query_one(
                "SELECT e.event_id, r.received_at_ms, j.queued_at_ms,
                        (SELECT COUNT(*) FROM receiver_dedupe_keys)
                 FROM receiver_events e JOIN receiver_requests r ON r.id = e.request_id
                 JOIN receiver_forward_jobs j ON j.request_id = r.id",
                &[],
            )
            .await
            .expect("the rows");
        assert_eq!(kept.get::<_, String>(0), "kept");
        assert_eq!(
            (
                kept.get::<_, i64>(1),
                kept.get::<_, i64>(2),
                kept.get::<_, i64>(3)
            ),
            (5, 6, 0)
        );
        let indexed: bool = client
            .query_one(
                "SELECT to_regclass('receiver_events_by_request') IS NOT NULL",
                &[],
            )
            .await
            .expect("index")
            .get(0);
        assert!(indexed);
    }

    /// A database made by version 3 of the layout (the dedupe keys, the one before the
    /// search's step) or by version 2 (several forward targets), with a few rows, is brought to
    /// the latest in place: its rows stay, and searches and reports find them by the new
    /// indexes.
    #[tokio::test]
    async fn a_database_of_version_3_or_2_gets_the_search_indexes_keeping_its_rows() {
        for from in [3, 2] {
            search_indexes_from(from).await;
        }
    }

    async fn search_indexes_from(from: usize) {
        let Some(url) = common::test_postgres::test_database(&format!(
            "receiver search indexes from version {from}"
        )) else {
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
        assert!(LAYOUT.version() >= 4);
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
        for index in ["receiver_events_by_user", "receiver_events_by_lo"] {
            assert!(indexes.iter().any(|name| name == index), "{indexes:?}");
        }
    }
}
