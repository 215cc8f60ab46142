//! What storing one accepted request did: which of its events were new, and whether it was
//! queued for forwarding.
//!
//! Its own module, below both the store (which returns it) and the metrics and output (which
//! count and print it), so that neither imports the other for it.

/// What `Store::accept` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptOutcome {
    /// For each event in order: `true` when it was stored now, `false` when it was a
    /// duplicate (already stored, or earlier in the same request).
    pub new: Vec<bool>,
    /// The targets that got a forward job with the request, bit `i` for the receiver's
    /// target `i` (`routing::Routes`): those that take at least one of its new events.
    pub forward_targets: i64,
}

impl AcceptOutcome {
    /// How many events were stored now.
    pub fn stored(&self) -> usize {
        self.new.iter().filter(|new| **new).count()
    }

    /// How many events were duplicates.
    pub fn duplicates(&self) -> usize {
        self.new.len() - self.stored()
    }

    /// How many forward jobs were committed with the request.
    pub fn forward_jobs(&self) -> u64 {
        u64::from(self.forward_targets.count_ones())
    }
}
