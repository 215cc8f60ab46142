//! `--config FILE` (SPEC section 9), with the real programs: each runs from a config file
//! alone; the environment beats the file and a flag beats both; an unknown key or a value of
//! the wrong type is exit 2 naming the key and its line; the file's secrets show in no help
//! text, and a file holding one that others may read is warned about.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use verify::{unix_now, BasicCredentials, Keyring, Scheme, SignatureFile, SigningSecret};

use crate::sender::{sender_output, Spawned};
use crate::support::endpoint::{FakeEndpoint, Reply};
use crate::support::receiver::{envelope, get, output_within, post, run_cli, Process};

const RECEIVER: &str = env!("CARGO_BIN_EXE_it-receiver");
const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// Writes `text` to `dir/name` and gives the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A signature file with a fresh secret, as Learning Manager hands it out.
fn signature_file(dir: &Path, name: &str) -> (String, SigningSecret) {
    let secret = SigningSecret::generate();
    let file = SignatureFile::new("wh_1", "crm", &Scheme::default(), &secret, unix_now());
    (write(dir, name, &file.to_json_pretty()), secret)
}

/// POSTs a one-event envelope to `path`, signed with `secret` (or unsigned), and gives the
/// status.
async fn post_signed(
    addr: std::net::SocketAddr,
    path: &str,
    secret: Option<&SigningSecret>,
    event_id: &str,
) -> StatusCode {
    let body = envelope(1, &[event_id]);
    let headers = match secret {
        Some(secret) => {
            Keyring::single(secret.clone()).sign_headers("m", unix_now(), body.as_bytes())
        }
        None => Vec::new(),
    };
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    post(addr, path, &headers, body).await.status
}

/// Runs a program that would serve for ever if it did not refuse to start: (exit code,
/// stdout, stderr).
fn refused(program: &str, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(program);
    command.args(args).env("RUST_LOG", "warn");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = output_within(&mut command, Duration::from_secs(15));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_runs_from_a_config_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (first_path, first) = signature_file(dir.path(), "first.json");
    let (second_path, second) = signature_file(dir.path(), "second.json");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let config = write(
        dir.path(),
        "receiver.toml",
        &format!(
            "# a receiver set up by its file only\n\
             listen = \"127.0.0.1:0\"\n\
             path = \"/hooks\"\n\
             store = \"{store}\"\n\
             signature-file = [\"{first_path}\", \"{second_path}\"]\n\
             output = \"quiet\"\n\
             max-body = \"2KiB\"\n\
             ui = \"127.0.0.1:0\"\n"
        ),
    );
    // No subcommand, no flag but --config: `receiver` alone means `receiver listen`.
    let process = Process::spawn(&["--config", &config], &[]);
    let webhook = process
        .first_line
        .strip_prefix("listening on http://127.0.0.1:");
    assert!(
        webhook.is_some_and(|rest| rest.ends_with("/hooks")),
        "{}",
        process.first_line
    );
    let inspector = process.inspector_line.clone().unwrap_or_default();
    assert!(
        inspector.starts_with("inspector on http://127.0.0.1:"),
        "{inspector}"
    );
    // Every signature file of the list is in force; an unsigned request and a body over the
    // file's max-body are refused.
    for (index, secret) in [&first, &second].into_iter().enumerate() {
        let status = post_signed(process.addr, "/hooks", Some(secret), &format!("e{index}")).await;
        assert_eq!(status, StatusCode::OK, "signature file {index}");
    }
    let unsigned = post_signed(process.addr, "/hooks", None, "unsigned").await;
    assert_eq!(unsigned, StatusCode::UNAUTHORIZED);
    let big = post(process.addr, "/hooks", &[], vec![b' '; 2049]).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    process.kill();

    // The other subcommands read the same file: `events count` finds the file's store (and
    // is not refused for the `listen` settings the file also holds).
    let (code, stdout, stderr) = run_cli(&["--config", &config, "events", "count"], &[]);
    assert_eq!((code, stdout.trim()), (Some(0), "2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_the_receiver_the_environment_beats_the_file_and_a_flag_beats_both() {
    let dir = tempfile::tempdir().unwrap();
    let (file_path, file_secret) = signature_file(dir.path(), "in-file.json");
    let (env_path, env_secret) = signature_file(dir.path(), "in-env.json");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let config = write(
        dir.path(),
        "receiver.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\npath = \"/from-file\"\nstore = \"{store}\"\n\
             signature-file = [\"{file_path}\"]\noutput = \"quiet\"\nui = \"127.0.0.1:0\"\n"
        ),
    );

    // RECEIVER_CONFIG names the file as --config does.
    let process = Process::spawn(&[], &[("RECEIVER_CONFIG", &config)]);
    assert!(
        process.first_line.ends_with("/from-file"),
        "{}",
        process.first_line
    );
    process.kill();

    // The environment beats the file: its path, and its signature file instead of the
    // file's list.
    let process = Process::spawn(
        &["--config", &config],
        &[
            ("RECEIVER_PATH", "/from-env"),
            ("RECEIVER_SIGNATURE_FILE", &env_path),
        ],
    );
    assert!(
        process.first_line.ends_with("/from-env"),
        "{}",
        process.first_line
    );
    let by_env = post_signed(process.addr, "/from-env", Some(&env_secret), "env").await;
    assert_eq!(by_env, StatusCode::OK);
    let by_file = post_signed(process.addr, "/from-env", Some(&file_secret), "file").await;
    assert_eq!(by_file, StatusCode::UNAUTHORIZED);
    process.kill();

    // A flag beats both.
    let process = Process::spawn(
        &["--config", &config, "listen", "--path", "/from-flag"],
        &[("RECEIVER_PATH", "/from-env")],
    );
    assert!(
        process.first_line.ends_with("/from-flag"),
        "{}",
        process.first_line
    );
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_takes_its_state_and_its_worker_settings_from_a_config_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sender.db");
    let other = format!("sqlite:{}", dir.path().join("other.db").display());
    let key = dir.path().join("secret.key").display().to_string();
    let generated = Command::new(SENDER)
        .args(["secret-key", "generate", "--out", &key])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    // One file for every subcommand: `listen` and `token` are `admin`'s flags, the retry
    // numbers `run`'s (and `trigger`'s), `state` and `secret-key-file` everyone's.
    let config = write(
        dir.path(),
        "sender.toml",
        &format!(
            "state = \"sqlite:{}\"\nsecret-key-file = \"{key}\"\n\
             retry-initial = \"100ms\"\nretry-max = \"200ms\"\npoll-interval = \"20ms\"\n\
             listen = \"127.0.0.1:0\"\ntoken = \"token-from-the-config-file\"\n",
            db.display()
        ),
    );
    // Owner-only, as a file holding a token should be (else a warning on every run).
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sender = |args: &[&str], envs: &[(&str, &str)]| {
        let output = Command::new(SENDER)
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let webhooks = |stdout: &str| -> usize {
        let listed: serde_json::Value = serde_json::from_str(stdout).unwrap();
        listed.as_array().unwrap().len()
    };

    let endpoint = FakeEndpoint::start().await;
    let (code, _, stderr) = sender(
        &[
            "webhooks",
            "add",
            "--name",
            "crm",
            "--url",
            &endpoint.url(),
            "--events",
            "all",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    // The registration went to the file's state, sealed with the file's key: the key is
    // needed to read it.
    let (code, stdout, stderr) = sender(&["webhooks", "list", "--json"], &[]);
    assert_eq!((code, webhooks(&stdout)), (Some(0), 1), "{stderr}");
    let state = format!("sqlite:{}", db.display());
    let (code, _, stderr) = sender_output(&state, &["webhooks", "list"]);
    assert_eq!(code, Some(2), "the key is asked for: {stderr}");
    // SENDER_STATE beats the file; --state beats SENDER_STATE.
    let (code, stdout, stderr) =
        sender(&["webhooks", "list", "--json"], &[("SENDER_STATE", &other)]);
    assert_eq!((code, webhooks(&stdout)), (Some(0), 0), "{stderr}");
    let (code, stdout, stderr) = sender(
        &["webhooks", "list", "--json", "--state", &state],
        &[("SENDER_STATE", &other)],
    );
    assert_eq!((code, webhooks(&stdout)), (Some(0), 1), "{stderr}");

    // `sender run` retries after the file's 100 ms, not Learning Manager's 5 s.
    endpoint.script([Reply::status(500)]);
    let mut run = Spawned::spawn(
        Command::new(SENDER)
            .args(["--config", &config, "run"])
            // The failed attempt the test provokes is a warning.
            .env("RUST_LOG", "error"),
    );
    let ready = run.next_line(Duration::from_secs(15)).await;
    assert!(
        ready.starts_with("sender run: working the queue"),
        "{ready}"
    );
    let (code, _, stderr) = sender(&["trigger", "COURSE_ENROLLMENT", "--enqueue-only"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let received = endpoint.wait_for(2, Duration::from_secs(3)).await;
    assert_eq!(
        received[0].event_ids(),
        received[1].event_ids(),
        "the retry"
    );
    drop(run);

    // `sender admin` listens where the file says, with the file's token.
    let mut admin = Spawned::spawn(
        Command::new(SENDER)
            .args(["--config", &config, "admin"])
            .env("RUST_LOG", "warn"),
    );
    let first_line = admin.next_line(Duration::from_secs(15)).await;
    let addr: std::net::SocketAddr = first_line
        .strip_prefix("admin on http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{first_line}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{first_line}");
    let signed_in = get(addr, "/?token=token-from-the-config-file").await;
    assert_eq!(signed_in.status, StatusCode::OK);
    let wrong = get(addr, "/?token=not-the-token-of-the-file").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn an_unknown_key_or_a_value_of_the_wrong_type_is_exit_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let cases: [(&str, String, &str); 4] = [
        (
            RECEIVER,
            format!("listen = \"127.0.0.1:0\"\nstore = \"{store}\"\n\n# typo\nlisen = \"x\"\n"),
            "line 5: unknown key `lisen`: no flag --lisen (did you mean `listen`?)",
        ),
        (
            RECEIVER,
            format!("listen = \"127.0.0.1:0\"\nmax-body = [\"1MiB\"]\nstore = \"{store}\"\n"),
            "line 2: `max-body` takes one value, not a list",
        ),
        (
            RECEIVER,
            format!("listen = \"127.0.0.1:0\"\nstore = \"{store}\"\nheader-timeout = \"soon\"\n"),
            "line 3: `header-timeout`: \"soon\" is not a duration such as 250ms, 5s, 5m, 24h or 7d \
             (expected number at 0)",
        ),
        (
            SENDER,
            format!("state = \"{store}\"\nretry-initial = true\n"),
            "line 2: `retry-initial` takes a value, not true or false",
        ),
    ];
    for (index, (program, text, expected)) in cases.iter().enumerate() {
        let config = write(dir.path(), &format!("case{index}.toml"), text);
        let args: &[&str] = if *program == SENDER {
            &["webhooks", "list"]
        } else {
            &[]
        };
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = refused(program, &all, &[]);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("error: config file {config}, {expected}"),
            "{text}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    // Named by the environment, for the sender; a switch given a string.
    let config = write(dir.path(), "sender.toml", "json = \"yes\"\n");
    let (code, _, stderr) = refused(SENDER, &["webhooks", "list"], &[("SENDER_CONFIG", &config)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("line 1: `json` is a switch: write true or false, not a string"),
        "{stderr}"
    );
    // A file that is not there.
    let (code, _, stderr) = refused(RECEIVER, &["--config", "/nonexistent/receiver.toml"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("reading the config file /nonexistent/receiver.toml"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_secrets_stay_out_of_help_and_a_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let config = write(
        dir.path(),
        "receiver.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nstore = \"{store}\"\noutput = \"quiet\"\n\
             ui = \"127.0.0.1:0\"\nbasic-user = \"crm\"\n\
             basic-password = \"pw-from-the-file\"\nui-token = \"token-from-the-file-0123\"\n"
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    // The Basic credentials of the file are enforced.
    let process = Process::spawn(&["--config", &config], &[]);
    let right = BasicCredentials::new("crm", "pw-from-the-file").unwrap();
    let body = envelope(1, &["basic"]);
    let reply = post(
        process.addr,
        "/webhook",
        &[("authorization", &right.authorization_header())],
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let anonymous = post(process.addr, "/webhook", &[], body).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        process
            .inspector_line
            .as_deref()
            .is_some_and(|line| line.ends_with("?token=token-from-the-file-0123")),
        "{:?}",
        process.inspector_line
    );
    process.kill();

    // No help text shows a value that came from the file.
    for args in [
        vec!["--help"],
        vec!["listen", "--help"],
        vec!["check", "-h"],
    ] {
        let mut all = vec!["--config", config.as_str()];
        all.extend(args.iter().copied());
        let (code, stdout, stderr) = run_cli(&all, &[]);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        for secret in ["pw-from-the-file", "token-from-the-file"] {
            assert!(
                !stdout.contains(secret),
                "{args:?} shows {secret}:\n{stdout}"
            );
        }
    }

    // Readable by others: a warning naming the file and the keys, never their values.
    let (code, _, stderr) = run_cli(&["--config", &config, "events", "count"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the config file holds secrets and can be read by other users"),
        "{stderr}"
    );
    assert!(stderr.contains("basic-password, ui-token"), "{stderr}");
    assert!(stderr.contains(&config), "{stderr}");
    for secret in ["pw-from-the-file", "token-from-the-file"] {
        assert!(!stderr.contains(secret), "{stderr}");
    }
    // Owner-only: no warning.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = run_cli(&["--config", &config, "events", "count"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("can be read by other users"), "{stderr}");
}

#[test]
fn a_tls_pair_half_given_by_the_file_is_refused_rather_than_served_as_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let cert = write(dir.path(), "cert.pem", "");
    let config = write(
        dir.path(),
        "receiver.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nstore = \"{store}\"\nui = \"off\"\ntls-cert = \"{cert}\"\n"
        ),
    );
    let (code, stdout, stderr) = refused(RECEIVER, &["--config", &config], &[]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("--tls-cert and --tls-key go together"),
        "{stderr}"
    );
    // The same for forwarding's signature file without a target.
    let config = write(
        dir.path(),
        "forward.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nstore = \"{store}\"\nui = \"off\"\n\
             forward-signature-file = \"{cert}\"\n"
        ),
    );
    let (code, _, stderr) = refused(RECEIVER, &["--config", &config], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--forward-signature-file needs --forward-to"),
        "{stderr}"
    );
}
