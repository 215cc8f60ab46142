//! The inspector (SPEC section 8): every kept request in the browser, live, with its verdict,
//! the `check` diagnosis, dedup and forwarding state (each target's job with every attempt),
//! and the actions Download, Copy as curl, Send again, and Retry and Skip of a forward job.
//!
//! It is a second HTTP server of the same process, on its own address, reading the store
//! through [`RequestQuery`] on readers of its own, on either store (a SQLite connection per
//! page, whose WAL reads never block the writer; or a PostgreSQL pool of its own), so the
//! listener's serial section never sees it. The token guard, the layout, the stylesheet
//! and the script are `common::web`, shared with the sender's pages.
//!
//! Bound beyond loopback, Send again refuses targets on internal addresses, when the URL is
//! given and again at connect time (`common::target_guard`), unless `--allow-private-targets`.
//!
//! Layout: this file serves and routes; `pages` renders; `overview` counts and draws the
//! overview at the top of the first page (with the forwarding queues `forwarding` draws), and
//! updates it live; `curl` writes Copy as curl; `actions` downloads and sends again, with the
//! form of `send_form`; `reasons` puts reason codes in words; `forwarding` shows the
//! forwarding queues and acts on their jobs.

mod actions;
mod curl;
mod forwarding;
mod overview;
mod pages;
mod reasons;
mod send_form;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use common::target_guard::TargetGuard;
use common::web::{self, Guard, Token, WebBody};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::store::{Cursor, RequestFilter, RequestKey, RequestQuery};

/// Where the inspector listens unless told otherwise (SPEC section 8).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8081";
/// The cookie that keeps the session after the first visit, before its port
/// (`receiver_inspector_8081`; `__Host-receiver_inspector_8081` over TLS).
const COOKIE_PREFIX: &str = "receiver_inspector";
/// Rows on one page.
const PAGE_ROWS: usize = 50;
/// Most rows a `?limit=` may ask for.
const MAX_PAGE_ROWS: usize = 500;
/// How often a live stream looks for new requests: well under the one second promised.
const STREAM_POLL: Duration = Duration::from_millis(250);
/// Most rows one stream event carries. A read that fills it means a flood (over 800 requests
/// a second, or a reconnect after a long gap): the stream then skips to the newest request, as
/// nobody reads rows at that pace and sending each would cost the listener CPU.
const STREAM_BATCH: usize = 200;
/// What the page says when the stream skipped rows.
const SKIPPED_NOTICE: &str = "More requests arrived than a live list can show: reload for the \
newest, or go through them with Older requests.";
/// A comment line this often keeps proxies and the browser from closing an idle stream.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);
/// Largest form a page accepts (a pasted signature file fits many times).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// Opens a reader of the store; called on a blocking thread, once per page or stream.
pub type OpenReader = Arc<dyn Fn() -> anyhow::Result<Box<dyn RequestQuery + Send>> + Send + Sync>;

/// Wakes the forwarders after a Retry or a Skip (nothing without forwarding).
pub type ForwardChanged = Arc<dyn Fn() + Send + Sync>;

/// What the inspector needs from its receiver.
pub struct InspectorSettings {
    /// The token every request must carry.
    pub token: Token,
    /// The receiver's webhook URL, for Copy as curl.
    pub webhook_url: String,
    /// The receiver's authentication in force (a reload replaces it), for the `check`
    /// diagnosis of each request.
    pub authentication: Arc<crate::reload::LiveAuthentication>,
    /// How to read the store.
    pub open_reader: OpenReader,
    /// Serves the pages over TLS (the receiver's certificate) when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// How many wrong tokens a client may present, and within how long.
    pub wrong_token_limit: web::WrongTokenLimit,
    /// Where Send again may send: from the inspector's address
    /// (`TargetGuard::for_listener`), so an inspector reachable from other hosts refuses
    /// internal addresses, when the URL is given and again when connecting.
    pub targets: TargetGuard,
    /// The receiver's forwarding targets (shown in the overview even when nothing waits).
    pub forward_targets: Vec<String>,
    /// Wakes the forwarders after a Retry or a Skip.
    pub forward_changed: ForwardChanged,
}

/// What every handler shares.
struct State {
    guard: Guard,
    webhook_url: String,
    authentication: Arc<crate::reload::LiveAuthentication>,
    open_reader: OpenReader,
    /// Send again's check of the Target URL; the client connects through the same guard.
    targets: TargetGuard,
    client: common::client::HttpClient,
    /// Flips to `true` at shutdown: live streams end on it.
    stopping: watch::Receiver<bool>,
    forward_targets: Vec<String>,
    forward_changed: ForwardChanged,
    /// The live overviews' counts so far.
    overviews: overview::Cache,
}

/// Serves the inspector on `listener` until `shutdown` resolves; open streams end then.
///
/// # Errors
/// The listener's address cannot be read, or the random source failed (the session key).
pub async fn serve(
    listener: TcpListener,
    settings: InspectorSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let port = listener
        .local_addr()
        .context("reading the inspector's address")?
        .port();
    let mut guard = Guard::new(settings.token, COOKIE_PREFIX, port)?
        .with_wrong_token_limit(settings.wrong_token_limit);
    if settings.tls.is_some() {
        guard = guard.over_tls();
    }
    let (stop, stopping) = watch::channel(false);
    let state = Arc::new(State {
        guard,
        webhook_url: settings.webhook_url,
        authentication: settings.authentication,
        open_reader: settings.open_reader,
        client: common::client::guarded_http_client(
            Duration::from_secs(10),
            settings.targets.clone(),
        ),
        targets: settings.targets,
        stopping,
        forward_targets: settings.forward_targets,
        forward_changed: settings.forward_changed,
        overviews: overview::Cache::default(),
    });
    let handler = move |request| {
        let state = Arc::clone(&state);
        async move { handle(&state, request).await }
    };
    web::serve(listener, settings.tls, handler, async move {
        shutdown.await;
        // Live streams end on this before the connections are drained.
        let _ = stop.send(true);
    })
    .await;
    Ok(())
}

/// Binds the inspector's address: `DEFAULT_ADDRESS` falls back to a free port when taken, an
/// address given explicitly must be bound as given.
///
/// # Errors
/// An explicit address that cannot be bound, or no port at all.
pub async fn bind(address: &str, explicit: bool) -> anyhow::Result<TcpListener> {
    web::bind("the inspector", address, explicit).await
}

/// Guard, then route. Every answer, refusals included, carries the security headers.
async fn handle(state: &Arc<State>, request: Request<Incoming>) -> Response<WebBody> {
    let (parts, body) = request.into_parts();
    let access = state.guard.check(&parts);
    if let Some(refusal) = access.refusal() {
        return refusal;
    }
    // Send again makes the receiver send requests, Retry and Skip change what it forwards:
    // only the inspector's own forms may ask, never a page of another site (the SameSite
    // cookie already stays home; this holds even where it would not).
    if parts.method == Method::POST && !web::same_origin(&parts) {
        return web::text(
            StatusCode::FORBIDDEN,
            "403 Send again, Retry and Skip must come from the inspector's own page\n".to_owned(),
        );
    }
    let path = parts.uri.path().to_owned();
    let query = web::parse_query(parts.uri.query().unwrap_or_default());
    let mut response = match (&parts.method, path.as_str()) {
        (&Method::GET, web::STYLESHEET_PATH | web::SCRIPT_PATH) => {
            web::asset(&path).unwrap_or_else(web::not_found)
        }
        (&Method::GET, "/") => list(state, &query).await,
        (&Method::GET, "/stream") => {
            let resume = parts
                .headers
                .get("last-event-id")
                .and_then(|value| value.to_str().ok())
                .and_then(Cursor::parse);
            stream(state, &query, resume).await
        }
        (&Method::GET, "/download") => actions::download(state, &query).await,
        (&Method::GET, "/overview/stream") => overview::stream(state, &query).await,
        (method, path) if path.starts_with("/requests/") => {
            let rest = &path["/requests/".len()..];
            let (key, action) = rest.split_once('/').unwrap_or((rest, ""));
            if let (Some(key), &Method::POST, Some((job, action))) = (
                RequestKey::parse(key),
                method,
                action
                    .strip_prefix("forward/")
                    .and_then(|rest| rest.split_once('/')),
            ) {
                let response = match job.parse::<i64>() {
                    Ok(job) => forwarding::act(state, key, job, action).await,
                    Err(_) => web::not_found(),
                };
                let mut response = response;
                state.guard.remember(access, &mut response);
                return response;
            }
            match (RequestKey::parse(key), method, action) {
                (Some(key), &Method::GET, "") => detail(state, key, &query).await,
                (Some(key), &Method::GET, "body") => actions::body(state, key).await,
                (Some(key), &Method::POST, "send") => {
                    match web::read_form(body, MAX_FORM_BYTES).await {
                        Ok(form) => actions::send_again(state, key, &form).await,
                        Err(response) => response,
                    }
                }
                _ => web::not_found(),
            }
        }
        _ => web::not_found(),
    };
    state.guard.remember(access, &mut response);
    response
}

/// Runs `read` with a fresh store reader on a blocking thread.
async fn read_store<T: Send + 'static>(
    state: &State,
    read: impl FnOnce(&dyn RequestQuery) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let open = Arc::clone(&state.open_reader);
    tokio::task::spawn_blocking(move || {
        let reader = open()?;
        read(reader.as_ref())
    })
    .await
    .map_err(|error| anyhow::anyhow!("the store reader stopped: {error}"))?
}

/// A store failure as a page: the details go to the log, the page says what to do.
fn store_failed(error: &anyhow::Error) -> Response<WebBody> {
    tracing::warn!(error = %format!("{error:#}"), "inspector: reading the store");
    web::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "503 the store cannot be read right now; reload in a moment\n".to_owned(),
    )
}

/// The filter, the page start and the page size a query asks for.
struct ListQuery {
    filter: RequestFilter,
    /// The filter's fields as given, for the form and the links.
    fields: pages::FilterFields,
    before: Option<Cursor>,
    limit: usize,
}

fn list_query(query: &[(String, String)]) -> Result<ListQuery, String> {
    let fields = pages::FilterFields::from_query(query);
    let filter = fields.to_filter()?;
    let value = |name: &str| {
        query
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    };
    let before = match value("before") {
        Some(text) => Some(Cursor::parse(text).ok_or("the page link is damaged (before)")?),
        None => None,
    };
    let limit = match value("limit") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE_ROWS).contains(limit))
            .ok_or(format!("limit must be 1 to {MAX_PAGE_ROWS}"))?,
        None => PAGE_ROWS,
    };
    Ok(ListQuery {
        filter,
        fields,
        before,
        limit,
    })
}

/// `GET /`: the list, newest first. The first page also starts the live stream, from the
/// newest request it saw, so nothing committed in between is missed.
async fn list(state: &Arc<State>, query: &[(String, String)]) -> Response<WebBody> {
    let asked = match list_query(query) {
        Ok(asked) => asked,
        Err(message) => {
            return pages::bad_filter(&message, &pages::FilterFields::from_query(query))
        }
    };
    let filter = asked.filter.clone();
    let before = asked.before;
    let limit = asked.limit;
    let read = read_store(state, move |reader| {
        let mark = reader.newest()?;
        let start = before.unwrap_or(Cursor {
            accepted: mark.accepted.saturating_add(1),
            refused: mark.refused.saturating_add(1),
        });
        let page = reader.requests(&filter, start, limit)?;
        Ok((mark, start, page))
    })
    .await;
    match read {
        Ok((mark, start, page)) => {
            let live = asked.before.is_none().then_some(mark);
            let range = overview::OverviewRange::from_query(query);
            // The overview heads the first page only: older pages are for reading back.
            let summary = match asked.before {
                None => overview::section(state, &range).await,
                Some(_) => String::new(),
            };
            web::html(
                StatusCode::OK,
                pages::list(
                    &pages::ListParts {
                        fields: &asked.fields,
                        overview: &summary,
                        range_fields: &range.hidden_fields(),
                    },
                    &page,
                    start,
                    live,
                    asked.limit,
                ),
            )
        }
        Err(error) => store_failed(&error),
    }
}

/// `GET /requests/KEY`: one request in full, with the `check` diagnosis and its forward
/// jobs (`?forwarding=…&job=N` after a Retry or Skip says what was done).
async fn detail(
    state: &Arc<State>,
    key: RequestKey,
    query: &[(String, String)],
) -> Response<WebBody> {
    let read = read_store(state, move |reader| {
        let Some(detail) = reader.request(key)? else {
            return Ok(None);
        };
        let jobs = match key {
            RequestKey::Accepted(id) => reader.forward_jobs(id)?,
            RequestKey::Refused(_) => Vec::new(),
        };
        Ok(Some((detail, jobs)))
    })
    .await;
    match read {
        Ok(Some((detail, jobs))) => {
            let item = crate::check::Item {
                source: key.to_text(),
                item: verify::SourceItem::Capture(detail.record.clone()),
            };
            let now = verify::unix_now();
            let authentication = state.authentication.current();
            let report = crate::check::check(&authentication, &item, now);
            let send = send_form::SendContext::new(
                &authentication,
                &detail.record.headers,
                detail.record.reason.is_some(),
                now,
            );
            let forwarding = match key {
                RequestKey::Accepted(_) => {
                    forwarding::section(key, &jobs, forwarding::notice_of(query).as_deref())
                }
                RequestKey::Refused(_) => String::new(),
            };
            web::html(
                StatusCode::OK,
                pages::detail(&detail, &report, &state.webhook_url, &send, &forwarding),
            )
        }
        Ok(None) => web::not_found(),
        Err(error) => store_failed(&error),
    }
}

/// `GET /stream`: server-sent events, one per batch of new rows, each carrying the rows as
/// ready HTML and, as its id, the cursor after them; a reconnecting browser sends that id
/// back (`Last-Event-ID`) and gets what it missed from the store.
async fn stream(
    state: &Arc<State>,
    query: &[(String, String)],
    resume: Option<Cursor>,
) -> Response<WebBody> {
    let asked = match list_query(query) {
        Ok(asked) => asked,
        Err(message) => return web::text(StatusCode::BAD_REQUEST, format!("400 {message}\n")),
    };
    let after = query
        .iter()
        .find(|(name, _)| name == "after")
        .and_then(|(_, value)| Cursor::parse(value));
    let start = match resume.or(after) {
        Some(start) => start,
        None => match read_store(state, |reader| reader.newest()).await {
            Ok(newest) => newest,
            Err(error) => return store_failed(&error),
        },
    };
    let (chunks, body) = web::ChannelBody::new(4);
    let state = Arc::clone(state);
    tokio::spawn(follow(state, asked.filter, start, chunks));
    web::with_body(
        StatusCode::OK,
        "text/event-stream; charset=utf-8",
        body.boxed(),
    )
}

/// The newest place in the store when it lies beyond `cursor` in both numberings (`None` when
/// nothing newer is there to skip to).
async fn skip_to_newest(state: &Arc<State>, cursor: Cursor) -> anyhow::Result<Option<Cursor>> {
    let newest = read_store(state, |reader| reader.newest()).await?;
    let ahead =
        newest.accepted >= cursor.accepted && newest.refused >= cursor.refused && newest != cursor;
    Ok(ahead.then_some(newest))
}

/// Polls the store for rows after `cursor` and sends them until the browser goes away or the
/// inspector stops.
async fn follow(
    state: Arc<State>,
    filter: RequestFilter,
    mut cursor: Cursor,
    chunks: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut stopping = state.stopping.clone();
    if chunks
        .send(Bytes::from_static(b"retry: 500\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut quiet = tokio::time::Instant::now();
    loop {
        let looked = {
            let filter = filter.clone();
            read_store(&state, move |reader| {
                reader.requests_after(&filter, cursor, STREAM_BATCH)
            })
            .await
        };
        let mut behind = false;
        match looked {
            Ok((rows, next)) => {
                // A walk that moved without a match means more may be waiting: look again at
                // once, not after a pause.
                behind = rows.is_empty() && next != cursor;
                cursor = next;
                if !rows.is_empty() {
                    let html = pages::rows_newest_first(&rows);
                    let event = web::sse_event(&cursor.to_text(), "row", &html);
                    if chunks.send(event).await.is_err() {
                        return;
                    }
                    quiet = tokio::time::Instant::now();
                }
                if rows.len() == STREAM_BATCH {
                    match skip_to_newest(&state, cursor).await {
                        Ok(Some(newest)) => {
                            cursor = newest;
                            let event =
                                web::sse_event(&cursor.to_text(), "skipped", SKIPPED_NOTICE);
                            if chunks.send(event).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => behind = true,
                        Err(error) => {
                            tracing::debug!(error = %format!("{error:#}"), "inspector stream");
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(error = %format!("{error:#}"), "inspector stream"),
        }
        if quiet.elapsed() >= STREAM_KEEPALIVE {
            if chunks
                .send(Bytes::from_static(b": keep-alive\n\n"))
                .await
                .is_err()
            {
                return;
            }
            quiet = tokio::time::Instant::now();
        }
        if behind && !*stopping.borrow() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(STREAM_POLL) => {}
            _ = stopping.changed() => return,
            () = chunks.closed() => return,
        }
    }
}
