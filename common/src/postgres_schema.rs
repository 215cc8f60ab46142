//! Preparing a program's tables in a PostgreSQL database it may share with others (SPEC
//! section 7), written once for the receiver and the sender.
//!
//! A program describes its tables as a [`Layout`]: a name prefix of its own
//! (`receiver_…`, `sender_…`), a version table, and an ordered list of [`Step`]s, each of
//! which brings the tables from the version before it to its own version. [`prepare`] runs,
//! in ONE transaction under the program's advisory lock (so processes starting together do
//! the work once, and the others wait and then find it done):
//!
//! 1. a look at which of the program's tables exist (as the program's statements will see
//!    them: through the `search_path`, any kind of relation);
//! 2. none: a new database, every step is applied in order; some but no version row, or not
//!    all the tables the recorded version has: another program's tables, refused and left
//!    untouched; a version that no step of this build has written (a newer program, or one
//!    from before the steps began): refused, naming both versions;
//! 3. else the steps after the recorded version, in order, each recording its version as a
//!    new row of the version table (so the table is also the history of upgrades).
//!
//! A database at the latest version gets no statement that changes its layout (a look at the
//! tables and at the version only), so a role without CREATE on the schema, which may only
//! read and write rows, runs a program whose tables an owner prepared. A step that fails
//! rolls the whole transaction back: the database stays at the version it had, and the next
//! start tries again.

use anyhow::Context as _;

/// One step of a layout: the statements that bring the tables from the previous step's
/// version to `version`. The first step creates the tables of a new database.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The version the tables have after this step; steps go up.
    pub version: i64,
    /// The statements (several, separated by `;`), run in the preparing transaction.
    pub sql: &'static str,
    /// The tables this step creates (the version table among those of the first step): a
    /// database at this version or later must have them all.
    pub creates: &'static [&'static str],
}

/// A program's tables and how to bring a database to their latest version.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// `receiver` or `sender`: named in messages.
    pub program: &'static str,
    /// The advisory lock key held while preparing (one 64-bit space per database, shared
    /// with other programs: a fixed random-looking number).
    pub lock: i64,
    /// The table whose rows record the versions applied (`version` column, any integer type).
    pub version_table: &'static str,
    /// The steps, in order of version.
    pub steps: &'static [Step],
}

impl Layout {
    /// The latest version: the last step's.
    pub fn version(&self) -> i64 {
        self.steps.last().map_or(0, |step| step.version)
    }

    /// Refuses a layout that [`prepare`] cannot follow: no step, steps that do not go up, or
    /// a first step that does not create the version table.
    fn check(&self) -> anyhow::Result<()> {
        let first = self
            .steps
            .first()
            .with_context(|| format!("the {} layout has no step", self.program))?;
        anyhow::ensure!(
            first.creates.contains(&self.version_table),
            "the first step of the {} layout does not create {}",
            self.program,
            self.version_table
        );
        anyhow::ensure!(
            self.steps
                .windows(2)
                .all(|pair| pair[0].version < pair[1].version)
                && first.version > 0,
            "the steps of the {} layout do not go up from 1",
            self.program
        );
        Ok(())
    }

    /// Every table of the layout: a database holding any of them is not new.
    fn all_tables(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .flat_map(|step| step.creates.iter())
            .copied()
            .collect()
    }

    /// The tables a database at `version` has.
    fn tables_at(&self, version: i64) -> impl Iterator<Item = &'static str> + '_ {
        self.steps
            .iter()
            .take_while(move |step| step.version <= version)
            .flat_map(|step| step.creates.iter().copied())
    }
}

/// What [`prepare`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The version the database had: 0 for a new one.
    pub found: i64,
    /// The version it has now (the layout's latest).
    pub version: i64,
    /// Statements sent to the server, for callers that count round trips.
    pub round_trips: u64,
}

/// Creates or upgrades the tables of `layout`, or refuses a database they cannot go in.
///
/// # Errors
/// The database cannot be reached or refuses a statement (nothing is changed then); it holds
/// tables of the layout's names that the program did not create; or its tables are of a
/// version no step of this build wrote.
pub async fn prepare(
    client: &mut tokio_postgres::Client,
    layout: &Layout,
) -> anyhow::Result<Prepared> {
    layout.check()?;
    let program = layout.program;
    let latest = layout.version();
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&layout.lock])
        .await?;
    let names = layout.all_tables();
    let present: Vec<String> = transaction
        .query(
            "SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL",
            &[&names],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut round_trips = 2;
    let found = if present.is_empty() {
        0
    } else {
        let version: Option<i64> = if present.iter().any(|name| name == layout.version_table) {
            round_trips += 1;
            transaction
                .query_one(
                    &format!("SELECT MAX(version)::bigint FROM {}", layout.version_table),
                    &[],
                )
                .await?
                .get(0)
        } else {
            None
        };
        let known = |version: i64| layout.steps.iter().any(|step| step.version == version);
        let complete = |version: i64| {
            layout
                .tables_at(version)
                .all(|table| present.iter().any(|name| name == table))
        };
        match version {
            Some(version) if !known(version) => anyhow::bail!(
                "the database holds {program} tables of version {version}, this {program} \
                 reads version {latest}: use another database (or schema), or the {program} \
                 that wrote them"
            ),
            Some(version) if complete(version) => version,
            _ => anyhow::bail!(
                "the database holds tables named like the {program}'s ({}) that it did not \
                 create (no complete set with a {} row); they are left untouched: use another \
                 database or schema",
                present.join(", "),
                layout.version_table
            ),
        }
    };
    for step in layout.steps.iter().filter(|step| step.version > found) {
        transaction.batch_execute(step.sql).await.with_context(|| {
            format!("bringing the {program} tables to version {}", step.version)
        })?;
        transaction
            .execute(
                &format!(
                    "INSERT INTO {} (version) VALUES ($1::bigint)",
                    layout.version_table
                ),
                &[&step.version],
            )
            .await?;
        round_trips += 2;
    }
    transaction.commit().await?;
    Ok(Prepared {
        found,
        version: latest,
        round_trips,
    })
}

/// The version the layout's tables have, for a program that only reads them: `None` when
/// there is no version table (no tables yet), 0 when it holds no row.
///
/// # Errors
/// The database cannot be read.
pub async fn stored_version(
    client: &tokio_postgres::Client,
    layout: &Layout,
) -> anyhow::Result<Option<i64>> {
    let versioned: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&layout.version_table],
        )
        .await?
        .get(0);
    if !versioned {
        return Ok(None);
    }
    let version: Option<i64> = client
        .query_one(
            &format!("SELECT MAX(version)::bigint FROM {}", layout.version_table),
            &[],
        )
        .await?
        .get(0);
    Ok(Some(version.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::postgres::DatabaseUrl;

    const VERSION_1: Step = Step {
        version: 1,
        sql: "CREATE TABLE demo_schema (version integer NOT NULL);
              CREATE TABLE demo_items (id bigint PRIMARY KEY);",
        creates: &["demo_schema", "demo_items"],
    };
    const VERSION_2: Step = Step {
        version: 2,
        sql: "ALTER TABLE demo_items ADD COLUMN name text NOT NULL DEFAULT '';
              CREATE TABLE demo_tags (item bigint NOT NULL, tag text NOT NULL);",
        creates: &["demo_tags"],
    };

    fn layout(steps: &'static [Step]) -> Layout {
        Layout {
            program: "demo",
            lock: 0x6465_6d6f_0000_0001,
            version_table: "demo_schema",
            steps,
        }
    }

    /// A pool on a fresh database, or `None` where PostgreSQL is missing (skipped loudly).
    fn database(what: &str) -> Option<deadpool_postgres::Pool> {
        let url = crate::test_postgres::test_database(what)?;
        let url = DatabaseUrl::parse(&url).expect("test URL");
        Some(url.pool("common-schema-test", 4).expect("pool"))
    }

    async fn versions(pool: &deadpool_postgres::Pool) -> Vec<i64> {
        let client = pool.get().await.expect("connect");
        client
            .query(
                "SELECT version::bigint FROM demo_schema ORDER BY version",
                &[],
            )
            .await
            .expect("versions")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    async fn exists(pool: &deadpool_postgres::Pool, table: &str) -> bool {
        let client = pool.get().await.expect("connect");
        client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .expect("to_regclass")
            .get(0)
    }

    async fn prepare_on(
        pool: &deadpool_postgres::Pool,
        layout: &Layout,
    ) -> anyhow::Result<Prepared> {
        let mut client = pool.get().await?;
        prepare(&mut client, layout).await
    }

    #[test]
    fn a_layout_must_start_with_its_version_table_and_go_up() {
        const STEPS: &[Step] = &[VERSION_1, VERSION_2];
        assert!(layout(STEPS).check().is_ok());
        assert_eq!(layout(STEPS).version(), 2);
        assert!(layout(&[]).check().is_err());
        const DOWN: &[Step] = &[VERSION_2, VERSION_1];
        assert!(layout(DOWN).check().is_err());
        const NO_VERSION_TABLE: &[Step] = &[Step {
            version: 1,
            ..VERSION_2
        }];
        assert!(layout(NO_VERSION_TABLE).check().is_err());
    }

    #[tokio::test]
    async fn processes_starting_together_create_the_tables_once() {
        let Some(pool) = database("processes_starting_together_create_the_tables_once") else {
            return;
        };
        const STEPS: &[Step] = &[VERSION_1, VERSION_2];
        let layout = layout(STEPS);
        let (a, b, c) = tokio::join!(
            prepare_on(&pool, &layout),
            prepare_on(&pool, &layout),
            prepare_on(&pool, &layout)
        );
        let mut found: Vec<i64> = [a, b, c]
            .into_iter()
            .map(|prepared| {
                let prepared = prepared.expect("prepared");
                assert_eq!(prepared.version, 2);
                prepared.found
            })
            .collect();
        found.sort_unstable();
        assert_eq!(found, [0, 2, 2], "one created, the others found it done");
        assert_eq!(versions(&pool).await, [1, 2]);
        assert!(exists(&pool, "demo_tags").await);
        let client = pool.get().await.expect("connect");
        client
            .execute("INSERT INTO demo_items (id, name) VALUES (1, 'one')", &[])
            .await
            .expect("the step-2 column is there");
        assert_eq!(
            stored_version(&client, &layout).await.expect("read"),
            Some(2)
        );
    }

    #[tokio::test]
    async fn an_older_database_is_brought_up_step_by_step_and_keeps_its_rows() {
        let Some(pool) = database("an_older_database_is_brought_up_step_by_step") else {
            return;
        };
        const OLD: &[Step] = &[VERSION_1];
        const NEW: &[Step] = &[VERSION_1, VERSION_2];
        let prepared = prepare_on(&pool, &layout(OLD)).await.expect("v1");
        assert_eq!((prepared.found, prepared.version), (0, 1));
        let client = pool.get().await.expect("connect");
        client
            .execute("INSERT INTO demo_items (id) VALUES (7)", &[])
            .await
            .expect("insert");
        assert!(!exists(&pool, "demo_tags").await);

        let prepared = prepare_on(&pool, &layout(NEW)).await.expect("v1 to v2");
        assert_eq!((prepared.found, prepared.version), (1, 2));
        assert_eq!(versions(&pool).await, [1, 2]);
        assert!(exists(&pool, "demo_tags").await);
        let name: String = client
            .query_one("SELECT name FROM demo_items WHERE id = 7", &[])
            .await
            .expect("the row survived")
            .get(0);
        assert_eq!(name, "");

        // Prepared again: nothing left to do.
        let prepared = prepare_on(&pool, &layout(NEW)).await.expect("again");
        assert_eq!((prepared.found, prepared.version), (2, 2));
        assert_eq!(versions(&pool).await, [1, 2]);
    }

    #[tokio::test]
    async fn a_failing_step_leaves_the_database_at_its_version() {
        let Some(pool) = database("a_failing_step_leaves_the_database_at_its_version") else {
            return;
        };
        const OLD: &[Step] = &[VERSION_1];
        const BROKEN: &[Step] = &[
            VERSION_1,
            Step {
                version: 2,
                sql: "CREATE TABLE demo_tags (item bigint); SELECT no_such_function();",
                creates: &["demo_tags"],
            },
        ];
        prepare_on(&pool, &layout(OLD)).await.expect("v1");
        let error = prepare_on(&pool, &layout(BROKEN))
            .await
            .expect_err("step 2 fails");
        assert!(
            format!("{error:#}").contains("bringing the demo tables to version 2"),
            "{error:#}"
        );
        assert_eq!(versions(&pool).await, [1]);
        assert!(
            !exists(&pool, "demo_tags").await,
            "the failed step's first statement was rolled back"
        );
    }

    #[tokio::test]
    async fn a_version_this_build_did_not_write_is_refused() {
        let Some(pool) = database("a_version_this_build_did_not_write_is_refused") else {
            return;
        };
        const OLD: &[Step] = &[VERSION_1];
        const NEW: &[Step] = &[VERSION_1, VERSION_2];
        prepare_on(&pool, &layout(NEW)).await.expect("v2");
        let error = prepare_on(&pool, &layout(OLD))
            .await
            .expect_err("newer tables");
        let message = format!("{error:#}");
        assert!(
            message.contains("demo tables of version 2") && message.contains("reads version 1"),
            "{message}"
        );
        assert_eq!(versions(&pool).await, [1, 2], "nothing changed");
        // A newer layout may have dropped a table this build knows: the version still
        // explains the refusal.
        let client = pool.get().await.expect("connect");
        client
            .batch_execute("DROP TABLE demo_tags; ALTER TABLE demo_items RENAME TO demo_things")
            .await
            .expect("as a newer build might");
        let error = prepare_on(&pool, &layout(OLD))
            .await
            .expect_err("newer tables, fewer of them");
        assert!(
            format!("{error:#}").contains("demo tables of version 2"),
            "{error:#}"
        );

        // A version below the first step (a layout from before the steps began).
        const LATER_START: &[Step] = &[Step {
            version: 3,
            ..VERSION_1
        }];
        let error = prepare_on(&pool, &layout(LATER_START))
            .await
            .expect_err("version 2 is unknown to a build starting at 3");
        assert!(format!("{error:#}").contains("of version 2"), "{error:#}");
    }

    #[tokio::test]
    async fn tables_of_its_names_that_it_did_not_create_are_refused_and_left_alone() {
        let Some(pool) = database("tables_it_did_not_create_are_refused") else {
            return;
        };
        const STEPS: &[Step] = &[VERSION_1];
        let client = pool.get().await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE demo_items (id text); INSERT INTO demo_items VALUES ('theirs');",
            )
            .await
            .expect("someone else's table");
        let error = prepare_on(&pool, &layout(STEPS))
            .await
            .expect_err("not ours");
        let message = format!("{error:#}");
        assert!(
            message.contains("did not create") && message.contains("demo_items"),
            "{message}"
        );
        assert!(!exists(&pool, "demo_schema").await, "nothing created");
        let theirs: String = client
            .query_one("SELECT id FROM demo_items", &[])
            .await
            .expect("untouched")
            .get(0);
        assert_eq!(theirs, "theirs");

        // A version table without a row, or without the tables its version has, is not ours
        // either.
        client
            .batch_execute("CREATE TABLE demo_schema (version integer NOT NULL)")
            .await
            .expect("empty version table");
        let error = prepare_on(&pool, &layout(STEPS))
            .await
            .expect_err("no version row");
        assert!(format!("{error:#}").contains("did not create"), "{error:#}");
        client
            .batch_execute("DROP TABLE demo_items; INSERT INTO demo_schema VALUES (1)")
            .await
            .expect("a version without its tables");
        let error = prepare_on(&pool, &layout(STEPS))
            .await
            .expect_err("incomplete");
        assert!(format!("{error:#}").contains("did not create"), "{error:#}");
        assert_eq!(
            stored_version(&client, &layout(STEPS)).await.expect("read"),
            Some(1)
        );
    }
}
