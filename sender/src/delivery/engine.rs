//! The engine: it starts a worker for each webhook with work ([`super::worker`]), gathers how
//! each ended, and decides when the run is over (`trigger`: the queues are empty; `run`:
//! SIGINT or SIGTERM), riding out an outage of the state database in `run`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::clock::Clock;
use super::reporting::Reporting;
use super::signers::SignerCache;
use super::transport::{HttpTransport, Transport};
use super::worker::{blocking, Worker, WorkerExit};
use crate::config::DeliveryConfig;
use crate::registry::WebhookId;
use crate::store::State;

/// How long `run` waits before restarting a webhook's worker that failed.
const SERVE_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// How the engine decides it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `sender run`: keep looking for work until shut down; batches go out on their interval.
    Serve,
    /// `sender trigger`: work the queues of these webhooks until they are empty (or the
    /// shutdown future fires); staged batches go out at once, as no more events will come.
    Drain(Vec<WebhookId>),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Webhooks left to another worker that held their lease, with its owner tag.
    pub handed_over: Vec<(WebhookId, String)>,
    /// Webhooks disabled at the end of retention.
    pub disabled: Vec<WebhookId>,
}

/// The delivery engine. Cheap to clone.
pub struct Engine<T: Transport> {
    state: Arc<dyn State>,
    transport: Arc<T>,
    config: DeliveryConfig,
    clock: Clock,
    owner: String,
    /// The webhooks' signers, shared by the workers and built again only when a
    /// registration changes.
    signers: SignerCache,
    reporting: Reporting,
}

impl<T: Transport> Clone for Engine<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            transport: self.transport.clone(),
            config: self.config.clone(),
            clock: self.clock,
            owner: self.owner.clone(),
            signers: self.signers.clone(),
            reporting: self.reporting.clone(),
        }
    }
}

impl Engine<HttpTransport> {
    /// An engine over HTTP with the system clock, to any address (the command line's rule).
    /// Call inside a tokio runtime.
    pub fn http(state: Arc<dyn State>, config: DeliveryConfig) -> Self {
        Self::http_guarded(state, config, common::target_guard::TargetGuard::default())
    }

    /// An engine over HTTP that connects only where `targets` allows (`sender admin`).
    pub fn http_guarded(
        state: Arc<dyn State>,
        config: DeliveryConfig,
        targets: common::target_guard::TargetGuard,
    ) -> Self {
        let transport = HttpTransport::new(config.connect_timeout, config.response_timeout)
            .with_ca_file(config.ca_file.clone())
            .with_targets(targets);
        Self::new(state, transport, config, Clock::system())
    }

    /// Reads the CA certificates now, when a `--ca-file` was given or a registered webhook
    /// uses https: a broken certificate file is a local configuration error to report at
    /// start, not a failed delivery that would count against the customer's webhook until its
    /// retention ends and it is disabled.
    ///
    /// # Errors
    /// The certificates cannot be read.
    pub fn check_tls(&self) -> anyhow::Result<()> {
        let webhooks = self.state.webhooks()?;
        let https = webhooks.iter().any(|webhook| webhook.url.is_https());
        if https || self.config.ca_file.is_some() {
            self.transport.tls()?;
        }
        Ok(())
    }
}

/// Whether the state database answered the last look for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    Answering,
    /// `run` pauses deliveries until it answers again.
    Unavailable,
}

/// Completes when `signal` is raised; never without one.
async fn signalled(signal: Option<&tokio::sync::Notify>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

impl<T: Transport> Engine<T> {
    /// An engine over any transport and clock (tests use paused time).
    pub fn new(state: Arc<dyn State>, transport: T, config: DeliveryConfig, clock: Clock) -> Self {
        Self {
            state,
            transport: Arc::new(transport),
            config,
            clock,
            owner: format!(
                "pid:{}:{}",
                std::process::id(),
                crate::registry::random_token(8)
            ),
            signers: SignerCache::default(),
            reporting: Reporting::default(),
        }
    }

    /// Reports attempts to the metrics' counters and health changes as notifications, as
    /// `reporting` says (`sender run` and `sender admin`).
    #[must_use]
    pub fn with_reporting(mut self, reporting: Reporting) -> Self {
        self.reporting = reporting;
        self
    }

    /// Names the program that runs this engine in its lease owner tag (`run/pid:…`,
    /// `trigger/pid:…`), so that whoever finds a lease taken can say who delivers.
    #[must_use]
    pub fn with_role(mut self, role: &str) -> Self {
        self.owner = format!("{role}/{}", self.owner);
        self
    }

    /// The engine's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// How many signers this engine's workers built so far (see `signers.rs`).
    #[cfg(test)]
    pub(super) fn signer_builds(&self) -> u64 {
        self.signers.builds()
    }

    /// Works the queue as `mode` says until done or until `shutdown` completes; in-flight
    /// attempts finish (within the timeouts) and are recorded before it returns.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn run(
        &self,
        mode: Mode,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<RunReport> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers: JoinSet<(WebhookId, anyhow::Result<WorkerExit>)> = JoinSet::new();
        let mut running: HashSet<WebhookId> = HashSet::new();
        let mut report = RunReport::default();
        let mut settled: HashSet<WebhookId> = HashSet::new();
        let mut first_error: Option<anyhow::Error> = None;
        // Serve mode: a worker that failed (storage trouble, an unusable stored signature file)
        // is started again only after a pause, so an error is not repeated every poll.
        let mut cooldown: Vec<(WebhookId, Instant)> = Vec::new();
        // Whether the state database answered the last look, so an outage is logged once
        // when it starts and once when it ends.
        let mut database = Database::Answering;
        let work_signal = self.state.work_signal();
        tokio::pin!(shutdown);
        loop {
            cooldown.retain(|(_, until)| *until > Instant::now());
            let state = self.state.clone();
            let with_work = match blocking(move || state.webhooks_with_work()).await {
                Ok(ids) => {
                    if database == Database::Unavailable {
                        tracing::warn!("the state database answers again; deliveries resume");
                    }
                    database = Database::Answering;
                    ids
                }
                // `run` outlives an outage of the state database: deliveries pause (nothing
                // is sent that cannot be recorded) and resume by themselves.
                Err(error) if matches!(mode, Mode::Serve) => {
                    if database == Database::Answering {
                        tracing::error!("state database unavailable, deliveries paused: {error:#}");
                    }
                    database = Database::Unavailable;
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            let wanted: Vec<WebhookId> = match &mode {
                Mode::Serve => with_work,
                Mode::Drain(ids) => with_work
                    .into_iter()
                    .filter(|id| ids.contains(id) && !settled.contains(id))
                    .collect(),
            };
            for id in wanted {
                if cooldown.iter().any(|(cooling, _)| *cooling == id) {
                    continue;
                }
                if running.insert(id.clone()) {
                    let worker = self.worker(id.clone(), matches!(mode, Mode::Drain(_)));
                    let stop = stop_rx.clone();
                    workers.spawn(async move { (id, worker.work(stop).await) });
                }
            }
            if matches!(mode, Mode::Drain(_)) && running.is_empty() {
                break;
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = workers.join_next(), if !workers.is_empty() => {
                    let finished = joined.context("a delivery worker panicked")?;
                    if matches!(mode, Mode::Serve) && finished.1.is_err() {
                        cooldown.push((finished.0.clone(), Instant::now() + SERVE_ERROR_PAUSE));
                    }
                    self.settle(finished, &mut running, &mut settled, &mut report, &mut first_error);
                    if matches!(mode, Mode::Serve) {
                        // `run` keeps going: the error is logged, the webhook tried again later.
                        first_error = None;
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval) => {}
                // Another process enqueued (PostgreSQL's NOTIFY): look now, not at the poll.
                () = signalled(work_signal.as_deref()) => {}
            }
        }
        let _ = stop_tx.send(true);
        while let Some(joined) = workers.join_next().await {
            let finished = joined.context("a delivery worker panicked")?;
            self.settle(
                finished,
                &mut running,
                &mut settled,
                &mut report,
                &mut first_error,
            );
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// `id`'s worker for this run (`drain`: `trigger`'s), with the engine's parts.
    fn worker(&self, id: WebhookId, drain: bool) -> Worker<T> {
        Worker {
            id,
            state: self.state.clone(),
            transport: self.transport.clone(),
            config: self.config.clone(),
            clock: self.clock,
            owner: self.owner.clone(),
            signers: self.signers.clone(),
            reporting: self.reporting.clone(),
            drain,
        }
    }

    /// Notes how a worker ended: in the report, in the set of webhooks this run is done with,
    /// or as the run's first error.
    fn settle(
        &self,
        (id, result): (WebhookId, anyhow::Result<WorkerExit>),
        running: &mut HashSet<WebhookId>,
        settled: &mut HashSet<WebhookId>,
        report: &mut RunReport,
        first_error: &mut Option<anyhow::Error>,
    ) {
        running.remove(&id);
        match result {
            Ok(
                WorkerExit::Idle | WorkerExit::Inactive | WorkerExit::Stopped | WorkerExit::Fenced,
            ) => {}
            Ok(WorkerExit::HandedOver(owner)) => {
                settled.insert(id.clone());
                if !report.handed_over.iter().any(|(w, _)| *w == id) {
                    report.handed_over.push((id, owner));
                }
            }
            Ok(WorkerExit::Disabled) => {
                settled.insert(id.clone());
                report.disabled.push(id);
            }
            Err(error) => {
                tracing::error!(webhook = %id, "delivery worker failed: {error:#}");
                settled.insert(id);
                first_error.get_or_insert(error);
            }
        }
    }
}
