//! Search at a million events, and what the search columns and indexes cost a commit (SPEC
//! section 10, issue 25), on both stores:
//!
//! 1. the time `receiver events list --where …` / `--contains …` takes (the store's reader, as
//!    the command calls it) with EVENTS events stored, each search once with a match and once
//!    without: the learner (`data.userId`) and learning object (`data.loId`), which have a
//!    column (SQLite) or an index (PostgreSQL) of their own, another path, and a text; goal:
//!    under a second;
//! 2. the listener's commit with and without what the search added, the store driven directly
//!    (32 tasks storing one realistic event after another, group-committed as the listener
//!    does), in rounds that alternate the variants: events/s and bytes written per event (on
//!    SQLite what the process wrote, WAL and checkpoints, from `/proc/self/io`; on PostgreSQL
//!    the WAL the server wrote, `pg_current_wal_lsn`).
//!
//! ```sh
//! cd bench && cargo run --release --no-default-features --features receiver --bin search -- \
//!     [--events 1000000] [--commit-events 40000] [--rounds 3] [--stores sqlite,postgres] [--out .]
//! ```
//!
//! `--rounds 0` measures the searches only.
//!
//! Stores and the throwaway PostgreSQL cluster live on the disk of the working directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use common::store_location::StoreLocation;
use receiver::search::{Condition, Search};
use receiver::store::{AcceptedRequest, EventFilter, NewEvent, Store as _};

/// Options.
struct Options {
    events: i64,
    commit_events: u64,
    rounds: usize,
    /// Measure the SQLite store, the PostgreSQL store.
    sqlite: bool,
    postgres: bool,
    out: Option<PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 1_000_000,
        commit_events: 40_000,
        rounds: 3,
        sqlite: true,
        postgres: true,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => options.events = value.parse().context("--events")?,
            "--commit-events" => {
                options.commit_events = value.parse().context("--commit-events")?
            }
            "--rounds" => options.rounds = value.parse().context("--rounds")?,
            "--stores" => {
                options.sqlite = value.split(',').any(|store| store == "sqlite");
                options.postgres = value.split(',').any(|store| store == "postgres");
            }
            "--out" => options.out = Some(value.into()),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(options)
}

/// What every prefilled request's headers look like (a signed Learning Manager request).
const HEADERS: &str = r#"[["host","crm.example:8080"],["content-type","application/json"],["content-length","420"],["webhook-id","msg_2Rk4bXv1q9Lm3Ts8Yd0Pa7We"],["webhook-timestamp","1764288000"],["webhook-signature","v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="],["user-agent","Adobe-Learning-Manager"]]"#;
/// Where the event's JSON starts in a prefilled body.
const BODY_PREFIX: &str = r#"{"accountId":1010,"events":["#;
/// Distinct learners and learning objects among the prefilled events.
const LEARNERS: i64 = 200_000;
const OBJECTS: i64 = 5_000;
/// Every this many events carries the rare enrolment source the "other path" search finds.
const RARE_EVERY: i64 = 100_000;

/// The event number `i` as SQL computes it (both stores): learner, learning object, name,
/// source. One formula, so the searches know what they will find.
fn learner(i: i64) -> i64 {
    4_000_000 + (i * 7919) % LEARNERS
}

fn learning_object(i: i64) -> String {
    format!("course:{}", 7_000_000 + (i * 104_729) % OBJECTS)
}

/// The SQL of one prefilled event's JSON, over a column `i` (the event's number) and `id` (its
/// 32 hex digits), written for SQLite (`||`, `printf`) or PostgreSQL (`||`, `CASE`).
fn event_sql() -> String {
    format!(
        r#"'{{"eventId":"' || id || '","eventName":"' ||
           CASE i % 3 WHEN 0 THEN 'COURSE_ENROLLMENT' WHEN 1 THEN 'COURSE_COMPLETED' ELSE 'LEARNER_PROGRESS' END ||
           '","timestamp":"2026-11-28T00:00:00.000Z","eventInfo":"1764288000000-1-2-0","data":{{"userId":' ||
           (4000000 + (i * 7919) % {LEARNERS}) || ',"loId":"course:' || (7000000 + (i * 104729) % {OBJECTS}) ||
           '","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"' ||
           CASE WHEN i % {RARE_EVERY} = 0 THEN 'TEST_ENROLL' ELSE 'ADMIN_ENROLL' END ||
           '","dateEnrolled":"2026-11-28T00:00:00.000Z"}}}}'"#
    )
}

/// Fills a new SQLite store (its layout made by the receiver) with `total` events, one per
/// request, through SQL.
async fn prefill_sqlite(db: &Path, total: i64) -> anyhow::Result<()> {
    let metrics = Arc::new(receiver::metrics::Metrics::default());
    let store = receiver::store::sqlite::SqliteStore::open(
        db,
        10_000,
        receiver::routing::Routes::default(),
        metrics,
    )?;
    store.close().await?;
    let mut connection = rusqlite::Connection::open(db)?;
    connection.execute_batch("PRAGMA journal_mode=WAL; PRAGMA cache_size=-262144;")?;
    let transaction = connection.transaction()?;
    transaction.execute(
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1),
                  e(i, id) AS (SELECT i, printf('%016x%016x', i * 2654435761 % 4294967296, i) FROM n)
             INSERT INTO requests (id, received_at_ms, method, path, headers, body, auth, account_id)
             SELECT i, 1764288000000 + i, 'POST', '/webhook', ?2,
                    CAST(?3 || {} || ']}}' AS BLOB), 'signature', 1010
             FROM e",
            event_sql()
        ),
        rusqlite::params![total, HEADERS, BODY_PREFIX],
    )?;
    transaction.execute(
        &format!(
            "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known,
                                 raw_start, raw_length, user_id, lo_id)
             SELECT 1010, substr(CAST(body AS TEXT), {start} + 13, 32), id,
                    CASE id % 3 WHEN 0 THEN 'COURSE_ENROLLMENT' WHEN 1 THEN 'COURSE_COMPLETED'
                                ELSE 'LEARNER_PROGRESS' END,
                    1764288000000, 1, {start}, length(body) - {start} - 2,
                    CAST(4000000 + (id * 7919) % {LEARNERS} AS TEXT),
                    'course:' || (7000000 + (id * 104729) % {OBJECTS})
             FROM requests",
            start = BODY_PREFIX.len(),
        ),
        [],
    )?;
    transaction.commit()?;
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    Ok(())
}

/// Fills a new PostgreSQL database (its tables made by the receiver) as [`prefill_sqlite`].
async fn prefill_postgres(url: &common::postgres::DatabaseUrl, total: i64) -> anyhow::Result<()> {
    let metrics = Arc::new(receiver::metrics::Metrics::default());
    let store = receiver::store::postgres::PostgresStore::open(
        url,
        10_000,
        receiver::routing::Routes::default(),
        metrics,
    )?;
    store.check_health().await?;
    store.close().await?;
    let (client, connection) = url.config().connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .execute(
            &format!(
                "INSERT INTO receiver_requests (id, received_at_ms, method, path, headers, body, auth, account_id)
                 SELECT i, 1764288000000 + i, 'POST', '/webhook', $1,
                        convert_to($2 || {} || ']}}', 'UTF8'), 'signature', 1010
                 FROM (SELECT i, lpad(to_hex(i * 2654435761 % 4294967296), 16, '0')
                                 || lpad(to_hex(i), 16, '0') AS id
                       FROM generate_series(1, $3::int8) AS i) AS e",
                event_sql()
            ),
            &[&HEADERS, &BODY_PREFIX, &total],
        )
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO receiver_events
                     (id, account_id, event_id, request_id, event_name, timestamp_ms, received_at_ms, known, event)
                 SELECT id, 1010, substr(json, 13, 32), id, json::json ->> 'eventName',
                        1764288000000, received_at_ms, true, json::json
                 FROM (SELECT id, received_at_ms,
                              substr(convert_from(body, 'UTF8'), {start} + 1,
                                     length(body) - {start} - 2) AS json
                       FROM receiver_requests) AS r",
                start = BODY_PREFIX.len()
            ),
            &[],
        )
        .await?;
    for sequence in ["receiver_requests_id_seq", "receiver_events_id_seq"] {
        client
            .batch_execute(&format!("SELECT setval('{sequence}', {})", total.max(1)))
            .await?;
    }
    // One statement each: VACUUM cannot run in the transaction a multi-statement query is.
    for table in ["receiver_requests", "receiver_events"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    Ok(())
}

/// One search of the report: what it asks and how many events it must find.
struct Case {
    name: &'static str,
    search: Search,
    expected: Option<usize>,
}

fn condition(text: &str) -> Condition {
    Condition::parse(text).unwrap_or_else(|error| panic!("{error}"))
}

/// The searches, with and without a match, for a store of `total` events.
fn cases(total: i64, event_id_of_middle: &str) -> Vec<Case> {
    let middle = total / 2;
    let learner_events = (1..=total)
        .filter(|i| learner(*i) == learner(middle))
        .count();
    let object_events = (1..=total)
        .filter(|i| learning_object(*i) == learning_object(middle))
        .count();
    let where_ = |text: String| Search {
        conditions: vec![condition(&text)],
        contains: Vec::new(),
    };
    let contains = |text: &str| Search {
        conditions: Vec::new(),
        contains: vec![text.to_owned()],
    };
    vec![
        Case {
            name: "--where data.userId (a learner)",
            search: where_(format!("data.userId={}", learner(middle))),
            expected: Some(learner_events),
        },
        Case {
            name: "--where data.userId, no match",
            search: where_("data.userId=999999999".to_owned()),
            expected: Some(0),
        },
        Case {
            name: "--where data.loId (a course)",
            search: where_(format!("data.loId={}", learning_object(middle))),
            expected: Some(object_events),
        },
        Case {
            name: "--where data.loId, no match",
            search: where_("data.loId=course:1".to_owned()),
            expected: Some(0),
        },
        Case {
            name: "--where data.enrollmentSource (another path, rare)",
            search: where_("data.enrollmentSource=TEST_ENROLL".to_owned()),
            expected: Some((total / RARE_EVERY) as usize),
        },
        Case {
            name: "--where data.enrollmentSource, no match",
            search: where_("data.enrollmentSource=NO_SUCH_SOURCE".to_owned()),
            expected: Some(0),
        },
        Case {
            name: "--contains an eventId",
            search: contains(event_id_of_middle),
            expected: Some(1),
        },
        Case {
            name: "--contains, no match",
            search: contains("no-such-text"),
            expected: Some(0),
        },
    ]
}

/// One search's times: the first run and the median of the rest, and the CPU the median run
/// took (this process's, and the database server's on PostgreSQL): what it would take on an
/// idle machine, whatever else runs on this one.
struct Timed {
    name: &'static str,
    found: usize,
    first_ms: f64,
    median_ms: f64,
    cpu_ms: f64,
}

/// CPU seconds of this process and, on PostgreSQL, of the server's processes.
fn cpu_now(postgres: bool) -> f64 {
    let own = bench::cpu_seconds(std::process::id());
    if postgres {
        own + bench::postgres_cpu_seconds()
    } else {
        own
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Runs every case against the store at `location` through the reader `events list` uses.
fn time_searches(location: &StoreLocation, cases: Vec<Case>) -> anyhow::Result<Vec<Timed>> {
    let postgres = matches!(location, StoreLocation::Postgres(_));
    let mut timed = Vec::new();
    for case in cases {
        let filter = EventFilter {
            search: case.search,
            ..EventFilter::default()
        };
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut found = 0;
        for _ in 0..6 {
            // A new reader each time, as each command opens one.
            let (started, cpu_before) = (Instant::now(), cpu_now(postgres));
            let reader = receiver::store::open_reader(location)?;
            found = reader.events(&filter)?.len();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            cpu.push((cpu_now(postgres) - cpu_before) * 1000.0);
        }
        if let Some(expected) = case.expected {
            anyhow::ensure!(
                found == expected,
                "{}: found {found}, expected {expected}",
                case.name
            );
        }
        timed.push(Timed {
            name: case.name,
            found,
            first_ms: times[0],
            median_ms: median(times[1..].to_vec()),
            cpu_ms: median(cpu[1..].to_vec()),
        });
    }
    Ok(timed)
}

fn search_table(store: &str, total: i64, timed: &[Timed]) -> String {
    let mut table = format!(
        "\n{store}, {total} events stored: `events list` (open, search, read the rows)\n\n\
         | search | found | first run ms | median ms (5 runs) | CPU ms (median run, 10 ms ticks) | goal < 1000 ms |\n|---|---|---|---|---|---|\n"
    );
    for one in timed {
        table.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} |\n",
            one.name,
            one.found,
            one.first_ms,
            one.median_ms,
            one.cpu_ms,
            if one.median_ms < 1000.0 {
                "met"
            } else {
                "NOT met"
            }
        ));
    }
    table
}

/// A variant of the store for the commit measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// As the receiver makes it.
    Full,
    /// Without the index of events by request.
    NoRequestIndex,
    /// Events without `userId` / `loId` (keys renamed, same bytes): nothing in the learner
    /// columns (SQLite) or the learner indexes (PostgreSQL).
    NoLearnerValues,
    /// Neither: what a commit cost before the search was added.
    Neither,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Full,
        Variant::NoRequestIndex,
        Variant::NoLearnerValues,
        Variant::Neither,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Full => "as made (learner and learning object kept, index by request)",
            Self::NoRequestIndex => "without the index by request",
            Self::NoLearnerValues => "without learner and learning object values",
            Self::Neither => "neither (the commit before search)",
        }
    }

    fn learner_values(self) -> bool {
        matches!(self, Self::Full | Self::NoRequestIndex)
    }

    fn request_index(self) -> bool {
        matches!(self, Self::Full | Self::NoLearnerValues)
    }
}

/// A realistic accepted request: one event of learner and learning object varying with `n`,
/// under keys the search reads, or (without `learner_values`) renamed to the same length.
fn request(run: &str, n: u64, learner_values: bool) -> Arc<AcceptedRequest> {
    let i = n as i64;
    let (user_key, lo_key) = if learner_values {
        ("userId", "loId")
    } else {
        ("userXd", "lXId")
    };
    let event = format!(
        r#"{{"eventId":"{run}-{n:016x}","eventName":"COURSE_COMPLETED","timestamp":"2026-11-28T00:00:00.000Z","eventInfo":"1764288000000-1-2-0","data":{{"{user_key}":{},"{lo_key}":"{}","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateCompleted":"2026-11-28T00:00:00.000Z","hasPassed":true}}}}"#,
        learner(i * 31 + 7),
        learning_object(i * 17 + 3),
    );
    let body = Bytes::from(format!("{BODY_PREFIX}{event}]}}"));
    let raw = BODY_PREFIX.len()..BODY_PREFIX.len() + event.len();
    let data: &serde_json::value::RawValue = receiver::search::FieldPath::parse("data")
        .ok()
        .and_then(|path| path.lookup(&event))
        .unwrap_or(serde_json::value::RawValue::NULL);
    Arc::new(AcceptedRequest {
        received_at_ms: verify::unix_now_ms(),
        method: "POST",
        path: "/webhook".to_owned(),
        headers_json: HEADERS.to_owned(),
        events: vec![NewEvent {
            event_id: format!("{run}-{n:016x}"),
            event_name: "COURSE_COMPLETED".to_owned(),
            timestamp_ms: 1_764_288_000_000,
            known: true,
            raw,
            user_id: receiver::search::scalar_at(data, "userId"),
            lo_id: receiver::search::scalar_at(data, "loId"),
        }],
        body,
        auth: "signature",
        account_id: 1010,
    })
}

/// Stores `total` events through `store` from 32 tasks; events per second.
async fn drive(
    store: Arc<dyn receiver::store::Store>,
    run: &str,
    total: u64,
    learner_values: bool,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (store, next, run) = (Arc::clone(&store), Arc::clone(&next), run.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                let outcome = store.accept(request(&run, n, learner_values)).await?;
                anyhow::ensure!(outcome.stored() == 1, "event {n} not stored");
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Bytes this process handed to `write` so far (`/proc/self/io`).
fn written_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("wchar: ")?.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// One variant's figures over the rounds.
#[derive(Default)]
struct CommitFigures {
    rates: Vec<f64>,
    bytes_per_event: Vec<f64>,
}

/// The SQLite commit with and without what the search added, `rounds` alternating rounds.
async fn sqlite_commits(
    dir: &Path,
    total: u64,
    rounds: usize,
) -> anyhow::Result<Vec<(Variant, CommitFigures)>> {
    let mut figures: Vec<(Variant, CommitFigures)> = Variant::ALL
        .iter()
        .map(|variant| (*variant, CommitFigures::default()))
        .collect();
    for round in 0..rounds {
        for index in 0..figures.len() {
            // Rotating the order: a trend in the machine's load favours no variant.
            let slot = (index + round) % figures.len();
            let variant = figures[slot].0;
            let db = dir.join(format!("commit-{round}-{slot}.db"));
            let metrics = Arc::new(receiver::metrics::Metrics::default());
            let store = Arc::new(receiver::store::sqlite::SqliteStore::open(
                &db,
                10_000,
                receiver::routing::Routes::default(),
                metrics,
            )?);
            if !variant.request_index() {
                rusqlite::Connection::open(&db)?.execute_batch("DROP INDEX events_by_request;")?;
            }
            let before = written_bytes();
            let rate = drive(
                store.clone(),
                &format!("s{round}{slot}"),
                total,
                variant.learner_values(),
            )
            .await?;
            store.close().await?;
            let bytes = (written_bytes() - before) / total as f64;
            println!(
                "  SQLite round {round}: {:<60} {rate:>8.0} events/s {bytes:>7.0} B/event",
                variant.label()
            );
            figures[slot].1.rates.push(rate);
            figures[slot].1.bytes_per_event.push(bytes);
            let _ = std::fs::remove_file(&db);
        }
    }
    Ok(figures)
}

/// Where the server's write-ahead log stands now.
async fn current_wal(client: &tokio_postgres::Client) -> anyhow::Result<String> {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?;
    Ok(row.get(0))
}

/// The PostgreSQL commit with and without the search's indexes. The index of events by
/// request is the retention's (layout version 3), there before the search: both variants
/// keep it.
async fn postgres_commits(
    cluster: &common::test_postgres::TestCluster,
    total: u64,
    rounds: usize,
) -> anyhow::Result<Vec<(Variant, CommitFigures)>> {
    let mut figures: Vec<(Variant, CommitFigures)> = [Variant::Full, Variant::Neither]
        .iter()
        .map(|variant| (*variant, CommitFigures::default()))
        .collect();
    for round in 0..rounds {
        for index in 0..figures.len() {
            let slot = (index + round) % figures.len();
            let variant = figures[slot].0;
            let url = cluster.create_database()?;
            let database = common::postgres::DatabaseUrl::parse(&url)?;
            let metrics = Arc::new(receiver::metrics::Metrics::default());
            let store = Arc::new(receiver::store::postgres::PostgresStore::open(
                &database,
                10_000,
                receiver::routing::Routes::default(),
                metrics,
            )?);
            store.check_health().await?;
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            if !variant.learner_values() {
                // Events without the keys would still have the expressions computed: drop
                // the indexes too, as the commit before search had neither.
                client
                    .batch_execute(
                        "DROP INDEX receiver_events_by_user; DROP INDEX receiver_events_by_lo",
                    )
                    .await?;
            }
            let before = current_wal(&client).await?;
            let rate = drive(
                store.clone(),
                &format!("p{round}{slot}"),
                total,
                variant.learner_values(),
            )
            .await?;
            let after = current_wal(&client).await?;
            let wal: f64 = client
                .query_one(
                    "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                    &[&after, &before],
                )
                .await?
                .get(0);
            store.close().await?;
            let bytes = wal / total as f64;
            println!(
                "  PostgreSQL round {round}: {:<60} {rate:>8.0} events/s {bytes:>7.0} WAL B/event",
                variant.label()
            );
            figures[slot].1.rates.push(rate);
            figures[slot].1.bytes_per_event.push(bytes);
        }
    }
    Ok(figures)
}

fn commit_table(
    store: &str,
    total: u64,
    figures: &[(Variant, CommitFigures)],
    bytes: &str,
) -> String {
    let baseline = figures
        .iter()
        .find(|(variant, _)| *variant == Variant::Neither)
        .map(|(_, figures)| {
            (
                median(figures.rates.clone()),
                median(figures.bytes_per_event.clone()),
            )
        })
        .unwrap_or((1.0, 1.0));
    let mut table = format!(
        "\n{store}: {total} realistic events per run, 32 tasks, the store driven directly (medians of the rounds)\n\n\
         | store variant | events/s | vs. before search | {bytes} per event | vs. before search |\n|---|---|---|---|---|\n"
    );
    for (variant, figures) in figures {
        let rate = median(figures.rates.clone());
        let bytes = median(figures.bytes_per_event.clone());
        table.push_str(&format!(
            "| {} | {rate:.0} | {:.3} | {bytes:.0} | {:.3} |\n",
            variant.label(),
            rate / baseline.0,
            bytes / baseline.1
        ));
    }
    table
}

/// The SQLite half of the report: searches, then commits (unless `--rounds 0`).
async fn measure_sqlite(dir: &Path, options: &Options, report: &mut String) -> anyhow::Result<()> {
    let db = dir.join("million.db");
    let filling = Instant::now();
    prefill_sqlite(&db, options.events).await?;
    println!(
        "SQLite: prefilled {} events in {:.1} s",
        options.events,
        filling.elapsed().as_secs_f64()
    );
    let middle_id: String = rusqlite::Connection::open(&db)?.query_row(
        "SELECT event_id FROM events WHERE request_id = ?1",
        [options.events / 2],
        |row| row.get(0),
    )?;
    let location = StoreLocation::Sqlite(db.clone());
    let timed = time_searches(&location, cases(options.events, &middle_id))?;
    let table = search_table("SQLite", options.events, &timed);
    println!("{table}");
    report.push_str(&table);
    let _ = std::fs::remove_file(&db);
    if options.rounds > 0 {
        let commits = sqlite_commits(dir, options.commit_events, options.rounds).await?;
        let table = commit_table("SQLite", options.commit_events, &commits, "bytes written");
        println!("{table}");
        report.push_str(&table);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let dir = tempfile::Builder::new()
            .prefix("search-bench")
            .tempdir_in(std::env::current_dir()?)?;
        let mut report = format!(
            "# Search at {} events, and what it costs a commit\n\nMeasured {} UTC, load average {}.\n",
            options.events,
            verify::timestamp::format_iso_millis(verify::unix_now_ms()),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );

        if options.sqlite {
            measure_sqlite(dir.path(), &options, &mut report).await?;
        }
        if !options.postgres {
            return anyhow::Ok(report);
        }
        // The cluster's data directory goes on the disk of the working directory.
        std::env::set_var("TMPDIR", dir.path());
        let cluster = match common::test_postgres::TestCluster::start_with_settings(&[(
            "shared_buffers",
            "256MB",
        )]) {
            Ok(cluster) => cluster,
            Err(error) => {
                let skipped = format!("\nPostgreSQL: SKIPPED, no cluster could be started: {error:#}\n");
                println!("{skipped}");
                report.push_str(&skipped);
                return anyhow::Ok(report);
            }
        };
        let url = common::postgres::DatabaseUrl::parse(&cluster.create_database()?)?;
        let filling = Instant::now();
        prefill_postgres(&url, options.events).await?;
        println!(
            "PostgreSQL: prefilled {} events in {:.1} s",
            options.events,
            filling.elapsed().as_secs_f64()
        );
        let (client, connection) = url.config().connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let middle_id: String = client
            .query_one(
                "SELECT event_id FROM receiver_events WHERE request_id = $1",
                &[&(options.events / 2)],
            )
            .await?
            .get(0);
        let location = StoreLocation::from(url.clone());
        let timed = tokio::task::spawn_blocking(move || {
            time_searches(&location, cases(options.events, &middle_id))
        })
        .await??;
        let table = search_table("PostgreSQL", options.events, &timed);
        println!("{table}");
        report.push_str(&table);

        if options.rounds > 0 {
            let commits =
                postgres_commits(&cluster, options.commit_events, options.rounds).await?;
            let table = commit_table("PostgreSQL", options.commit_events, &commits, "WAL bytes");
            println!("{table}");
            report.push_str(&table);
        }
        anyhow::Ok(report)
    })?;
    if let Some(out) = &options.out {
        let path = out.join("report-search.md");
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
