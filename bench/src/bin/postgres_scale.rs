//! Durable signed 1 KiB events per second with 1, 2 and 4 receivers on one local PostgreSQL,
//! against the limit measured in the same run: the same rows, in the same kind of batches,
//! written by the receiver's own PostgreSQL store driven directly (no HTTP, no signature
//! check), with as many store instances as there are receivers.
//!
//! ```sh
//! cd bench && cargo run --release --features receiver --bin postgres_scale -- \
//!     --receiver target/release/bench-receiver [--seconds 5] [--connections 32] [--out .]
//! ```
//!
//! The server is a throwaway cluster started from the installed PostgreSQL binaries, its data
//! directory on the disk of the working directory (fsync on: every commit is durable). Each
//! figure is measured on a fresh database. The report gives events/s, the ratio to the limit,
//! the scaling from 1 to 2 receivers, the group-commit batch sizes, transactions per batch
//! commit (one statement each: one round trip), and the CPU each process spent per event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bench::{closed_loop, cpu_seconds, event_body, postgres_cpu_seconds, Measured};
use bytes::Bytes;
use receiver::store::{AcceptedRequest, NewEvent, Store as _};
use verify::{Keyring, SignatureFile, SigningSecret};

const WARMUP: Duration = Duration::from_millis(1000);
/// Where the event's JSON starts in [`event_body`]: after `{"accountId":1010,"events":[`.
const EVENT_START: usize = r#"{"accountId":1010,"events":["#.len();

/// Options.
struct Options {
    receiver: PathBuf,
    seconds: u64,
    connections: usize,
    out: PathBuf,
    counts: Vec<usize>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        receiver: PathBuf::from("target/release/bench-receiver"),
        seconds: 5,
        connections: 32,
        out: PathBuf::from("."),
        counts: vec![1, 2, 4],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--receiver" => options.receiver = value.into(),
            "--seconds" => options.seconds = value.parse().context("--seconds")?,
            "--connections" => options.connections = value.parse().context("--connections")?,
            "--out" => options.out = value.into(),
            "--receivers" => {
                options.counts = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--receivers 1,2,4")?;
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(options)
}

/// The value of an unlabelled sample in Prometheus text.
fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Committed transactions of `database` so far (`pg_stat_database`).
async fn transactions(url: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

/// One figure: events/s, batches, CPU.
#[derive(Debug, Default, Clone)]
struct Figure {
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    commits: f64,
    requests_in_commits: f64,
    transactions: f64,
    /// CPU microseconds per event: the receivers (or the driving process), PostgreSQL.
    cpu_us_front: f64,
    cpu_us_postgres: f64,
}

impl Figure {
    fn batch(&self) -> f64 {
        self.requests_in_commits / self.commits.max(1.0)
    }

    fn transactions_per_commit(&self) -> f64 {
        self.transactions / self.commits.max(1.0)
    }
}

/// The store driven directly: `stores` instances, `connections` tasks each storing one new
/// 1 KiB event after another.
async fn limit(
    url: &str,
    stores: usize,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Figure> {
    let database = common::postgres::DatabaseUrl::parse(url)?;
    let metrics: Vec<Arc<receiver::Metrics>> = (0..stores)
        .map(|_| Arc::new(receiver::Metrics::default()))
        .collect();
    let opened: Vec<Arc<receiver::store::postgres::PostgresStore>> = metrics
        .iter()
        .map(|metrics| {
            receiver::store::postgres::PostgresStore::open(
                &database,
                receiver::config::DEFAULT_KEEP_REFUSED,
                receiver::routing::Routes::default(),
                Arc::clone(metrics),
            )
            .map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    for store in &opened {
        // Connected and the tables made before the clock starts.
        store.check_health().await?;
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let store = Arc::clone(&opened[connection % stores]);
        let (measuring, stop, stored) = (
            Arc::clone(&measuring),
            Arc::clone(&stop),
            Arc::clone(&stored),
        );
        tasks.push(tokio::spawn(async move {
            let mut sequence = 0;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let body = Bytes::from(event_body("limit", connection, sequence));
                let request = Arc::new(AcceptedRequest {
                    received_at_ms: verify::unix_now_ms(),
                    method: "POST",
                    path: "/webhook".to_owned(),
                    headers_json: r#"[["content-type","application/json"]]"#.to_owned(),
                    events: vec![NewEvent {
                        event_id: format!("bench-limit-{connection}-{sequence}"),
                        event_name: "COURSE_ENROLLMENT".to_owned(),
                        timestamp_ms: 1_764_288_000_000,
                        known: true,
                        raw: EVENT_START..body.len() - 2,
                        user_id: Some("4279332".to_owned()),
                        lo_id: Some("course:7374992".to_owned()),
                    }],
                    body,
                    auth: "signature",
                    account_id: 1010,
                });
                let outcome = store.accept(request).await?;
                if measuring.load(Ordering::Relaxed) && outcome.stored() == 1 {
                    stored.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(WARMUP).await;
    let (batch_before, transactions_before, own_before, postgres_before) = (
        batches(&metrics),
        transactions(url).await?,
        cpu_seconds(std::process::id()),
        postgres_cpu_seconds(),
    );
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (batch_after, transactions_after, own_after, postgres_after) = (
        batches(&metrics),
        transactions(url).await?,
        cpu_seconds(std::process::id()),
        postgres_cpu_seconds(),
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    for store in &opened {
        store.close().await?;
    }
    let events = stored.load(Ordering::Relaxed) as f64;
    Ok(Figure {
        events_per_second: events / elapsed,
        commits: batch_after.0 - batch_before.0,
        requests_in_commits: batch_after.1 - batch_before.1,
        transactions: (transactions_after - transactions_before) as f64,
        cpu_us_front: 1e6 * (own_after - own_before) / events.max(1.0),
        cpu_us_postgres: 1e6 * (postgres_after - postgres_before) / events.max(1.0),
        ..Figure::default()
    })
}

/// (commits, requests in them) summed over in-process stores.
fn batches(metrics: &[Arc<receiver::Metrics>]) -> (f64, f64) {
    metrics
        .iter()
        .fold((0.0, 0.0), |(commits, requests), metrics| {
            let text = metrics.render();
            (
                commits + metric_value(&text, "receiver_commit_batch_requests_count"),
                requests + metric_value(&text, "receiver_commit_batch_requests_sum"),
            )
        })
}

/// A `receiver listen` process on the database.
struct ReceiverProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_receiver(binary: &PathBuf, url: &str, signature: &str) -> anyhow::Result<ReceiverProcess> {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(binary)
        .args([
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--signature-file",
            signature,
            "--output",
            "quiet",
        ])
        .env("RECEIVER_STORE", url)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut first = String::new();
    std::io::BufReader::new(stdout).read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .with_context(|| format!("unexpected first line {first:?}"))?;
    Ok(ReceiverProcess { child, addr })
}

async fn metrics_of(addr: SocketAddr) -> anyhow::Result<String> {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(http_body_util::Full::new(Bytes::new()))?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

async fn receiver_batches(addrs: &[SocketAddr]) -> anyhow::Result<(f64, f64)> {
    let mut total = (0.0, 0.0);
    for addr in addrs {
        let text = metrics_of(*addr).await?;
        total.0 += metric_value(&text, "receiver_commit_batch_requests_count");
        total.1 += metric_value(&text, "receiver_commit_batch_requests_sum");
    }
    Ok(total)
}

/// `count` receiver processes, `connections` keep-alive connections spread over them.
async fn receivers(
    options: &Options,
    url: &str,
    count: usize,
    keyring: &Arc<Keyring>,
    signature: &str,
) -> anyhow::Result<Figure> {
    let processes: Vec<ReceiverProcess> = (0..count)
        .map(|_| spawn_receiver(&options.receiver, url, signature))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<SocketAddr> = processes.iter().map(|process| process.addr).collect();
    let duration = Duration::from_secs(options.seconds);
    let per_receiver = options.connections.div_ceil(count);
    // The load runs WARMUP + duration; the counters are read around the measured part.
    let loads: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| {
            let keyring = Arc::clone(keyring);
            let addr = *addr;
            tokio::spawn(async move {
                closed_loop(
                    addr,
                    keyring,
                    &format!("r{count}-{index}"),
                    per_receiver,
                    WARMUP,
                    duration,
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(WARMUP).await;
    let pids: Vec<u32> = processes.iter().map(|process| process.child.id()).collect();
    let front_before: f64 = pids.iter().map(|pid| cpu_seconds(*pid)).sum();
    let postgres_before = postgres_cpu_seconds();
    let transactions_before = transactions(url).await?;
    let batch_before = receiver_batches(&addrs).await?;
    tokio::time::sleep(duration).await;
    let front_after: f64 = pids.iter().map(|pid| cpu_seconds(*pid)).sum();
    let postgres_after = postgres_cpu_seconds();
    let transactions_after = transactions(url).await?;
    let batch_after = receiver_batches(&addrs).await?;
    let mut measured = Measured::default();
    for load in loads {
        let part = load.await??;
        measured.ok += part.ok;
        measured.failed += part.failed;
        measured.seconds = measured.seconds.max(part.seconds);
        measured.latencies_us.extend(part.latencies_us);
    }
    measured.latencies_us.sort_unstable();
    anyhow::ensure!(measured.failed == 0, "{} requests failed", measured.failed);
    let events = measured.ok as f64;
    Ok(Figure {
        events_per_second: measured.rate(),
        p50_ms: measured.percentile_ms(0.5),
        p99_ms: measured.percentile_ms(0.99),
        commits: batch_after.0 - batch_before.0,
        requests_in_commits: batch_after.1 - batch_before.1,
        transactions: (transactions_after - transactions_before) as f64,
        cpu_us_front: 1e6 * (front_after - front_before) / events.max(1.0),
        cpu_us_postgres: 1e6 * (postgres_after - postgres_before) / events.max(1.0),
    })
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    // The cluster's data directory goes on the disk of the working directory, not a tmpfs.
    let work = tempfile::Builder::new()
        .prefix("postgres-bench")
        .tempdir_in(std::env::current_dir()?)?;
    std::env::set_var("TMPDIR", work.path());
    let cluster = common::test_postgres::TestCluster::start_with_settings(&[
        ("max_connections", "200"),
        ("shared_buffers", "256MB"),
    ])
    .context("starting a PostgreSQL cluster (install postgresql)")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let secret = SigningSecret::generate();
    let signature_path = work.path().join("signature.json");
    std::fs::write(
        &signature_path,
        SignatureFile::new(
            "wh_bench",
            "bench",
            &verify::Scheme::default(),
            &secret,
            verify::unix_now(),
        )
        .to_json_pretty(),
    )?;
    let signature = signature_path.display().to_string();
    let keyring = Arc::new(Keyring::single(secret));
    let mut rows = Vec::new();
    runtime.block_on(async {
        for &count in &options.counts {
            let limit_url = cluster.create_database()?;
            let baseline = limit(&limit_url, count, options.connections, options.seconds).await?;
            let url = cluster.create_database()?;
            let figure = receivers(&options, &url, count, &keyring, &signature).await?;
            println!("{}", table_row(count, &figure, &baseline));
            rows.push((count, figure, baseline));
        }
        anyhow::Ok(())
    })?;
    let report = render(&options, &rows);
    let path = options.out.join("report-postgres.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("{report}");
    drop(cluster);
    Ok(())
}

/// One line of the report's table.
fn table_row(count: usize, figure: &Figure, baseline: &Figure) -> String {
    format!(
        "| {count} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0}% | {:.1} / {:.1} | {:.2} | {:.0} | {:.0} | {:.0}, {:.0} |",
        figure.events_per_second,
        figure.p50_ms,
        figure.p99_ms,
        baseline.events_per_second,
        100.0 * figure.events_per_second / baseline.events_per_second,
        figure.batch(),
        baseline.batch(),
        figure.transactions_per_commit(),
        figure.cpu_us_front,
        figure.cpu_us_postgres,
        baseline.cpu_us_front,
        baseline.cpu_us_postgres,
    )
}

fn render(options: &Options, rows: &[(usize, Figure, Figure)]) -> String {
    let mut out = String::new();
    out.push_str("# Receivers on one PostgreSQL: durable signed 1 KiB events/s\n\n");
    out.push_str(&format!(
        "{} keep-alive connections in all (closed loop), {} s measured after {} ms warm-up, one new ~{} B signed event per request; a fresh database per figure on a local cluster (fsync on). Limit: the receiver's PostgreSQL store driven directly with the same rows, by as many store instances as receivers and the same number of concurrent requests (no HTTP, no signature check). Machine: {} cores, load average {}.\n\n",
        options.connections,
        options.seconds,
        WARMUP.as_millis(),
        event_body("r", 0, 0).len(),
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    ));
    out.push_str("| receivers | events/s | p50 ms | p99 ms | limit events/s | % of limit | requests per commit (receivers / limit) | transactions per commit | CPU µs/event receivers | CPU µs/event PostgreSQL | limit: CPU µs/event driver, PostgreSQL |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (count, figure, baseline) in rows {
        out.push_str(&table_row(*count, figure, baseline));
        out.push('\n');
    }
    let rate = |count: usize| {
        rows.iter()
            .find(|(n, _, _)| *n == count)
            .map(|(_, figure, _)| figure.events_per_second)
    };
    if let (Some(one), Some(two)) = (rate(1), rate(2)) {
        let limit_one = rows
            .iter()
            .find(|(n, _, _)| *n == 1)
            .map_or(f64::NAN, |(_, _, b)| b.events_per_second);
        out.push_str(&format!(
            "\nGoals: one receiver ≥ 50% of the limit: {:.0}% ({}); two receivers ≥ 1.6× one: {:.2}× ({}).\n",
            100.0 * one / limit_one,
            if one >= 0.5 * limit_one { "met" } else { "not met" },
            two / one,
            if two >= 1.6 * one { "met" } else { "not met" },
        ));
    }
    out.push_str("\nEach batch is one statement in its own transaction (autocommit): one round trip per commit. Transactions per commit come from `pg_stat_database`, whose counters the server publishes with a delay of up to a second, hence values a little off 1.\n");
    out
}
