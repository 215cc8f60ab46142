//! The orchestrator behind `bench/run`: runs every measurement several times, each against its
//! baseline in the same run, and writes `report.md` and `report.json`.
//!
//! ```sh
//! perf_report --mode quick|full --receiver PATH --out DIR --work DIR --criterion DIR
//!             [--sender-throughput PATH] [--sender-batches PATH] [--sender-postgres PATH]
//! ```
//!
//! Servers (the `receiver` binary, the plain hyper server) run as separate processes pinned to
//! core 0 and the load generator (`load_gen`) to core 1 with `taskset`, when the machine has
//! two cores or more; their peak memory is the kernel's `VmHWM` of the server process.
//! Repetitions of a figure and of its baseline are interleaved (baseline, ours, baseline, ours,
//! …) so that a burst of load from another process hits both alike.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bench::Spread;
use serde_json::{json, Value};

/// Connections of the closed loop that finds the maximum rate (as in the receiver issue).
const MAX_RATE_CONNECTIONS: usize = 32;
/// Connections of the open loop: enough that a slow commit never leaves due requests waiting
/// for a free connection at half the maximum rate.
const OPEN_LOOP_CONNECTIONS: usize = 64;
/// The concurrency sweep.
const CONNECTION_SWEEP: [usize; 4] = [1, 16, 64, 256];
/// Events already stored before the growth measurements.
const STORE_SIZES: [i64; 3] = [1_000, 100_000, 1_000_000];
/// The receiver keeps at least this share of its 1 k-event rate with 1 M events stored.
const GROWTH_GOAL: f64 = 0.8;
/// The receiver's share of plain hyper's rate at 32 connections: the goal of issue 26, on the
/// way to 0.5.
const SHARE_GOAL: f64 = 0.35;
/// Most bytes the SQLite receiver may write to storage per event (WAL and checkpoints).
const WRITTEN_GOAL_BYTES: f64 = 4096.0;
/// Most CPU the store's writer thread may spend per event, µs.
const WRITER_CPU_GOAL_US: f64 = 12.0;
/// Longest start-up (store opened, listening) with 1 M events stored, seconds.
const STARTUP_GOAL_S: f64 = 2.0;
/// Most resident memory of the receiver under load, MiB.
const MEMORY_GOAL_MIB: f64 = 64.0;

/// How long and how often: the quick mode fits in 5 minutes, the full one in 30.
#[derive(Clone, Copy)]
struct Plan {
    name: &'static str,
    runs: usize,
    sweep_runs: usize,
    seconds: f64,
    sync_seconds: f64,
    sender_events: usize,
    sender_seconds: u64,
    sender_runs: usize,
    sender_batches: usize,
}

const QUICK: Plan = Plan {
    name: "quick",
    runs: 3,
    sweep_runs: 2,
    seconds: 1.2,
    sync_seconds: 1.0,
    sender_events: 20_000,
    sender_seconds: 1,
    sender_runs: 2,
    sender_batches: 200,
};

const FULL: Plan = Plan {
    name: "full",
    runs: 5,
    sweep_runs: 3,
    seconds: 6.0,
    sync_seconds: 2.0,
    sender_events: 60_000,
    sender_seconds: 5,
    sender_runs: 3,
    sender_batches: 600,
};

/// Where processes run.
struct Pinning {
    server: Vec<String>,
    load: Vec<String>,
    description: String,
}

impl Pinning {
    fn detect() -> Pinning {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = Command::new("taskset")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if cores >= 2 && taskset {
            let load_cores = if cores == 2 {
                "1".to_owned()
            } else {
                format!("1-{}", cores - 1)
            };
            Pinning {
                server: vec!["taskset".into(), "-c".into(), "0".into()],
                load: vec!["taskset".into(), "-c".into(), load_cores.clone()],
                description: format!(
                    "servers (receiver, plain hyper, disk-sync probe) pinned to core 0 with `taskset -c 0`; load generator (`load_gen`, one thread) pinned to core(s) {load_cores} with `taskset -c {load_cores}`"
                ),
            }
        } else {
            Pinning {
                server: Vec::new(),
                load: Vec::new(),
                description: format!(
                    "not pinned ({cores} core(s){}): server and load generator share the CPU",
                    if taskset { "" } else { ", no taskset" }
                ),
            }
        }
    }
}

/// Everything the run needs to know.
struct Context {
    plan: Plan,
    pinning: Pinning,
    bin_dir: PathBuf,
    receiver: PathBuf,
    work: PathBuf,
    signature_file: PathBuf,
    /// One example of each command line run, for the report.
    commands: Vec<(String, String)>,
    run_counter: usize,
}

impl Context {
    fn command(
        &mut self,
        kind: &str,
        pinned: &[String],
        program: &Path,
        args: &[String],
    ) -> Command {
        let mut line: Vec<String> = pinned.to_vec();
        line.push(program.display().to_string());
        line.extend(args.iter().cloned());
        if !self.commands.iter().any(|(k, _)| k == kind) {
            self.commands.push((kind.to_owned(), line.join(" ")));
        }
        let mut command = Command::new(&line[0]);
        command.args(&line[1..]);
        command
    }

    fn next_run(&mut self) -> String {
        self.run_counter += 1;
        format!("r{}", self.run_counter)
    }

    /// Starts the plain hyper server on core 0.
    fn start_plain(&mut self) -> anyhow::Result<Server> {
        let program = self.bin_dir.join("plain_server");
        let pinned = self.pinning.server.clone();
        let command = self.command("plain hyper server", &pinned, &program, &[]);
        Server::start(command)
    }

    /// Starts the real receiver binary on core 0 over `database`.
    fn start_receiver(&mut self, database: &Path) -> anyhow::Result<Server> {
        let args = vec![
            "listen".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--path".to_owned(),
            "/webhook".to_owned(),
            "--signature-file".to_owned(),
            self.signature_file.display().to_string(),
            "--store".to_owned(),
            format!("sqlite:{}", database.display()),
            "--output".to_owned(),
            "quiet".to_owned(),
        ];
        let pinned = self.pinning.server.clone();
        let receiver = self.receiver.clone();
        let command = self.command("receiver", &pinned, &receiver, &args);
        Server::start(command)
    }

    /// Runs the load generator on core 1 and returns its JSON line.
    fn load(
        &mut self,
        addr: &str,
        connections: usize,
        open_rate: Option<f64>,
    ) -> anyhow::Result<Value> {
        let run = self.next_run();
        let mut args = vec![
            if open_rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            addr.to_owned(),
            self.signature_file.display().to_string(),
            run,
            self.plan.seconds.to_string(),
            connections.to_string(),
        ];
        if let Some(rate) = open_rate {
            args.push(format!("{rate:.0}"));
        }
        let kind = if open_rate.is_some() {
            "load generator (open loop)"
        } else {
            "load generator (closed loop)"
        };
        let program = self.bin_dir.join("load_gen");
        let pinned = self.pinning.load.clone();
        let output = self
            .command(kind, &pinned, &program, &args)
            .stderr(Stdio::inherit())
            .output()
            .context("running load_gen")?;
        if !output.status.success() {
            bail!(
                "load_gen failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    fn fresh_database(&self, name: &str) -> anyhow::Result<PathBuf> {
        let directory = self.work.join(name);
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory)?;
        Ok(directory.join("receiver.db"))
    }
}

/// A server process and the address it listens on.
struct Server {
    child: Child,
    addr: String,
    /// From the spawn to its first line (`listening on …`): for the receiver, the time it
    /// takes to open its store and start answering.
    startup: Duration,
}

impl Server {
    fn start(mut command: Command) -> anyhow::Result<Server> {
        let spawned = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            // The receiver logs its start and stop on stderr; the report does not need them.
            .stderr(Stdio::null())
            .spawn()
            .context("starting a server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let startup = spawned.elapsed();
        // `listening on http://127.0.0.1:PORT/PATH`
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_owned();
        // Keep draining whatever else it prints so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        Ok(Server {
            child,
            addr,
            startup,
        })
    }

    /// Peak resident memory so far, MiB (`VmHWM`).
    fn peak_memory_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// CPU seconds used so far by each thread name (`tokio-rt-worker`, `store-writer`, …),
    /// from `/proc/PID/task/*/stat`: what the process itself cost, whatever else runs on the
    /// machine.
    fn cpu_seconds_by_thread(&self) -> std::collections::BTreeMap<String, f64> {
        bench::cpu_seconds_by_thread(self.child.id())
    }

    /// Bytes each thread name caused to be written to storage so far (`write_bytes` of
    /// `/proc/PID/task/*/io`, less `cancelled_write_bytes`): the WAL frames, the checkpoints'
    /// pages and anything else the process wrote, counted by the kernel as the pages are
    /// dirtied.
    fn written_bytes_by_thread(&self) -> std::collections::BTreeMap<String, f64> {
        let mut by_thread = std::collections::BTreeMap::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()));
        for task in tasks.into_iter().flatten().flatten() {
            let (Ok(io), Ok(comm)) = (
                std::fs::read_to_string(task.path().join("io")),
                std::fs::read_to_string(task.path().join("comm")),
            ) else {
                continue;
            };
            let field = |name: &str| {
                io.lines()
                    .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            *by_thread.entry(comm.trim().to_owned()).or_insert(0.0) +=
                field("write_bytes:") - field("cancelled_write_bytes:");
        }
        by_thread
    }

    /// `GET /metrics` over a plain socket.
    fn metrics(&self) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(&self.addr) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    /// SIGTERM (graceful: the receiver commits and closes its store), SIGKILL after 20 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an unlabelled Prometheus sample.
fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(f64::NAN)
}

fn spread_json(values: &[f64]) -> Value {
    let spread = Spread::of(values);
    json!({ "median": spread.median, "min": spread.min, "max": spread.max, "runs": values })
}

fn events_stored(database: &Path) -> anyhow::Result<i64> {
    let connection = rusqlite::Connection::open(database)?;
    Ok(connection.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?)
}

/// One line of the summary table, also one entry of `report.json`'s `summary`.
struct Row {
    figure: String,
    ours: String,
    baseline: String,
    ratio: f64,
    ratio_label: String,
    goal: String,
    goal_met: bool,
}

fn fmt_spread(spread: &Spread, unit: &str, decimals: usize) -> String {
    format!(
        "{:.d$} {unit} ({:.d$}–{:.d$})",
        spread.median,
        spread.min,
        spread.max,
        d = decimals
    )
}

fn machine() -> Value {
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let lscpu = run("lscpu", &[]);
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_default()
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_default();
    let disk = run("df", &["-hT", "."]);
    let block = run("lsblk", &["-d", "-o", "NAME,SIZE,ROTA,MODEL"]);
    json!({
        "nproc": run("nproc", &[]),
        "cpu_model": field("Model name:"),
        "cpu_mhz": field("CPU MHz:"),
        "memory": memory,
        "disk": disk.lines().last().unwrap_or_default(),
        "block_devices": block,
        "kernel": run("uname", &["-srm"]),
        "date": run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "load_average_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

/// The criterion medians of `group/function`, ns, with criterion's confidence interval.
fn criterion_median(criterion: &Path, group: &str, function: &str) -> Option<(f64, f64, f64)> {
    let path = criterion
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let estimates: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let median = &estimates["median"];
    Some((
        median["point_estimate"].as_f64()?,
        median["confidence_interval"]["lower_bound"].as_f64()?,
        median["confidence_interval"]["upper_bound"].as_f64()?,
    ))
}

fn verify_figures(criterion: &Path, rows: &mut Vec<Row>) -> Value {
    let mut out = Vec::new();
    for size in ["1KiB", "64KiB", "1MiB"] {
        let group = format!("verify_{size}");
        let get = |name| criterion_median(criterion, &group, name);
        // svix is measured in the full run only (its build is long); it may be absent.
        let svix = get("svix");
        let (Some(raw), Some(ours), Some(peer)) =
            (get("raw_hmac"), get("ours"), get("standardwebhooks"))
        else {
            out.push(json!({ "body": size, "error": "criterion estimates missing" }));
            continue;
        };
        let ratio = ours.0 / raw.0;
        let goals = json!({
            "ours_vs_raw": { "ratio": ratio, "goal": "<= 1.1", "goal_met": ratio <= 1.1 },
            "ours_vs_standardwebhooks": { "ratio": ours.0 / peer.0, "goal": "< 1 (faster)", "goal_met": ours.0 < peer.0 },
        });
        let mut goals = goals;
        if let Some(svix) = svix {
            goals["ours_vs_svix"] = json!({ "ratio": ours.0 / svix.0, "goal": "< 1 (faster)", "goal_met": ours.0 < svix.0 });
        }
        let ns =
            |v: (f64, f64, f64)| json!({ "median_ns": v.0, "ci_low_ns": v.1, "ci_high_ns": v.2 });
        out.push(json!({
            "body": size,
            "ours": ns(ours), "raw_hmac": ns(raw), "standardwebhooks": ns(peer),
            "svix": svix.map(ns).unwrap_or(Value::Null),
            "goals": goals,
        }));
        let time = |v: (f64, f64, f64)| {
            let (scale, unit) = if v.0 > 1e5 { (1e3, "µs") } else { (1.0, "ns") };
            format!(
                "{:.1} {unit} ({:.1}–{:.1})",
                v.0 / scale,
                v.1 / scale,
                v.2 / scale
            )
        };
        rows.push(Row {
            figure: format!("verify {size}: ours vs raw HMAC"),
            ours: time(ours),
            baseline: time(raw),
            ratio,
            ratio_label: "ours / raw".into(),
            goal: "≤ 1.1".into(),
            goal_met: ratio <= 1.1,
        });
        rows.push(Row {
            figure: format!("verify {size}: ours vs standardwebhooks"),
            ours: time(ours),
            baseline: time(peer),
            ratio: ours.0 / peer.0,
            ratio_label: "ours / peer".into(),
            goal: "< 1".into(),
            goal_met: ours.0 < peer.0,
        });
        if let Some(svix) = svix {
            rows.push(Row {
                figure: format!("verify {size}: ours vs svix"),
                ours: time(ours),
                baseline: time(svix),
                ratio: ours.0 / svix.0,
                ratio_label: "ours / peer".into(),
                goal: "< 1".into(),
                goal_met: ours.0 < svix.0,
            });
        }
    }
    Value::Array(out)
}

/// The scheme figures of the verify benchmark (each HMAC preset against raw HMAC, v1a sign and
/// verify against raw Ed25519): ratios of the fastest of many short rounds of each side, the
/// two sides measured in alternating rounds of the same run.
fn scheme_figures(criterion: &Path, rows: &mut Vec<Row>) -> Value {
    let read = std::fs::read(criterion.join(bench::SCHEMES_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Vec<Value>>(&bytes).ok());
    let Some(figures) = read else {
        return json!({ "error": "scheme figures missing (run the verify benchmark)" });
    };
    let mut out = Vec::new();
    for figure in figures {
        let ratio = figure["ratio"].as_f64().unwrap_or(f64::NAN);
        let ns = |field: &str| figure[field].as_f64().unwrap_or(f64::NAN);
        rows.push(Row {
            figure: format!(
                "{} ({})",
                figure["figure"].as_str().unwrap_or(""),
                figure["body"].as_str().unwrap_or("")
            ),
            ours: format!("{:.0} ns (fastest round)", ns("ours_ns")),
            baseline: format!("{:.0} ns (fastest round)", ns("baseline_ns")),
            ratio,
            ratio_label: "ours / raw".into(),
            goal: "≤ 1.1".into(),
            goal_met: ratio <= 1.1,
        });
        let mut figure = figure;
        figure["goal"] = json!("<= 1.1");
        figure["goal_met"] = json!(ratio <= 1.1);
        out.push(figure);
    }
    Value::Array(out)
}

/// Disk syncs per second of a file next to the stores.
fn disk_syncs(context: &mut Context) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::new();
    for _ in 0..context.plan.runs {
        let program = context.bin_dir.join("disk_syncs");
        let args = vec![
            context.work.display().to_string(),
            context.plan.sync_seconds.to_string(),
        ];
        let pinned = context.pinning.server.clone();
        let output = context
            .command(
                "disk sync probe (4 KiB rewrite + fdatasync)",
                &pinned,
                &program,
                &args,
            )
            .output()?;
        let value: Value = serde_json::from_slice(&output.stdout)?;
        rates.push(number(&value, "syncs_per_s"));
    }
    Ok(rates)
}

/// One closed-loop run against a fresh receiver: (rate, p50, p99, peak MiB, requests per commit, ms per commit).
fn receiver_closed(
    context: &mut Context,
    database: &Path,
    connections: usize,
) -> anyhow::Result<(Value, f64, f64, f64)> {
    let server = context.start_receiver(database)?;
    let result = context.load(&server.addr, connections, None);
    let metrics = server.metrics();
    let memory = server.peak_memory_mib();
    let cpu = server.cpu_seconds_by_thread();
    // Before the stop: its last checkpoint is not part of the load.
    let written = server.written_bytes_by_thread();
    let startup = server.startup;
    server.stop();
    let mut result = result?;
    let commits = metric_value(&metrics, "receiver_commit_batch_requests_count");
    let batched = metric_value(&metrics, "receiver_commit_batch_requests_sum");
    // CPU per accepted request (warm-up included on both sides of the division).
    let per_request: serde_json::Map<String, Value> = cpu
        .iter()
        .map(|(name, seconds)| (name.clone(), json!(1e6 * seconds / batched)))
        .collect();
    result["cpu_us_per_request"] = json!(1e6 * cpu.values().sum::<f64>() / batched);
    result["cpu_us_per_request_by_thread"] = Value::Object(per_request);
    // One event per request: bytes per request are bytes per event.
    result["written_bytes_per_event"] = json!(written.values().sum::<f64>() / batched);
    result["written_bytes_per_event_by_thread"] = Value::Object(
        written
            .iter()
            .filter(|(_, bytes)| **bytes > 0.0)
            .map(|(name, bytes)| (name.clone(), json!(bytes / batched)))
            .collect(),
    );
    result["startup_s"] = json!(startup.as_secs_f64());
    let commit_seconds = metric_value(&metrics, "receiver_commit_seconds_sum");
    Ok((
        result,
        memory,
        batched / commits,
        1000.0 * commit_seconds / commits,
    ))
}

fn plain_closed(context: &mut Context, connections: usize) -> anyhow::Result<(Value, f64)> {
    let server = context.start_plain()?;
    let result = context.load(&server.addr, connections, None);
    let memory = server.peak_memory_mib();
    let cpu: f64 = server.cpu_seconds_by_thread().values().sum();
    server.stop();
    let mut result = result?;
    // The plain server keeps no count: requests ≈ rate × (window + warm-up).
    let requests = number(&result, "rate") * (number(&result, "seconds") + 0.5);
    result["cpu_us_per_request"] = json!(1e6 * cpu / requests);
    Ok((result, memory))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
    };
    let plan = match flag("--mode").as_deref() {
        Some("full") => FULL,
        _ => QUICK,
    };
    let out = PathBuf::from(flag("--out").context("--out")?);
    let work = PathBuf::from(flag("--work").context("--work")?);
    let criterion = PathBuf::from(flag("--criterion").context("--criterion")?);
    let receiver = PathBuf::from(flag("--receiver").context("--receiver")?);
    let sender_throughput = flag("--sender-throughput").map(PathBuf::from);
    let sender_batches = flag("--sender-batches").map(PathBuf::from);
    let sender_postgres = flag("--sender-postgres").map(PathBuf::from);
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_owned();
    std::fs::create_dir_all(&work)?;
    let started = Instant::now();
    let machine = machine();

    // One signing secret for the whole run, in a signature file the receiver and the load
    // generator both read.
    let secret = verify::SigningSecret::generate();
    let keyring = verify::Keyring::single(secret.clone());
    let file = verify::SignatureFile::new(
        "bench",
        "bench",
        keyring.scheme(),
        &secret,
        verify::unix_now(),
    );
    let signature_file = work.join("bench-signature.json");
    std::fs::write(&signature_file, file.to_json_pretty())?;

    let mut context = Context {
        plan,
        pinning: Pinning::detect(),
        bin_dir,
        receiver,
        work: work.clone(),
        signature_file,
        commands: Vec::new(),
        run_counter: 0,
    };
    let mut rows = Vec::new();
    let mut report = serde_json::Map::new();
    let log = |text: &str| {
        eprintln!("[{:>5.0} s] {text}", started.elapsed().as_secs_f64());
    };

    // verify (criterion ran before this program; see bench/run).
    log("verify: reading criterion estimates");
    report.insert("verify".into(), verify_figures(&criterion, &mut rows));
    report.insert("schemes".into(), scheme_figures(&criterion, &mut rows));

    // Disk syncs.
    log("disk syncs");
    let syncs = disk_syncs(&mut context)?;
    let syncs_spread = Spread::of(&syncs);

    // Receiver maximum vs plain, interleaved.
    log("receiver vs plain hyper, closed loop");
    let (mut plain_rates, mut receiver_rates) = (Vec::new(), Vec::new());
    let (mut p50s, mut p99s, mut memories, mut batch, mut commit_ms, mut stored_ok) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        true,
    );
    let (mut plain_p50s, mut plain_p99s, mut plain_mem) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain_cpu, mut receiver_cpu) = (Vec::new(), Vec::new());
    let mut thread_cpu: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut written: Vec<f64> = Vec::new();
    let mut thread_written: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for index in 0..plan.runs {
        let (plain, plain_memory) = plain_closed(&mut context, MAX_RATE_CONNECTIONS)?;
        plain_rates.push(number(&plain, "rate"));
        plain_p50s.push(number(&plain, "p50_ms"));
        plain_p99s.push(number(&plain, "p99_ms"));
        plain_mem.push(plain_memory);
        plain_cpu.push(number(&plain, "cpu_us_per_request"));
        let database = context.fresh_database(&format!("max-{index}"))?;
        let (measured, memory, per_commit, ms) =
            receiver_closed(&mut context, &database, MAX_RATE_CONNECTIONS)?;
        receiver_rates.push(number(&measured, "rate"));
        receiver_cpu.push(number(&measured, "cpu_us_per_request"));
        for (thread, micros) in measured["cpu_us_per_request_by_thread"]
            .as_object()
            .into_iter()
            .flatten()
        {
            thread_cpu
                .entry(thread.clone())
                .or_default()
                .push(micros.as_f64().unwrap_or(f64::NAN));
        }
        written.push(number(&measured, "written_bytes_per_event"));
        for (thread, bytes) in measured["written_bytes_per_event_by_thread"]
            .as_object()
            .into_iter()
            .flatten()
        {
            thread_written
                .entry(thread.clone())
                .or_default()
                .push(bytes.as_f64().unwrap_or(f64::NAN));
        }
        p50s.push(number(&measured, "p50_ms"));
        p99s.push(number(&measured, "p99_ms"));
        memories.push(memory);
        batch.push(per_commit);
        commit_ms.push(ms);
        // Every 200 of the window (warm-up 200s come on top) must be a stored event.
        let stored = events_stored(&database)?;
        stored_ok &= stored as f64 >= number(&measured, "ok");
        log(&format!(
            "  run {}: plain {:.0}/s, receiver {:.0}/s, {per_commit:.1} requests/commit",
            index + 1,
            plain_rates[index],
            receiver_rates[index]
        ));
    }
    let plain_spread = Spread::of(&plain_rates);
    let receiver_spread = Spread::of(&receiver_rates);
    let share = receiver_spread.median / plain_spread.median;
    let per_commit = Spread::of(&batch);
    let group_gain = receiver_spread.median / syncs_spread.median;
    rows.push(Row {
        figure: format!(
            "receiver: durable signed 1 KiB events/s, closed loop, {MAX_RATE_CONNECTIONS} conns"
        ),
        ours: fmt_spread(&receiver_spread, "/s", 0),
        baseline: format!("plain hyper {}", fmt_spread(&plain_spread, "/s", 0)),
        ratio: share,
        ratio_label: "receiver / plain".into(),
        goal: format!("≥ {SHARE_GOAL} (then 0.5)"),
        goal_met: share >= SHARE_GOAL,
    });
    let written_spread = Spread::of(&written);
    let body_bytes = bench::event_body("r", 0, 0).len() as f64;
    rows.push(Row {
        figure: format!(
            "receiver (SQLite): bytes written to storage per event, {MAX_RATE_CONNECTIONS} conns ({})",
            thread_written
                .iter()
                .map(|(thread, values)| format!("{thread} {:.0}", Spread::of(values).median))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ours: fmt_spread(&written_spread, "B", 0),
        baseline: format!("the body, {body_bytes:.0} B"),
        ratio: written_spread.median / body_bytes,
        ratio_label: "written / body".into(),
        goal: format!("≤ {WRITTEN_GOAL_BYTES:.0} B"),
        goal_met: written_spread.median <= WRITTEN_GOAL_BYTES,
    });
    let writer_cpu = Spread::of(
        thread_cpu
            .get("store-writer")
            .map_or(&[][..], Vec::as_slice),
    );
    let plain_cpu_spread = Spread::of(&plain_cpu);
    rows.push(Row {
        figure: format!(
            "receiver (SQLite): store writer CPU per event, {MAX_RATE_CONNECTIONS} conns"
        ),
        ours: fmt_spread(&writer_cpu, "µs", 1),
        baseline: format!(
            "plain hyper, whole request {}",
            fmt_spread(&plain_cpu_spread, "µs", 1)
        ),
        ratio: writer_cpu.median / plain_cpu_spread.median,
        ratio_label: "writer / plain request".into(),
        goal: format!("≤ {WRITER_CPU_GOAL_US:.0} µs"),
        goal_met: writer_cpu.median <= WRITER_CPU_GOAL_US,
    });
    rows.push(Row {
        figure: "receiver: events/s per disk sync/s (group-commit gain)".into(),
        ours: fmt_spread(&receiver_spread, "events/s", 0),
        baseline: format!("disk {}", fmt_spread(&syncs_spread, "syncs/s", 0)),
        ratio: group_gain,
        ratio_label: "events / syncs".into(),
        goal: "> 1".into(),
        goal_met: group_gain > 1.0,
    });
    let memory_spread = Spread::of(&memories);
    let plain_memory_spread = Spread::of(&plain_mem);
    rows.push(Row {
        figure: format!("receiver: peak memory (VmHWM), {MAX_RATE_CONNECTIONS} conns"),
        ours: fmt_spread(&memory_spread, "MiB", 1),
        baseline: format!("plain hyper {}", fmt_spread(&plain_memory_spread, "MiB", 1)),
        ratio: memory_spread.median / plain_memory_spread.median,
        ratio_label: "receiver / plain".into(),
        goal: "≤ 64 MiB".into(),
        goal_met: memory_spread.median <= 64.0,
    });
    report.insert(
        "receiver_max".into(),
        json!({
            "connections": MAX_RATE_CONNECTIONS,
            "receiver_rate": spread_json(&receiver_rates),
            "plain_rate": spread_json(&plain_rates),
            "ratio": share, "goal": format!(">= {SHARE_GOAL}"), "goal_met": share >= SHARE_GOAL,
            "written_bytes_per_event": spread_json(&written),
            "written_bytes_per_event_by_thread": thread_written
                .iter()
                .map(|(thread, values)| (thread.clone(), spread_json(values)))
                .collect::<serde_json::Map<String, Value>>(),
            "written_goal": { "goal": format!("<= {WRITTEN_GOAL_BYTES} bytes"), "goal_met": written_spread.median <= WRITTEN_GOAL_BYTES },
            "writer_cpu_goal": { "goal": format!("<= {WRITER_CPU_GOAL_US} us"), "goal_met": writer_cpu.median <= WRITER_CPU_GOAL_US },
            "receiver_closed_p50_ms": spread_json(&p50s),
            "receiver_closed_p99_ms": spread_json(&p99s),
            "plain_closed_p50_ms": spread_json(&plain_p50s),
            "plain_closed_p99_ms": spread_json(&plain_p99s),
            "requests_per_commit": spread_json(&batch),
            "ms_per_commit": spread_json(&commit_ms),
            "every_acknowledged_event_stored": stored_ok,
            "receiver_cpu_us_per_request": spread_json(&receiver_cpu),
            "receiver_cpu_us_per_request_by_thread": thread_cpu
                .iter()
                .map(|(thread, values)| (thread.clone(), spread_json(values)))
                .collect::<serde_json::Map<String, Value>>(),
            "plain_cpu_us_per_request": spread_json(&plain_cpu),
            "disk_syncs_per_s": spread_json(&syncs),
            "events_per_disk_sync": { "ratio": group_gain, "goal": "> 1", "goal_met": group_gain > 1.0 },
            "peak_memory_mib": spread_json(&memories),
            "plain_peak_memory_mib": spread_json(&plain_mem),
            "memory_goal": { "goal": "<= 64 MiB", "goal_met": memory_spread.median <= 64.0 },
        }),
    );

    // Latency at half the maximum, open loop.
    let half = receiver_spread.median / 2.0;
    log(&format!(
        "open loop at {half:.0}/s (50% of the receiver's maximum)"
    ));
    let (mut open_p50, mut open_p99, mut plain_open_p50, mut plain_open_p99, mut open_rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut open_failed = 0.0;
    for index in 0..plan.runs {
        let server = context.start_plain()?;
        let plain = context.load(&server.addr, OPEN_LOOP_CONNECTIONS, Some(half));
        server.stop();
        let plain = plain?;
        plain_open_p50.push(number(&plain, "p50_ms"));
        plain_open_p99.push(number(&plain, "p99_ms"));
        let database = context.fresh_database(&format!("open-{index}"))?;
        let server = context.start_receiver(&database)?;
        let measured = context.load(&server.addr, OPEN_LOOP_CONNECTIONS, Some(half));
        server.stop();
        let measured = measured?;
        open_p50.push(number(&measured, "p50_ms"));
        open_p99.push(number(&measured, "p99_ms"));
        open_rates.push(number(&measured, "rate"));
        open_failed += number(&measured, "failed");
    }
    let (p50, p99) = (Spread::of(&open_p50), Spread::of(&open_p99));
    let (plain_p50, plain_p99) = (Spread::of(&plain_open_p50), Spread::of(&plain_open_p99));
    // A commit waits for at least one sync, so the floor of p50 is one sync time.
    let sync_ms = 1000.0 / syncs_spread.median;
    rows.push(Row {
        figure: format!("receiver: p50 latency at 50% of max ({half:.0}/s, open loop)"),
        ours: fmt_spread(&p50, "ms", 2),
        baseline: format!("plain hyper {}", fmt_spread(&plain_p50, "ms", 2)),
        ratio: p50.median / sync_ms,
        ratio_label: "p50 / one disk sync".into(),
        goal: "≤ 3 disk syncs".into(),
        goal_met: p50.median <= 3.0 * sync_ms,
    });
    rows.push(Row {
        figure: format!("receiver: p99 latency at 50% of max ({half:.0}/s, open loop)"),
        ours: fmt_spread(&p99, "ms", 2),
        baseline: format!("plain hyper {}", fmt_spread(&plain_p99, "ms", 2)),
        ratio: p99.median / sync_ms,
        ratio_label: "p99 / one disk sync".into(),
        goal: "≤ 10 disk syncs".into(),
        goal_met: p99.median <= 10.0 * sync_ms,
    });
    report.insert(
        "receiver_latency_at_half".into(),
        json!({
            "rate": half, "connections": OPEN_LOOP_CONNECTIONS,
            "achieved_rate": spread_json(&open_rates), "failed": open_failed,
            "p50_ms": spread_json(&open_p50), "p99_ms": spread_json(&open_p99),
            "plain_p50_ms": spread_json(&plain_open_p50), "plain_p99_ms": spread_json(&plain_open_p99),
            "disk_sync_ms": sync_ms,
            "p50_goal": { "ratio": p50.median / sync_ms, "goal": "<= 3 disk syncs", "goal_met": p50.median <= 3.0 * sync_ms },
            "p99_goal": { "ratio": p99.median / sync_ms, "goal": "<= 10 disk syncs", "goal_met": p99.median <= 10.0 * sync_ms },
        }),
    );

    // Concurrency sweep.
    log("connections sweep");
    let mut sweep = Vec::new();
    let mut first_rate = f64::NAN;
    for connections in CONNECTION_SWEEP {
        let (mut rates, mut plain_rates, mut memories) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..plan.sweep_runs {
            let (plain, _) = plain_closed(&mut context, connections)?;
            plain_rates.push(number(&plain, "rate"));
            let database = context.fresh_database(&format!("sweep-{connections}-{index}"))?;
            let (measured, memory, _, _) = receiver_closed(&mut context, &database, connections)?;
            rates.push(number(&measured, "rate"));
            memories.push(memory);
        }
        let (rate, plain, memory) = (
            Spread::of(&rates),
            Spread::of(&plain_rates),
            Spread::of(&memories),
        );
        if connections == CONNECTION_SWEEP[0] {
            first_rate = rate.median;
        }
        log(&format!(
            "  {connections} conns: receiver {:.0}/s, plain {:.0}/s, {:.1} MiB",
            rate.median, plain.median, memory.median
        ));
        let share = rate.median / plain.median;
        sweep.push(json!({
            "connections": connections,
            "receiver_rate": spread_json(&rates),
            "plain_rate": spread_json(&plain_rates),
            "ratio": share, "goal": ">= 0.5", "goal_met": share >= 0.5,
            "peak_memory_mib": spread_json(&memories),
            "memory_goal": { "goal": "<= 64 MiB", "goal_met": memory.median <= 64.0 },
            "rate_vs_1_connection": rate.median / first_rate,
        }));
        rows.push(Row {
            figure: format!(
                "receiver at {connections} conns: events/s; peak memory {}",
                fmt_spread(&memory, "MiB", 1)
            ),
            ours: fmt_spread(&rate, "/s", 0),
            baseline: format!("plain hyper {}", fmt_spread(&plain, "/s", 0)),
            ratio: share,
            ratio_label: "receiver / plain".into(),
            goal: "≥ 0.5".into(),
            goal_met: share >= 0.5,
        });
    }
    report.insert("receiver_connections".into(), Value::Array(sweep));

    // Store growth.
    log("store growth");
    let database = context.fresh_database("growth")?;
    let mut growth = Vec::new();
    let mut growth_first = f64::NAN;
    let mut growth_last = f64::NAN;
    for size in STORE_SIZES {
        let program = context.bin_dir.join("prefill");
        let args = vec![database.display().to_string(), size.to_string()];
        let output = context
            .command("prefill (SQL, one transaction)", &[], &program, &args)
            .stderr(Stdio::inherit())
            .output()?;
        if !output.status.success() {
            bail!("prefill failed");
        }
        let mut rates = Vec::new();
        let mut before = Vec::new();
        let (mut startups, mut memories, mut written) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.sweep_runs {
            before.push(events_stored(&database)? as f64);
            let (measured, memory, _, _) =
                receiver_closed(&mut context, &database, MAX_RATE_CONNECTIONS)?;
            rates.push(number(&measured, "rate"));
            startups.push(number(&measured, "startup_s"));
            written.push(number(&measured, "written_bytes_per_event"));
            memories.push(memory);
        }
        let rate = Spread::of(&rates);
        let (startup, memory) = (Spread::of(&startups), Spread::of(&memories));
        if size == STORE_SIZES[STORE_SIZES.len() - 1] {
            rows.push(Row {
                figure: format!(
                    "receiver start-up (store opened, listening) with {size} events stored"
                ),
                ours: fmt_spread(&startup, "s", 2),
                baseline: "–".into(),
                ratio: startup.median / STARTUP_GOAL_S,
                ratio_label: "of the goal".into(),
                goal: format!("≤ {STARTUP_GOAL_S} s"),
                goal_met: startup.median <= STARTUP_GOAL_S,
            });
            rows.push(Row {
                figure: format!("receiver peak memory (VmHWM) under load with {size} events stored ({MAX_RATE_CONNECTIONS} conns)"),
                ours: fmt_spread(&memory, "MiB", 1),
                baseline: "–".into(),
                ratio: memory.median / MEMORY_GOAL_MIB,
                ratio_label: "of the goal".into(),
                goal: format!("≤ {MEMORY_GOAL_MIB} MiB"),
                goal_met: memory.median <= MEMORY_GOAL_MIB,
            });
        }
        if size == STORE_SIZES[0] {
            growth_first = rate.median;
        }
        growth_last = rate.median;
        log(&format!("  {size} stored: {:.0}/s", rate.median));
        growth.push(json!({
            "prefilled_events": size,
            "events_before_each_run": before,
            "receiver_rate": spread_json(&rates),
            "ratio_to_first": rate.median / growth_first,
            "startup_s": spread_json(&startups),
            "peak_memory_mib": spread_json(&memories),
            "written_bytes_per_event": spread_json(&written),
        }));
    }
    let growth_ratio = growth_last / growth_first;
    rows.push(Row {
        figure: format!("insert rate with 1 M vs 1 k events stored ({MAX_RATE_CONNECTIONS} conns)"),
        ours: format!("{growth_last:.0} /s"),
        baseline: format!("{growth_first:.0} /s at 1 k"),
        ratio: growth_ratio,
        ratio_label: "1 M / 1 k".into(),
        goal: format!("≥ {GROWTH_GOAL}"),
        goal_met: growth_ratio >= GROWTH_GOAL,
    });
    report.insert(
        "store_growth".into(),
        json!({
            "sizes": growth,
            "ratio_last_to_first": growth_ratio,
            "goal": format!(">= {GROWTH_GOAL}"),
            "goal_met": growth_ratio >= GROWTH_GOAL,
        }),
    );

    // Sender.
    let mut sender = serde_json::Map::new();
    if let Some(program) = sender_throughput.filter(|path| path.exists()) {
        log("sender throughput");
        let (mut wrk, mut plain, mut signed) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.sender_runs {
            let args = vec![
                plan.sender_events.to_string(),
                "32".to_owned(),
                plan.sender_seconds.to_string(),
            ];
            let output = context
                .command(
                    "sender throughput (engine --parallel 32 vs wrk)",
                    &[],
                    &program,
                    &args,
                )
                .stderr(Stdio::inherit())
                .output()?;
            let text = String::from_utf8_lossy(&output.stdout);
            let rate_before = |line: &str, unit: &str| {
                line.split(unit)
                    .next()
                    .and_then(|head| head.split_whitespace().last()?.parse::<f64>().ok())
            };
            for line in text.lines() {
                if line.trim_start().starts_with("wrk ") {
                    wrk.extend(rate_before(line, "req/s"));
                } else if line.contains("auth none") {
                    plain.extend(rate_before(line, "deliveries/s"));
                } else if line.contains("auth standard-webhooks") {
                    signed.extend(rate_before(line, "deliveries/s"));
                }
            }
        }
        let (wrk_s, plain_s) = (Spread::of(&wrk), Spread::of(&plain));
        let share = plain_s.median / wrk_s.median;
        rows.push(Row {
            figure: "sender: deliveries/s to a fast sink, --parallel 32 (no auth)".into(),
            ours: fmt_spread(&plain_s, "/s", 0),
            baseline: format!("wrk {}", fmt_spread(&wrk_s, "/s", 0)),
            ratio: share,
            ratio_label: "sender / wrk".into(),
            goal: "≥ 0.7".into(),
            goal_met: share >= 0.7,
        });
        sender.insert(
            "deliveries".into(),
            json!({
                "parallel": 32, "events": plan.sender_events,
                "sender_none": spread_json(&plain), "sender_signed": spread_json(&signed),
                "wrk": spread_json(&wrk),
                "ratio": share, "goal": ">= 0.7", "goal_met": share >= 0.7,
                "pinning": "not pinned: sender_throughput starts its own server and wrk",
            }),
        );
    } else {
        sender.insert("deliveries".into(), json!({ "error": "sender_throughput not built (the sender crate is not committed yet)" }));
    }
    if let Some(program) = sender_batches.filter(|path| path.exists()) {
        log("sender batches");
        let mut rates = Vec::new();
        let mut events = Vec::new();
        for _ in 0..plan.sender_runs {
            let args = vec![plan.sender_batches.to_string(), "8".to_owned()];
            let output = context
                .command(
                    "sender batches (100 events per request)",
                    &[],
                    &program,
                    &args,
                )
                .stderr(Stdio::inherit())
                .output()?;
            if let Ok(value) = serde_json::from_slice::<Value>(&output.stdout) {
                rates.push(number(&value, "batches_per_s"));
                events.push(number(&value, "events_per_s"));
            }
        }
        let (rate, batched_events) = (Spread::of(&rates), Spread::of(&events));
        // The baseline is the same engine sending one event per request (no auth) in this
        // run: batching should carry many more events per second.
        let single = sender["deliveries"]["sender_none"]["median"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let gain = batched_events.median / single;
        sender.insert(
            "batches".into(),
            json!({
                "events_per_batch": 100,
                "batches_per_s": spread_json(&rates),
                "events_per_s": spread_json(&events),
                "baseline_single_event_deliveries_per_s": single,
                "ratio_events_batched_to_single": gain,
                "goal": "> 1 (batches carry more events/s than single deliveries)",
                "goal_met": gain > 1.0,
            }),
        );
        rows.push(Row {
            figure: format!(
                "sender: batch requests/s, 100 events each ({} events/s)",
                fmt_spread(&batched_events, "", 0)
            ),
            ours: fmt_spread(&rate, "/s", 0),
            baseline: format!("one-event deliveries {single:.0} /s"),
            ratio: gain,
            ratio_label: "batched events/s ÷ one-event deliveries/s".into(),
            goal: "> 1".into(),
            goal_met: gain > 1.0,
        });
    } else {
        sender.insert(
            "batches".into(),
            json!({ "error": "sender_batches not built" }),
        );
    }
    if let Some(program) = sender_postgres.filter(|path| path.exists()) {
        log("sender on PostgreSQL vs SQLite");
        // Three webhooks share the events of the single-event figure above.
        let per_webhook = (plan.sender_events / 30).max(100);
        let args = vec![per_webhook.to_string(), "1".to_owned()];
        let output = context
            .command(
                "sender on PostgreSQL vs SQLite (1 and 3 workers, --parallel 1 and 16)",
                &[],
                &program,
                &args,
            )
            .stderr(Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let rows: Value = text
            .lines()
            .find_map(|line| line.strip_prefix("json "))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or(Value::Null);
        let table: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with("json "))
            .collect();
        sender.insert(
            "postgres".into(),
            json!({ "events_per_webhook": per_webhook, "webhooks": 3, "rows": rows, "table": table.join("\n") }),
        );
    } else {
        sender.insert(
            "postgres".into(),
            json!({ "error": "sender_postgres not built" }),
        );
    }
    report.insert("sender".into(), Value::Object(sender));

    let elapsed = started.elapsed().as_secs_f64();
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let summary: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({ "figure": row.figure, "ours": row.ours, "baseline": row.baseline,
                    "ratio": row.ratio, "ratio_of": row.ratio_label, "goal": row.goal, "goal_met": row.goal_met })
        })
        .collect();
    let commands: Vec<Value> = context
        .commands
        .iter()
        .map(|(kind, line)| json!({ "what": kind, "command": line }))
        .collect();
    let mut root = serde_json::Map::new();
    root.insert("mode".into(), json!(plan.name));
    root.insert("machine".into(), machine.clone());
    root.insert("load_average_at_end".into(), json!(load_end.trim()));
    root.insert("pinning".into(), json!(context.pinning.description));
    root.insert(
        "plan".into(),
        json!({ "runs": plan.runs, "sweep_runs": plan.sweep_runs, "seconds_per_run": plan.seconds,
                "closed_loop_warmup_s": 0.5, "disk_sync_seconds": plan.sync_seconds }),
    );
    root.insert("duration_s".into(), json!(elapsed));
    root.insert("summary".into(), Value::Array(summary));
    root.extend(report);
    root.insert("commands".into(), Value::Array(commands));
    let root = Value::Object(root);
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&root)? + "\n",
    )?;

    // The markdown report.
    let mut md = String::new();
    let w = &mut md;
    use std::fmt::Write as _;
    writeln!(w, "# Performance report ({} run)\n", plan.name)?;
    writeln!(
        w,
        "Generated by `bench/run{}` on {} in {:.0} s. Every figure is the median of the runs, \
         with the spread (min–max) in brackets, and its baseline was measured in the same run, \
         interleaved with it.\n",
        if plan.name == "quick" { " --quick" } else { "" },
        machine["date"].as_str().unwrap_or_default(),
        elapsed
    )?;
    writeln!(w, "## Summary\n")?;
    writeln!(w, "| figure | ours | baseline | ratio | goal | met |")?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    for row in &rows {
        writeln!(
            w,
            "| {} | {} | {} | {:.3} ({}) | {} | {} |",
            row.figure,
            row.ours,
            row.baseline,
            row.ratio,
            row.ratio_label,
            row.goal,
            if row.goal_met { "yes" } else { "**no**" }
        )?;
    }
    let max = &root["receiver_max"];
    writeln!(w, "\n## Receiver details\n")?;
    writeln!(
        w,
        "- Closed loop, {MAX_RATE_CONNECTIONS} connections, {} s per run after 0.5 s warm-up, {} runs: receiver p50 {:.2} ms / p99 {:.2} ms, plain p50 {:.2} ms / p99 {:.2} ms.",
        plan.seconds, plan.runs,
        Spread::of(&p50s).median, Spread::of(&p99s).median,
        Spread::of(&plain_p50s).median, Spread::of(&plain_p99s).median,
    )?;
    writeln!(
        w,
        "- Group commit: {} requests per commit, {} ms per commit (from `/metrics`); the disk does {} syncs/s ({:.2} ms per sync), so one sync carries {:.1} events.",
        fmt_spread(&per_commit, "", 1), fmt_spread(&Spread::of(&commit_ms), "", 2),
        fmt_spread(&syncs_spread, "", 0), sync_ms, group_gain
    )?;
    writeln!(
        w,
        "- CPU per request, from the server processes' own counters (`/proc/PID/task/*/stat`, so other load on the machine does not count): receiver {:.1} µs ({}), plain hyper {:.1} µs. With the server on one core, its ceiling is about 1 s ÷ that: {:.0} events/s vs {:.0} requests/s.",
        Spread::of(&receiver_cpu).median,
        thread_cpu
            .iter()
            .map(|(thread, values)| format!("{thread} {:.1}", Spread::of(values).median))
            .collect::<Vec<_>>()
            .join(", "),
        Spread::of(&plain_cpu).median,
        1e6 / Spread::of(&receiver_cpu).median,
        1e6 / Spread::of(&plain_cpu).median,
    )?;
    writeln!(
        w,
        "- Every acknowledged event was found in the store after each run: {}.",
        max["every_acknowledged_event_stored"]
    )?;
    writeln!(
        w,
        "- Open loop at {half:.0} requests/s ({OPEN_LOOP_CONNECTIONS} connections, latency from the moment each request was due): achieved {}, {} failed.",
        fmt_spread(&Spread::of(&open_rates), "/s", 0), open_failed
    )?;
    writeln!(
        w,
        "\n| connections | receiver events/s | plain req/s | receiver / plain | peak memory |"
    )?;
    writeln!(w, "|---|---|---|---|---|")?;
    for entry in root["receiver_connections"]
        .as_array()
        .into_iter()
        .flatten()
    {
        writeln!(
            w,
            "| {} | {:.0} | {:.0} | {:.3} | {:.1} MiB |",
            entry["connections"],
            entry["receiver_rate"]["median"]
                .as_f64()
                .unwrap_or(f64::NAN),
            entry["plain_rate"]["median"].as_f64().unwrap_or(f64::NAN),
            entry["ratio"].as_f64().unwrap_or(f64::NAN),
            entry["peak_memory_mib"]["median"]
                .as_f64()
                .unwrap_or(f64::NAN),
        )?;
    }
    writeln!(w, "\n| events stored before | receiver events/s ({MAX_RATE_CONNECTIONS} conns) | ratio to 1 k | start-up | peak memory | bytes written / event |")?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    for entry in root["store_growth"]["sizes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        writeln!(
            w,
            "| {} (+ the events of earlier runs) | {} | {:.3} | {:.2} s | {:.1} MiB | {:.0} B |",
            entry["prefilled_events"],
            {
                let r = &entry["receiver_rate"];
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    r["median"].as_f64().unwrap_or(f64::NAN),
                    r["min"].as_f64().unwrap_or(f64::NAN),
                    r["max"].as_f64().unwrap_or(f64::NAN)
                )
            },
            entry["ratio_to_first"].as_f64().unwrap_or(f64::NAN),
            entry["startup_s"]["median"].as_f64().unwrap_or(f64::NAN),
            entry["peak_memory_mib"]["median"]
                .as_f64()
                .unwrap_or(f64::NAN),
            entry["written_bytes_per_event"]["median"]
                .as_f64()
                .unwrap_or(f64::NAN),
        )?;
    }
    if let Some(table) = root["sender"]["postgres"]["table"].as_str() {
        writeln!(w, "\n## Sender on PostgreSQL vs SQLite (same run)\n")?;
        writeln!(w, "Worker processes of `sender run`'s engine; CPU from `/proc` per delivery, of the workers together and of the whole PostgreSQL cluster; round trips = statements the workers sent (a pipelined BEGIN/record/COMMIT counts one).\n")?;
        writeln!(w, "```\n{table}\n```")?;
    }
    writeln!(w, "\n## How it was measured\n")?;
    writeln!(w, "- Pinning: {}.", context.pinning.description)?;
    writeln!(w, "- Peak memory: `VmHWM` from `/proc/PID/status` of the receiver process, read at the end of each run (a fresh process per run).")?;
    writeln!(w, "- The sender figures come from `sender_throughput` (its own plain server and `wrk`, not pinned).")?;
    writeln!(w, "- verify figures: criterion medians (ns per verification) with criterion's 95% confidence interval of the median as the spread.")?;
    writeln!(w, "\nCommand lines:\n")?;
    for (kind, line) in &context.commands {
        writeln!(w, "- {kind}: `{line}`")?;
    }
    writeln!(w, "\n## Machine\n")?;
    for key in [
        "nproc",
        "cpu_model",
        "cpu_mhz",
        "memory",
        "disk",
        "kernel",
        "date",
        "load_average_at_start",
    ] {
        writeln!(w, "- {key}: {}", machine[key].as_str().unwrap_or_default())?;
    }
    writeln!(w, "- load_average_at_end: {}", load_end.trim())?;
    writeln!(
        w,
        "- block devices:\n\n```\n{}\n```",
        machine["block_devices"].as_str().unwrap_or_default()
    )?;
    std::fs::write(out.join("report.md"), md)?;
    log("wrote report.md and report.json");
    Ok(())
}
