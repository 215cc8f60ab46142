//! The inspector's forwarding: a request's page shows its job for each target with every
//! attempt, Retry and Skip act on them (from the inspector's own page only), the list filters
//! by forward state and says per target how many wait and which request holds the queue; on
//! both stores, and in a real Chromium driven as a person drives it.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use receiver::forward::{ForwardConfig, ForwardTarget, RetryPolicy};

use crate::support::browser::{self, Browser};
use crate::support::forwarding::named_envelope;
use crate::support::inspector::{Inspected, TOKEN};
use crate::support::receiver::{free_addr, request, send, wait_until, FakeApp};
use crate::support::store::{for_each_store, TestStore};

fn enrolment(id: &str) -> String {
    named_envelope(7, &[(id, "COURSE_ENROLLMENT")])
}

/// Forwarding to `targets` (`(events, URL)`) with a backoff of 20 ms to 200 ms.
fn forwarding(config: &mut receiver::Config, targets: &[(&str, String)]) {
    let targets = targets
        .iter()
        .map(|(events, url)| {
            let mut target = ForwardTarget::new(url.parse().unwrap());
            target.events = receiver::routing::EventSelector::parse(events).unwrap();
            target
        })
        .collect();
    let mut forward = ForwardConfig::to_targets(targets);
    forward.retry = RetryPolicy {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    config.forward = Some(forward);
}

/// The id of the job of `target` on the page of request `key` (from its Retry or Skip form,
/// or its heading).
fn job_on_page(page: &str, target: &str) -> i64 {
    let at = page
        .find(&format!("to <code>{target}</code>"))
        .unwrap_or_else(|| panic!("no job to {target} in {page}"));
    let heading = &page[..at];
    let start = heading.rfind("Job ").unwrap() + "Job ".len();
    heading[start..].trim().parse().unwrap()
}

for_each_store!(
    a_requests_page_shows_each_targets_job_and_its_attempts_and_acts_from_its_own_page_only
);

async fn a_requests_page_shows_each_targets_job_and_its_attempts_and_acts_from_its_own_page_only(
    test_store: TestStore,
) {
    let crm = FakeApp::start_at(free_addr(), 200).await;
    // The app's refusal carries markup: the page shows it as text.
    crm.answer_containing(
        "poison-1",
        400,
        r#"<script>alert(1)</script> cannot handle"#,
    );
    let archive = FakeApp::start_at(free_addr(), 200).await;
    let crm_url = format!("http://{}/crm", crm.addr);
    let archive_url = format!("http://{}/archive", archive.addr);
    let mut config = test_store.config();
    forwarding(
        &mut config,
        &[("COURSE_*", crm_url.clone()), ("*", archive_url.clone())],
    );
    let inspected = Inspected::start(config).await;
    for id in ["e1", "poison-1"] {
        assert_eq!(
            inspected.post(&[], enrolment(id)).await.status,
            StatusCode::OK
        );
    }
    assert!(archive.wait_acknowledged(2, Duration::from_secs(15)).await);
    // The archive's 200 reaches the app before its attempt is recorded: wait for both records.
    let parked = wait_until(Duration::from_secs(15), || async {
        let page = inspected.page("/requests/a2").await;
        page.contains("data-forward-state=\"parked\"")
            && page.contains("data-forward-state=\"forwarded\"")
    })
    .await;
    assert!(
        parked,
        "the refused request is parked, and forwarded to the archive"
    );

    let page = inspected.page("/requests/a2").await;
    assert!(
        page.contains("<h2 id=\"forwarding\">Forwarding</h2>"),
        "{page}"
    );
    // One job per target, each with its attempts.
    let crm_job = job_on_page(&page, &crm_url);
    let archive_job = job_on_page(&page, &archive_url);
    assert!(page.contains(&format!("<table aria-label=\"Attempts of job {crm_job}\">")));
    assert!(page.contains(&format!(
        "<table aria-label=\"Attempts of job {archive_job}\">"
    )));
    assert!(page.contains("<td>400 Bad Request</td>"), "{page}");
    assert!(page.contains("<td>200 OK</td>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt; cannot handle"),
        "the app's answer, escaped"
    );
    assert!(!page.contains("<script>alert(1)"));
    assert!(page.contains(&format!("action=\"/requests/a2/forward/{crm_job}/retry\"")));
    assert!(
        !page.contains(&format!("/forward/{archive_job}/")),
        "no button for a forwarded job"
    );

    // The list: the overview counts the parked job; the filter finds its request.
    let list = inspected.page("/").await;
    assert!(
        list.contains("<table aria-label=\"Forwarding targets\">"),
        "{list}"
    );
    assert!(list.contains(&format!("<code>{crm_url}</code>")), "{list}");
    let parked_only = inspected.page("/?forwarding=parked").await;
    assert!(
        parked_only.contains("poison-1") && !parked_only.contains(">e1<"),
        "{parked_only}"
    );
    let forwarded = inspected.page("/?forwarding=forwarded").await;
    assert!(forwarded.contains(">e1<") && forwarded.contains("poison-1"));
    let bad = inspected.get("/?forwarding=stuck").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&bad.body).contains("none of pending, parked, skipped, forwarded")
    );

    // Another site's form is refused, and nothing changes.
    let path = format!("/requests/a2/forward/{crm_job}/retry");
    let cross_site = send(
        inspected.ui,
        request(
            inspected.ui,
            Method::POST,
            &path,
            &[
                ("cookie", &inspected.cookie),
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://elsewhere.example"),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert!(inspected
        .page("/requests/a2")
        .await
        .contains("data-forward-state=\"parked\""));

    // From its own page: back to the request, which says what was done; delivered soon.
    crm.forget("poison-1");
    let retried = inspected.post_form(&path, &[]).await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    let location = retried.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/requests/a2?forwarding=retried&job={crm_job}#forwarding")
    );
    let notice = inspected.page(location.split('#').next().unwrap()).await;
    assert!(
        notice.contains(&format!(
            "<p role=\"status\">Job {crm_job} is back at the end of its queue.</p>"
        )),
        "{notice}"
    );
    assert!(crm.wait_acknowledged(2, Duration::from_secs(15)).await);
    let delivered = wait_until(Duration::from_secs(10), || async {
        !inspected
            .page("/requests/a2")
            .await
            .contains("data-forward-state=\"parked\"")
    })
    .await;
    assert!(delivered);
    // A forwarded job cannot be skipped: the page says so, nothing changes.
    let refused = inspected
        .post_form(&format!("/requests/a2/forward/{archive_job}/skip"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&refused.body).contains("forwarded already"));
    // A job of another request is not this page's to change.
    let elsewhere = inspected
        .post_form(&format!("/requests/a1/forward/{crm_job}/skip"), &[])
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    inspected.stop().await;
}

/// The XPath of the list row showing `event_id`.
fn row_of(event_id: &str) -> String {
    format!("//table[@aria-label='Requests']//tr[.//code[normalize-space()='{event_id}']]")
}

/// The XPath of the `label` button of job of request `key` to `target`'s job.
fn job_button(target: &str, label: &str) -> String {
    format!(
        "//article[.//h3/code[normalize-space()='{target}']]//button[normalize-space()='{label}']"
    )
}

#[test]
fn a_person_retries_a_parked_request_and_skips_the_one_holding_the_queue_in_chromium() {
    if !browser::available("inspector forwarding browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime.block_on(FakeApp::start_at(free_addr(), 200));
    app.answer_containing("poison-1", 400, r#"{"error":"unknown course"}"#);
    app.answer_containing("stuck-1", 503, "maintenance");
    let url = format!("http://{}/crm", app.addr);
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    forwarding(&mut config, &[("*", url.clone())]);
    let inspected = runtime.block_on(Inspected::start(config));
    for id in ["e1", "poison-1", "stuck-1", "e2"] {
        let reply = runtime.block_on(inspected.post(&[], enrolment(id)));
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert!(runtime.block_on(app.wait_acknowledged(1, Duration::from_secs(15))));
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);

    // The list says which request holds the CRM's queue, and why.
    browser.goto(&format!("http://{}/?token={TOKEN}", inspected.ui));
    let holder = "//table[@aria-label='Forwarding targets']//td[contains(normalize-space(), 'holds the queue') and contains(., 'the app answered 503 Service Unavailable')]";
    let held = (0..100).any(|_| {
        browser.goto(&format!("http://{}/", inspected.ui));
        browser.try_find(holder).is_some() || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(held, "the overview names the request that holds the queue");
    let head = browser.wait_for(holder, Duration::from_secs(1));
    assert!(
        browser.text(&head).contains("request a3"),
        "{}",
        browser.text(&head)
    );
    browser.screenshot(&browser::screenshot_dir().join("forwarding-overview.png"));

    // Filter by Forwarding: parked finds the refused request.
    let select = browser.field("Forwarding");
    browser.choose(&select, "parked");
    browser.click_to_navigate(&browser.button("Filter"));
    assert!(
        browser.url().contains("forwarding=parked"),
        "{}",
        browser.url()
    );
    browser.wait_for(&row_of("poison-1"), Duration::from_secs(5));
    assert!(browser.try_find(&row_of("e1")).is_none());

    // Its page: the attempt, the app's answer; Retry (the app takes it now).
    let row_link = browser.wait_for(
        &format!("{}//a", row_of("poison-1")),
        Duration::from_secs(5),
    );
    browser.click_to_navigate(&row_link);
    browser.wait_for(
        "//table[starts-with(@aria-label, 'Attempts of job')]//td[normalize-space()='400 Bad Request']",
        Duration::from_secs(5),
    );
    browser.wait_for(
        "//table[starts-with(@aria-label, 'Attempts of job')]//pre[normalize-space()='{\"error\":\"unknown course\"}']",
        Duration::from_secs(1),
    );
    app.forget("poison-1");
    browser
        .click_to_navigate(&browser.wait_for(&job_button(&url, "Retry"), Duration::from_secs(5)));
    browser.wait_for(
        "//*[@role='status' and contains(normalize-space(), 'is back at the end of its queue')]",
        Duration::from_secs(5),
    );
    // It waits behind the request that holds the queue.
    browser.wait_for(
        "//dd[@data-forward-state='pending']",
        Duration::from_secs(1),
    );
    browser.screenshot(&browser::screenshot_dir().join("forwarding-retried.png"));

    // The request holding the queue: its failures, then Skip; the queue goes on.
    browser.goto(&format!("http://{}/requests/a3", inspected.ui));
    browser.wait_for(
        "//dd[normalize-space()='the app answered 503 Service Unavailable']",
        Duration::from_secs(5),
    );
    browser.wait_for("//dt[normalize-space()='Next try']", Duration::from_secs(1));
    browser.click_to_navigate(&browser.wait_for(&job_button(&url, "Skip"), Duration::from_secs(5)));
    browser.wait_for(
        "//*[@role='status' and contains(normalize-space(), 'is skipped; its queue goes on without it')]",
        Duration::from_secs(5),
    );
    browser.wait_for(
        "//dd[@data-forward-state='skipped']",
        Duration::from_secs(1),
    );
    assert!(browser.try_find(&job_button(&url, "Skip")).is_none());
    browser.wait_for(&job_button(&url, "Retry"), Duration::from_secs(1));
    assert!(runtime.block_on(app.wait_acknowledged(3, Duration::from_secs(15))));
    assert_eq!(
        app.acknowledged_bodies(),
        ["e1", "e2", "poison-1"]
            .iter()
            .map(|id| Bytes::from(enrolment(id)))
            .collect::<Vec<_>>(),
        "the queue went on in order, the retried request last"
    );
    browser.goto(&format!("http://{}/requests/a2", inspected.ui));
    let forwarded = (0..50).any(|_| {
        browser.goto(&format!("http://{}/requests/a2", inspected.ui));
        browser
            .try_find("//dd[@data-forward-state='forwarded']")
            .is_some()
            || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
    });
    assert!(forwarded, "the retried request shows forwarded");
    browser.screenshot(&browser::screenshot_dir().join("forwarding-detail.png"));
    drop(browser);
    runtime.block_on(inspected.stop());
}
