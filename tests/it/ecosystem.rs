//! Both programs fit the shell around them, as real processes: completion scripts for every
//! shell (bash loads them and completes event names from the catalogue), manual pages that
//! `man` renders without a warning, a closed pipe that ends every printing command quietly
//! with status 0, global flags before or after the subcommand, and `sender events` equal to
//! the library's catalogue.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::external;
use crate::support::receiver::{envelope, InProcess};

const RECEIVER: &str = env!("CARGO_BIN_EXE_it-receiver");
const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// Runs a program with its output captured, logs at their default level (nothing hidden).
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RECEIVER_STORE")
        .env_remove("SENDER_STATE")
        .stdin(Stdio::null())
        .output()
        .expect("run the program")
}

fn ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The program's name as its completion script knows it: `receiver` or `sender`.
fn name(program: &str) -> &'static str {
    if program == RECEIVER {
        "receiver"
    } else {
        "sender"
    }
}

#[test]
fn completion_scripts_for_every_shell_and_bash_loads_them() {
    let bash = external::program(
        "bash",
        "checking the bash completion scripts",
        "apt-get install bash",
    );
    let dir = tempfile::tempdir().unwrap();
    for program in [RECEIVER, SENDER] {
        for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
            let script = ok(program, &["completions", shell]);
            // Each script names the program and its subcommands.
            for word in [name(program), "events", "completions", "man"] {
                assert!(
                    script.contains(word),
                    "{shell} script of {program} lacks {word}"
                );
            }
            if shell == "bash" && bash {
                let path = dir.path().join(format!("{}.bash", name(program)));
                std::fs::write(&path, &script).unwrap();
                let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
                assert!(
                    check.status.success(),
                    "bash -n: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
            }
        }
    }
    let bad = run(SENDER, &["completions", "tcsh"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// What bash offers for the last of `words` (the word being typed), through the program's
/// own completion script and function, as bash's programmable completion calls it.
fn bash_completions(program: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("completion.bash");
    std::fs::write(&script, ok(program, &["completions", "bash"])).unwrap();
    let drive = format!(
        r#"source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
_{name} "{name}" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        name = name(program)
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(drive)
        .arg("bash")
        .arg(&script)
        .args(words)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut offered: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    offered.sort();
    offered
}

/// The catalogue's names that start with `prefix`, sorted.
fn catalogue_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = verify::CATALOG
        .iter()
        .map(|kind| kind.name.to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

#[test]
fn bash_completes_event_names_from_the_catalogue() {
    if !external::program("bash", "driving bash completion", "apt-get install bash") {
        return;
    }
    let course = catalogue_names("COURSE_");
    assert_eq!(course.len(), 6, "the catalogue's COURSE_ names");
    assert_eq!(
        bash_completions(SENDER, &["sender", "trigger", "COURSE_"]),
        course
    );
    assert_eq!(
        bash_completions(
            SENDER,
            &["sender", "webhooks", "test", "--event", "COURSE_"]
        ),
        course
    );
    assert_eq!(
        bash_completions(SENDER, &["sender", "webhooks", "add", "--events", "al"]),
        ["all"]
    );
    assert_eq!(
        bash_completions(
            SENDER,
            &["sender", "replay", "x.jsonl", "--event-name", "LEARNER_"]
        ),
        catalogue_names("LEARNER_")
    );
    assert_eq!(
        bash_completions(
            RECEIVER,
            &[
                "receiver",
                "events",
                "list",
                "--event-name",
                "CERTIFICATION_"
            ]
        ),
        catalogue_names("CERTIFICATION_")
    );
    assert_eq!(
        bash_completions(RECEIVER, &["receiver", "export", "--event-name", "COURSE_"]),
        course
    );
    // Subcommands complete too.
    assert_eq!(bash_completions(SENDER, &["sender", "ev"]), ["events"]);
}

#[test]
fn man_pages_render_without_warnings() {
    if !external::program(
        "man",
        "rendering the manual pages",
        "apt-get install man-db",
    ) {
        return;
    }
    for program in [RECEIVER, SENDER] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let written = ok(program, &["man", "--out", out]);
        let pages: Vec<&str> = written.lines().collect();
        let expected_pages: &[&str] = if program == RECEIVER {
            &[
                "receiver.1",
                "receiver-listen.1",
                "receiver-events-list.1",
                "receiver-export.1",
            ]
        } else {
            &[
                "sender.1",
                "sender-trigger.1",
                "sender-webhooks-add.1",
                "sender-events.1",
            ]
        };
        for page in expected_pages {
            assert!(
                pages.contains(&dir.path().join(page).to_str().unwrap()),
                "{page} missing from {pages:?}"
            );
        }
        for page in &pages {
            render_cleanly(Path::new(page), name(program));
        }
        // Without --out, the program's own page on standard output.
        let page = ok(program, &["man"]);
        assert!(page.contains(".TH"), "{page}");
    }
}

/// `man -l PAGE` with every groff warning on: a page, no warning.
fn render_cleanly(page: &Path, program: &str) {
    let output = Command::new("man")
        .args(["--warnings=all", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", page.display());
    assert!(stderr.is_empty(), "{}: warnings:\n{stderr}", page.display());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("NAME") && text.contains(program),
        "{}:\n{text}",
        page.display()
    );
}

/// The write end of a real pipe whose reader has already exited: every write to it fails with
/// EPIPE, at once and every time (no race with a reader that might read first).
fn pipe_without_reader() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn true");
    let write_end = reader.stdin.take().expect("the pipe's write end");
    reader.wait().expect("true exits");
    Stdio::from(write_end)
}

/// Runs a command twice: with its output read (it prints something), then into a pipe nobody
/// reads any more (it ends with 0 and says nothing).
fn quiet_on_a_closed_pipe(program: &str, args: &[&str]) {
    let printed = ok(program, args);
    assert!(
        !printed.is_empty(),
        "{args:?} printed nothing: the check would prove nothing"
    );
    let output = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(pipe_without_reader())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{} {args:?} into a closed pipe: {}",
        name(program),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "{} {args:?}: standard error",
        name(program)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let receiver = InProcess::start(receiver::Config::for_tests(&db)).await;
    for account in 1..=3 {
        assert_eq!(
            receiver
                .post(&[], envelope(account, &["a", "b"]))
                .await
                .status,
            200
        );
    }
    assert_eq!(receiver.post(&[], "not json").await.status, 400);
    receiver.stop().await.unwrap();
    let store = format!("sqlite:{}", db.display());
    let capture = dir.path().join("capture.jsonl");
    ok(
        RECEIVER,
        &[
            "export",
            "--store",
            &store,
            "--out",
            capture.to_str().unwrap(),
        ],
    );

    let state = format!("sqlite:{}", dir.path().join("s.db").display());
    let id = ok(
        SENDER,
        &[
            "--state",
            &state,
            "webhooks",
            "add",
            "--name",
            "crm",
            "--url",
            "http://127.0.0.1:9/hook",
            "--events",
            "all",
            "--auth",
            "signature",
        ],
    );
    let id = id.trim().to_owned();
    let signature = dir.path().join("sig.json");
    ok(
        SENDER,
        &[
            "--state",
            &state,
            "webhooks",
            "signature",
            &id,
            "--out",
            signature.to_str().unwrap(),
        ],
    );
    let body = dir.path().join("body.json");
    std::fs::write(&body, envelope(1, &["x"])).unwrap();

    tokio::task::spawn_blocking(move || {
        let capture = capture.to_str().unwrap();
        let receiver_commands: &[&[&str]] = &[
            &["events", "list", "--store", &store],
            &["events", "list", "--json", "--store", &store],
            &["events", "show", "a", "--store", &store],
            &["events", "count", "--store", &store],
            &["export", "--store", &store],
            &["export", "--verdict", "all", "--store", &store],
            &["check", capture],
            &["completions", "bash"],
            &["man"],
            &["--help"],
        ];
        for args in receiver_commands {
            quiet_on_a_closed_pipe(RECEIVER, args);
        }
        let signature = signature.to_str().unwrap();
        let body = body.to_str().unwrap();
        let sender_commands: &[&[&str]] = &[
            &["events"],
            &["events", "--json"],
            &["webhooks", "list"],
            &["webhooks", "list", "--json"],
            &["webhooks", "show", &id],
            &["webhooks", "signature", &id],
            &["deliveries", "list"],
            &["sign", "--signature-file", signature, body],
            &["completions", "zsh"],
            &["man"],
            &["trigger", "--help"],
        ];
        for args in sender_commands {
            let mut with_state = vec!["--state", state.as_str()];
            with_state.extend_from_slice(args);
            quiet_on_a_closed_pipe(SENDER, &with_state);
        }
    })
    .await
    .unwrap();
}

/// Runs `program ARGS` where ARGS name a store that cannot exist and ask for JSON logs:
/// status 2, and standard error is one JSON error record naming that store, which proves
/// both flags were read wherever they stood.
fn refuses_the_missing_store_in_json(program: &str, args: &[&str], missing: &str) {
    let output = run(program, args);
    assert_eq!(output.status.code(), Some(2), "{args:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let record: Value = serde_json::from_str(stderr.trim())
        .unwrap_or_else(|_| panic!("{args:?}: not one JSON record: {stderr}"));
    assert_eq!(record["level"], "ERROR", "{record}");
    let message = record["fields"]["message"].as_str().unwrap();
    assert!(message.contains(missing), "{args:?}: {message}");
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let store = "sqlite:/nonexistent/dir/store.db";
    let json = ["--log-format", "json"];
    for args in [
        &[&json[..], &["--store", store, "export"]].concat(),
        &[&json[..], &["export", "--store", store]].concat(),
        &[&["export"][..], &json, &["--store", store]].concat(),
        &[&["--store", store, "events", "count"][..], &json].concat(),
        &[&["events"][..], &json, &["list", "--store", store]].concat(),
    ] {
        refuses_the_missing_store_in_json(RECEIVER, args, "/nonexistent/dir/store.db");
    }
    // The flags of the implicit `listen` go before no other subcommand, and clap says so.
    let output = run(RECEIVER, &["--listen", "127.0.0.1:0", "export"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen belongs to `receiver listen`"),
        "{stderr}"
    );

    let state = "sqlite:/nonexistent/dir/state.db";
    for args in [
        &[&json[..], &["--state", state, "webhooks", "list"]].concat(),
        &[&["webhooks", "--state", state, "list"][..], &json].concat(),
        &[&["webhooks", "list"][..], &json, &["--state", state]].concat(),
    ] {
        refuses_the_missing_store_in_json(SENDER, args, "/nonexistent/dir/state.db");
    }
}

#[test]
fn sender_events_lists_the_library_catalogue() {
    let listed: Value = serde_json::from_str(&ok(SENDER, &["events", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), verify::CATALOG.len());
    for (entry, kind) in listed.iter().zip(verify::CATALOG) {
        let class = match kind.class {
            verify::EventClass::RealTime => "real-time",
            verify::EventClass::Batch => "batch",
        };
        let fields: Vec<&str> = kind.fields.iter().map(|field| field.json_name()).collect();
        assert_eq!(
            entry,
            &serde_json::json!({"eventName": kind.name, "kind": class, "fields": fields})
        );
    }

    let text = ok(SENDER, &["events"]);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("EVENT"), "a header line");
    let rows: Vec<(String, String, String)> = lines
        .map(|line| {
            let (name, rest) = line.split_once(char::is_whitespace).unwrap();
            let (class, fields) = rest.trim_start().split_once(char::is_whitespace).unwrap();
            (name.to_owned(), class.to_owned(), fields.trim().to_owned())
        })
        .collect();
    let expected: Vec<(String, String, String)> = listed
        .iter()
        .map(|entry| {
            let fields: Vec<&str> = entry["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|field| field.as_str().unwrap())
                .collect();
            (
                entry["eventName"].as_str().unwrap().to_owned(),
                entry["kind"].as_str().unwrap().to_owned(),
                fields.join(", "),
            )
        })
        .collect();
    assert_eq!(rows, expected);

    // `trigger --help` points to the list, and so does an unknown name, never to a document.
    assert!(ok(SENDER, &["trigger", "--help"]).contains("`sender events`"));
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("s.db").display());
    let unknown = run(SENDER, &["--state", &state, "trigger", "NOTHING_LIKE_IT"]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("`sender events` lists the catalogue"),
        "{stderr}"
    );
    assert!(!stderr.contains("SPEC"), "{stderr}");
}
