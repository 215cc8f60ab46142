//! A fake Target URL whose answers a test controls.
//!
//! A real HTTP/1.1 server on `127.0.0.1:0` (hyper), running in the test's tokio runtime until
//! the [`FakeEndpoint`] is dropped. It records every request it receives (time, headers, exact
//! body bytes) before answering, and answers from a script (then a default): any status,
//! `Retry-After`, `Location`, a delay longer than the sender's response timeout.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::rng::Rng;

/// How the endpoint answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// A reply with this status and a small JSON body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: format!("{{\"status\":{status}}}"),
            delay: Duration::ZERO,
        }
    }

    /// 200.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Path and query.
    pub path: String,
    /// Headers, lowercase names, in order.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: Bytes,
    /// The status the endpoint answered it with (chosen as it arrived).
    pub status: u16,
}

impl Received {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The `eventId`s of the body, in order.
    pub fn event_ids(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .expect("events array")
            .iter()
            .map(|e| e["eventId"].as_str().expect("eventId").to_owned())
            .collect()
    }
}

#[derive(Debug)]
struct Shared {
    default: Reply,
    script: VecDeque<Reply>,
    received: Vec<Received>,
    /// Requests received and not yet answered.
    in_flight: usize,
    /// The most requests ever in flight at once.
    max_in_flight: usize,
    /// Per mille of the requests not scripted answered 500 instead of the default.
    failures_per_mille: u64,
    /// The generator that picks them.
    random: Rng,
}

/// The fake endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeEndpoint {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeEndpoint {
    /// Starts on `127.0.0.1:0`, answering 200.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts on a given address (a test that first finds the port closed).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake endpoint");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared {
            default: Reply::ok(),
            script: VecDeque::new(),
            received: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
            failures_per_mille: 0,
            random: Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(addr.port())),
        }));
        let server_shared = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = server_shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// Answers every request not scripted with `reply`.
    pub fn answer(&self, reply: Reply) {
        self.lock().default = reply;
    }

    /// Answers `per_mille` of the requests not scripted with 500, picked at random.
    pub fn fail_at_random(&self, per_mille: u64) {
        self.lock().failures_per_mille = per_mille;
    }

    /// Answers the next requests with these replies, in order, then with the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The most requests that were in the endpoint at once: received (body read) and not yet
    /// answered. With slow replies this is how many the client had in flight.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Waits (bounded) until at least `count` requests have arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} requests arrived within {timeout:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("endpoint lock")
    }
}

/// Takes one request off the in-flight count when dropped.
struct InFlight(Arc<Mutex<Shared>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.0.lock() {
            shared.in_flight -= 1;
        }
    }
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    // The lock is released before the delay: std Mutex, never held across an await.
    let reply = {
        let mut shared = shared.lock().expect("endpoint lock");
        let reply = match shared.script.pop_front() {
            Some(scripted) => scripted,
            None if shared.random.below(1000) < shared.failures_per_mille => Reply::status(500),
            None => shared.default.clone(),
        };
        shared.received.push(Received {
            at,
            path,
            headers,
            body,
            status: reply.status,
        });
        shared.in_flight += 1;
        shared.max_in_flight = shared.max_in_flight.max(shared.in_flight);
        reply
    };
    // Counted as answered when the reply is built, or when hyper drops this future because
    // the client went away during the delay.
    let _answered = InFlight(shared.clone());
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = hyper::Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    for (name, value) in &reply.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body)))
        .expect("valid response"))
}

/// A loopback URL on which nothing listens (a port just released), for "connection refused".
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A loopback address that accepts no connection in time: a listener with a backlog of 0
/// whose one queue slot is taken by a connection never accepted, so the kernel drops every
/// further SYN and a client's connect hangs until its own timeout. Dropping it frees the port.
pub struct Unresponsive {
    /// The address.
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<tokio::net::TcpStream>,
}

impl Unresponsive {
    /// Binds `127.0.0.1:0` with a backlog of 0 and fills the accept queue (bounded wait).
    pub async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let addr = socket.local_addr().expect("local addr");
        let listener = socket.listen(0).expect("listen");
        let mut queued = Vec::new();
        // Linux queues backlog + 1 connections; connect until one hangs (at most a few).
        for _ in 0..8 {
            match tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(error)) => panic!("filling the accept queue of {addr}: {error}"),
                Err(_) => {
                    return Self {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    }
                }
            }
        }
        panic!("{addr} kept accepting connections: the accept queue never filled");
    }

    /// `http://127.0.0.1:PORT/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }
}
