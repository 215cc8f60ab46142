//! Retention (`--retain`, `--dedupe-window`; SPEC section 9): how long the listener keeps what
//! it stored, and the [`Pruner`] that removes the rest while it serves.
//!
//! The pruner runs a pass every [`Retention::pass_interval`]: batches of
//! [`PRUNE_BATCH`](crate::store::maintenance::PRUNE_BATCH) requests, each a short transaction
//! of the store's (see `Store::prune_batch`), oldest first. Between two batches of a pass it
//! waits [`BUSY_SHARE`] times as long as the last one held the store, so a backlog (a retention
//! set on a store of a million old events) is worked off slowly and requests keep their rate;
//! once the backlog is gone a pass is a batch or two. Why so slow: removing a request costs
//! the store about what storing it did (its body's pages, a leaf of the random-key unique
//! index, all written to the WAL, checkpointed and synced), and that I/O, not the batch's own
//! transaction, is what slows the commits around it (measured by `bench/src/bin/retention.rs`:
//! with the batches holding the writer a tenth of the time the listener kept about 0.6 of its
//! rate, with a fiftieth about 0.9 to 1). Without `--retain` the passes only drop dedupe keys
//! whose window ended (those of erased events).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::maintenance::{PruneCursor, PruneRule};
use crate::store::Store;

/// Default `--dedupe-window`: Learning Manager retries a request for 7 days.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// How much longer than a batch held the store the pruner waits before the next one: the
/// writer's time goes at most `1 / (1 + BUSY_SHARE)` to pruning while a backlog lasts (see
/// the module's documentation for why so little).
pub const BUSY_SHARE: u32 = 49;

/// The shortest wait between two batches of a pass.
const LEAST_PAUSE: Duration = Duration::from_millis(2);

/// How often a listener without `--retain` drops expired dedupe keys.
const KEYS_ONLY_INTERVAL: Duration = Duration::from_secs(60);

/// How long the listener keeps what it stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Accepted (and refused) requests received longer ago than this are pruned; `None`
    /// keeps everything (the default).
    pub retain: Option<Duration>,
    /// How long after its receipt an event's `(accountId, eventId)` key outlives the event
    /// when the event is pruned or erased.
    pub dedupe_window: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            retain: None,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
        }
    }
}

impl Retention {
    /// How long after a request passes the retention it may still be stored (SPEC section 9):
    /// 10 s, or a tenth of the retention when that is longer, up to a minute.
    pub fn deadline(&self) -> Duration {
        match self.retain {
            Some(retain) => (retain / 10).clamp(Duration::from_secs(10), Duration::from_secs(60)),
            None => KEYS_ONLY_INTERVAL,
        }
    }

    /// Time between two passes: half the deadline, so a pass that starts just before a
    /// request passes the retention, and the next one, both end before its deadline.
    pub fn pass_interval(&self) -> Duration {
        self.deadline() / 2
    }

    /// What a pass started at `now_ms` removes.
    pub fn rule_at(&self, now_ms: i64) -> PruneRule {
        PruneRule::at(now_ms, self.retain, self.dedupe_window)
    }
}

/// The listener's pruner: a task of its own, stopped before the store closes.
pub(crate) struct Pruner {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Pruner {
    /// Starts pruning `store` by `retention`; the first pass runs at once.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        retention: Retention,
        metrics: Arc<Metrics>,
    ) -> Pruner {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, retention, metrics, stopped));
        Pruner { stop, task }
    }

    /// Ends the pass under way after its current batch, and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<dyn Store>,
    retention: Retention,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    if let Some(retain) = retention.retain {
        tracing::info!(
            retain_seconds = retain.as_secs(),
            dedupe_window_seconds = retention.dedupe_window.as_secs(),
            "pruning requests past the retention"
        );
    }
    loop {
        let pass = pass(store.as_ref(), &retention, &metrics, &mut stopped);
        if !pass.await {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(retention.pass_interval()) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One pass, batch by batch; `false` when told to stop.
async fn pass(
    store: &dyn Store,
    retention: &Retention,
    metrics: &Metrics,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let rule = retention.rule_at(verify::unix_now_ms());
    let mut cursor = PruneCursor::START;
    loop {
        if *stopped.borrow() {
            return false;
        }
        let batch = match store.prune_batch(rule, cursor).await {
            Ok(batch) => batch,
            Err(error) => {
                // The next pass tries again (a store outage shows in /healthz already).
                tracing::warn!(%error, "pruning failed; trying again at the next pass");
                return true;
            }
        };
        let pruned = batch.pruned;
        metrics.observe_prune(
            batch.held,
            pruned.requests,
            pruned.events,
            pruned.refused,
            pruned.keys_expired,
        );
        if !batch.more {
            return true;
        }
        cursor = batch.next;
        let pause = (batch.held * BUSY_SHARE).max(LEAST_PAUSE);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopped.changed() => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_gone_within_the_spec_deadline() {
        let retention = |retain: Duration| Retention {
            retain: Some(retain),
            ..Retention::default()
        };
        let cases = [
            (Duration::from_secs(1), 10),
            (Duration::from_secs(60), 10),
            (Duration::from_secs(200), 20),
            (Duration::from_secs(3600), 60),
            (Duration::from_secs(90 * 86_400), 60),
        ];
        for (retain, deadline) in cases {
            let retention = retention(retain);
            assert_eq!(
                retention.deadline(),
                Duration::from_secs(deadline),
                "{retain:?}"
            );
            assert_eq!(retention.pass_interval() * 2, retention.deadline());
        }
        assert_eq!(Retention::default().deadline(), KEYS_ONLY_INTERVAL);
        assert_eq!(Retention::default().dedupe_window.as_secs(), 7 * 86_400);
    }
}
