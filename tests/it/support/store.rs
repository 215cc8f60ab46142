//! The stores a receiver suite runs on. A test of such a suite is one async function taking
//! a [`TestStore`]; [`for_each_store!`] calls it once on a SQLite file and once on a fresh
//! PostgreSQL database, so each promise is written once and checked on both stores. Without
//! PostgreSQL the second call says SKIPPED loudly (and fails under `CI=true`).
//!
//! Assertions read the tables with SQL in which `{events}`, `{requests}`, `{refused}`,
//! `{forward_jobs}` and `{dedupe_keys}` stand for the store's table names.

use std::path::Path;
use std::time::Duration;

use common::store_location::StoreLocation;

/// The two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A store for one test: a SQLite file in a temporary directory, or a fresh PostgreSQL
/// database (the directory is then for other files of the test).
pub struct TestStore {
    /// Which store.
    pub kind: StoreKind,
    dir: tempfile::TempDir,
    location: StoreLocation,
    /// The PostgreSQL URL with its password (test-only).
    url: Option<String>,
}

impl TestStore {
    /// A SQLite store in a new temporary directory.
    pub fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("temporary directory");
        let location = StoreLocation::Sqlite(dir.path().join("receiver.db"));
        TestStore {
            kind: StoreKind::Sqlite,
            dir,
            location,
            url: None,
        }
    }

    /// A SQLite store at `path` (on a file system of the test's choosing).
    pub fn sqlite_at(path: &Path) -> TestStore {
        TestStore {
            kind: StoreKind::Sqlite,
            dir: tempfile::tempdir().expect("temporary directory"),
            location: StoreLocation::Sqlite(path.to_owned()),
            url: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (after a loud SKIPPED) without PostgreSQL.
    pub fn postgres(what: &str) -> Option<TestStore> {
        common::test_postgres::test_database(what).map(|url| TestStore::at_url(&url))
    }

    /// The PostgreSQL database at `url` (for example on a cluster of the test's own).
    pub fn at_url(url: &str) -> TestStore {
        let parsed = common::postgres::DatabaseUrl::parse(url).expect("test database URL");
        TestStore {
            kind: StoreKind::Postgres,
            dir: tempfile::tempdir().expect("temporary directory"),
            location: parsed.into(),
            url: Some(url.to_owned()),
        }
    }

    /// The store of `kind` for the test `what`; `None` when PostgreSQL is skipped.
    pub fn of(kind: StoreKind, what: &str) -> Option<TestStore> {
        match kind {
            StoreKind::Sqlite => Some(TestStore::sqlite()),
            StoreKind::Postgres => TestStore::postgres(what),
        }
    }

    /// A directory the test may use.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the receiver stores.
    pub fn location(&self) -> StoreLocation {
        self.location.clone()
    }

    /// A quiet receiver configuration on this store.
    pub fn config(&self) -> receiver::Config {
        receiver::Config::for_tests(self.location())
    }

    /// The `--store` value for the command line (with the password: test-only).
    pub fn store_arg(&self) -> String {
        match (&self.location, &self.url) {
            (_, Some(url)) => url.clone(),
            (StoreLocation::Sqlite(path), None) => format!("sqlite:{}", path.display()),
            (StoreLocation::Postgres(url), None) => url.to_string(),
        }
    }

    /// `sql` with the table placeholders replaced by this store's names.
    fn sql(&self, sql: &str) -> String {
        let names: [(&str, &str); 5] = match self.kind {
            StoreKind::Sqlite => [
                ("{events}", "events"),
                ("{requests}", "requests"),
                ("{refused}", "refused_requests"),
                ("{forward_jobs}", "forward_jobs"),
                ("{dedupe_keys}", "dedupe_keys"),
            ],
            StoreKind::Postgres => [
                ("{events}", "receiver_events"),
                ("{requests}", "receiver_requests"),
                ("{refused}", "receiver_refused_requests"),
                ("{forward_jobs}", "receiver_forward_jobs"),
                ("{dedupe_keys}", "receiver_dedupe_keys"),
            ],
        };
        names
            .iter()
            .fold(sql.to_owned(), |sql, (from, to)| sql.replace(from, to))
    }

    /// Runs `sql` (a statement that changes rows, such as backdating them) on this store.
    pub async fn execute(&self, sql: &str) {
        let sql = self.sql(sql);
        match &self.location {
            StoreLocation::Sqlite(path) => {
                crate::support::receiver::open_db(path)
                    .execute_batch(&sql)
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
            }
            StoreLocation::Postgres(_) => {
                self.client()
                    .await
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|error| panic!("{sql}: {error}"));
            }
        }
    }

    /// A connection to the PostgreSQL database (over TLS when its URL says so).
    async fn client(&self) -> tokio_postgres::Client {
        let StoreLocation::Postgres(url) = &self.location else {
            panic!("not a PostgreSQL store");
        };
        let tls = url.tls_connector().expect("TLS settings");
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(15), url.config().connect(tls))
                .await
                .expect("connect in time")
                .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// The first column of the first row of `sql` (`None` without a row, or on NULL), read
    /// from whichever store this is.
    async fn first<T>(&self, sql: &str) -> Option<T>
    where
        T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>,
    {
        let sql = self.sql(sql);
        match &self.location {
            StoreLocation::Sqlite(path) => crate::support::receiver::open_db(path)
                .query_row(&sql, [], |row| row.get::<_, Option<T>>(0))
                .ok()
                .flatten(),
            StoreLocation::Postgres(_) => self
                .client()
                .await
                .query_opt(&sql, &[])
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}"))
                .and_then(|row| row.get::<_, Option<T>>(0)),
        }
    }

    /// Runs `sql` (several statements; table placeholders replaced) on whichever store this
    /// is, to build a store as an older layout made it.
    pub async fn run(&self, sql: &str) {
        let sql = self.sql(sql);
        match &self.location {
            StoreLocation::Sqlite(path) => crate::support::receiver::open_db(path)
                .execute_batch(&sql)
                .unwrap_or_else(|error| panic!("{sql}: {error}")),
            StoreLocation::Postgres(_) => self
                .client()
                .await
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}")),
        }
    }

    /// The first column of the first row of `sql` as an integer (`COUNT(*)` and the like).
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.first(sql)
            .await
            .unwrap_or_else(|| panic!("{sql} gave no number"))
    }

    /// The first column of the first row of `sql` as text, `None` without a row or on NULL.
    pub async fn text(&self, sql: &str) -> Option<String> {
        self.first(sql).await
    }

    /// The first column of the first row of `sql` as bytes, `None` without a row.
    pub async fn bytes(&self, sql: &str) -> Option<Vec<u8>> {
        self.first(sql).await
    }
}

/// Runs each named `async fn(TestStore)` of the current module once per store, as the tests
/// `NAME::sqlite` and `NAME::postgres`.
macro_rules! for_each_store {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use $crate::support::store::{StoreKind, TestStore};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(store) = TestStore::of(StoreKind::Sqlite, stringify!($test)) {
                        super::$test(store).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(store) = TestStore::of(StoreKind::Postgres, stringify!($test)) {
                        super::$test(store).await;
                    }
                }
            }
        )*
    };
}
pub(crate) use for_each_store;
