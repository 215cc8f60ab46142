//! The accept loop: a connection cap, optional TLS, hyper's HTTP/1 per connection, and the
//! shutdown order (stop accepting → drain in-flight requests within a deadline → close the
//! store).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::guard::{ConnectionWatch, StallBound, WatchedIo};
use crate::reload::LiveCertificate;
use crate::service::Shared;

/// Largest request head hyper buffers; anything bigger is refused by hyper with 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in one request head.
const MAX_HEADERS: usize = 100;
/// Pause after a failed `accept` (such as too many open files) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Builds the TLS acceptor from PEM files, with the ring provider and HTTP/1.1 only. Its
/// certificate is asked at every handshake from the [`LiveCertificate`] returned with it, which
/// a reload replaces.
///
/// # Errors
/// The files cannot be read, hold no certificate or key, or do not match.
pub(crate) fn tls_acceptor(
    files: &TlsFiles,
) -> anyhow::Result<(TlsAcceptor, Arc<LiveCertificate>)> {
    let certificate = Arc::new(LiveCertificate::load(files)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config =
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(
                Arc::clone(&certificate) as Arc<dyn rustls::server::ResolvesServerCert>
            );
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificate))
}

/// Serves until `shutdown` resolves, then drains. Does not close the store.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = shared.limits.clone();
    let connections = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        // Take a connection slot first: over the cap, clients wait in the listen backlog
        // instead of costing us memory.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Under TLS too, so the stall watch sees the socket's real progress.
        let stream = StallBound::new(stream, limits.write_stall_timeout);
        let shared = Arc::clone(&shared);
        let http = Arc::clone(&http);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            shared.metrics.connection_delta(1);
            match tls {
                None => serve_connection(stream, peer, shared.clone(), &http, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, shared.clone(), &http, watcher).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            shared.metrics.connection_delta(-1);
            drop(permit);
        });
    }
    // Stop accepting: the listening socket closes here, so new clients are refused by the
    // kernel while in-flight requests finish.
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: finishing requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "requests still in flight at the shutdown deadline were cut off");
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    http: &http1::Builder,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(ConnectionWatch::default());
    let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&watch)));
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let watch = Arc::clone(&watch);
        async move { Ok::<_, std::convert::Infallible>(shared.handle(&watch, request).await) }
    });
    let connection = http.serve_connection(io, service);
    if let Err(error) = watcher.watch(connection).await {
        // Client-side trouble (timeouts, resets, malformed requests): not our error.
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}
