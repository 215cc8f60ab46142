//! Events for `trigger` and `webhooks test`: the catalogue generator of `verify`, with the
//! user's overrides, routed to the webhooks subscribed to the event's name.

use serde_json::{Map, Value};
use verify::{EventGenerator, EventKind, OutgoingEvent, TimeStyle};

use crate::registry::{Status, Webhook};
use crate::store::NewDelivery;
use crate::UsageError;

/// The `accountId` used when none is given: the one of Adobe's documented sample.
pub const DEFAULT_ACCOUNT_ID: i64 = 1010;

/// What `trigger` makes.
#[derive(Debug, Clone)]
pub struct EventRecipe {
    /// The catalogue entry.
    pub kind: &'static EventKind,
    /// How many events.
    pub count: usize,
    /// `accountId`.
    pub account_id: i64,
    /// `data` fields set with `--set FIELD=VALUE`, in order.
    pub set: Vec<(String, Value)>,
    /// An object merged into `data` with `--data JSON`.
    pub data: Option<Map<String, Value>>,
    /// Generator seed; the same seed makes the same events.
    pub seed: u64,
    /// How times are written.
    pub time_style: TimeStyle,
}

impl EventRecipe {
    /// The events, all dated `at_ms`.
    pub fn events(&self, at_ms: i64) -> Vec<OutgoingEvent> {
        self.generated(at_ms).collect()
    }

    /// The events one at a time, all dated `at_ms`: the same events as [`EventRecipe::events`]
    /// (same seed, same order), made as they are taken, so a caller can work through a large
    /// count in chunks without holding every event at once.
    pub fn generated(&self, at_ms: i64) -> impl Iterator<Item = OutgoingEvent> + '_ {
        let mut generator = EventGenerator::new(self.seed).with_time_style(self.time_style);
        (0..self.count).map(move |_| {
            let mut event = generator.event(self.kind, at_ms);
            if let Some(data) = &self.data {
                for (field, value) in data {
                    event.data.insert(field.clone(), value.clone());
                }
            }
            for (field, value) in &self.set {
                event.data.insert(field.clone(), value.clone());
            }
            event
        })
    }
}

/// Parses `FIELD=VALUE`: the value as JSON when it is JSON (`5`, `true`, `"x"`, `{…}`),
/// else as a string, so `--set loType=course` and `--set userId=42` both do what they say.
///
/// # Errors
/// A [`UsageError`] when there is no `=` or the field is empty.
pub fn parse_set(text: &str) -> Result<(String, Value), UsageError> {
    let (field, value) = text.split_once('=').ok_or_else(|| {
        UsageError(format!(
            "--set {text:?}: expected FIELD=VALUE, such as --set userId=42"
        ))
    })?;
    if field.is_empty() {
        return Err(UsageError(format!(
            "--set {text:?}: the field name is empty"
        )));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((field.to_owned(), value))
}

/// Parses `--data`: a JSON object.
///
/// # Errors
/// A [`UsageError`] when it is not JSON or not an object.
pub fn parse_data(text: &str) -> Result<Map<String, Value>, UsageError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(UsageError(
            "--data must be a JSON object such as '{\"userId\":42}'".into(),
        )),
        Err(error) => Err(UsageError(format!("--data is not JSON: {error}"))),
    }
}

/// The active webhooks subscribed to `kind`, in the order given (registration order).
pub fn subscribers<'a>(kind: &EventKind, webhooks: &'a [Webhook]) -> Vec<&'a Webhook> {
    webhooks
        .iter()
        .filter(|w| w.status == Status::Active && w.events.includes(kind.name))
        .collect()
}

/// One delivery per event per active webhook subscribed to the event's name.
pub fn route(
    events: &[OutgoingEvent],
    account_id: i64,
    kind: &EventKind,
    webhooks: &[Webhook],
) -> Vec<NewDelivery> {
    let targets = subscribers(kind, webhooks);
    // Event-major order: each webhook's queue gets the events in the order they happened.
    events
        .iter()
        .flat_map(|event| {
            targets.iter().map(move |webhook| NewDelivery {
                webhook_id: webhook.id.clone(),
                account_id,
                event: event.clone(),
                class: kind.class,
            })
        })
        .collect()
}

/// Makes `recipe`'s events dated `at_ms` and routes them to `webhooks`, `chunk_events` events
/// at a time: `enqueue` gets each chunk's deliveries (event-major, as [`route`] orders them)
/// with the number of events handed over before it. Gives every `eventId`, in order. Only one
/// chunk of events and its deliveries are held at once, whatever the count; with no
/// subscribed webhook, `enqueue` is never called.
///
/// # Errors
/// The first error of `enqueue`; later chunks are then not made.
pub fn route_in_chunks(
    recipe: &EventRecipe,
    at_ms: i64,
    webhooks: &[Webhook],
    chunk_events: usize,
    mut enqueue: impl FnMut(&[NewDelivery], usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<String>> {
    let subscribed = !subscribers(recipe.kind, webhooks).is_empty();
    let mut generated = recipe.generated(at_ms);
    let mut event_ids: Vec<String> = Vec::with_capacity(recipe.count);
    loop {
        let chunk: Vec<OutgoingEvent> = generated.by_ref().take(chunk_events.max(1)).collect();
        if chunk.is_empty() {
            return Ok(event_ids);
        }
        if subscribed {
            let deliveries = route(&chunk, recipe.account_id, recipe.kind, webhooks);
            enqueue(&deliveries, event_ids.len())?;
        }
        event_ids.extend(chunk.into_iter().map(|event| event.event_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_to_active_subscribed_webhooks_only_event_major() {
        let webhook = |name: &str, events: &str| {
            crate::manage::WebhookChanges {
                name: Some(name.into()),
                url: Some("http://127.0.0.1:9/hook".parse().expect("a Target URL")),
                events: Some(events.into()),
                ..crate::manage::WebhookChanges::default()
            }
            .create(0)
            .expect("valid")
        };
        let mut retired = webhook("retired", "all");
        retired.status = Status::Retired;
        let mut disabled = webhook("disabled", "all");
        disabled.status = Status::Disabled("retention".into());
        let webhooks = [
            webhook("all", "all"),
            webhook("other", "COURSE_COMPLETED"),
            webhook("named", "CI_STATS,COURSE_ENROLLMENT"),
            retired,
            disabled,
        ];
        let kind = verify::lookup("COURSE_ENROLLMENT").expect("in catalogue");
        let mut generator = verify::EventGenerator::new(3);
        let events = [generator.event(kind, 0), generator.event(kind, 1000)];
        let deliveries = route(&events, 1010, kind, &webhooks);
        let routed: Vec<(&str, &str)> = deliveries
            .iter()
            .map(|d| {
                let name = webhooks
                    .iter()
                    .find(|w| w.id == d.webhook_id)
                    .map_or("?", |w| w.name.as_str());
                (name, d.event.event_id.as_str())
            })
            .collect();
        let (first, second) = (events[0].event_id.as_str(), events[1].event_id.as_str());
        assert_eq!(
            routed,
            [
                ("all", first),
                ("named", first),
                ("all", second),
                ("named", second)
            ]
        );
    }

    #[test]
    fn large_counts_are_made_and_routed_in_chunks_in_order() {
        let webhook = |name: &str| {
            crate::manage::WebhookChanges {
                name: Some(name.into()),
                url: Some("http://127.0.0.1:9/hook".parse().expect("a Target URL")),
                events: Some("COURSE_ENROLLMENT".into()),
                ..crate::manage::WebhookChanges::default()
            }
            .create(0)
            .expect("valid")
        };
        let webhooks = [webhook("a"), webhook("b")];
        let recipe = EventRecipe {
            kind: verify::lookup("COURSE_ENROLLMENT").expect("in catalogue"),
            count: 1_234,
            account_id: 7,
            set: Vec::new(),
            data: None,
            seed: 9,
            time_style: TimeStyle::Iso,
        };
        let mut calls: Vec<(usize, usize)> = Vec::new();
        let mut routed: Vec<String> = Vec::new();
        let ids = route_in_chunks(&recipe, 1_000, &webhooks, 500, |deliveries, before| {
            calls.push((deliveries.len(), before));
            routed.extend(deliveries.iter().map(|d| d.event.event_id.clone()));
            Ok(())
        })
        .expect("routed");
        // Two webhooks: each chunk of 500 events is 1 000 deliveries; never all 2 468 at once.
        assert_eq!(calls, [(1_000, 0), (1_000, 500), (468, 1_000)]);
        let made: Vec<String> = recipe
            .events(1_000)
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(ids, made, "the same events as made at once, in order");
        let doubled: Vec<String> = made
            .iter()
            .flat_map(|id| [id.clone(), id.clone()])
            .collect();
        assert_eq!(routed, doubled, "event-major across the chunks");

        // A failure stops the making: no chunk after it.
        let mut tries = 0;
        let failed = route_in_chunks(&recipe, 1_000, &webhooks, 500, |_, _| {
            tries += 1;
            anyhow::bail!("disk full")
        });
        assert!(failed.is_err());
        assert_eq!(tries, 1);

        // Nobody subscribed: the events are made, nothing is handed over.
        let none = route_in_chunks(&recipe, 1_000, &[], 500, |_, _| {
            panic!("nothing to enqueue")
        })
        .expect("made");
        assert_eq!(none.len(), 1_234);
    }

    #[test]
    fn set_values() {
        let check = |text: &str, expected: Result<(&str, Value), ()>| {
            let got = parse_set(text).map_err(|_| ());
            assert_eq!(got, expected.map(|(f, v)| (f.to_owned(), v)), "{text}");
        };
        check("userId=42", Ok(("userId", json!(42))));
        check("loType=course", Ok(("loType", json!("course"))));
        check("hasPassed=false", Ok(("hasPassed", json!(false))));
        check("note=a=b", Ok(("note", json!("a=b"))));
        check("x={\"a\":1}", Ok(("x", json!({"a": 1}))));
        check("noequals", Err(()));
        check("=5", Err(()));
    }

    #[test]
    fn overrides_apply_and_ids_differ() {
        let recipe = EventRecipe {
            kind: verify::lookup("COURSE_COMPLETED").expect("in catalogue"),
            count: 3,
            account_id: 7,
            set: vec![("userId".into(), json!(42))],
            data: Some(parse_data(r#"{"hasPassed":true,"extra":"x"}"#).expect("object")),
            seed: 1,
            time_style: TimeStyle::Iso,
        };
        let events = recipe.events(1_731_037_792_000);
        assert_eq!(events.len(), 3);
        for event in &events {
            assert_eq!(event.data["userId"], json!(42));
            assert_eq!(event.data["hasPassed"], json!(true));
            assert_eq!(event.data["extra"], json!("x"));
            assert_eq!(event.timestamp, json!("2024-11-08T03:49:52.000Z"));
        }
        assert_ne!(events[0].event_id, events[1].event_id);
        assert!(parse_data("[1]").is_err());
    }
}
