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
    /// The `name=value` of the cookie its first page set, as a browser keeps it.
    pub cookie: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Inspected {
    /// Starts `config` (on either store) on `127.0.0.1:0` with its inspector on another free
    /// port, guarded by [`TOKEN`], and opens its first page as a browser does to get the cookie.
    pub async fn start(config: receiver::Config) -> Inspected {
        Inspected::start_with(config, TOKEN, |_| {}).await
    }

    /// [`Inspected::start`] with Send again's `targets` set, as an inspector bound beyond
    /// loopback sets them.
    pub async fn start_with_targets(
        config: receiver::Config,
        targets: common::target_guard::TargetGuard,
    ) -> Inspected {
        Inspected::start_with(config, TOKEN, |settings| settings.targets = targets).await
    }

    /// [`Inspected::start`] with the token `token` and the inspector's settings as `adjust`
    /// leaves them (Send again's targets: what its loopback address implies, any address).
    pub async fn start_with(
        config: receiver::Config,
        token: &str,
        adjust: impl FnOnce(&mut receiver::inspector::InspectorSettings),
    ) -> Inspected {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let ui_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ui");
        let ui = ui_listener.local_addr().expect("ui addr");
        let path = config.path.clone();
        let on_postgres = matches!(
            config.store,
            common::store_location::StoreLocation::Postgres(_)
        );
        let receiver = receiver::Receiver::start(config).expect("start receiver");
        let mut settings = receiver.inspector_settings(
            common::web::Token::given(token).expect("token"),
            format!("http://{addr}{path}"),
            common::target_guard::TargetGuard::for_listener(ui, false),
        );
        adjust(&mut settings);
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
        if on_postgres {
            // A PostgreSQL store creates its tables in the background: wait until it can
            // commit, so the test's own queries find them.
            let ready = super::receiver::wait_until(WAIT, || async {
                super::receiver::get(addr, "/healthz").await.status == http::StatusCode::OK
            })
            .await;
            assert!(ready, "the receiver's PostgreSQL store is ready");
        }
        let mut inspected = Inspected {
            addr,
            ui,
            cookie: String::new(),
            stop,
            tasks,
        };
        let first = inspected.get_bare(&format!("/?token={token}"), &[]).await;
        assert_eq!(first.status, http::StatusCode::OK, "{first:?}");
        inspected.cookie = first.cookie();
        inspected
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

    /// GETs an inspector path with the cookie.
    pub async fn get(&self, path: &str) -> Reply {
        self.get_bare(path, &[("cookie", &self.cookie)]).await
    }

    /// GETs an inspector page with the cookie and gives its text.
    pub async fn page(&self, path: &str) -> String {
        let reply = self.get(path).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{path}: {reply:?}");
        String::from_utf8(reply.body.to_vec()).expect("UTF-8 page")
    }

    /// POSTs a form to an inspector path with the cookie.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{name}={}", common::web::encode_query_value(value)))
            .collect();
        // What a browser sends with a form posted from the inspector's own page.
        let origin = format!("http://{}", self.ui);
        let headers = [
            ("cookie", self.cookie.as_str()),
            ("origin", origin.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        send(
            self.ui,
            request(self.ui, Method::POST, path, &headers, body.join("&")),
        )
        .await
    }

    /// Opens a server-sent event stream (with the cookie and, to resume, an id).
    pub async fn stream(&self, path: &str, last_event_id: Option<&str>) -> EventStream {
        let mut headers = vec![
            ("cookie", self.cookie.as_str()),
            ("accept", "text/event-stream"),
        ];
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
            last_id: String::new(),
            kind: String::new(),
            data: String::new(),
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
    /// The last event id when it was dispatched (what a browser resends on reconnecting).
    pub id: String,
    /// Its type (`message` unless an `event:` line said otherwise).
    pub kind: String,
    /// The `data:` lines joined by newlines.
    pub data: String,
}

/// An open stream of server-sent events, read as a browser reads it (the HTML standard's
/// event stream interpretation): lines end at CRLF, LF or a lone CR; `id` sets the last event
/// id, which later events keep; `event` sets the next event's type; `data` lines are joined by
/// LF; a blank line dispatches the event when it has data.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
    last_id: String,
    kind: String,
    data: String,
    _driver: DropAbort,
}

impl EventStream {
    /// The next event with data (comments and `retry` skipped), waiting at most `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(line) = self.next_line() {
                if let Some(event) = self.interpret(&line) {
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

    /// The next whole line of the buffer, without its end. A CR last in the buffer waits for
    /// the next bytes, which may hold its LF.
    fn next_line(&mut self) -> Option<String> {
        let end = self.buffer.find(['\r', '\n'])?;
        let ending = match &self.buffer.as_bytes()[end..] {
            [b'\r'] => return None,
            [b'\r', b'\n', ..] => 2,
            _ => 1,
        };
        let line = self.buffer[..end].to_owned();
        self.buffer.drain(..end + ending);
        Some(line)
    }

    /// Takes one line; gives the event a blank line dispatches.
    fn interpret(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let kind = std::mem::take(&mut self.kind);
            let data = std::mem::take(&mut self.data);
            let data = data.strip_suffix('\n')?;
            return Some(Event {
                id: self.last_id.clone(),
                kind: if kind.is_empty() {
                    "message".to_owned()
                } else {
                    kind
                },
                data: data.to_owned(),
            });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" if !value.contains('\0') => self.last_id = value.to_owned(),
            "event" => self.kind = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            _ => {}
        }
        None
    }
}
