//! Accepted signed 1 KiB events per second through the receiver, against a plain hyper server
//! that answers 200 without work, both driven by the same closed-loop load generator in the
//! same run.
//!
//! ```sh
//! cd bench && cargo run --release --bin receiver_throughput -- [SECONDS] [CONNECTIONS]
//! ```
//!
//! Each of CONNECTIONS keep-alive connections sends its next request as soon as the previous
//! answer arrived. Every request carries one new ~1 KiB event signed with Standard Webhooks, so
//! every accepted request is one event stored durably (WAL, `synchronous=FULL`). The report
//! gives requests per second, p50 and p99 latency, the receiver's rate as a share of the plain
//! server's, the group-commit batch sizes from `/metrics`, and a check that every 200 is a
//! stored event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bench::{closed_loop, event_body, serve_plain, Measured};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use verify::{Authentication, Keyring, SigningSecret};

/// Time the load runs before measuring starts, so connections and caches are warm.
const WARMUP: Duration = Duration::from_millis(500);

/// Reads `GET /metrics` over a fresh connection.
async fn metrics_text(addr: SocketAddr) -> anyhow::Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `(le, cumulative count)` of the batch-size histogram, plus its sum and count.
fn batch_histogram(metrics: &str) -> (Vec<(String, u64)>, f64, u64) {
    let mut buckets = Vec::new();
    let mut sum = 0.0;
    let mut count = 0;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("receiver_commit_batch_requests_bucket{le=\"") {
            if let Some((le, value)) = rest.split_once("\"} ") {
                buckets.push((le.to_owned(), value.parse().unwrap_or(0)));
            }
        } else if let Some(value) = line.strip_prefix("receiver_commit_batch_requests_sum ") {
            sum = value.parse().unwrap_or(0.0);
        } else if let Some(value) = line.strip_prefix("receiver_commit_batch_requests_count ") {
            count = value.parse().unwrap_or(0);
        }
    }
    (buckets, sum, count)
}

/// The value of an unlabelled sample.
fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn report(name: &str, measured: &Measured) {
    println!(
        "{name:<34} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} failed, {:.1} s)",
        measured.rate(),
        measured.percentile_ms(0.50),
        measured.percentile_ms(0.99),
        measured.ok,
        measured.failed,
        measured.seconds
    );
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args
        .next()
        .map_or(Ok(5), |s| s.parse())
        .context("SECONDS")?;
    let connections: usize = args
        .next()
        .map_or(Ok(32), |s| s.parse())
        .context("CONNECTIONS")?;
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let keyring = Arc::new(Keyring::single(SigningSecret::generate()));
        println!(
            "receiver throughput: {connections} connections, {seconds} s per server, one ~{} B signed event per request",
            event_body("r", 0, 0).len()
        );

        let plain_listener = TcpListener::bind("127.0.0.1:0").await?;
        let plain_addr = plain_listener.local_addr()?;
        let plain = tokio::spawn(serve_plain(plain_listener));
        let baseline =
            closed_loop(plain_addr, Arc::clone(&keyring), "plain", connections, WARMUP, duration)
                .await?;
        plain.abort();
        report("plain hyper (200, no work)", &baseline);

        let dir = tempfile::Builder::new()
            .prefix("receiver-bench")
            .tempdir_in(std::env::current_dir()?)?;
        let db_path = dir.path().join("bench.db");
        let mut config = receiver::Config::for_tests(&db_path);
        config.authentication = Authentication::Signature(vec![(*keyring).clone()]);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(receiver::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let measured =
            closed_loop(addr, Arc::clone(&keyring), "receiver", connections, WARMUP, duration)
                .await?;
        report("receiver (verify + durable store)", &measured);
        let metrics = metrics_text(addr).await?;
        let _ = stop.send(());
        server.await??;

        println!(
            "receiver / plain: {:.0}% (goal: at least 50%)",
            100.0 * measured.rate() / baseline.rate()
        );
        let (buckets, sum, count) = batch_histogram(&metrics);
        let commit_seconds = metric_value(&metrics, "receiver_commit_seconds_sum");
        if count > 0 {
            println!(
                "group commit: {count} commits, {:.1} requests per commit on average, {:.2} ms per commit on average",
                sum / count as f64,
                1000.0 * commit_seconds / count as f64
            );
        }
        let mut previous = 0;
        let mut shown = Vec::new();
        for (le, cumulative) in &buckets {
            if *cumulative > previous {
                shown.push(format!("<={le}: {}", cumulative - previous));
            }
            previous = *cumulative;
        }
        println!("batch sizes (requests per commit): {}", shown.join(", "));
        let synchronous_full = "WAL, synchronous=FULL";
        let db = receiver::store::sqlite::SqliteReader::open(&db_path)?;
        let stored = receiver::store::EventQuery::count(&db, &receiver::store::EventFilter::default())?;
        println!(
            "durability: {stored} events stored ({synchronous_full}) for {} acknowledged in the measured window plus warm-up",
            measured.ok
        );
        anyhow::Ok(())
    })
}
