//! `sender admin` run as a real process, and a client of its JSON API that checks every
//! answer against the OpenAPI document the server itself serves (and the repository keeps).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::openapi;
use super::receiver::{request, send, Reply};
use crate::sender::Spawned;

/// The token the admin processes of the tests get.
pub const TOKEN: &str = "admin-test-token-42";

/// The delivery worker's numbers, shrunk so that retries show within a test.
const FAST: &[&str] = &[
    "--retry-initial",
    "100ms",
    "--retry-max",
    "200ms",
    "--poll-interval",
    "20ms",
    "--batch-interval",
    "200ms",
    "--response-timeout",
    "2s",
];

/// A `sender admin` process over a state, stopped when dropped.
pub struct AdminProcess {
    process: Spawned,
    /// Where the pages listen.
    pub addr: SocketAddr,
    /// The first line it printed.
    pub first_line: String,
    /// Where `--metrics` listens, when it was given.
    pub metrics: Option<SocketAddr>,
    /// `--state` as given.
    pub state: String,
    /// The OpenAPI document it served.
    document: Value,
    /// The operations answered so far: (method, path template, status).
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl AdminProcess {
    /// Starts `sender --state STATE admin --listen 127.0.0.1:0 --token TOKEN`, waits for its
    /// first line and reads `/api/openapi.json`.
    pub async fn start(state: &str) -> AdminProcess {
        Self::start_with(state, &[]).await
    }

    /// [`AdminProcess::start`] with more flags (`--metrics ADDR`: its line is read too).
    pub async fn start_with(state: &str, extra: &[&str]) -> AdminProcess {
        Self::start_with_numbers(state, FAST, extra).await
    }

    /// [`AdminProcess::start`] with some of the worker's numbers changed (`("--batch-interval",
    /// "1h")`): each replaces the fast value of the same flag.
    pub async fn start_changed(state: &str, changed: &[(&str, &str)]) -> AdminProcess {
        let mut numbers: Vec<&str> = FAST.to_vec();
        for (flag, value) in changed {
            match numbers.iter().position(|given| given == flag) {
                Some(at) => numbers[at + 1] = value,
                None => numbers.extend([*flag, *value]),
            }
        }
        Self::start_with_numbers(state, &numbers, &[]).await
    }

    /// [`AdminProcess::start_with`] with the worker's numbers `numbers` instead of the tests'
    /// usual ones.
    pub async fn start_with_numbers(state: &str, numbers: &[&str], extra: &[&str]) -> AdminProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_it-sender"));
        command
            .args(["--state", state, "admin", "--listen", "127.0.0.1:0"])
            .args(["--token", TOKEN])
            .args(numbers)
            .args(extra)
            // The failed attempts the tests provoke are warnings; errors still show.
            .env("RUST_LOG", "error");
        let mut process = Spawned::spawn(&mut command);
        let first_line = process.next_line(Duration::from_secs(20)).await;
        let addr = first_line
            .strip_prefix("admin on http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"));
        let metrics = if extra.contains(&"--metrics") {
            let line = process.next_line(Duration::from_secs(20)).await;
            line.strip_prefix("metrics on http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|addr| addr.parse().ok())
        } else {
            None
        };
        let mut admin = AdminProcess {
            process,
            addr,
            first_line,
            metrics,
            state: state.to_owned(),
            document: Value::Null,
            seen: Mutex::new(BTreeSet::new()),
        };
        let served = admin.call(Method::GET, "/api/openapi.json", None).await;
        assert_eq!(served.status, http::StatusCode::OK);
        admin.document = served.json();
        // The document itself is an operation of the document.
        let template = openapi::check(&admin.document, "GET", "/api/openapi.json", None, &served)
            .unwrap_or_else(|error| panic!("GET /api/openapi.json: {error}"));
        admin
            .seen
            .lock()
            .expect("seen")
            .insert(("get".to_owned(), template, 200));
        assert_eq!(
            admin.document,
            serde_json::from_str::<Value>(include_str!("../../../sender/src/admin/openapi.json"))
                .expect("the repository's document is JSON"),
            "the served document is the repository's"
        );
        admin
    }

    /// The URL that opens the pages, with the token.
    pub fn url(&self) -> String {
        format!("http://{}/?token={TOKEN}", self.addr)
    }

    /// Opens the URL with the token as a browser does, and gives the cookie it is answered
    /// with (`name=value`).
    pub async fn sign_in(&self) -> String {
        let first = self
            .raw(Method::GET, &format!("/?token={TOKEN}"), &[], "")
            .await;
        assert_eq!(first.status, http::StatusCode::OK, "{first:?}");
        first.cookie()
    }

    /// A page, as a browser signed in with `cookie` gets it: (status, HTML).
    pub async fn page(&self, cookie: &str, path: &str) -> (http::StatusCode, String) {
        let reply = self.raw(Method::GET, path, &[("cookie", cookie)], "").await;
        (
            reply.status,
            String::from_utf8_lossy(&reply.body).into_owned(),
        )
    }

    /// A form posted as the pages' own forms are (the cookie, this server's `Origin`).
    pub async fn post_form(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        let origin = format!("http://{}", self.addr);
        let body = form
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    common::web::encode_query_value(name),
                    common::web::encode_query_value(value)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        self.raw(
            Method::POST,
            path,
            &[
                ("cookie", cookie),
                ("origin", &origin),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
        .await
    }

    /// One request with any headers, unchecked.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        send(self.addr, request(self.addr, method, path, headers, body)).await
    }

    /// Calls the API with the token header; the answer is checked against the document
    /// (its status is one the operation declares, its body matches that status's schema).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let text = body
            .as_ref()
            .map(|body| body.to_string())
            .unwrap_or_default();
        let reply = self
            .raw(
                method.clone(),
                path,
                &[
                    ("x-admin-token", TOKEN),
                    ("content-type", "application/json"),
                ],
                text,
            )
            .await;
        if !self.document.is_null() {
            let template =
                openapi::check(&self.document, method.as_str(), path, body.as_ref(), &reply)
                    .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
            self.seen.lock().expect("seen").insert((
                method.as_str().to_ascii_lowercase(),
                template,
                reply.status.as_u16(),
            ));
        }
        reply
    }

    /// Asserts that an answer got with [`AdminProcess::raw`] conforms to the document.
    pub fn conforms(&self, method: &Method, path: &str, reply: &Reply) {
        if let Err(error) = openapi::check(&self.document, method.as_str(), path, None, reply) {
            panic!("{method} {path}: {error}");
        }
    }

    /// `call` for a JSON answer of the expected status.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let reply = self.call(method.clone(), path, body).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }

    /// The operations of the document never called with a 2xx answer, and the statuses
    /// answered.
    pub fn uncovered(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("seen");
        openapi::operations(&self.document)
            .into_iter()
            .filter(|(method, path)| {
                !seen
                    .iter()
                    .any(|(m, p, status)| m == method && p == path && (200..300).contains(status))
            })
            .map(|(method, path)| format!("{method} {path}"))
            .collect()
    }

    /// Runs `sender --state STATE ARGS` to completion: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        crate::sender::sender_output(&self.state, args)
    }

    /// Stops it with SIGTERM and waits (bounded) for a clean exit.
    pub async fn stop(mut self) {
        crate::sender::send_signal(self.process.child.id(), "TERM");
        let status = self.process.wait(Duration::from_secs(15)).await;
        assert!(status.success(), "sender admin exited with {status}");
    }
}
