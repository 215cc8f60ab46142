//! What a stored body says about itself, read leniently (a refused body may be anything):
//! its account and each event's name and id. Below the inspector's reads, the export's
//! filters and the forwarding commands, which all show a request by its events.

/// `accountId` and each event's `eventName` and `eventId` (empty when absent), read
/// leniently: a refused body may be anything.
pub(crate) fn body_account_and_events(body: &[u8]) -> (Option<i64>, Vec<(String, String)>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, Vec::new());
    };
    let account = value.get("accountId").and_then(serde_json::Value::as_i64);
    let text = |event: &serde_json::Value, field: &str| {
        event
            .get(field)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let events = value
        .get("events")
        .and_then(serde_json::Value::as_array)
        .map(|events| {
            events
                .iter()
                .filter(|event| {
                    event
                        .get("eventName")
                        .is_some_and(serde_json::Value::is_string)
                })
                .map(|event| (text(event, "eventName"), text(event, "eventId")))
                .collect()
        })
        .unwrap_or_default();
    (account, events)
}
