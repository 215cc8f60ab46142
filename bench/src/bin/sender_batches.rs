//! Batch requests per second from the sender's engine: `COURSE_ENROLLMENT_BATCH` events go out
//! 100 to a request (`batch_size = 100`) to a fast sink that counts requests and events.
//! Prints one JSON line.
//!
//! ```sh
//! sender_batches [BATCHES] [PARALLEL]
//! ```
//!
//! BATCHES × 100 events are queued in a fresh SQLite state (not timed), then the engine drains
//! them (`Mode::Drain`, which sends staged batches at once, as `sender trigger` does): the rate
//! is requests the sink received per second of draining, each request recorded durably by the
//! sender as in production.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
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

/// Events per batch request.
const BATCH_SIZE: usize = 100;

/// Requests and events the sink saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    body_bytes: AtomicU64,
}

async fn sink(listener: TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let seen = Arc::clone(&seen);
                async move {
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|body| body.to_bytes().len())
                        .unwrap_or(0);
                    seen.requests.fetch_add(1, Ordering::Relaxed);
                    seen.body_bytes.fetch_add(body as u64, Ordering::Relaxed);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"received\":1}",
                    ))))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let parallel: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhook", listener.local_addr()?);
        let seen = Arc::new(Seen::default());
        tokio::spawn(sink(listener, Arc::clone(&seen)));

        let dir = tempfile::tempdir()?;
        let state = Arc::new(SqliteState::open(&dir.path().join("sender.db"))?);
        let webhook = WebhookChanges {
            name: Some("bench batches".into()),
            url: Some(url.parse()?),
            events: Some("COURSE_ENROLLMENT_BATCH".into()),
            auth: Some(AuthMethod::Signature),
            ..WebhookChanges::default()
        }
        .create(0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        state.insert_webhook(&webhook)?;
        let kind = verify::lookup("COURSE_ENROLLMENT_BATCH").expect("in the catalogue");
        let events = batches * BATCH_SIZE;
        bench::enqueue_events(&*state, &webhook, kind, events)?;
        let config = DeliveryConfig {
            parallel,
            batch_size: BATCH_SIZE,
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
        let seconds = started.elapsed().as_secs_f64();
        let counts = state.counts(None)?;
        let requests = seen.requests.load(Ordering::Relaxed);
        if !report.disabled.is_empty() || requests == 0 {
            bail!(
                "the batches were not delivered ({} requests seen, {counts:?})",
                requests
            );
        }
        println!(
            "{}",
            serde_json::json!({
                "batches_per_s": requests as f64 / seconds,
                "events_per_s": events as f64 / seconds,
                "requests": requests,
                "events": events,
                "mean_body_bytes": seen.body_bytes.load(Ordering::Relaxed) as f64 / requests as f64,
                "seconds": seconds,
                "parallel": parallel,
            })
        );
        anyhow::Ok(())
    })
}
