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
        "(//table[@aria-label='Requests']/tbody/tr)[1][@aria-selected='true']",
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

    // Download its capture: what `receiver export` writes for it, named after the request
    // and its receive time.
    browser.click(&browser.link("Download capture"));
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
    let received: serde_json::Value = serde_json::from_str(first_line).unwrap();
    let received = received["receivedAt"].as_str().unwrap();
    let name = format!(
        "capture-a1-{}Z.jsonl",
        received[..19].replace(['-', ':'], "")
    );
    let downloaded = browser.downloaded(&name, Duration::from_secs(10));
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

#[test]
fn two_inspectors_side_by_side_in_one_browser_keep_their_own_cookies() {
    if !browser::available("inspector browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, token: &str| {
        runtime.block_on(Inspected::start_with(
            receiver::Config::for_tests(dir.path().join(format!("{name}.db"))),
            token,
            |_| {},
        ))
    };
    let first = start("a", "first-inspector-token-1");
    let second = start("b", "second-inspector-token-2");
    for (inspected, id) in [(&first, "first-1"), (&second, "second-1")] {
        let reply = runtime.block_on(inspected.post(&[], body(1010, id, "COURSE_ENROLLMENT")));
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);

    // Sign in to both, one after the other, in one profile.
    browser.goto(&format!(
        "http://{}/?token=first-inspector-token-1",
        first.ui
    ));
    browser.wait_for(&row_of("first-1"), Duration::from_secs(5));
    browser.goto(&format!(
        "http://{}/?token=second-inspector-token-2",
        second.ui
    ));
    browser.wait_for(&row_of("second-1"), Duration::from_secs(5));

    // Both still open without the token, live: the second did not sign the first out.
    for (inspected, id) in [(&first, "first-1"), (&second, "second-1")] {
        browser.goto(&format!("http://{}/", inspected.ui));
        browser.wait_for(&row_of(id), Duration::from_secs(5));
        browser.wait_for(
            "//*[@role='status' and starts-with(normalize-space(), 'Live')]",
            Duration::from_secs(10),
        );
    }
    let reply = runtime.block_on(first.post(&[], body(1010, "first-2", "COURSE_COMPLETED")));
    assert_eq!(reply.status, http::StatusCode::OK);
    browser.goto(&format!("http://{}/", first.ui));
    browser.wait_for(&row_of("first-2"), Duration::from_secs(5));

    // The browser holds one cookie per inspector (cookies ignore ports, so it sends both to
    // both); each opens its own inspector only.
    let mut cookies = browser.cookies();
    cookies.sort();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for (own, other) in [(&first, &second), (&second, &first)] {
        let name = format!("receiver_inspector_{}=", own.ui.port());
        let cookie = cookies
            .iter()
            .find(|cookie| cookie.starts_with(&name))
            .unwrap_or_else(|| panic!("no {name} in {cookies:?}"));
        let headers = [("cookie", cookie.as_str())];
        let at_own = runtime.block_on(own.get_bare("/", &headers));
        assert_eq!(at_own.status, http::StatusCode::OK);
        let at_other = runtime.block_on(other.get_bare("/", &headers));
        assert_eq!(at_other.status, http::StatusCode::UNAUTHORIZED, "{cookie}");
    }

    drop(browser);
    runtime.block_on(second.stop());
    runtime.block_on(first.stop());
}

#[test]
fn send_again_works_through_a_name_that_is_not_loopback() {
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
    let reply = runtime.block_on(first.post(&[], body(3030, "named-1", "COURSE_ENROLLMENT")));
    assert_eq!(reply.status, http::StatusCode::OK);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    // The name leads to 127.0.0.1, but the browser sees a plain-HTTP remote site, as with
    // `--ui 0.0.0.0:8081 --ui-token …` opened as http://box:8081/: no Sec-Fetch-Site there.
    let browser = Browser::start_with_args(
        &downloads,
        &["--host-resolver-rules=MAP inspector.test 127.0.0.1"],
    );
    browser.goto(&format!(
        "http://inspector.test:{}/?token={TOKEN}",
        first.ui.port()
    ));
    let row_link = browser.wait_for(&format!("{}//a", row_of("named-1")), Duration::from_secs(5));
    browser.click(&row_link);
    browser.wait_for(
        "//h2[normalize-space()='Diagnosis']",
        Duration::from_secs(5),
    );
    assert!(
        browser.url().starts_with("http://inspector.test:"),
        "{}",
        browser.url()
    );
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
    let stored_there = runtime.block_on(second.page("/"));
    assert!(stored_there.contains("named-1"), "{stored_there}");

    drop(browser);
    runtime.block_on(second.stop());
    runtime.block_on(first.stop());
}
