//! The Add webhook / Edit form of issue 24 in a real headless Chromium, against real
//! `receiver` processes, clicked as an Integration Admin would: every error of an empty form at
//! once; only the chosen method's fields shown; Basic tested before Save (2xx, then 401 with
//! the hint against wrong credentials) with the typed password kept out of the page, then
//! saved; Edit tested with a new Target URL on screen; and retire through its confirmation.
//! The Signature journey before Save (download, receiver, test, save, trigger) is the README's
//! quick start, clicked by `quick_start.rs`. Screenshots go to `docs/` for the README.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::admin::AdminProcess;
use crate::support::browser::{self, Browser, Element};
use crate::support::receiver::{free_addr, run_cli, Process};

/// A `receiver listen` on `addr` with its own store, checking Basic credentials.
fn basic_receiver(dir: &Path, name: &str, addr: SocketAddr) -> (Process, PathBuf) {
    let store = dir.join(format!("{name}.db"));
    let store_arg = format!("sqlite:{}", store.display());
    let listen = addr.to_string();
    let process = Process::spawn(
        &[
            "listen",
            "--listen",
            &listen,
            "--path",
            "/webhook",
            "--store",
            &store_arg,
            "--ui",
            "off",
            "--output",
            "quiet",
            "--basic-user",
            "crm",
            "--basic-password",
            "s3cret-pw",
        ],
        &[],
    );
    (process, store)
}

/// How many events a receiver's store holds.
fn stored_events(store: &Path) -> usize {
    let (code, out, stderr) = run_cli(
        &[
            "events",
            "list",
            "--store",
            &format!("sqlite:{}", store.display()),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str::<Vec<Value>>(&out)
        .expect("JSON")
        .len()
}

/// The element with this id, shown or not (a hidden one has no accessible name to find it by).
fn by_id(browser: &Browser, id: &str) -> Element {
    browser.wait_for(&format!("//*[@id='{id}']"), Duration::from_secs(5))
}

/// Waits for a line with `role` (`status` or `alert`) starting with `text`.
pub(super) fn says(browser: &Browser, role: &str, text: &str) -> Element {
    browser.wait_for(
        &format!("//*[@role='{role}' and starts-with(normalize-space(), '{text}')]"),
        Duration::from_secs(15),
    )
}

/// The error shown beside the field labelled `label`.
fn error_beside(browser: &Browser, label: &str) -> String {
    let field = browser.field(label);
    let described = browser.attribute(&field, "aria-describedby");
    assert!(!described.is_empty(), "no error beside {label}");
    browser.text(&by_id(browser, &described))
}

/// Opens `url` again and again (bounded) until `xpath` matches: a list that changes as the
/// worker works.
fn reload_until(browser: &Browser, url: &str, xpath: &str, limit: Duration) -> Element {
    let deadline = Instant::now() + limit;
    loop {
        browser.goto(url);
        if let Some(element) = browser.try_find(xpath) {
            return element;
        }
        assert!(Instant::now() < deadline, "{xpath} never showed at {url}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_admin_tests_before_save_and_sees_every_error_and_state_in_chromium() {
    if !browser::available("admin forms browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    let admin = runtime.block_on(AdminProcess::start(&state));
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    let browser = Browser::start_with_args(&downloads, &["--window-size=1366,900"]);
    let (reporting, reporting_store) = basic_receiver(dir.path(), "reporting", free_addr());
    let reporting_url = format!("http://{}/webhook", reporting.addr);

    // Add webhook: Signature is chosen, so its fields show and Basic's do not (CSS alone).
    browser.goto(&admin.url());
    browser.click_to_navigate(&browser.button("Add webhook"));
    assert!(browser.is_displayed(&by_id(&browser, "scheme")));
    assert!(!browser.is_displayed(&by_id(&browser, "username")));
    assert!(!browser.is_displayed(&by_id(&browser, "password")));

    // Save on an empty form: every error at once, each beside its field, in plain words.
    browser.click_to_navigate(&browser.button("Save"));
    says(&browser, "alert", "3 fields need a change");
    for (label, says_what) in [
        ("Name", "Name is required"),
        ("Target URL", "Target URL is required"),
    ] {
        assert_eq!(error_beside(&browser, label), says_what);
    }
    let events_error = browser.text(&by_id(&browser, "events-error"));
    assert_eq!(
        events_error,
        "Choose at least one trigger event, or All events"
    );
    browser::publish_screenshot(&browser, "admin-errors.png");

    // Basic: Test before Save against a receiver that checks Basic.
    browser.type_into(&browser.field("Name"), "Reporting");
    browser.type_into(&browser.field("Target URL"), &reporting_url);
    browser.click(&browser.field("COURSE_COMPLETED"));
    browser.click(&browser.field("Basic"));
    assert!(browser.is_displayed(&by_id(&browser, "username")));
    assert!(!browser.is_displayed(&by_id(&browser, "scheme")));
    browser.type_into(&browser.field("Username"), "crm");
    browser.type_into(&browser.field("Password"), "s3cret-pw");
    browser.click_to_navigate(&browser.button("Test webhook"));
    says(&browser, "status", "Test succeeded: answered 200 OK");
    // Everything typed is kept; the password too, but never in the page.
    assert_eq!(browser.value(&browser.field("Name")), "Reporting");
    assert_eq!(browser.value(&browser.field("Target URL")), reporting_url);
    assert!(browser.is_selected(&browser.field("COURSE_COMPLETED")));
    assert!(browser.is_selected(&browser.field("Basic")));
    assert_eq!(browser.value(&browser.field("Username")), "crm");
    assert_eq!(browser.value(&browser.field("Password")), "");
    says(
        &browser,
        "status",
        "The password typed before is kept for this form",
    );
    assert!(!browser.source().contains("s3cret-pw"));
    browser::publish_screenshot(&browser, "admin-test-succeeded.png");
    // Wrong credentials: the failure reads as one, with the hint.
    browser.type_into(&browser.field("Password"), "wrong-pw");
    browser.click_to_navigate(&browser.button("Test webhook"));
    says(&browser, "alert", "Test failed: answered 401 Unauthorized");
    let hint = says(&browser, "alert", "Hint:");
    assert!(browser.text(&hint).contains("credentials"));
    browser::publish_screenshot(&browser, "admin-test-failed.png");
    // The right password again, and Save: nothing was registered before.
    let (_, listed, _) = admin.cli(&["webhooks", "list", "--json"]);
    assert_eq!(listed.trim(), "[]");
    browser.type_into(&browser.field("Password"), "s3cret-pw");
    browser.click_to_navigate(&browser.button("Save"));
    says(&browser, "status", "Saved.");
    browser.click_to_navigate(&browser.button("Test webhook"));
    says(&browser, "status", "Test succeeded: answered 200");
    let tested = stored_events(&reporting_store);
    assert_eq!(tested, 2, "two tests were accepted");

    // Edit: a new Target URL on screen is what Test uses, and nothing is saved.
    let (moved, moved_store) = basic_receiver(dir.path(), "moved", free_addr());
    let moved_url = format!("http://{}/webhook", moved.addr);
    browser.type_into(&browser.field("Target URL"), &moved_url);
    browser.click_to_navigate(&browser.button("Test webhook"));
    says(&browser, "status", "Test succeeded: answered 200");
    browser.wait_for(
        &format!("//section[@aria-label='Test result']//dd/code[normalize-space()='{moved_url}']"),
        Duration::from_secs(1),
    );
    assert_eq!(stored_events(&moved_store), 1, "the new URL got the test");
    assert_eq!(
        stored_events(&reporting_store),
        tested,
        "the saved URL got nothing"
    );
    let (_, shown, _) = admin.cli(&["webhooks", "list", "--json"]);
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(
        shown[0]["url"],
        reporting_url.as_str(),
        "a test saves nothing"
    );

    // Its receiver stops; triggered events wait, and the list shows what holds them up.
    drop(reporting);
    browser.click(&browser.link("Trigger"));
    browser.choose(&browser.field("Event"), "COURSE_COMPLETED");
    browser.type_into(&browser.field("Count"), "2");
    browser.click_to_navigate(&browser.button("Trigger"));
    says(
        &browser,
        "status",
        "Queued 2 events of COURSE_COMPLETED for 1 webhook",
    );
    browser.link("Reporting");
    let list = format!("http://{}/", admin.addr);
    reload_until(
        &browser,
        &list,
        "//td/span[@data-state='failing' and normalize-space()='Failing']",
        Duration::from_secs(20),
    );

    // Retire asks first, saying how many requests wait.
    let switch = "//button[@role='switch' and @aria-label='Activation status of Reporting']";
    browser.click_to_navigate(&browser.wait_for(switch, Duration::from_secs(5)));
    let question = browser.wait_for(
        "//main/p[starts-with(normalize-space(), 'Retire Reporting')]",
        Duration::from_secs(5),
    );
    assert!(browser.text(&question).contains("It is now Active"));
    browser.wait_for(
        "//main/p[contains(., 'requests wait in its queue: they stay there')]",
        Duration::from_secs(1),
    );
    browser::publish_screenshot(&browser, "admin-retire.png");
    browser.click_to_navigate(&browser.button("Retire"));
    says(&browser, "status", "Reporting is now Inactive");
    let off = browser.wait_for(
        &format!("{switch}[@aria-checked='false' and @data-state='inactive']"),
        Duration::from_secs(5),
    );
    assert_eq!(browser.text(&off), "Inactive");
    browser.wait_for(
        "//tr[.//a[normalize-space()='Reporting']]//span[@data-state='failing']",
        Duration::from_secs(1),
    );
    browser::publish_screenshot(&browser, "admin-states.png");

    drop(browser);
    drop(moved);
    runtime.block_on(admin.stop());
}
