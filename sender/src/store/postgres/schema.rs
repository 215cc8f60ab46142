//! The tables: created on first use under an advisory lock, with a layout version; tables of
//! our names that are not ours (or of another version) are refused.

use std::sync::atomic::{AtomicU64, Ordering};

use common::postgres_schema::{self, Layout, Step};

/// The sender's tables and how a database gets them (`common::postgres_schema`): the steps in
/// order, each bringing the tables to its version (recorded in `sender_schema`). Version 1 is
/// the whole layout of [`SCHEMA`]; version 2 ([`VERSION_2`]) the key record and the rule a
/// webhook's Target URL was given under. A database at the latest version is opened without
/// a statement that changes its layout, so a role that may only read and write rows (no
/// CREATE on the schema) runs the sender. A change of layout is a step appended here.
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

/// Version 2: the key record (see `crate::sealing`), which the build before the versions of
/// this table made at every opening (hence `IF NOT EXISTS`: a database of version 1 may have
/// it), and whether a webhook's deliveries may reach internal addresses (see
/// `registry::Webhook::target_policy`).
const VERSION_2: &str = "
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

    use common::postgres::DatabaseUrl;

    use crate::registry::WebhookId;
    use crate::store::postgres::PostgresState;
    use crate::store::Registry as _;

    /// The layout the sender before the steps of version 2 prepared, and its key record,
    /// which it made at every opening.
    const TODAY: Layout = Layout {
        program: "sender",
        lock: SCHEMA_LOCK,
        version_table: "sender_schema",
        steps: &[Step {
            version: 1,
            sql: SCHEMA,
            creates: TABLES,
        }],
    };
    const TODAY_KEY_RECORD: &str = "CREATE TABLE IF NOT EXISTS sender_secret_key (
        id BIGINT PRIMARY KEY CHECK (id = 1), key_check TEXT NOT NULL)";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_of_version_1_is_brought_to_version_2_and_keeps_its_rows() {
        let Some(location) = common::test_postgres::test_database("sender layout upgrade") else {
            return;
        };
        let url = DatabaseUrl::parse(&location).expect("test URL");
        let pool = url.pool("sender-layout-test", 2).expect("pool");
        let mut client = pool.get().await.expect("connect");
        postgres_schema::prepare(&mut client, &TODAY)
            .await
            .expect("today's layout");
        client
            .batch_execute(&format!(
                "{TODAY_KEY_RECORD};
                 INSERT INTO sender_webhooks VALUES ('wh_kept', 'CRM', '', 'http://127.0.0.1:9/hook',
                     'all', 'none', NULL, NULL, NULL, 'active', NULL, 1, 2);
                 INSERT INTO sender_requests (msg_id, webhook_id, account_id, event_names,
                     event_count, created_at_ms, state, next_attempt_at_ms)
                     VALUES ('msg_kept', 'wh_kept', 1010, 'COURSE_ENROLLMENT', 1, 1, 'pending', 1);"
            ))
            .await
            .expect("rows of today's layout");
        drop(client);

        let state = tokio::task::spawn_blocking(move || PostgresState::open(&url))
            .await
            .expect("joined")
            .expect("opened and brought up");
        let client = pool.get().await.expect("connect");
        let versions: Vec<i64> = client
            .query("SELECT version FROM sender_schema ORDER BY version", &[])
            .await
            .expect("versions")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, [1, 2]);
        let state = std::sync::Arc::new(state);
        let read = state.clone();
        let webhook =
            tokio::task::spawn_blocking(move || read.webhook(&WebhookId("wh_kept".into())))
                .await
                .expect("joined")
                .expect("read")
                .expect("kept");
        assert_eq!(webhook.url.as_str(), "http://127.0.0.1:9/hook");
        assert_eq!(
            webhook.target_policy,
            common::target_guard::TargetPolicy::AnyAddress
        );
        let pending: i64 = client
            .query_one(
                "SELECT count(*) FROM sender_requests WHERE msg_id = 'msg_kept'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(pending, 1);
    }
}
