//! Serving a page server: binding its address, choosing its token, the accept loop (plain or
//! TLS) with a graceful stop, bounded form bodies, and the check that a state-changing request
//! comes from the pages themselves. Written once for the receiver's inspector and the sender's
//! admin pages.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{text, ClientAddress, Token, WebBody};

/// How long draining waits for open pages at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a client may take to send a request head (and, over TLS, its handshake).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handle` on `listener` (over TLS with `tls`) until `shutdown` resolves, then lets
/// open requests finish for a moment (open streams are cut after [`SHUTDOWN_GRACE`]). Every
/// request carries the client's [`ClientAddress`] in its extensions.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handle: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<WebBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: wait a little instead of spinning.
                    tracing::warn!(%error, "pages: accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, handle, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, handle, watcher).await,
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "pages: TLS handshake"),
                        Err(_) => tracing::debug!(%peer, "pages: TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("pages still open at shutdown were cut");
    }
}

/// Serves one connection (plain or TLS) with HTTP/1.
async fn serve_connection<S, H, F>(stream: S, peer: SocketAddr, handle: H, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<WebBody>> + Send + 'static,
{
    let client = ClientAddress(peer.ip());
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(client);
                let answer = handle(request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            }),
        );
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "page connection ended");
    }
}

/// Binds the address of the page server `what` (`"the inspector"`): the default address
/// falls back to a free port of the same host when taken; an address given explicitly must be
/// bound as given.
///
/// # Errors
/// An explicit address that cannot be bound, or no port at all.
pub async fn bind(what: &str, address: &str, explicit: bool) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(error) if explicit => {
            Err(error).with_context(|| format!("{what} cannot listen on {address}"))
        }
        Err(_) => {
            let host: SocketAddr = address
                .parse()
                .with_context(|| format!("the address of {what}, {address}"))?;
            TcpListener::bind(SocketAddr::new(host.ip(), 0))
                .await
                .with_context(|| format!("{what} cannot find a free port"))
        }
    }
}

/// Whether a page server's address is on the loopback interface.
///
/// # Errors
/// The address is not `IP:PORT`.
pub fn is_loopback(address: &str) -> anyhow::Result<bool> {
    let parsed: SocketAddr = address
        .parse()
        .map_err(|_| anyhow::anyhow!("{address:?} is not an IP:PORT address"))?;
    Ok(parsed.ip().is_loopback())
}

/// How a page server is reached: its address and token, as the flags gave them.
#[derive(Debug, Clone, Copy)]
pub struct TokenRule<'a> {
    /// The page server, for messages (`"the inspector"`).
    pub what: &'a str,
    /// The flag of the address (`--ui`).
    pub address_flag: &'a str,
    /// How to give a token (`--ui-token (or RECEIVER_UI_TOKEN)`).
    pub token_flags: &'a str,
}

/// The token of a page server at `address` (SPEC section 8, as Jupyter does it): the one
/// given, else a random one; an address beyond loopback needs one given.
///
/// # Errors
/// A malformed address or token, or a non-loopback address without a token.
pub fn choose_token(
    address: &str,
    given: Option<&str>,
    rule: TokenRule<'_>,
) -> anyhow::Result<Token> {
    let loopback = is_loopback(address).with_context(|| rule.address_flag.to_owned())?;
    match given {
        Some(token) => Token::given(token).with_context(|| rule.token_flags.to_owned()),
        None if !loopback => anyhow::bail!(
            "{} {address} is not a loopback address: give {} a token with {} to serve it there",
            rule.address_flag,
            rule.what,
            rule.token_flags
        ),
        None => Token::random(),
    }
}

/// Reads a urlencoded form body of at most `max_bytes`.
///
/// # Errors
/// A 413 answer when the form is larger.
pub async fn read_form(
    body: Incoming,
    max_bytes: usize,
) -> Result<Vec<(String, String)>, Response<WebBody>> {
    let bytes = read_body(body, max_bytes).await?;
    Ok(super::parse_query(&String::from_utf8_lossy(&bytes)))
}

/// Reads a request body of at most `max_bytes`.
///
/// # Errors
/// A 413 answer when the body is larger.
pub async fn read_body(
    body: Incoming,
    max_bytes: usize,
) -> Result<bytes::Bytes, Response<WebBody>> {
    Ok(http_body_util::Limited::new(body, max_bytes)
        .collect()
        .await
        .map_err(|_| {
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 the request body is too large\n".to_owned(),
            )
        })?
        .to_bytes())
}

/// The 404 of every page server.
pub fn not_found() -> Response<WebBody> {
    text(StatusCode::NOT_FOUND, "404 not found\n".to_owned())
}

/// Whether a request comes from a page of this same server: the browser says so in
/// `Sec-Fetch-Site: same-origin`, or its `Origin` names the server it was sent to (`Host`).
/// Pages cannot set either header themselves, so a form posted from another site is told
/// apart even where the SameSite cookie would not already stay home. Browsers send
/// `Sec-Fetch-Site` to trustworthy origins only (loopback, HTTPS), so a page reached by name
/// over plain HTTP (`--ui 0.0.0.0:8081` opened as `http://box:8081/`) rests on `Origin`; that
/// is why every answer carries [`super::REFERRER_POLICY`] (`same-origin`): with `no-referrer`
/// browsers send `Origin: null`.
pub fn same_origin(parts: &http::request::Parts) -> bool {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    if header("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://") == Some(host)
                || origin.strip_prefix("https://") == Some(host)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_beyond_loopback_must_be_given() {
        let rule = TokenRule {
            what: "the pages",
            address_flag: "--listen",
            token_flags: "--token",
        };
        assert!(choose_token("127.0.0.1:8082", None, rule).is_ok());
        let error = choose_token("0.0.0.0:8082", None, rule).expect_err("needs a token");
        assert!(error.to_string().contains("--token"), "{error}");
        assert_eq!(
            choose_token("0.0.0.0:8082", Some("abcdefghij-123456"), rule)
                .expect("given")
                .expose(),
            "abcdefghij-123456"
        );
        assert!(choose_token("localhost", None, rule).is_err());
        assert!(choose_token("127.0.0.1:1", Some("a b"), rule).is_err());
        let short =
            choose_token("127.0.0.1:1", Some("abcdefghij-1234"), rule).expect_err("15 characters");
        assert!(
            format!("{short:#}").contains("--token: the token must have at least 16 characters"),
            "{short:#}"
        );
    }

    #[test]
    fn origin_must_name_the_host() {
        let parts = |origin: Option<&str>| {
            let mut builder = http::Request::post("/").header("host", "127.0.0.1:8082");
            if let Some(origin) = origin {
                builder = builder.header("origin", origin);
            }
            builder.body(()).expect("request").into_parts().0
        };
        assert!(same_origin(&parts(Some("http://127.0.0.1:8082"))));
        assert!(!same_origin(&parts(Some("http://evil.example"))));
        assert!(!same_origin(&parts(Some("null"))));
        assert!(!same_origin(&parts(None)));
        let fetched = http::Request::post("/")
            .header("sec-fetch-site", "same-origin")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        assert!(same_origin(&fetched));
    }
}
