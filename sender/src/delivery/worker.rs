//! One webhook's worker: it takes the webhook's lease (or waits for it, or leaves the webhook
//! to the worker that holds it), works the queue under it, and gives it back.
//!
//! The work under a lease ([`LeasedWork`]) is one loop of named steps, each turn: renew the
//! lease, re-read the registration, flush due batches, fetch ready requests, send the due ones,
//! start a commit of the outcomes in, look whether anything is left, and wait for the first of
//! an answer, a commit, the next due time or the stop. Strict order (`parallel == 1`) sends
//! the next request only once the previous one's outcome is on disk.

use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::clock::Clock;
use super::health::HealthTracker;
use super::outcome::judge;
use super::reporting::Reporting;
use super::signers::SignerCache;
use super::transport::{Answer, Outbound, Transport};
use crate::config::DeliveryConfig;
use crate::lease::{next_look_ms, HolderWatch};
use crate::registry::{Signer, Status, Webhook, WebhookId};
use crate::retry::millis;
use crate::store::{
    AttemptRecord, HealthChange, LeaseToken, PendingRequest, Recorded, RequestState, State,
};

/// Longest an outcome waits to share a commit with others (relaxed order only).
const GROUP_COMMIT_MS: i64 = 5;

/// Most pending requests one query fetches (relaxed order): big pages mean few round trips
/// to the storage thread, and a page of bodies is still only a few hundred kilobytes.
const MAX_PAGE: usize = 1024;

/// Why a worker stopped.
pub(super) enum WorkerExit {
    Idle,
    /// The webhook was retired, disabled or deleted meanwhile.
    Inactive,
    Stopped,
    HandedOver(String),
    Disabled,
    /// A commit found the lease's fence changed: another worker holds the webhook now.
    Fenced,
}

/// Runs a blocking storage call off the async threads.
pub(super) async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    tokio::task::spawn_blocking(call)
        .await
        .context("a storage task panicked")?
}

/// One webhook's worker, with the parts of the engine it works with (cloned for its task).
pub(super) struct Worker<T: Transport> {
    /// The webhook.
    pub(super) id: WebhookId,
    pub(super) state: Arc<dyn State>,
    pub(super) transport: Arc<T>,
    pub(super) config: DeliveryConfig,
    pub(super) clock: Clock,
    /// This engine's lease owner tag.
    pub(super) owner: String,
    /// The engine's signers, by registration version.
    pub(super) signers: SignerCache,
    /// The engine's counters and notifications.
    pub(super) reporting: Reporting,
    /// `trigger`: leave a webhook whose lease is held to its holder, and send staged batch
    /// events at once (no more are coming).
    pub(super) drain: bool,
}

impl<T: Transport> Worker<T> {
    /// Works the webhook until it is done, stopped or left to another worker.
    ///
    /// When another live worker holds the lease, `trigger` (`drain`) leaves the webhook to it;
    /// `run` waits for the lease, looking again as [`crate::lease`] decides and saying who
    /// delivers once per holder. The wait stays in this task, so `run` does not start the
    /// webhook's worker again and again meanwhile.
    pub(super) async fn work(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<WorkerExit> {
        let ttl_ms = millis(self.config.lease_ttl);
        let poll_ms = millis(self.config.poll_interval);
        let mut holders = HolderWatch::default();
        let look_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(look_timer);
        loop {
            let now = self.clock.now_ms();
            let lease = {
                let (state, id, owner) = (self.state.clone(), self.id.clone(), self.owner.clone());
                blocking(move || state.try_lease(&id, &owner, now, ttl_ms)).await?
            };
            let token = match lease.token(&self.id) {
                Ok(token) => token,
                Err(held) => {
                    if holders.held_by(&held.owner) {
                        tracing::info!(webhook = %self.id, owner = %held.owner, "another worker delivers to this webhook");
                    }
                    if self.drain {
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
            let result = LeasedWork::new(&self, token).run(&mut stop).await;
            let (state, lease_id, owner) =
                (self.state.clone(), self.id.clone(), self.owner.clone());
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
                Ok(WorkerExit::HandedOver(holder)) if !self.drain => {
                    // `run` lost the lease (it stalled past its expiry): wait for it again
                    // rather than end and be started anew; the warning named the holder.
                    holders.held_by(&holder);
                }
                // The lease changed hands under this worker: `run` takes it up again from the
                // top, under whatever fence it holds now, or waits for the new holder.
                Ok(WorkerExit::Fenced) if !self.drain => {}
                _ => {
                    blocking(move || state.release_lease(&lease_id, &owner)).await?;
                    return result;
                }
            }
        }
    }
}

/// An attempt in flight gives back its lane, its request, when it started and its answer.
type Attempt<L> = (L, PendingRequest, i64, Answer);

/// What a commit gives back: its records, the health change it carried, and what was
/// written.
type Committed = (Vec<AttemptRecord>, Option<HealthChange>, Recorded);

/// A commit of outcomes under way.
type Recording = tokio::task::JoinHandle<anyhow::Result<Committed>>;

/// What a step says about the loop: go on, or end the work under this lease.
type Step = anyhow::Result<ControlFlow<WorkerExit>>;

/// The registration as last read, ready to sign with.
struct Registration {
    webhook: Webhook,
    /// Built again only when the registration's version changes ([`SignerCache`]).
    signer: Arc<Signer>,
    /// When it was read (epoch ms): it is read again a poll interval later.
    read_at_ms: i64,
}

/// When the loop looks again at the latest: the soonest time any step asked for.
struct Wake(i64);

impl Wake {
    fn no_later_than(&mut self, at_ms: i64) {
        self.0 = self.0.min(at_ms);
    }
}

/// What the loop woke up for.
enum Woken<L> {
    /// Attempts came back (all that had, at once).
    Answered(Vec<Attempt<L>>),
    /// The commit under way ended.
    Committed(anyhow::Result<Committed>),
    /// A due time, or the stop signal (looked at at the top of the loop).
    Looked,
}

/// The work of one webhook's worker while it holds the lease `lease`: the loop's state.
struct LeasedWork<'w, T: Transport> {
    worker: &'w Worker<T>,
    lease: LeaseToken,
    /// Requests in flight at most.
    parallel: usize,
    /// `parallel == 1`: Learning Manager's strict order.
    strict: bool,
    ttl_ms: i64,
    renew_every_ms: i64,
    poll_ms: i64,
    /// Connection slots not in use: one per request in flight at most.
    lanes: Vec<T::Lane>,
    in_flight: JoinSet<Attempt<T::Lane>>,
    /// Requests sent whose outcome is not yet committed: never fetched again meanwhile.
    unsettled: HashSet<i64>,
    /// Outcomes waiting for the next commit, and the commit under way (one at a time, so
    /// outcomes are written in the order they came and many share a transaction).
    to_record: Vec<AttemptRecord>,
    recording: Option<Recording>,
    /// When the oldest outcome not yet handed to a commit came in.
    recorded_wait_since: Option<i64>,
    /// Requests fetched and not yet sent, in order.
    ready: VecDeque<PendingRequest>,
    /// Relaxed order scans forward from here, so rows in flight are not fetched again.
    cursor: i64,
    lease_renewed_ms: i64,
    registration: Option<Registration>,
    /// When staged batch events fall due; `i64::MIN` to look at once, `None` when none are
    /// staged.
    batch_due_ms: Option<i64>,
    /// The webhook's health through the outcomes, read when the work starts.
    health: Option<HealthTracker>,
}

impl<'w, T: Transport> LeasedWork<'w, T> {
    fn new(worker: &'w Worker<T>, lease: LeaseToken) -> Self {
        let parallel = worker.config.parallel.max(1);
        let ttl_ms = millis(worker.config.lease_ttl);
        let renew_every_ms = (ttl_ms / 3).max(1);
        Self {
            worker,
            lease,
            parallel,
            strict: parallel == 1,
            ttl_ms,
            renew_every_ms,
            poll_ms: millis(worker.config.poll_interval).max(1),
            lanes: (0..parallel).map(|_| worker.transport.lane()).collect(),
            in_flight: JoinSet::new(),
            unsettled: HashSet::new(),
            to_record: Vec::new(),
            recording: None,
            recorded_wait_since: None,
            ready: VecDeque::new(),
            cursor: 0,
            // Renewed on the first turn: `work` runs this again and again while it finds work
            // waiting, and the stored lease must not lapse across short passes.
            lease_renewed_ms: worker.clock.now_ms().saturating_sub(renew_every_ms),
            registration: None,
            batch_due_ms: Some(i64::MIN),
            health: None,
        }
    }

    fn id(&self) -> &'w WebhookId {
        &self.worker.id
    }

    /// Works the queue until it is empty, the stop is raised, or the lease or the webhook is
    /// lost; then lets the attempts in flight finish and records them.
    async fn run(mut self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<WorkerExit> {
        let (state, webhook_id) = (self.worker.state.clone(), self.id().clone());
        let stored = blocking(move || state.health(&webhook_id)).await?;
        let notify = self.worker.reporting.notifications.is_some();
        self.health = Some(HealthTracker::new(stored, notify));
        // One timer for the whole loop, moved with `reset`: a fresh `sleep_until` on every
        // turn would register and cancel a timer per completed attempt.
        let wake_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(wake_timer);
        let exit = loop {
            let now = self.worker.clock.now_ms();
            if *stop.borrow() {
                break WorkerExit::Stopped;
            }
            if let ControlFlow::Break(exit) = self.renew_lease(now).await? {
                break exit;
            }
            if let ControlFlow::Break(exit) = self.read_registration(now).await? {
                break exit;
            }
            self.flush_batches(now).await?;
            // Strict order: the next request is chosen only once the previous one's outcome
            // is on disk, so a failure holds back everything behind it, even across a crash.
            let may_send = !self.strict
                || (self.in_flight.is_empty()
                    && self.recording.is_none()
                    && self.to_record.is_empty());
            let mut wake = Wake(now + self.poll_ms.min(self.renew_every_ms));
            if let Some(due) = self.batch_due_ms {
                wake.no_later_than(due);
            }
            if may_send {
                self.fetch_ready(now).await?;
                self.send_due(now, &mut wake);
            }
            self.start_commit(now, &mut wake);
            if let ControlFlow::Break(exit) = self.look_for_more(now, &mut wake).await? {
                break exit;
            }
            wake_timer
                .as_mut()
                .reset(self.worker.clock.instant_of(wake.0));
            match self.wait(wake_timer.as_mut(), stop).await? {
                Woken::Answered(done) => self.answered(done),
                Woken::Committed(result) => {
                    self.recording = None;
                    if let ControlFlow::Break(exit) = self.committed(result)? {
                        break exit;
                    }
                }
                Woken::Looked => {}
            }
        };
        self.finish(exit).await
    }

    /// Waits for the first of: attempts coming back, the commit under way ending, the wake
    /// timer, the stop signal.
    async fn wait(
        &mut self,
        wake_timer: Pin<&mut tokio::time::Sleep>,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Woken<T::Lane>> {
        let committed = async {
            match self.recording.as_mut() {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        Ok(tokio::select! {
            Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                let mut done = vec![joined.context("an attempt task panicked")?];
                while let Some(more) = self.in_flight.try_join_next() {
                    done.push(more.context("an attempt task panicked")?);
                }
                Woken::Answered(done)
            }
            result = committed => Woken::Committed(result.context("a storage task panicked")?),
            () = wake_timer => Woken::Looked,
            _ = stop.changed() => Woken::Looked,
        })
    }

    /// Renews the lease once a third of its TTL has passed; ends the work when it changed
    /// hands meanwhile.
    async fn renew_lease(&mut self, now: i64) -> Step {
        if now - self.lease_renewed_ms < self.renew_every_ms {
            return Ok(ControlFlow::Continue(()));
        }
        let worker = self.worker;
        let (state, lease_id, owner) = (
            worker.state.clone(),
            worker.id.clone(),
            worker.owner.clone(),
        );
        let ttl_ms = self.ttl_ms;
        let renewed = blocking(move || state.try_lease(&lease_id, &owner, now, ttl_ms)).await?;
        match renewed.token(&worker.id) {
            Ok(token) if token == self.lease => {}
            // Taken by another and given back meanwhile: what this worker holds in memory may
            // be stale, so it starts over under the new fence.
            Ok(_) => return Ok(ControlFlow::Break(WorkerExit::Fenced)),
            Err(held) => {
                tracing::warn!(webhook = %worker.id, owner = %held.owner, "lost the lease to another worker");
                return Ok(ControlFlow::Break(WorkerExit::HandedOver(held.owner)));
            }
        }
        self.lease_renewed_ms = now;
        Ok(ControlFlow::Continue(()))
    }

    /// Re-reads the registration now and then, so edits, rotations and retirement take effect
    /// while the worker runs; ends the work when the webhook is no longer active.
    async fn read_registration(&mut self, now: i64) -> Step {
        if self
            .registration
            .as_ref()
            .is_some_and(|read| now - read.read_at_ms < self.poll_ms)
        {
            return Ok(ControlFlow::Continue(()));
        }
        let (state, webhook_id) = (self.worker.state.clone(), self.id().clone());
        match blocking(move || state.webhook(&webhook_id)).await? {
            Some(found) if found.status == Status::Active => {
                let signer = self.worker.signers.signer(&found)?;
                self.registration = Some(Registration {
                    webhook: found,
                    signer,
                    read_at_ms: now,
                });
                // Another process may have staged batch events meanwhile, enough to fill a
                // batch before the due time this worker knows of: look now.
                self.batch_due_ms = Some(i64::MIN);
                // Relaxed order scans forward from the cursor; retries that fell due behind it
                // are found again from the start at least this often, even while new requests
                // keep the forward scan busy.
                self.cursor = 0;
                // A head waiting for its retry time is read again at least this often, so a
                // **Retry now** (another process making it due) takes effect within a poll
                // interval rather than at the old time.
                self.ready.clear();
                Ok(ControlFlow::Continue(()))
            }
            _ => Ok(ControlFlow::Break(WorkerExit::Inactive)),
        }
    }

    /// Turns staged batch events into requests when they fall due. Draining flushes whatever
    /// is staged at once, but only when something may be: at the start and after each re-read
    /// of the registration (`batch_due_ms` is then set), not on every turn of the loop, which
    /// would cost a transaction each.
    async fn flush_batches(&mut self, now: i64) -> anyhow::Result<()> {
        let drain = self.worker.drain;
        if !self.batch_due_ms.is_some_and(|due| due <= now || drain) {
            return Ok(());
        }
        let (state, webhook_id) = (self.worker.state.clone(), self.id().clone());
        let config = &self.worker.config;
        let (interval, size) = (millis(config.batch_interval), config.batch_size.max(1));
        self.batch_due_ms =
            blocking(move || state.flush_batches(&webhook_id, now, interval, size, drain)).await?;
        Ok(())
    }

    /// Fetches the next pending requests when none are ready and a lane is free: the head of
    /// the queue (strict), or a page of due ones after the cursor, from the start again when
    /// that finds none (relaxed).
    async fn fetch_ready(&mut self, now: i64) -> anyhow::Result<()> {
        if self.lanes.is_empty() || !self.ready.is_empty() {
            return Ok(());
        }
        let limit = if self.strict {
            1
        } else {
            (self.parallel * 16).min(MAX_PAGE)
        };
        let mut found = self.pending(limit, now).await?;
        if !self.strict && found.is_empty() && self.cursor > 0 {
            // Back to the start for retries that fell due behind the cursor.
            self.cursor = 0;
            found = self.pending(limit, now).await?;
        }
        if !self.strict {
            self.cursor = found.iter().map(|r| r.id).max().unwrap_or(self.cursor);
        }
        let unsettled = &self.unsettled;
        self.ready
            .extend(found.into_iter().filter(|r| !unsettled.contains(&r.id)));
        Ok(())
    }

    async fn pending(&mut self, limit: usize, now: i64) -> anyhow::Result<Vec<PendingRequest>> {
        let (state, webhook_id) = (self.worker.state.clone(), self.id().clone());
        let (strict, after_id) = (self.strict, self.cursor);
        blocking(move || state.pending(&webhook_id, limit, strict, now, after_id)).await
    }

    /// Sends the ready requests that are due, one per free lane (strict: one at a time). The
    /// head of the line that is not due yet holds the rest back, and the loop wakes at its
    /// time.
    fn send_due(&mut self, now: i64, wake: &mut Wake) {
        while !self.lanes.is_empty() {
            let Some(front) = self.ready.front() else {
                break;
            };
            if front.next_attempt_at_ms > now {
                // Strict order: the head waits for its retry time and the rest behind it.
                wake.no_later_than(front.next_attempt_at_ms);
                break;
            }
            if self.strict && !self.in_flight.is_empty() {
                break;
            }
            // The lease as last renewed must still be well within its TTL when a request
            // leaves: a process that stalled since (SIGSTOP, a frozen VM) renews first, at the
            // top of the loop, and finds out whether another worker took over.
            if self.worker.clock.now_ms() - self.lease_renewed_ms >= self.renew_every_ms * 2 {
                wake.no_later_than(now);
                break;
            }
            let Some(registration) = self.registration.as_ref() else {
                break;
            };
            let (Some(request), Some(mut lane)) = (self.ready.pop_front(), self.lanes.pop()) else {
                break;
            };
            let started = self.worker.clock.now_ms();
            let headers = registration.signer.headers(
                &request.msg_id,
                started.div_euclid(1000),
                &request.body,
            );
            let outbound = Outbound {
                url: registration.webhook.url.clone(),
                target_policy: registration.webhook.target_policy,
                headers,
                body: request.body.clone(),
            };
            let transport = self.worker.transport.clone();
            self.unsettled.insert(request.id);
            self.in_flight.spawn(async move {
                let answer = transport.send(&mut lane, &outbound).await;
                (lane, request, started, answer)
            });
        }
    }

    /// Judges the attempts that came back and queues their outcomes for the next commit.
    fn answered(&mut self, done: Vec<Attempt<T::Lane>>) {
        for (lane, request, started, answer) in done {
            self.lanes.push(lane);
            let record = self.judge(&request, started, answer);
            self.follow(&record, &request);
            if self.strict && record.next != RequestState::Delivered {
                // Later requests must not overtake the one that failed.
                self.ready.clear();
            }
            self.to_record.push(record);
        }
        self.recorded_wait_since
            .get_or_insert(self.worker.clock.now_ms());
    }

    fn judge(&self, request: &PendingRequest, started_ms: i64, answer: Answer) -> AttemptRecord {
        let now = self.worker.clock.now_ms();
        judge(&self.worker.config.retry, request, started_ms, now, answer)
    }

    /// Counts a judged attempt for `/metrics` and follows the webhook's health through it.
    fn follow(&mut self, record: &AttemptRecord, request: &PendingRequest) {
        if let Some(counters) = &self.worker.reporting.counters {
            counters.attempted(self.id(), record.status);
        }
        let name = self
            .registration
            .as_ref()
            .map_or("", |registration| registration.webhook.name.as_str());
        if let Some(health) = self.health.as_mut() {
            health.judged(record, &request.msg_id, name);
        }
    }

    /// Starts a commit of the outcomes waiting, unless one is under way. Relaxed order commits
    /// outcomes in groups (a commit costs about the same for one row or a hundred); strict
    /// order commits each at once, as the next send waits on it.
    fn start_commit(&mut self, now: i64, wake: &mut Wake) {
        let group_full = self.to_record.len() >= self.parallel * 2 || self.in_flight.is_empty();
        let group_old = self
            .recorded_wait_since
            .is_some_and(|since| now - since >= GROUP_COMMIT_MS);
        if let (Some(since), false) = (self.recorded_wait_since, self.strict) {
            wake.no_later_than(since + GROUP_COMMIT_MS);
        }
        if self.recording.is_none()
            && !self.to_record.is_empty()
            && (self.strict || group_full || group_old)
        {
            self.recorded_wait_since = None;
            let records = std::mem::take(&mut self.to_record);
            self.recording = Some(self.commit(records));
        }
    }

    /// Records `records` under the lease, off the async threads, with the change of health
    /// they made (and its notifications), if any.
    fn commit(&mut self, records: Vec<AttemptRecord>) -> Recording {
        let (state, lease) = (self.worker.state.clone(), self.lease.clone());
        let health = self.health.as_mut().and_then(HealthTracker::take_change);
        tokio::task::spawn_blocking(move || {
            state
                .record_outcomes(&lease, &records, health.as_ref())
                .map(|recorded| (records, health, recorded))
        })
    }

    /// What a commit ended: its requests are settled (they may be fetched again), and the
    /// work ends when the lease changed hands (nothing was written) or a request's retention
    /// ended and `record` disabled the webhook in the same transaction.
    fn committed(&mut self, result: anyhow::Result<Committed>) -> Step {
        let (records, health, recorded) = result?;
        for record in &records {
            self.unsettled.remove(&record.request_id);
        }
        if let (Some(change), Recorded::Written { .. }) = (&health, recorded) {
            if let Some(tracker) = self.health.as_mut() {
                tracker.committed(change);
            }
            if let (false, Some(wake)) = (
                change.notices.is_empty(),
                &self.worker.reporting.notifications,
            ) {
                wake.notify_one();
            }
        }
        let id = self.id();
        Ok(match recorded {
            Recorded::Fenced => {
                tracing::warn!(
                    webhook = %id,
                    outcomes = records.len(),
                    "the lease changed hands while this worker stalled; its outcomes are not recorded, the new holder sends those requests again"
                );
                ControlFlow::Break(WorkerExit::Fenced)
            }
            Recorded::Written { expired_events } => {
                match records.iter().find(|r| r.next == RequestState::Expired) {
                    Some(expired) => {
                        tracing::error!(
                            webhook = %id,
                            request = expired.request_id,
                            expired_events,
                            "webhook disabled: retention ended"
                        );
                        ControlFlow::Break(WorkerExit::Disabled)
                    }
                    None => ControlFlow::Continue(()),
                }
            }
        })
    }

    /// With nothing in flight, ready or waiting for a commit, and no batch staged: ends the
    /// work when the queue is empty, else wakes the loop when its next request falls due.
    async fn look_for_more(&mut self, now: i64, wake: &mut Wake) -> Step {
        let busy = !self.in_flight.is_empty()
            || self.recording.is_some()
            || !self.ready.is_empty()
            || !self.to_record.is_empty();
        if busy || self.batch_due_ms.is_some() {
            return Ok(ControlFlow::Continue(()));
        }
        let (state, webhook_id) = (self.worker.state.clone(), self.id().clone());
        match blocking(move || state.next_due(&webhook_id)).await? {
            None => Ok(ControlFlow::Break(WorkerExit::Idle)),
            Some(due) => {
                wake.no_later_than(due.max(now));
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    /// Lets the attempts in flight finish (the timeouts bound them) and records every outcome,
    /// so a clean stop repeats nothing; gives how the work ended.
    async fn finish(mut self, mut exit: WorkerExit) -> anyhow::Result<WorkerExit> {
        if let Some(handle) = self.recording.take() {
            let result = handle.await.context("a storage task panicked")?;
            if let ControlFlow::Break(settled) = self.committed(result)? {
                exit = settled;
            }
        }
        while let Some(joined) = self.in_flight.join_next().await {
            let (_, request, started, answer) = joined.context("an attempt task panicked")?;
            let record = self.judge(&request, started, answer);
            self.follow(&record, &request);
            self.to_record.push(record);
        }
        if !self.to_record.is_empty() && !matches!(exit, WorkerExit::Fenced) {
            let records = std::mem::take(&mut self.to_record);
            let result = self
                .commit(records)
                .await
                .context("a storage task panicked")?;
            if let ControlFlow::Break(settled) = self.committed(result)? {
                exit = settled;
            }
        }
        Ok(exit)
    }
}
