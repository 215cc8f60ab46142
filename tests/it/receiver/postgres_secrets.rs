//! The database password never shows (SPEC section 7): not in the logs of a receiver that
//! works or one that cannot log in, not in its answers, not in the errors of `events` and
//! `export`, even with every log level on.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};

use http::StatusCode;

use crate::support::receiver::{binary, envelope, get, post, run_cli};

const WRONG_PASSWORD: &str = "Wr0ng-s3cret-pw";

/// Runs `receiver listen` on `store` with debug logs, posts one event, and returns the answer's
/// status and body, the health status, and everything it printed.
async fn listen_once(store: &str) -> (StatusCode, String, StatusCode, String) {
    let mut child = Command::new(binary())
        .args(["listen", "--listen", "127.0.0.1:0", "--output", "json"])
        .env("RECEIVER_STORE", store)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn receiver");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    let addr: std::net::SocketAddr = first
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let reply = post(addr, "/webhook", &[], envelope(1, &["secret-test"])).await;
    let health = get(addr, "/healthz").await.status;
    let _ = child.kill();
    let _ = child.wait();
    let mut printed = first;
    stdout.read_to_string(&mut printed).expect("stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut printed)
        .expect("stderr");
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
        health,
        printed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_never_shows() {
    let Some(url) = common::test_postgres::test_database("the_database_password_never_shows")
    else {
        return;
    };
    let password = common::test_postgres::SUPERUSER_PASSWORD;
    assert!(url.contains(password), "the test URL carries the password");
    let wrong = url.replace(password, WRONG_PASSWORD);

    // A receiver that works, with debug logs.
    let (status, body, health, printed) = listen_once(&url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(health, StatusCode::OK);
    assert!(!printed.contains(password), "{printed}");

    // One that cannot log in: 503, and the logs say why without the password.
    let (status, body, health, printed) = listen_once(&wrong).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(health, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains(WRONG_PASSWORD));
    assert!(
        printed.contains("password authentication failed"),
        "{printed}"
    );
    assert!(!printed.contains(WRONG_PASSWORD), "{printed}");

    // The reading commands: a clear error, exit 2, no password.
    for args in [
        &["events", "count", "--store", wrong.as_str()][..],
        &["export", "--store", wrong.as_str()][..],
        &[
            "events",
            "list",
            "--store",
            "postgres://crm:Wr0ng-s3cret-pw@127.0.0.1:1/x",
        ][..],
    ] {
        let (code, stdout, stderr) = run_cli(args, &[("RUST_LOG", "debug")]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("error: opening the store postgres://"),
            "{stderr}"
        );
        assert!(stderr.contains(":***@"), "{stderr}");
        assert!(!stderr.contains(WRONG_PASSWORD) && !stdout.contains(WRONG_PASSWORD));
    }
}
