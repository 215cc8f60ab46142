//! The listener's durable events/s while its retention prunes a store of a million old events,
//! against the same listener on the same store without a retention, in the same run; the
//! longest a prune batch held the store (every commit waits that long at most); and the cost
//! of the dedupe keys on the commit path (a million keys against none).
//!
//! ```sh
//! cd bench && cargo run --release --no-default-features --features receiver --bin retention -- \
//!     [SECONDS] [CONNECTIONS] [ROUNDS] [TOTAL]          # defaults: 4 32 8 1000000
//! ```
//!
//! Three copies of one store of TOTAL requests (one ~1 KiB event each) received 60 days ago:
//! `kept` (served without a retention: the baseline), `pruned` (served with `--retain 30d`, so
//! every prefilled request is past it and the pruner works its backlog off while the load
//! runs; the backlog outlasts the run), `keys` (served without a retention, holding TOTAL
//! dedupe keys as a retention with a long dedupe window leaves them). Rounds alternate the
//! order of the three, so a trend in the machine's load favours none. The receiver and the
//! closed-loop load generator run in this process, as in `inspector.rs`.
//!
//! On a machine shared with other work the rates swing from round to round, so the report
//! also gives what each stored event cost the store, which other processes disturb far less:
//! CPU of the writer thread (where a prune batch runs too) and of the checkpointer, and bytes
//! written to disk (the WAL and its checkpoints), per event stored in the round.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bench::closed_loop;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use receiver::retention::Retention;
use tokio::net::{TcpListener, TcpStream};
use verify::{Authentication, Keyring, SigningSecret};

/// Time the load runs before measuring starts.
const WARMUP: Duration = Duration::from_millis(500);
/// How long ago the prefilled requests arrived.
const PREFILLED_AGE_MS: i64 = 60 * 86_400_000;
/// The pruning arm's retention: every prefilled request is past it.
const RETAIN: Duration = Duration::from_secs(30 * 86_400);

/// The body of every prefilled request: this, the event id (32 hex digits), then [`BODY_REST`]
/// (about 1 KiB in all, as the load's events).
const BODY_PREFIX: &str = r#"{"accountId":1010,"events":[{"eventId":""#;
const BODY_REST: &str = r#"","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-28T00:00:00.000Z","eventInfo":"1764288000000-1-2-0","data":{"userId":4279332,"loId":"course:7374992","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateEnrolled":"2026-11-28T00:00:00.000Z","note":""#;
const BODY_END: &str = r#""}}]}"#;

/// Fills a new store at `db` with `total` requests of one event each, received
/// [`PREFILLED_AGE_MS`] ago, through SQL (the receiver makes the schema).
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
    let received = verify::unix_now_ms() - PREFILLED_AGE_MS;
    let rest = format!("{BODY_REST}{}{BODY_END}", "x".repeat(bench::PADDING));
    let transaction = connection.transaction()?;
    transaction.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO requests (id, received_at_ms, method, path, headers, body, auth, account_id)
         SELECT i, ?4 + i, 'POST', '/webhook', '[[\"content-type\",\"application/json\"]]',
                CAST(?2 || lower(hex(randomblob(16))) || ?3 AS BLOB), 'signature', 1010
         FROM n",
        rusqlite::params![total, BODY_PREFIX, rest, received],
    )?;
    // Each event's JSON is its body less the envelope around it.
    let event_start = BODY_PREFIX.len() - r#"{"eventId":""#.len();
    transaction.execute(
        "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length)
         SELECT 1010, substr(CAST(body AS TEXT), ?1 + 1, 32), id, 'COURSE_ENROLLMENT',
                1764288000000, 1, ?2, length(body) - ?2 - 2
         FROM requests",
        rusqlite::params![BODY_PREFIX.len(), event_start],
    )?;
    transaction.commit()?;
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// Adds `total` dedupe keys of random ids, received now, to the store at `db`.
fn add_keys(db: &std::path::Path, total: i64) -> anyhow::Result<()> {
    let mut connection = rusqlite::Connection::open(db)?;
    connection.execute_batch("PRAGMA cache_size=-262144;")?;
    let transaction = connection.transaction()?;
    transaction.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO dedupe_keys (account_id, event_id, received_at_ms)
         SELECT 1010, lower(hex(randomblob(16))), ?2 FROM n",
        rusqlite::params![total, verify::unix_now_ms()],
    )?;
    transaction.commit()?;
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// A receiver serving in this process.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(
    db: &std::path::Path,
    keyring: &Keyring,
    retention: Retention,
) -> anyhow::Result<Running> {
    let mut config = receiver::Config::for_tests(db);
    config.authentication = Authentication::Signature(vec![keyring.clone()]);
    config.retention = retention;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(receiver::run(listener, config, async move {
        let _ = stopped.await;
    }));
    Ok(Running { addr, stop, server })
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await?
    }
}

/// Reads `GET /metrics` over a fresh connection.
async fn metrics_text(addr: SocketAddr) -> anyhow::Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The value of an unlabelled sample.
fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The three stores served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arm {
    Kept,
    Pruned,
    Keys,
}

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::Kept => "kept",
            Arm::Pruned => "pruned",
            Arm::Keys => "keys",
        }
    }
}

/// What one round of one arm measured.
#[derive(Default)]
struct Round {
    rate: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Pruning arm: requests pruned, batches, the longest batch and the time batches held
    /// the store in all.
    pruned: f64,
    batches: f64,
    /// Batches that held the store 50 ms or less.
    batches_within_50_ms: f64,
    longest_batch_ms: f64,
    held_seconds: f64,
    /// Per event stored: CPU microseconds of the writer and of the checkpointer threads,
    /// and KiB written to disk by the process.
    writer_us: f64,
    checkpointer_us: f64,
    written_kib: f64,
}

/// Bytes this process has written to disk so far (`/proc/self/io`).
fn written_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("write_bytes: ")?.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut next = |name: &str, default: u64| -> anyhow::Result<u64> {
        args.next()
            .map_or(Ok(default), |value| value.parse())
            .with_context(|| name.to_owned())
    };
    let seconds = next("SECONDS", 4)?;
    let connections = usize::try_from(next("CONNECTIONS", 32)?)?;
    let rounds = usize::try_from(next("ROUNDS", 8)?)?;
    let total = i64::try_from(next("TOTAL", 1_000_000)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(seconds, connections, rounds, total))
}

async fn run(seconds: u64, connections: usize, rounds: usize, total: i64) -> anyhow::Result<()> {
    let keyring = Keyring::single(SigningSecret::generate());
    let dir = tempfile::Builder::new()
        .prefix("retention-bench")
        .tempdir_in(std::env::current_dir()?)?;
    let path = |arm: Arm| dir.path().join(format!("{}.db", arm.name()));
    let filling = Instant::now();
    prefill(&path(Arm::Kept), total).await?;
    std::fs::copy(path(Arm::Kept), path(Arm::Pruned))?;
    std::fs::copy(path(Arm::Kept), path(Arm::Keys))?;
    add_keys(&path(Arm::Keys), total)?;
    println!(
        "prefilled three stores of {total} requests (one ~1 KiB event each, received 60 days ago), \
         {total} dedupe keys in `keys`, in {:.0} s",
        filling.elapsed().as_secs_f64()
    );
    println!(
        "{rounds} rounds of {seconds} s at {connections} connections; `pruned` serves with --retain 30d"
    );
    let mut results: Vec<(Arm, Round)> = Vec::new();
    for round in 0..rounds {
        let mut order = [Arm::Kept, Arm::Pruned, Arm::Keys];
        order.rotate_left(round % 3);
        if round % 2 == 1 {
            order.reverse();
        }
        for arm in order {
            let retention = match arm {
                Arm::Pruned => Retention {
                    retain: Some(RETAIN),
                    ..Retention::default()
                },
                Arm::Kept | Arm::Keys => Retention::default(),
            };
            let written_before = written_bytes();
            let running = start(&path(arm), &keyring, retention).await?;
            let measured = closed_loop(
                running.addr,
                Arc::new(keyring.clone()),
                &format!("r{round}{}", arm.name()),
                connections,
                WARMUP,
                Duration::from_secs(seconds),
            )
            .await?;
            let metrics = metrics_text(running.addr).await?;
            // The store's threads of this round (the previous rounds' ended with their store);
            // thread names are cut to 15 bytes.
            let threads = bench::cpu_seconds_by_thread(std::process::id());
            let written = written_bytes() - written_before;
            running.stop().await?;
            let stored = metric_value(&metrics, "receiver_events_stored_total").max(1.0);
            let per_event = |value: f64| value / stored;
            let result = Round {
                rate: measured.rate(),
                p99_ms: measured.percentile_ms(0.99),
                max_ms: measured.percentile_ms(1.0),
                pruned: metric_value(&metrics, "receiver_pruned_requests_total"),
                batches: metric_value(&metrics, "receiver_prune_batch_seconds_count"),
                batches_within_50_ms: metric_value(
                    &metrics,
                    "receiver_prune_batch_seconds_bucket{le=\"0.05\"}",
                ),
                longest_batch_ms: 1000.0
                    * metric_value(&metrics, "receiver_prune_longest_batch_seconds"),
                held_seconds: metric_value(&metrics, "receiver_prune_batch_seconds_sum"),
                writer_us: per_event(1e6 * threads.get("store-writer").copied().unwrap_or(0.0)),
                checkpointer_us: per_event(
                    1e6 * threads.get("store-checkpoin").copied().unwrap_or(0.0),
                ),
                written_kib: per_event(written / 1024.0),
            };
            println!(
                "  round {round} {:<6} {:>8.0} events/s  p99 {:>6.2} ms  max {:>7.2} ms  per event: writer {:.1} µs, checkpointer {:.1} µs, {:.1} KiB written{}",
                arm.name(),
                result.rate,
                result.p99_ms,
                result.max_ms,
                result.writer_us,
                result.checkpointer_us,
                result.written_kib,
                if arm == Arm::Pruned {
                    format!(
                        "  pruned {:.0} requests in {:.0} batches, longest {:.1} ms, {:.1}% of the time",
                        result.pruned,
                        result.batches,
                        result.longest_batch_ms,
                        100.0 * result.held_seconds / (seconds as f64 + WARMUP.as_secs_f64())
                    )
                } else {
                    String::new()
                }
            );
            if measured.failed > 0 {
                anyhow::bail!(
                    "{} requests failed in round {round} ({arm:?})",
                    measured.failed
                );
            }
            results.push((arm, result));
        }
    }
    let of = |wanted: Arm| -> Vec<&Round> {
        results
            .iter()
            .filter(|(arm, _)| *arm == wanted)
            .map(|(_, round)| round)
            .collect()
    };
    let rates = |wanted: Arm| median(of(wanted).iter().map(|round| round.rate).collect());
    let (kept, pruned, keys) = (rates(Arm::Kept), rates(Arm::Pruned), rates(Arm::Keys));
    let per_round: Vec<f64> = of(Arm::Pruned)
        .iter()
        .zip(of(Arm::Kept))
        .map(|(pruned, kept)| pruned.rate / kept.rate)
        .collect();
    let (low, high) = per_round
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), ratio| {
            (low.min(*ratio), high.max(*ratio))
        });
    let longest = of(Arm::Pruned)
        .iter()
        .map(|round| round.longest_batch_ms)
        .fold(0.0, f64::max);
    let pruned_total: f64 = of(Arm::Pruned).iter().map(|round| round.pruned).sum();
    let batches: f64 = of(Arm::Pruned).iter().map(|round| round.batches).sum();
    let within: f64 = of(Arm::Pruned)
        .iter()
        .map(|round| round.batches_within_50_ms)
        .sum();
    let pruning_seconds = rounds as f64 * (seconds as f64 + WARMUP.as_secs_f64());
    let held: f64 = of(Arm::Pruned).iter().map(|round| round.held_seconds).sum();
    println!(
        "listener durable events/s, median of {rounds}: without retention {kept:.0}, while \
         pruning {pruned:.0}: ratio {:.3} (goal: at least 0.9); per round {low:.2} to \
         {high:.2}, median {:.3}",
        pruned / kept,
        median(per_round.clone())
    );
    println!(
        "pruning: {pruned_total:.0} requests ({:.0}/s) in {batches:.0} batches, {:.1} ms per \
         batch on average, {within:.0} of them within 50 ms, longest {longest:.1} ms (goal: at \
         most 50 ms)",
        pruned_total / pruning_seconds,
        1000.0 * held / batches.max(1.0)
    );
    let cost = |wanted: Arm| {
        let rounds = of(wanted);
        (
            median(rounds.iter().map(|round| round.writer_us).collect()),
            median(rounds.iter().map(|round| round.checkpointer_us).collect()),
            median(rounds.iter().map(|round| round.written_kib).collect()),
        )
    };
    for arm in [Arm::Kept, Arm::Pruned, Arm::Keys] {
        let (writer, checkpointer, written) = cost(arm);
        println!(
            "per event stored ({}, median of {rounds}): writer {writer:.1} µs, checkpointer \
             {checkpointer:.1} µs, {written:.1} KiB written",
            arm.name()
        );
    }
    let (kept_writer, kept_checkpointer, kept_written) = cost(Arm::Kept);
    let (pruned_writer, pruned_checkpointer, pruned_written) = cost(Arm::Pruned);
    println!(
        "store cost per event while pruning against without: writer {:.2}, writer and \
         checkpointer {:.2}, bytes written {:.2} (the pruning's share rides on each event \
         stored)",
        pruned_writer / kept_writer,
        (pruned_writer + pruned_checkpointer) / (kept_writer + kept_checkpointer),
        pruned_written / kept_written
    );
    println!(
        "commit path with {total} dedupe keys: {keys:.0} events/s against {kept:.0} with none: \
         ratio {:.3}",
        keys / kept
    );
    Ok(())
}
