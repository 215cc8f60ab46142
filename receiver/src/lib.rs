//! The receiver: the listener a CRM or reporting team runs at its Learning Manager webhook
//! Target URL. It verifies each request (none, Basic or Signature), stores it durably before it
//! answers 2xx, acknowledges duplicates without storing them twice, and keeps refused requests
//! with their reason (SPEC sections 3 and 4).
//!
//! Layout:
//! - [`config`]: [`Config`] and the parsers of the command-line values;
//! - `cli` (private): the command line (`listen`, `events`, `export`, `check`), exit codes,
//!   logging; `check` (private): re-checks captured requests offline and explains refusals;
//! - [`forward`]: `--forward-to`, the durable inbox that forwards stored requests to the
//!   team's apps, each target in order, with retries, parking what an app refuses for good;
//!   [`routing`]: which targets take a request (event names and globs), below the store and
//!   the forwarder; `forward_commands` (private): `receiver forward list|show|retry|skip`;
//! - `server` (private): accept loop, connection cap, TLS, graceful shutdown;
//! - `service` (private): routing and the checks of `POST <path>`; `response`: every answer;
//! - `guard` (private): detects `Content-Length` + `Transfer-Encoding` requests hyper hides;
//! - [`store`]: the [`store::Store`] trait and its SQLite and PostgreSQL implementations,
//!   both with group commit; [`accept_outcome`]: what storing one request did (which events
//!   were new), below the store and the metrics that count it; [`backlog`]: how far behind a
//!   forwarding target is, below the store that counts it and the metrics that show it;
//! - [`reload`]: what SIGHUP replaces while serving (authentication, TLS certificate);
//! - [`retention`]: `--retain` and `--dedupe-window`, and the pruner that applies them while
//!   serving; [`erasure`]: which stored requests `receiver erase` removes;
//! - [`metrics`]: the Prometheus counters; `output` (private): the lines printed per event;
//! - [`search`]: `--where PATH=VALUE`, `--contains TEXT` and the inspector's Data field, one
//!   meaning for all;
//! - [`inspector`]: the pages that show every kept request (SPEC section 8), on either store.
//!
//! Invariants: no 2xx before the request and its events are committed (SQLite with
//! `synchronous=FULL`; PostgreSQL: the batch's statement committed);
//! `(accountId, eventId)` stored once; secrets never logged or stored (the `authorization`
//! header is kept redacted); with `--forward-to`, the forward job commits in the request's
//! transaction and is marked done only after the app's 2xx.
//!
//! Decisions where SPEC.md is silent:
//! - a request without `Content-Type` is let through to the JSON parser (some senders omit
//!   it; the body decides); `application/json` with parameters and `application/*+json` pass;
//! - checks run cheapest first: 404/405, ambiguous framing (400 `ambiguous_length`), declared
//!   size (413 before reading), content type (415), body read (413 when a chunked body grows
//!   past the limit, 408 `body_timeout` when it stalls), auth (401), envelope (400), commit;
//! - every refusal, 404 and 405 included, is kept in `refused_requests` (newest 10 000 by
//!   default), best effort: it rides the next group commit and is dropped, and counted, if
//!   the writer's queue is full, so refusals can never slow down accepted requests;
//! - the stored headers are those hyper gives, in order of first appearance with repeats;
//!   the `authorization` value is replaced by `<scheme> [redacted]`;
//! - `/healthz` does a real write (a one-row update) through the writer, so it reports 503
//!   exactly when a commit would fail; a store outage heals without a restart because the
//!   writer reopens its connection after a failed batch;
//! - the header-read timeout is also the idle keep-alive limit (hyper arms it whenever it
//!   waits for a request head);
//! - `events --since/--until` filter on the event's own `timestamp`, not on arrival time;
//!   `export --since/--until` filter on the receive time (a capture is a request, which has
//!   no single event time);
//! - `export` writes accepted requests by default (what a replay wants), refused ones with
//!   `--include-refused` or `--verdict refused|all`;
//! - `check` of a Basic capture: the stored `authorization` is redacted, so it says the
//!   credentials cannot be re-checked (verdict `unchecked`, exit 1) rather than
//!   `basic_malformed`;
//! - forwarding: a request goes to each target that takes one of its new events (refused and
//!   all-duplicate requests go nowhere); at least once, in order per target (see
//!   [`forward`]); jobs left pending wait for the next start with their target; jobs of the
//!   layout before several targets are given to the targets at the next start, as if their
//!   requests had just arrived; events stored while forwarding was off show
//!   `forwarding: none` and stay so;
//! - output lines go through a bounded queue to a printing thread: a reader that stops
//!   reading our standard output makes us drop lines (counted), never stall requests;
//! - retention removes refused requests past it too (they hold bodies as well); `erase`
//!   removes the refused requests whose body carries a matching event, counted apart
//!   (`refusedRequests`); the events counted are the stored rows that went;
//! - what holds a request for its forwarding is one predicate (`NOT_YET_FORWARDED` in
//!   [`store::maintenance`]): a pending or parked job on any target (a parked one awaits an
//!   operator's retry, which sends the body); a skipped or forwarded job holds nothing;
//! - the dedupe keys of erased events last as long as those of pruned ones: the dedupe window
//!   from their request's receipt (Learning Manager's retry horizon);
//! - on SIGHUP the whole command line is read again with the config file, and only the
//!   authentication and the TLS certificate are applied; the rest is read at start.
//!
//! # Example
//!
//! A receiver in process on a free port, stopped by a oneshot:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = receiver::Config::for_tests("/tmp/receiver-example.db");
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(receiver::run(listener, config, async {
//!     let _ = stopped.await;
//! }));
//! // ... POST to http://<addr>/webhook ...
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

pub mod accept_outcome;
pub mod backlog;
mod check;
mod cli;
pub mod config;
pub mod erasure;
pub mod forward;
mod forward_commands;
mod guard;
pub mod inspector;
pub mod metrics;
mod output;
pub mod reload;
mod response;
pub mod retention;
pub mod routing;
pub mod search;
mod server;
mod service;
pub mod store;
mod wire_order;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use common::store_location::StoreLocation;
use tokio::net::TcpListener;

pub use config::{Config, Limits, OutputMode, TlsFiles};
pub use metrics::Metrics;

use crate::forward::{ForwardConfig, Forwarder};
use crate::output::Output;
use crate::service::Shared;
use crate::store::ForwardQueue;

/// Runs the command line with the process arguments and environment; returns the exit status
/// of SPEC section 6 (0 success, 1 the work failed, 2 bad usage or configuration).
pub fn cli_main() -> std::process::ExitCode {
    cli::main()
}

/// Serves `config` on an already-bound `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (within `config.limits.shutdown_grace`) and
/// closes the store.
///
/// The same as [`Receiver::start`] followed by [`Receiver::serve`].
///
/// # Errors
/// The store cannot be opened, the TLS files cannot be used, or the store fails to close.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Receiver::start(config)?.serve(listener, shutdown).await
}

/// A receiver whose store is open and whose TLS files are loaded, ready to serve.
///
/// Starting and serving are two steps so that configuration errors surface (with exit status
/// 2) before the command announces `listening on`.
pub struct Receiver {
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The certificate a reload replaces, with TLS.
    certificate: Option<Arc<reload::LiveCertificate>>,
    forwarding: Option<(Arc<dyn ForwardQueue>, ForwardConfig)>,
    /// Where the store is, for the inspector's readers.
    store_location: StoreLocation,
    /// How many refused requests the store keeps (the inspector's PostgreSQL reader needs it).
    keep_refused: u32,
    /// The forwarding targets' names, for the inspector's overview.
    forward_targets: Vec<String>,
    /// What the pruner removes while serving.
    retention: retention::Retention,
}

impl Receiver {
    /// Opens the store, loads the TLS files and starts the output printer.
    ///
    /// # Errors
    /// The store cannot be opened or created, or the TLS files cannot be used.
    pub fn start(config: Config) -> anyhow::Result<Receiver> {
        let metrics = Arc::new(Metrics::default());
        let (tls, certificate) = config
            .tls
            .as_ref()
            .map(server::tls_acceptor)
            .transpose()?
            .unzip();
        let routes = config
            .forward
            .as_ref()
            .map(forward::ForwardConfig::routes)
            .unwrap_or_default();
        let forward_targets = routes
            .routes()
            .iter()
            .map(|route| route.target.clone())
            .collect();
        let opened = store::open(
            &config.store,
            config.keep_refused,
            routes,
            Arc::clone(&metrics),
        )?;
        let forwarding = opened.forward_queue.zip(config.forward);
        let output = Output::start(config.output, Arc::clone(&metrics));
        Ok(Receiver {
            shared: Arc::new(Shared {
                path: config.path,
                authentication: Arc::new(reload::LiveAuthentication::new(config.authentication)),
                limits: config.limits,
                store: opened.store,
                metrics,
                output,
            }),
            tls,
            certificate,
            forwarding,
            store_location: config.store.clone(),
            keep_refused: config.keep_refused,
            forward_targets,
            retention: config.retention,
        })
    }

    /// What the inspector needs to show this receiver's store: a reader per page, the
    /// authentication for the `check` diagnosis, `webhook_url` for Copy as curl, and the
    /// receiver's TLS certificate, if any, to serve its pages over HTTPS too, and the
    /// `targets` Send again may reach (`TargetGuard::for_listener` of the inspector's address).
    pub fn inspector_settings(
        &self,
        token: common::web::Token,
        webhook_url: String,
        targets: common::target_guard::TargetGuard,
    ) -> inspector::InspectorSettings {
        let open_reader: inspector::OpenReader = match &self.store_location {
            StoreLocation::Sqlite(path) => {
                let path = path.clone();
                // A connection per page: SQLite opens in microseconds, and WAL readers never
                // block the writer.
                Arc::new(move || {
                    let reader = store::sqlite::SqliteReader::open(&path)?;
                    Ok(Box::new(reader) as Box<dyn store::RequestQuery + Send>)
                })
            }
            StoreLocation::Postgres(url) => {
                // A pool of the inspector's own, shared by its pages and streams.
                let pool = store::postgres::PostgresRequestPool::new(url, self.keep_refused);
                Arc::new(move || {
                    let pool = pool
                        .as_ref()
                        .map_err(|error| anyhow::anyhow!("{error:#}"))?;
                    let runtime = tokio::runtime::Handle::try_current()?;
                    let reader = pool.reader(&runtime)?;
                    Ok(Box::new(reader) as Box<dyn store::RequestQuery + Send>)
                })
            }
        };
        inspector::InspectorSettings {
            token,
            webhook_url,
            authentication: Arc::clone(&self.shared.authentication),
            open_reader,
            // The inspector speaks TLS whenever the webhook port does, with its certificate:
            // its pages show full bodies and its cookie opens them.
            tls: self.tls.clone(),
            wrong_token_limit: common::web::WrongTokenLimit::default(),
            targets,
            forward_targets: self.forward_targets.clone(),
            forward_changed: match &self.forwarding {
                Some((queue, _)) => {
                    let queue = Arc::clone(queue);
                    Arc::new(move || queue.wake_all())
                }
                None => Arc::new(|| {}),
            },
        }
    }

    /// The handle a reload (SIGHUP) goes through: it replaces the authentication and the TLS
    /// certificate of this receiver while it serves.
    pub fn reloader(&self) -> reload::Reloader {
        reload::Reloader::new(
            Arc::clone(&self.shared.authentication),
            self.certificate.clone(),
        )
    }

    /// Whether this receiver serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The counters behind `GET /metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Serves until `shutdown` resolves, pruning meanwhile; then drains, stops the forwarder
    /// and the pruner and closes the store, in that order (both work through the store).
    ///
    /// # Errors
    /// The store failed to close cleanly (what was acknowledged is committed all the same).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let shared = self.shared;
        let forwarder = self.forwarding.map(|(queue, config)| {
            Forwarder::spawn(
                queue,
                config,
                Arc::clone(&shared.metrics),
                shared.limits.shutdown_grace,
            )
        });
        let pruner = retention::Pruner::spawn(
            Arc::clone(&shared.store),
            self.retention,
            Arc::clone(&shared.metrics),
        );
        server::serve(Arc::clone(&shared), listener, self.tls, shutdown).await;
        if let Some(forwarder) = forwarder {
            forwarder.stop().await;
        }
        pruner.stop().await;
        let closed = shared.store.close().await;
        let printer = Arc::clone(&shared);
        // Waiting for the printer blocks (bounded), so keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || printer.output.close()).await;
        closed.context("closing the store")?;
        tracing::info!("store closed");
        Ok(())
    }
}
