//! `--forward-to [EVENTS=]URL`: the durable inbox in front of the team's apps. Every stored
//! request goes, byte for byte, to each target that takes at least one of its new events;
//! each target has its own queue, in commit order, one job at a time.
//!
//! Guarantees, and their limits:
//! - never lost: a request's jobs are committed in the same transaction as the request (see
//!   [`crate::store`]), so a 2xx to the sender means "stored AND queued"; a job is marked
//!   forwarded only after the app's 2xx, so a crash or restart at any moment leaves it pending;
//! - in order, per target: jobs go in commit order, the next only after the previous was
//!   forwarded or parked; targets do not wait for each other;
//! - at least once: a crash between the app's 2xx and the mark re-sends that one request after
//!   the restart (the app deduplicates on `(accountId, eventId)`, as the receiver does);
//! - nothing stuck for ever without a word (`policy`): failures that may pass hold the queue
//!   with backoff (order first), logged at each step and shown in the metrics with the age of
//!   the oldest pending job; a request the app refuses for good (a 4xx but 408, 425, 429) is
//!   parked and the queue moves on; `receiver forward retry|skip` and the inspector's Retry
//!   and Skip move a job back or out of the way;
//! - not forwarded: refused requests, requests whose events were all duplicates (their events
//!   went with the request that first stored them), and requests no target takes;
//! - headers: the original ones minus hop-by-hop and framing headers, `host`, and
//!   `authorization`, which the store keeps redacted, so Basic credentials cannot be replayed
//!   (give the app its own check, or re-sign with `--forward-signature-file`). Re-signing
//!   replaces the signature headers with fresh ones (new timestamp at every attempt, the
//!   original `webhook-id` kept), with the target's own file or the one for every target;
//! - plain `http://` targets only: the apps usually sit on the same host or network; put a
//!   TLS proxy in front for anything else.
//!
//! Layout: this file (the settings and the forwarder's tasks), `target` (the flags read into
//! targets), `policy` (the park rule and the backoff), `attempt` (one request sent and its
//! answer kept), `worker` (one target's loop), `log_limit` (the log's pace).

mod attempt;
mod log_limit;
mod policy;
mod target;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use policy::{judge, RetryPolicy, Verdict, DEFAULT_RETRY_MAX, DEFAULT_RETRY_MIN};
pub use target::{parse_forward_url, parse_targets, signature_files_by_target, ForwardTarget};

use crate::metrics::Metrics;
use crate::routing::{Route, Routes};
use crate::store::ForwardQueue;

/// Default deadline for the TCP connection to an app.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for an app's answer (its head) once connected.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The backlog in the metrics is read from the store at least this often.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// And soon after an outcome, but not more often than this.
const BACKLOG_SOONEST: Duration = Duration::from_millis(100);
/// Jobs queued by a receiver of the layout before several targets (still running on a
/// shared database) are given to targets this often.
const ADOPT_EVERY: Duration = Duration::from_secs(10);

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// The apps, in the order given (at most [`crate::routing::MAX_TARGETS`]).
    pub targets: Vec<ForwardTarget>,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Deadline for connecting.
    pub connect_timeout: Duration,
    /// Deadline for the answer once the request is sent.
    pub response_timeout: Duration,
}

impl ForwardConfig {
    /// Every event to `url` with the default timeouts and backoff, original headers.
    pub fn new(url: http::Uri) -> Self {
        Self::to_targets(vec![ForwardTarget::new(url)])
    }

    /// Forwarding to `targets` with the default timeouts and backoff.
    pub fn to_targets(targets: Vec<ForwardTarget>) -> Self {
        Self {
            targets,
            retry: RetryPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// The targets as the store routes to them.
    pub fn routes(&self) -> Routes {
        Routes::new(
            self.targets
                .iter()
                .map(|target| Route {
                    target: target.name(),
                    events: target.events.clone(),
                })
                .collect(),
        )
    }
}

/// The forwarder's tasks (one per target, and the backlog's) and the way to stop them.
pub(crate) struct Forwarder {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding the queues' jobs to `config`'s targets. An attempt in flight at
    /// shutdown may take `grace` to finish.
    pub(crate) fn spawn(
        queue: Arc<dyn ForwardQueue>,
        config: ForwardConfig,
        metrics: Arc<Metrics>,
        grace: Duration,
    ) -> Forwarder {
        let (stop, stopped) = watch::channel(false);
        let recorded = Arc::new(Notify::new());
        let routes = config.routes();
        metrics
            .forwarding
            .start(routes.routes().iter().map(|route| route.target.clone()));
        let mut tasks = vec![tokio::spawn(watch_backlog(
            Arc::clone(&queue),
            routes,
            Arc::clone(&metrics),
            Arc::clone(&recorded),
            stopped.clone(),
        ))];
        for target in config.targets {
            let worker = worker::Worker {
                name: target.name(),
                target,
                queue: Arc::clone(&queue),
                retry: config.retry,
                sender: attempt::Sender::new(config.connect_timeout, config.response_timeout),
                metrics: Arc::clone(&metrics),
                recorded: Arc::clone(&recorded),
                grace,
            };
            tasks.push(tokio::spawn(worker.run(stopped.clone())));
        }
        Forwarder { stop, tasks }
    }

    /// Stops after the attempts in flight (bounded by the grace); what is not recorded as
    /// forwarded stays pending for the next start.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Keeps the backlog in the metrics (read from the store, so it counts every receiver's jobs
/// and an operator's retries and skips), and gives jobs queued before targets had names to
/// the targets: at start, then every [`ADOPT_EVERY`].
async fn watch_backlog(
    queue: Arc<dyn ForwardQueue>,
    routes: Routes,
    metrics: Arc<Metrics>,
    recorded: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut adopted_at: Option<Instant> = None;
    let mut said_unconfigured = false;
    loop {
        if adopted_at.is_none_or(|at| at.elapsed() >= ADOPT_EVERY) {
            match queue.adopt_untargeted(routes.clone()).await {
                Ok(report) => {
                    adopted_at = Some(Instant::now());
                    if report.queued > 0 || report.skipped > 0 {
                        tracing::info!(
                            queued = report.queued,
                            skipped = report.skipped,
                            "jobs queued before forwarding had several targets were given to \
                             the targets that take their events"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "giving older forward jobs to targets"),
            }
        }
        let started = Instant::now();
        match queue.backlog().await {
            Ok(backlog) => {
                if !said_unconfigured {
                    said_unconfigured = true;
                    for stranded in backlog.iter().filter(|backlog| {
                        !routes
                            .routes()
                            .iter()
                            .any(|route| route.target == backlog.target)
                    }) {
                        tracing::warn!(
                            target = %stranded.target,
                            pending = stranded.pending,
                            parked = stranded.parked,
                            "jobs wait for a target that is no longer a --forward-to target: add \
                             it back, or `receiver forward skip` them"
                        );
                    }
                }
                metrics.forwarding.set_backlog(backlog);
            }
            Err(error) => tracing::debug!(%error, "reading the forwarding backlog"),
        }
        // A store that takes long to count (a huge backlog) is asked less often.
        let every = BACKLOG_EVERY.max(started.elapsed().saturating_mul(10));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = async { recorded.notified().await; tokio::time::sleep(BACKLOG_SOONEST).await } => {}
            () = worker::stopped(&mut stop) => return,
        }
    }
}
