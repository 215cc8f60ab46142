//! The inspector's cost and speed (SPEC section 8), two measurements in one run:
//!
//! 1. the listener's durable events/s with the inspector open and streaming (as an open
//!    browser tab does: the list page with its overview, the list's live stream and the
//!    overview's) against the same receiver with `--ui off`, ROUNDS times each, in
//!    alternating order so drift hits both alike; the ratio of the medians (goal: ≥ 0.95);
//! 2. the list page's time to first byte with TOTAL events stored (one event per request, a
//!    few refusals among them): the first page, a deep page, a filter that matches little,
//!    the Data filter (a learner, none), and an overview of a range holding every request,
//!    against the stylesheet served by the same server as the baseline (goal: < 100 ms); on a
//!    SQLite store, then on a PostgreSQL store (a throwaway cluster; skipped, loudly, without
//!    PostgreSQL's binaries).
//!
//! ```sh
//! cd bench && cargo run --release --bin inspector -- [SECONDS] [CONNECTIONS] [ROUNDS] [TOTAL]
//! ```
//!
//! `ROUNDS` 0 skips the first measurement.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bench::closed_loop;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use verify::{Authentication, Keyring, SigningSecret};

const WARMUP: Duration = Duration::from_millis(500);
const TOKEN: &str = "bench-token-0123456789";

/// A receiver in process, with its inspector unless `ui` is false.
struct Running {
    addr: SocketAddr,
    ui: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

async fn start(
    store: impl Into<common::store_location::StoreLocation>,
    keyring: &Keyring,
    ui: bool,
) -> anyhow::Result<Running> {
    let mut config = receiver::Config::for_tests(store);
    config.authentication = Authentication::Signature(vec![keyring.clone()]);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiver = receiver::Receiver::start(config)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut ui_addr = None;
    if ui {
        let ui_listener = TcpListener::bind("127.0.0.1:0").await?;
        ui_addr = Some(ui_listener.local_addr()?);
        let settings = receiver.inspector_settings(
            common::web::Token::given(TOKEN)?,
            format!("http://{addr}/webhook"),
            common::target_guard::TargetGuard::default(),
        );
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(receiver::inspector::serve(
            ui_listener,
            settings,
            async move {
                let _ = stopped.changed().await;
            },
        )));
    }
    let mut stopped = stopped;
    tasks.push(tokio::spawn(receiver.serve(listener, async move {
        let _ = stopped.changed().await;
    })));
    Ok(Running {
        addr,
        ui: ui_addr,
        stop,
        tasks,
    })
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

/// Sends `GET path` with the token and returns the time to the first byte of the answer and
/// the whole answer.
async fn fetch(ui: SocketAddr, path: &str) -> anyhow::Result<(Duration, Vec<u8>)> {
    let mut stream = TcpStream::connect(ui).await?;
    stream.set_nodelay(true)?;
    let separator = if path.contains('?') { '&' } else { '?' };
    let request = format!(
        "GET {path}{separator}token={TOKEN} HTTP/1.1\r\nHost: {ui}\r\nConnection: close\r\n\r\n"
    );
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await?;
    let ttfb = started.elapsed();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    let mut all = first.to_vec();
    all.extend(rest);
    Ok((ttfb, all))
}

/// Reads the live stream at `path` until told to stop, counting the bytes, as an open tab
/// would.
async fn follow_stream(ui: SocketAddr, path: &str, bytes: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(ui).await?;
    let request = format!(
        "GET {path}?token={TOKEN} HTTP/1.1\r\nHost: {ui}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        bytes.fetch_add(read as u64, Ordering::Relaxed);
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(mut values: Vec<f64>, fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * fraction).round() as usize]
}

/// Throughput with and without the inspector, alternating.
async fn throughput(seconds: u64, connections: usize, rounds: usize) -> anyhow::Result<()> {
    let keyring = Arc::new(Keyring::single(SigningSecret::generate()));
    let dir = tempfile::Builder::new()
        .prefix("inspector-bench")
        .tempdir_in(std::env::current_dir()?)?;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut streamed = 0;
    for round in 0..rounds {
        // Which goes first alternates, so a trend in the machine's load favours neither.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for ui in order {
            let db = dir.path().join(format!("r{round}-{ui}.db"));
            let running = start(db.as_path(), &keyring, ui).await?;
            let bytes = Arc::new(AtomicU64::new(0));
            let mut followers = Vec::new();
            if let Some(ui) = running.ui {
                // The tab opened the list page (with its overview) and follows both streams.
                fetch(ui, "/").await?;
                for path in ["/stream", "/overview/stream"] {
                    followers.push(tokio::spawn(follow_stream(ui, path, Arc::clone(&bytes))));
                }
            }
            let measured = closed_loop(
                running.addr,
                Arc::clone(&keyring),
                &format!("r{round}{ui}"),
                connections,
                WARMUP,
                Duration::from_secs(seconds),
            )
            .await?;
            let rate = measured.rate();
            println!(
                "  round {round} inspector {:<3} {rate:>8.0} events/s  p99 {:>6.2} ms{}",
                if ui { "on" } else { "off" },
                measured.percentile_ms(0.99),
                if ui {
                    format!(
                        "  (stream carried {} KiB)",
                        bytes.load(Ordering::Relaxed) / 1024
                    )
                } else {
                    String::new()
                }
            );
            if ui {
                streamed += bytes.load(Ordering::Relaxed);
                on.push(rate);
            } else {
                off.push(rate);
            }
            running.stop().await?;
            for follower in followers {
                follower.abort();
            }
        }
    }
    let pairs: Vec<f64> = on.iter().zip(&off).map(|(on, off)| on / off).collect();
    let (low, high) = pairs
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), ratio| {
            (low.min(*ratio), high.max(*ratio))
        });
    let (off, on) = (median(off), median(on));
    println!(
        "listener durable events/s, median of {rounds}: --ui off {off:.0}, inspector streaming {on:.0}: ratio {:.3} (goal: at least 0.95; per round {low:.2} to {high:.2}); streams carried {} KiB",
        on / off,
        streamed / 1024
    );
    Ok(())
}

/// The body of every prefilled request: this, the event id (32 hex digits), [`BODY_MIDDLE`],
/// the learner ([`learner`]), then [`BODY_REST`].
const BODY_PREFIX: &str = r#"{"accountId":1010,"events":[{"eventId":""#;
/// Between a prefilled body's event id and its learner.
const BODY_MIDDLE: &str = r#"","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-28T00:00:00.000Z","eventInfo":"1764288000000-1-2-0","data":{"userId":"#;
/// The rest of a prefilled body, after its learner.
const BODY_REST: &str = r#","loId":"course:7374992","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateEnrolled":"2026-11-28T00:00:00.000Z"}}]}"#;
/// Distinct learners among the prefilled requests: each has TOTAL / LEARNERS of them.
const LEARNERS: i64 = 200_000;

/// The learner of prefilled request `i` (SQL computes the same: `4000000 + i % 200000`).
fn learner(i: i64) -> i64 {
    4_000_000 + i % LEARNERS
}

/// Fills a store with `total` events, one per request, and a refusal every 1000 requests,
/// through SQL (the receiver made the schema).
async fn prefill(db: &std::path::Path, total: i64) -> anyhow::Result<()> {
    let metrics = Arc::new(receiver::metrics::Metrics::default());
    let store = receiver::store::sqlite::SqliteStore::open(
        db,
        10_000,
        receiver::routing::Routes::default(),
        metrics,
    )?;
    receiver::store::Store::close(&store).await?;
    let mut connection = rusqlite::Connection::open(db)?;
    connection.execute_batch("PRAGMA journal_mode=WAL; PRAGMA cache_size=-262144;")?;
    let transaction = connection.transaction()?;
    transaction.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO requests (id, received_at_ms, method, path, headers, body, auth, account_id)
         SELECT i, 1764288000000 + i, 'POST', '/webhook',
                '[[\"content-type\",\"application/json\"]]',
                CAST(?2 || printf('%032x', i) || ?3 || (4000000 + i % ?5) || ?4 AS BLOB), 'none', 1010
         FROM n",
        rusqlite::params![total, BODY_PREFIX, BODY_MIDDLE, BODY_REST, LEARNERS],
    )?;
    transaction.execute(
        "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length, user_id, lo_id)
         SELECT 1010, printf('%032x', id), id, 'COURSE_ENROLLMENT', 1764288000000, 1, ?1, length(body) - ?1 - 2,
                CAST(4000000 + id % ?2 AS TEXT), 'course:7374992'
         FROM requests",
        rusqlite::params![BODY_PREFIX.len() - r#"{"eventId":""#.len(), LEARNERS],
    )?;
    transaction.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO refused_requests (received_at_ms, method, path, headers, body, status, reason)
         SELECT 1764288000000 + i * 1000, 'POST', '/webhook', '[]', CAST('{}' AS BLOB), 401, 'no_matching_signature'
         FROM n",
        [total / 1000],
    )?;
    transaction.commit()?;
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// Time to first byte of list pages over a SQLite store, then a PostgreSQL one, of `total`
/// events.
async fn time_to_first_byte(total: i64) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("inspector-ttfb")
        .tempdir_in(std::env::current_dir()?)?;
    let db = dir.path().join("million.db");
    let filling = Instant::now();
    prefill(&db, total).await?;
    prefilled("SQLite", total, filling);
    pages_on(db.as_path(), total).await?;

    // The cluster's data directory goes on the disk of the working directory, not a tmpfs.
    std::env::set_var("TMPDIR", dir.path());
    let cluster = match common::test_postgres::TestCluster::start_with_settings(&[(
        "shared_buffers",
        "256MB",
    )]) {
        Ok(cluster) => cluster,
        Err(error) => {
            println!("PostgreSQL: SKIPPED, no cluster could be started: {error:#}");
            return Ok(());
        }
    };
    let url = common::postgres::DatabaseUrl::parse(&cluster.create_database()?)?;
    let filling = Instant::now();
    prefill_postgres(&url, total).await?;
    prefilled("PostgreSQL", total, filling);
    pages_on(url, total).await
}

/// Says how long filling `store` with `total` events took since `filling`.
fn prefilled(store: &str, total: i64, filling: Instant) {
    println!(
        "{store}: prefilled {total} events in {total} requests (+{} refused) in {:.1} s",
        total / 1000,
        filling.elapsed().as_secs_f64()
    );
}

/// Fills a PostgreSQL store as [`prefill`] fills a SQLite one.
async fn prefill_postgres(url: &common::postgres::DatabaseUrl, total: i64) -> anyhow::Result<()> {
    // The receiver makes its tables at its first write (here: a health check).
    let metrics = Arc::new(receiver::metrics::Metrics::default());
    let store = receiver::store::postgres::PostgresStore::open(
        url,
        10_000,
        receiver::routing::Routes::default(),
        metrics,
    )?;
    receiver::store::Store::check_health(&store).await?;
    receiver::store::Store::close(&store).await?;
    let (client, connection) = url.config().connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO receiver_requests (id, received_at_ms, method, path, headers, body, auth, account_id)
             SELECT i, 1764288000000 + i, 'POST', '/webhook', '[[\"content-type\",\"application/json\"]]',
                    convert_to($1 || lpad(to_hex(i), 32, '0') || $2 || (4000000 + i % $5) || $3, 'UTF8'),
                    'none', 1010
             FROM generate_series(1, $4::int8) AS i",
            &[&BODY_PREFIX, &BODY_MIDDLE, &BODY_REST, &total, &LEARNERS],
        )
        .await?;
    // Each event's JSON is its slice of the body, as the receiver stores it.
    let start = i32::try_from(BODY_PREFIX.len() - r#"{"eventId":""#.len())?;
    client
        .execute(
            "INSERT INTO receiver_events
                 (account_id, event_id, request_id, event_name, timestamp_ms, received_at_ms, known, event)
             SELECT 1010, lpad(to_hex(id), 32, '0'), id, 'COURSE_ENROLLMENT', 1764288000000,
                    received_at_ms, true,
                    substr(convert_from(body, 'UTF8'), $1 + 1, length(body) - $1 - 2)::json
             FROM receiver_requests",
            &[&start],
        )
        .await?;
    client
        .execute(
            "INSERT INTO receiver_refused_requests (received_at_ms, method, path, headers, body, status, reason)
             SELECT 1764288000000 + i * 1000, 'POST', '/webhook', '[]', '\\x7b7d', 401, 'no_matching_signature'
             FROM generate_series(1, $1::int8) AS i",
            &[&(total / 1000)],
        )
        .await?;
    client
        .batch_execute(
            "SELECT setval('receiver_requests_id_seq', (SELECT MAX(id) FROM receiver_requests));
             SELECT setval('receiver_events_id_seq', (SELECT MAX(id) FROM receiver_events));",
        )
        .await?;
    // One statement each: VACUUM cannot run in the transaction a multi-statement query is.
    for table in [
        "receiver_requests",
        "receiver_events",
        "receiver_refused_requests",
    ] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    Ok(())
}

/// Time to first byte of list pages of a store holding `total` events.
async fn pages_on(
    store: impl Into<common::store_location::StoreLocation>,
    total: i64,
) -> anyhow::Result<()> {
    let keyring = Keyring::single(SigningSecret::generate());
    let running = start(store, &keyring, true).await?;
    let ui = running.ui.context("the inspector runs")?;
    let middle = total / 2;
    let pages = [
        (
            "stylesheet (baseline, no store read)",
            "/assets/web.css".to_owned(),
        ),
        ("list, first page (50 rows)", "/".to_owned()),
        (
            "list, a page in the middle",
            format!("/?before={middle}.{}", middle / 1000),
        ),
        ("list, 500 rows", "/?limit=500".to_owned()),
        (
            "list, filter matching nothing (bounded walk)",
            "/?event_name=COURSE_COMPLETED".to_owned(),
        ),
        ("list, account filter", "/?account=1010".to_owned()),
        (
            "list, Data userId= a learner (TOTAL/200 000 requests)",
            format!("/?data=userId%3D{}", learner(middle)),
        ),
        (
            "list, Data userId= nobody (the whole table read)",
            "/?data=userId%3D1".to_owned(),
        ),
        (
            "list, Data another path, nothing (bounded walk)",
            "/?data=enrollmentSource%3DNONE".to_owned(),
        ),
        (
            "overview of a chosen hour holding every request",
            "/?range_from=2025-11-28T00:00:00Z&range_to=2025-11-28T01:00:00Z&limit=1".to_owned(),
        ),
        ("detail of one request", format!("/requests/a{middle}")),
    ];
    println!("time to first byte, {total} events stored (20 requests each):");
    for (name, path) in pages {
        let mut times = Vec::new();
        for _ in 0..20 {
            let (ttfb, answer) = fetch(ui, &path).await?;
            anyhow::ensure!(
                answer.starts_with(b"HTTP/1.1 200"),
                "{path} did not answer 200"
            );
            times.push(ttfb.as_secs_f64() * 1000.0);
        }
        println!(
            "  {name:<46} median {:>7.2} ms  p95 {:>7.2} ms{}",
            median(times.clone()),
            percentile(times.clone(), 0.95),
            if path == "/" {
                format!(
                    "   (goal: under 100 ms: {})",
                    if median(times) < 100.0 {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            } else {
                String::new()
            }
        );
    }
    running.stop().await
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut next = |name: &str, default: u64| -> anyhow::Result<u64> {
        args.next()
            .map_or(Ok(default), |text| text.parse())
            .with_context(|| name.to_owned())
    };
    let seconds = next("SECONDS", 5)?;
    let connections = next("CONNECTIONS", 32)? as usize;
    let rounds = next("ROUNDS", 3)? as usize;
    let total = next("TOTAL", 1_000_000)? as i64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        println!(
            "inspector: {connections} connections, {seconds} s per run, {rounds} rounds of --ui off / on"
        );
        if rounds > 0 {
            throughput(seconds, connections, rounds).await?;
        }
        time_to_first_byte(total).await
    })
}
