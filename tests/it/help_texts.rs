//! No help text shows the value of an environment variable (SPEC section 6: secrets never
//! appear in help texts). The README tells users to prefer `RECEIVER_STORE`,
//! `RECEIVER_BASIC_PASSWORD`, `SENDER_STATE` … over flags, and those hold passwords and
//! URLs with credentials; clap prints `[env: NAME=VALUE]` unless told not to.
//!
//! The test finds its cases itself, so a flag or subcommand added later is covered without
//! touching it: it walks every subcommand of both programs through their `--help` (the
//! `Commands:` lists), collects every variable the texts name (`[env: NAME`), sets each to a
//! distinctive secret, and reads `-h`, `--help` and the manual pages of every subcommand.
//! `RECEIVER_CONFIG` / `SENDER_CONFIG` name a config file instead: one holding the same kind
//! of secrets, whose values must not show either.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};

const RECEIVER: &str = env!("CARGO_BIN_EXE_it-receiver");
const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// What every variable's value carries, so one search finds any of them in the output.
const MARKER: &str = "SECRETPW";

/// Runs `program ARGS` with only `environment` set (no variable of the test's own leaks in).
fn run(program: &str, args: &[&str], environment: &[(String, String)]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .output()
        .expect("run the program")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The subcommands a help text lists under `Commands:` (clap's own `help` left out).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A name starts at the list's indentation; deeper lines continue a description.
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every subcommand path of `program`, the program itself (`[]`) first, depth first.
fn subcommand_paths(program: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = run(program, &args, &[]);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        for sub in listed_subcommands(&text(&output)) {
            let mut longer = path.clone();
            longer.push(sub);
            todo.push(longer);
        }
        paths.push(path);
    }
    paths
}

/// The variables a help text names: `[env: NAME=VALUE]` or `[env: NAME]`.
fn named_variables(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// A secret a user might really keep in `name`: a connection string with a password.
fn secret_value(name: &str) -> String {
    format!("postgres://u:{MARKER}-{name}@127.0.0.1:5432/db")
}

fn assert_no_secret(what: &str, output: &Output) {
    let shown = text(output);
    assert!(
        !shown.contains(MARKER),
        "{what} shows an environment variable's value:\n{shown}"
    );
}

/// A config file for `PROGRAM_CONFIG`, which names a file rather than holding a value: one
/// whose every value is a secret, so the help texts are checked for the file's values too.
fn secret_config_file(dir: &std::path::Path, keys: &[&str]) -> String {
    let text: String = keys
        .iter()
        .map(|key| format!("{key} = \"{}\"\n", secret_value(key)))
        .collect();
    let path = dir.join("secrets.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn check_program(program: &str, expected: &[&str], config_keys: &[&str]) {
    let paths = subcommand_paths(program);
    assert!(paths.len() > 5, "{program}: found only {paths:?}");
    let mut variables = BTreeSet::new();
    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        variables.extend(named_variables(&text(&run(program, &args, &[]))));
    }
    for name in expected {
        assert!(
            variables.contains(*name),
            "{program}: the help texts no longer name {name}: {variables:?}"
        );
    }
    let config_dir = tempfile::tempdir().unwrap();
    let config = secret_config_file(config_dir.path(), config_keys);
    let environment: Vec<(String, String)> = variables
        .iter()
        .map(|name| {
            if name.ends_with("_CONFIG") {
                (name.clone(), config.clone())
            } else {
                (name.clone(), secret_value(name))
            }
        })
        .collect();

    for path in &paths {
        for help in ["-h", "--help"] {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push(help);
            let output = run(program, &args, &environment);
            assert!(output.status.success(), "{args:?}: {}", text(&output));
            assert_no_secret(&format!("{program} {}", args.join(" ")), &output);
            // The variables are still named, so the help still says where a value comes from.
            let shown = text(&output);
            let named = named_variables(&shown);
            assert!(
                named.iter().all(|name| variables.contains(name)),
                "{args:?}: {named:?}"
            );
        }
    }

    // `man` and `completions` parse the environment like any command: a variable whose
    // secret clap refuses (`--log-format` takes `text` or `json`) would stop them before they
    // print anything, so they get the variables that can hold a secret.
    let environment: Vec<(String, String)> = environment
        .into_iter()
        .filter(|variable| {
            run(
                program,
                &["completions", "bash"],
                std::slice::from_ref(variable),
            )
            .status
            .success()
        })
        .collect();
    for name in expected {
        assert!(environment.iter().any(|(held, _)| held == name), "{name}");
    }
    // The manual pages: the program's on standard output, and one per subcommand.
    let page = run(program, &["man"], &environment);
    assert!(page.status.success(), "{}", text(&page));
    assert_no_secret(&format!("{program} man"), &page);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let pages = run(program, &["man", "--out", out], &environment);
    assert!(pages.status.success(), "{}", text(&pages));
    let mut read = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let page = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!page.contains(MARKER), "{program} man --out: {page}");
        read += 1;
    }
    assert!(read > 5, "{program} man --out wrote {read} pages");
    // Completion scripts come from the same definitions.
    for shell in ["bash", "zsh", "fish"] {
        let script = run(program, &["completions", shell], &environment);
        assert!(script.status.success(), "{}", text(&script));
        assert_no_secret(&format!("{program} completions {shell}"), &script);
    }
}

#[test]
fn no_help_text_manual_page_or_completion_shows_an_environment_value() {
    check_program(
        RECEIVER,
        &[
            "RECEIVER_STORE",
            "RECEIVER_UI_TOKEN",
            "RECEIVER_FORWARD_TO",
            "RECEIVER_BASIC_PASSWORD",
            "RECEIVER_CONFIG",
        ],
        &["store", "ui-token", "forward-to", "basic-password"],
    );
    check_program(
        SENDER,
        &["SENDER_STATE", "SENDER_ADMIN_TOKEN", "SENDER_CONFIG"],
        &["state", "token", "password"],
    );
}

#[test]
fn the_subcommand_lists_are_read_as_clap_writes_them() {
    let help = "Usage: x\n\nCommands:\n  listen  Listen for webhooks\n          (the default)\n  events  Read\n  help    Print this\n\nOptions:\n  -h\n";
    assert_eq!(listed_subcommands(help), vec!["listen", "events"]);
    assert_eq!(
        named_variables("a [env: RECEIVER_STORE=x] b [env: SENDER_STATE] [env: ]"),
        BTreeSet::from(["RECEIVER_STORE".to_owned(), "SENDER_STATE".to_owned()])
    );
}
