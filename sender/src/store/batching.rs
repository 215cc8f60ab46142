//! The making of requests from events, alike in both stores: a real-time event becomes a
//! request at once, a batch event is staged; the batch rule says when staged events become
//! requests, of at most `--batch-size` events per account.

use std::collections::BTreeSet;

use super::NewDelivery;

/// A request about to be written: its body is final.
pub(crate) struct RequestToWrite {
    pub account_id: i64,
    /// Distinct event names, comma-separated.
    pub event_names: String,
    pub event_ids: Vec<String>,
    pub body: Vec<u8>,
    /// The staged events it is made of (none for a real-time event).
    pub staged_seqs: Vec<i64>,
}

impl RequestToWrite {
    /// The JSON list of its event ids, as stored.
    pub fn event_ids_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&self.event_ids)?)
    }
}

/// What an enqueue writes for one delivery: a request now, or an event staged for a batch.
pub(crate) enum Enqueued {
    Request(RequestToWrite),
    Staged { event_json: Vec<u8> },
}

/// How `delivery` enters the queue.
pub(crate) fn enqueued(delivery: &NewDelivery) -> anyhow::Result<Enqueued> {
    let event_json = serde_json::to_vec(&delivery.event)?;
    Ok(match delivery.class {
        verify::EventClass::RealTime => Enqueued::Request(RequestToWrite {
            account_id: delivery.account_id,
            event_names: delivery.event.event_name.clone(),
            event_ids: vec![delivery.event.event_id.clone()],
            body: verify::payload::envelope_bytes(
                delivery.account_id,
                std::iter::once(&event_json[..]),
            ),
            staged_seqs: Vec::new(),
        }),
        verify::EventClass::Batch => Enqueued::Staged { event_json },
    })
}

/// A batch event waiting in the staging table.
pub(crate) struct StagedEvent {
    pub seq: i64,
    pub account_id: i64,
    pub event_id: String,
    pub event_name: String,
    pub event_json: Vec<u8>,
    pub enqueued_at_ms: i64,
}

/// What to do with a webhook's staged events (oldest first) now.
pub(crate) enum FlushPlan {
    /// Nothing staged.
    Empty,
    /// Not due yet: the next look is at this epoch ms.
    WaitUntil(i64),
    /// Make requests of the first this many.
    Take(usize),
}

/// The batch rule: everything when forced or when the oldest waited `interval_ms`; only the
/// full batches when enough are staged before that.
pub(crate) fn flush_plan(
    staged: &[StagedEvent],
    now_ms: i64,
    interval_ms: i64,
    max_events: usize,
    force: bool,
) -> FlushPlan {
    let Some(oldest) = staged.first().map(|e| e.enqueued_at_ms) else {
        return FlushPlan::Empty;
    };
    let max_events = max_events.max(1);
    let due_at = oldest.saturating_add(interval_ms);
    if force || due_at <= now_ms {
        FlushPlan::Take(staged.len())
    } else if staged.len() >= max_events {
        FlushPlan::Take(staged.len() / max_events * max_events)
    } else {
        FlushPlan::WaitUntil(due_at)
    }
}

/// Staged events made into requests of at most `max_events`, per account, keeping the order
/// of arrival inside each account.
pub(crate) fn batch_requests(staged: Vec<StagedEvent>, max_events: usize) -> Vec<RequestToWrite> {
    let mut accounts: Vec<(i64, Vec<StagedEvent>)> = Vec::new();
    for event in staged {
        match accounts
            .iter_mut()
            .find(|(account, _)| *account == event.account_id)
        {
            Some((_, events)) => events.push(event),
            None => accounts.push((event.account_id, vec![event])),
        }
    }
    let mut requests = Vec::new();
    for (account_id, events) in accounts {
        for chunk in events.chunks(max_events.max(1)) {
            let names: BTreeSet<&str> = chunk.iter().map(|e| e.event_name.as_str()).collect();
            requests.push(RequestToWrite {
                account_id,
                event_names: names.into_iter().collect::<Vec<_>>().join(","),
                event_ids: chunk.iter().map(|e| e.event_id.clone()).collect(),
                body: verify::payload::envelope_bytes(
                    account_id,
                    chunk.iter().map(|e| e.event_json.as_slice()),
                ),
                staged_seqs: chunk.iter().map(|e| e.seq).collect(),
            });
        }
    }
    requests
}
