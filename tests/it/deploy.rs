//! What `deploy/` ships: the sample config files run the programs with only their paths moved
//! into a temporary directory, and the systemd units pass `systemd-analyze verify` with their
//! hardening in place (SPEC section 9, issue 22).

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use verify::{unix_now, Keyring, Scheme, SignatureFile, SigningSecret};

use crate::sender::Spawned;
use crate::support::external;
use crate::support::receiver::{envelope, free_addr, post, FakeApp, Process};

const RECEIVER: &str = env!("CARGO_BIN_EXE_it-receiver");
const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

const RECEIVER_TOML: &str = include_str!("../../deploy/receiver.toml");
const SENDER_TOML: &str = include_str!("../../deploy/sender.toml");
const RECEIVER_UNIT: &str = include_str!("../../deploy/receiver.service");
const SENDER_UNIT: &str = include_str!("../../deploy/sender.service");

/// The lines of a TOML file that are not comments.
fn settings(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
}

/// `sample` with its system paths (`/etc/PROGRAM`, `/var/lib/PROGRAM`) moved under `root`,
/// written to `root/PROGRAM.toml`; checks that no setting still points outside `root`.
fn moved_sample(sample: &str, program: &str, root: &Path) -> String {
    let etc = root.join("etc");
    let var = root.join("var");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&var).unwrap();
    let text = sample
        .replace(&format!("/etc/{program}"), &etc.display().to_string())
        .replace(&format!("/var/lib/{program}"), &var.display().to_string());
    for line in settings(&text) {
        assert!(
            !line.contains("\"/etc") && !line.contains("\"/var"),
            "a setting of the sample still points at the system: {line}"
        );
    }
    let path = root.join(format!("{program}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Every quoted path under `dir` that the settings of `text` name.
fn paths_under(text: &str, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    settings(text)
        .flat_map(|line| line.split('"').skip(1).step_by(2))
        .filter(|value| value.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_receiver_toml_serves_with_only_its_paths_moved() {
    let root = tempfile::tempdir().unwrap();
    let config = moved_sample(RECEIVER_TOML, "receiver", root.path());
    let text = std::fs::read_to_string(&config).unwrap();
    // The signature files it lists, each with a secret of its own.
    let mut secrets = Vec::new();
    for path in paths_under(&text, &root.path().join("etc")) {
        let secret = SigningSecret::generate();
        let file = SignatureFile::new("wh_1", "alm", &Scheme::default(), &secret, unix_now());
        std::fs::write(&path, file.to_json_pretty()).unwrap();
        secrets.push(secret);
    }
    assert!(secrets.len() >= 2, "the sample lists its signature files");
    // Only the addresses move to the test's own: loopback, port 0, the fake app.
    let app = FakeApp::start_at(free_addr(), 200).await;
    let forward_to = format!("http://{}/inbox", app.addr);
    let process = Process::spawn(
        &[
            "--config",
            &config,
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "127.0.0.1:0",
            "--forward-to",
            &forward_to,
        ],
        &[],
    );
    for (index, secret) in secrets.iter().enumerate() {
        let body = envelope(1, &[&format!("sample-{index}")]);
        let headers =
            Keyring::single(secret.clone()).sign_headers("m", unix_now(), body.as_bytes());
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let reply = post(process.addr, "/webhook", &headers, body).await;
        assert_eq!(reply.status, StatusCode::OK, "signature file {index}");
    }
    assert!(
        app.wait_acknowledged(secrets.len(), Duration::from_secs(15))
            .await,
        "forwarded: {}",
        app.requests().len()
    );
    // The store is where the sample puts it.
    assert!(root.path().join("var/receiver.db").exists());
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_sender_toml_serves_with_only_its_paths_moved() {
    let root = tempfile::tempdir().unwrap();
    let config = moved_sample(SENDER_TOML, "sender", root.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let key = paths_under(&text, &root.path().join("etc"));
    assert_eq!(
        key.len(),
        1,
        "the sample names its secret key file: {key:?}"
    );
    let generated = Command::new(SENDER)
        .args(["secret-key", "generate", "--out", &key[0]])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");

    let listed = Command::new(SENDER)
        .args(["--config", &config, "webhooks", "list", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
    assert!(root.path().join("var/sender.db").exists());

    // The unit's command, `sender run`, starts from it.
    let mut run = Spawned::spawn(
        Command::new(SENDER)
            .args(["--config", &config, "run"])
            .env("RUST_LOG", "warn"),
    );
    let ready = run.next_line(Duration::from_secs(15)).await;
    assert!(
        ready.starts_with("sender run: working the queue"),
        "{ready}"
    );
}

#[test]
fn the_systemd_units_are_hardened_and_pass_systemd_analyze_verify() {
    for (unit, text) in [
        ("receiver.service", RECEIVER_UNIT),
        ("sender.service", SENDER_UNIT),
    ] {
        let lines: Vec<&str> = text.lines().collect();
        for directive in [
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "SystemCallFilter=@system-service",
            "Restart=on-failure",
        ] {
            assert!(lines.contains(&directive), "{unit}: no {directive}");
        }
        for setting in [
            "User=",
            "StateDirectory=",
            "ReadWritePaths=",
            "RestrictAddressFamilies=",
            "EnvironmentFile=-",
        ] {
            assert!(
                lines.iter().any(|line| line.starts_with(setting)),
                "{unit}: no {setting}"
            );
        }
    }
    // The receiver reloads on SIGHUP; the sender has nothing to reload.
    assert!(RECEIVER_UNIT
        .lines()
        .any(|line| line == "ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(!SENDER_UNIT.contains("ExecReload="));

    if !external::program(
        "systemd-analyze",
        "verifying the systemd units of deploy/",
        "apt-get install systemd",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (unit, text, installed, built) in [
        (
            "receiver.service",
            RECEIVER_UNIT,
            "/usr/local/bin/receiver",
            RECEIVER,
        ),
        (
            "sender.service",
            SENDER_UNIT,
            "/usr/local/bin/sender",
            SENDER,
        ),
    ] {
        // verify checks that ExecStart's program exists: the copy runs the one just built,
        // where the shipped unit names the installed one.
        assert!(text.contains(installed), "{unit} runs {installed}");
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace(installed, built)).unwrap();
        let verified = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&verified.stderr);
        // Unknown or misplaced settings are only warnings to verify: none is allowed.
        assert!(
            verified.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {unit}: {verified:?}"
        );
        // systemd's own measure of the sandbox: 2.0 at most on its 0–10 exposure scale.
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            security.status.success(),
            "systemd-analyze security {unit}: {}",
            String::from_utf8_lossy(&security.stdout)
        );
    }
}
