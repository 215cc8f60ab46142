//! One target's forwarder: it takes the head of the target's queue, sends it, and records
//! what happened, one job at a time.
//!
//! A job that fails in a way that may pass stays at the head and holds the queue: the next
//! attempt is due after the backoff step (kept in memory, and in the store for the pages);
//! while it waits, the forwarder looks at the head again every second, so a job an operator
//! skipped or retried meanwhile is seen at once. A job the app refuses for good is parked and
//! the queue moves on. A delivery or a park is recorded durably before the next job is
//! taken; until it sticks the forwarder records it again rather than send the job again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::attempt::{Sender, Sent};
use super::log_limit::LogLimit;
use super::policy::{judge, RetryPolicy, Verdict};
use super::ForwardTarget;
use crate::metrics::Metrics;
use crate::store::forward::{AttemptResult, ForwardJob, ForwardQueue, JobOutcome};

/// How often a forwarder looks at its queue without a wake-up, and at its held job while it
/// waits for the next try.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// Resolves once a stop was asked for (or the handle is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps `delay`; `false` when a stop came first.
pub(super) async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stopped(stop) => false,
    }
}

/// The head job that failed, and when it is due again.
struct Held {
    job_id: i64,
    /// Failures in a row since this forwarder took it: the backoff step.
    failures: u32,
    next_at: Instant,
}

/// One target's forwarder.
pub(super) struct Worker {
    pub(super) target: ForwardTarget,
    /// The target's name in the store.
    pub(super) name: String,
    pub(super) queue: Arc<dyn ForwardQueue>,
    pub(super) retry: RetryPolicy,
    pub(super) sender: Sender,
    pub(super) metrics: Arc<Metrics>,
    /// Woken after each recorded outcome, so the backlog in the metrics follows soon.
    pub(super) recorded: Arc<Notify>,
    /// How long an attempt in flight at shutdown may take to finish.
    pub(super) grace: Duration,
}

/// What a pass of the loop asks for next.
enum Next {
    /// Look at the head again now.
    Again,
    /// Wait for a wake-up (or the poll), then look again.
    Idle,
    /// Wait this long (or a skip seen at the next poll), then look again.
    Wait(Duration),
    /// Stop.
    Stop,
}

impl Worker {
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(target = %self.name, events = %self.target.events, "forwarding");
        let mut changes = self.queue.changes(&self.name);
        let mut held: Option<Held> = None;
        let mut store_failures = 0;
        let mut log = LogLimit::new(Instant::now());
        loop {
            if *stop.borrow() {
                return;
            }
            // Seen before the look, so a job queued during it wakes the wait after it.
            changes.borrow_and_update();
            let next = match self.queue.head(&self.name).await {
                Ok(Some(job)) => {
                    store_failures = 0;
                    self.take(job, &mut held, &mut log, &mut stop).await
                }
                Ok(None) => {
                    store_failures = 0;
                    held = None;
                    Next::Idle
                }
                Err(error) => {
                    store_failures += 1;
                    if let Some(left_out) = log.allow(Instant::now()) {
                        tracing::warn!(target = %self.name, %error, left_out, "reading the forwarding queue");
                    }
                    Next::Wait(self.retry.next_delay(store_failures, None))
                }
            };
            let go_on = match next {
                Next::Again => true,
                Next::Stop => false,
                Next::Wait(delay) => pause(delay, &mut stop).await,
                Next::Idle => tokio::select! {
                    _ = changes.changed() => true,
                    () = tokio::time::sleep(POLL) => true,
                    () = stopped(&mut stop) => false,
                },
            };
            if !go_on {
                return;
            }
        }
    }

    /// Tries `job` when it is due, and records what happened.
    async fn take(
        &self,
        job: ForwardJob,
        held: &mut Option<Held>,
        log: &mut LogLimit,
        stop: &mut watch::Receiver<bool>,
    ) -> Next {
        let now = Instant::now();
        let same = held.as_ref().is_some_and(|held| held.job_id == job.job_id);
        if !same {
            // A new head (or this forwarder's first look after a start): due when the store
            // says the last failure asked for, else now.
            let wait_ms = job
                .next_attempt_at_ms
                .map_or(0, |at| at.saturating_sub(verify::unix_now_ms()).max(0));
            *held = Some(Held {
                job_id: job.job_id,
                failures: 0,
                next_at: now + Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
            });
        }
        let Some(current) = held.as_mut() else {
            return Next::Again;
        };
        if current.next_at > now {
            // Look again at the next poll: an operator may have skipped it meanwhile.
            return Next::Wait((current.next_at - now).min(POLL));
        }
        let sent = tokio::select! {
            sent = self.sender.send(&self.target, &job) => sent,
            // An attempt in flight at shutdown gets the grace to finish.
            () = async { stopped(stop).await; tokio::time::sleep(self.grace).await } => return Next::Stop,
        };
        let Sent {
            attempt,
            retry_after,
        } = sent;
        let attempts = job.attempts.saturating_add(1);
        let summary = attempt.summary();
        let result = match judge(attempt.status) {
            Verdict::Delivered => AttemptResult::Delivered,
            Verdict::Park => AttemptResult::Parked,
            Verdict::Retry => {
                current.failures += 1;
                let delay = self.retry.next_delay(current.failures, retry_after);
                current.next_at = Instant::now() + delay;
                if let Some(left_out) = log.allow(Instant::now()) {
                    tracing::warn!(
                        target = %self.name,
                        job = job.job_id,
                        request = job.request_id,
                        attempt = attempts,
                        step = current.failures,
                        error = %summary,
                        retry_in = ?delay,
                        left_out,
                        "forwarding failed; the job holds its queue and is tried again"
                    );
                }
                AttemptResult::Failed {
                    next_attempt_at_ms: verify::unix_now_ms()
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                }
            }
        };
        self.metrics
            .forwarding
            .attempted(&self.name, result.outcome());
        match result {
            AttemptResult::Delivered => {
                if current.failures > 0 {
                    if let Some(left_out) = log.allow(Instant::now()) {
                        tracing::info!(target = %self.name, job = job.job_id, attempt = attempts, left_out, "forwarded after failures");
                    }
                }
                *held = None;
            }
            AttemptResult::Parked => {
                if let Some(left_out) = log.allow(Instant::now()) {
                    tracing::warn!(
                        target = %self.name,
                        job = job.job_id,
                        request = job.request_id,
                        attempt = attempts,
                        error = %summary,
                        left_out,
                        "the app refused the request for good: job parked, the queue moves on \
                         (`receiver forward retry JOB` once the app takes it)"
                    );
                }
                *held = None;
            }
            AttemptResult::Failed { .. } => {}
        }
        let outcome = JobOutcome {
            job_id: job.job_id,
            attempt,
            result,
        };
        if !self.record(outcome, log, stop).await {
            return Next::Stop;
        }
        self.recorded.notify_one();
        Next::Again
    }

    /// Records `outcome`: a delivery or a park until it sticks (sending the job again would
    /// be worse than waiting), a failure once, best effort. `false` when stopped first.
    async fn record(
        &self,
        outcome: JobOutcome,
        log: &mut LogLimit,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let durable = !matches!(outcome.result, AttemptResult::Failed { .. });
        let mut failures = 0;
        loop {
            match self.queue.record(outcome.clone()).await {
                Ok(()) => return true,
                Err(error) if !durable => {
                    if let Some(left_out) = log.allow(Instant::now()) {
                        tracing::warn!(target = %self.name, job = outcome.job_id, %error, left_out, "recording a failed attempt (the schedule goes on)");
                    }
                    return true;
                }
                Err(error) => {
                    failures += 1;
                    if let Some(left_out) = log.allow(Instant::now()) {
                        tracing::warn!(target = %self.name, job = outcome.job_id, %error, left_out, "recording a forwarded or parked job; trying again");
                    }
                    if !pause(self.retry.next_delay(failures, None), stop).await {
                        return false;
                    }
                }
            }
        }
    }
}
