//! The sender's delivery engine on PostgreSQL (many `sender run` workers, one database)
//! against the SQLite engine, in the same run: deliveries per second with 1 and 3 worker
//! processes, strict order (`--parallel 1`) and relaxed (`--parallel 16`), round trips to the
//! database per delivery, and CPU per delivery of each process (workers and the database
//! server), since on a 2-core machine the processes share the cores.
//!
//! ```sh
//! cd bench && cargo run --release --bin sender_postgres -- [EVENTS_PER_WEBHOOK] [RUNS]
//! ```
//!
//! 1. A plain hyper server (in this process) answers 200 to every POST.
//! 2. A throwaway PostgreSQL cluster of its own is started (`common::test_postgres`), so its
//!    processes' CPU can be read from `/proc`.
//! 3. For each store × workers × parallel: a fresh state (a SQLite file, or a new database)
//!    with 3 webhooks, EVENTS_PER_WEBHOOK real-time events queued for each (not timed); then
//!    the workers (this program with `--worker`, each the engine of `sender run`) are started
//!    and timed until every request is delivered.
//!
//! Each worker prints the statements it sent to PostgreSQL when it stops; the report divides
//! them by the deliveries.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use common::store_location::StoreLocation;
use sender::config::DeliveryConfig;
use sender::delivery::{Engine, Mode};
use sender::manage::WebhookChanges;
use sender::store::postgres::PostgresState;
use sender::store::sqlite::SqliteState;
use sender::store::State;

/// Webhooks per run: one worker can serve them all at once, three can share them.
const WEBHOOKS: usize = 3;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        let location = args.get(1).context("--worker LOCATION PARALLEL")?;
        let parallel = args.get(2).context("--worker LOCATION PARALLEL")?.parse()?;
        return worker(location, parallel);
    }
    let per_webhook: usize = args.first().map_or(Ok(2000), |a| a.parse())?;
    let runs: usize = args.get(1).map_or(Ok(1), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}/webhook", listener.local_addr()?);
    runtime.spawn(bench::serve_plain(listener));
    let cluster = common::test_postgres::TestCluster::start()?;
    let dir = tempfile::tempdir()?;
    let ticks = clock_ticks();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "sender on PostgreSQL vs SQLite ({cores} cores; {WEBHOOKS} webhooks x {per_webhook} events, a plain hyper server in this process)"
    );
    println!(
        "  {:<10} {:>7} {:>8} {:>14} {:>12} {:>16} {:>14}",
        "store",
        "workers",
        "parallel",
        "deliveries/s",
        "trips/deliv",
        "worker CPU us/d",
        "db CPU us/d"
    );
    let mut rows = Vec::new();
    let mut counter = 0;
    for parallel in [1usize, 16] {
        for (store, workers) in [
            ("sqlite", 1usize),
            ("sqlite", 3),
            ("postgres", 1),
            ("postgres", 3),
        ] {
            for _ in 0..runs {
                counter += 1;
                let location = match store {
                    "sqlite" => format!(
                        "sqlite:{}",
                        dir.path().join(format!("s{counter}.db")).display()
                    ),
                    _ => cluster.create_database()?,
                };
                let measured = measure(
                    &location,
                    &url,
                    per_webhook,
                    workers,
                    parallel,
                    &cluster,
                    ticks,
                )?;
                println!(
                    "  {store:<10} {workers:>7} {parallel:>8} {:>14.0} {:>12} {:>16.1} {:>14}",
                    measured.rate,
                    measured
                        .trips_per_delivery
                        .map_or("-".to_owned(), |t| format!("{t:.2}")),
                    measured.worker_cpu_us,
                    measured
                        .db_cpu_us
                        .map_or("-".to_owned(), |c| format!("{c:.1}")),
                );
                rows.push(serde_json::json!({
                    "store": store, "workers": workers, "parallel": parallel,
                    "deliveries_per_s": measured.rate,
                    "round_trips_per_delivery": measured.trips_per_delivery,
                    "worker_cpu_us_per_delivery": measured.worker_cpu_us,
                    "worker_cpu_us_per_delivery_by_process": measured.per_process_cpu_us,
                    "db_cpu_us_per_delivery": measured.db_cpu_us,
                }));
            }
        }
    }
    println!("json {}", serde_json::Value::Array(rows));
    Ok(())
}

/// One run's figures.
struct Measured {
    rate: f64,
    trips_per_delivery: Option<f64>,
    worker_cpu_us: f64,
    per_process_cpu_us: Vec<f64>,
    db_cpu_us: Option<f64>,
}

/// Queues the events, starts the workers, and times them until every request is delivered.
fn measure(
    location: &str,
    url: &str,
    per_webhook: usize,
    workers: usize,
    parallel: usize,
    cluster: &common::test_postgres::TestCluster,
    ticks: f64,
) -> anyhow::Result<Measured> {
    let postgres = location.starts_with("postgres");
    let state = open(location)?.0;
    let kind = verify::lookup("COURSE_ENROLLMENT").context("catalogue")?;
    for n in 0..WEBHOOKS {
        let webhook = WebhookChanges {
            name: Some(format!("bench {n}")),
            url: Some(url.parse().expect("a Target URL")),
            events: Some("all".into()),
            ..WebhookChanges::default()
        }
        .create(0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        state.insert_webhook(&webhook)?;
        bench::enqueue_events(&*state, &webhook, kind, per_webhook)?;
    }
    let total = (per_webhook * WEBHOOKS) as u64;
    let db_before = postgres.then(|| cluster_cpu_seconds(cluster.data_dir(), ticks));
    let started = Instant::now();
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["--worker", location, &parallel.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a worker")
        })
        .collect::<anyhow::Result<_>>()?;
    let deadline = started + Duration::from_secs(300);
    loop {
        if state.counts(None)?.delivered >= total {
            break;
        }
        if Instant::now() > deadline {
            bail!("not delivered within 300 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let db_cpu = db_before.map(|before| cluster_cpu_seconds(cluster.data_dir(), ticks) - before);
    let per_process: Vec<f64> = children
        .iter()
        .map(|child| process_cpu_seconds(child.id(), ticks) / total as f64 * 1e6)
        .collect();
    let mut trips = 0u64;
    for child in &mut children {
        // Closing stdin stops the worker; it prints its round trips as it goes.
        drop(child.stdin.take());
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        trips += line
            .trim()
            .strip_prefix("trips ")
            .and_then(|n| n.parse::<u64>().ok())
            .with_context(|| format!("worker said {line:?}"))?;
        child.wait()?;
    }
    Ok(Measured {
        rate: total as f64 / elapsed,
        trips_per_delivery: postgres.then(|| trips as f64 / total as f64),
        worker_cpu_us: per_process.iter().sum(),
        per_process_cpu_us: per_process,
        db_cpu_us: db_cpu.map(|seconds| seconds / total as f64 * 1e6),
    })
}

/// A state, and for PostgreSQL the store itself, for its round-trip count.
type Opened = (Arc<dyn State>, Option<Arc<PostgresState>>);

/// Opens a state; for PostgreSQL also the store itself, for its round-trip count.
fn open(location: &str) -> anyhow::Result<Opened> {
    Ok(match StoreLocation::parse(location)? {
        StoreLocation::Sqlite(path) => (Arc::new(SqliteState::open(&path)?), None),
        StoreLocation::Postgres(url) => {
            let store = Arc::new(PostgresState::open(&url)?);
            (store.clone(), Some(store))
        }
    })
}

/// `sender run`'s engine until standard input closes; then prints `trips N`.
fn worker(location: &str, parallel: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (state, postgres) = open(location)?;
    // Every other setting as `sender run` has it (poll interval 250 ms included).
    let config = DeliveryConfig {
        parallel,
        ..DeliveryConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stop.send(());
    });
    runtime.block_on(async {
        let engine = Engine::http(state, config).with_role("run");
        engine
            .run(Mode::Serve, async {
                let _ = stopped.await;
            })
            .await
    })?;
    let trips = postgres.map_or(0, |store| store.round_trips());
    let mut stdout = std::io::stdout();
    writeln!(stdout, "trips {trips}")?;
    stdout.flush()?;
    Ok(())
}

/// Clock ticks per second of `/proc/*/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process, and its parent's pid.
fn stat(pid: u32, ticks: f64) -> Option<(f64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, ppid, … utime (14th field), stime (15th).
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(((utime + stime) / ticks, ppid))
}

fn process_cpu_seconds(pid: u32, ticks: f64) -> f64 {
    stat(pid, ticks).map_or(0.0, |(cpu, _)| cpu)
}

/// CPU seconds of the cluster's postmaster and all its children (backends, writers).
fn cluster_cpu_seconds(data_dir: &Path, ticks: f64) -> f64 {
    let Some(postmaster) = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
    else {
        return f64::NAN;
    };
    let mut total = process_cpu_seconds(postmaster, ticks);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((cpu, ppid)) = stat(pid, ticks) {
            if ppid == postmaster {
                total += cpu;
            }
        }
    }
    total
}
