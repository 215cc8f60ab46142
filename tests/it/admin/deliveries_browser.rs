//! The Deliveries page during an outage, in a real headless Chromium against real `receiver`
//! processes, clicked as an admin would: the failing request is on top and coloured, the staged
//! batch event says when it goes; **Retry now** sends the head at once although its next retry
//! was an hour away; **Resend** queues a delivered request again; **Recover** shows the count,
//! then queues the expired requests again once confirmed. Screenshots go to
//! `target/admin-screenshots/`, and the outage's page to `docs/deliveries.png`.

use std::time::Duration;

use serde_json::Value;

use super::browser::{receiver, shot, status};
use crate::support::admin::AdminProcess;
use crate::support::browser::{self, Browser};
use crate::support::receiver::free_addr;

/// The requests table's rows whose state cell says `state`.
fn rows_in(state: &str) -> String {
    format!(
        "//table[@aria-label='Requests']/tbody/tr[starts-with(@aria-label, 'Request msg_') and td[normalize-space()='{state}']]"
    )
}

/// Opens `url` until `xpath` shows (a page that does not refresh itself: nothing pending).
fn reload_until(browser: &Browser, url: &str, xpath: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        browser.goto(url);
        if browser.try_find(xpath).is_some() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{xpath} never showed at {url}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_deliveries_page_shows_the_outage_and_retries_resends_and_recovers() {
    if !browser::available("deliveries browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    // Retries an hour apart, batches an hour apart: only Retry now makes the head go sooner.
    let hourly = [
        "--retry-initial",
        "1h",
        "--retry-max",
        "1h",
        "--poll-interval",
        "20ms",
        "--batch-interval",
        "1h",
        "--response-timeout",
        "2s",
    ];
    let admin = runtime.block_on(AdminProcess::start_with_numbers(&state, &hourly, &[]));
    let crm_addr = free_addr();
    let url = format!("http://{crm_addr}/webhook");
    let (code, added, _) = admin.cli(&[
        "webhooks",
        "add",
        "--name",
        "CRM sync",
        "--url",
        &url,
        "--events",
        "COURSE_ENROLLMENT,COURSE_COMPLETED_BATCH",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let id = serde_json::from_str::<Value>(&added).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (event, count) in [("COURSE_ENROLLMENT", "3"), ("COURSE_COMPLETED_BATCH", "1")] {
        let (code, _, stderr) = admin.cli(&["trigger", event, "--count", count, "--enqueue-only"]);
        assert_eq!(code, Some(0), "{stderr}");
    }
    let (_, listed, _) = admin.cli(&["deliveries", "list", "--webhook", &id, "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("JSON");
    let oldest = listed.last().expect("a request")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    let browser = Browser::start(&downloads);
    browser.goto(&admin.url());
    let page = format!("http://{}/webhooks/{id}/deliveries", admin.addr);
    browser.goto(&page);
    // The failing request is on top: the oldest, holding the queue, with its refusal; the
    // others wait behind it; it is coloured apart.
    let head = "//table[@aria-label='Requests']/tbody/tr[1]";
    let holding = browser.wait_for(
        &format!(
            "{head}[@aria-label='Request {oldest}' and td[normalize-space()='pending: holding the queue'] and td[contains(., 'refused')]]"
        ),
        Duration::from_secs(15),
    );
    let waiting = browser.wait_for(
        &rows_in("pending: waits behind the head"),
        Duration::from_secs(5),
    );
    assert_ne!(
        browser.css(&holding, "background-color"),
        browser.css(&waiting, "background-color"),
        "the request holding the queue is coloured apart"
    );
    // Its next attempt is an hour away.
    browser.wait_for(
        &format!("{head}/td[time and contains(., 'min)')]"),
        Duration::from_secs(1),
    );
    status(&browser, "Requests are pending");
    // The staged batch event, and when it goes.
    browser.wait_for(
        "//table[@aria-label='Staged batch events']//tr[td[normalize-space()='COURSE_COMPLETED_BATCH'] and td/time]",
        Duration::from_secs(5),
    );
    shot(&browser, "deliveries-outage");
    browser::publish_screenshot(&browser, "deliveries.png");

    // The receiver is back: Retry now sends the head at once, and the rest follow.
    let (crm, _) = receiver(dir.path(), "crm", crm_addr, &[]);
    browser.click_to_navigate_fresh(&format!("{head}//button[normalize-space()='Retry now']"));
    status(&browser, "The request holding the queue goes again now");
    browser.wait_for(
        &format!("({})[3]", rows_in("delivered")),
        Duration::from_secs(20),
    );

    // Resend a delivered request: queued again under its webhook-id, and delivered.
    browser.click_to_navigate_fresh(&format!(
        "//tr[@aria-label='Request {oldest}']//button[normalize-space()='Resend']"
    ));
    status(&browser, &format!("Queued {oldest} again"));
    reload_until(
        &browser,
        &page,
        &format!(
            "{}[@aria-label='Request {oldest}' and td[contains(., 'queued again (copy of')]]",
            rows_in("delivered")
        ),
    );
    shot(&browser, "deliveries-resent");
    drop(browser);
    runtime.block_on(admin.stop());
    drop(crm);

    // Retention of two seconds and the receiver down: new requests expire, the webhook is
    // disabled. Recover shows the count first, then queues them again.
    let short = [
        "--retention",
        "2s",
        "--retry-initial",
        "100ms",
        "--retry-max",
        "200ms",
        "--poll-interval",
        "20ms",
        "--batch-interval",
        "1h",
        "--response-timeout",
        "2s",
    ];
    let admin = runtime.block_on(AdminProcess::start_with_numbers(&state, &short, &[]));
    let (code, _, stderr) = admin.cli(&[
        "trigger",
        "COURSE_ENROLLMENT",
        "--count",
        "2",
        "--enqueue-only",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let browser = Browser::start(&downloads);
    browser.goto(&admin.url());
    let page = format!("http://{}/webhooks/{id}/deliveries", admin.addr);
    reload_until(
        &browser,
        &page,
        "//dd[starts-with(normalize-space(), 'Disabled at the end of retention')]",
    );
    let (_, counted, _) = admin.cli(&[
        "deliveries",
        "recover",
        "--webhook",
        &id,
        "--dry-run",
        "--json",
    ]);
    let counted: Value = serde_json::from_str(&counted).expect("JSON");
    let requests = counted["requests"].as_u64().expect("a count");
    assert!(requests >= 2, "{counted}");
    browser.wait_for(
        &format!("//section[@aria-label='Recover']//p[starts-with(normalize-space(), '{requests} expired requests')]"),
        Duration::from_secs(5),
    );
    let (crm, _) = receiver(dir.path(), "crm", crm_addr, &[]);
    let (code, _, stderr) = admin.cli(&["webhooks", "activate", &id]);
    assert_eq!(code, Some(0), "{stderr}");
    browser.click_to_navigate(&browser.button("Recover"));
    status(
        &browser,
        &format!(
            "{requests} expired requests ({} events) of CRM sync will be queued again",
            counted["events"]
        ),
    );
    shot(&browser, "recover-confirmation");
    browser.click_to_navigate(&browser.button(&format!("Recover {requests} requests")));
    status(&browser, &format!("Queued {requests} requests"));
    // The copies are delivered: with the one resent before, every copy is.
    browser.wait_for(
        &format!(
            "({}[td[contains(., 'queued again (copy of')]])[{}]",
            rows_in("delivered"),
            requests + 1
        ),
        Duration::from_secs(20),
    );
    shot(&browser, "deliveries-recovered");
    drop(browser);
    drop(crm);
    runtime.block_on(admin.stop());
}
