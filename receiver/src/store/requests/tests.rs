//! One suite of the inspector's reads, run on both stores: each test is a function taking a
//! [`Fixture`] (a store filled directly with SQL), called once per store. The PostgreSQL runs
//! say SKIPPED without a server (and fail under `CI=true`). Tests of what only PostgreSQL
//! can do (commits out of id order) follow the suite.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::body::body_events;
use crate::store::postgres::schema::prepare_schema;
use crate::store::postgres::PostgresRequestPool;
use crate::store::sqlite::{SqliteReader, SqliteStore};
use crate::store::{
    Cursor, EventStorage, RequestFilter, RequestKey, RequestQuery, RequestSummary, RequestVerdict,
};

/// A kept request to insert.
enum Kept {
    /// Accepted: receive time, headers (JSON), body, account, and the events it stored now
    /// (`(eventId, eventName)`).
    Accepted {
        received_at_ms: i64,
        headers: String,
        body: String,
        account: i64,
        stored: Vec<(String, String)>,
    },
    /// Refused with 401 `no_matching_signature`, body `{}`.
    Refused { received_at_ms: i64 },
}

/// A store the suite fills and reads.
trait Fixture {
    /// Inserts `kept` in order, numbering each table on from its highest id.
    fn keep(&mut self, kept: &[Kept]);
    /// A reader of the store.
    fn reader(&self) -> Box<dyn RequestQuery + '_>;
}

/// A one-event request of account 1, stored now.
fn one_event(received_at_ms: i64, event_id: &str, name: &str) -> Kept {
    let event =
        format!(r#"{{"eventId":"{event_id}","eventName":"{name}","timestamp":1,"data":{{}}}}"#);
    Kept::Accepted {
        received_at_ms,
        headers: "[]".to_owned(),
        body: format!(r#"{{"accountId":1,"events":[{event}]}}"#),
        account: 1,
        stored: vec![(event_id.to_owned(), name.to_owned())],
    }
}

/// `accepted` one-event requests (every 3000th named `RARE`, the rest `COURSE_ENROLLMENT`)
/// and a refusal after every 250th, received 1 ms apart.
fn fill(fixture: &mut dyn Fixture, accepted: i64) {
    let mut kept = Vec::new();
    let mut at = 0;
    for i in 1..=accepted {
        let name = if i % 3000 == 0 {
            "RARE"
        } else {
            "COURSE_ENROLLMENT"
        };
        at += 1;
        kept.push(one_event(at, &format!("e{i}"), name));
        if i % 250 == 0 {
            at += 1;
            kept.push(Kept::Refused { received_at_ms: at });
        }
    }
    fixture.keep(&kept);
}

/// Every page in turn from the newest, until the list says nothing older is left.
fn all_pages(
    reader: &dyn RequestQuery,
    filter: &RequestFilter,
    limit: usize,
) -> (Vec<RequestSummary>, usize) {
    let (mut rows, mut pages, mut before) = (Vec::new(), 0, Cursor::NEWEST);
    loop {
        let page = reader.requests(filter, before, limit).unwrap();
        assert!(page.rows.len() <= limit);
        pages += 1;
        rows.extend(page.rows);
        match page.older {
            Some(older) => before = older,
            None => return (rows, pages),
        }
    }
}

fn is_newest_first(rows: &[RequestSummary]) -> bool {
    rows.windows(2)
        .all(|pair| pair[0].received_at_ms > pair[1].received_at_ms)
}

/// Everything after `cursor`, batch after batch, until nothing moves; and the last cursor.
fn follow(reader: &dyn RequestQuery, mut cursor: Cursor) -> (Vec<RequestSummary>, Cursor) {
    let mut rows = Vec::new();
    loop {
        let (batch, next) = reader
            .requests_after(&RequestFilter::default(), cursor, 64)
            .unwrap();
        if batch.is_empty() && next == cursor {
            return (rows, cursor);
        }
        rows.extend(batch);
        cursor = next;
    }
}

fn pages_cover_every_request_once_newest_first_and_filters_cross_the_scan_budget(
    fixture: &mut dyn Fixture,
) {
    fill(fixture, 12_000);
    let reader = fixture.reader();
    let (rows, _) = all_pages(reader.as_ref(), &RequestFilter::default(), 97);
    assert_eq!(rows.len(), 12_000 + 48);
    assert!(is_newest_first(&rows));
    // The rare name: 4 requests, far apart, each further than one page's budget.
    let rare = RequestFilter {
        event_name: Some("RARE".to_owned()),
        ..RequestFilter::default()
    };
    let (rows, pages) = all_pages(reader.as_ref(), &rare, 2);
    let keys: Vec<RequestKey> = rows.iter().map(|row| row.key).collect();
    assert_eq!(
        keys,
        [12_000, 9_000, 6_000, 3_000].map(RequestKey::Accepted),
        "every match once, newest first"
    );
    assert!(pages > 2, "the walk was cut by its budget and continued");
    let refused = RequestFilter {
        verdict: Some("no_matching_signature".to_owned()),
        ..RequestFilter::default()
    };
    let (rows, _) = all_pages(reader.as_ref(), &refused, 10);
    assert_eq!(rows.len(), 48);
    assert!(rows
        .iter()
        .all(|row| matches!(row.key, RequestKey::Refused(_))));
}

fn the_stream_reads_everything_after_a_cursor_oldest_first(fixture: &mut dyn Fixture) {
    fill(fixture, 1_000);
    let reader = fixture.reader();
    let newest = reader.newest().unwrap();
    assert_eq!(
        newest,
        Cursor {
            accepted: 1_000,
            refused: 4
        }
    );
    let (rows, cursor) = follow(
        reader.as_ref(),
        Cursor {
            accepted: 500,
            refused: 2,
        },
    );
    assert_eq!(cursor, newest);
    assert_eq!(rows.len(), 500 + 2);
    assert!(rows
        .windows(2)
        .all(|pair| pair[0].received_at_ms < pair[1].received_at_ms));
    assert_eq!(rows[0].key, RequestKey::Accepted(501));
}

fn duplicates_and_refusals_are_told_apart_in_the_list_and_the_detail(fixture: &mut dyn Fixture) {
    fill(fixture, 3);
    // A fourth request carrying e2 again: stored nothing.
    let body = r#"{"accountId":1,"events":[{"eventId":"e2","eventName":"COURSE_ENROLLMENT","timestamp":1,"data":{}}]}"#;
    fixture.keep(&[Kept::Accepted {
        received_at_ms: 10,
        headers: r#"[["x-a","1"],["x-b","2"]]"#.to_owned(),
        body: body.to_owned(),
        account: 1,
        stored: Vec::new(),
    }]);
    let reader = fixture.reader();
    let page = reader
        .requests(&RequestFilter::default(), Cursor::NEWEST, 10)
        .unwrap();
    assert_eq!(page.rows[0].verdict, RequestVerdict::Duplicate);
    assert_eq!(page.rows[1].verdict, RequestVerdict::Accepted);
    let duplicates = RequestFilter {
        verdict: Some("duplicate".to_owned()),
        ..RequestFilter::default()
    };
    let (rows, _) = all_pages(reader.as_ref(), &duplicates, 10);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key, RequestKey::Accepted(4));
    let detail = reader.request(RequestKey::Accepted(4)).unwrap().unwrap();
    assert_eq!(detail.events[0].storage, EventStorage::Duplicate);
    assert_eq!(detail.summary.verdict, RequestVerdict::Duplicate);
    assert_eq!(detail.record.headers[1], ("x-b".to_owned(), "2".to_owned()));
    assert_eq!(detail.record.body, body.as_bytes());
    let first = reader.request(RequestKey::Accepted(2)).unwrap().unwrap();
    assert_eq!(first.events[0].storage, EventStorage::New);
    assert_eq!(first.summary.verdict, RequestVerdict::Accepted);
    assert!(reader.request(RequestKey::Refused(9)).unwrap().is_none());
    assert!(reader.request(RequestKey::Accepted(99)).unwrap().is_none());
    assert_eq!(RequestKey::parse("a4"), Some(RequestKey::Accepted(4)));
    assert_eq!(RequestKey::parse("r0"), None);
    assert_eq!(
        Cursor::parse("3.4"),
        Some(Cursor {
            accepted: 3,
            refused: 4
        })
    );
}

fn a_learner_is_found_by_the_events_stored_whatever_lies_between(fixture: &mut dyn Fixture) {
    let learner = |received_at_ms: i64, event_id: &str, user: &str| {
        let event = format!(
            r#"{{"eventId":"{event_id}","eventName":"COURSE_COMPLETED","timestamp":1,"data":{{"userId":{user},"loId":"course:7"}}}}"#
        );
        Kept::Accepted {
            received_at_ms,
            headers: "[]".to_owned(),
            body: format!(r#"{{"accountId":1,"events":[{event}]}}"#),
            account: 1,
            stored: vec![(event_id.to_owned(), "COURSE_COMPLETED".to_owned())],
        }
    };
    fixture.keep(&[learner(1, "first", "4279332")]);
    // More than a page's scan budget of other requests, then the learner again (the id
    // written as a string), then another learner.
    fill(fixture, 12_000);
    fixture.keep(&[
        learner(20_000, "second", r#""4279332""#),
        learner(20_001, "other", "42793320"),
    ]);
    let reader = fixture.reader();
    let search = |text: &str| RequestFilter {
        data: crate::search::Search::from_data_field(text).unwrap(),
        ..RequestFilter::default()
    };
    let page = reader
        .requests(&search("userId=4279332"), Cursor::NEWEST, 50)
        .unwrap();
    let keys: Vec<RequestKey> = page.rows.iter().map(|row| row.key).collect();
    assert_eq!(
        keys,
        [12_002, 1].map(RequestKey::Accepted),
        "one page, both"
    );
    assert!(page.older.is_none(), "and nothing left to look at");
    assert_eq!(page.rows[0].events[0].user_id.as_deref(), Some("4279332"));
    assert_eq!(page.rows[0].events[0].lo_id.as_deref(), Some("course:7"));
    // Both conditions; and the live side, after the first of them.
    let both = search("userId=4279332 loId=course:7");
    let (rows, _) = all_pages(reader.as_ref(), &both, 1);
    assert_eq!(rows.len(), 2);
    let (after, _) = reader
        .requests_after(
            &both,
            Cursor {
                accepted: 1,
                refused: 0,
            },
            10,
        )
        .unwrap();
    let keys: Vec<RequestKey> = after.iter().map(|row| row.key).collect();
    assert_eq!(keys, [RequestKey::Accepted(12_002)]);
    assert!(reader
        .requests(&search("userId=427933"), Cursor::NEWEST, 50)
        .unwrap()
        .rows
        .is_empty());
}

/// Runs each named suite function once per store, as the tests `NAME::sqlite` and
/// `NAME::postgres`.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[test]
                fn sqlite() {
                    super::$test(&mut super::SqliteFixture::new());
                }

                #[test]
                fn postgres() {
                    if let Some(mut fixture) = super::PostgresFixture::new(stringify!($test)) {
                        super::$test(&mut fixture);
                    }
                }
            }
        )*
    };
}

on_both_stores!(
    pages_cover_every_request_once_newest_first_and_filters_cross_the_scan_budget,
    the_stream_reads_everything_after_a_cursor_oldest_first,
    duplicates_and_refusals_are_told_apart_in_the_list_and_the_detail,
    a_learner_is_found_by_the_events_stored_whatever_lies_between,
);

/// One stored event's columns: account, eventId, request, name, its JSON, and its learner
/// and learning object as the listener takes them.
struct EventColumns {
    account: i64,
    event_id: String,
    request_id: i64,
    name: String,
    json: String,
    user_id: Option<String>,
    lo_id: Option<String>,
}

/// The columns of `kept` per table, with the ids they get after `accepted` and `refused`.
struct Columns {
    requests: Vec<(i64, i64, String, String, i64)>,
    events: Vec<EventColumns>,
    refused: Vec<(i64, i64)>,
}

fn columns(kept: &[Kept], mut accepted: i64, mut refused: i64) -> Columns {
    let mut columns = Columns {
        requests: Vec::new(),
        events: Vec::new(),
        refused: Vec::new(),
    };
    for one in kept {
        match one {
            Kept::Accepted {
                received_at_ms,
                headers,
                body,
                account,
                stored,
            } => {
                accepted += 1;
                columns.requests.push((
                    accepted,
                    *received_at_ms,
                    headers.clone(),
                    body.clone(),
                    *account,
                ));
                let (_, in_body) = body_events(body.as_bytes());
                for (event_id, name) in stored {
                    let event = in_body
                        .iter()
                        .find(|event| &event.summary.event_id == event_id)
                        .expect("a stored event is in its body");
                    columns.events.push(EventColumns {
                        account: *account,
                        event_id: event_id.clone(),
                        request_id: accepted,
                        name: name.clone(),
                        json: event.raw.to_owned(),
                        user_id: event.summary.user_id.clone(),
                        lo_id: event.summary.lo_id.clone(),
                    });
                }
            }
            Kept::Refused { received_at_ms } => {
                refused += 1;
                columns.refused.push((refused, *received_at_ms));
            }
        }
    }
    columns
}

/// A SQLite store in a temporary directory.
struct SqliteFixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl SqliteFixture {
    fn new() -> SqliteFixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let metrics = Arc::new(crate::metrics::Metrics::default());
            let store =
                SqliteStore::open(&path, 10_000, crate::routing::Routes::default(), metrics)
                    .unwrap();
            crate::store::Store::close(&store).await.unwrap();
        });
        SqliteFixture { _dir: dir, path }
    }
}

impl Fixture for SqliteFixture {
    fn keep(&mut self, kept: &[Kept]) {
        use rusqlite::params;
        let mut connection = rusqlite::Connection::open(&self.path).unwrap();
        let transaction = connection.transaction().unwrap();
        let highest = |table: &str| -> i64 {
            transaction
                .query_row(
                    &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
                    [],
                    |row| row.get(0),
                )
                .unwrap()
        };
        let columns = columns(kept, highest("requests"), highest("refused_requests"));
        for (id, at, headers, body, account) in &columns.requests {
            transaction
                .execute(
                    "INSERT INTO requests (id, received_at_ms, method, path, headers, body, auth, account_id)
                     VALUES (?1, ?2, 'POST', '/webhook', ?3, ?4, 'none', ?5)",
                    params![id, at, headers, body.as_bytes(), account],
                )
                .unwrap();
        }
        for event in &columns.events {
            transaction
                .execute(
                    "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length, user_id, lo_id)
                     VALUES (?1, ?2, ?3, ?4, 1, 1, 0, ?5, ?6, ?7)",
                    params![
                        event.account,
                        event.event_id,
                        event.request_id,
                        event.name,
                        event.json.len(),
                        event.user_id,
                        event.lo_id
                    ],
                )
                .unwrap();
        }
        for (id, at) in &columns.refused {
            transaction
                .execute(
                    "INSERT INTO refused_requests (id, received_at_ms, method, path, headers, body, status, reason)
                     VALUES (?1, ?2, 'POST', '/webhook', '[]', x'7b7d', 401, 'no_matching_signature')",
                    params![id, at],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
    }

    fn reader(&self) -> Box<dyn RequestQuery + '_> {
        Box::new(SqliteReader::open(&self.path).unwrap())
    }
}

/// A fresh PostgreSQL database with the receiver's tables, and a runtime to drive it.
struct PostgresFixture {
    runtime: tokio::runtime::Runtime,
    url: common::postgres::DatabaseUrl,
    pool: PostgresRequestPool,
    /// Connections of the fixture itself (inserts, open transactions).
    own: deadpool_postgres::Pool,
}

impl PostgresFixture {
    fn new(what: &str) -> Option<PostgresFixture> {
        Self::with_gap_wait(what, crate::store::postgres::GAP_WAIT)
    }

    fn with_gap_wait(what: &str, gap_wait: Duration) -> Option<PostgresFixture> {
        let url = common::test_postgres::test_database(what)?;
        let url = common::postgres::DatabaseUrl::parse(&url).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let own = url.pool("fixture", 2).unwrap();
        runtime.block_on(async {
            let mut client = own.get().await.unwrap();
            prepare_schema(&mut client).await.unwrap();
        });
        let pool = PostgresRequestPool::with_gap_wait(&url, 10_000, gap_wait).unwrap();
        Some(PostgresFixture {
            runtime,
            url,
            pool,
            own,
        })
    }

    /// Runs `sql` on a connection of the fixture.
    fn execute(&self, sql: &str) {
        self.runtime.block_on(async {
            self.own
                .get()
                .await
                .unwrap()
                .batch_execute(sql)
                .await
                .unwrap();
        });
    }

    /// A connection of its own, outside any pool, driven by the fixture's runtime.
    fn session(&self) -> tokio_postgres::Client {
        self.runtime.block_on(async {
            let (client, connection) = self
                .url
                .config()
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        })
    }
}

impl Fixture for PostgresFixture {
    fn keep(&mut self, kept: &[Kept]) {
        self.runtime.block_on(async {
            let mut client = self.own.get().await.unwrap();
            let transaction = client.transaction().await.unwrap();
            let mut highest = Vec::new();
            for table in ["receiver_requests", "receiver_refused_requests"] {
                let row = transaction
                    .query_one(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"), &[])
                    .await
                    .unwrap();
                highest.push(row.get::<_, i64>(0));
            }
            let columns = columns(kept, highest[0], highest[1]);
            let ids: Vec<i64> = columns.requests.iter().map(|row| row.0).collect();
            let at: Vec<i64> = columns.requests.iter().map(|row| row.1).collect();
            let headers: Vec<&str> = columns.requests.iter().map(|row| row.2.as_str()).collect();
            let bodies: Vec<&[u8]> = columns.requests.iter().map(|row| row.3.as_bytes()).collect();
            let accounts: Vec<i64> = columns.requests.iter().map(|row| row.4).collect();
            transaction
                .execute(
                    "INSERT INTO receiver_requests (id, received_at_ms, method, path, headers, body, auth, account_id)
                     SELECT id, at, 'POST', '/webhook', headers, body, 'none', account
                     FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bytea[], $5::int8[])
                          AS r (id, at, headers, body, account)",
                    &[&ids, &at, &headers, &bodies, &accounts],
                )
                .await
                .unwrap();
            let accounts: Vec<i64> = columns.events.iter().map(|row| row.account).collect();
            let event_ids: Vec<&str> =
                columns.events.iter().map(|row| row.event_id.as_str()).collect();
            let request_ids: Vec<i64> = columns.events.iter().map(|row| row.request_id).collect();
            let names: Vec<&str> = columns.events.iter().map(|row| row.name.as_str()).collect();
            let json: Vec<&str> = columns.events.iter().map(|row| row.json.as_str()).collect();
            transaction
                .execute(
                    "INSERT INTO receiver_events
                         (account_id, event_id, request_id, event_name, timestamp_ms, received_at_ms, known, event)
                     SELECT account, event_id, request_id, name, 1, 1, true, json::json
                     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[])
                          AS e (account, event_id, request_id, name, json)",
                    &[&accounts, &event_ids, &request_ids, &names, &json],
                )
                .await
                .unwrap();
            let ids: Vec<i64> = columns.refused.iter().map(|row| row.0).collect();
            let at: Vec<i64> = columns.refused.iter().map(|row| row.1).collect();
            transaction
                .execute(
                    "INSERT INTO receiver_refused_requests (id, received_at_ms, method, path, headers, body, status, reason)
                     SELECT id, at, 'POST', '/webhook', '[]', '\\x7b7d', 401, 'no_matching_signature'
                     FROM unnest($1::int8[], $2::int8[]) AS r (id, at)",
                    &[&ids, &at],
                )
                .await
                .unwrap();
            // Later inserts that take ids from the sequences go on from here.
            transaction
                .batch_execute(
                    "SELECT setval('receiver_requests_id_seq', GREATEST((SELECT MAX(id) FROM receiver_requests), 1));
                     SELECT setval('receiver_refused_requests_id_seq', GREATEST((SELECT MAX(id) FROM receiver_refused_requests), 1));",
                )
                .await
                .unwrap();
            transaction.commit().await.unwrap();
        });
    }

    fn reader(&self) -> Box<dyn RequestQuery + '_> {
        Box::new(self.pool.reader(self.runtime.handle()).unwrap())
    }
}

/// An accepted request received now, taking its id from the sequence, as the writer's do.
const INSERT_NEXT: &str =
    "INSERT INTO receiver_requests (received_at_ms, method, path, headers, body, auth, account_id)
     VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::int8, 'POST', '/webhook', '[]',
             '{\"accountId\":1,\"events\":[]}', 'none', 1)";

#[test]
fn a_request_committed_late_with_a_lower_id_still_reaches_the_stream() {
    let what = "a_request_committed_late_with_a_lower_id_still_reaches_the_stream";
    let Some(mut fixture) = PostgresFixture::new(what) else {
        return;
    };
    fill(&mut fixture, 2);
    // A batch takes id 3 and has not committed when another commits id 4.
    let late = fixture.session();
    fixture.runtime.block_on(async {
        late.batch_execute(&format!("BEGIN; {INSERT_NEXT}"))
            .await
            .unwrap();
    });
    fixture.execute(INSERT_NEXT);
    let start = Cursor {
        accepted: 2,
        refused: 0,
    };
    {
        let reader = fixture.reader();
        assert_eq!(
            reader.newest().unwrap(),
            start,
            "a page hands over to its stream below the open id"
        );
        let (rows, cursor) = follow(reader.as_ref(), start);
        assert!(rows.is_empty(), "4 is held back while 3 may still come");
        assert_eq!(cursor, start);
    }
    fixture.runtime.block_on(async {
        late.batch_execute("COMMIT").await.unwrap();
    });
    let reader = fixture.reader();
    let (rows, cursor) = follow(reader.as_ref(), start);
    let keys: Vec<RequestKey> = rows.iter().map(|row| row.key).collect();
    assert_eq!(keys, [3, 4].map(RequestKey::Accepted));
    assert_eq!(cursor.accepted, 4);
    assert_eq!(reader.newest().unwrap().accepted, 4);
}

#[test]
fn an_id_that_never_commits_holds_the_stream_back_only_for_a_while() {
    let what = "an_id_that_never_commits_holds_the_stream_back_only_for_a_while";
    let wait = Duration::from_millis(500);
    let Some(mut fixture) = PostgresFixture::with_gap_wait(what, wait) else {
        return;
    };
    fill(&mut fixture, 2);
    // Id 3 is burned by a rolled-back batch; 4 commits.
    fixture.execute(&format!("BEGIN; {INSERT_NEXT}; ROLLBACK"));
    fixture.execute(INSERT_NEXT);
    let start = Cursor {
        accepted: 2,
        refused: 0,
    };
    let first_look = Instant::now();
    let (rows, _) = follow(fixture.reader().as_ref(), start);
    if first_look.elapsed() < wait {
        assert!(rows.is_empty(), "held back at first");
    }
    // Polled, as the stream does, until the hole is taken for one that will never fill.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let (rows, _) = follow(fixture.reader().as_ref(), start);
        if !rows.is_empty() || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(first_look.elapsed() >= wait, "not before the wait");
    let keys: Vec<RequestKey> = rows.iter().map(|row| row.key).collect();
    assert_eq!(keys, [RequestKey::Accepted(4)]);
    let reader = fixture.reader();
    assert_eq!(reader.newest().unwrap().accepted, 4);
}

#[test]
fn ids_removed_long_after_their_commit_hold_nothing_back() {
    let what = "ids_removed_long_after_their_commit_hold_nothing_back";
    let Some(mut fixture) = PostgresFixture::new(what) else {
        return;
    };
    // Requests received long ago (as `fill` makes them); the retention removed the oldest and
    // an erasure one in the middle, leaving holes below them and between them.
    fill(&mut fixture, 6);
    fixture.execute(
        "DELETE FROM receiver_events WHERE request_id IN (1, 2, 3, 5);
         DELETE FROM receiver_requests WHERE id IN (1, 2, 3, 5);",
    );
    let reader = fixture.reader();
    assert_eq!(
        reader.newest().unwrap().accepted,
        6,
        "a page hands over above the holes at once"
    );
    let start = Cursor {
        accepted: 0,
        refused: 0,
    };
    let (rows, cursor) = follow(reader.as_ref(), start);
    let keys: Vec<RequestKey> = rows.iter().map(|row| row.key).collect();
    assert_eq!(keys, [4, 6].map(RequestKey::Accepted));
    assert_eq!(cursor.accepted, 6);
}
