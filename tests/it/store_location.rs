//! `receiver --store` and `sender --state` read one text the same way (`common::store_location`):
//! `sqlite://NAME` is the file NAME in the working directory for both programs, as
//! `sqlite:NAME` is, and `sqlite:///PATH` is the absolute PATH.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// `PROGRAM ARGS` run in `directory`.
fn run_in(directory: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .current_dir(directory)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SENDER_STATE")
        .env_remove("RECEIVER_STORE")
        .output()
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn sqlite_double_slash_names_a_file_in_the_working_directory_for_both_programs() {
    let directory = tempfile::tempdir().unwrap();
    // A name no other test uses: were it read from the root of the disk, it would not be
    // found in the directory below.
    let name = format!("state-{}.db", std::process::id());

    succeeded(&run_in(
        directory.path(),
        SENDER,
        &["--state", &format!("sqlite://{name}"), "webhooks", "list"],
    ));
    assert!(
        directory.path().join(&name).is_file(),
        "sender --state sqlite://{name} made no ./{name}"
    );
    // The absolute form reaches the same file from anywhere.
    let absolute = format!("sqlite://{}", directory.path().join(&name).display());
    assert!(absolute.starts_with("sqlite:///"));
    succeeded(&run_in(
        Path::new("/"),
        SENDER,
        &["--state", &absolute, "webhooks", "list"],
    ));

    // A receiver store made at ./receiver.db is read through `sqlite://receiver.db`.
    let store = directory.path().join("receiver.db");
    let metrics = Arc::new(receiver::metrics::Metrics::default());
    drop(
        receiver::store::sqlite::SqliteStore::open(&store, 10, Default::default(), metrics)
            .unwrap(),
    );
    let count = succeeded(&run_in(
        directory.path(),
        crate::support::receiver::binary(),
        &["--store", "sqlite://receiver.db", "events", "count"],
    ));
    assert_eq!(count.trim(), "0");
    let absolute = format!("sqlite://{}", store.display());
    let count = succeeded(&run_in(
        Path::new("/"),
        crate::support::receiver::binary(),
        &["--store", &absolute, "events", "count"],
    ));
    assert_eq!(count.trim(), "0");
}

#[test]
fn an_unknown_scheme_is_refused_by_both_programs_without_creating_a_file() {
    let directory = tempfile::tempdir().unwrap();
    for (program, flag, words) in [
        (SENDER, "--state", &["webhooks", "list"][..]),
        (
            crate::support::receiver::binary(),
            "--store",
            &["events", "count"][..],
        ),
    ] {
        let mut args = vec![flag, "sqlit:./x.db"];
        args.extend_from_slice(words);
        let refused = run_in(directory.path(), program, &args);
        assert_eq!(refused.status.code(), Some(2), "{program}");
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(
            message.contains(flag) && message.contains("unsupported store \"sqlit\""),
            "{program}: {message}"
        );
    }
    assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);
}
