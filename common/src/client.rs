//! Sending one HTTP request and reading its answer, bounded in time and size: the one send
//! path of `sender replay` and of the inspector's Send again.
//!
//! Connections are made by [`GuardedConnector`]: the host is resolved once by a
//! [`TargetGuard`], every address checked against its policy, and the connection made to
//! exactly those addresses, so a DNS answer that changes after a page checked the target
//! cannot lead anywhere the policy refuses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::target_guard::TargetGuard;

/// Most bytes of an answer read before the request counts as failed.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How many bytes of an answer's body [`Answer::excerpt`] keeps.
pub const RESPONSE_EXCERPT_BYTES: usize = 200;

/// A plain-HTTP client (keep-alive, no delay), shareable between tasks.
pub type HttpClient = Client<GuardedConnector, Full<Bytes>>;

/// A client to any address (the command line's rule) whose connects give up after
/// `connect_timeout`.
pub fn http_client(connect_timeout: Duration) -> HttpClient {
    guarded_http_client(connect_timeout, TargetGuard::default())
}

/// A client that connects only where `guard` allows, giving up after `connect_timeout`
/// (resolution included).
pub fn guarded_http_client(connect_timeout: Duration, guard: TargetGuard) -> HttpClient {
    let connector = GuardedConnector {
        guard,
        connect_timeout,
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Opens TCP connections for [`HttpClient`] through a [`TargetGuard`]: resolve once, check
/// every address, connect to one of exactly those (in order), with no delay.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    guard: TargetGuard,
    connect_timeout: Duration,
}

/// The connect of [`GuardedConnector`].
pub type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, std::io::Error>> + Send>>;

impl tower_service::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Connecting {
        let guard = self.guard.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            use std::io::{Error, ErrorKind};
            let host = uri
                .host()
                .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the URL has no host"))?;
            let port = uri.port_u16().unwrap_or(80);
            let connecting = async {
                let addresses = guard
                    .addresses(host, port)
                    .await
                    .map_err(|refused| Error::new(ErrorKind::PermissionDenied, refused))?;
                TcpStream::connect(addresses.as_slice()).await
            };
            let stream = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::TimedOut,
                        format!("no connection to {host}:{port} within {timeout:?}"),
                    )
                })??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_guard::{TableResolver, TargetPolicy};
    use std::net::IpAddr;
    use std::sync::Arc;

    /// A listener on 127.0.0.1 that answers 200 and counts the connections it accepts.
    async fn counting_listener() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn a_name_that_rebinds_to_loopback_after_its_check_is_refused_at_connect() {
        let (listening, accepted) = counting_listener().await;
        let public: IpAddr = "203.0.113.7".parse().expect("address");
        let loopback: IpAddr = "127.0.0.1".parse().expect("address");
        let resolver = TableResolver::default()
            .with("rebinding.test", vec![vec![public], vec![loopback]])
            .with("internal.test", vec![vec![loopback]]);
        let guard = TargetGuard::new(TargetPolicy::PublicOnly).with_resolver(Arc::new(resolver));
        // The page's check sees the public address and passes.
        guard
            .check("rebinding.test", listening.port())
            .await
            .expect("the first answer is public");
        let client = guarded_http_client(Duration::from_secs(5), guard);
        for name in ["rebinding.test", "internal.test"] {
            let to: http::Uri = format!("http://{name}:{}/webhook", listening.port())
                .parse()
                .expect("uri");
            let answer = post(
                &client,
                &to,
                &[],
                Bytes::from_static(b"{}"),
                Duration::from_secs(5),
            )
            .await;
            let error = answer.error.unwrap_or_default();
            assert_eq!(answer.status, None, "{name}");
            assert!(
                error.contains(&format!("{name} resolves to 127.0.0.1, a loopback address")),
                "{name}: {error}"
            );
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "refused before connecting"
        );

        // Any address (loopback pages): the same name connects, to exactly what it resolved to.
        let resolver = TableResolver::default().with("internal.test", vec![vec![loopback]]);
        let client = guarded_http_client(
            Duration::from_secs(5),
            TargetGuard::new(TargetPolicy::AnyAddress).with_resolver(Arc::new(resolver)),
        );
        let to: http::Uri = format!("http://internal.test:{}/webhook", listening.port())
            .parse()
            .expect("uri");
        let answer = post(
            &client,
            &to,
            &[],
            Bytes::from_static(b"{}"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(answer.status, Some(200), "{answer:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
