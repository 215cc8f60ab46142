//! The engine: a worker per webhook with work, each under the webhook's lease, working its
//! queue in order and recording every outcome under the lease's fence.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::clock::Clock;
use super::transport::{Answer, HttpTransport, Outbound, Transport};
use crate::config::DeliveryConfig;
use crate::lease::{next_look_ms, HolderWatch};
use crate::registry::{Signer, Status, Webhook, WebhookId};
use crate::retry::{millis, NextStep};
use crate::store::{
    AttemptRecord, Lease, LeaseToken, PendingRequest, Recorded, RequestState, State,
};

/// How long `run` waits before restarting a webhook's worker that failed.
const SERVE_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Longest an outcome waits to share a commit with others (relaxed order only).
const GROUP_COMMIT_MS: i64 = 5;

/// Most pending requests one query fetches (relaxed order): big pages mean few round trips
/// to the storage thread, and a page of bodies is still only a few hundred kilobytes.
const MAX_PAGE: usize = 1024;

/// A commit of outcomes under way: it gives back its records and what was written.
type Recording = tokio::task::JoinHandle<anyhow::Result<(Vec<AttemptRecord>, Recorded)>>;

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
}

impl<T: Transport> Clone for Engine<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            transport: self.transport.clone(),
            config: self.config.clone(),
            clock: self.clock,
            owner: self.owner.clone(),
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
        let https = webhooks.iter().any(|webhook| {
            webhook
                .url
                .get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        });
        if https || self.config.ca_file.is_some() {
            self.transport.tls()?;
        }
        Ok(())
    }
}

/// Why a worker stopped.
enum WorkerExit {
    Idle,
    /// The webhook was retired, disabled or deleted meanwhile.
    Inactive,
    Stopped,
    HandedOver(String),
    Disabled,
    /// A commit found the lease's fence changed: another worker holds the webhook now.
    Fenced,
}

/// Completes when `signal` is raised; never without one.
async fn signalled(signal: Option<&tokio::sync::Notify>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

/// Runs a blocking storage call off the async threads.
async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(call)
        .await
        .context("a storage task panicked")?
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
        }
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
        // Set while the state database cannot be read, so the outage is logged once.
        let mut outage: Option<()> = None;
        let work_signal = self.state.work_signal();
        tokio::pin!(shutdown);
        loop {
            cooldown.retain(|(_, until)| *until > Instant::now());
            let state = self.state.clone();
            let with_work = match blocking(move || state.webhooks_with_work()).await {
                Ok(ids) => {
                    if outage.take().is_some() {
                        tracing::warn!("the state database answers again; deliveries resume");
                    }
                    ids
                }
                // `run` outlives an outage of the state database: deliveries pause (nothing
                // is sent that cannot be recorded) and resume by themselves.
                Err(error) if matches!(mode, Mode::Serve) => {
                    if outage.is_none() {
                        tracing::error!("state database unavailable, deliveries paused: {error:#}");
                    }
                    outage = Some(());
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
                    let engine = self.clone();
                    let stop = stop_rx.clone();
                    let drain = matches!(mode, Mode::Drain(_));
                    workers.spawn(async move {
                        let result = engine.work(id.clone(), stop, drain).await;
                        (id, result)
                    });
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

    /// One webhook's worker.
    ///
    /// When another live worker holds the lease, `trigger` (`drain`) leaves the webhook to it;
    /// `run` waits for the lease, looking again as [`crate::lease`] decides and saying who
    /// delivers once per holder. The wait stays in this task, so `run` does not start the
    /// webhook's worker again and again meanwhile.
    async fn work(
        &self,
        id: WebhookId,
        mut stop: watch::Receiver<bool>,
        drain: bool,
    ) -> anyhow::Result<WorkerExit> {
        let ttl_ms = millis(self.config.lease_ttl);
        let poll_ms = millis(self.config.poll_interval);
        let mut holders = HolderWatch::default();
        let look_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(look_timer);
        loop {
            let now = self.clock.now_ms();
            let lease = {
                let (state, id, owner) = (self.state.clone(), id.clone(), self.owner.clone());
                blocking(move || state.try_lease(&id, &owner, now, ttl_ms)).await?
            };
            let fence = match lease {
                Lease::Acquired { fence } => fence,
                Lease::HeldBy(held) => {
                    if holders.held_by(&held.owner) {
                        tracing::info!(webhook = %id, owner = %held.owner, "another worker delivers to this webhook");
                    }
                    if drain {
                        return Ok(WorkerExit::HandedOver(held.owner));
                    }
                    look_timer
                        .as_mut()
                        .reset(self.clock.instant_of(next_look_ms(&held, now, poll_ms)));
                    tokio::select! {
                        () = look_timer.as_mut() => {}
                        changed = stop.changed() => {
                            if changed.is_err() {
                                return Ok(WorkerExit::Stopped);
                            }
                        }
                    }
                    if *stop.borrow() {
                        return Ok(WorkerExit::Stopped);
                    }
                    continue;
                }
            };
            holders.acquired();
            let lease = LeaseToken {
                webhook_id: id.clone(),
                fence,
            };
            let result = self.work_leased(&lease, &mut stop, drain).await;
            let (state, lease_id, owner) = (self.state.clone(), id.clone(), self.owner.clone());
            match result {
                Ok(WorkerExit::Idle) => {
                    // Give the lease up only if the queue is still empty, in one transaction:
                    // work enqueued by a process that found the lease taken is then never
                    // stranded. Work found meanwhile is taken on under the same lease (the
                    // next `try_lease` renews it, fence unchanged).
                    if blocking(move || state.release_lease_if_idle(&lease_id, &owner)).await? {
                        return result;
                    }
                }
                Ok(WorkerExit::HandedOver(holder)) if !drain => {
                    // `run` lost the lease (it stalled past its expiry): wait for it again
                    // rather than end and be started anew; the warning named the holder.
                    holders.held_by(&holder);
                }
                // The lease changed hands under this worker: `run` takes it up again from the
                // top, under whatever fence it holds now, or waits for the new holder.
                Ok(WorkerExit::Fenced) if !drain => {}
                _ => {
                    blocking(move || state.release_lease(&lease_id, &owner)).await?;
                    return result;
                }
            }
        }
    }

    async fn work_leased(
        &self,
        lease: &LeaseToken,
        stop: &mut watch::Receiver<bool>,
        drain: bool,
    ) -> anyhow::Result<WorkerExit> {
        let id = &lease.webhook_id;
        let parallel = self.config.parallel.max(1);
        let strict = parallel == 1;
        let ttl_ms = millis(self.config.lease_ttl);
        let renew_every_ms = (ttl_ms / 3).max(1);
        let poll_ms = millis(self.config.poll_interval).max(1);
        let mut lanes: Vec<T::Lane> = (0..parallel).map(|_| self.transport.lane()).collect();
        let mut in_flight: JoinSet<(T::Lane, PendingRequest, i64, Answer)> = JoinSet::new();
        // Requests sent whose outcome is not yet committed: never fetched again meanwhile.
        let mut unsettled: HashSet<i64> = HashSet::new();
        // Outcomes waiting for the next commit, and the commit under way (one at a time, so
        // outcomes are written in the order they came and many share a transaction).
        let mut to_record: Vec<AttemptRecord> = Vec::new();
        let mut recording: Option<Recording> = None;
        let mut ready: VecDeque<PendingRequest> = VecDeque::new();
        // Relaxed order scans forward from here, so rows in flight are not fetched again.
        let mut cursor: i64 = 0;
        // Renewed on the first turn: `work` runs this again and again while it finds work
        // waiting, and the stored lease must not lapse across short passes.
        let mut lease_renewed_ms = self.clock.now_ms().saturating_sub(renew_every_ms);
        let mut webhook: Option<(Webhook, Signer, i64)> = None;
        let mut batch_due_ms: Option<i64> = Some(i64::MIN);
        let mut exit = WorkerExit::Stopped;
        // When the oldest outcome not yet handed to a commit came in.
        let mut recorded_wait_since: Option<i64> = None;
        // One timer for the whole loop, moved with `reset`: a fresh `sleep_until` on every
        // turn would register and cancel a timer per completed attempt.
        let wake_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(wake_timer);
        loop {
            let now = self.clock.now_ms();
            if *stop.borrow() {
                break;
            }
            if now - lease_renewed_ms >= renew_every_ms {
                let (state, lease_id, owner) = (self.state.clone(), id.clone(), self.owner.clone());
                let renewed =
                    blocking(move || state.try_lease(&lease_id, &owner, now, ttl_ms)).await?;
                match renewed {
                    Lease::Acquired { fence } if fence == lease.fence => {}
                    // Taken by another and given back meanwhile: what this worker holds in
                    // memory may be stale, so it starts over under the new fence.
                    Lease::Acquired { .. } => {
                        exit = WorkerExit::Fenced;
                        break;
                    }
                    Lease::HeldBy(held) => {
                        tracing::warn!(webhook = %id, owner = %held.owner, "lost the lease to another worker");
                        exit = WorkerExit::HandedOver(held.owner);
                        break;
                    }
                }
                lease_renewed_ms = now;
            }
            // Re-read the registration now and then, so edits, rotations and retirement take
            // effect while the worker runs.
            if webhook
                .as_ref()
                .is_none_or(|(_, _, read)| now - read >= poll_ms)
            {
                let (state, webhook_id) = (self.state.clone(), id.clone());
                match blocking(move || state.webhook(&webhook_id)).await? {
                    Some(found) if found.status == Status::Active => {
                        let signer = found
                            .auth
                            .signer()
                            .with_context(|| format!("webhook {id}"))?;
                        webhook = Some((found, signer, now));
                        // Another process may have staged batch events meanwhile, enough
                        // to fill a batch before the due time this worker knows of: look now.
                        batch_due_ms = Some(i64::MIN);
                        // Relaxed order scans forward from the cursor; retries that fell due
                        // behind it are found again from the start at least this often, even
                        // while new requests keep the forward scan busy.
                        cursor = 0;
                    }
                    _ => {
                        exit = WorkerExit::Inactive;
                        break;
                    }
                }
            }
            // Draining flushes whatever is staged at once, but only when something may be:
            // at the start and after each re-read of the registration (`batch_due_ms` is then
            // set), not on every turn of the loop, which would cost a transaction each.
            if batch_due_ms.is_some_and(|due| due <= now || drain) {
                let (state, webhook_id) = (self.state.clone(), id.clone());
                let (interval, size) = (
                    millis(self.config.batch_interval),
                    self.config.batch_size.max(1),
                );
                batch_due_ms =
                    blocking(move || state.flush_batches(&webhook_id, now, interval, size, drain))
                        .await?;
            }
            // Strict order: the next request is chosen only once the previous one's outcome is
            // on disk, so a failure holds back everything behind it, even across a crash.
            let may_send =
                !strict || (in_flight.is_empty() && recording.is_none() && to_record.is_empty());
            if may_send && !lanes.is_empty() && ready.is_empty() {
                let limit = if strict {
                    1
                } else {
                    (parallel * 16).min(MAX_PAGE)
                };
                let mut found = self.fetch(id, limit, strict, now, cursor).await?;
                if !strict && found.is_empty() && cursor > 0 {
                    // Back to the start for retries that fell due behind the cursor.
                    cursor = 0;
                    found = self.fetch(id, limit, strict, now, cursor).await?;
                }
                if !strict {
                    cursor = found.iter().map(|r| r.id).max().unwrap_or(cursor);
                }
                ready.extend(found.into_iter().filter(|r| !unsettled.contains(&r.id)));
            }
            let mut wake_ms = now + poll_ms.min(renew_every_ms);
            if let Some(due) = batch_due_ms {
                wake_ms = wake_ms.min(due);
            }
            while may_send && !lanes.is_empty() {
                let Some(front) = ready.front() else { break };
                if front.next_attempt_at_ms > now {
                    // Strict order: the head waits for its retry time and the rest behind it.
                    wake_ms = wake_ms.min(front.next_attempt_at_ms);
                    break;
                }
                if strict && !in_flight.is_empty() {
                    break;
                }
                // The lease as last renewed must still be well within its TTL when a request
                // leaves: a process that stalled since (SIGSTOP, a frozen VM) renews first, at
                // the top of the loop, and finds out whether another worker took over.
                if self.clock.now_ms() - lease_renewed_ms >= renew_every_ms * 2 {
                    wake_ms = now;
                    break;
                }
                let (Some(request), Some(mut lane)) = (ready.pop_front(), lanes.pop()) else {
                    break;
                };
                let Some((current, signer, _)) = webhook.as_ref() else {
                    break;
                };
                let started = self.clock.now_ms();
                let headers =
                    signer.headers(&request.msg_id, started.div_euclid(1000), &request.body);
                let outbound = Outbound {
                    url: current.url.clone(),
                    headers,
                    body: request.body.clone(),
                };
                let transport = self.transport.clone();
                unsettled.insert(request.id);
                in_flight.spawn(async move {
                    let answer = transport.send(&mut lane, &outbound).await;
                    (lane, request, started, answer)
                });
            }
            // Relaxed order commits outcomes in groups (a commit costs about the same for one
            // row or a hundred); strict order commits each at once, as the next send waits on it.
            let group_full = to_record.len() >= parallel * 2 || in_flight.is_empty();
            let group_old = recorded_wait_since.is_some_and(|since| now - since >= GROUP_COMMIT_MS);
            if let (Some(since), false) = (recorded_wait_since, strict) {
                wake_ms = wake_ms.min(since + GROUP_COMMIT_MS);
            }
            if recording.is_none() && !to_record.is_empty() && (strict || group_full || group_old) {
                recorded_wait_since = None;
                let (state, records) = (self.state.clone(), std::mem::take(&mut to_record));
                let lease = lease.clone();
                recording = Some(tokio::task::spawn_blocking(move || {
                    state
                        .record(&lease, &records)
                        .map(|recorded| (records, recorded))
                }));
            }
            let busy = !in_flight.is_empty()
                || recording.is_some()
                || !ready.is_empty()
                || !to_record.is_empty();
            if !busy && batch_due_ms.is_none() {
                let (state, webhook_id) = (self.state.clone(), id.clone());
                match blocking(move || state.next_due(&webhook_id)).await? {
                    None => {
                        exit = WorkerExit::Idle;
                        break;
                    }
                    Some(due) => wake_ms = wake_ms.min(due.max(now)),
                }
            }
            wake_timer.as_mut().reset(self.clock.instant_of(wake_ms));
            let committed = async {
                match recording.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let mut done = vec![joined.context("an attempt task panicked")?];
                    while let Some(more) = in_flight.try_join_next() {
                        done.push(more.context("an attempt task panicked")?);
                    }
                    for (lane, request, started, answer) in done {
                        lanes.push(lane);
                        let record = self.judge(&request, started, answer);
                        if strict && record.next != RequestState::Delivered {
                            // Later requests must not overtake the one that failed.
                            ready.clear();
                        }
                        to_record.push(record);
                    }
                    recorded_wait_since.get_or_insert(self.clock.now_ms());
                }
                result = committed => {
                    recording = None;
                    let (records, recorded) = result.context("a storage task panicked")??;
                    for record in &records {
                        unsettled.remove(&record.request_id);
                    }
                    if let Some(settled) = Self::settled(id, &records, recorded) {
                        exit = settled;
                        break;
                    }
                }
                () = wake_timer.as_mut() => {}
                _ = stop.changed() => {}
            }
        }
        // Let attempts in flight finish (the timeouts bound them) and record every outcome,
        // so a clean stop repeats nothing.
        if let Some(handle) = recording.take() {
            let (records, recorded) = handle.await.context("a storage task panicked")??;
            if let Some(settled) = Self::settled(id, &records, recorded) {
                exit = settled;
            }
        }
        while let Some(joined) = in_flight.join_next().await {
            let (_, request, started, answer) = joined.context("an attempt task panicked")?;
            to_record.push(self.judge(&request, started, answer));
        }
        if !to_record.is_empty() && !matches!(exit, WorkerExit::Fenced) {
            let (state, records, token) = (self.state.clone(), to_record, lease.clone());
            let (records, recorded) = blocking(move || {
                state
                    .record(&token, &records)
                    .map(|recorded| (records, recorded))
            })
            .await?;
            if let Some(settled) = Self::settled(id, &records, recorded) {
                exit = settled;
            }
        }
        Ok(exit)
    }

    async fn fetch(
        &self,
        id: &WebhookId,
        limit: usize,
        strict: bool,
        now: i64,
        after_id: i64,
    ) -> anyhow::Result<Vec<PendingRequest>> {
        let (state, webhook_id) = (self.state.clone(), id.clone());
        blocking(move || state.pending(&webhook_id, limit, strict, now, after_id)).await
    }

    /// Turns an answer into the attempt's record and the request's next state.
    fn judge(&self, request: &PendingRequest, started_ms: i64, answer: Answer) -> AttemptRecord {
        let now = self.clock.now_ms();
        let attempt = request.attempts.saturating_add(1);
        let latency_ms = now.saturating_sub(started_ms);
        let success = answer.is_success();
        // The answer is taken apart, not cloned: this runs once per delivery.
        let (status, error, head, retry_after) = match answer {
            Answer::Response {
                status,
                retry_after,
                head,
            } => (Some(status), None, head, retry_after),
            Answer::Failed(error) => (None, Some(error), String::new(), None),
        };
        let next = if success {
            RequestState::Delivered
        } else {
            let wall =
                std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0));
            let retry_after = retry_after
                .as_deref()
                .and_then(|value| common::parse::retry_after(value, wall));
            match self
                .config
                .retry
                .after_failure(attempt, retry_after, request.created_at_ms, now)
            {
                NextStep::RetryAt(at) => RequestState::RetryAt(at),
                NextStep::GiveUp => RequestState::Expired,
            }
        };
        // Inside the macros, so the text is only made when the event is logged.
        let outcome = || {
            status.map_or_else(
                || error.as_deref().unwrap_or_default().to_owned(),
                |s| s.to_string(),
            )
        };
        match next {
            RequestState::Delivered => tracing::info!(
                webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, status = outcome(),
                latency_ms, "delivered"
            ),
            RequestState::RetryAt(at) => tracing::warn!(
                webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, outcome = outcome(),
                latency_ms, response = %head, retry_in_ms = at - now, "attempt failed"
            ),
            RequestState::Expired => tracing::error!(
                webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, outcome = outcome(),
                latency_ms, "retention ended; giving up"
            ),
        }
        AttemptRecord {
            request_id: request.id,
            attempt,
            started_at_ms: started_ms,
            status,
            error,
            latency_ms,
            response_head: head,
            next,
        }
    }

    /// How a commit of `records` ends the worker, if it does: the lease changed hands (nothing
    /// was written), or a request's retention ended and `record` disabled the webhook in the
    /// same transaction.
    fn settled(
        id: &WebhookId,
        records: &[AttemptRecord],
        recorded: Recorded,
    ) -> Option<WorkerExit> {
        match recorded {
            Recorded::Fenced => {
                tracing::warn!(
                    webhook = %id,
                    outcomes = records.len(),
                    "the lease changed hands while this worker stalled; its outcomes are not recorded, the new holder sends those requests again"
                );
                Some(WorkerExit::Fenced)
            }
            Recorded::Written { expired_events } => {
                let expired = records.iter().find(|r| r.next == RequestState::Expired)?;
                Self::gave_up(id, expired.request_id, expired_events);
                Some(WorkerExit::Disabled)
            }
        }
    }

    /// Reports a webhook that `record` disabled because a request's retention ended.
    fn gave_up(id: &WebhookId, request_id: i64, expired_events: u64) {
        tracing::error!(
            webhook = %id,
            request = request_id,
            expired_events,
            "webhook disabled: retention ended"
        );
    }
}
