//! The inspector in a real headless Chromium, driven as a person drives it: open with the
//! token, watch requests arrive, move with the keyboard, filter, open a detail, download the
//! capture, send one request again to a second receiver. Screenshots of the list and the
//! detail go to `target/inspector-screenshots/`.

use std::time::Duration;

use crate::support::browser::{self, Browser};
use crate::support::inspector::{Inspected, TOKEN};
use crate::support::receiver::run_cli;

const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

fn body(account: i64, id: &str, name: &str) -> String {
    format!(
        r#"{{"accountId":{account},"events":[{{"eventId":"{id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","eventInfo":"1727414643000-047210-84242-0","data":{{"userId":4279332,"loId":"course:7374992","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateEnrolled":"2026-11-27T10:00:00.000Z"}}}}]}}"#
    )
}

/// The XPath of the list row showing `event_id`.
fn row_of(event_id: &str) -> String {
    format!("//table[@aria-label='Requests']//tr[.//code[normalize-space()='{event_id}']]")
}

#[test]
fn a_person_watches_filters_opens_downloads_and_sends_again_in_chromium() {
    if !browser::available("inspector browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = runtime.block_on(Inspected::start(receiver::Config::for_tests(
        dir.path().join("a.db"),
    )));
    let second = runtime.block_on(Inspected::start(receiver::Config::for_tests(
        dir.path().join("b.db"),
    )));
    for (account, id, name) in [
        (1010, "enrol-1", "COURSE_ENROLLMENT"),
        (2020, "done-1", "COURSE_COMPLETED"),
    ] {
        let reply =
            runtime.block_on(first.post(&[("webhook-id", "msg_browser")], body(account, id, name)));
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);

    // Open with the token; the live stream says it is on.
    browser.goto(&format!("http://{}/?token={TOKEN}", first.ui));
    browser.wait_for(&row_of("done-1"), Duration::from_secs(5));
    browser.wait_for(
        "//*[@role='status' and starts-with(normalize-space(), 'Live')]",
        Duration::from_secs(10),
    );

    // A request arrives: it shows on top without a reload.
    let reply = runtime.block_on(first.post(&[], body(1010, "live-1", "LEARNING_PATH_ENROLLMENT")));
    assert_eq!(reply.status, http::StatusCode::OK);
    browser.wait_for(&row_of("live-1"), Duration::from_secs(5));
    let top = browser.wait_for(
        "(//table[@aria-label='Requests']/tbody/tr)[1]",
        Duration::from_secs(1),
    );
    assert!(browser.text(&top).contains("live-1"), "newest on top");
    let table = browser.wait_for("//table[@aria-label='Requests']", Duration::from_secs(1));
    assert_eq!(browser.computed_role(&table), "table");
    browser.screenshot(&browser::screenshot_dir().join("list.png"));
    browser::publish_screenshot(&browser, "inspector.png");

    // Keyboard: j selects the first row, Enter opens it, Esc comes back.
    browser.press("j");
    browser.wait_for(
        "(//tbody/tr)[1][@aria-selected='true']",
        Duration::from_secs(2),
    );
    browser.press(ENTER);
    browser.wait_for(
        "//h2[starts-with(normalize-space(), 'Request a3')]",
        Duration::from_secs(5),
    );
    browser.press(ESCAPE);
    browser.wait_for(&row_of("enrol-1"), Duration::from_secs(5));

    // Filter by account: only that account's rows, and the URL keeps it.
    let account = browser.field("Account");
    browser.type_into(&account, "2020");
    browser.click(&browser.button("Filter"));
    browser.wait_for(
        "//input[@id='account' and @value='2020']",
        Duration::from_secs(5),
    );
    assert!(browser.url().contains("account=2020"), "{}", browser.url());
    browser.wait_for(&row_of("done-1"), Duration::from_secs(2));
    assert!(browser.try_find(&row_of("enrol-1")).is_none());
    browser.click(&browser.link("Clear filters"));

    // Open a detail from its row link.
    let row_link = browser.wait_for(&format!("{}//a", row_of("enrol-1")), Duration::from_secs(5));
    browser.click(&row_link);
    browser.wait_for(
        "//h2[normalize-space()='Diagnosis']",
        Duration::from_secs(5),
    );
    browser.wait_for(
        "//table[@aria-label='Events']//td[normalize-space()='new']",
        Duration::from_secs(1),
    );
    browser.screenshot(&browser::screenshot_dir().join("detail.png"));

    // Download its capture: what `receiver export` writes for it.
    browser.click(&browser.link("Download capture"));
    let downloaded = browser.downloaded("capture.jsonl", Duration::from_secs(10));
    let store = format!("sqlite:{}", dir.path().join("a.db").display());
    let (code, exported, _) = run_cli(
        &[
            "export",
            "--store",
            &store,
            "--account",
            "1010",
            "--until",
            "2100-01-01",
        ],
        &[],
    );
    assert_eq!(code, Some(0));
    let first_line = exported.lines().next().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&downloaded),
        format!("{first_line}\n")
    );

    // Send it again, verbatim, to the second receiver: stored there.
    let target = browser.field("Target URL");
    browser.type_into(&target, &format!("http://{}/webhook", second.addr));
    browser.click(&browser.wait_for(
        "//select[@id='mode']/option[starts-with(normalize-space(), 'Verbatim')]",
        Duration::from_secs(1),
    ));
    browser.click(&browser.button("Send again"));
    browser.wait_for(
        "//*[@role='status' and normalize-space()='Answered 200']",
        Duration::from_secs(10),
    );
    // The second receiver's inspector shows it.
    browser.goto(&format!("http://{}/?token={TOKEN}", second.ui));
    browser.wait_for(&row_of("enrol-1"), Duration::from_secs(5));
    let stored_there = runtime.block_on(second.page("/requests/a1"));
    assert!(stored_there.contains("enrol-1"));
    assert!(
        stored_there.contains("<td><code>webhook-id</code></td><td><code>msg_browser</code></td>")
    );

    drop(browser);
    runtime.block_on(second.stop());
    runtime.block_on(first.stop());
}
