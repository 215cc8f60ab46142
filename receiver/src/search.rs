//! Finding events by what they hold (SPEC section 10), with one meaning wherever a search is
//! typed: `receiver events list --where PATH=VALUE --contains TEXT`, and the inspector's
//! **Data** field (`userId=42`).
//!
//! - `PATH` is a dotted path in the event (`data.userId`, `data.request.status`; a segment of
//!   digits also indexes an array).
//! - A value matches a JSON string equal to it (decoded, so `"caf\u00e9"` matches `café`) or a
//!   JSON number written exactly as it (`42` matches `42` and `"42"`, not `42.0`), whole: no
//!   prefix, no case folding. Other JSON values (objects, arrays, `true`, `null`) match nothing.
//! - `TEXT` is looked for in the event's JSON as received, byte for byte.
//! - Every condition must hold (AND).
//!
//! This is PostgreSQL's `->>` on a `json` column (a string decoded, a number's text as
//! written), so the store's SQL can narrow a search down and this module has the last word
//! on every row it returns. The learner (`data.userId`) and learning object (`data.loId`) are
//! what people search by most: [`scalar_at`] gives them at insert time, and the stores keep
//! them where a search finds them fast (see `store::query`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A dotted path in an event: `data.userId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// The path as given, for messages and CSV headers.
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Reads `data.userId`.
    ///
    /// # Errors
    /// An empty path or an empty segment (`data..userId`, `.userId`), in words for the user.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if text.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a path in the event (write it like data.userId)"
            ));
        }
        Ok(FieldPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path is exactly these segments.
    pub fn is(&self, segments: &[&str]) -> bool {
        self.segments
            .iter()
            .map(String::as_str)
            .eq(segments.iter().copied())
    }

    /// The value at this path in `json` (an event's JSON), as it stands there; `None` when a
    /// step is missing or the text is not JSON.
    pub fn lookup<'j>(&self, json: &'j str) -> Option<&'j RawValue> {
        let mut value: &'j RawValue = serde_json::from_str(json).ok()?;
        for segment in &self.segments {
            value = step(value, segment)?;
        }
        Some(value)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `PATH=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Where in the event.
    pub path: FieldPath,
    /// What the value there must be (see the module).
    pub value: String,
}

impl Condition {
    /// Reads `data.userId=42`: the path, then everything after the first `=` as the value.
    ///
    /// # Errors
    /// No `=`, or a path that [`FieldPath::parse`] refuses, in words for the user.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let (path, value) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not PATH=VALUE (for example data.userId=42)"))?;
        Ok(Condition {
            path: FieldPath::parse(path.trim())?,
            value: value.to_owned(),
        })
    }

    /// Whether the event whose JSON is `event` holds the value at the path.
    pub fn holds(&self, event: &str) -> bool {
        self.path
            .lookup(event)
            .and_then(scalar_text)
            .is_some_and(|found| found == self.value)
    }

    /// Text the event's JSON holds as it was received whenever the condition holds, for a
    /// store to narrow a scan with; `None` when the value may stand there written otherwise
    /// (JSON encoders escape `/`, quotes, backslashes and characters beyond ASCII in several
    /// ways). A sender that escaped plain letters or digits (`\u0034\u0032` for `42`) would
    /// not be found through this text; no encoder in use does that.
    pub fn plain_text(&self) -> Option<&str> {
        let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/') || c == ' ';
        (!self.value.is_empty() && self.value.chars().all(plain)).then_some(self.value.as_str())
    }
}

/// A whole search: conditions and texts, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// `--where PATH=VALUE`.
    pub conditions: Vec<Condition>,
    /// `--contains TEXT`.
    pub contains: Vec<String>,
}

impl Search {
    /// A search that asks nothing, matching every event.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.contains.is_empty()
    }

    /// Whether the event whose JSON (as received) is `event` matches.
    pub fn matches(&self, event: &str) -> bool {
        self.contains
            .iter()
            .all(|text| event.contains(text.as_str()))
            && self
                .conditions
                .iter()
                .all(|condition| condition.holds(event))
    }

    /// The value a condition on `data.userId` asks for, if there is one.
    pub fn user_id(&self) -> Option<&str> {
        self.value_at(&["data", "userId"])
    }

    /// The value a condition on `data.loId` asks for, if there is one.
    pub fn lo_id(&self) -> Option<&str> {
        self.value_at(&["data", "loId"])
    }

    fn value_at(&self, segments: &[&str]) -> Option<&str> {
        self.conditions
            .iter()
            .find(|condition| condition.path.is(segments))
            .map(|condition| condition.value.as_str())
    }

    /// Reads the inspector's **Data** field: terms separated by spaces, each `KEY=VALUE` (a
    /// path inside `data`: `userId=42`, `request.status=SUCCESS`; `data.userId=42` is the same)
    /// or a bare text to find anywhere in the event.
    ///
    /// # Errors
    /// A term whose path [`FieldPath::parse`] refuses, in words for the page.
    pub fn from_data_field(text: &str) -> Result<Search, String> {
        let mut search = Search::default();
        for term in text.split_whitespace() {
            match term.split_once('=') {
                Some((key, value)) => {
                    let key = key.strip_prefix("data.").unwrap_or(key);
                    let path = FieldPath::parse(&format!("data.{key}"))
                        .map_err(|_| format!("Data: {term:?} is not KEY=VALUE (userId=42)"))?;
                    search.conditions.push(Condition {
                        path,
                        value: value.to_owned(),
                    });
                }
                None => search.contains.push(term.to_owned()),
            }
        }
        Ok(search)
    }
}

/// The text a search compares with: a JSON string's value, or a number as written; `None` for
/// objects, arrays, `true`, `false` and `null`.
pub fn scalar_text(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get().trim();
    match text.as_bytes().first()? {
        // Borrowed when the string holds no escapes.
        b'"' => match serde_json::from_str::<&str>(text) {
            Ok(plain) => Some(Cow::Borrowed(plain)),
            Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
        },
        b'-' | b'0'..=b'9' => Some(Cow::Borrowed(text)),
        _ => None,
    }
}

/// The search text at `path` in an event's `data` object (raw JSON, as the envelope parser
/// hands it over): what the stores keep of `userId` and `loId` beside each event.
pub fn scalar_at(data: &RawValue, key: &str) -> Option<String> {
    step(data, key)
        .and_then(scalar_text)
        .map(std::borrow::Cow::into_owned)
}

/// One step down: the member `segment` of an object (the last one, as PostgreSQL reads a
/// repeated key), or the element of an array at the index `segment` spells.
fn step<'j>(value: &'j RawValue, segment: &str) -> Option<&'j RawValue> {
    let text = value.get().trim_start();
    if text.starts_with('{') {
        let mut reader = serde_json::Deserializer::from_str(text);
        Member(segment).deserialize(&mut reader).ok().flatten()
    } else if text.starts_with('[') {
        let index: usize = segment.parse().ok()?;
        let mut reader = serde_json::Deserializer::from_str(text);
        Element(index).deserialize(&mut reader).ok().flatten()
    } else {
        None
    }
}

/// Reads one member of a JSON object, skipping the others without copying them.
struct Member<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        // Keys come decoded (`"user\u0049d"` is `userId`), as every JSON reader sees them.
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Reads one element of a JSON array.
struct Element(usize);

impl<'de> DeserializeSeed<'de> for Element {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Element {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut index = 0;
        while let Some(value) = seq.next_element::<&'de RawValue>()? {
            if index == self.0 {
                found = Some(value);
            }
            index += 1;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"eventId":"e1","eventName":"COURSE_COMPLETED","timestamp":1,
        "data":{"userId":4279332,"loId":"course:7374992","score":42.0,"tag":"caf\u00e9",
                "user\u0049d2":"x","passed":true,"none":null,"nested":{"a":[1,{"b":"deep"}]},
                "repeated":"first","repeated":"last"}}"#;

    fn check(condition: &str, expected: bool) {
        let parsed = Condition::parse(condition).unwrap();
        assert_eq!(parsed.holds(EVENT), expected, "{condition}");
    }

    #[test]
    fn a_value_matches_a_string_or_a_number_as_written_whole() {
        check("data.userId=4279332", true);
        check("data.userId=427933", false); // no prefix match
        check("data.userId=4279332 ", false);
        check("data.loId=course:7374992", true);
        check("data.loId=COURSE:7374992", false);
        check("data.score=42.0", true);
        check("data.score=42", false);
        check("data.tag=café", true);
        check("data.userId2=x", true); // the key decoded
        check("data.passed=true", false); // not a number or a string
        check("data.none=null", false);
        check("data.nested={\"a\":[1,{\"b\":\"deep\"}]}", false);
        check("data.nested.a.1.b=deep", true);
        check("data.nested.a.0=1", true);
        check("data.nested.a.5=1", false);
        check("data.repeated=last", true); // the last of a repeated key, as PostgreSQL reads it
        check("eventName=COURSE_COMPLETED", true);
        check("data.missing=1", false);
        check("data=x", false);
        // The string form of a number matches the number.
        let quoted = r#"{"data":{"userId":"4279332"}}"#;
        assert!(Condition::parse("data.userId=4279332")
            .unwrap()
            .holds(quoted));
        // Not JSON: nothing matches.
        assert!(!Condition::parse("data.userId=1")
            .unwrap()
            .holds("{not json"));
    }

    #[test]
    fn paths_and_conditions_are_read_or_refused_in_words() {
        assert!(Condition::parse("data.userId").is_err());
        assert!(Condition::parse("=1").is_err());
        assert!(Condition::parse("data..userId=1").is_err());
        let condition = Condition::parse("data.note=a=b").unwrap();
        assert_eq!(condition.value, "a=b");
        assert_eq!(condition.path.as_str(), "data.note");
        assert!(FieldPath::parse("data.userId")
            .unwrap()
            .is(&["data", "userId"]));
    }

    #[test]
    fn a_search_needs_every_part_and_the_data_field_reads_the_same() {
        let search = Search {
            conditions: vec![Condition::parse("data.userId=4279332").unwrap()],
            contains: vec!["COMPLETED".to_owned()],
        };
        assert!(search.matches(EVENT));
        assert_eq!(search.user_id(), Some("4279332"));
        assert_eq!(search.lo_id(), None);
        let other = Search {
            contains: vec!["ENROLLMENT".to_owned()],
            ..search.clone()
        };
        assert!(!other.matches(EVENT));
        assert!(Search::default().matches(EVENT));

        let field =
            Search::from_data_field("userId=4279332  data.loId=course:7374992 café").unwrap();
        assert_eq!(field.user_id(), Some("4279332"));
        assert_eq!(field.lo_id(), Some("course:7374992"));
        assert_eq!(field.contains, ["café"]);
        assert!(!field.matches(EVENT)); // `café` is written escaped in the event
        assert!(Search::from_data_field("=1").is_err());
        assert!(Search::from_data_field("").unwrap().is_empty());
    }

    #[test]
    fn plain_text_narrows_only_where_the_json_holds_it_as_typed() {
        let plain = |value: &str| {
            Condition::parse(&format!("data.k={value}"))
                .unwrap()
                .plain_text()
                .map(str::to_owned)
        };
        assert_eq!(plain("4279332").as_deref(), Some("4279332"));
        assert_eq!(plain("course:7374992").as_deref(), Some("course:7374992"));
        assert_eq!(plain("a/b"), None);
        assert_eq!(plain("café"), None);
        assert_eq!(plain("say \"hi\""), None);
        assert_eq!(plain(""), None);
    }

    #[test]
    fn the_learner_and_learning_object_are_taken_as_a_search_compares_them() {
        let data: &RawValue =
            serde_json::from_str(r#"{"userId":4279332,"loId":"course:7374992","x":{}}"#).unwrap();
        assert_eq!(scalar_at(data, "userId").as_deref(), Some("4279332"));
        assert_eq!(scalar_at(data, "loId").as_deref(), Some("course:7374992"));
        assert_eq!(scalar_at(data, "x"), None);
        assert_eq!(scalar_at(data, "missing"), None);
    }
}
