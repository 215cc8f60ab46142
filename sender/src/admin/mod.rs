//! `sender admin` (SPEC section 8): Learning Manager's Integration Admin pages for webhooks,
//! and the JSON API under `/api/` behind them, served while the delivery worker runs in the
//! same process.
//!
//! Every change goes through [`crate::manage`], the same code as the command line, so the
//! pages, the API and `sender webhooks …` keep one set of rules over one state. The token
//! guard, the layout, the stylesheet and the script are `common::web`, shared with the
//! receiver's inspector.
//!
//! Protection: the token (URL once, then an HttpOnly SameSite=Strict session cookie of this
//! port, or the `x-admin-token` header) on every request, wrong tokens slowed down per client;
//! a request that changes state must also prove it is no forged cross-site request: the token
//! in the `x-admin-token` header (scripts), or an `Origin` naming this server (the pages' own
//! forms; browsers send it with every POST).
//! Bound beyond loopback, the pages refuse Target URLs on internal addresses, and the worker
//! and **Test webhook** connect only through the same [`TargetGuard`] (see
//! `common::target_guard`), unless `--allow-private-targets`.
//!
//! Layout: this file serves, guards and routes, with the reads and actions both views share;
//! `api` answers JSON (`api_recovery` its resend, recover and retry); `pages` handles the HTML
//! pages and `html` renders them, but for the Add webhook / Edit form, whose flows (Test
//! webhook and Download signature before Save, Save, every error at once) are `form_pages` and
//! whose HTML is `form_html`, and the Deliveries page (the outage's page: Retry now, Resend,
//! Recover), which is `deliveries` and `deliveries_html`; `pending` holds the unsaved forms'
//! secrets (a signature made before Save, a typed password); `input` turns API bodies and
//! forms into [`crate::manage::WebhookChanges`]; `admin.css` is the pages' own stylesheet,
//! beside the shared one.

mod api;
mod api_answer;
mod api_recovery;
mod deliveries;
mod deliveries_html;
mod form_html;
mod form_pages;
mod html;
mod input;
mod page_answer;
mod pages;
mod pending;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::target_guard::TargetGuard;
use common::web::{self, Access, Guard, Token, WebBody};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::config::DeliveryConfig;
use crate::delivery::{Engine, HttpTransport, Mode, Reporting};
use crate::monitoring::Monitoring;
use crate::store::State;

/// Where the pages listen unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8082";
/// The header a script sends the token in; it also passes the cross-site check.
pub const TOKEN_HEADER: &str = "x-admin-token";
/// The cookie that keeps the session after the first visit, before its port
/// (`sender_admin_8082`), apart from the inspector's.
const COOKIE_PREFIX: &str = "sender_admin";
/// Largest request body (a form or a JSON webhook).
const MAX_BODY_BYTES: usize = 256 * 1024;
/// The OpenAPI 3 document of `/api/`, kept in the repository beside this file.
pub const OPENAPI: &str = include_str!("openapi.json");
/// The admin pages' own stylesheet (states in colour, the form's methods), after the shared
/// one.
const STYLESHEET: &str = include_str!("admin.css");
/// Where the admin pages' stylesheet is served.
const STYLESHEET_PATH: &str = "/assets/admin.css";

/// What the admin pages share between requests.
pub struct Admin {
    guard: Guard,
    state: Arc<dyn State>,
    /// `/metrics` and `/healthz` on the pages' address.
    monitoring: Arc<Monitoring>,
    /// Where Target URLs may point: from the listening address (see [`TargetGuard`]).
    targets: TargetGuard,
    /// For **Test webhook**: the engine's timeouts, CA file and target guard.
    transport: HttpTransport,
    /// The unsaved forms' secrets.
    pending: pending::PendingForms,
    /// The worker's batch interval and size, to say when staged batch events go (the
    /// Deliveries and Trigger pages).
    batch_interval: Duration,
    batch_size: usize,
}

impl Admin {
    /// The pages on `port` over `state`, guarded by `token`, refusing Target URLs that
    /// `targets` does not allow (`TargetGuard::for_listener` of the pages' address); tests use
    /// `config`'s timeouts.
    ///
    /// # Errors
    /// The random source failed (the session key of the cookie).
    pub fn new(
        token: Token,
        port: u16,
        state: Arc<dyn State>,
        config: &DeliveryConfig,
        targets: TargetGuard,
    ) -> anyhow::Result<Admin> {
        Ok(Admin {
            guard: Guard::new(token, COOKIE_PREFIX, port)?.with_header(TOKEN_HEADER),
            monitoring: Monitoring::new(state.clone()),
            state,
            transport: HttpTransport::new(config.connect_timeout, config.response_timeout)
                .with_ca_file(config.ca_file.clone())
                .with_targets(targets.clone()),
            targets,
            pending: pending::PendingForms::new(),
            batch_interval: config.batch_interval,
            batch_size: config.batch_size,
        })
    }
}

/// What `sender admin` reports besides its pages: the worker's counters and notifications, and
/// the `/metrics` and `/healthz` its address also answers (see [`crate::monitoring`]).
pub struct Observed {
    /// The engine's reporting.
    pub reporting: Reporting,
    /// The counters and state `/metrics` reads.
    pub monitoring: Arc<Monitoring>,
}

/// Serves the pages on `listener` and runs the delivery worker (as `sender run`) until
/// `shutdown` resolves; in-flight attempts are recorded before it returns. The worker connects
/// only where `targets` allows, as the pages' checks do.
///
/// # Errors
/// Storage errors of the worker.
pub async fn run(
    listener: TcpListener,
    token: Token,
    state: Arc<dyn State>,
    config: DeliveryConfig,
    targets: TargetGuard,
    observed: Observed,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let port = listener.local_addr()?.port();
    let mut admin = Admin::new(token, port, state.clone(), &config, targets.clone())?;
    admin.monitoring = observed.monitoring;
    let admin = Arc::new(admin);
    let engine = Engine::http_guarded(state, config, targets)
        .with_role("admin")
        .with_reporting(observed.reporting);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.changed().await;
    };
    let pages = tokio::spawn(serve(listener, admin, wait(stopped.clone())));
    let worker = engine.run(Mode::Serve, wait(stopped));
    tokio::pin!(worker);
    // One signal stops both: the worker finishes its attempts in flight, the pages drain.
    let report = tokio::select! {
        report = &mut worker => report,
        () = shutdown => {
            let _ = stop.send(true);
            worker.await
        }
    };
    let _ = stop.send(true);
    let _ = pages.await;
    for id in &report?.disabled {
        tracing::warn!(webhook = %id, "disabled at the end of retention");
    }
    Ok(())
}

/// Serves the pages alone on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let handler = move |request| {
        let admin = Arc::clone(&admin);
        async move { handle(&admin, request).await }
    };
    web::serve(listener, None, handler, shutdown).await;
}

/// A parsed request: what the handlers look at.
pub(crate) struct Asked {
    method: Method,
    /// The path's segments after the leading `/`.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: bytes::Bytes,
}

impl Asked {
    /// The value of a query parameter.
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Guard, cross-site check, then route. Every answer carries the security headers.
async fn handle(admin: &Arc<Admin>, request: Request<Incoming>) -> Response<WebBody> {
    let (parts, body) = request.into_parts();
    // A load balancer's or an orchestrator's probe holds no token; `/healthz` says nothing
    // but whether the state answers. `/metrics` is behind the token like every page (the
    // `x-admin-token` header; `--metrics ADDR` serves it without one).
    if parts.uri.path() == "/healthz" {
        if let Some(answer) = admin.monitoring.answer(&parts.method, "/healthz").await {
            return answer;
        }
    }
    let access = admin.guard.check(&parts);
    if let Some(refusal) = access.refusal() {
        return refusal;
    }
    let api = parts.uri.path().starts_with("/api/");
    let changes_state = !matches!(parts.method, Method::GET | Method::HEAD);
    if changes_state && access != Access::ByHeader && !web::same_origin(&parts) {
        return forged(api);
    }
    let body = if changes_state {
        match web::read_body(body, MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(response) => return response,
        }
    } else {
        bytes::Bytes::new()
    };
    let asked = Asked {
        method: parts.method.clone(),
        segments: parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_owned)
            .collect(),
        query: web::parse_query(parts.uri.query().unwrap_or_default()),
        body,
    };
    let path = parts.uri.path();
    let mut response = if path == web::STYLESHEET_PATH || path == web::SCRIPT_PATH {
        web::asset(path).unwrap_or_else(web::not_found)
    } else if path == STYLESHEET_PATH {
        web::respond(StatusCode::OK, "text/css; charset=utf-8", STYLESHEET)
    } else if let Some(answer) = admin.monitoring.answer(&parts.method, path).await {
        answer
    } else if api {
        api::route(admin, &asked).await
    } else {
        pages::route(admin, &asked).await
    };
    admin.guard.remember(access, &mut response);
    response
}

/// The answer to a state-changing request that may come from another site.
fn forged(api: bool) -> Response<WebBody> {
    let message =
        "a change needs the token in the x-admin-token header, or a form posted from these pages";
    if api {
        api_answer::error(StatusCode::FORBIDDEN, "cross_site", message, None)
    } else {
        web::text(StatusCode::FORBIDDEN, format!("403 {message}\n"))
    }
}

/// Runs a blocking storage call off the async threads.
async fn blocking<R: Send + 'static>(
    admin: &Admin,
    call: impl FnOnce(&dyn State) -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    let state = Arc::clone(&admin.state);
    tokio::task::spawn_blocking(move || call(state.as_ref()))
        .await
        .map_err(|error| anyhow::anyhow!("a storage task stopped: {error}"))?
}

/// The `Duration` of a rotation overlap as a person writes it (`24h`), default 24 h.
fn overlap(text: Option<&str>) -> Result<Duration, crate::UsageError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(Duration::from_secs(24 * 3600)),
        Some(text) => common::parse::duration(text).map_err(|error| {
            crate::UsageError(format!(
                "--overlap {text:?}: {error}; write it like 24h or 7d"
            ))
        }),
    }
}

/// A webhook with the state of its queue, as the **Webhooks** list shows it.
pub(crate) struct Listed {
    webhook: crate::registry::Webhook,
    queue: QueueState,
}

/// The state of a webhook's queue, as the pages tell it.
pub(crate) struct QueueState {
    /// Its newest request.
    last: Option<crate::store::DeliverySummary>,
    /// Its oldest pending request, when that one has failed at least once: what holds the
    /// queue up (strict order), shown before the newest.
    failing: Option<crate::store::DeliverySummary>,
    /// Requests waiting to be sent or retried, batch events staged, and the rest.
    counts: crate::store::QueueCounts,
    /// When its staged batch events go, at the latest (epoch ms).
    staged_due_ms: Option<i64>,
}

impl QueueState {
    /// Requests waiting to be sent or retried, with the batch events staged.
    fn waiting(&self) -> u64 {
        self.counts.pending + self.counts.staged
    }
}

/// Every webhook with the state of its queue.
async fn listed(admin: &Admin) -> anyhow::Result<Vec<Listed>> {
    let interval_ms = batch_interval_ms(admin);
    blocking(admin, move |state| {
        let mut all = Vec::new();
        for webhook in state.webhooks()? {
            let queue = queue_state(state, &webhook.id, interval_ms)?;
            all.push(Listed { webhook, queue });
        }
        Ok(all)
    })
    .await
}

fn batch_interval_ms(admin: &Admin) -> i64 {
    i64::try_from(admin.batch_interval.as_millis()).unwrap_or(i64::MAX)
}

/// A webhook's newest request, its oldest request still failing, its counts and when its
/// staged batch events go (`interval_ms` after the oldest was staged).
fn queue_state(
    state: &dyn State,
    id: &crate::registry::WebhookId,
    interval_ms: i64,
) -> anyhow::Result<QueueState> {
    let last = state
        .deliveries(&crate::store::DeliveryFilter {
            webhook_id: Some(id.clone()),
            state: None,
            limit: 1,
        })?
        .pop();
    // The head of the queue, due or not: in strict order it holds up every request behind it.
    let head = state.pending(id, 1, true, verify::unix_now_ms(), 0)?.pop();
    let failing = match head {
        Some(head) if head.attempts > 0 => {
            state.delivery(&head.msg_id)?.map(|detail| detail.summary)
        }
        _ => None,
    };
    Ok(QueueState {
        last,
        failing,
        counts: state.counts(Some(id))?,
        staged_due_ms: state
            .oldest_staged_at_ms(id)?
            .map(|oldest| oldest.saturating_add(interval_ms)),
    })
}

/// Most requests the **Deliveries** page and its API show, the newest.
const DELIVERIES_SHOWN: usize = 50;

/// A webhook's newest requests, each with its attempts, in the order they were made.
async fn deliveries_of(
    admin: &Admin,
    id: String,
) -> anyhow::Result<(crate::registry::Webhook, Vec<crate::store::DeliveryDetail>)> {
    blocking(admin, move |state| {
        let webhook = crate::manage::find(state, &id)?;
        let newest = state.deliveries(&crate::store::DeliveryFilter {
            webhook_id: Some(webhook.id.clone()),
            state: None,
            limit: DELIVERIES_SHOWN,
        })?;
        let mut details = Vec::new();
        for summary in newest.iter().rev() {
            if let Some(detail) = state.delivery(&summary.id)? {
                details.push(detail);
            }
        }
        Ok((webhook, details))
    })
    .await
}

/// **Test webhook**: one realistic event to a registered webhook now, outside the queue.
async fn test_webhook(
    admin: &Admin,
    id: &str,
    event: Option<String>,
) -> anyhow::Result<crate::manage::TestOutcome> {
    let id = id.to_owned();
    let webhook = blocking(admin, move |state| crate::manage::find(state, &id)).await?;
    test_unsaved(admin, &webhook, event).await
}

/// **Test webhook** with a webhook as it is on screen, saved or not (the values typed so far
/// applied to it): its Target URL checked as Save checks it, one realistic event sent now,
/// outside the queue; nothing is stored.
async fn test_unsaved(
    admin: &Admin,
    webhook: &crate::registry::Webhook,
    event: Option<String>,
) -> anyhow::Result<crate::manage::TestOutcome> {
    check_target(admin, Some(&webhook.url)).await?;
    let target = crate::manage::TestTarget::of(webhook);
    let outcome = crate::manage::send_test(&target, event, &admin.transport).await?;
    // The host only: a URL may carry a token in its query.
    tracing::info!(
        webhook = %webhook.id,
        host = webhook.url.host(),
        status = ?outcome.status,
        latency_ms = outcome.latency_ms,
        "test webhook"
    );
    Ok(outcome)
}

/// Refuses a Target URL these pages may not send to ([`crate::manage::check_target`]); `None`
/// (an edit that keeps the URL) passes.
async fn check_target(
    admin: &Admin,
    url: Option<&common::target_url::TargetUrl>,
) -> Result<(), crate::UsageError> {
    match url {
        Some(url) => crate::manage::check_target(&admin.targets, url).await,
        None => Ok(()),
    }
}

/// **Download signature**: the signature file as a download named after the webhook.
async fn signature_download(
    admin: &Admin,
    id: &str,
    signing: bool,
) -> anyhow::Result<Response<WebBody>> {
    let owned = id.to_owned();
    let text = blocking(admin, move |state| {
        crate::manage::signature_file(state, &owned, signing)
    })
    .await?;
    Ok(attachment(&text, id))
}

/// A signature file as a download, `signature-{id}.json`.
fn attachment(text: &str, id: &str) -> Response<WebBody> {
    let mut response = web::respond(StatusCode::OK, "application/json", text.to_owned());
    // Ids are `wh_` and alphanumerics (checked by the caller: found, or made here).
    if id
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        if let Ok(value) =
            http::HeaderValue::from_str(&format!("attachment; filename=\"signature-{id}.json\""))
        {
            response
                .headers_mut()
                .insert(http::header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// **Trigger**: makes the events and queues them; the worker of this process delivers them.
async fn fire(
    admin: &Admin,
    request: crate::manage::TriggerRequest,
) -> anyhow::Result<crate::manage::Triggered> {
    request.recipe()?;
    blocking(admin, move |state| crate::manage::trigger(state, &request)).await
}
