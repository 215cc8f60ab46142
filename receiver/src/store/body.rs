//! What a stored body says about itself, read leniently (a refused body may be anything):
//! its account and each event's name, id, learner and learning object. Below the inspector's reads, the export's
//! filters and the forwarding commands, which all show a request by its events.

use super::EventSummary;
use crate::search::FieldPath;

/// One event of a body, as read for the list: what it shows, and the event's JSON as it
/// stands in the body (for the Data filter).
pub(crate) struct BodyEvent<'b> {
    pub summary: EventSummary,
    pub raw: &'b str,
}

/// `accountId` and each event whose `eventName` is a string, with its `eventId` (empty when
/// absent), learner and learning object, read leniently: a refused body may be anything (not
/// JSON, not UTF-8: no account and no events then). A key given twice counts as its last
/// value, as PostgreSQL reads JSON.
pub(crate) fn body_events(body: &[u8]) -> (Option<i64>, Vec<BodyEvent<'_>>) {
    let Ok(text) = std::str::from_utf8(body) else {
        return (None, Vec::new());
    };
    let path = |text: &str| FieldPath::parse(text).ok();
    let (Some(account_path), Some(events_path), Some(name_path), Some(id_path), Some(data_path)) = (
        path("accountId"),
        path("events"),
        path("eventName"),
        path("eventId"),
        path("data"),
    ) else {
        return (None, Vec::new());
    };
    let account = account_path
        .lookup(text)
        .and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok());
    let raw_events: Vec<&serde_json::value::RawValue> = events_path
        .lookup(text)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let string = |raw: Option<&serde_json::value::RawValue>| {
        raw.filter(|raw| raw.get().trim_start().starts_with('"'))
            .and_then(crate::search::scalar_text)
            .map(std::borrow::Cow::into_owned)
    };
    let events = raw_events
        .into_iter()
        .filter_map(|raw| {
            let raw = raw.get();
            let event_name = string(name_path.lookup(raw))?;
            let data = data_path.lookup(raw);
            let learner = |key: &str| data.and_then(|data| crate::search::scalar_at(data, key));
            Some(BodyEvent {
                summary: EventSummary {
                    event_name,
                    event_id: string(id_path.lookup(raw)).unwrap_or_default(),
                    user_id: learner("userId"),
                    lo_id: learner("loId"),
                },
                raw,
            })
        })
        .collect();
    (account, events)
}

/// `accountId` and each event's `eventName` and `eventId` (empty when absent), read
/// leniently: a refused body may be anything.
pub(crate) fn body_account_and_events(body: &[u8]) -> (Option<i64>, Vec<(String, String)>) {
    let (account, events) = body_events(body);
    let events = events
        .into_iter()
        .map(|event| (event.summary.event_name, event.summary.event_id))
        .collect();
    (account, events)
}
