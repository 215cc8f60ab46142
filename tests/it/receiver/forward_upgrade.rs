//! A store of the layout before several targets (one forward job per request, no target)
//! is upgraded in place at the first start of this build, on both stores, and keeps its data:
//! a forwarded job stays in the history, and each pending job goes to the targets that take
//! its request's events, as if it had just arrived (the first target keeps the job and its
//! place in order, the others get a copy); a job no target takes is skipped with a note.
//!
//! The old stores are made with the SQL of the layout they had (SQLite layout version 2,
//! PostgreSQL version 1), copied here as that build wrote it, and rows as it stored them.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::support::forwarding::{event_ids, forward_list, forwarding_receiver, named_envelope};
use crate::support::receiver::{free_addr, post, run_cli, wait_until, FakeApp};
use crate::support::store::{for_each_store, StoreKind, TestStore};

/// The SQLite layout version 2, as the build before several targets made it.
const SQLITE_VERSION_2: &str = "
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
PRAGMA user_version = 2;";

/// The PostgreSQL layout version 1, as the build before several targets made it.
const POSTGRES_VERSION_1: &str = "
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
INSERT INTO receiver_schema (version) VALUES (1);";

/// A request stored by the old build: its `(event id, event name)`s, and its job's attempts,
/// last error and time forwarded.
type OldRequest = (
    &'static [(&'static str, &'static str)],
    i64,
    Option<&'static str>,
    Option<i64>,
);

/// The requests stored by the old build.
const OLD_REQUESTS: &[OldRequest] = &[
    (&[("a1", "COURSE_ENROLLMENT")], 1, None, Some(1_000)),
    (
        &[("b1", "COURSE_ENROLLMENT")],
        2,
        Some("the app answered 503 Service Unavailable"),
        None,
    ),
    (&[("c1", "LEARNER_PROGRESS")], 0, None, None),
    (
        &[("d1", "COURSE_COMPLETED"), ("d2", "LEARNER_PROGRESS")],
        0,
        None,
        None,
    ),
    (&[("e1", "CI_STATS")], 0, None, None),
];

/// The JSON text of one event as [`named_envelope`] writes it.
fn event_text(id: &str, name: &str) -> String {
    let one = named_envelope(7, &[(id, name)]);
    one["{\"accountId\":7,\"events\":[".len()..one.len() - "]}".len()].to_owned()
}

/// SQL text of a string.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Fills `test_store` as the old build did: its layout, then the requests, their events and
/// their jobs.
async fn old_store(test_store: &TestStore) {
    let mut sql = match test_store.kind {
        StoreKind::Sqlite => SQLITE_VERSION_2.to_owned(),
        StoreKind::Postgres => POSTGRES_VERSION_1.to_owned(),
    };
    for (index, (events, attempts, last_error, forwarded_at)) in OLD_REQUESTS.iter().enumerate() {
        let request_id = index + 1;
        let body = named_envelope(7, events);
        let received_at = 1_000 * i64::try_from(request_id).unwrap();
        let body_sql = match test_store.kind {
            StoreKind::Sqlite => format!("CAST({} AS BLOB)", quoted(&body)),
            StoreKind::Postgres => format!("convert_to({}, 'UTF8')", quoted(&body)),
        };
        sql.push_str(&format!(
            "INSERT INTO {{requests}} (received_at_ms, method, path, headers, body, auth, account_id)
             VALUES ({received_at}, 'POST', '/webhook', '[[\"content-type\",\"application/json\"]]',
                     {body_sql}, 'none', 7);\n"
        ));
        for (id, name) in *events {
            let text = event_text(id, name);
            sql.push_str(&match test_store.kind {
                StoreKind::Sqlite => format!(
                    "INSERT INTO events (account_id, event_id, request_id, event_name,
                                         timestamp_ms, known, raw_start, raw_length)
                     VALUES (7, '{id}', {request_id}, '{name}', 0, 1, {}, {});\n",
                    body.find(&text).unwrap(),
                    text.len()
                ),
                StoreKind::Postgres => format!(
                    "INSERT INTO receiver_events (account_id, event_id, request_id, event_name,
                                                  timestamp_ms, received_at_ms, known, event)
                     VALUES (7, '{id}', {request_id}, '{name}', 0, {received_at}, true,
                             {}::json);\n",
                    quoted(&text)
                ),
            });
        }
        sql.push_str(&format!(
            "INSERT INTO {{forward_jobs}} (request_id, queued_at_ms, attempts, last_error,
                                          forwarded_at_ms)
             VALUES ({request_id}, {received_at}, {attempts}, {}, {});\n",
            last_error.map_or("NULL".to_owned(), quoted),
            forwarded_at.map_or("NULL".to_owned(), |at| at.to_string()),
        ));
    }
    test_store.run(&sql).await;
}

for_each_store!(
    an_old_store_is_upgraded_in_place_and_its_pending_jobs_go_to_the_targets_that_take_them
);

async fn an_old_store_is_upgraded_in_place_and_its_pending_jobs_go_to_the_targets_that_take_them(
    test_store: TestStore,
) {
    old_store(&test_store).await;
    let store = test_store.store_arg();
    // A reader of this build waits for a listener to bring the store up, and changes nothing.
    let (code, _, stderr) = run_cli(&["forward", "list", "--store", &store], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let crm = FakeApp::start_at(free_addr(), 200).await;
    let reporting = FakeApp::start_at(free_addr(), 200).await;
    let crm_url = format!("http://{}/crm", crm.addr);
    let reporting_url = format!("http://{}/reporting", reporting.addr);
    let receiver = forwarding_receiver(
        &store,
        &[
            format!("COURSE_*={crm_url}"),
            format!("LEARNER_PROGRESS={reporting_url}"),
        ],
    );
    // PostgreSQL tables are brought up as the receiver starts, in the background.
    let (sql, latest) = match test_store.kind {
        StoreKind::Sqlite => ("SELECT user_version FROM pragma_user_version", 6),
        StoreKind::Postgres => ("SELECT MAX(version)::int8 FROM receiver_schema", 4),
    };
    let brought_up = wait_until(Duration::from_secs(15), || async {
        test_store.scalar(sql).await == latest
    })
    .await;
    assert!(
        brought_up,
        "brought up in place to version {latest} (the latest)"
    );

    let body = |index: usize| Bytes::from(named_envelope(7, OLD_REQUESTS[index].0));
    assert!(crm.wait_acknowledged(2, Duration::from_secs(15)).await);
    assert!(
        reporting
            .wait_acknowledged(2, Duration::from_secs(15))
            .await
    );
    // What arrives after the upgrade goes behind what waited.
    let later = named_envelope(7, &[("f1", "COURSE_ENROLLMENT")]);
    assert_eq!(
        post(receiver.addr, "/webhook", &[], later.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert!(crm.wait_acknowledged(3, Duration::from_secs(15)).await);
    let settled = wait_until(Duration::from_secs(15), || {
        let store = store.clone();
        async move {
            let jobs = tokio::task::spawn_blocking(move || forward_list(&store, &[]))
                .await
                .unwrap();
            jobs.len() == 7 && jobs.iter().all(|job| job["state"] != "pending")
        }
    })
    .await;
    assert!(settled, "{:?}", forward_list(&store, &[]));
    assert_eq!(
        crm.acknowledged_bodies(),
        [body(1), body(3), Bytes::from(later)]
    );
    assert_eq!(reporting.acknowledged_bodies(), [body(2), body(3)]);

    let jobs = forward_list(&store, &[]);
    let listed = |target: Option<&str>| -> Vec<(String, String, i64)> {
        jobs.iter()
            .filter(|job| job["target"].as_str() == target)
            .map(|job| {
                (
                    event_ids(job),
                    job["state"].as_str().unwrap().to_owned(),
                    job["attempts"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let job = |ids: &str, state: &str, attempts: i64| (ids.to_owned(), state.to_owned(), attempts);
    assert_eq!(jobs.len(), 7, "{jobs:?}");
    // The history and the job no target takes keep no target.
    assert_eq!(
        listed(None),
        [job("a1", "forwarded", 1), job("e1", "skipped", 0)]
    );
    // The first target keeps the job, its attempts and its place; the other gets a copy.
    assert_eq!(
        listed(Some(&crm_url)),
        [
            job("b1", "forwarded", 3),
            job("d1+d2", "forwarded", 1),
            job("f1", "forwarded", 1)
        ]
    );
    assert_eq!(
        listed(Some(&reporting_url)),
        [job("c1", "forwarded", 1), job("d1+d2", "forwarded", 1)]
    );
    let skipped = jobs.iter().find(|job| event_ids(job) == "e1").unwrap();
    assert!(
        skipped["lastError"]
            .as_str()
            .unwrap()
            .contains("no --forward-to target takes its events"),
        "{skipped}"
    );
    receiver.kill();
}
