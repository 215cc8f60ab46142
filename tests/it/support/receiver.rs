//! Helpers to start receivers on port 0, in process or as real processes, and to talk to them
//! over real HTTP on loopback. Every wait is bounded.

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any single helper waits.
pub const WAIT: Duration = Duration::from_secs(15);

/// A receiver running inside the test process.
pub struct InProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The SQLite file (empty on a PostgreSQL store).
    pub store_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Starts `config` on `127.0.0.1:0`.
    pub async fn start(config: receiver::Config) -> InProcess {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (store_path, on_postgres) = match &config.store {
            common::store_location::StoreLocation::Sqlite(path) => (path.clone(), false),
            common::store_location::StoreLocation::Postgres(_) => (PathBuf::new(), true),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(receiver::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let receiver = InProcess {
            addr,
            store_path,
            stop: Some(stop),
            task: Some(task),
        };
        if on_postgres {
            // A PostgreSQL store creates its tables in the background: wait until it can
            // commit, so the test's own queries find them.
            let ready = wait_until(WAIT, || async {
                get(addr, "/healthz").await.status == StatusCode::OK
            })
            .await;
            assert!(ready, "the receiver's PostgreSQL store is ready");
        }
        receiver
    }

    /// Starts a quiet receiver with default settings on a store in `dir`.
    pub async fn start_in(dir: &Path) -> InProcess {
        InProcess::start(receiver::Config::for_tests(dir.join("receiver.db"))).await
    }

    /// Shuts it down gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("receiver stops in time")
            .expect("receiver task")
    }

    /// POSTs `body` to `/webhook` with a JSON content type and `headers`.
    pub async fn post(&self, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        post(self.addr, "/webhook", headers, body).await
    }

    /// A read-only look at the store file.
    pub fn db(&self) -> rusqlite::Connection {
        open_db(&self.store_path)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Opens a store file for assertions.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).expect("open store");
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    connection
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` field of a JSON refusal.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    /// The `name=value` of the cookie the answer sets, as a browser sends it back.
    pub fn cookie(&self) -> String {
        let set_cookie = self
            .headers
            .get("set-cookie")
            .unwrap_or_else(|| panic!("no Set-Cookie in {self:?}"))
            .to_str()
            .expect("ASCII cookie");
        set_cookie
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

/// Builds a request with a `host` header (hyper's client connection adds none).
pub fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).expect("request")
}

/// One request on a fresh connection.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    let mut connection = Connection::open(addr).await;
    connection.send(request).await.expect("answer")
}

/// POSTs with `content-type: application/json` (unless `headers` set one) on a fresh connection.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        all.push(("content-type", "application/json"));
    }
    send(addr, request(addr, Method::POST, path, &all, body)).await
}

/// One request on a fresh connection from the loopback address `source` (another client, as
/// far as the server can tell: Linux answers for all of 127.0.0.0/8).
pub async fn send_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Reply {
    assert!(source.is_loopback(), "tests stay on loopback");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .expect("bind the client's address");
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connects in time")
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    tokio::time::timeout(WAIT, async {
        let response = sender.send_request(request).await.expect("answer");
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    })
    .await
    .expect("answers in time")
}

/// A GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, request(addr, Method::GET, path, &[], Bytes::new())).await
}

/// A keep-alive HTTP/1.1 client connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Connects (bounded wait).
    pub async fn open(addr: SocketAddr) -> Connection {
        Connection::try_open(addr).await.expect("connect")
    }

    /// Connects, or says why not.
    pub async fn try_open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await??;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection { sender })
    }

    /// Sends one request and reads the whole answer (bounded wait).
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        tokio::time::timeout(WAIT, async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        })
        .await?
    }
}

/// Writes `bytes` on a raw TCP connection and reads until the server closes it (or `WAIT`).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_to_close(&mut stream).await
}

/// Reads until the server closes the connection; bounded by `WAIT`.
pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` every 10 ms until it is true, for at most `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A body of `accountId` with one event per id, in today's form.
pub fn envelope(account_id: i64, event_ids: &[&str]) -> String {
    let events: Vec<String> = event_ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"eventId":"{id}","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-27T10:00:00.000Z","eventInfo":"i","data":{{"userId":1,"loId":"course:1","loInstanceId":"course:1_1","loType":"course","enrollmentSource":"SELF_ENROLL","dateEnrolled":"2026-11-27T10:00:00.000Z"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"accountId":{account_id},"events":[{}]}}"#,
        events.join(",")
    )
}

/// A body of `accountId` with one `COURSE_COMPLETED` event per id (the load of the crash and
/// scale-out tests).
pub fn completed_envelope(account: i64, ids: &[String]) -> String {
    let events: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"eventId":"{id}","eventName":"COURSE_COMPLETED","timestamp":"2026-11-28T00:00:00.000Z","data":{{"userId":1,"loId":"course:1","loInstanceId":"course:1_1","loType":"course","enrollmentSource":"SELF_ENROLL","dateCompleted":"2026-11-28T00:00:00.000Z","hasPassed":true}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"accountId":{account},"events":[{}]}}"#,
        events.join(",")
    )
}

/// The `receiver` program run as a real process.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Where it listens (read from its first line).
    pub addr: SocketAddr,
    /// The first line of its standard output.
    pub first_line: String,
    /// The second, `inspector on http://ADDR/?token=TOKEN` (`None` with `--ui off`).
    pub inspector_line: Option<String>,
    /// Later lines of standard output.
    pub lines: mpsc::Receiver<String>,
}

/// The path of the receiver binary built for the tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_it-receiver")
}

impl Process {
    /// Runs `receiver ARGS` with `envs` and waits (bounded) for its `listening on` line.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Process {
        Process::start(args, envs, Stdio::null(), "warn")
    }

    /// [`Process::spawn`] with its log (`RUST_LOG=info`, standard error) written to `log`.
    pub fn spawn_logging(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Process {
        let file = std::fs::File::create(log).expect("create the log file");
        Process::start(args, envs, Stdio::from(file), "info")
    }

    fn start(args: &[&str], envs: &[(&str, &str)], stderr: Stdio, log_level: &str) -> Process {
        let mut command = Command::new(binary());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("RUST_LOG", log_level);
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn receiver");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        // Reading in a thread keeps the pipe drained, so the receiver never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let first_line = match lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("receiver printed no first line (exit {status:?})");
            }
        };
        // The inspector's line comes second unless it is off.
        let ui_off = args.windows(2).any(|pair| pair == ["--ui", "off"])
            || envs.contains(&("RECEIVER_UI", "off"));
        let inspector_line = if ui_off {
            None
        } else {
            lines.recv_timeout(WAIT).ok()
        };
        let addr = first_line
            .strip_prefix("listening on http://")
            .or_else(|| first_line.strip_prefix("listening on https://"))
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"));
        Process {
            child,
            addr,
            first_line,
            inspector_line,
            lines,
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("receiver did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next output line, waiting at most `WAIT`.
    pub fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(WAIT).ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to completion within `limit` (killed, and the test failed, if it is still
/// running then): for commands that would serve for ever if they did not refuse to start.
pub fn output_within(command: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

/// Runs `receiver ARGS` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .env("RUST_LOG", "warn");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().expect("run receiver");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A loopback address with nothing listening on it (bound once, then released), for an app
/// that is down until a test starts a [`FakeApp`] there.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// One request a [`FakeApp`] got, and what it answered.
#[derive(Debug, Clone)]
pub struct AppRequest {
    /// The status answered.
    pub status: u16,
    /// The request target.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// An answer a [`FakeApp`] gives to bodies that contain a text: `(text, status, body)`.
type Rules = std::sync::Arc<std::sync::Mutex<Vec<(String, u16, String)>>>;

/// The team's own app behind `--forward-to`, faked: it records every request in arrival
/// order and answers a status (and after a delay) the test can change, or another status and
/// body to requests whose body contains a given text (an app that cannot handle one payload).
pub struct FakeApp {
    /// Where it listens.
    pub addr: SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<AppRequest>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    rules: Rules,
    task: JoinHandle<()>,
}

impl FakeApp {
    /// Starts answering `status` at `addr` (bounded retries while the port is released).
    pub async fn start_at(addr: SocketAddr, status: u16) -> FakeApp {
        use std::sync::atomic::Ordering;
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("binding the fake app at {addr}: {error}"),
            }
        };
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let rules: Rules = std::sync::Arc::default();
        let (log, answer, delay, ruled) = (
            received.clone(),
            status.clone(),
            delay_ms.clone(),
            rules.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, answer, delay, ruled) =
                    (log.clone(), answer.clone(), delay.clone(), ruled.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let (log, answer, delay, ruled) =
                                (log.clone(), answer.clone(), delay.clone(), ruled.clone());
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let rule = ruled
                                    .lock()
                                    .expect("app rules")
                                    .iter()
                                    .find(|(text, _, _)| {
                                        body.windows(text.len()).any(|w| w == text.as_bytes())
                                    })
                                    .map(|(_, status, answer)| (*status, answer.clone()));
                                let (status, answer_body) = rule.unwrap_or_else(|| {
                                    (answer.load(Ordering::SeqCst), "{}".to_owned())
                                });
                                log.lock().expect("app log").push(AppRequest {
                                    status,
                                    path: parts.uri.path().to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                let pause = delay.load(Ordering::SeqCst);
                                if pause > 0 {
                                    tokio::time::sleep(Duration::from_millis(pause)).await;
                                }
                                let response = hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(answer_body)))
                                    .expect("response");
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApp {
            addr,
            received,
            status,
            delay_ms,
            rules,
            task,
        }
    }

    /// Answers `status` with `body` to every request whose body contains `text`, from now on.
    pub fn answer_containing(&self, text: &str, status: u16, body: &str) {
        self.rules
            .lock()
            .expect("app rules")
            .push((text.to_owned(), status, body.to_owned()));
    }

    /// Answers requests containing `text` like the others again.
    pub fn forget(&self, text: &str) {
        self.rules
            .lock()
            .expect("app rules")
            .retain(|(ruled, _, _)| ruled != text);
    }

    /// Answers `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits this long before each answer from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<AppRequest> {
        self.received.lock().expect("app log").clone()
    }

    /// The bodies it answered 2xx, in arrival order.
    pub fn acknowledged_bodies(&self) -> Vec<Bytes> {
        self.requests()
            .into_iter()
            .filter(|request| (200..300).contains(&request.status))
            .map(|request| request.body)
            .collect()
    }

    /// Waits (bounded by `limit`) until it has answered `count` requests with 2xx.
    pub async fn wait_acknowledged(&self, count: usize, limit: Duration) -> bool {
        wait_until(limit, || async {
            self.acknowledged_bodies().len() >= count
        })
        .await
    }
}

impl Drop for FakeApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of the sample `name{labels}` from `GET /metrics` (every label given must be
/// there with that value; others may be), if present.
pub async fn labeled_metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let reply = get(addr, "/metrics").await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (inside, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(label, wanted)| inside.contains(&format!("{label}=\"{wanted}\"")))
            .then(|| value.parse().ok())?
    })
}

/// The value of one metric line (`name value`) from `GET /metrics`, if present.
pub async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let reply = get(addr, "/metrics").await;
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub use super::rng::Rng;
