//! What an operator watches (SPEC section 9): `GET /metrics` (Prometheus text: per webhook the
//! requests pending, the oldest one's age, staged batch events, whether it is disabled, and the
//! attempts this process made by outcome) and `GET /healthz` (200, or 503 when the state store
//! does not answer), on `--metrics ADDR` for `sender run` and `sender admin`, and on the admin
//! pages' own address.
//!
//! `metrics.rs` renders the text and counts the attempts; this file answers the two paths and
//! serves them on a listener of their own (no token: bind it where only the scraper reaches).

mod metrics;

use std::sync::Arc;
use std::time::Duration;

use common::web::{self, WebBody};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub use metrics::{outcome_label, render, AttemptCounters};

use crate::store::State;

/// How long `/healthz` and `/metrics` wait for the state store before they say it does not
/// answer.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(2);

/// The counters and the state the two paths read. Cheap to share (`Arc`).
pub struct Monitoring {
    state: Arc<dyn State>,
    counters: Arc<AttemptCounters>,
}

impl Monitoring {
    /// Over `state`, with fresh counters.
    pub fn new(state: Arc<dyn State>) -> Arc<Monitoring> {
        Arc::new(Monitoring {
            state,
            counters: Arc::default(),
        })
    }

    /// The counters the delivery engine adds its attempts to.
    pub fn counters(&self) -> Arc<AttemptCounters> {
        self.counters.clone()
    }

    /// Runs a state read off the async threads, within [`STATE_TIMEOUT`]; `None` when it
    /// failed or did not answer in time (a store that hangs is as down as one that refuses).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn State) -> anyhow::Result<T> + Send + 'static,
    ) -> Option<T> {
        let state = self.state.clone();
        let task = tokio::task::spawn_blocking(move || read(state.as_ref()));
        match tokio::time::timeout(STATE_TIMEOUT, task).await {
            Ok(Ok(Ok(value))) => Some(value),
            Ok(Ok(Err(error))) => {
                tracing::warn!("the state store does not answer: {error:#}");
                None
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(timeout = ?STATE_TIMEOUT, "the state store did not answer in time");
                None
            }
        }
    }

    /// The answer to `GET /metrics`.
    pub async fn metrics(&self) -> Response<WebBody> {
        let backlogs = self.read(|state| state.backlogs()).await;
        if let Some(backlogs) = &backlogs {
            let ids: Vec<_> = backlogs.iter().map(|b| b.webhook_id.clone()).collect();
            self.counters.retain(&ids);
        }
        let text = render(&self.counters, backlogs.as_deref(), verify::unix_now_ms());
        web::respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text,
        )
    }

    /// The answer to `GET /healthz`.
    pub async fn healthz(&self) -> Response<WebBody> {
        match self.read(|state| state.ping()).await {
            Some(()) => web::respond(StatusCode::OK, "application/json", "{\"status\":\"ok\"}\n"),
            None => web::respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                "{\"error\":\"state_unavailable\"}\n",
            ),
        }
    }

    /// The answer when `path` is `/metrics` or `/healthz` (GET or HEAD; other methods 405);
    /// `None` for any other path.
    pub async fn answer(&self, method: &Method, path: &str) -> Option<Response<WebBody>> {
        if path != "/metrics" && path != "/healthz" {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            let mut refused = web::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 only GET is answered here\n".into(),
            );
            refused
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            return Some(refused);
        }
        Some(if path == "/metrics" {
            self.metrics().await
        } else {
            self.healthz().await
        })
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` resolves (`--metrics ADDR`);
/// any other path is 404.
pub async fn serve(
    listener: TcpListener,
    monitoring: Arc<Monitoring>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |request: Request<Incoming>| {
        let monitoring = monitoring.clone();
        async move {
            monitoring
                .answer(request.method(), request.uri().path())
                .await
                .unwrap_or_else(web::not_found)
        }
    };
    web::serve(listener, None, handler, shutdown).await;
}
