//! Realistic events for every catalogue name, deterministic for a given seed.

use serde_json::{json, Map, Value};

use crate::catalog::{EventKind, Field, LoFamily};
use crate::payload::{OutgoingEnvelope, OutgoingEvent, TimeStyle};

/// Enrollment sources Learning Manager reports.
pub const ENROLLMENT_SOURCES: &[&str] = &["SELF_ENROLL", "ADMIN_ENROLL", "MANAGER_ENROLL"];

const DAY_MS: i64 = 86_400_000;

/// Makes events with plausible ids, dates and values. Two generators with the same seed make
/// the same events for the same calls.
#[derive(Debug, Clone)]
pub struct EventGenerator {
    rng: fastrand::Rng,
    time_style: TimeStyle,
}

impl EventGenerator {
    /// A generator seeded with `seed`, writing times in today's ISO form.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            time_style: TimeStyle::Iso,
        }
    }

    /// Writes times in `style` instead: [`TimeStyle::EpochMillis`] gives `timestamp` in epoch
    /// milliseconds and `data` dates in epoch seconds, as Adobe's older samples show;
    /// [`TimeStyle::EpochSeconds`] gives both in seconds.
    pub fn with_time_style(mut self, style: TimeStyle) -> Self {
        self.time_style = style;
        self
    }

    /// One event of `kind` that happened at `at_ms` (epoch milliseconds).
    pub fn event(&mut self, kind: &EventKind, at_ms: i64) -> OutgoingEvent {
        OutgoingEvent {
            event_id: self.uuid(),
            event_name: kind.name.to_owned(),
            timestamp: self.time_style.render(at_ms),
            event_info: Some(format!(
                "{at_ms}-{:06}-{:05}-0",
                self.rng.u32(0..1_000_000),
                self.rng.u32(0..100_000)
            )),
            data: self.data(kind, at_ms),
        }
    }

    /// An envelope of `count` events of `kind` for `account_id`, the n-th a second after the
    /// one before, starting at `at_ms`.
    pub fn envelope(
        &mut self,
        account_id: i64,
        kind: &EventKind,
        count: usize,
        at_ms: i64,
    ) -> OutgoingEnvelope {
        let events = (0..count)
            .map(|index| {
                let offset = i64::try_from(index)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000);
                self.event(kind, at_ms.saturating_add(offset))
            })
            .collect();
        OutgoingEnvelope { account_id, events }
    }

    /// A random version-4 UUID, from this generator's seeded stream.
    pub fn uuid(&mut self) -> String {
        let mut bytes = self.rng.u128(..).to_be_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    fn data(&mut self, kind: &EventKind, at_ms: i64) -> Map<String, Value> {
        let lo_type = match kind.family {
            LoFamily::Course => "course",
            LoFamily::LearningProgram => "learningProgram",
            LoFamily::Certification => "certification",
            LoFamily::Any => ["course", "learningProgram", "certification"][self.rng.usize(0..3)],
            LoFamily::None => "",
        };
        let user_id = self.rng.u32(1_000_000..10_000_000);
        let lo_id = format!("{lo_type}:{}", self.rng.u32(1_000_000..10_000_000));
        let lo_instance_id = format!("{lo_id}_{}", self.rng.u32(1_000_000..100_000_000));
        let seat_limit = self.rng.u32(10..500);
        let mut data = Map::new();
        for field in kind.fields {
            let value = match field {
                Field::UserId => json!(user_id),
                Field::LoId => json!(lo_id),
                Field::LoInstanceId => json!(lo_instance_id),
                Field::LoType => json!(lo_type),
                Field::EnrollmentSource => {
                    json!(ENROLLMENT_SOURCES[self.rng.usize(0..ENROLLMENT_SOURCES.len())])
                }
                Field::DateEnrolled | Field::DateCompleted => self.date(at_ms),
                Field::DateStarted => {
                    let started = at_ms - DAY_MS * i64::from(self.rng.u8(1..60));
                    self.date(started)
                }
                Field::HasPassed => json!(self.rng.u8(0..10) < 8),
                Field::ProgressPercent => json!(self.rng.u8(0..=100)),
                Field::EnrollmentCount => json!(self.rng.u32(0..=seat_limit)),
                Field::WaitlistCount => json!(self.rng.u32(0..20)),
                Field::SeatLimit => json!(seat_limit),
                Field::Status => json!("SUCCESS"),
                Field::Request => json!({
                    "userGroupId": self.rng.u32(10_000..100_000),
                    "userIds": [user_id, self.rng.u32(1_000_000..10_000_000)],
                }),
            };
            data.insert(field.json_name().to_owned(), value);
        }
        data
    }

    /// A date field: ISO in today's form, epoch seconds in both older forms.
    fn date(&self, epoch_ms: i64) -> Value {
        match self.time_style {
            TimeStyle::Iso => TimeStyle::Iso.render(epoch_ms),
            TimeStyle::EpochMillis | TimeStyle::EpochSeconds => {
                TimeStyle::EpochSeconds.render(epoch_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{lookup, CATALOG};
    use crate::payload::{parse_envelope, EventTime};

    const AT: i64 = 1_731_037_792_000;

    #[test]
    fn same_seed_same_events() {
        let kind = lookup("COURSE_COMPLETED").expect("in catalogue");
        let first = EventGenerator::new(7).envelope(1010, kind, 3, AT);
        let second = EventGenerator::new(7).envelope(1010, kind, 3, AT);
        let other = EventGenerator::new(8).envelope(1010, kind, 3, AT);
        assert_eq!(first, second);
        assert_ne!(first, other);
    }

    #[test]
    fn every_catalogue_name_generates_its_documented_fields_and_parses() {
        let mut generator = EventGenerator::new(1);
        for kind in CATALOG {
            let envelope = generator.envelope(1010, kind, 2, AT);
            for event in &envelope.events {
                let names: Vec<&str> = event.data.keys().map(String::as_str).collect();
                let expected: Vec<&str> = kind.fields.iter().map(|f| f.json_name()).collect();
                assert_eq!(names, expected, "{}", kind.name);
                if let Some(Value::String(lo_id)) = event.data.get("loId") {
                    let (lo_type, number) = lo_id.split_once(':').expect("loId shape");
                    assert_eq!(event.data.get("loType"), Some(&json!(lo_type)));
                    assert!(number.parse::<u32>().is_ok(), "{lo_id}");
                    let instance = event.data.get("loInstanceId").and_then(Value::as_str);
                    if let Some(instance) = instance {
                        let suffix = instance.strip_prefix(&format!("{lo_id}_"));
                        assert!(
                            suffix.is_some_and(|n| n.parse::<u32>().is_ok()),
                            "{instance}"
                        );
                    }
                }
            }
            let bytes = envelope.to_bytes();
            let parsed = parse_envelope(&bytes).expect("generated envelopes parse");
            assert_eq!(parsed.events.len(), 2);
            assert_eq!(parsed.events[1].timestamp.epoch_millis(), AT + 1000);
            assert!(parsed.events[0].kind().is_some());
        }
    }

    #[test]
    fn older_time_forms_can_be_generated() {
        let kind = lookup("COURSE_ENROLLMENT_BATCH").expect("in catalogue");
        let mut generator = EventGenerator::new(3).with_time_style(TimeStyle::EpochMillis);
        let bytes = generator.envelope(1010, kind, 1, AT).to_bytes();
        let parsed = parse_envelope(&bytes).expect("parses");
        assert_eq!(parsed.events[0].timestamp, EventTime::EpochMillis(AT));
        assert!(parsed.events[0]
            .data
            .get()
            .contains("\"dateEnrolled\":1731037792"));
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let id = EventGenerator::new(9).uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }
}
