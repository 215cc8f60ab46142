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
    /// Whether a forward job was committed with the request (forwarding on, and at least one
    /// event was new).
    pub queued_for_forwarding: bool,
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
}
