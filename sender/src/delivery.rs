//! The delivery engine: one worker per webhook works its queue in order, over HTTP/1.1.
//!
//! - A worker first takes the webhook's *lease* in the state database, so that `sender run`
//!   and a self-delivering `sender trigger` (or two `run`s) never deliver to the same webhook
//!   at once; the lease is renewed while the worker runs, and lapses when its process dies.
//! - Strict order (`parallel == 1`, Learning Manager's rule): the oldest pending request is
//!   sent, and nothing after it until it is acknowledged with a 2xx; a failed request waits for
//!   its retry time and the rest of the queue waits behind it.
//! - Relaxed order (`parallel > 1`, for load tests): up to `parallel` due requests in flight
//!   at once, each on its own keep-alive connection.
//! - Every attempt is recorded (with the request's next state) before another is chosen, so a
//!   crash repeats at most the attempts in flight, with the same body and `webhook-id`.
//! - Every record carries the lease's fence number; when the store answers that the lease
//!   changed hands (this worker stalled past it), the worker records nothing, sends nothing
//!   more and leaves the webhook to the new holder.
//!
//! The HTTP side is a [`Transport`], so the loop can also run under paused tokio time.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{DeliveryConfig, MAX_RESPONSE_BODY, RESPONSE_HEAD_BYTES};
use crate::lease::{next_look_ms, HolderWatch};
use crate::registry::{Signer, Status, Webhook, WebhookId};
use crate::retry::{millis, NextStep};
use crate::store::{
    AttemptRecord, Lease, LeaseToken, PendingRequest, Recorded, RequestState, State,
};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("alm-webhooks-sender/", env!("CARGO_PKG_VERSION"));

/// How long `run` waits before restarting a webhook's worker that failed.
const SERVE_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Longest an outcome waits to share a commit with others (relaxed order only).
const GROUP_COMMIT_MS: i64 = 5;

/// Most pending requests one query fetches (relaxed order): big pages mean few round trips
/// to the storage thread, and a page of bodies is still only a few hundred kilobytes.
const MAX_PAGE: usize = 1024;

/// A commit of outcomes under way: it gives back its records and what was written.
type Recording = tokio::task::JoinHandle<anyhow::Result<(Vec<AttemptRecord>, Recorded)>>;

/// The engine's clock, in epoch milliseconds.
///
/// In production it is the wall clock, read at every call: signatures carry
/// `webhook-timestamp`, leases are compared across processes and `Retry-After` dates are
/// absolute, so it must not drift from the system time (a monotonic clock stops during a
/// suspend and ignores NTP steps). Tests use a clock that follows tokio's, so paused time
/// moves it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `None` for the wall clock.
    tokio_base: Option<(i64, Instant)>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self { tokio_base: None }
    }

    /// A clock that reads `epoch_ms` now and then advances with tokio's clock (paused-time
    /// tests). Call inside a tokio runtime.
    pub fn starting_at(epoch_ms: i64) -> Self {
        Self {
            tokio_base: Some((epoch_ms, Instant::now())),
        }
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self.tokio_base {
            None => verify::unix_now_ms(),
            Some((base_ms, start)) => base_ms.saturating_add(millis(start.elapsed())),
        }
    }

    /// The tokio instant of an epoch millisecond (now, if it is past).
    fn instant_of(&self, epoch_ms: i64) -> Instant {
        let ahead = epoch_ms.saturating_sub(self.now_ms()).max(0);
        let ahead = Duration::from_millis(u64::try_from(ahead).unwrap_or(0));
        // A year stands for "practically never" where the sum would overflow `Instant`.
        let now = Instant::now();
        now.checked_add(ahead)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
    }
}

/// A request ready to go on the wire.
#[derive(Clone)]
pub struct Outbound {
    /// The Target URL.
    pub url: String,
    /// Headers besides `host`, `content-type`, `content-length` and `user-agent`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("url", &self.url)
            .field("headers", &redacted_headers(&self.headers))
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Headers for `Debug` output: credentials and signatures replaced, so that a request printed
/// while debugging never carries a password or a token that could be replayed.
pub(crate) fn redacted_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| {
            let hidden = name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("proxy-authorization")
                || name.to_ascii_lowercase().contains("signature");
            (
                name.as_str(),
                if hidden { "[redacted]" } else { value.as_str() },
            )
        })
        .collect()
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
    /// those (`sender admin` beyond loopback refuses internal ones).
    targets: common::target_guard::TargetGuard,
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
            targets: common::target_guard::TargetGuard::default(),
            tls: Arc::default(),
        }
    }

    /// Connects only where `targets` allows (its policy, with its resolver).
    #[must_use]
    pub fn with_targets(mut self, targets: common::target_guard::TargetGuard) -> Self {
        self.targets = targets;
        self
    }

    /// Also trusts the CA certificates of this PEM file (a test listener's self-signed one).
    pub fn with_ca_file(mut self, ca_file: Option<std::path::PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    fn tls(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        self.tls
            .get_or_init(|| tls_connector(self.ca_file.as_deref()).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }
}

/// Where Debian, Ubuntu, Alpine, Fedora and RHEL keep the system CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A TLS client trusting the system bundle (or `SSL_CERT_FILE`) and `ca_file`.
fn tls_connector(ca_file: Option<&std::path::Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    match std::env::var_os("SSL_CERT_FILE") {
        Some(path) => files.push(path.into()),
        None => files.extend(
            SYSTEM_CA_BUNDLES
                .iter()
                .map(std::path::PathBuf::from)
                .filter(|p| p.exists())
                .take(1),
        ),
    }
    let extra = ca_file.map(std::path::Path::to_path_buf);
    files.extend(extra.clone());
    for path in &files {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading CA certificates {}", path.display()))?;
        for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
            let certificate = certificate
                .with_context(|| format!("parsing CA certificates {}", path.display()))?;
            // A bundle may hold a certificate rustls rejects; the rest still count. The
            // file given with --ca-file must be usable, though.
            let added = roots.add(certificate);
            if Some(path) == extra.as_ref() {
                added.with_context(|| format!("CA certificate in {}", path.display()))?;
            }
        }
    }
    if roots.is_empty() {
        anyhow::bail!(
            "no trusted CA certificates for https: install ca-certificates, or set SSL_CERT_FILE or --ca-file"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A kept-alive HTTP/1.1 connection to one origin.
#[derive(Default)]
pub struct HttpLane {
    connection: Option<LaneConnection>,
    /// The Target URL of the last request, parsed: a webhook's requests all go to the same
    /// URL, so it is parsed once per lane rather than once per request.
    target: Option<Arc<Target>>,
    /// The response timeout of the request under way. One timer per lane, moved forward with
    /// `reset` for each request: a later deadline is only noted in the registered timer, where
    /// a fresh timer per request would be inserted into and removed from the timer wheel.
    response_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A Target URL taken apart for sending.
struct Target {
    url: String,
    uri: hyper::Uri,
    /// `scheme://authority`: what a kept-alive connection may be reused for.
    origin: String,
    authority: hyper::http::uri::Authority,
    host: hyper::header::HeaderValue,
    path: hyper::http::uri::PathAndQuery,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url.parse().context("invalid Target URL")?;
        let scheme = uri.scheme_str().unwrap_or("http");
        if scheme != "http" && scheme != "https" {
            anyhow::bail!("{scheme}:// is not http or https");
        }
        let authority = uri
            .authority()
            .context("the Target URL has no host")?
            .clone();
        let host = hyper::header::HeaderValue::from_str(authority.as_str())
            .context("the Target URL's host is not a header value")?;
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
        Ok(Self {
            url: url.to_owned(),
            origin: format!("{scheme}://{authority}"),
            uri,
            authority,
            host,
            path,
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
            Some(target) if target.url == request.url => target.clone(),
            _ => {
                let target = Arc::new(Target::parse(&request.url)?);
                lane.target = Some(target.clone());
                target
            }
        };
        // A reused connection may have been closed by the server while idle; the request then
        // fails before anything was answered, so it is sent once more on a new connection.
        let reused = matches!(&lane.connection, Some(c) if c.origin == target.origin && !c.ended && !c.sender.is_closed());
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
            let connection =
                Box::pin(self.connect(&target.origin, &target.authority, &target.uri)).await?;
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
            loop {
                tokio::select! {
                    biased;
                    result = &mut exchange => return result,
                    // The server closed the connection; the exchange fails on its own next.
                    _ = driver.as_mut(), if !*ended => *ended = true,
                }
            }
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
    async fn connect(
        &self,
        origin: &str,
        authority: &hyper::http::uri::Authority,
        uri: &hyper::Uri,
    ) -> anyhow::Result<LaneConnection> {
        let https = uri.scheme_str() == Some("https");
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        // Resolved once and checked; the connect goes to exactly the addresses checked, so a
        // DNS answer that changed since the Target URL was saved cannot lead elsewhere.
        let connecting = async {
            let addresses = self.targets.addresses(host, port).await?;
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
            origin: origin.to_owned(),
            sender,
            driver,
            ended: false,
        })
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

/// How the engine decides it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `sender run`: keep looking for work until shut down; batches go out on their interval.
    Serve,
    /// `sender trigger`: work the queues of these webhooks until they are empty (or the
    /// shutdown future fires); staged batches go out at once, as no more events will come.
    Drain(Vec<WebhookId>),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Webhooks left to another worker that held their lease, with its owner tag.
    pub handed_over: Vec<(WebhookId, String)>,
    /// Webhooks disabled at the end of retention.
    pub disabled: Vec<WebhookId>,
}

/// The delivery engine. Cheap to clone.
pub struct Engine<T: Transport> {
    state: Arc<dyn State>,
    transport: Arc<T>,
    config: DeliveryConfig,
    clock: Clock,
    owner: String,
}

impl<T: Transport> Clone for Engine<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            transport: self.transport.clone(),
            config: self.config.clone(),
            clock: self.clock,
            owner: self.owner.clone(),
        }
    }
}

impl Engine<HttpTransport> {
    /// An engine over HTTP with the system clock, to any address (the command line's rule).
    /// Call inside a tokio runtime.
    pub fn http(state: Arc<dyn State>, config: DeliveryConfig) -> Self {
        Self::http_guarded(state, config, common::target_guard::TargetGuard::default())
    }

    /// An engine over HTTP that connects only where `targets` allows (`sender admin`).
    pub fn http_guarded(
        state: Arc<dyn State>,
        config: DeliveryConfig,
        targets: common::target_guard::TargetGuard,
    ) -> Self {
        let transport = HttpTransport::new(config.connect_timeout, config.response_timeout)
            .with_ca_file(config.ca_file.clone())
            .with_targets(targets);
        Self::new(state, transport, config, Clock::system())
    }

    /// Reads the CA certificates now, when a `--ca-file` was given or a registered webhook
    /// uses https: a broken certificate file is a local configuration error to report at
    /// start, not a failed delivery that would count against the customer's webhook until its
    /// retention ends and it is disabled.
    ///
    /// # Errors
    /// The certificates cannot be read.
    pub fn check_tls(&self) -> anyhow::Result<()> {
        let webhooks = self.state.webhooks()?;
        let https = webhooks.iter().any(|webhook| {
            webhook
                .url
                .get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        });
        if https || self.config.ca_file.is_some() {
            self.transport.tls()?;
        }
        Ok(())
    }
}

/// Why a worker stopped.
enum WorkerExit {
    Idle,
    /// The webhook was retired, disabled or deleted meanwhile.
    Inactive,
    Stopped,
    HandedOver(String),
    Disabled,
    /// A commit found the lease's fence changed: another worker holds the webhook now.
    Fenced,
}

/// Completes when `signal` is raised; never without one.
async fn signalled(signal: Option<&tokio::sync::Notify>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

/// Runs a blocking storage call off the async threads.
async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(call)
        .await
        .context("a storage task panicked")?
}

impl<T: Transport> Engine<T> {
    /// An engine over any transport and clock (tests use paused time).
    pub fn new(state: Arc<dyn State>, transport: T, config: DeliveryConfig, clock: Clock) -> Self {
        Self {
            state,
            transport: Arc::new(transport),
            config,
            clock,
            owner: format!(
                "pid:{}:{}",
                std::process::id(),
                crate::registry::random_token(8)
            ),
        }
    }

    /// Names the program that runs this engine in its lease owner tag (`run/pid:…`,
    /// `trigger/pid:…`), so that whoever finds a lease taken can say who delivers.
    #[must_use]
    pub fn with_role(mut self, role: &str) -> Self {
        self.owner = format!("{role}/{}", self.owner);
        self
    }

    /// The engine's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Works the queue as `mode` says until done or until `shutdown` completes; in-flight
    /// attempts finish (within the timeouts) and are recorded before it returns.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn run(
        &self,
        mode: Mode,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<RunReport> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers: JoinSet<(WebhookId, anyhow::Result<WorkerExit>)> = JoinSet::new();
        let mut running: HashSet<WebhookId> = HashSet::new();
        let mut report = RunReport::default();
        let mut settled: HashSet<WebhookId> = HashSet::new();
        let mut first_error: Option<anyhow::Error> = None;
        // Serve mode: a worker that failed (storage trouble, an unusable stored signature file)
        // is started again only after a pause, so an error is not repeated every poll.
        let mut cooldown: Vec<(WebhookId, Instant)> = Vec::new();
        // Set while the state database cannot be read, so the outage is logged once.
        let mut outage: Option<()> = None;
        let work_signal = self.state.work_signal();
        tokio::pin!(shutdown);
        loop {
            cooldown.retain(|(_, until)| *until > Instant::now());
            let state = self.state.clone();
            let with_work = match blocking(move || state.webhooks_with_work()).await {
                Ok(ids) => {
                    if outage.take().is_some() {
                        tracing::warn!("the state database answers again; deliveries resume");
                    }
                    ids
                }
                // `run` outlives an outage of the state database: deliveries pause (nothing
                // is sent that cannot be recorded) and resume by themselves.
                Err(error) if matches!(mode, Mode::Serve) => {
                    if outage.is_none() {
                        tracing::error!("state database unavailable, deliveries paused: {error:#}");
                    }
                    outage = Some(());
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            let wanted: Vec<WebhookId> = match &mode {
                Mode::Serve => with_work,
                Mode::Drain(ids) => with_work
                    .into_iter()
                    .filter(|id| ids.contains(id) && !settled.contains(id))
                    .collect(),
            };
            for id in wanted {
                if cooldown.iter().any(|(cooling, _)| *cooling == id) {
                    continue;
                }
                if running.insert(id.clone()) {
                    let engine = self.clone();
                    let stop = stop_rx.clone();
                    let drain = matches!(mode, Mode::Drain(_));
                    workers.spawn(async move {
                        let result = engine.work(id.clone(), stop, drain).await;
                        (id, result)
                    });
                }
            }
            if matches!(mode, Mode::Drain(_)) && running.is_empty() {
                break;
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = workers.join_next(), if !workers.is_empty() => {
                    let finished = joined.context("a delivery worker panicked")?;
                    if matches!(mode, Mode::Serve) && finished.1.is_err() {
                        cooldown.push((finished.0.clone(), Instant::now() + SERVE_ERROR_PAUSE));
                    }
                    self.settle(finished, &mut running, &mut settled, &mut report, &mut first_error);
                    if matches!(mode, Mode::Serve) {
                        // `run` keeps going: the error is logged, the webhook tried again later.
                        first_error = None;
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval) => {}
                // Another process enqueued (PostgreSQL's NOTIFY): look now, not at the poll.
                () = signalled(work_signal.as_deref()) => {}
            }
        }
        let _ = stop_tx.send(true);
        while let Some(joined) = workers.join_next().await {
            let finished = joined.context("a delivery worker panicked")?;
            self.settle(
                finished,
                &mut running,
                &mut settled,
                &mut report,
                &mut first_error,
            );
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    fn settle(
        &self,
        (id, result): (WebhookId, anyhow::Result<WorkerExit>),
        running: &mut HashSet<WebhookId>,
        settled: &mut HashSet<WebhookId>,
        report: &mut RunReport,
        first_error: &mut Option<anyhow::Error>,
    ) {
        running.remove(&id);
        match result {
            Ok(
                WorkerExit::Idle | WorkerExit::Inactive | WorkerExit::Stopped | WorkerExit::Fenced,
            ) => {}
            Ok(WorkerExit::HandedOver(owner)) => {
                settled.insert(id.clone());
                if !report.handed_over.iter().any(|(w, _)| *w == id) {
                    report.handed_over.push((id, owner));
                }
            }
            Ok(WorkerExit::Disabled) => {
                settled.insert(id.clone());
                report.disabled.push(id);
            }
            Err(error) => {
                tracing::error!(webhook = %id, "delivery worker failed: {error:#}");
                settled.insert(id);
                first_error.get_or_insert(error);
            }
        }
    }

    /// One webhook's worker.
    ///
    /// When another live worker holds the lease, `trigger` (`drain`) leaves the webhook to it;
    /// `run` waits for the lease, looking again as [`crate::lease`] decides and saying who
    /// delivers once per holder. The wait stays in this task, so `run` does not start the
    /// webhook's worker again and again meanwhile.
    async fn work(
        &self,
        id: WebhookId,
        mut stop: watch::Receiver<bool>,
        drain: bool,
    ) -> anyhow::Result<WorkerExit> {
        let ttl_ms = millis(self.config.lease_ttl);
        let poll_ms = millis(self.config.poll_interval);
        let mut holders = HolderWatch::default();
        let look_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(look_timer);
        loop {
            let now = self.clock.now_ms();
            let lease = {
                let (state, id, owner) = (self.state.clone(), id.clone(), self.owner.clone());
                blocking(move || state.try_lease(&id, &owner, now, ttl_ms)).await?
            };
            let fence = match lease {
                Lease::Acquired { fence } => fence,
                Lease::HeldBy(held) => {
                    if holders.held_by(&held.owner) {
                        tracing::info!(webhook = %id, owner = %held.owner, "another worker delivers to this webhook");
                    }
                    if drain {
                        return Ok(WorkerExit::HandedOver(held.owner));
                    }
                    look_timer
                        .as_mut()
                        .reset(self.clock.instant_of(next_look_ms(&held, now, poll_ms)));
                    tokio::select! {
                        () = look_timer.as_mut() => {}
                        changed = stop.changed() => {
                            if changed.is_err() {
                                return Ok(WorkerExit::Stopped);
                            }
                        }
                    }
                    if *stop.borrow() {
                        return Ok(WorkerExit::Stopped);
                    }
                    continue;
                }
            };
            holders.acquired();
            let lease = LeaseToken {
                webhook_id: id.clone(),
                fence,
            };
            let result = self.work_leased(&lease, &mut stop, drain).await;
            let (state, lease_id, owner) = (self.state.clone(), id.clone(), self.owner.clone());
            match result {
                Ok(WorkerExit::Idle) => {
                    // Give the lease up only if the queue is still empty, in one transaction:
                    // work enqueued by a process that found the lease taken is then never
                    // stranded. Work found meanwhile is taken on under the same lease (the
                    // next `try_lease` renews it, fence unchanged).
                    if blocking(move || state.release_lease_if_idle(&lease_id, &owner)).await? {
                        return result;
                    }
                }
                Ok(WorkerExit::HandedOver(holder)) if !drain => {
                    // `run` lost the lease (it stalled past its expiry): wait for it again
                    // rather than end and be started anew; the warning named the holder.
                    holders.held_by(&holder);
                }
                // The lease changed hands under this worker: `run` takes it up again from the
                // top, under whatever fence it holds now, or waits for the new holder.
                Ok(WorkerExit::Fenced) if !drain => {}
                _ => {
                    blocking(move || state.release_lease(&lease_id, &owner)).await?;
                    return result;
                }
            }
        }
    }

    async fn work_leased(
        &self,
        lease: &LeaseToken,
        stop: &mut watch::Receiver<bool>,
        drain: bool,
    ) -> anyhow::Result<WorkerExit> {
        let id = &lease.webhook_id;
        let parallel = self.config.parallel.max(1);
        let strict = parallel == 1;
        let ttl_ms = millis(self.config.lease_ttl);
        let renew_every_ms = (ttl_ms / 3).max(1);
        let poll_ms = millis(self.config.poll_interval).max(1);
        let mut lanes: Vec<T::Lane> = (0..parallel).map(|_| self.transport.lane()).collect();
        let mut in_flight: JoinSet<(T::Lane, PendingRequest, i64, Answer)> = JoinSet::new();
        // Requests sent whose outcome is not yet committed: never fetched again meanwhile.
        let mut unsettled: HashSet<i64> = HashSet::new();
        // Outcomes waiting for the next commit, and the commit under way (one at a time, so
        // outcomes are written in the order they came and many share a transaction).
        let mut to_record: Vec<AttemptRecord> = Vec::new();
        let mut recording: Option<Recording> = None;
        let mut ready: VecDeque<PendingRequest> = VecDeque::new();
        // Relaxed order scans forward from here, so rows in flight are not fetched again.
        let mut cursor: i64 = 0;
        // Renewed on the first turn: `work` runs this again and again while it finds work
        // waiting, and the stored lease must not lapse across short passes.
        let mut lease_renewed_ms = self.clock.now_ms().saturating_sub(renew_every_ms);
        let mut webhook: Option<(Webhook, Signer, i64)> = None;
        let mut batch_due_ms: Option<i64> = Some(i64::MIN);
        let mut exit = WorkerExit::Stopped;
        // When the oldest outcome not yet handed to a commit came in.
        let mut recorded_wait_since: Option<i64> = None;
        // One timer for the whole loop, moved with `reset`: a fresh `sleep_until` on every
        // turn would register and cancel a timer per completed attempt.
        let wake_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(wake_timer);
        loop {
            let now = self.clock.now_ms();
            if *stop.borrow() {
                break;
            }
            if now - lease_renewed_ms >= renew_every_ms {
                let (state, lease_id, owner) = (self.state.clone(), id.clone(), self.owner.clone());
                let renewed =
                    blocking(move || state.try_lease(&lease_id, &owner, now, ttl_ms)).await?;
                match renewed {
                    Lease::Acquired { fence } if fence == lease.fence => {}
                    // Taken by another and given back meanwhile: what this worker holds in
                    // memory may be stale, so it starts over under the new fence.
                    Lease::Acquired { .. } => {
                        exit = WorkerExit::Fenced;
                        break;
                    }
                    Lease::HeldBy(held) => {
                        tracing::warn!(webhook = %id, owner = %held.owner, "lost the lease to another worker");
                        exit = WorkerExit::HandedOver(held.owner);
                        break;
                    }
                }
                lease_renewed_ms = now;
            }
            // Re-read the registration now and then, so edits, rotations and retirement take
            // effect while the worker runs.
            if webhook
                .as_ref()
                .is_none_or(|(_, _, read)| now - read >= poll_ms)
            {
                let (state, webhook_id) = (self.state.clone(), id.clone());
                match blocking(move || state.webhook(&webhook_id)).await? {
                    Some(found) if found.status == Status::Active => {
                        let signer = found
                            .auth
                            .signer()
                            .with_context(|| format!("webhook {id}"))?;
                        webhook = Some((found, signer, now));
                        // Another process may have staged batch events meanwhile, enough
                        // to fill a batch before the due time this worker knows of: look now.
                        batch_due_ms = Some(i64::MIN);
                        // Relaxed order scans forward from the cursor; retries that fell due
                        // behind it are found again from the start at least this often, even
                        // while new requests keep the forward scan busy.
                        cursor = 0;
                    }
                    _ => {
                        exit = WorkerExit::Inactive;
                        break;
                    }
                }
            }
            // Draining flushes whatever is staged at once, but only when something may be:
            // at the start and after each re-read of the registration (`batch_due_ms` is then
            // set), not on every turn of the loop, which would cost a transaction each.
            if batch_due_ms.is_some_and(|due| due <= now || drain) {
                let (state, webhook_id) = (self.state.clone(), id.clone());
                let (interval, size) = (
                    millis(self.config.batch_interval),
                    self.config.batch_size.max(1),
                );
                batch_due_ms =
                    blocking(move || state.flush_batches(&webhook_id, now, interval, size, drain))
                        .await?;
            }
            // Strict order: the next request is chosen only once the previous one's outcome is
            // on disk, so a failure holds back everything behind it, even across a crash.
            let may_send =
                !strict || (in_flight.is_empty() && recording.is_none() && to_record.is_empty());
            if may_send && !lanes.is_empty() && ready.is_empty() {
                let limit = if strict {
                    1
                } else {
                    (parallel * 16).min(MAX_PAGE)
                };
                let mut found = self.fetch(id, limit, strict, now, cursor).await?;
                if !strict && found.is_empty() && cursor > 0 {
                    // Back to the start for retries that fell due behind the cursor.
                    cursor = 0;
                    found = self.fetch(id, limit, strict, now, cursor).await?;
                }
                if !strict {
                    cursor = found.iter().map(|r| r.id).max().unwrap_or(cursor);
                }
                ready.extend(found.into_iter().filter(|r| !unsettled.contains(&r.id)));
            }
            let mut wake_ms = now + poll_ms.min(renew_every_ms);
            if let Some(due) = batch_due_ms {
                wake_ms = wake_ms.min(due);
            }
            while may_send && !lanes.is_empty() {
                let Some(front) = ready.front() else { break };
                if front.next_attempt_at_ms > now {
                    // Strict order: the head waits for its retry time and the rest behind it.
                    wake_ms = wake_ms.min(front.next_attempt_at_ms);
                    break;
                }
                if strict && !in_flight.is_empty() {
                    break;
                }
                // The lease as last renewed must still be well within its TTL when a request
                // leaves: a process that stalled since (SIGSTOP, a frozen VM) renews first, at
                // the top of the loop, and finds out whether another worker took over.
                if self.clock.now_ms() - lease_renewed_ms >= renew_every_ms * 2 {
                    wake_ms = now;
                    break;
                }
                let (Some(request), Some(mut lane)) = (ready.pop_front(), lanes.pop()) else {
                    break;
                };
                let Some((current, signer, _)) = webhook.as_ref() else {
                    break;
                };
                let started = self.clock.now_ms();
                let headers =
                    signer.headers(&request.msg_id, started.div_euclid(1000), &request.body);
                let outbound = Outbound {
                    url: current.url.clone(),
                    headers,
                    body: request.body.clone(),
                };
                let transport = self.transport.clone();
                unsettled.insert(request.id);
                in_flight.spawn(async move {
                    let answer = transport.send(&mut lane, &outbound).await;
                    (lane, request, started, answer)
                });
            }
            // Relaxed order commits outcomes in groups (a commit costs about the same for one
            // row or a hundred); strict order commits each at once, as the next send waits on it.
            let group_full = to_record.len() >= parallel * 2 || in_flight.is_empty();
            let group_old = recorded_wait_since.is_some_and(|since| now - since >= GROUP_COMMIT_MS);
            if let (Some(since), false) = (recorded_wait_since, strict) {
                wake_ms = wake_ms.min(since + GROUP_COMMIT_MS);
            }
            if recording.is_none() && !to_record.is_empty() && (strict || group_full || group_old) {
                recorded_wait_since = None;
                let (state, records) = (self.state.clone(), std::mem::take(&mut to_record));
                let lease = lease.clone();
                recording = Some(tokio::task::spawn_blocking(move || {
                    state
                        .record(&lease, &records)
                        .map(|recorded| (records, recorded))
                }));
            }
            let busy = !in_flight.is_empty()
                || recording.is_some()
                || !ready.is_empty()
                || !to_record.is_empty();
            if !busy && batch_due_ms.is_none() {
                let (state, webhook_id) = (self.state.clone(), id.clone());
                match blocking(move || state.next_due(&webhook_id)).await? {
                    None => {
                        exit = WorkerExit::Idle;
                        break;
                    }
                    Some(due) => wake_ms = wake_ms.min(due.max(now)),
                }
            }
            wake_timer.as_mut().reset(self.clock.instant_of(wake_ms));
            let committed = async {
                match recording.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let mut done = vec![joined.context("an attempt task panicked")?];
                    while let Some(more) = in_flight.try_join_next() {
                        done.push(more.context("an attempt task panicked")?);
                    }
                    for (lane, request, started, answer) in done {
                        lanes.push(lane);
                        let record = self.judge(&request, started, answer);
                        if strict && record.next != RequestState::Delivered {
                            // Later requests must not overtake the one that failed.
                            ready.clear();
                        }
                        to_record.push(record);
                    }
                    recorded_wait_since.get_or_insert(self.clock.now_ms());
                }
                result = committed => {
                    recording = None;
                    let (records, recorded) = result.context("a storage task panicked")??;
                    for record in &records {
                        unsettled.remove(&record.request_id);
                    }
                    if let Some(settled) = Self::settled(id, &records, recorded) {
                        exit = settled;
                        break;
                    }
                }
                () = wake_timer.as_mut() => {}
                _ = stop.changed() => {}
            }
        }
        // Let attempts in flight finish (the timeouts bound them) and record every outcome,
        // so a clean stop repeats nothing.
        if let Some(handle) = recording.take() {
            let (records, recorded) = handle.await.context("a storage task panicked")??;
            if let Some(settled) = Self::settled(id, &records, recorded) {
                exit = settled;
            }
        }
        while let Some(joined) = in_flight.join_next().await {
            let (_, request, started, answer) = joined.context("an attempt task panicked")?;
            to_record.push(self.judge(&request, started, answer));
        }
        if !to_record.is_empty() && !matches!(exit, WorkerExit::Fenced) {
            let (state, records, token) = (self.state.clone(), to_record, lease.clone());
            let (records, recorded) = blocking(move || {
                state
                    .record(&token, &records)
                    .map(|recorded| (records, recorded))
            })
            .await?;
            if let Some(settled) = Self::settled(id, &records, recorded) {
                exit = settled;
            }
        }
        Ok(exit)
    }

    async fn fetch(
        &self,
        id: &WebhookId,
        limit: usize,
        strict: bool,
        now: i64,
        after_id: i64,
    ) -> anyhow::Result<Vec<PendingRequest>> {
        let (state, webhook_id) = (self.state.clone(), id.clone());
        blocking(move || state.pending(&webhook_id, limit, strict, now, after_id)).await
    }

    /// Turns an answer into the attempt's record and the request's next state.
    fn judge(&self, request: &PendingRequest, started_ms: i64, answer: Answer) -> AttemptRecord {
        let now = self.clock.now_ms();
        let attempt = request.attempts.saturating_add(1);
        let latency_ms = now.saturating_sub(started_ms);
        let success = answer.is_success();
        // The answer is taken apart, not cloned: this runs once per delivery.
        let (status, error, head, retry_after) = match answer {
            Answer::Response {
                status,
                retry_after,
                head,
            } => (Some(status), None, head, retry_after),
            Answer::Failed(error) => (None, Some(error), String::new(), None),
        };
        let next = if success {
            RequestState::Delivered
        } else {
            let wall =
                std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0));
            let retry_after = retry_after
                .as_deref()
                .and_then(|value| common::parse::retry_after(value, wall));
            match self
                .config
                .retry
                .after_failure(attempt, retry_after, request.created_at_ms, now)
            {
                NextStep::RetryAt(at) => RequestState::RetryAt(at),
                NextStep::GiveUp => RequestState::Expired,
            }
        };
        // Inside the macros, so the text is only made when the event is logged.
        let outcome = || {
            status.map_or_else(
                || error.as_deref().unwrap_or_default().to_owned(),
                |s| s.to_string(),
            )
        };
        match next {
            RequestState::Delivered => tracing::info!(
                webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, status = outcome(),
                latency_ms, "delivered"
            ),
            RequestState::RetryAt(at) => tracing::warn!(
                webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, outcome = outcome(),
                latency_ms, response = %head, retry_in_ms = at - now, "attempt failed"
            ),
            RequestState::Expired => tracing::error!(
                webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, outcome = outcome(),
                latency_ms, "retention ended; giving up"
            ),
        }
        AttemptRecord {
            request_id: request.id,
            attempt,
            started_at_ms: started_ms,
            status,
            error,
            latency_ms,
            response_head: head,
            next,
        }
    }

    /// How a commit of `records` ends the worker, if it does: the lease changed hands (nothing
    /// was written), or a request's retention ended and `record` disabled the webhook in the
    /// same transaction.
    fn settled(
        id: &WebhookId,
        records: &[AttemptRecord],
        recorded: Recorded,
    ) -> Option<WorkerExit> {
        match recorded {
            Recorded::Fenced => {
                tracing::warn!(
                    webhook = %id,
                    outcomes = records.len(),
                    "the lease changed hands while this worker stalled; its outcomes are not recorded, the new holder sends those requests again"
                );
                Some(WorkerExit::Fenced)
            }
            Recorded::Written { expired_events } => {
                let expired = records.iter().find(|r| r.next == RequestState::Expired)?;
                Self::gave_up(id, expired.request_id, expired_events);
                Some(WorkerExit::Disabled)
            }
        }
    }

    /// Reports a webhook that `record` disabled because a request's retention ended.
    fn gave_up(id: &WebhookId, request_id: i64, expired_events: u64) {
        tracing::error!(
            webhook = %id,
            request = request_id,
            expired_events,
            "webhook disabled: retention ended"
        );
    }
}

/// Sends one request now, outside the queue (for `webhooks test`), and gives the answer and
/// its latency.
pub async fn send_once(transport: &HttpTransport, request: &Outbound) -> (Answer, Duration) {
    let started = std::time::Instant::now();
    let mut lane = transport.lane();
    let answer = transport.send(&mut lane, request).await;
    (answer, started.elapsed())
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
