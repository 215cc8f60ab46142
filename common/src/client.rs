//! Sending one HTTP request and reading its answer, bounded in time and size: the one send
//! path of `sender replay` and of the inspector's Send again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Most bytes of an answer read before the request counts as failed.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How many bytes of an answer's body [`Answer::excerpt`] keeps.
pub const RESPONSE_EXCERPT_BYTES: usize = 200;

/// A plain-HTTP client (keep-alive, no delay), shareable between tasks.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client whose connects give up after `connect_timeout`.
pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// What came back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The transport error, when none did.
    pub error: Option<String>,
    /// From sending to the end of the answer, milliseconds.
    pub latency_ms: f64,
    /// The first [`RESPONSE_EXCERPT_BYTES`] of the answer, lossily decoded.
    pub excerpt: String,
}

impl Answer {
    /// A 2xx answer.
    pub fn acknowledged(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// POSTs `body` with `headers` (in this order) to `to`, within `timeout` for the whole exchange.
pub async fn post(
    client: &HttpClient,
    to: &http::Uri,
    headers: &[(String, String)],
    body: Bytes,
    timeout: Duration,
) -> Answer {
    let mut answer = Answer::default();
    let mut builder = http::Request::post(to.clone());
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = match builder.body(Full::new(body)) {
        Ok(request) => request,
        Err(error) => {
            answer.error = Some(format!("cannot build the request: {error}"));
            return answer;
        }
    };
    let sent = Instant::now();
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // The answer is read only up to a bound: a listener that streams forever must not
        // fill memory.
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("reading the answer: {error}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, body))) => {
            answer.status = Some(status);
            let excerpt = &body[..body.len().min(RESPONSE_EXCERPT_BYTES)];
            answer.excerpt = String::from_utf8_lossy(excerpt).into_owned();
        }
        Ok(Err(error)) => answer.error = Some(format!("{error:#}")),
        Err(_) => answer.error = Some(format!("no answer within {timeout:?}")),
    }
    answer.latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
    answer
}
