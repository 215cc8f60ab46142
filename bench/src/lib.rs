//! Shared helpers of the benchmark programs: the signed 1 KiB event the load generators send,
//! a closed-loop and an open-loop HTTP/1.1 load generator, and the small statistics the
//! report needs (median, spread).
//!
//! The load generators run in their own process (`load_gen`), so `bench/run` can pin them to a
//! core of their own, away from the server under test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use verify::Keyring;

/// The scheme figures of the verify benchmark: (figure, ours, baseline), the function names
/// in each of its `schemes_<size>` groups. The benchmark prints them and `perf_report` reports
/// them, each a ratio measured in the same run.
pub const SCHEME_FIGURES: &[(&str, &str, &str)] = &[
    ("svix verify vs raw HMAC", "ours/svix", "raw_hmac/svix"),
    (
        "github verify vs raw HMAC",
        "ours/github",
        "raw_hmac/github",
    ),
    (
        "shopify verify vs raw HMAC",
        "ours/shopify",
        "raw_hmac/shopify",
    ),
    (
        "stripe verify vs raw HMAC",
        "ours/stripe",
        "raw_hmac/stripe",
    ),
    ("slack verify vs raw HMAC", "ours/slack", "raw_hmac/slack"),
    (
        "v1a sign vs raw Ed25519",
        "ours/v1a_sign",
        "raw_ed25519/sign",
    ),
    (
        "v1a verify vs raw Ed25519",
        "ours/v1a_verify",
        "raw_ed25519/verify",
    ),
];

/// The file, in criterion's output directory, where the verify benchmark writes the scheme
/// figures measured interleaved (ours and the baseline in alternating rounds).
pub const SCHEMES_FILE: &str = "schemes_interleaved.json";

/// Size of the `note` padding that makes an event about 1 KiB.
pub const PADDING: usize = 760;

/// The body of one request: one event of about 1 KiB with an id unique to `(run, connection,
/// sequence)`, so runs against the same store never collide as duplicates.
pub fn event_body(run: &str, connection: usize, sequence: u64) -> Vec<u8> {
    let event_id = event_id(run, connection, sequence);
    format!(
        r#"{{"accountId":1010,"events":[{{"eventId":"{event_id}","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-28T00:00:00.000Z","eventInfo":"1764288000000-1-2-0","data":{{"userId":4279332,"loId":"course:7374992","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateEnrolled":"2026-11-28T00:00:00.000Z","note":"{}"}}}}]}}"#,
        "x".repeat(PADDING)
    )
    .into_bytes()
}

/// A random-looking UUID (version 4 form) for `(run, connection, sequence)`: Learning Manager's
/// event ids are random UUIDs, so the stores see keys spread over the whole key space, as in
/// production, not a few sequential runs.
pub fn event_id(run: &str, connection: usize, sequence: u64) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let half = |salt: u8| {
        // `new()` has fixed keys: the same ids in every process of a build.
        let mut hasher = std::hash::DefaultHasher::new();
        (salt, run, connection, sequence).hash(&mut hasher);
        hasher.finish()
    };
    let (high, low) = (half(0), half(1));
    let bits = (u128::from(high) << 64 | u128::from(low)) & !(0xf000 << 64) & !(0xc << 60)
        | (0x4000 << 64)
        | (0x8 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What one load run measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Answers 200 inside the measured window.
    pub ok: u64,
    /// Any other answer inside the window.
    pub failed: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Latency of each 200, microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl Measured {
    /// Accepted requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    /// The latency at `fraction` (0.5 = p50), milliseconds.
    pub fn percentile_ms(&self, fraction: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies_us[index] as f64 / 1000.0
    }

    fn absorb(&mut self, ok: u64, failed: u64, latencies: Vec<u64>) {
        self.ok += ok;
        self.failed += failed;
        self.latencies_us.extend(latencies);
    }
}

/// Builds one signed POST of a fresh event.
fn signed_request(
    addr: SocketAddr,
    keyring: &Keyring,
    run: &str,
    connection: usize,
    sequence: u64,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let body = event_body(run, connection, sequence);
    let headers = keyring.sign_headers(
        &format!("msg_{run}_{connection}_{sequence}"),
        verify::unix_now(),
        &body,
    );
    let mut builder = Request::post("/webhook")
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (name, value) in &headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder.body(Full::new(Bytes::from(body)))?)
}

/// One keep-alive HTTP/1.1 connection.
async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Closed loop: each of `connections` keep-alive connections sends its next request as soon as
/// the previous answer arrived, for `warmup + duration`; only the last `duration` counts. The
/// rate it reaches is the server's maximum for that many clients.
///
/// # Errors
/// A connection cannot be made or breaks.
pub async fn closed_loop(
    addr: SocketAddr,
    keyring: Arc<Keyring>,
    run: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let keyring = Arc::clone(&keyring);
        let (measuring, stop) = (Arc::clone(&measuring), Arc::clone(&stop));
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            let mut sequence = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let request = signed_request(addr, &keyring, &run, connection, sequence)?;
                let started = Instant::now();
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if measuring.load(Ordering::Relaxed) {
                    if status == StatusCode::OK {
                        ok += 1;
                        latencies.push(started.elapsed().as_micros() as u64);
                    } else {
                        failed += 1;
                    }
                }
            }
            anyhow::Ok((ok, failed, latencies))
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let mut measured = Measured {
        seconds: started.elapsed().as_secs_f64(),
        ..Measured::default()
    };
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let (ok, failed, latencies) = task.await??;
        measured.absorb(ok, failed, latencies);
    }
    measured.latencies_us.sort_unstable();
    Ok(measured)
}

/// Open loop: requests are due at a fixed `rate` whatever the answers do, spread over
/// `connections` keep-alive connections that take the next due request when they are free.
/// A request's latency runs from the moment it was due, not from when a connection took it,
/// so a slow answer that delays the next requests shows in their latency too (no coordinated
/// omission).
///
/// # Errors
/// A connection cannot be made or breaks.
pub async fn open_loop(
    addr: SocketAddr,
    keyring: Arc<Keyring>,
    run: &str,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    // Due times go through one shared queue; an unbounded channel so the dispatcher never
    // waits for the server (that is the point of an open loop).
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let keyring = Arc::clone(&keyring);
        let due_rx = Arc::clone(&due_rx);
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            let mut sequence = 0u64;
            loop {
                // Held only for the `recv`, so free connections take due requests in turn.
                let Some(due) = due_rx.lock().await.recv().await else {
                    break;
                };
                sequence += 1;
                let request = signed_request(addr, &keyring, &run, connection, sequence)?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if status == StatusCode::OK {
                    ok += 1;
                    latencies.push(due.elapsed().as_micros() as u64);
                } else {
                    failed += 1;
                }
            }
            anyhow::Ok((ok, failed, latencies))
        }));
    }
    // Connections are up before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < duration {
        tick.tick().await;
        // Every request due by now, stamped with the moment it was due.
        let due_by_now = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due_by_now {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            let _ = due_tx.send(due);
            sent += 1;
        }
    }
    drop(due_tx);
    let mut measured = Measured::default();
    for task in tasks {
        let (ok, failed, latencies) = task.await??;
        measured.absorb(ok, failed, latencies);
    }
    // The window is the sending time plus the drain of what was queued at the end.
    measured.seconds = duration.as_secs_f64();
    measured.latencies_us.sort_unstable();
    Ok(measured)
}

/// The baseline server: hyper 1 answering `200 {}` after reading the body, no other work.
/// Same runtime, hyper and connection handling as the receiver, so the difference between the
/// two is what the receiver does per request. Serves until its task is dropped.
pub async fn serve_plain(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                let _ = request.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Queues `count` events of `kind` for `webhook` in the sender's state, in chunks of 5000 (one
/// transaction each), as `trigger --enqueue-only` would; not timed by the benchmarks.
///
/// # Errors
/// The state database refused a write.
#[cfg(feature = "sender")]
pub fn enqueue_events(
    state: &dyn sender::store::State,
    webhook: &sender::registry::Webhook,
    kind: &'static verify::EventKind,
    count: usize,
) -> anyhow::Result<()> {
    const CHUNK: usize = 5_000;
    let now = verify::unix_now() * 1000;
    let mut queued = 0;
    while queued < count {
        let recipe = sender::generate::EventRecipe {
            kind,
            count: CHUNK.min(count - queued),
            account_id: 1010,
            set: Vec::new(),
            data: None,
            seed: queued as u64,
            time_style: verify::TimeStyle::Iso,
        };
        let made = recipe.events(now);
        let deliveries = sender::generate::route(&made, 1010, kind, std::slice::from_ref(webhook));
        state.enqueue(&deliveries, now)?;
        queued += made.len();
    }
    Ok(())
}

/// Median, minimum and maximum of several runs' values.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; NaN for none.
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(pid, &[11, 12])
}

/// The sum of the clock-tick fields `fields` of `/proc/PID/stat` (counted after the command
/// name), in seconds; 0 when the process is gone.
fn stat_seconds(pid: u32, fields: &[usize]) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let values: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .iter()
        .filter_map(|index| values.get(*index)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// CPU seconds of every `postgres` process (the server and its backends), with what its
/// ended children used (the postmaster's `cutime` + `cstime`): a parallel worker or a backend
/// that exits between two looks is still counted, by the postmaster that reaped it.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(|pid| stat_seconds(pid, &[11, 12, 13, 14]))
        .sum()
}

/// CPU seconds (user and system) each thread of process `pid` has used, summed by thread
/// name, from `/proc/PID/task/*/stat` (Linux; empty elsewhere).
pub fn cpu_seconds_by_thread(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let ticks_per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let mut by_thread = std::collections::BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    for task in tasks.into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `tid (comm) state ppid … utime stime …`: the name may hold spaces, so split at the
        // last `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            *by_thread.entry(name).or_insert(0.0) += (user + system) / ticks_per_second;
        }
    }
    by_thread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle() {
        let spread = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert!(Spread::of(&[]).median.is_nan());
    }
}
