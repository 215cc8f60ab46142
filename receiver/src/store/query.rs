//! The read queries of `receiver events` and `receiver export`, written once for both stores.
//!
//! The SQLite and PostgreSQL layouts hold the same columns under different table names, and
//! keep an event's JSON differently (offsets into the body, or a `json` column), so each store
//! describes its [`Tables`] and its placeholders; the SQL text and the filtering are built
//! here. Account and event-name filters of `export` run in Rust on the body, because a refused
//! request has no other record of them.

use super::{CaptureFilter, EventFilter, ForwardingState};

/// How one store names its tables and an event's JSON text.
pub(crate) struct Tables {
    /// Accepted requests.
    pub requests: &'static str,
    /// Stored events.
    pub events: &'static str,
    /// Forward jobs.
    pub forward_jobs: &'static str,
    /// Refused requests.
    pub refused: &'static str,
    /// The event's JSON text, as an expression over `events e JOIN requests r`.
    pub raw_text: &'static str,
    /// A numbered placeholder: `?1` (SQLite) or `$1` (PostgreSQL).
    pub placeholder: fn(usize) -> String,
}

/// A value bound to a placeholder; each store converts it to its driver's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlValue {
    /// An integer.
    Integer(i64),
    /// Text.
    Text(String),
}

/// A statement and the values of its placeholders, in order.
pub(crate) struct Query {
    pub sql: String,
    pub values: Vec<SqlValue>,
}

/// Collects conditions and their values, numbering the placeholders.
struct Conditions<'t> {
    tables: &'t Tables,
    conditions: Vec<String>,
    values: Vec<SqlValue>,
}

impl<'t> Conditions<'t> {
    fn new(tables: &'t Tables) -> Self {
        Self {
            tables,
            conditions: Vec::new(),
            values: Vec::new(),
        }
    }

    /// The next placeholder, bound to `value`.
    fn bind(&mut self, value: SqlValue) -> String {
        self.values.push(value);
        (self.tables.placeholder)(self.values.len())
    }

    fn push(&mut self, template: &str, value: SqlValue) {
        let mark = self.bind(value);
        self.conditions.push(template.replace('?', &mark));
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

fn event_conditions<'t>(tables: &'t Tables, filter: &EventFilter) -> Conditions<'t> {
    let mut conditions = Conditions::new(tables);
    if !filter.event_names.is_empty() {
        let marks: Vec<String> = filter
            .event_names
            .iter()
            .map(|name| conditions.bind(SqlValue::Text(name.clone())))
            .collect();
        conditions
            .conditions
            .push(format!("e.event_name IN ({})", marks.join(", ")));
    }
    if let Some(since) = filter.since_ms {
        conditions.push("e.timestamp_ms >= ?", SqlValue::Integer(since));
    }
    if let Some(until) = filter.until_ms {
        conditions.push("e.timestamp_ms < ?", SqlValue::Integer(until));
    }
    if let Some(account) = filter.account_id {
        conditions.push("e.account_id = ?", SqlValue::Integer(account));
    }
    if let Some(event_id) = &filter.event_id {
        conditions.push("e.event_id = ?", SqlValue::Text(event_id.clone()));
    }
    conditions
}

/// The events matching `filter`, oldest arrival first. Columns: account, event id, name,
/// timestamp, received at, known, JSON text, request id, auth, forwarding state (a number
/// summing up the request's jobs; see [`forwarding_state`]).
pub(crate) fn events(tables: &Tables, filter: &EventFilter) -> Query {
    let mut conditions = event_conditions(tables, filter);
    let clause = conditions.clause();
    let limit = match filter.limit {
        Some(limit) => format!(
            "LIMIT {}",
            conditions.bind(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)))
        ),
        None => String::new(),
    };
    let Tables {
        requests,
        events,
        forward_jobs,
        raw_text,
        ..
    } = tables;
    // One job per target: the request's state is summed up in one number per event.
    let forwarding = super::forward::sql::REQUEST_STATE_CODE.replace("{jobs}", forward_jobs);
    Query {
        sql: format!(
            "SELECT e.account_id, e.event_id, e.event_name, e.timestamp_ms, r.received_at_ms,
                    e.known, {raw_text}, e.request_id, r.auth, {forwarding}
             FROM {events} e JOIN {requests} r ON r.id = e.request_id
             {clause} ORDER BY e.id {limit}"
        ),
        values: conditions.values,
    }
}

/// How many events match `filter` (its limit ignored). One column.
pub(crate) fn count(tables: &Tables, filter: &EventFilter) -> Query {
    let conditions = event_conditions(tables, filter);
    Query {
        sql: format!(
            "SELECT COUNT(*) FROM {} e {}",
            tables.events,
            conditions.clause()
        ),
        values: conditions.values,
    }
}

/// The kept requests in the time range of `filter`, oldest first; `None` when it asks for
/// neither verdict. Columns: received at, method, path, headers, body, reason (NULL when
/// accepted), account (NULL when refused), refused (0 or 1), id. Pass each row through
/// [`capture_matches`] for the account and event-name parts.
pub(crate) fn captures(tables: &Tables, filter: &CaptureFilter) -> Option<Query> {
    let mut parts = Vec::new();
    let mut values = Vec::new();
    let branches = [
        (
            filter.accepted,
            "CAST(NULL AS TEXT), account_id, 0",
            tables.requests,
        ),
        (
            filter.refused,
            // Typed NULLs: PostgreSQL types a branch on its own when it is the only one.
            "reason, CAST(NULL AS BIGINT), 1",
            tables.refused,
        ),
    ];
    for (wanted, columns, table) in branches {
        if !wanted {
            continue;
        }
        // Each branch numbers its own placeholders after the ones already taken.
        let mut conditions = Conditions::new(tables);
        conditions.values = std::mem::take(&mut values);
        if let Some(since) = filter.received_since_ms {
            conditions.push("received_at_ms >= ?", SqlValue::Integer(since));
        }
        if let Some(until) = filter.received_until_ms {
            conditions.push("received_at_ms < ?", SqlValue::Integer(until));
        }
        parts.push(format!(
            "SELECT received_at_ms, method, path, headers, body, {columns}, id FROM {table} {}",
            conditions.clause()
        ));
        values = conditions.values;
    }
    if parts.is_empty() {
        return None;
    }
    Some(Query {
        sql: format!("{} ORDER BY 1, 8, 9", parts.join(" UNION ALL ")),
        values,
    })
}

/// The forwarding state from the number [`events`] selects.
pub(crate) fn forwarding_state(code: i64) -> ForwardingState {
    ForwardingState::from_code(code)
}

/// Whether a capture passes the account and event-name parts of `filter`, which SQL cannot
/// see for refused requests (their body is the only record of them).
pub(crate) fn capture_matches(
    filter: &CaptureFilter,
    account_column: Option<i64>,
    body: &[u8],
) -> bool {
    if filter.account_id.is_none() && filter.event_names.is_empty() {
        return true;
    }
    let (body_account, events) = super::body::body_account_and_events(body);
    let account = account_column.or(body_account);
    if filter.account_id.is_some() && account != filter.account_id {
        return false;
    }
    filter.event_names.is_empty()
        || events
            .iter()
            .any(|(name, _)| filter.event_names.contains(name))
}

/// A capture record from the columns of one [`captures`] row.
pub(crate) fn capture_record(
    received_at_ms: i64,
    method: String,
    path: String,
    headers: &str,
    body: Vec<u8>,
    reason: Option<String>,
) -> verify::CaptureRecord {
    verify::CaptureRecord {
        received_at_ms,
        method,
        path,
        headers: serde_json::from_str(headers).unwrap_or_default(),
        body,
        verdict: if reason.is_some() {
            verify::Verdict::Refused
        } else {
            verify::Verdict::Accepted
        },
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: Tables = Tables {
        requests: "requests",
        events: "events",
        forward_jobs: "forward_jobs",
        refused: "refused_requests",
        raw_text: "e.raw",
        placeholder: |n| format!("${n}"),
    };

    #[test]
    fn placeholders_are_numbered_in_the_order_of_their_values() {
        let filter = EventFilter {
            event_names: vec!["A".into(), "B".into()],
            since_ms: Some(5),
            account_id: Some(7),
            limit: Some(3),
            ..EventFilter::default()
        };
        let query = events(&TABLES, &filter);
        assert!(
            query.sql.contains("e.event_name IN ($1, $2)"),
            "{}",
            query.sql
        );
        assert!(query.sql.contains("e.timestamp_ms >= $3"));
        assert!(query.sql.contains("e.account_id = $4"));
        assert!(query.sql.contains("LIMIT $5"));
        assert_eq!(query.values.len(), 5);

        let both = CaptureFilter {
            accepted: true,
            refused: true,
            received_since_ms: Some(1),
            received_until_ms: Some(2),
            ..CaptureFilter::default()
        };
        let query = captures(&TABLES, &both).expect("a query");
        assert!(query
            .sql
            .contains("received_at_ms >= $1 AND received_at_ms < $2"));
        assert!(query
            .sql
            .contains("received_at_ms >= $3 AND received_at_ms < $4"));
        assert_eq!(query.values.len(), 4);
        assert!(captures(&TABLES, &CaptureFilter::default()).is_none());
    }

    #[test]
    fn captures_are_filtered_by_the_body_when_no_column_says() {
        let filter = CaptureFilter {
            account_id: Some(7),
            event_names: vec!["COURSE_COMPLETED".into()],
            ..CaptureFilter::default()
        };
        let body = br#"{"accountId":7,"events":[{"eventName":"COURSE_COMPLETED"}]}"#;
        assert!(capture_matches(&filter, None, body));
        assert!(!capture_matches(&filter, Some(8), body));
        assert!(!capture_matches(&filter, None, b"not json"));
    }
}
