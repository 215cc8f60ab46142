//! One attempt to forward a job: the request built from the stored one (headers filtered,
//! re-signed when asked), sent with the deadlines, and what came back kept as an
//! [`Attempt`] (status or error, latency, the answer's first KiB).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use verify::headers::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use verify::Headers as _;

use super::ForwardTarget;
use crate::store::forward::{Attempt, ForwardJob, ANSWER_EXCERPT_BYTES};

/// Most bytes of an answer body read (the first KiB kept, the rest dropped) so its connection
/// can be reused.
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

/// The HTTP client of one target, with the deadlines.
pub(crate) struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// What an attempt got: the kept record, and the `Retry-After` the app asked for.
pub(crate) struct Sent {
    pub(crate) attempt: Attempt,
    pub(crate) retry_after: Option<Duration>,
}

impl Sender {
    /// A client with these deadlines (connecting; the answer once connected).
    pub(crate) fn new(connect_timeout: Duration, response_timeout: Duration) -> Sender {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Sender {
            client,
            connect_timeout,
            response_timeout,
        }
    }

    /// Sends `job` to `target` once.
    pub(crate) async fn send(&self, target: &ForwardTarget, job: &ForwardJob) -> Sent {
        let at_ms = verify::unix_now_ms();
        let started = Instant::now();
        let result = self.exchange(target, job).await;
        let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
        let (status, error, answer, retry_after) = match result {
            Ok((status, answer, retry_after)) => (Some(status), None, answer, retry_after),
            Err(error) => (None, Some(error), Vec::new(), None),
        };
        Sent {
            attempt: Attempt {
                at_ms,
                status,
                error,
                latency_us,
                answer,
            },
            retry_after,
        }
    }

    async fn exchange(
        &self,
        target: &ForwardTarget,
        job: &ForwardJob,
    ) -> Result<(u16, Vec<u8>, Option<Duration>), String> {
        let request = build_request(target, job)?;
        let response = tokio::time::timeout(
            self.connect_timeout.saturating_add(self.response_timeout),
            self.client.request(request),
        )
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|error| format!("{:#}", anyhow::Error::new(error)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            // Seconds or an HTTP date, read as the sender's delivery engine reads them.
            .and_then(|text| common::parse::retry_after(text, std::time::SystemTime::now()));
        // A bounded body: its first KiB is kept, and reading it frees the pooled connection
        // for the next request. A body cut short or too long still leaves the status.
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect();
        let mut answer = match tokio::time::timeout(self.response_timeout, body).await {
            Ok(Ok(collected)) => collected.to_bytes().to_vec(),
            _ => Vec::new(),
        };
        answer.truncate(ANSWER_EXCERPT_BYTES);
        Ok((status, answer, retry_after))
    }
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

fn build_request(target: &ForwardTarget, job: &ForwardJob) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(target.url.clone());
    let mut signed = Vec::new();
    if let Some(keyring) = &target.signing {
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
        .filter(|_| target.signing.is_some())
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

#[cfg(test)]
mod tests {
    use super::*;

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
