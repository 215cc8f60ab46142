//! A receiver with its inspector, both in the test process, and an HTTP client for the pages:
//! token in the URL or a cookie, and a reader of server-sent events with bounded waits.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::receiver::{request, send, Reply, WAIT};

/// The token the in-process inspectors use.
pub const TOKEN: &str = "test-token-0123456789";

/// A receiver and its inspector, stopped together.
pub struct Inspected {
    /// The webhook listener.
    pub addr: SocketAddr,
    /// The inspector.
    pub ui: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Inspected {
    /// Starts `config` (on either store) on `127.0.0.1:0` with its inspector on another free
    /// port.
    pub async fn start(config: receiver::Config) -> Inspected {
        Self::start_with_targets(config, None).await
    }

    /// [`Inspected::start`] with Send again's `targets` set, as an inspector bound beyond
    /// loopback sets them (`None`: what its loopback address implies, any address).
    pub async fn start_with_targets(
        config: receiver::Config,
        targets: Option<common::target_guard::TargetGuard>,
    ) -> Inspected {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let ui_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ui");
        let ui = ui_listener.local_addr().expect("ui addr");
        let path = config.path.clone();
        let receiver = receiver::Receiver::start(config).expect("start receiver");
        let settings = receiver.inspector_settings(
            common::web::Token::given(TOKEN).expect("token"),
            format!("http://{addr}{path}"),
            targets.unwrap_or_else(|| common::target_guard::TargetGuard::for_listener(ui, false)),
        );
        let (stop, stopped) = watch::channel(false);
        let mut stopped_ui = stopped.clone();
        let mut stopped_listener = stopped;
        let tasks = vec![
            tokio::spawn(receiver::inspector::serve(
                ui_listener,
                settings,
                async move {
                    let _ = stopped_ui.changed().await;
                },
            )),
            tokio::spawn(receiver.serve(listener, async move {
                let _ = stopped_listener.changed().await;
            })),
        ];
        Inspected {
            addr,
            ui,
            stop,
            tasks,
        }
    }

    /// POSTs `body` to `/webhook` with a JSON content type and `headers`.
    pub async fn post(&self, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        super::receiver::post(self.addr, "/webhook", headers, body).await
    }

    /// GETs an inspector path as is (no token added).
    pub async fn get_bare(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(
            self.ui,
            request(self.ui, Method::GET, path, headers, Bytes::new()),
        )
        .await
    }

    /// GETs an inspector path with the token cookie.
    pub async fn get(&self, path: &str) -> Reply {
        let cookie = format!("receiver_inspector={TOKEN}");
        self.get_bare(path, &[("cookie", &cookie)]).await
    }

    /// GETs an inspector page with the token cookie and gives its text.
    pub async fn page(&self, path: &str) -> String {
        let reply = self.get(path).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{path}: {reply:?}");
        String::from_utf8(reply.body.to_vec()).expect("UTF-8 page")
    }

    /// POSTs a form to an inspector path with the token cookie.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{name}={}", common::web::encode_query_value(value)))
            .collect();
        let cookie = format!("receiver_inspector={TOKEN}");
        // What a browser sends with a form posted from the inspector's own page.
        let origin = format!("http://{}", self.ui);
        let headers = [
            ("cookie", cookie.as_str()),
            ("origin", origin.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        send(
            self.ui,
            request(self.ui, Method::POST, path, &headers, body.join("&")),
        )
        .await
    }

    /// Opens a server-sent event stream (with the token cookie and, to resume, an id).
    pub async fn stream(&self, path: &str, last_event_id: Option<&str>) -> EventStream {
        let cookie = format!("receiver_inspector={TOKEN}");
        let mut headers = vec![("cookie", cookie.as_str()), ("accept", "text/event-stream")];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        let stream = tokio::net::TcpStream::connect(self.ui)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let response = tokio::time::timeout(
            WAIT,
            sender.send_request(request(self.ui, Method::GET, path, &headers, Bytes::new())),
        )
        .await
        .expect("stream answers in time")
        .expect("stream answer");
        assert_eq!(response.status(), http::StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream"));
        EventStream {
            body: response.into_body(),
            buffer: String::new(),
            _driver: DropAbort(driver),
        }
    }

    /// Stops both servers and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("stops in time")
                .expect("task")
                .expect("served");
        }
    }
}

/// Aborts the connection task when the stream is dropped (the browser going away).
struct DropAbort(JoinHandle<()>);

impl Drop for DropAbort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `id:`.
    pub id: String,
    /// `event:`.
    pub kind: String,
    /// The `data:` lines joined by newlines.
    pub data: String,
}

/// An open stream of server-sent events.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
    _driver: DropAbort,
}

impl EventStream {
    /// The next event with a `data` part (comments and `retry` skipped), waiting at most `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    id: String::new(),
                    kind: String::new(),
                    data: String::new(),
                };
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = id.to_owned();
                    } else if let Some(kind) = line.strip_prefix("event: ") {
                        event.kind = kind.to_owned();
                    } else if let Some(part) = line.strip_prefix("data: ") {
                        data.push(part);
                    }
                }
                if !data.is_empty() {
                    event.data = data.join("\n");
                    return Some(event);
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
}
