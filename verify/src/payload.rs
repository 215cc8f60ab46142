//! The webhook envelope of SPEC section 1: a reader that accepts every form Learning Manager has
//! been seen to send, borrowing from the body, and a writer of today's form.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::catalog::{self, EventKind};
use crate::timestamp::{epoch_to_millis, format_iso_millis, parse_iso_millis};
use crate::PayloadError;

/// A parsed request body. Strings borrow from the body unless they hold JSON escapes.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// `accountId`.
    pub account_id: i64,
    /// `events`, in the order sent; may be empty.
    pub events: Vec<Event<'a>>,
}

/// One event of an envelope.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The event's JSON exactly as it stands in the body.
    pub raw: &'a RawValue,
    /// `eventId`: any non-empty string.
    pub event_id: Cow<'a, str>,
    /// `eventName`: a catalogue name or not ([`Event::kind`] tells).
    pub event_name: Cow<'a, str>,
    /// `timestamp` in whichever form it came.
    pub timestamp: EventTime<'a>,
    /// `eventInfo`, when present.
    pub event_info: Option<Cow<'a, str>>,
    /// `data`, exactly as it stands in the body (always a JSON object).
    pub data: &'a RawValue,
}

impl Event<'_> {
    /// The catalogue entry of the event's name, or `None` for a name the catalogue lacks
    /// (accepted and stored all the same, and flagged).
    pub fn kind(&self) -> Option<&'static EventKind> {
        catalog::lookup(&self.event_name)
    }
}

/// An event's `timestamp` as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTime<'a> {
    /// An ISO-8601 string (today's form) and its value in epoch milliseconds.
    Iso {
        /// The text as sent.
        text: Cow<'a, str>,
        /// Its value.
        epoch_ms: i64,
    },
    /// An integer of epoch milliseconds.
    EpochMillis(i64),
    /// An integer of epoch seconds.
    EpochSeconds(i64),
}

impl EventTime<'_> {
    /// The timestamp normalised to epoch milliseconds, for indexing.
    pub fn epoch_millis(&self) -> i64 {
        match self {
            Self::Iso { epoch_ms, .. } => *epoch_ms,
            Self::EpochMillis(ms) => *ms,
            Self::EpochSeconds(secs) => secs.saturating_mul(1000),
        }
    }
}

/// The envelope's fields this reader reads, in the order of [`ObjectFields::values`].
const ENVELOPE_FIELDS: [&str; 2] = ["accountId", "events"];
/// The position of `events` among [`ENVELOPE_FIELDS`]: read as its elements.
const EVENTS: usize = 1;
/// An event's fields this reader reads, in the order of [`ObjectFields::values`].
const EVENT_FIELDS: [&str; 5] = ["eventId", "eventName", "timestamp", "eventInfo", "data"];

/// Parses a request body as the documented envelope.
///
/// Unknown top-level and event fields are ignored here (they stay in the bytes); unknown event
/// names are accepted. A field this reader reads that is given twice is refused: JSON readers
/// disagree on which one counts (the first, the last), so the receiver and the apps it
/// forwards to could read two different events from one body.
///
/// # Errors
/// [`PayloadError::InvalidJson`] when the body is not JSON (or not UTF-8),
/// [`PayloadError::InvalidEnvelope`] naming the first field that breaks the contract, such as
/// `events[2].eventId must be a non-empty string` or `duplicate key accountId`.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope<'_>, PayloadError> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    // `events` is read as its elements while the body is read (one pass over the body, on
    // every POST), not kept whole and read a second time.
    let envelope = FieldsOf::with_array(ENVELOPE_FIELDS, EVENTS)
        .deserialize(&mut reader)
        .and_then(|fields| reader.end().map(|()| fields))
        .map_err(|error| {
            if error.is_data() {
                invalid("the body must be a JSON object")
            } else {
                PayloadError::InvalidJson(error.to_string())
            }
        })?;
    if let Some(key) = envelope.duplicate {
        return Err(invalid(&format!("duplicate key {key}")));
    }
    let [account_id, _] = envelope.values;
    let account_id = account_id
        .and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok())
        .ok_or_else(|| invalid("accountId must be an integer"))?;
    let raw_events = match envelope.array {
        Some(ArrayField::Elements(elements)) => elements,
        Some(ArrayField::NotAnArray) | None => return Err(invalid("events must be an array")),
    };
    let events = raw_events
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            parse_event(raw).map_err(|what| invalid(&format!("events[{index}]{what}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Envelope { account_id, events })
}

fn invalid(detail: &str) -> PayloadError {
    PayloadError::InvalidEnvelope(detail.to_owned())
}

/// Parses one event; the error names the field and the rule, without the `events[i]` prefix.
fn parse_event(raw: &RawValue) -> Result<Event<'_>, Cow<'static, str>> {
    let fields = FieldsOf::new(EVENT_FIELDS)
        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
        .map_err(|_| " must be an object")?;
    if let Some(key) = fields.duplicate {
        return Err(format!(": duplicate key {key}").into());
    }
    let [event_id, event_name, timestamp, event_info, data] = fields.values;
    let event_id = event_id
        .and_then(json_str)
        .filter(|id| !id.is_empty())
        .ok_or(".eventId must be a non-empty string")?;
    let event_name = event_name
        .and_then(json_str)
        .filter(|name| !name.is_empty())
        .ok_or(".eventName must be a non-empty string")?;
    let timestamp = timestamp.and_then(parse_event_time).ok_or(
        ".timestamp must be an ISO-8601 string or an integer of epoch milliseconds or seconds",
    )?;
    let event_info = match event_info {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(json_str(raw).ok_or(".eventInfo must be a string")?),
    };
    let data = data
        .filter(|raw| raw.get().starts_with('{'))
        .ok_or(".data must be an object")?;
    Ok(Event {
        raw,
        event_id,
        event_name,
        timestamp,
        event_info,
        data,
    })
}

/// The fields of one JSON object that a reader reads, as raw JSON borrowed from the body, and
/// the first of them given twice. Other fields are skipped (they stay in the bytes).
struct ObjectFields<'a, const N: usize> {
    /// One value per name, in the order of the names (`None` for the array field).
    values: [Option<&'a RawValue>; N],
    /// The field read as an array's elements ([`FieldsOf::with_array`]), if present.
    array: Option<ArrayField<'a>>,
    /// The first name given twice, if any.
    duplicate: Option<&'static str>,
}

/// A field read as an array's elements: each as raw JSON borrowed from the body, or the fact
/// that it is no array.
enum ArrayField<'a> {
    Elements(Vec<&'a RawValue>),
    NotAnArray,
}

/// Reads an [`ObjectFields`] for these names. serde's derived readers refuse a repeated field
/// with an error that cannot be told from a wrong type; this one keeps reading and says which.
struct FieldsOf<const N: usize> {
    names: [&'static str; N],
    /// The position of the field read as an array's elements, if any.
    array: Option<usize>,
}

impl<const N: usize> FieldsOf<N> {
    /// Every field as raw JSON.
    fn new(names: [&'static str; N]) -> Self {
        Self { names, array: None }
    }

    /// The field at `array` read as its elements, the others as raw JSON.
    fn with_array(names: [&'static str; N], array: usize) -> Self {
        Self {
            names,
            array: Some(array),
        }
    }
}

impl<'de, const N: usize> DeserializeSeed<'de> for FieldsOf<N> {
    type Value = ObjectFields<'de, N>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for FieldsOf<N> {
    type Value = ObjectFields<'de, N>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = ObjectFields {
            values: [None; N],
            array: None,
            duplicate: None,
        };
        while let Some(index) = map.next_key_seed(NameIndex(&self.names))? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let repeated = if self.array == Some(index) {
                let elements = map.next_value_seed(ArraySeed)?;
                fields.array.replace(elements).is_some()
            } else {
                let value: &'de RawValue = map.next_value()?;
                fields.values[index].replace(value).is_some()
            };
            if repeated {
                fields.duplicate.get_or_insert(self.names[index]);
            }
        }
        Ok(fields)
    }
}

/// Reads a value as an array's elements (each raw JSON borrowed from the body), or notes that
/// it is no array (after reading past it, so the object's reading goes on).
struct ArraySeed;

impl<'de> DeserializeSeed<'de> for ArraySeed {
    type Value = ArrayField<'de>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed {
    type Value = ArrayField<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            elements.push(element);
        }
        Ok(ArrayField::Elements(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ArrayField::NotAnArray)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ArrayField::NotAnArray)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ArrayField::NotAnArray)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ArrayField::NotAnArray)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ArrayField::NotAnArray)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ArrayField::NotAnArray)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ArrayField::NotAnArray)
    }
}

/// Reads an object key as its position among the names (`None`: not one of them). Keys are
/// compared decoded, so `"account\u0049d"` is `accountId`, as every JSON reader sees it.
struct NameIndex<'n>(&'n [&'static str]);

impl<'de> DeserializeSeed<'de> for NameIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_identifier(self)
    }
}

impl Visitor<'_> for NameIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

/// A JSON string's value, borrowed when it holds no escapes.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(text) {
        Ok(borrowed) => Some(Cow::Borrowed(borrowed)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

fn parse_event_time(raw: &RawValue) -> Option<EventTime<'_>> {
    if let Some(text) = json_str(raw) {
        // Some exporters quote the epoch number; read it as the number it is.
        if let Ok(number) = text.parse::<i64>() {
            return Some(epoch_time(number));
        }
        let epoch_ms = parse_iso_millis(&text)?;
        return Some(EventTime::Iso { text, epoch_ms });
    }
    serde_json::from_str::<i64>(raw.get()).ok().map(epoch_time)
}

fn epoch_time(number: i64) -> EventTime<'static> {
    if epoch_to_millis(number) == number {
        EventTime::EpochMillis(number)
    } else {
        EventTime::EpochSeconds(number)
    }
}

/// Rebuilds one event of a (batch) body as a one-event envelope: `{"accountId":N,"events":[E]}`
/// where `E` is the event's bytes exactly as they stand in `body`. `None` when no event has
/// that `eventId`.
///
/// # Errors
/// As [`parse_envelope`].
pub fn single_event_envelope(body: &[u8], event_id: &str) -> Result<Option<Vec<u8>>, PayloadError> {
    let envelope = parse_envelope(body)?;
    let Some(event) = envelope
        .events
        .iter()
        .find(|event| event.event_id == event_id)
    else {
        return Ok(None);
    };
    Ok(Some(envelope_bytes(
        envelope.account_id,
        std::iter::once(event.raw.get().as_bytes()),
    )))
}

/// The envelope around events already serialised, exactly as [`OutgoingEnvelope::to_bytes`]
/// frames them (compact, `accountId` then `events`), without parsing the events again: the
/// sender joins stored batch events with it, and a one-event replay keeps the event's bytes.
pub fn envelope_bytes<'a>(account_id: i64, events: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = format!("{{\"accountId\":{account_id},\"events\":[").into_bytes();
    for (index, event) in events.enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

/// How a writer renders times: today's ISO form, or the older epoch forms QA may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeStyle {
    /// `"2024-11-08T03:49:52.000Z"` for `timestamp` and for date fields in `data`.
    #[default]
    Iso,
    /// Integers of epoch milliseconds.
    EpochMillis,
    /// Integers of epoch seconds.
    EpochSeconds,
}

impl TimeStyle {
    /// A JSON value for `epoch_ms` in this style.
    pub fn render(self, epoch_ms: i64) -> Value {
        match self {
            Self::Iso => Value::String(format_iso_millis(epoch_ms)),
            Self::EpochMillis => Value::from(epoch_ms),
            Self::EpochSeconds => Value::from(epoch_ms.div_euclid(1000)),
        }
    }
}

/// An event the sender writes, with its fields in the documented order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingEvent {
    /// `eventId`.
    #[serde(rename = "eventId")]
    pub event_id: String,
    /// `eventName`.
    #[serde(rename = "eventName")]
    pub event_name: String,
    /// `timestamp`, already rendered in the chosen [`TimeStyle`].
    pub timestamp: Value,
    /// `eventInfo`.
    #[serde(rename = "eventInfo", skip_serializing_if = "Option::is_none")]
    pub event_info: Option<String>,
    /// `data`, with its fields in insertion order.
    pub data: Map<String, Value>,
}

/// A request body the sender writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingEnvelope {
    /// `accountId`.
    #[serde(rename = "accountId")]
    pub account_id: i64,
    /// `events`.
    pub events: Vec<OutgoingEvent>,
}

impl OutgoingEnvelope {
    /// The body bytes: compact JSON, fields in the documented order.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs, strings, numbers and maps with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str) -> String {
        match parse_envelope(body.as_bytes()) {
            Ok(_) => "accepted".into(),
            Err(error) => format!("{}: {}", error.reason_code(), error.detail()),
        }
    }

    #[test]
    fn reads_adobe_documented_sample_with_epoch_millis() {
        let body = br#"{"accountId": 1010,
 "events": [{"eventId": "d5fb7071-10a9-46b2-9f9e-79dde346c052",
             "eventName": "COURSE_ENROLLMENT_BATCH",
             "timestamp": 1727414643000,
             "eventInfo": "1727414643000-047210-84242-0",
             "data": {"userId": 4279332, "loId": "course:7374992",
                      "loInstanceId": "course:7376092_10250977", "loType": "course",
                      "enrollmentSource": "ADMIN_ENROLL", "dateEnrolled": 1727414643}}]}"#;
        let envelope = parse_envelope(body).expect("documented sample");
        assert_eq!(envelope.account_id, 1010);
        let event = &envelope.events[0];
        assert_eq!(event.event_id, "d5fb7071-10a9-46b2-9f9e-79dde346c052");
        assert!(
            matches!(event.event_id, Cow::Borrowed(_)),
            "borrows from the body"
        );
        assert_eq!(event.timestamp, EventTime::EpochMillis(1_727_414_643_000));
        assert_eq!(
            event.event_info.as_deref(),
            Some("1727414643000-047210-84242-0")
        );
        assert!(event.data.get().contains("\"dateEnrolled\": 1727414643"));
        assert_eq!(
            event.kind().map(|kind| kind.name),
            Some("COURSE_ENROLLMENT_BATCH")
        );
        // The raw event is the exact slice of the body.
        let text = std::str::from_utf8(body).expect("utf8");
        assert!(text.contains(event.raw.get()));
    }

    #[test]
    fn reads_every_timestamp_form_and_lenient_fields() {
        let body = r#"{"accountId":7,"extra":true,"events":[
            {"eventId":"a","eventName":"COURSE_COMPLETED","timestamp":"2024-11-08T03:49:52.000Z","data":{"x":1}},
            {"eventId":"42","eventName":"SOMETHING_NEW","timestamp":1727414643,"eventInfo":null,"data":{}},
            {"eventId":"c\u0041","eventName":"CI_STATS","timestamp":"1727414643000","data":{"nested":{"k":[1]}}}]}"#;
        let envelope = parse_envelope(body.as_bytes()).expect("lenient forms");
        let times: Vec<i64> = envelope
            .events
            .iter()
            .map(|e| e.timestamp.epoch_millis())
            .collect();
        assert_eq!(
            times,
            [1_731_037_792_000, 1_727_414_643_000, 1_727_414_643_000]
        );
        assert_eq!(
            envelope.events[1].timestamp,
            EventTime::EpochSeconds(1_727_414_643)
        );
        assert!(
            envelope.events[1].kind().is_none(),
            "unknown names are flagged, not refused"
        );
        assert_eq!(envelope.events[2].event_id, "cA");
        assert!(envelope.events[1].event_info.is_none());
    }

    #[test]
    fn refusals_name_the_field() {
        let check = |body: &str, expected: &str| assert_eq!(refusal(body), expected, "{body}");
        check(r#"{"accountId":1,"events":[]}"#, "accepted");
        check(
            "",
            "invalid_json: EOF while parsing a value at line 1 column 0",
        );
        check(
            "{\"accountId\":1,",
            "invalid_json: EOF while parsing a value at line 1 column 15",
        );
        check("[1,2]", "invalid_envelope: the body must be a JSON object");
        check(
            r#"{"events":[]}"#,
            "invalid_envelope: accountId must be an integer",
        );
        check(
            r#"{"accountId":"1","events":[]}"#,
            "invalid_envelope: accountId must be an integer",
        );
        check(
            r#"{"accountId":1}"#,
            "invalid_envelope: events must be an array",
        );
        check(
            r#"{"accountId":1,"events":{}}"#,
            "invalid_envelope: events must be an array",
        );
        check(
            r#"{"accountId":1,"events":null}"#,
            "invalid_envelope: events must be an array",
        );
        // Read as its elements while the body is read: any other value is passed over whole.
        for events in [
            r#""[]""#,
            "7",
            "-1.5e3",
            "true",
            r#"{"a":[1,{"b":[]}],"c":"]"}"#,
        ] {
            check(
                &format!(r#"{{"events":{events},"accountId":1}}"#),
                "invalid_envelope: events must be an array",
            );
        }
        let event = |fields: &str| format!(r#"{{"accountId":1,"events":[{{{fields}}}]}}"#);
        check(
            &event(r#""eventId":"","eventName":"X","timestamp":1,"data":{}"#),
            "invalid_envelope: events[0].eventId must be a non-empty string",
        );
        check(
            &event(r#""eventId":5,"eventName":"X","timestamp":1,"data":{}"#),
            "invalid_envelope: events[0].eventId must be a non-empty string",
        );
        check(
            &event(r#""eventId":"e","timestamp":1,"data":{}"#),
            "invalid_envelope: events[0].eventName must be a non-empty string",
        );
        check(
            &event(r#""eventId":"e","eventName":"X","timestamp":"soon","data":{}"#),
            "invalid_envelope: events[0].timestamp must be an ISO-8601 string or an integer of epoch milliseconds or seconds",
        );
        check(
            &event(r#""eventId":"e","eventName":"X","timestamp":1.5,"data":{}"#),
            "invalid_envelope: events[0].timestamp must be an ISO-8601 string or an integer of epoch milliseconds or seconds",
        );
        check(
            &event(r#""eventId":"e","eventName":"X","timestamp":1,"data":[]"#),
            "invalid_envelope: events[0].data must be an object",
        );
        check(
            &event(r#""eventId":"e","eventName":"X","timestamp":1,"eventInfo":3,"data":{}"#),
            "invalid_envelope: events[0].eventInfo must be a string",
        );
        check(
            r#"{"accountId":1,"events":[7]}"#,
            "invalid_envelope: events[0] must be an object",
        );
    }

    #[test]
    fn each_event_is_read_in_place_in_the_body() {
        let body = br#"{"events":[{"eventId":"a","eventName":"X","timestamp":1,"data":{}} , {"eventId":"b","eventName":"Y","timestamp":2,"data":{"k":[1]}}],"accountId":3}"#;
        let envelope = parse_envelope(body).expect("parses");
        assert_eq!(envelope.account_id, 3);
        let range = body.as_ptr_range();
        for (event, id) in envelope.events.iter().zip(["a", "b"]) {
            assert_eq!(event.event_id, id);
            // Borrowed from the body, byte for byte: no copy of the events was made.
            assert!(range.contains(&event.raw.get().as_ptr()));
            let start = event.raw.get().as_ptr() as usize - body.as_ptr() as usize;
            assert_eq!(
                &body[start..start + event.raw.get().len()],
                event.raw.get().as_bytes()
            );
        }
    }

    #[test]
    fn a_field_given_twice_is_named() {
        let check = |body: &str, expected: &str| assert_eq!(refusal(body), expected, "{body}");
        check(
            r#"{"accountId":1,"accountId":2,"events":[]}"#,
            "invalid_envelope: duplicate key accountId",
        );
        // The same key written with an escape is the same key to every JSON reader.
        check(
            r#"{"accountId":1,"events":[],"account\u0049d":2}"#,
            "invalid_envelope: duplicate key accountId",
        );
        check(
            r#"{"accountId":1,"events":[],"events":[]}"#,
            "invalid_envelope: duplicate key events",
        );
        check(
            r#"{"accountId":1,"events":{},"events":[]}"#,
            "invalid_envelope: duplicate key events",
        );
        let event = |fields: &str| format!(r#"{{"accountId":1,"events":[{{{fields}}}]}}"#);
        let fields = r#""eventId":"e","eventName":"X","timestamp":1,"eventInfo":"i","data":{}"#;
        for key in ["eventId", "eventName", "timestamp", "eventInfo", "data"] {
            let repeated = fields
                .split(',')
                .find(|field| field.starts_with(&format!("\"{key}\"")))
                .unwrap();
            check(
                &event(&format!("{fields},{repeated}")),
                &format!("invalid_envelope: events[0]: duplicate key {key}"),
            );
        }
        // Fields this reader does not read may repeat (they stay in the bytes), and keys
        // inside `data` are the app's business.
        check(
            r#"{"accountId":1,"x":1,"x":2,"events":[{"eventId":"e","eventName":"X","timestamp":1,"data":{"k":1,"k":2},"y":0,"y":0}]}"#,
            "accepted",
        );
        // Broken JSON after a repeated key is still invalid JSON.
        check(
            r#"{"accountId":1,"accountId":2,"events":["#,
            "invalid_json: EOF while parsing a list at line 1 column 39",
        );
    }

    #[test]
    fn one_event_is_cut_out_of_a_batch_byte_exact() {
        let body = br#"{"accountId": 7, "events": [ {"eventId":"a","eventName":"X","timestamp":1,"data":{}},
            {"eventId" : "b", "eventName":"Y","timestamp":2,"data":{"k": [1, 2]}} ]}"#;
        let single = single_event_envelope(body, "b")
            .expect("valid")
            .expect("found");
        assert_eq!(
            String::from_utf8(single).expect("utf8"),
            r#"{"accountId":7,"events":[{"eventId" : "b", "eventName":"Y","timestamp":2,"data":{"k": [1, 2]}}]}"#
        );
        assert_eq!(single_event_envelope(body, "zz").expect("valid"), None);
    }

    #[test]
    fn envelope_framing_matches_the_writer() {
        let mut generator = crate::EventGenerator::new(4);
        let kind = crate::lookup("COURSE_ENROLLMENT_BATCH").expect("in catalogue");
        let envelope = generator.envelope(1010, kind, 3, 1_795_000_000_000);
        let events: Vec<Vec<u8>> = envelope
            .events
            .iter()
            .map(|event| serde_json::to_vec(event).expect("json"))
            .collect();
        assert_eq!(
            envelope_bytes(1010, events.iter().map(Vec::as_slice)),
            envelope.to_bytes()
        );
        assert_eq!(
            envelope_bytes(7, std::iter::empty()),
            br#"{"accountId":7,"events":[]}"#
        );
    }

    #[test]
    fn writer_uses_documented_order_and_reads_back() {
        let envelope = OutgoingEnvelope {
            account_id: 1010,
            events: vec![OutgoingEvent {
                event_id: "e1".into(),
                event_name: "COURSE_ENROLLMENT".into(),
                timestamp: TimeStyle::Iso.render(1_731_037_792_000),
                event_info: Some("info".into()),
                data: Map::from_iter([("userId".to_owned(), Value::from(5))]),
            }],
        };
        let bytes = envelope.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf8"),
            r#"{"accountId":1010,"events":[{"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":"2024-11-08T03:49:52.000Z","eventInfo":"info","data":{"userId":5}}]}"#
        );
        let parsed = parse_envelope(&bytes).expect("own output parses");
        assert_eq!(parsed.events[0].timestamp.epoch_millis(), 1_731_037_792_000);
    }
}
