//! `--forward-to`: the durable inbox. Every request that stored a new event is forwarded to the
//! team's own app, byte for byte, strictly in order and one at a time, until the app answers
//! 2xx; retried with exponential backoff while the app is down or failing.
//!
//! Guarantees, and their limits:
//! - never lost: the forward job is committed in the same transaction as the request (see
//!   [`crate::store`]), so a 2xx to the sender means "stored AND queued"; the job is marked done
//!   only after the app's 2xx, so a crash or restart at any moment leaves it pending;
//! - in order: jobs go in commit order, the next only after the previous was marked done;
//! - at least once: a crash between the app's 2xx and the mark re-sends that one request after
//!   the restart (the app deduplicates on `(accountId, eventId)`, as the receiver does);
//! - head of line: a request the app keeps refusing (any non-2xx, 4xx included) is retried
//!   forever and holds back the ones after it, as ordering demands; the metrics and the log
//!   show it;
//! - not forwarded: refused requests, and requests whose events were all duplicates (their
//!   events went with the request that first stored them);
//! - headers: the original ones minus hop-by-hop and framing headers, `host`, and
//!   `authorization`, which the store keeps redacted, so Basic credentials cannot be replayed
//!   (give the app its own check, or re-sign with `--forward-signature-file`). Re-signing
//!   replaces the signature headers with fresh ones (new timestamp at every attempt, the
//!   original `webhook-id` kept);
//! - plain `http://` targets only: the app usually sits on the same host or network; put a
//!   TLS proxy in front for anything else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use verify::headers::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use verify::{Headers as _, Keyring};

use crate::metrics::Metrics;
use crate::store::{ForwardJob, ForwardQueue};

/// Default first retry delay.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(1);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// Default deadline for the TCP connection to the app.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for the app's answer (its head) once connected.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle forwarder looks at the queue even without a wake-up (a safety net).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Most bytes of an answer body read (and dropped) so its connection can be reused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Hop-by-hop headers (RFC 9110 section 7.6.1) and framing headers belong to one connection;
/// `host` names the receiver; `authorization` is stored redacted. None of them is forwarded.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "expect",
    "proxy-authorization",
    "proxy-authenticate",
    "authorization",
];

/// Backoff between attempts: `min`, doubling, capped at `max`. Pure, so it is unit-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min: DEFAULT_RETRY_MIN,
            max: DEFAULT_RETRY_MAX,
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` failures in a row (1 for the first). A `Retry-After` the
    /// app sent wins when it is longer, still capped at `max`.
    pub fn next_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let backoff = self
            .min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        retry_after.map_or(backoff, |asked| asked.max(backoff).min(self.max))
    }
}

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// The app's URL (`http://` only).
    pub url: Uri,
    /// Re-sign each request with this keyring instead of passing the original signature on.
    pub signing: Option<Keyring>,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Deadline for connecting.
    pub connect_timeout: Duration,
    /// Deadline for the answer once the request is sent.
    pub response_timeout: Duration,
}

impl ForwardConfig {
    /// Forwarding to `url` with the default timeouts and backoff, original headers.
    pub fn new(url: Uri) -> Self {
        Self {
            url,
            signing: None,
            retry: RetryPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

/// Reads a `--forward-to` value.
///
/// # Errors
/// Not a URL, not `http://`, or no host.
pub fn parse_forward_url(text: &str) -> anyhow::Result<Uri> {
    // Credentials in the URL would be logged with it; refuse without quoting it back.
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    if after_scheme
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
    {
        anyhow::bail!(
            "the forwarding URL carries credentials (user:password@host); forwarding sends no \
             credentials of its own: protect the app with --forward-signature-file instead"
        );
    }
    let url: Uri = text
        .parse()
        .map_err(|error| anyhow::anyhow!("{text:?} is not a URL: {error}"))?;
    match url.scheme_str() {
        Some("http") => {}
        Some("https") => anyhow::bail!(
            "{text:?}: only http:// targets are supported (forward to the app on the same \
             host or network, or put a TLS proxy in front of it)"
        ),
        _ => anyhow::bail!("{text:?} is not an http:// URL"),
    }
    if url.host().is_none_or(str::is_empty) {
        anyhow::bail!("{text:?} names no host");
    }
    Ok(url)
}

/// The stored headers that go to the app: without hop-by-hop and framing headers, the headers
/// a `Connection` header names, and any name in `also_drop` (lowercase).
pub(crate) fn forwarded_headers(
    headers: &[(String, String)],
    also_drop: &[&str],
) -> Vec<(String, String)> {
    let connection_named: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    headers
        .iter()
        // Compared without regard to case and without a lowercase copy per header.
        .filter(|(name, _)| {
            let named = |list: &[&str]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
            !named(NOT_FORWARDED)
                && !named(also_drop)
                && !connection_named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
        })
        .cloned()
        .collect()
}

/// The forwarder task and the way to stop it.
pub(crate) struct Forwarder {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Starts forwarding the queue's jobs. An attempt in flight at shutdown may take `grace`
    /// to finish.
    pub(crate) fn spawn(
        queue: Arc<dyn ForwardQueue>,
        config: ForwardConfig,
        metrics: Arc<Metrics>,
        grace: Duration,
    ) -> Forwarder {
        let (stop, stopped) = watch::channel(false);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let worker = Worker {
            queue,
            config,
            metrics,
            client,
            grace,
        };
        let task = tokio::spawn(worker.run(stopped));
        Forwarder { stop, task }
    }

    /// Stops after the attempt in flight (bounded by the grace); what is not marked done
    /// stays pending for the next start.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Worker {
    queue: Arc<dyn ForwardQueue>,
    config: ForwardConfig,
    metrics: Arc<Metrics>,
    client: Client<HttpConnector, Full<Bytes>>,
    grace: Duration,
}

/// Resolves once a stop was asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps `delay`; `false` when a stop came first.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stopped(stop) => false,
    }
}

/// What one attempt got: the status and the `Retry-After` it asked for.
type Answer = (StatusCode, Option<Duration>);

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(url = %self.config.url, "forwarding");
        let mut store_failures = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.queue.next_pending().await {
                Ok(Some(job)) => {
                    store_failures = 0;
                    if !self.deliver(&job, &mut stop).await {
                        return;
                    }
                }
                Ok(None) => {
                    store_failures = 0;
                    tokio::select! {
                        () = self.queue.jobs_added() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        () = stopped(&mut stop) => return,
                    }
                }
                Err(error) => {
                    store_failures += 1;
                    tracing::warn!(%error, "reading the forwarding queue");
                    let delay = self.config.retry.next_delay(store_failures, None);
                    if !pause(delay, &mut stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends one job until the app answers 2xx, then marks it done. `false` when stopped
    /// first (the job stays pending).
    async fn deliver(&self, job: &ForwardJob, stop: &mut watch::Receiver<bool>) -> bool {
        let mut attempts = job.attempts;
        let mut failures = 0;
        loop {
            attempts += 1;
            let attempt = tokio::select! {
                answer = self.attempt(job) => answer,
                // An attempt in flight at shutdown gets the grace to finish.
                () = async { stopped(stop).await; tokio::time::sleep(self.grace).await } => return false,
            };
            let (error, retry_after) = match attempt {
                Ok((status, _)) if status.is_success() => break,
                Ok((status, retry_after)) => (format!("the app answered {status}"), retry_after),
                Err(error) => (error, None),
            };
            failures += 1;
            self.metrics.forward_failed();
            let delay = self.config.retry.next_delay(failures, retry_after);
            if failures == 1 || failures % 10 == 0 {
                tracing::warn!(job = job.job_id, attempts, %error, ?delay, "forwarding failed; will retry");
            } else {
                tracing::debug!(job = job.job_id, attempts, %error, ?delay, "forwarding failed; will retry");
            }
            self.queue.note_failure(job.job_id, attempts, error);
            if !pause(delay, stop).await {
                return false;
            }
        }
        // Delivered. Until the mark sticks the job would go again after a crash; keep trying
        // to mark it rather than send it twice now.
        let mut mark_failures = 0;
        loop {
            match self.queue.mark_forwarded(job.job_id, attempts).await {
                Ok(()) => {
                    self.metrics.forward_done();
                    tracing::debug!(job = job.job_id, attempts, "forwarded");
                    return true;
                }
                Err(error) => {
                    mark_failures += 1;
                    tracing::warn!(%error, job = job.job_id, "marking a forwarded request done");
                    let delay = self.config.retry.next_delay(mark_failures, None);
                    if !pause(delay, stop).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn attempt(&self, job: &ForwardJob) -> Result<Answer, String> {
        let request = self.build_request(job)?;
        let response = tokio::time::timeout(
            self.config
                .connect_timeout
                .saturating_add(self.config.response_timeout),
            self.client.request(request),
        )
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|error| format!("{:#}", anyhow::Error::new(error)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            // Seconds or an HTTP date, read as the sender's delivery engine reads them.
            .and_then(|text| common::parse::retry_after(text, std::time::SystemTime::now()));
        // Read (and drop) a bounded body, so the pooled connection can carry the next request.
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect();
        let _ = tokio::time::timeout(self.config.response_timeout, body).await;
        Ok((status, retry_after))
    }

    fn build_request(&self, job: &ForwardJob) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.config.url.clone());
        let mut signed = Vec::new();
        if let Some(keyring) = &self.config.signing {
            // Sign anew, keeping the original `webhook-id` so retries stay recognisable.
            let msg_id = job.headers.header(WEBHOOK_ID).map_or_else(
                || format!("msg_fwd_{}_{}", job.received_at_ms, job.request_id),
                |value| String::from_utf8_lossy(value).into_owned(),
            );
            signed = keyring.sign_headers(&msg_id, verify::unix_now(), &job.body);
        }
        // The original signature means nothing to the app: its headers go, and so does every
        // header the new signature sets (a body-hmac keyring sets no `webhook-id`, so the
        // original one stays then).
        let drop: Vec<&str> = [WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]
            .into_iter()
            .filter(|_| self.config.signing.is_some())
            .chain(signed.iter().map(|(name, _)| name.as_str()))
            .collect();
        for (name, value) in forwarded_headers(&job.headers, &drop)
            .into_iter()
            .chain(signed)
        {
            // A stored value that is no longer a valid header (kept lossily) is left out.
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(name), Ok(value)) => builder = builder.header(name, value),
                _ => tracing::debug!(header = %name, "header not forwarded: not valid"),
            }
        }
        builder
            .body(Full::new(job.body.clone()))
            .map_err(|error| format!("building the request: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        let check = |failures: u32, retry_after: Option<u64>, expected_ms: u64| {
            assert_eq!(
                policy.next_delay(failures, retry_after.map(Duration::from_secs)),
                Duration::from_millis(expected_ms),
                "failures {failures}, retry-after {retry_after:?}"
            );
        };
        check(1, None, 100);
        check(2, None, 200);
        check(3, None, 400);
        check(9, None, 25_600);
        check(10, None, 30_000);
        check(1_000, None, 30_000);
        check(1, Some(5), 5_000);
        check(9, Some(1), 25_600);
        check(1, Some(3_600), 30_000);
    }

    #[test]
    fn urls_must_be_plain_http_with_a_host() {
        assert!(parse_forward_url("http://127.0.0.1:9000/events").is_ok());
        assert!(parse_forward_url("http://app/").is_ok());
        let https = parse_forward_url("https://app/x").unwrap_err().to_string();
        assert!(https.contains("only http://"), "{https}");
        assert!(parse_forward_url("ftp://app/x").is_err());
        assert!(parse_forward_url("/just/a/path").is_err());
        assert!(parse_forward_url("not a url").is_err());
        let credentials = parse_forward_url("http://app:s3cret@app:9/x")
            .unwrap_err()
            .to_string();
        assert!(!credentials.contains("s3cret"), "{credentials}");
    }

    #[test]
    fn hop_by_hop_framing_host_and_authorization_stay_behind() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        let stored = pairs(&[
            ("host", "receiver:8080"),
            ("content-type", "application/json"),
            ("content-length", "42"),
            ("connection", "keep-alive, X-Trace"),
            ("x-trace", "hop"),
            ("Transfer-Encoding", "chunked"),
            ("authorization", "Basic [redacted]"),
            ("webhook-id", "msg_1"),
            ("x-custom", "a"),
            ("x-custom", "b"),
        ]);
        assert_eq!(
            forwarded_headers(&stored, &[]),
            pairs(&[
                ("content-type", "application/json"),
                ("webhook-id", "msg_1"),
                ("x-custom", "a"),
                ("x-custom", "b"),
            ])
        );
        assert_eq!(
            forwarded_headers(&stored, &["webhook-id"]),
            pairs(&[
                ("content-type", "application/json"),
                ("x-custom", "a"),
                ("x-custom", "b"),
            ])
        );
    }
}
