//! The README's quick start, run as written: its shell commands in their order (the release
//! binaries are this build's programs, the ports are free ones and the download folder is the
//! browser's), and its page steps clicked in a real Chromium: Add webhook with Signature,
//! Download signature before Save, the receiver started with that file, Test webhook (2xx)
//! before Save, Save, Trigger, and the events in the receiver and its inspector. The pictures
//! of the quick start are saved to `docs/` by this run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::browser_forms::says;
use crate::sender::Spawned;
use crate::support::browser::{self, Browser};
use crate::support::receiver::free_addr;

/// The shell commands of the README's "Quick start" section, in order: every line of its
/// `sh` blocks, comments and blank lines left out.
fn quick_start_commands() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("the README has a Quick start section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut commands = Vec::new();
    let mut block: Option<String> = None;
    for line in section.lines() {
        let trimmed = line.trim();
        if let Some(language) = trimmed.strip_prefix("```") {
            block = match block {
                None => Some(language.to_owned()),
                Some(_) => None,
            };
            continue;
        }
        if block.as_deref() == Some("sh") && !trimmed.is_empty() && !trimmed.starts_with('#') {
            commands.push(trimmed.to_owned());
        }
    }
    commands
}

/// A folder holding `sender` and `receiver`: this build's programs under the names the
/// README gives them.
fn release_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("target/release");
    std::fs::create_dir_all(&folder).expect("folder");
    for (name, built) in [
        ("sender", env!("CARGO_BIN_EXE_it-sender")),
        ("receiver", env!("CARGO_BIN_EXE_it-receiver")),
    ] {
        std::os::unix::fs::symlink(built, folder.join(name)).expect("link");
    }
    folder
}

/// A README command as this test runs it: in `work` (where `target/release/` is), the
/// download folder moved, more flags after it (the ports).
fn shell(work: &Path, downloads: &Path, command: &str, more: &str) -> Command {
    let command = command.replace("~/Downloads/", &format!("{}/", downloads.display()));
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(format!("exec {command} {more}"))
        .current_dir(work)
        .env("RUST_LOG", "error")
        .env_remove("SENDER_STATE")
        .env_remove("RECEIVER_STORE");
    shell
}

/// Waits (bounded) for a file `signature-wh_….json` in `folder`, complete.
fn downloaded_signature(folder: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = std::fs::read_dir(folder)
            .expect("downloads")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        let partial = names.iter().any(|name| name.ends_with(".crdownload"));
        if let Some(name) = names
            .iter()
            .find(|name| name.starts_with("signature-wh_") && name.ends_with(".json"))
        {
            if !partial {
                return folder.join(name);
            }
        }
        assert!(Instant::now() < deadline, "no signature file in {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let commands = quick_start_commands();
    let expected_starts = [
        "cargo build --release -p sender -p receiver",
        "target/release/sender --state sqlite:./sender.db admin",
        "target/release/receiver listen --signature-file ~/Downloads/signature-wh_*.json",
        "target/release/receiver events list --store sqlite:./receiver.db",
    ];
    assert_eq!(commands.len(), expected_starts.len(), "{commands:#?}");
    for (command, start) in commands.iter().zip(expected_starts) {
        assert!(command.starts_with(start), "{command:?} is not {start:?}…");
    }
    if !browser::available("quick start browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let work = dir.path().join("clone");
    let downloads = dir.path().join("Downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    // `cargo build --release`: the test build made the same programs already.
    release_folder(&work);

    // `sender admin`: its first line is the address to open.
    let mut admin = Spawned::spawn(&mut shell(
        &work,
        &downloads,
        &commands[1],
        "--listen 127.0.0.1:0",
    ));
    let first = runtime.block_on(admin.next_line(Duration::from_secs(20)));
    let address = first
        .strip_prefix("admin on ")
        .filter(|address| address.starts_with("http://127.0.0.1:") && address.contains("/?token="))
        .unwrap_or_else(|| panic!("the first line is {first:?}"))
        .to_owned();
    let browser = Browser::start_with_args(&downloads, &["--window-size=1366,900"]);

    // 1. Add webhook with Signature, and Download signature before Save.
    let webhook_addr = free_addr();
    let target = format!("http://{webhook_addr}/webhook");
    browser.goto(&address);
    browser.click_to_navigate(&browser.button("Add webhook"));
    browser.type_into(&browser.field("Name"), "CRM sync");
    browser.type_into(&browser.field("Target URL"), &target);
    browser.click(&browser.field("COURSE_ENROLLMENT"));
    assert!(
        browser.is_selected(&browser.field("Signature")),
        "chosen already"
    );
    browser.wait_for(
        "//p[starts-with(normalize-space(), 'Generated secret: whsec_')]",
        Duration::from_secs(1),
    );
    browser.click(&browser.button("Download signature"));
    let file = downloaded_signature(&downloads);
    let parsed = verify::SignatureFile::from_json(&std::fs::read(&file).expect("read"))
        .expect("a signature file");
    assert_eq!(parsed.webhook_name, "CRM sync");
    browser::publish_screenshot(&browser, "quickstart-add.png");

    // 2. The receiver, started with that file.
    let mut receiver = Spawned::spawn(&mut shell(
        &work,
        &downloads,
        &commands[2],
        &format!("--listen {webhook_addr} --ui 127.0.0.1:0"),
    ));
    let listening = runtime.block_on(receiver.next_line(Duration::from_secs(20)));
    assert_eq!(listening, format!("listening on {target}"));
    let inspector = runtime.block_on(receiver.next_line(Duration::from_secs(20)));
    let inspector = inspector
        .strip_prefix("inspector on ")
        .unwrap_or_else(|| panic!("the second line is {inspector:?}"))
        .to_owned();

    // 3. Test webhook before Save answers 200; Save keeps the secret of the file.
    browser.click_to_navigate(&browser.button("Test webhook"));
    says(&browser, "status", "Test succeeded: answered 200 OK");
    browser::publish_screenshot(&browser, "quickstart-tested.png");
    browser.click_to_navigate(&browser.button("Save"));
    says(&browser, "status", "Saved.");
    assert!(
        browser
            .url()
            .contains(&format!("/webhooks/{}", parsed.webhook_id)),
        "the webhook is the one the file names: {}",
        browser.url()
    );

    // 4. Trigger three events.
    browser.click(&browser.link("Trigger"));
    browser.choose(&browser.field("Event"), "COURSE_ENROLLMENT");
    browser.type_into(&browser.field("Count"), "3");
    browser.click_to_navigate(&browser.button("Trigger"));
    says(
        &browser,
        "status",
        "Queued 3 events of COURSE_ENROLLMENT for 1 webhook: CRM sync",
    );

    // 5. The receiver has the test event and the three, verified with the file.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = shell(&work, &downloads, &commands[3], "")
            .output()
            .expect("receiver events list");
        assert!(output.status.success(), "{output:?}");
        let listed = String::from_utf8_lossy(&output.stdout);
        if listed.matches("COURSE_ENROLLMENT").count() >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the events never arrived: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.goto(&inspector);
    browser.wait_for(
        "(//table[@aria-label='Requests']/tbody/tr[contains(., 'accepted')])[4]",
        Duration::from_secs(10),
    );
    browser::publish_screenshot(&browser, "quickstart-inspector.png");

    drop(browser);
    drop(receiver);
    drop(admin);
}
