//! Deliveries per second from the sender's engine to a plain hyper server that answers 200,
//! against `wrk` hitting the same server in the same run, with the ordering rule relaxed
//! (`--parallel N`, N connections).
//!
//! ```sh
//! apt-get install -y wrk     # the program tries this itself when wrk is missing and it runs as root
//! cd bench && CARGO_TARGET_DIR=../target-sender-bench cargo run --release --bin sender_throughput -- [EVENTS] [PARALLEL] [SECONDS]
//! ```
//!
//! 1. The plain server runs in a child process (this program with `--serve`), one runtime
//!    thread, keep-alive, reading each body and answering `200 {"received":1}`.
//! 2. `wrk -t1 -cPARALLEL -dSECONDS` POSTs a real event envelope (same size as the sender's) to
//!    it: the baseline rate.
//! 3. EVENTS real-time events are queued in a fresh SQLite state (not timed), then the engine
//!    delivers them with `parallel = PARALLEL` until the queue is empty: deliveries per second,
//!    every one recorded durably (request state + attempt row) as in production.
//! 4. Then the same with Standard Webhooks signing, to show what HMAC costs.
//! 5. For reference, a bare hyper client (the same POSTs on PARALLEL keep-alive connections,
//!    no queue, no bookkeeping): the ceiling of any hyper-based sender on this machine.
//!
//! The report gives the rates and the sender's share of wrk's; the goal is at least 70%.
//! `BENCH_SKIP_WRK=1` runs the sender alone (to profile it with `perf record`).
//!
//! Measured 2026-11-28 on the 2-core development machine (40 000 events, 32, 5 s), three runs
//! while it was otherwise quiet: wrk 135–169 k req/s, bare hyper client 110–121 k (72–81% of
//! wrk), sender 40–43 k deliveries/s (25–30%), with signing 33–41 k. While other builds ran
//! (load 6): wrk 45–63 k, sender 24–29 k (39–62%). The 70% goal is not met: besides the HTTP
//! exchange, every delivery costs an UPDATE and an INSERT in SQLite (group-committed), a task
//! and a timer, about 30 µs of CPU on a machine whose other core runs the server.

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sender::config::DeliveryConfig;
use sender::delivery::{Engine, Mode};
use sender::manage::WebhookChanges;
use sender::registry::AuthMethod;
use sender::store::sqlite::SqliteState;
use sender::store::Queue;
use sender::store::Registry;
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve();
    }
    let events: usize = args.first().map_or(Ok(40_000), |a| a.parse())?;
    let parallel: usize = args.get(1).map_or(Ok(32), |a| a.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(5), |a| a.parse())?;
    let wrk = ensure_wrk()?;

    let mut server = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the plain server")?;
    let addr = {
        use std::io::BufRead as _;
        let stdout = server.stdout.take().context("server stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        line.trim().to_owned()
    };
    let url = format!("http://{addr}/webhook");
    let result = measure(&wrk, &url, events, parallel, seconds);
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn measure(
    wrk: &str,
    url: &str,
    events: usize,
    parallel: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let sample_body = sample_body();
    // BENCH_SKIP_WRK=1 runs the sender alone, for profiling it (perf record -p PID).
    let wrk_rate = if std::env::var_os("BENCH_SKIP_WRK").is_some() {
        f64::NAN
    } else {
        run_wrk(wrk, url, parallel, seconds, &sample_body)?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bare = runtime.block_on(run_bare_client(url, events, parallel, &sample_body))?;
    let plain = runtime.block_on(run_sender(url, events, parallel, AuthMethod::None))?;
    let signed = runtime.block_on(run_sender(url, events, parallel, AuthMethod::Signature))?;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("sender throughput ({cores} cores; plain hyper server in its own process, 1 thread)");
    println!(
        "  body: {} bytes (one real-time event envelope)",
        sample_body.len()
    );
    println!("  wrk -t1 -c{parallel} -d{seconds}s            {wrk_rate:>10.0} req/s");
    println!(
        "  bare hyper client, {parallel} connections      {bare:>10.0} req/s  ({:.0}% of wrk; no queue, no signing)",
        bare / wrk_rate * 100.0
    );
    for (label, rate) in [("none", plain), ("standard-webhooks", signed)] {
        println!(
            "  sender --parallel {parallel}, auth {label:<18} {rate:>10.0} deliveries/s  ({:.0}% of wrk)",
            rate / wrk_rate * 100.0
        );
    }
    println!("  goal: >= 70% of wrk");
    Ok(())
}

/// A realistic one-event body, the size the sender sends.
fn sample_body() -> Vec<u8> {
    let kind = verify::lookup("COURSE_ENROLLMENT").expect("in the catalogue");
    verify::EventGenerator::new(1)
        .envelope(1010, kind, 1, 1_795_824_000_000)
        .to_bytes()
}

/// Queues `events` real-time events and times the engine delivering them all.
async fn run_sender(
    url: &str,
    events: usize,
    parallel: usize,
    auth: AuthMethod,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let state = Arc::new(SqliteState::open(&dir.path().join("sender.db"))?);
    let webhook = WebhookChanges {
        name: Some("bench".into()),
        url: Some(url.parse().expect("a Target URL")),
        events: Some("all".into()),
        auth: Some(auth),
        ..WebhookChanges::default()
    }
    .create(0)
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    state.insert_webhook(&webhook)?;
    let kind = verify::lookup("COURSE_ENROLLMENT").expect("in the catalogue");
    bench::enqueue_events(&*state, &webhook, kind, events)?;
    let config = DeliveryConfig {
        parallel,
        ..DeliveryConfig::default()
    };
    let engine = Engine::http(state.clone(), config);
    let started = Instant::now();
    let report = engine
        .run(
            Mode::Drain(vec![webhook.id.clone()]),
            std::future::pending(),
        )
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let counts = state.counts(None)?;
    if counts.delivered as usize != events || !report.disabled.is_empty() {
        bail!("only {} of {events} delivered", counts.delivered);
    }
    Ok(events as f64 / elapsed)
}

/// The same POSTs from hyper's client with nothing else: `parallel` keep-alive connections,
/// each sending its next request when the previous answer is in. The ceiling for any sender
/// built on hyper on this machine.
async fn run_bare_client(
    url: &str,
    requests: usize,
    parallel: usize,
    body: &[u8],
) -> anyhow::Result<f64> {
    let uri: hyper::Uri = url.parse()?;
    let authority = uri.authority().context("authority")?.clone();
    let body = Bytes::copy_from_slice(body);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..parallel {
        let count = requests / parallel + usize::from(lane < requests % parallel);
        let (authority, body) = (authority.clone(), body.clone());
        tasks.spawn(async move {
            let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            for _ in 0..count {
                let request = Request::post("/webhook")
                    .header("host", authority.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let response = sender.send_request(request).await?;
                response.into_body().collect().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

/// Finds wrk, installing it with apt-get when missing and running as root.
fn ensure_wrk() -> anyhow::Result<String> {
    let found = |name: &str| Command::new(name).arg("--version").output().is_ok();
    if found("wrk") {
        return Ok("wrk".into());
    }
    eprintln!("wrk not found; trying `apt-get install -y wrk`");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status();
    if found("wrk") {
        return Ok("wrk".into());
    }
    bail!("this benchmark needs wrk as its baseline load generator: apt-get install -y wrk (Debian/Ubuntu)")
}

/// Runs wrk POSTing `body` and returns its requests per second.
fn run_wrk(
    wrk: &str,
    url: &str,
    connections: usize,
    seconds: u64,
    body: &[u8],
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    let body = String::from_utf8_lossy(body)
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{body}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    let output = Command::new(wrk)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx answers:\n{text}");
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

/// The plain server: one runtime thread, keep-alive, read the body, answer 200.
fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"received\":1}",
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
