//! Which stored requests carry the data `receiver erase` is asked to remove, read from their
//! bodies (the bytes received are the record, so a body is what holds a learner's data).
//!
//! A request goes whole (byte-exact bodies cannot be edited), so what matters for each body is
//! whether any of its events is the one named, and for the output, which of the events that go
//! with it are not. The body is read with the listener's own envelope parser, so an erasure
//! reads every stored body exactly as the request was read when it was accepted. Pruning reads
//! bodies the same way, naming nothing, to find a request's event keys.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// What `receiver erase` removes: every stored request that carries a matching event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureSelector {
    /// `--account ID`: the envelope's `accountId`.
    Account(i64),
    /// `--event-id ID`: an event's `eventId`, in any account.
    EventId(String),
    /// `--user-id N`: an event's `data.userId`, as the number N or the string of it.
    UserId(i64),
}

impl fmt::Display for ErasureSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(account) => write!(f, "account {account}"),
            Self::EventId(id) => write!(f, "eventId {}", common::text::printable(id)),
            Self::UserId(user) => write!(f, "userId {user}"),
        }
    }
}

impl ErasureSelector {
    /// The account to look in when the selector names one (a store can find its requests
    /// without reading every body).
    pub fn account(&self) -> Option<i64> {
        match self {
            Self::Account(account) => Some(*account),
            _ => None,
        }
    }

    /// Whether `event` of a request of `account_id` is one this selector names.
    fn names(&self, account_id: i64, event: &verify::Event<'_>) -> bool {
        match self {
            Self::Account(account) => account_id == *account,
            Self::EventId(id) => event.event_id == id.as_str(),
            Self::UserId(user) => data_has_user(event.data.get(), *user),
        }
    }
}

/// One event of a stored body: its key, and whether the selector names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyEvent {
    /// `eventId`.
    pub event_id: String,
    /// The selector names this event (always `false` when reading for a prune).
    pub named: bool,
}

/// A stored body read for removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyEvents {
    /// `accountId`.
    pub account_id: i64,
    /// Each event in the order sent.
    pub events: Vec<BodyEvent>,
}

impl BodyEvents {
    /// Reads `body` as the listener did; `None` when it is not an envelope (a refused
    /// request's body may be anything, cut at 64 KiB, or not JSON at all).
    pub fn read(body: &[u8], selector: Option<&ErasureSelector>) -> Option<BodyEvents> {
        let envelope = verify::parse_envelope(body).ok()?;
        let events = envelope
            .events
            .iter()
            .map(|event| BodyEvent {
                event_id: event.event_id.to_string(),
                named: selector.is_some_and(|selector| selector.names(envelope.account_id, event)),
            })
            .collect();
        Some(BodyEvents {
            account_id: envelope.account_id,
            events,
        })
    }

    /// Whether any event is one the selector names.
    pub fn any_named(&self) -> bool {
        self.events.iter().any(|event| event.named)
    }

    /// Whether the event `event_id` is one the selector names (any of its repeats).
    pub fn names(&self, event_id: &str) -> bool {
        self.events
            .iter()
            .any(|event| event.named && event.event_id == event_id)
    }
}

/// Whether the event data `data` (JSON text) has `userId` equal to `user`, as a number or as
/// the string of it. Every `userId` entry is looked at: the envelope parser does not refuse a
/// repeated key inside `data`, and readers disagree on which copy counts, so an erasure counts
/// either.
fn data_has_user(data: &str, user: i64) -> bool {
    let mut reader = serde_json::Deserializer::from_str(data);
    UserIdIn(user).deserialize(&mut reader).unwrap_or(false)
}

/// Reads a JSON object, answering whether one of its `userId` entries is the user.
struct UserIdIn(i64);

impl<'de> DeserializeSeed<'de> for UserIdIn {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<bool, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UserIdIn {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "userId" {
                let value: serde_json::Value = map.next_value()?;
                found |= is_user(&value, self.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// `value` is the number `user` (an integer, or a float with no fraction) or its decimal text.
fn is_user(value: &serde_json::Value, user: i64) -> bool {
    match value {
        serde_json::Value::Number(number) => {
            number.as_i64() == Some(user)
                || number
                    .as_f64()
                    .is_some_and(|float| float.fract() == 0.0 && float == user as f64)
        }
        serde_json::Value::String(text) => text.as_str() == user.to_string(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(account: i64, events: &[(&str, &str)]) -> Vec<u8> {
        let events: Vec<String> = events
            .iter()
            .map(|(id, data)| {
                format!(
                    r#"{{"eventId":"{id}","eventName":"COURSE_COMPLETED","timestamp":1,"data":{data}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"accountId":{account},"events":[{}]}}"#,
            events.join(",")
        )
        .into_bytes()
    }

    fn named(body: &[u8], selector: &ErasureSelector) -> Vec<bool> {
        BodyEvents::read(body, Some(selector))
            .unwrap()
            .events
            .iter()
            .map(|event| event.named)
            .collect()
    }

    #[test]
    fn a_user_id_matches_as_a_number_or_its_string_and_nothing_else() {
        let cases: [(&str, bool); 12] = [
            (r#"{}"#, false),
            (r#"{"userId":42}"#, true),
            (r#"{"userId":"42"}"#, true),
            (r#"{"userId":42.0}"#, true),
            (
                r#"{"loId":"course:1","userId":42,"x":[1,{"userId":7}]}"#,
                true,
            ),
            // Either copy of a repeated key counts.
            (r#"{"userId":7,"userId":42}"#, true),
            (r#"{"userId":42,"userId":7}"#, true),
            (r#"{"userId":420}"#, false),
            (r#"{"userId":"042"}"#, false),
            (r#"{"userId":42.5}"#, false),
            (r#"{"user":{"userId":42}}"#, false),
            (r#"{"userId":null}"#, false),
        ];
        for (data, expected) in cases {
            let body = body(1010, &[("e", data)]);
            assert_eq!(
                named(&body, &ErasureSelector::UserId(42)),
                [expected],
                "{data}"
            );
        }
    }

    #[test]
    fn every_selector_names_the_events_it_means() {
        let body = body(1010, &[("a", r#"{"userId":1}"#), ("b", r#"{"userId":2}"#)]);
        assert_eq!(named(&body, &ErasureSelector::UserId(2)), [false, true]);
        assert_eq!(
            named(&body, &ErasureSelector::EventId("a".to_owned())),
            [true, false]
        );
        assert_eq!(named(&body, &ErasureSelector::Account(1010)), [true, true]);
        assert_eq!(named(&body, &ErasureSelector::Account(7)), [false, false]);
        let read = BodyEvents::read(&body, Some(&ErasureSelector::UserId(2))).unwrap();
        assert!(read.any_named() && read.names("b") && !read.names("a"));
        let for_prune = BodyEvents::read(&body, None).unwrap();
        assert_eq!(for_prune.account_id, 1010);
        assert!(!for_prune.any_named());
        assert_eq!(for_prune.events[1].event_id, "b");
    }

    #[test]
    fn a_body_that_is_no_envelope_names_nothing() {
        assert_eq!(BodyEvents::read(b"{\"accountId\":", None), None);
        assert_eq!(BodyEvents::read(b"not json", None), None);
    }
}
