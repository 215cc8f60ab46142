//! The overview and the Data filter in a real headless Chromium (SPEC section 10), as a
//! support person uses them: find one learner's events by typing `userId=…` into **Data**
//! (the URL keeps it, a reload shows the same), and read the traffic at a glance from the
//! chart, one bar per minute whose counts, refused apart, add up to what was sent, updating
//! live. The test run writes the overview's picture the README shows, `docs/inspector-overview.png`.

use std::time::Duration;

use crate::support::browser::{self, Browser};
use crate::support::inspector::{Inspected, TOKEN};

fn body(id: &str, name: &str, user: i64, lo: &str) -> String {
    format!(
        r#"{{"accountId":1010,"events":[{{"eventId":"{id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","data":{{"userId":{user},"loId":"{lo}","loType":"course","enrollmentSource":"SELF_ENROLL"}}}}]}}"#
    )
}

/// The XPath of the list row showing `event_id`.
fn row_of(event_id: &str) -> String {
    format!("//table[@aria-label='Requests']//tr[.//code[normalize-space()='{event_id}']]")
}

#[test]
fn the_data_field_finds_a_learners_events_and_the_url_keeps_it() {
    if !browser::available("inspector Data filter in Chromium") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inspected = runtime.block_on(Inspected::start(receiver::Config::for_tests(
        dir.path().join("r.db"),
    )));
    for (id, name, user) in [
        ("mine-1", "COURSE_ENROLLMENT", 4_279_332),
        ("other-1", "COURSE_ENROLLMENT", 42_793_320),
        ("mine-2", "COURSE_COMPLETED", 4_279_332),
        ("other-2", "COURSE_COMPLETED", 7),
    ] {
        let reply = runtime.block_on(inspected.post(&[], body(id, name, user, "course:7374992")));
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);
    browser.goto(&format!("http://{}/?token={TOKEN}", inspected.ui));
    browser.wait_for(&row_of("other-2"), Duration::from_secs(5));

    let data = browser.field("Data");
    assert_eq!(
        browser.attribute(&data, "placeholder"),
        "e.g. userId=4279332"
    );
    browser.type_into(&data, "userId=4279332");
    browser.click_to_navigate(&browser.button("Filter"));
    browser.wait_for(&row_of("mine-2"), Duration::from_secs(5));
    let url = browser.url();
    assert!(url.contains("data=userId%3D4279332"), "{url}");
    let shown = |browser: &Browser| {
        ["mine-1", "mine-2", "other-1", "other-2"]
            .into_iter()
            .filter(|id| browser.try_find(&row_of(id)).is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(shown(&browser), ["mine-1", "mine-2"]);
    // The learner shows in each row.
    let row = browser.wait_for(&row_of("mine-1"), Duration::from_secs(1));
    assert!(browser
        .text(&row)
        .contains("userId 4279332 · loId course:7374992"));
    // The address keeps the search: opened again, the same rows, the field filled.
    browser.goto(&url);
    browser.wait_for(&row_of("mine-1"), Duration::from_secs(5));
    assert_eq!(shown(&browser), ["mine-1", "mine-2"]);
    assert_eq!(browser.value(&browser.field("Data")), "userId=4279332");

    drop(browser);
    runtime.block_on(inspected.stop());
}

/// The counts an overview bar's accessible name gives: "10:42 UTC: 5 accepted, 1 duplicate,
/// 2 refused" (or "…: no requests").
fn counts(label: &str) -> (u64, u64, u64) {
    if label.ends_with("no requests") {
        return (0, 0, 0);
    }
    let (_, counts) = label
        .split_once("UTC: ")
        .unwrap_or_else(|| panic!("{label}"));
    let number = |word: &str| {
        counts
            .split(", ")
            .find_map(|part| part.strip_suffix(&format!(" {word}")))
            .unwrap_or_else(|| panic!("no {word} in {label}"))
            .parse::<u64>()
            .unwrap()
    };
    (number("accepted"), number("duplicate"), number("refused"))
}

#[test]
fn the_overview_chart_has_a_bar_per_minute_adding_up_to_what_was_sent() {
    if !browser::available("inspector overview in Chromium") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inspected = runtime.block_on(Inspected::start(receiver::Config::for_tests(
        dir.path().join("r.db"),
    )));
    let names = [
        "COURSE_ENROLLMENT",
        "COURSE_COMPLETED",
        "LEARNER_PROGRESS",
        "COURSE_ENROLLMENT",
        "CERTIFICATION_ENROLLMENT",
    ];
    for (index, name) in names.iter().enumerate() {
        let id = format!("o-{index}");
        let reply = runtime.block_on(inspected.post(&[], body(&id, name, 1, "course:1")));
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    // A retry (a duplicate) and two refusals.
    let retry = runtime.block_on(inspected.post(&[], body("o-0", names[0], 1, "course:1")));
    assert_eq!(retry.status, http::StatusCode::OK);
    for bad in ["{not json", "not json either"] {
        let reply = runtime.block_on(inspected.post(&[], bad));
        assert_eq!(reply.status, http::StatusCode::BAD_REQUEST);
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);
    browser.goto(&format!("http://{}/?token={TOKEN}", inspected.ui));
    let bars_xpath = "//*[local-name()='svg' and @aria-label='Requests per minute']\
                      /*[local-name()='g' and @role='img']";
    // Refusals are kept just after their answers: the page counts them once they are.
    let totals = "//p[@data-totals][contains(., '5 accepted, 1 duplicate, 2 refused')]";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while browser.try_find(totals).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the overview counts all eight"
        );
        browser.goto(&format!("http://{}/", inspected.ui));
        browser.wait_for(bars_xpath, Duration::from_secs(5));
    }
    let bars = browser.find_all(bars_xpath);
    assert_eq!(bars.len(), 60, "a bar per minute of the last hour");
    let labels: Vec<String> = bars.iter().map(|bar| browser.computed_label(bar)).collect();
    let sum = labels
        .iter()
        .map(|label| counts(label))
        .fold((0, 0, 0), |(a, d, r), (accepted, duplicate, refused)| {
            (a + accepted, d + duplicate, r + refused)
        });
    assert_eq!(sum, (5, 1, 2), "{labels:?}");
    assert!(labels[0].ends_with("UTC: no requests"), "{labels:?}");
    // It follows what arrives, without a reload.
    for id in ["o-live-1", "o-live-2"] {
        let reply =
            runtime.block_on(inspected.post(&[], body(id, "COURSE_COMPLETED", 2, "course:2")));
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    browser.wait_for(
        "//p[@data-totals][contains(., '7 accepted, 1 duplicate, 2 refused')]",
        Duration::from_secs(10),
    );
    let labels: Vec<String> = browser
        .find_all(bars_xpath)
        .iter()
        .map(|bar| browser.computed_label(bar))
        .collect();
    let accepted: u64 = labels.iter().map(|label| counts(label).0).sum();
    assert_eq!(accepted, 7);
    browser.wait_for(
        "//table[@aria-label='Events by name']//td[normalize-space()='COURSE_COMPLETED']",
        Duration::from_secs(1),
    );
    browser.screenshot(&browser::screenshot_dir().join("overview.png"));
    browser::publish_screenshot(&browser, "inspector-overview.png");

    drop(browser);
    runtime.block_on(inspected.stop());
}
