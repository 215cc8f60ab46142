//! `--allow-private-targets` as the real programs read it: the flag, its environment variable
//! (`SENDER_ALLOW_PRIVATE_TARGETS`, `RECEIVER_ALLOW_PRIVATE_TARGETS`, where `0` or `false`
//! mean no) and the configuration file's key reach the rule `sender admin` and the receiver's
//! inspector follow, which each says once bound (`common::target_guard::pages_rule`).
//!
//! Every process here binds 127.0.0.1 only, so the rule it reports for its own address is the
//! loopback one unless the flag was read: what the address alone implies beyond loopback is
//! unit-tested (`targets_for` in both command lines, `TargetPolicy::for_listener`).

use std::process::Command;
use std::time::Duration;

use crate::support::logged::Logged;

/// What a process bound to loopback logs with the flag read.
const ALLOWED: &str = "--allow-private-targets: targets may be internal addresses";
/// What it logs without.
const LOOPBACK: &str = "on loopback, reachable from this machine only";

const TOKEN: &str = "wiring-token-0123456789";

/// How a case gives the flag: on the command line, in the environment, in the config file.
#[derive(Debug, Clone, Copy)]
enum Given {
    Nothing,
    Flag,
    Environment(&'static str),
    ConfigFile,
}

/// Starts `program` with `args` and the flag given as `given`, waits for its first line and
/// for the rule it logs; gives the log.
async fn rule_logged(
    program: &str,
    args: &[&str],
    variable: &str,
    given: Given,
    first_line: &str,
) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, "allow-private-targets = true\n").expect("config");
    let mut command = Command::new(program);
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove(variable)
        .current_dir(dir.path());
    match given {
        Given::Nothing => {}
        Given::Flag => {
            command.arg("--allow-private-targets");
        }
        Given::Environment(value) => {
            command.env(variable, value);
        }
        Given::ConfigFile => {
            command.arg("--config").arg(&config);
        }
    }
    let mut process = Logged::spawn(&mut command);
    process
        .wait_for_line(first_line, Duration::from_secs(20))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let log = process.stderr();
        if log.contains(ALLOWED) || log.contains(LOOPBACK) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{program} {given:?}: no rule in the log: {log}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cases() -> [(Given, bool); 6] {
    [
        (Given::Nothing, false),
        (Given::Flag, true),
        (Given::Environment("1"), true),
        (Given::Environment("true"), true),
        (Given::Environment("false"), false),
        (Given::ConfigFile, true),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_admin_reads_the_flag_its_variable_and_its_config_key() {
    let dir = tempfile::tempdir().expect("dir");
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    for (given, allowed) in cases() {
        let log = rule_logged(
            env!("CARGO_BIN_EXE_it-sender"),
            &[
                "--state",
                &state,
                "admin",
                "--listen",
                "127.0.0.1:0",
                "--token",
                TOKEN,
            ],
            "SENDER_ALLOW_PRIVATE_TARGETS",
            given,
            "admin on http://",
        )
        .await;
        let expected = if allowed { ALLOWED } else { LOOPBACK };
        assert!(
            log.contains("the admin pages on 127.0.0.1:") && log.contains(expected),
            "{given:?}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_reads_the_flag_its_variable_and_its_config_key() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite:{}", dir.path().join("receiver.db").display());
    for (given, allowed) in cases() {
        let log = rule_logged(
            crate::support::receiver::binary(),
            &[
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--ui",
                "127.0.0.1:0",
                "--ui-token",
                TOKEN,
                "--store",
                &store,
            ],
            "RECEIVER_ALLOW_PRIVATE_TARGETS",
            given,
            "inspector on http://",
        )
        .await;
        let expected = if allowed { ALLOWED } else { LOOPBACK };
        assert!(
            log.contains("the inspector on 127.0.0.1:") && log.contains(expected),
            "{given:?}: {log}"
        );
    }
}
