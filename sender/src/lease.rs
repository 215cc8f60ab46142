//! Waiting for a webhook whose lease another worker holds, as data and pure functions.
//!
//! A lease changes hands only when its holder releases it, when its holder's process is seen
//! to be gone, or at its expiry. The first two can happen at any moment and no store tells
//! another process about them, so a waiting worker *looks* at the lease once per poll interval
//! (a read, which takes no write lock: see [`crate::store::Queue::try_lease`]), and never later
//! than the expiry it was shown. Between looks it sleeps: no spinning, and one log line per
//! holder it finds, not one per look.

/// A webhook's lease as found held by another live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The holder's owner tag (`run/pid:…`, `trigger/pid:…`).
    pub owner: String,
    /// Epoch ms at which the lease lapses unless its holder renews it first.
    pub expires_at_ms: i64,
}

/// When a worker that found `held` at `now_ms` looks at the lease again: after one poll
/// interval (a release or a dead holder shows then), or at the expiry if that comes first;
/// always strictly later than `now_ms`, so that a lease found expiring "now" cannot turn the
/// wait into a busy loop.
pub fn next_look_ms(held: &HeldLease, now_ms: i64, poll_ms: i64) -> i64 {
    let poll_ms = poll_ms.max(1);
    held.expires_at_ms
        .min(now_ms.saturating_add(poll_ms))
        .max(now_ms.saturating_add(1))
}

/// What a waiting worker remembers between looks: the holder it last reported, so that the
/// log says who delivers once per change of holder rather than once per look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderWatch {
    reported: Option<String>,
}

impl HolderWatch {
    /// Notes that `owner` holds the lease; `true` when that is news to report (the first
    /// holder seen, or another one than last time).
    pub fn held_by(&mut self, owner: &str) -> bool {
        if self.reported.as_deref() == Some(owner) {
            return false;
        }
        self.reported = Some(owner.to_owned());
        true
    }

    /// Notes that this worker took the lease: whoever holds it next is news again.
    pub fn acquired(&mut self) {
        self.reported = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(expires_at_ms: i64) -> HeldLease {
        HeldLease {
            owner: "run/pid:1:a".into(),
            expires_at_ms,
        }
    }

    #[test]
    fn the_next_look_is_one_poll_away_or_at_the_expiry_and_never_now() {
        // (expires_at_ms, now_ms, poll_ms) -> next look
        let check = |expires, now, poll, expected| {
            assert_eq!(
                next_look_ms(&held(expires), now, poll),
                expected,
                "expires {expires}, now {now}, poll {poll}"
            );
        };
        // A fresh lease of 15 s, polled every 250 ms: look again after one poll interval.
        check(16_000, 1_000, 250, 1_250);
        // The expiry comes before the next poll: look at the expiry.
        check(1_100, 1_000, 250, 1_100);
        // Expiring right now, or already past (clock skew between processes): 1 ms on, not 0.
        check(1_000, 1_000, 250, 1_001);
        check(500, 1_000, 250, 1_001);
        // A zero poll interval still waits.
        check(16_000, 1_000, 0, 1_001);
        // No overflow at the ends of the clock.
        check(i64::MAX, i64::MAX - 10, 250, i64::MAX);
    }

    #[test]
    fn a_holder_is_reported_once_until_it_changes_or_this_worker_takes_over() {
        let mut watch = HolderWatch::default();
        assert!(watch.held_by("run/pid:1:a"), "the first holder is news");
        for _ in 0..1000 {
            assert!(!watch.held_by("run/pid:1:a"), "the same holder is not");
        }
        assert!(watch.held_by("run/pid:2:b"), "another holder is");
        assert!(!watch.held_by("run/pid:2:b"));
        watch.acquired();
        assert!(
            watch.held_by("run/pid:2:b"),
            "after holding it ourselves, news again"
        );
    }
}
