//! The statement that stores one batch of requests, and its parameters: one array per column.

use tokio_postgres::types::ToSql;

use super::error::CommitError;
use crate::routing::Routes;
use crate::store::AcceptedRequest;

/// Held (per transaction) while a batch inserts forward jobs: job ids and queue places follow
/// commit order (a retry takes it too, `store::forward::sql`).
pub(super) const FORWARD_ORDER_LOCK: i64 = 0x7265_6376_0000_0002;

/// The statement of one batch. `$1`–`$7` are the requests' columns, `$8`–`$13` the events'
/// (with the 1-based position of their request); it returns `(request position, eventId)` of
/// every event stored now. `{lock}` and `{jobs}` are filled in for forwarding: then `$14` is
/// the time queued, `$15` each event's mask of the targets that take its name (bit `i` for
/// target `i`, from `routing::Routes::mask_of`, so the names are matched in one place) and
/// `$16` the targets; a request gets a job per target that one of its NEW events takes.
const ACCEPT_TEMPLATE: &str = "
WITH r AS MATERIALIZED (
    SELECT nextval('receiver_requests_id_seq') AS id, r.received_at_ms, r.method, r.path,
           r.headers, r.body, r.auth, r.account_id, r.ord
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[],
                $7::int8[])
         WITH ORDINALITY AS r (received_at_ms, method, path, headers, body, auth, account_id, ord)
         {lock}
),
requests AS (
    INSERT INTO receiver_requests (id, received_at_ms, method, path, headers, body, auth, account_id)
    SELECT id, received_at_ms, method, path, headers, body, auth, account_id FROM r
),
new_events AS (
    INSERT INTO receiver_events
        (account_id, event_id, request_id, event_name, timestamp_ms, received_at_ms, known, event)
    SELECT r.account_id, e.event_id, r.id, e.event_name, e.timestamp_ms, r.received_at_ms,
           e.known, e.event::json
    FROM unnest($8::int8[], $9::text[], $10::text[], $11::int8[], $12::bool[], $13::text[])
         WITH ORDINALITY AS e (request_ord, event_id, event_name, timestamp_ms, known, event, ord)
    JOIN r ON r.ord = e.request_ord
    -- A key pruned or erased within the dedupe window is a duplicate too.
    WHERE NOT EXISTS (SELECT 1 FROM receiver_dedupe_keys d
                      WHERE d.account_id = r.account_id AND d.event_id = e.event_id)
    ORDER BY r.account_id, e.event_id, e.ord
    ON CONFLICT (account_id, event_id) DO NOTHING
    RETURNING request_id, event_id, event_name
){jobs}
SELECT r.ord, n.event_id FROM new_events n JOIN r ON r.id = n.request_id";

/// The batch statement without forwarding.
pub(super) fn accept_statement(queue_forwarding: bool) -> String {
    if queue_forwarding {
        ACCEPT_TEMPLATE
            .replace(
                "{lock}",
                &format!(", (SELECT pg_advisory_xact_lock({FORWARD_ORDER_LOCK})) AS lock"),
            )
            .replace(
                "{jobs}",
                ",
routed AS (
    SELECT n.request_id, bit_or(m.mask) AS mask
    FROM new_events n
    JOIN r ON r.id = n.request_id
    JOIN unnest($8::int8[], $9::text[], $10::text[], $15::int8[])
         AS m (request_ord, event_id, event_name, mask)
      ON m.request_ord = r.ord AND m.event_id = n.event_id AND m.event_name = n.event_name
    GROUP BY n.request_id
),
jobs AS (
    INSERT INTO receiver_forward_jobs (request_id, target, queued_at_ms)
    SELECT routed.request_id, t.target, $14::int8
    FROM routed
    JOIN unnest($16::text[]) WITH ORDINALITY AS t (target, bit)
      ON routed.mask & (1::int8 << (t.bit - 1)::int4) <> 0
    ORDER BY routed.request_id, t.bit
)",
            )
    } else {
        ACCEPT_TEMPLATE.replace("{lock}", "").replace("{jobs}", "")
    }
}

/// The columns of a batch as arrays, one element per request or per event.
pub(super) struct BatchColumns<'a> {
    received_at: Vec<i64>,
    methods: Vec<&'a str>,
    paths: Vec<&'a str>,
    headers: Vec<&'a str>,
    bodies: Vec<&'a [u8]>,
    auths: Vec<&'a str>,
    accounts: Vec<i64>,
    event_requests: Vec<i64>,
    event_ids: Vec<&'a str>,
    event_names: Vec<&'a str>,
    event_times: Vec<i64>,
    event_known: Vec<bool>,
    event_json: Vec<&'a str>,
    /// Per event, the targets that take its name (empty without forwarding).
    event_targets: Vec<i64>,
}

impl<'a> BatchColumns<'a> {
    /// The columns of `requests`, with each event's targets among `routes`.
    ///
    /// # Errors
    /// An event's JSON is not UTF-8 (the envelope parser read it, so it never is).
    pub(super) fn new(
        requests: &[&'a AcceptedRequest],
        routes: &Routes,
    ) -> Result<Self, CommitError> {
        let events = requests.iter().map(|request| request.events.len()).sum();
        let mut columns = BatchColumns {
            received_at: Vec::with_capacity(requests.len()),
            methods: Vec::with_capacity(requests.len()),
            paths: Vec::with_capacity(requests.len()),
            headers: Vec::with_capacity(requests.len()),
            bodies: Vec::with_capacity(requests.len()),
            auths: Vec::with_capacity(requests.len()),
            accounts: Vec::with_capacity(requests.len()),
            event_requests: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            event_names: Vec::with_capacity(events),
            event_times: Vec::with_capacity(events),
            event_known: Vec::with_capacity(events),
            event_json: Vec::with_capacity(events),
            event_targets: Vec::with_capacity(if routes.is_on() { events } else { 0 }),
        };
        for (position, request) in (1_i64..).zip(requests) {
            columns.received_at.push(request.received_at_ms);
            columns.methods.push(request.method);
            columns.paths.push(&request.path);
            columns.headers.push(&request.headers_json);
            columns.bodies.push(&request.body);
            columns.auths.push(request.auth);
            columns.accounts.push(request.account_id);
            for event in &request.events {
                // The envelope parser read it as JSON, so it is UTF-8.
                let json = std::str::from_utf8(event.raw_text(&request.body)).map_err(|_| {
                    CommitError::connection("an event's JSON is not UTF-8".to_owned())
                })?;
                columns.event_requests.push(position);
                columns.event_ids.push(&event.event_id);
                columns.event_names.push(&event.event_name);
                columns.event_times.push(event.timestamp_ms);
                columns.event_known.push(event.known);
                columns.event_json.push(json);
                if routes.is_on() {
                    columns
                        .event_targets
                        .push(routes.mask_of(&event.event_name));
                }
            }
        }
        Ok(columns)
    }

    /// `$1`–`$13` of the batch statement.
    pub(super) fn parameters(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.received_at,
            &self.methods,
            &self.paths,
            &self.headers,
            &self.bodies,
            &self.auths,
            &self.accounts,
            &self.event_requests,
            &self.event_ids,
            &self.event_names,
            &self.event_times,
            &self.event_known,
            &self.event_json,
        ]
    }

    /// `$15`, the events' target masks, for the forwarding statement.
    pub(super) fn event_targets(&self) -> &(dyn ToSql + Sync) {
        &self.event_targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarding_statement_locks_and_queues_the_plain_one_does_not() {
        let plain = accept_statement(false);
        assert!(!plain.contains("{lock}") && !plain.contains("{jobs}"));
        assert!(!plain.contains("pg_advisory_xact_lock"));
        assert!(!plain.contains("receiver_forward_jobs"));
        let forwarding = accept_statement(true);
        assert!(forwarding.contains("pg_advisory_xact_lock"));
        assert!(forwarding.contains("INSERT INTO receiver_forward_jobs"));
        assert!(forwarding.contains("$14::int8"));
        assert!(forwarding.contains("$15::int8[]") && forwarding.contains("$16::text[]"));
    }
}
