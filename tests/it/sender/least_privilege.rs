//! The sender on PostgreSQL under a role that may only read and write rows (SELECT, INSERT,
//! UPDATE, DELETE on its tables; no CREATE on the schema), once an owner prepared the tables:
//! opening an up-to-date state runs no statement that changes the layout, so every command
//! works, secrets sealed at opening included.

use crate::support::endpoint::FakeEndpoint;

use super::{run_sender, sender_output};

/// What a role-only command line gets wrong when the sender runs DDL at opening.
const DDL_REFUSED: &str = "permission denied";

/// `location` (a superuser's URL of a test database) for `user:password` instead.
fn as_user(location: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = location.split_once("://").expect("a URL");
    let (_, host) = rest.rsplit_once('@').expect("credentials in the test URL");
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_only_read_and_write_rows_runs_the_sender() {
    let Some(owner) = common::test_postgres::test_database("sender under a rows-only role") else {
        return;
    };
    // The owner prepares the tables (any command does, on first use).
    run_sender(&owner, &["webhooks", "list"]).await;
    let (client, connection) = tokio_postgres::connect(&owner, tokio_postgres::NoTls)
        .await
        .expect("connect as the owner");
    tokio::spawn(connection);
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("database")
        .get(0);
    let role = format!("rows_{database}");
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'rows-only-password';
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             REVOKE ALL ON DATABASE {database} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role};
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await
        .expect("a rows-only role");
    let state = as_user(&owner, &role, "rows-only-password");
    let may_create: bool = client
        .query_one(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')",
            &[&role],
        )
        .await
        .expect("privilege")
        .get(0);
    assert!(!may_create, "the role may not create tables");

    let endpoint = FakeEndpoint::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("sender.key");
    let key_arg = key.display().to_string();
    let url = endpoint.url();
    for args in [
        vec!["webhooks", "list"],
        vec![
            "webhooks",
            "add",
            "--name",
            "CRM",
            "--url",
            &url,
            "--events",
            "COURSE_ENROLLMENT",
            "--auth",
            "basic",
            "--username",
            "crm",
            "--password",
            "rows-only-secret",
        ],
        vec!["secret-key", "generate", "--out", &key_arg],
        // The first command given the key seals what is plain, as it opens.
        vec!["--secret-key-file", &key_arg, "webhooks", "list"],
        vec![
            "--secret-key-file",
            &key_arg,
            "trigger",
            "COURSE_ENROLLMENT",
        ],
        vec!["--secret-key-file", &key_arg, "deliveries", "list"],
    ] {
        let state = state.clone();
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sender_output(&state, &args)
        })
        .await
        .expect("joined");
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(!stderr.contains(DDL_REFUSED), "{stderr}");
    }
    assert_eq!(endpoint.received().len(), 1, "delivered under the role");
    let sealed: String = client
        .query_one("SELECT basic_password FROM sender_webhooks", &[])
        .await
        .expect("row")
        .get(0);
    assert!(sealed.starts_with("sealed:v2:"), "sealed under the role");
}
