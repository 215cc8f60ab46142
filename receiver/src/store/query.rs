//! The read queries of `receiver events` and `receiver export`, written once for both stores.
//!
//! The SQLite and PostgreSQL layouts hold the same columns under different table names, and
//! keep an event's JSON differently (offsets into the body, or a `json` column), so each store
//! describes its [`Tables`] and its placeholders; the SQL text and the filtering are built
//! here. Account and event-name filters of `export` run in Rust on the body, because a refused
//! request has no other record of them.

use super::{CaptureFilter, EventFilter, ForwardingState, StoredEvent};

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
    /// What the event queries read from: `events e`, joined to `requests r` where the
    /// store keeps what they need there.
    pub events_from: &'static str,
    /// The request's receive time, an expression over [`Tables::events_from`].
    pub received_at: &'static str,
    /// The request's `auth`, likewise.
    pub auth: &'static str,
    /// The event's JSON text, likewise.
    pub raw_text: &'static str,
    /// `data.userId` as a search compares it, an expression over `events e` that the store
    /// finds fast (a column of its own, or an indexed expression).
    pub user_id: &'static str,
    /// `data.loId`, likewise.
    pub lo_id: &'static str,
    /// A condition that holds whenever the event's JSON holds the text bound to `?` as
    /// received (it may hold for more: the search has the last word), over the rows of
    /// [`Tables::holds_scope`].
    pub holds_text: &'static str,
    /// Where [`Tables::holds_text`] conditions are looked at: `{}` stands for them, ANDed; a
    /// condition over [`Tables::events_from`] (SQLite reads the bodies in one pass over the
    /// requests, in their order, rather than one request per event).
    pub holds_scope: &'static str,
    /// What a search's rows are ordered by: `e.id`, or an expression of it the store cannot
    /// read in order from the primary key. A search has no SQL limit and finds few rows, and
    /// PostgreSQL, asked for `ORDER BY e.id`, walks the whole key in order checking every
    /// event's JSON (one process, and twice the work); given `e.id + 0` it scans the table, in
    /// parallel, and sorts what it found.
    pub search_order: &'static str,
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
    search_conditions(&mut conditions, &filter.search);
    conditions
}

/// Narrows the rows to those that may match `search`: the learner and learning object by the
/// store's fast expressions, other conditions and texts by the text they need in the JSON.
/// What passes still goes through [`crate::search::Search::matches`] (see [`events`]).
fn search_conditions(conditions: &mut Conditions<'_>, search: &crate::search::Search) {
    let tables = conditions.tables;
    if let Some(user_id) = search.user_id() {
        conditions.push(
            &format!("{} = ?", tables.user_id),
            SqlValue::Text(user_id.to_owned()),
        );
    }
    if let Some(lo_id) = search.lo_id() {
        conditions.push(
            &format!("{} = ?", tables.lo_id),
            SqlValue::Text(lo_id.to_owned()),
        );
    }
    let texts = search
        .conditions
        .iter()
        .filter(|condition| {
            !condition.path.is(&["data", "userId"]) && !condition.path.is(&["data", "loId"])
        })
        .filter_map(crate::search::Condition::plain_text)
        .chain(search.contains.iter().map(String::as_str));
    let holds: Vec<String> = texts
        .map(|text| {
            let mark = conditions.bind(SqlValue::Text(text.to_owned()));
            tables.holds_text.replace('?', &mark)
        })
        .collect();
    if !holds.is_empty() {
        conditions
            .conditions
            .push(tables.holds_scope.replace("{}", &holds.join(" AND ")));
    }
}

/// The events that may match `filter`, oldest arrival first. Columns: account, event id,
/// name, timestamp, received at, known, JSON text, request id, auth, forwarding state (a
/// number summing up the request's jobs; see [`forwarding_state`]). With a search, SQL only
/// narrows the rows down: each store keeps the rows that
/// [`crate::search::Search::matches`], and applies the limit itself (the SQL has none then).
pub(crate) fn events(tables: &Tables, filter: &EventFilter) -> Query {
    let mut conditions = event_conditions(tables, filter);
    let clause = conditions.clause();
    let limit = match filter.limit.filter(|_| filter.search.is_empty()) {
        Some(limit) => format!(
            "LIMIT {}",
            conditions.bind(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)))
        ),
        None => String::new(),
    };
    let Tables {
        events_from,
        received_at,
        auth,
        forward_jobs,
        raw_text,
        ..
    } = tables;
    let order = if filter.search.is_empty() {
        "e.id"
    } else {
        tables.search_order
    };
    // One job per target: the request's state is summed up in one number per event, looked
    // up per row returned (by request_id), not joined: a join may read every job when a
    // search returns few rows.
    let forwarding = super::forward::sql::REQUEST_STATE_CODE.replace("{jobs}", forward_jobs);
    Query {
        sql: format!(
            "SELECT e.account_id, e.event_id, e.event_name, e.timestamp_ms, {received_at},
                    e.known, {raw_text}, e.request_id, {auth}, {forwarding}
             FROM {events_from} {clause} ORDER BY {order} {limit}"
        ),
        values: conditions.values,
    }
}

/// How many events match `filter` (its limit ignored). One column. Only for a filter without
/// a search: with one, count what [`events`] keeps.
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

/// Adds `event` (a row of [`events`]) to `found` when it matches the search of `filter`;
/// `false` once `found` holds the filter's limit, when the caller stops reading.
pub(crate) fn collect(
    filter: &EventFilter,
    found: &mut Vec<StoredEvent>,
    event: StoredEvent,
) -> bool {
    if filter.search.matches(&event.raw) {
        found.push(event);
    }
    filter
        .limit
        .is_none_or(|limit| (found.len() as u64) < limit)
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
    let (body_account, events) = super::body::body_events(body);
    let account = account_column.or(body_account);
    if filter.account_id.is_some() && account != filter.account_id {
        return false;
    }
    filter.event_names.is_empty()
        || events
            .iter()
            .any(|event| filter.event_names.contains(&event.summary.event_name))
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
        events_from: "events e",
        received_at: "e.received_at_ms",
        auth: "'none'",
        raw_text: "e.raw",
        user_id: "e.user_id",
        lo_id: "e.lo_id",
        holds_text: "strpos(e.raw, ?) > 0",
        holds_scope: "{}",
        search_order: "e.id",
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
    fn a_search_narrows_by_the_fast_columns_and_the_text_it_needs_and_drops_the_limit() {
        let search = crate::search::Search {
            conditions: [
                "data.userId=42",
                "data.loId=course:7",
                "data.k=a/b",
                "data.s=plain",
            ]
            .iter()
            .map(|text| crate::search::Condition::parse(text).unwrap())
            .collect(),
            contains: vec!["COMPLETED".to_owned()],
        };
        let filter = EventFilter {
            search,
            limit: Some(3),
            ..EventFilter::default()
        };
        let query = events(&TABLES, &filter);
        assert!(
            query.sql.contains(
                "e.user_id = $1 AND e.lo_id = $2 AND strpos(e.raw, $3) > 0 AND strpos(e.raw, $4) > 0"
            ),
            "{}",
            query.sql
        );
        assert!(!query.sql.contains("LIMIT"));
        assert_eq!(
            query.values,
            ["42", "course:7", "plain", "COMPLETED"].map(|text| SqlValue::Text(text.to_owned()))
        );
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
