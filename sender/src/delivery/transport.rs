//! How a request goes on the wire: the [`Transport`] the engine sends through (a script in the
//! engine's unit tests), and [`HttpTransport`], HTTP/1.1 over TCP or TLS with the SPEC's
//! timeouts, one kept-alive connection per lane, every connect through the target guard.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use common::target_guard::{TargetGuard, TargetPolicy};
use common::target_url::TargetUrl;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::redaction::redacted_headers;
use super::tls::tls_connector;
use crate::config::{MAX_RESPONSE_BODY, RESPONSE_HEAD_BYTES};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("alm-webhooks-sender/", env!("CARGO_PKG_VERSION"));

/// A request ready to go on the wire.
#[derive(Clone)]
pub struct Outbound {
    /// The Target URL.
    pub url: TargetUrl,
    /// The webhook's own rule of where it may connect (`registry::Webhook::target_policy`):
    /// the connect follows the stricter of it and the transport's.
    pub target_policy: TargetPolicy,
    /// Headers besides `host`, `content-type`, `content-length` and `user-agent`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("url", &self.url)
            .field("target_policy", &self.target_policy)
            .field("headers", &redacted_headers(&self.headers))
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A response came.
    Response {
        /// Its status.
        status: u16,
        /// Its `Retry-After`, as sent.
        retry_after: Option<String>,
        /// The first bytes of its body, as text.
        head: String,
    },
    /// None came: the error, in words.
    Failed(String),
}

impl Answer {
    /// Whether it counts as delivered: any 2xx.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Response { status, .. } if (200..300).contains(status))
    }
}

/// Sends requests. `Lane` is a connection slot: one per request in flight.
pub trait Transport: Send + Sync + 'static {
    /// A connection slot (a kept-alive connection, or nothing yet).
    type Lane: Send + 'static;
    /// An empty slot.
    fn lane(&self) -> Self::Lane;
    /// Sends one request on `lane`, within the configured timeouts.
    fn send(
        &self,
        lane: &mut Self::Lane,
        request: &Outbound,
    ) -> impl Future<Output = Answer> + Send;
}

/// HTTP/1.1 over TCP (or TLS for `https`) with the SPEC timeouts; redirects are answers,
/// never followed.
#[derive(Clone)]
pub struct HttpTransport {
    connect_timeout: Duration,
    response_timeout: Duration,
    ca_file: Option<std::path::PathBuf>,
    /// Resolves each Target URL's host and checks every address before connecting to exactly
    /// those (`sender admin` beyond loopback refuses internal ones, and so does every
    /// transport for a webhook whose own rule says so).
    targets: TargetGuard,
    // Built on the first `https` request, so plain-HTTP runs never read certificates.
    tls: Arc<std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>>>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("ca_file", &self.ca_file)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport with these timeouts, trusting the system's CA certificates.
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            response_timeout,
            ca_file: None,
            targets: TargetGuard::default(),
            tls: Arc::default(),
        }
    }

    /// Connects only where `targets` allows (its policy, with its resolver).
    #[must_use]
    pub fn with_targets(mut self, targets: TargetGuard) -> Self {
        self.targets = targets;
        self
    }

    /// Also trusts the CA certificates of this PEM file (a test listener's self-signed one).
    pub fn with_ca_file(mut self, ca_file: Option<std::path::PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    pub(super) fn tls(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        self.tls
            .get_or_init(|| tls_connector(self.ca_file.as_deref()).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }
}

/// A kept-alive HTTP/1.1 connection to one origin.
#[derive(Default)]
pub struct HttpLane {
    connection: Option<LaneConnection>,
    /// The Target URL of the last request, prepared: a webhook's requests all go to the same
    /// URL, so it is prepared once per lane rather than once per request.
    target: Option<Arc<Target>>,
    /// The response timeout of the request under way. One timer per lane, moved forward with
    /// `reset` for each request: a later deadline is only noted in the registered timer, where
    /// a fresh timer per request would be inserted into and removed from the timer wheel.
    response_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A Target URL prepared for sending: the parts every request to it reuses.
struct Target {
    url: TargetUrl,
    /// The webhook's rule, which the connect follows too.
    policy: TargetPolicy,
    /// `scheme://authority`: what a kept-alive connection may be reused for.
    origin: String,
    host: hyper::header::HeaderValue,
    path: hyper::http::uri::PathAndQuery,
}

impl Target {
    fn of(url: &TargetUrl, policy: TargetPolicy) -> anyhow::Result<Self> {
        let host = hyper::header::HeaderValue::from_str(url.authority().as_str())
            .context("the Target URL's host is not a header value")?;
        Ok(Self {
            url: url.clone(),
            policy,
            origin: url.origin(),
            host,
            path: url.path_and_query(),
        })
    }
}

impl std::fmt::Debug for HttpLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = self.connection.as_ref().map(|c| c.origin.as_str());
        f.debug_struct("HttpLane").field("origin", &origin).finish()
    }
}

/// The connection's future (hyper's dispatcher) is driven by the attempt itself, not by a
/// task of its own: one task and two wake-ups fewer per request, which is most of the
/// engine's own cost at high rates.
struct LaneConnection {
    origin: String,
    /// The rule its addresses were checked under: reused only for targets under the same.
    policy: TargetPolicy,
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
    /// The driver has completed: the connection is gone and must not be polled again.
    ended: bool,
}

impl Transport for HttpTransport {
    type Lane = HttpLane;

    fn lane(&self) -> HttpLane {
        HttpLane::default()
    }

    async fn send(&self, lane: &mut HttpLane, request: &Outbound) -> Answer {
        match self.send_inner(lane, request).await {
            Ok(answer) => answer,
            Err(error) => {
                lane.connection = None;
                Answer::Failed(format!("{error:#}"))
            }
        }
    }
}

impl HttpTransport {
    async fn send_inner(&self, lane: &mut HttpLane, request: &Outbound) -> anyhow::Result<Answer> {
        let target = match &lane.target {
            Some(target) if target.url == request.url && target.policy == request.target_policy => {
                target.clone()
            }
            _ => {
                let target = Arc::new(Target::of(&request.url, request.target_policy)?);
                lane.target = Some(target.clone());
                target
            }
        };
        // A kept-alive connection is driven only during an exchange, so a close by the server
        // while it was idle (its keep-alive or header timeout) is seen only now: one poll of
        // the driver reads the end the server sent, and the connection is not reused.
        if let Some(connection) = lane.connection.as_mut() {
            connection.notice_close().await;
        }
        // A reused connection may still be closed by the server just as the request goes out;
        // the request then fails before anything was answered, so it is sent once more on a
        // new connection.
        let reused = matches!(&lane.connection, Some(c) if c.origin == target.origin && c.policy == target.policy && !c.ended && !c.sender.is_closed());
        if !reused {
            lane.connection = None;
        }
        match self.exchange(lane, &target, request).await {
            Err(error) if reused && is_stale_connection(&error) => {
                lane.connection = None;
                self.exchange(lane, &target, request).await
            }
            other => other,
        }
    }

    async fn exchange(
        &self,
        lane: &mut HttpLane,
        target: &Target,
        request: &Outbound,
    ) -> anyhow::Result<Answer> {
        if lane.connection.is_none() {
            // Boxed: connecting (TLS included) is the rare path, and keeping its large state
            // out of the attempt's future keeps every spawned attempt small.
            let connection = Box::pin(self.connect(target)).await?;
            lane.connection = Some(connection);
        }
        let Some(LaneConnection {
            sender,
            driver,
            ended,
            ..
        }) = lane.connection.as_mut()
        else {
            anyhow::bail!("no connection");
        };
        let mut builder = hyper::Request::post(target.path.clone())
            .header(hyper::header::HOST, target.host.clone())
            .header(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            )
            .header(
                hyper::header::USER_AGENT,
                hyper::header::HeaderValue::from_static(USER_AGENT),
            );
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outgoing = builder
            .body(Full::new(request.body.clone()))
            .context("building the request")?;
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(outgoing).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let closes = response
                .headers()
                .get(hyper::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let (head, complete) = read_head(response.into_body()).await?;
            Ok::<_, hyper::Error>((status, retry_after, head, closes || !complete))
        };
        let driven = async {
            tokio::pin!(exchange);
            if !*ended {
                tokio::select! {
                    biased;
                    result = &mut exchange => return result,
                    _ = driver.as_mut() => {}
                }
                // The connection ended (the server closed it). Its dispatcher is dropped, not
                // kept: a request it had not written yet then fails at once as canceled (and
                // goes out again on a new connection) instead of waiting in the dispatcher's
                // queue, which nobody reads any more, until the response timeout.
                *ended = true;
                *driver = Box::pin(std::future::ready(Ok(())));
            }
            exchange.await
        };
        let deadline = Instant::now() + self.response_timeout;
        let timer = lane
            .response_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().reset(deadline);
        let finished = tokio::select! {
            biased;
            result = driven => Some(result),
            () = timer.as_mut() => None,
        };
        match finished {
            None => {
                lane.connection = None;
                anyhow::bail!(
                    "response timeout: no complete response within {:?}",
                    self.response_timeout
                )
            }
            Some(Err(error)) => Err(anyhow::Error::new(error).context("HTTP exchange")),
            Some(Ok((status, retry_after, head, drop_connection))) => {
                if drop_connection {
                    lane.connection = None;
                }
                Ok(Answer::Response {
                    status,
                    retry_after,
                    head,
                })
            }
        }
    }
}

impl HttpTransport {
    async fn connect(&self, target: &Target) -> anyhow::Result<LaneConnection> {
        let https = target.url.is_https();
        let (authority, port) = (target.url.authority(), target.url.port());
        let host = target
            .url
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        // Resolved once and checked; the connect goes to exactly the addresses checked, so a
        // DNS answer that changed since the Target URL was saved cannot lead elsewhere. A
        // webhook whose URL came through pages reachable from other hosts is held to public
        // addresses here, whichever process delivers it.
        let guard = self.targets.at_least(target.policy);
        let by_webhook = guard.policy() != self.targets.policy();
        let connecting = async {
            let addresses = guard.addresses(host, port).await.map_err(|refused| {
                if by_webhook {
                    anyhow::anyhow!(
                        "{}: this webhook's Target URL was given through pages reachable from \
                         other hosts, so it is delivered to public addresses only (give the URL \
                         again with `sender webhooks edit --url` to allow it)",
                        refused.refused()
                    )
                } else {
                    anyhow::Error::new(refused)
                }
            })?;
            tokio::net::TcpStream::connect(addresses.as_slice())
                .await
                .map_err(anyhow::Error::from)
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "connect timeout: no connection to {authority} within {:?}",
                    self.connect_timeout
                )
            })?
            .map_err(|error| anyhow::anyhow!("connecting to {authority}: {error}"))?;
        stream.set_nodelay(true).ok();
        let (sender, driver) = if https {
            let server_name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
                    .with_context(|| format!("{host:?} is not a TLS server name"))?;
            // The TLS handshake counts against the connect timeout.
            let tls = tokio::time::timeout(
                self.connect_timeout,
                self.tls()?.connect(server_name, stream),
            )
            .await
            .map_err(|_| anyhow::anyhow!("TLS handshake timeout with {authority}"))?
            .with_context(|| format!("TLS handshake with {authority}"))?;
            handshake(TokioIo::new(tls)).await?
        } else {
            handshake(TokioIo::new(stream)).await?
        };
        Ok(LaneConnection {
            origin: target.origin.clone(),
            policy: target.policy,
            sender,
            driver,
            ended: false,
        })
    }
}

impl LaneConnection {
    /// Polls the driver once, without waiting: when the server closed the connection while it
    /// sat idle, the driver reads that end now and completes, and the connection is marked
    /// ended (its dispatcher dropped) so that no request is put on it.
    async fn notice_close(&mut self) {
        if self.ended {
            return;
        }
        let driver = &mut self.driver;
        let finished =
            std::future::poll_fn(|context| Poll::Ready(driver.as_mut().poll(context).is_ready()))
                .await;
        if finished {
            self.ended = true;
            self.driver = Box::pin(std::future::ready(Ok(())));
        }
    }
}

/// The boxed future that drives one HTTP/1.1 connection.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// HTTP/1.1 over an established stream: the request handle and the connection's driver.
async fn handshake<I>(io: I) -> anyhow::Result<(http1::SendRequest<Full<Bytes>>, Driver)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io).await.context("HTTP handshake")?;
    Ok((sender, Box::pin(connection)))
}

/// Whether an error looks like a kept-alive connection the server had already closed.
fn is_stale_connection(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_canceled() || e.is_incomplete_message() || e.is_closed())
    })
}

/// Reads the body, keeping its first bytes; stops (and reports it incomplete) past
/// [`MAX_RESPONSE_BODY`], as the connection then cannot be reused.
async fn read_head(mut body: hyper::body::Incoming) -> Result<(String, bool), hyper::Error> {
    let mut head: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            let room = RESPONSE_HEAD_BYTES.saturating_sub(head.len());
            head.extend_from_slice(&data[..data.len().min(room)]);
            if total > MAX_RESPONSE_BODY {
                return Ok((String::from_utf8_lossy(&head).into_owned(), false));
            }
        }
    }
    Ok((String::from_utf8_lossy(&head).into_owned(), true))
}

/// Sends one request now, outside the queue (for `webhooks test`), and gives the answer and
/// its latency.
pub async fn send_once(transport: &HttpTransport, request: &Outbound) -> (Answer, Duration) {
    let started = std::time::Instant::now();
    let mut lane = transport.lane();
    let answer = transport.send(&mut lane, request).await;
    (answer, started.elapsed())
}
