//! `trigger` (the command, the API and the page): events made from the catalogue and queued for
//! every active webhook subscribed to their name, in bounded chunks.

use verify::{EventKind, TimeStyle};

use crate::generate::{parse_data, parse_set, route_in_chunks, subscribers, EventRecipe};
use crate::registry::{check_event_name, WebhookId};
use crate::store::State;
use crate::UsageError;

/// Most events one trigger makes (`trigger --count`, the API's `count`, the page's
/// **Count**).
///
/// Why 10 000: a trigger is a test tool, and 10 000 events to each of the 5 webhooks is
/// 50 000 queued requests, more than a worker delivers in strict order within minutes; the
/// answer names every `eventId` (about 400 KB of JSON at the bound); and a count from a typo or
/// a hostile caller (`1000000000`) must be a field error, not an attempt to make and hold
/// a billion events. A larger load is several triggers, or `sender replay` of a capture file.
pub const MAX_TRIGGER_COUNT: usize = 10_000;

/// Events made, routed and queued per transaction by [`trigger`]: what it holds in memory
/// at once, whatever the count (an event is about 1 KB, copied once per subscribed webhook).
pub const TRIGGER_CHUNK_EVENTS: usize = 500;

/// What `trigger` is asked to fire.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    /// The catalogue name.
    pub event_name: String,
    /// How many events: 1 to [`MAX_TRIGGER_COUNT`].
    pub count: usize,
    /// `accountId`.
    pub account_id: i64,
    /// `FIELD=VALUE` settings of `data`.
    pub set: Vec<String>,
    /// A JSON object merged into `data`.
    pub data: Option<String>,
    /// Generator seed.
    pub seed: u64,
    /// How times are written.
    pub time_style: TimeStyle,
}

/// What `trigger` queued.
#[derive(Debug, Clone)]
pub struct Triggered {
    /// The catalogue entry.
    pub kind: &'static EventKind,
    /// The `eventId`s of the events made, in order.
    pub event_ids: Vec<String>,
    /// The webhooks they were queued for, in order of registration.
    pub targets: Vec<WebhookId>,
}

impl TriggerRequest {
    /// Checks the request and makes its recipe.
    ///
    /// # Errors
    /// A [`UsageError`] for an unknown event, a count of 0 or over [`MAX_TRIGGER_COUNT`], a
    /// bad `--set` or `--data`.
    pub fn recipe(&self) -> Result<EventRecipe, UsageError> {
        let kind = check_event_name(&self.event_name)?;
        if self.count == 0 {
            return Err(UsageError("--count must be at least 1".into()));
        }
        if self.count > MAX_TRIGGER_COUNT {
            return Err(UsageError(format!(
                "--count {} is more than {MAX_TRIGGER_COUNT}, the most events one trigger makes; trigger several times for more",
                self.count
            )));
        }
        let set = self
            .set
            .iter()
            .map(|text| parse_set(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventRecipe {
            kind,
            count: self.count,
            account_id: self.account_id,
            set,
            data: self.data.as_deref().map(parse_data).transpose()?,
            seed: self.seed,
            time_style: self.time_style,
        })
    }
}

/// Makes the events and queues them for every active webhook subscribed to their name, in
/// chunks of [`TRIGGER_CHUNK_EVENTS`] events, one transaction each: memory stays bounded
/// whatever the count, and each webhook's queue still gets the events in the order they were
/// made. Blocking: call it off the async threads.
///
/// # Errors
/// A [`UsageError`] for a bad request; storage errors, saying how many events were queued
/// before the failure (earlier chunks stay queued).
pub fn trigger<S: State + ?Sized>(
    state: &S,
    request: &TriggerRequest,
) -> anyhow::Result<Triggered> {
    use anyhow::Context as _;
    let recipe = request.recipe()?;
    let at = verify::unix_now_ms();
    let webhooks = state.webhooks()?;
    let targets: Vec<WebhookId> = subscribers(recipe.kind, &webhooks)
        .into_iter()
        .map(|webhook| webhook.id.clone())
        .collect();
    let event_ids = route_in_chunks(
        &recipe,
        at,
        &webhooks,
        TRIGGER_CHUNK_EVENTS,
        |deliveries, queued_events| {
            state.enqueue(deliveries, at).with_context(|| {
                format!(
                    "{queued_events} of {} events were queued before this failure; the rest were not",
                    recipe.count
                )
            })
        },
    )?;
    Ok(Triggered {
        kind: recipe.kind,
        event_ids,
        targets,
    })
}
