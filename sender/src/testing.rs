//! What the sender's unit tests share: a state on each store ([`Harness`], for
//! `common::on_each_store!`) and the instant they call now.

use std::path::PathBuf;
use std::sync::Arc;

use crate::manage::WebhookChanges;
use crate::registry::Webhook;
use crate::store::postgres::PostgresState;
use crate::store::sqlite::SqliteState;
use crate::store::{Lease, LeaseToken, State};

/// The tests' now: 2026-11-28T00:00:00Z.
pub(crate) const NOW_MS: i64 = 1_795_824_000_000;

/// A state on one store, with the helpers the tests share.
pub(crate) struct Harness {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) state: Arc<dyn State>,
}

impl Harness {
    /// A fresh SQLite state file.
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("sender.db");
        let state = Arc::new(SqliteState::open(&path).expect("open"));
        Self { _dir: dir, state }
    }

    /// A fresh PostgreSQL database, or `None` (after a loud SKIPPED line) without PostgreSQL.
    pub(crate) fn postgres(what: &str) -> Option<Self> {
        let url = common::test_postgres::test_database(what)?;
        let url = common::postgres::DatabaseUrl::parse(&url).expect("test URL");
        let state = Arc::new(PostgresState::open(&url).expect("open"));
        Some(Self {
            _dir: tempfile::tempdir().expect("temp dir"),
            state,
        })
    }

    /// Takes the lease of `webhook` for `owner` at `at_ms` for a minute.
    pub(crate) fn lease(&self, webhook: &Webhook, owner: &str, at_ms: i64) -> Lease {
        self.state
            .try_lease(&webhook.id, owner, at_ms, 60_000)
            .expect("lease")
    }

    /// The token of a lease `lease` says was taken.
    pub(crate) fn token(webhook: &Webhook, lease: &Lease) -> LeaseToken {
        lease
            .clone()
            .token(&webhook.id)
            .unwrap_or_else(|held| panic!("not acquired: held by {held:?}"))
    }

    pub(crate) fn add(&self, url: &str, events: &str) -> Webhook {
        let webhook = WebhookChanges {
            name: Some("paused".into()),
            url: Some(url.parse().expect("a Target URL")),
            events: Some(events.into()),
            ..WebhookChanges::default()
        }
        .create(NOW_MS)
        .expect("valid");
        self.state.insert_webhook(&webhook).expect("insert");
        webhook
    }

    /// Queues `count` distinct events of `name` (generator `seed`, account 1010) for `webhook`
    /// at `NOW_MS`, and gives them.
    pub(crate) fn enqueue(
        &self,
        webhook: &Webhook,
        name: &str,
        count: usize,
        seed: u64,
    ) -> Vec<verify::OutgoingEvent> {
        let kind = verify::lookup(name).expect("kind");
        let mut generator = verify::EventGenerator::new(seed);
        let events: Vec<_> = (0..count).map(|_| generator.event(kind, NOW_MS)).collect();
        let deliveries = crate::generate::route(&events, 1010, kind, std::slice::from_ref(webhook));
        self.state.enqueue(&deliveries, NOW_MS).expect("enqueue");
        events
    }
}
