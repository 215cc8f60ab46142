//! `events list --format csv [--fields …]`: RFC 4180 CSV for a spreadsheet (SPEC section 10).
//!
//! The header line is the field names as given. A field is a dotted path in the event
//! (`eventId`, `timestamp` as sent, `data.userId`) or one of the record's own fields, named as
//! `--json` names them. A string is written as its value, a number as written, `true` /
//! `false` as such, `null` and a missing field as an empty cell, an object or array as its
//! JSON as received. Lines end in CRLF; a cell is quoted when it holds a comma, a quote, CR or
//! LF, its quotes doubled (RFC 4180 section 2).
//!
//! Values are written exactly, as RFC 4180 asks: a cell that starts with `=`, `+`, `-` or `@`
//! may be read as a formula by a spreadsheet that is told to, so import the file as text
//! where its events come from senders you do not trust.

use verify::timestamp::format_iso_millis;

use crate::search::FieldPath;
use crate::store::StoredEvent;

/// The fields of a CSV when none are given.
pub(super) const DEFAULT_FIELDS: &str =
    "receivedAt,accountId,eventId,eventName,timestamp,data.userId,data.loId";

/// What a record holds besides the event's JSON, under the names `--json` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordField {
    AccountId,
    ReceivedAt,
    Known,
    RequestId,
    Auth,
    Forwarding,
}

impl RecordField {
    fn named(name: &str) -> Option<RecordField> {
        Some(match name {
            "accountId" => Self::AccountId,
            "receivedAt" => Self::ReceivedAt,
            "known" => Self::Known,
            "requestId" => Self::RequestId,
            "auth" => Self::Auth,
            "forwarding" => Self::Forwarding,
            _ => return None,
        })
    }

    fn value(self, event: &StoredEvent) -> String {
        match self {
            Self::AccountId => event.account_id.to_string(),
            Self::ReceivedAt => format_iso_millis(event.received_at_ms),
            Self::Known => event.known.to_string(),
            Self::RequestId => event.request_id.to_string(),
            Self::Auth => event.auth.clone(),
            Self::Forwarding => event.forwarding.as_str().to_owned(),
        }
    }
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Record(RecordField),
    Event(FieldPath),
}

/// The columns of `--fields`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvFields {
    fields: Vec<(String, Field)>,
}

impl Default for CsvFields {
    fn default() -> Self {
        // The default names parse.
        Self::parse(DEFAULT_FIELDS).unwrap_or(CsvFields { fields: Vec::new() })
    }
}

impl CsvFields {
    /// Reads `eventId,eventName,data.userId`.
    ///
    /// # Errors
    /// An empty name, in words for the user.
    pub(crate) fn parse(text: &str) -> Result<CsvFields, String> {
        let fields = text
            .split(',')
            .map(|name| {
                let name = name.trim();
                let field = match RecordField::named(name) {
                    Some(record) => Field::Record(record),
                    None => Field::Event(
                        FieldPath::parse(name).map_err(|_| format!("{name:?} is not a field"))?,
                    ),
                };
                Ok((name.to_owned(), field))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(CsvFields { fields })
    }

    /// The whole CSV of `events`: the header line, then a line per event.
    pub(crate) fn write(&self, events: &[StoredEvent]) -> String {
        let mut csv = line(self.fields.iter().map(|(name, _)| name.clone()));
        for event in events {
            csv.push_str(&line(
                self.fields.iter().map(|(_, field)| cell(field, event)),
            ));
        }
        csv
    }
}

/// The text of one cell (see the module for how values are written).
fn cell(field: &Field, event: &StoredEvent) -> String {
    match field {
        Field::Record(record) => record.value(event),
        Field::Event(path) => match path.lookup(&event.raw) {
            None => String::new(),
            Some(value) => match crate::search::scalar_text(value) {
                Some(text) => text.into_owned(),
                None => match value.get().trim() {
                    "null" => String::new(),
                    other => other.to_owned(),
                },
            },
        },
    }
}

/// One line of CSV: the cells, quoted where RFC 4180 needs it, and CRLF.
fn line(cells: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = cells
        .map(|cell| {
            if cell.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell
            }
        })
        .collect();
    format!("{}\r\n", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ForwardingState;

    fn event(raw: &str) -> StoredEvent {
        StoredEvent {
            account_id: 1010,
            event_id: "e1".to_owned(),
            event_name: "COURSE_COMPLETED".to_owned(),
            timestamp_ms: 0,
            received_at_ms: 1_795_000_000_000,
            known: true,
            raw: raw.to_owned(),
            request_id: 7,
            auth: "signature".to_owned(),
            forwarding: ForwardingState::None,
        }
    }

    #[test]
    fn cells_are_written_as_rfc_4180_asks() {
        let fields = CsvFields::parse("accountId,eventId,data.note,data.userId,data.nested,data.passed,data.none,data.missing,receivedAt").unwrap();
        let csv = fields.write(&[event(
            r#"{"eventId":"e1","data":{"note":"a, \"b\"\nc","userId":4279332,"nested":{"a": [1]},"passed":true,"none":null}}"#,
        )]);
        assert_eq!(
            csv,
            "accountId,eventId,data.note,data.userId,data.nested,data.passed,data.none,data.missing,receivedAt\r\n\
             1010,e1,\"a, \"\"b\"\"\nc\",4279332,\"{\"\"a\"\": [1]}\",true,,,2026-11-18T11:06:40.000Z\r\n"
        );
        assert_eq!(
            CsvFields::default().fields.len(),
            DEFAULT_FIELDS.split(',').count()
        );
        assert!(CsvFields::parse("eventId,,data.userId").is_err());
    }
}
