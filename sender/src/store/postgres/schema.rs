//! The tables: created on first use under an advisory lock, with a layout version; tables of
//! our names that are not ours (or of another version) are refused.

use std::sync::atomic::{AtomicU64, Ordering};

use common::postgres_schema::{self, Layout, Step};

/// The sender's tables and how a database gets them (`common::postgres_schema`): the steps in
/// order, each bringing the tables to its version (recorded in `sender_schema`). Version 1 is
/// the whole layout of [`SCHEMA`], version 2 [`VERSION_2`] (requests queued again, health,
/// notifications), version 3 [`VERSION_3`] (the key record and the rule a webhook's Target
/// URL was given under). A database at the latest version is opened without a statement that
/// changes its layout, so a role that may only read and write rows (no CREATE on the schema)
/// runs the sender. A change of layout is a step appended here.
const LAYOUT: Layout = Layout {
    program: "sender",
    lock: SCHEMA_LOCK,
    version_table: "sender_schema",
    steps: &[
        Step {
            version: 1,
            sql: SCHEMA,
            creates: TABLES,
        },
        Step {
            version: 2,
            sql: VERSION_2,
            creates: &["sender_webhook_health", "sender_notifications"],
        },
        Step {
            version: 3,
            sql: VERSION_3,
            creates: &["sender_secret_key"],
        },
    ],
};

/// The advisory lock that serialises schema creation across processes ("sndr" in ASCII).
pub(super) const SCHEMA_LOCK: i64 = 0x736e_6472;

/// The tables of [`SCHEMA`]; tables of these names (or the key record's) without a
/// `sender_schema` row are someone else's, and refused.
const TABLES: &[&str] = &[
    "sender_schema",
    "sender_webhooks",
    "sender_requests",
    "sender_request_bodies",
    "sender_staged_events",
    "sender_attempts",
    "sender_leases",
];

/// Version 3: the key record (see `crate::sealing`), which the builds of versions 1 and 2
/// made at every opening (hence `IF NOT EXISTS`: a database of those versions may have it),
/// and whether a webhook's deliveries may reach internal addresses (see
/// `registry::Webhook::target_policy`).
const VERSION_3: &str = "
CREATE TABLE IF NOT EXISTS sender_secret_key (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    key_check TEXT NOT NULL
);
-- true: the Target URL was given through pages reachable from other hosts; deliveries and
-- tests then connect to public addresses only.
ALTER TABLE sender_webhooks ADD COLUMN public_targets_only BOOLEAN NOT NULL DEFAULT FALSE;
";

pub(super) const SCHEMA: &str = "
CREATE TABLE sender_schema (version BIGINT NOT NULL);
CREATE TABLE sender_webhooks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    auth TEXT NOT NULL,
    basic_username TEXT,
    basic_password TEXT,
    signature_file TEXT,
    status TEXT NOT NULL,
    disabled_reason TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE TABLE sender_requests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    event_names TEXT NOT NULL,
    event_count BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    finished_at_ms BIGINT
);
-- The queue proper: only pending rows, so a finished request leaves it at once.
CREATE INDEX sender_requests_pending ON sender_requests (webhook_id, id) WHERE state = 'pending';
CREATE INDEX sender_requests_finished ON sender_requests (finished_at_ms) WHERE state <> 'pending';
-- The bytes never change: apart from the row every attempt updates, so updates stay small.
CREATE TABLE sender_request_bodies (
    request_id BIGINT PRIMARY KEY,
    body BYTEA NOT NULL,
    event_ids TEXT NOT NULL
);
CREATE TABLE sender_staged_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    event_json BYTEA NOT NULL,
    enqueued_at_ms BIGINT NOT NULL
);
CREATE INDEX sender_staged_by_webhook ON sender_staged_events (webhook_id, seq);
CREATE TABLE sender_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    latency_ms BIGINT NOT NULL,
    response_head TEXT
);
CREATE INDEX sender_attempts_by_request ON sender_attempts (request_id, attempt);
-- One row per webhook ever leased; a release keeps it, so fence numbers are never reused.
CREATE TABLE sender_leases (
    webhook_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    pid BIGINT NOT NULL,
    host TEXT NOT NULL,
    fence BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
";

/// Version 2: a message may be queued again (`deliveries resend`, `recover`), so a request's
/// `msg_id` (its `webhook-id`) is no longer unique, and `resend_of` names the row a request
/// copies; each webhook's health and the operator's notifications get their tables.
pub(super) const VERSION_2: &str = "
ALTER TABLE sender_requests DROP CONSTRAINT sender_requests_msg_id_key;
ALTER TABLE sender_requests ADD COLUMN resend_of BIGINT;
CREATE INDEX sender_requests_by_msg ON sender_requests (msg_id);
CREATE INDEX sender_requests_by_webhook ON sender_requests (webhook_id, id);
CREATE TABLE sender_webhook_health (
    webhook_id TEXT PRIMARY KEY,
    consecutive_failures BIGINT NOT NULL,
    state TEXT NOT NULL,
    since_ms BIGINT NOT NULL
);
CREATE TABLE sender_notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_at_ms BIGINT
);
CREATE INDEX sender_notifications_pending ON sender_notifications (id) WHERE state = 'pending';
";

/// Creates the tables unless they exist, or brings them to the latest version, under an
/// advisory lock (see [`LAYOUT`]); refuses tables of our names that carry no layout version,
/// or one this build did not write.
pub(super) async fn create_schema(
    client: &mut deadpool_postgres::Object,
    trips: &AtomicU64,
) -> anyhow::Result<()> {
    let prepared = postgres_schema::prepare(client, &LAYOUT).await?;
    trips.fetch_add(prepared.round_trips, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::PostgresState;
    use crate::store::{DeliveryFilter, Queue as _, Recovery as _, Registry as _};

    /// The key record the builds of versions 1 and 2 made at every opening, outside the steps.
    const KEY_RECORD_OF_VERSIONS_1_AND_2: &str = "CREATE TABLE IF NOT EXISTS sender_secret_key (
        id BIGINT PRIMARY KEY CHECK (id = 1), key_check TEXT NOT NULL);";

    /// Brings `client`'s database to `version` as that build left it: its steps, and the key
    /// record the builds of versions 1 and 2 made outside them.
    async fn prepare_version(client: &mut tokio_postgres::Client, version: usize) {
        let layout = Layout {
            steps: &LAYOUT.steps[..version],
            ..LAYOUT
        };
        postgres_schema::prepare(client, &layout)
            .await
            .unwrap_or_else(|error| panic!("version {version}: {error:#}"));
        client
            .batch_execute(KEY_RECORD_OF_VERSIONS_1_AND_2)
            .await
            .expect("key record");
    }

    #[test]
    fn a_database_of_version_1_is_brought_up_in_place_and_keeps_its_rows() {
        let Some(url) = common::test_postgres::test_database("sender_version_1_brought_up") else {
            return;
        };
        let parsed = common::postgres::DatabaseUrl::parse(&url).expect("test URL");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            // The database as today's sender leaves it: version 1 and some rows.
            let pool = parsed.pool("sender-schema-test", 2).expect("pool");
            let mut client = pool.get().await.expect("connect");
            prepare_version(&mut client, 1).await;
            client
                .batch_execute(
                    "INSERT INTO sender_webhooks (id, name, description, url, events, auth, status,
                         created_at_ms, updated_at_ms)
                     VALUES ('wh_old', 'Old', '', 'http://127.0.0.1:9/hook', 'all', 'none', 'active', 1, 1);
                     INSERT INTO sender_requests (msg_id, webhook_id, account_id, event_names,
                         event_count, created_at_ms, state, attempts, next_attempt_at_ms,
                         last_status, finished_at_ms)
                     VALUES ('msg_delivered', 'wh_old', 1010, 'COURSE_ENROLLMENT', 1, 10, 'delivered', 1, 10, 200, 11),
                            ('msg_pending', 'wh_old', 1010, 'COURSE_ENROLLMENT', 1, 20, 'pending', 0, 20, NULL, NULL);
                     INSERT INTO sender_request_bodies (request_id, body, event_ids)
                     SELECT id, convert_to('{\"accountId\":1010,\"events\":[]}', 'UTF8'), '[\"e1\"]'
                     FROM sender_requests;
                     INSERT INTO sender_attempts (request_id, attempt, started_at_ms, status, latency_ms, response_head)
                     SELECT id, 1, 10, 200, 1, 'ok' FROM sender_requests WHERE msg_id = 'msg_delivered';",
                )
                .await
                .expect("rows");
        });
        let state = PostgresState::open(&parsed).expect("opened and brought up");
        let listed = state
            .deliveries(&DeliveryFilter {
                limit: 10,
                ..DeliveryFilter::default()
            })
            .expect("list");
        let rows: Vec<(&str, &str)> = listed
            .iter()
            .map(|r| (r.id.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            rows,
            [("msg_pending", "pending"), ("msg_delivered", "delivered")]
        );
        let detail = state
            .delivery("msg_delivered")
            .expect("read")
            .expect("kept");
        assert_eq!(detail.attempt_log.len(), 1);
        // The message may be queued again now: its id is no longer unique.
        let resent = state
            .resend("msg_delivered", 50)
            .expect("resend")
            .expect("found");
        assert!(resent.row > listed[0].row, "{resent:?}");
        assert_eq!(state.counts(None).expect("counts").pending, 2);
        runtime.block_on(async {
            let pool = parsed.pool("sender-schema-test", 1).expect("pool");
            let client = pool.get().await.expect("connect");
            let versions: Vec<i64> = client
                .query("SELECT version FROM sender_schema ORDER BY version", &[])
                .await
                .expect("versions")
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert_eq!(versions, [1, 2, 3]);
        });
        let webhook = state.webhooks().expect("webhooks").remove(0);
        assert_eq!(
            webhook.target_policy,
            common::target_guard::TargetPolicy::AnyAddress
        );
    }

    #[test]
    fn a_database_of_version_2_is_brought_up_in_place_and_keeps_its_rows() {
        let Some(url) = common::test_postgres::test_database("sender_version_2_brought_up") else {
            return;
        };
        let parsed = common::postgres::DatabaseUrl::parse(&url).expect("test URL");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            // The database as the build of version 2 leaves it: its steps, its key record
            // (made outside the steps) and rows of every kind, a request queued again among
            // them.
            let pool = parsed.pool("sender-schema-test", 2).expect("pool");
            let mut client = pool.get().await.expect("connect");
            prepare_version(&mut client, 2).await;
            client
                .batch_execute(
                    "INSERT INTO sender_webhooks (id, name, description, url, events, auth,
                         basic_username, basic_password, status, created_at_ms, updated_at_ms)
                     VALUES ('wh_v2', 'CRM', '', 'http://127.0.0.1:9/hook', 'all', 'basic', 'crm',
                         'plain password', 'active', 1, 2);
                     INSERT INTO sender_requests (msg_id, webhook_id, account_id, event_names,
                         event_count, created_at_ms, state, attempts, next_attempt_at_ms,
                         last_status, finished_at_ms)
                     VALUES ('msg_a', 'wh_v2', 1010, 'COURSE_ENROLLMENT', 1, 10, 'delivered', 1, 10, 200, 11);
                     INSERT INTO sender_requests (msg_id, webhook_id, account_id, event_names,
                         event_count, created_at_ms, state, next_attempt_at_ms, resend_of)
                     SELECT msg_id, webhook_id, account_id, event_names, event_count, 20,
                         'pending', 20, id FROM sender_requests WHERE msg_id = 'msg_a';
                     INSERT INTO sender_request_bodies (request_id, body, event_ids)
                     SELECT id, convert_to('{}', 'UTF8'), '[\"e1\"]' FROM sender_requests;
                     INSERT INTO sender_webhook_health (webhook_id, consecutive_failures, state, since_ms)
                     VALUES ('wh_v2', 5, 'failing', 15);
                     INSERT INTO sender_notifications (msg_id, webhook_id, kind, body,
                         created_at_ms, state, next_attempt_at_ms)
                     VALUES ('msg_note', 'wh_v2', 'webhook.failing', convert_to('{}', 'UTF8'),
                         15, 'pending', 15);",
                )
                .await
                .expect("rows of version 2");
        });
        let state = PostgresState::open(&parsed).expect("opened and brought up");
        let webhook = state.webhooks().expect("webhooks").remove(0);
        assert_eq!(
            (
                webhook.id.as_str(),
                webhook.url.as_str(),
                webhook.target_policy
            ),
            (
                "wh_v2",
                "http://127.0.0.1:9/hook",
                common::target_guard::TargetPolicy::AnyAddress
            )
        );
        let rows: Vec<(String, bool)> = state
            .deliveries(&DeliveryFilter {
                limit: 10,
                ..DeliveryFilter::default()
            })
            .expect("list")
            .into_iter()
            .map(|row| (row.id, row.resend_of.is_some()))
            .collect();
        assert_eq!(
            rows,
            [("msg_a".to_owned(), true), ("msg_a".to_owned(), false)]
        );
        runtime.block_on(async {
            let pool = parsed.pool("sender-schema-test", 1).expect("pool");
            let client = pool.get().await.expect("connect");
            let versions: Vec<i64> = client
                .query("SELECT version FROM sender_schema ORDER BY version", &[])
                .await
                .expect("versions")
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert_eq!(versions, [1, 2, 3]);
            let kept: (i64, String, i64) = client
                .query_one(
                    "SELECT consecutive_failures, state,
                         (SELECT count(*) FROM sender_notifications)
                     FROM sender_webhook_health WHERE webhook_id = 'wh_v2'",
                    &[],
                )
                .await
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .expect("health and notifications");
            assert_eq!(kept, (5, "failing".to_owned(), 1));
        });
    }
}
