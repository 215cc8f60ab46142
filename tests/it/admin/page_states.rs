//! What the admin pages say, over HTTP against a real `sender admin` on both stores (issue
//! 24): every error of a form at once in plain words, a Save refused for a change made
//! meanwhile, the address of a test result, the list's states and last delivery (the oldest
//! request still failing, staged batch events and when they go), the confirmation of a retire
//! or an activate with the requests waiting, and Trigger's report by name.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use common::on_each_store;

use super::before_save::{alerts, input_value};
use crate::sender::Harness;
use crate::support::admin::AdminProcess;
use crate::support::endpoint::{FakeEndpoint, Reply};

/// The text of the error beside field `id`, if there is one.
fn beside(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}-error\" role=\"alert\">");
    let start = html.find(&marker)? + marker.len();
    Some(super::before_save::unescape(
        html[start..].split("</p>").next().unwrap_or_default(),
    ))
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn a_form_shows_every_error_at_once_and_a_change_made_meanwhile(harness: Harness) {
    form_words(harness.location.clone()).await;
}
}

async fn form_words(state: String) {
    let admin = AdminProcess::start(&state).await;
    let cookie = admin.sign_in().await;

    // An empty Add webhook form: every field at fault says so at once, in plain words.
    let (_, page) = admin.page(&cookie, "/webhooks/new").await;
    let pending = input_value(&page, "pending");
    let empty = [
        ("pending", pending.as_str()),
        ("name", ""),
        ("url", ""),
        ("auth", "basic"),
        ("username", ""),
        ("password", ""),
    ];
    let refused = admin.post_form(&cookie, "/webhooks", &empty).await;
    let html = String::from_utf8_lossy(&refused.body).into_owned();
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    for (field, says) in [
        ("name", "Name is required"),
        ("url", "Target URL is required"),
        ("events", "Choose at least one trigger event, or All events"),
        ("username", "Username is required for Basic authentication"),
    ] {
        assert_eq!(
            beside(&html, field).as_deref(),
            Some(says),
            "{field}: {html}"
        );
    }
    assert!(html.contains("4 fields need a change"), "{html}");
    for alert in alerts(&html) {
        assert!(
            !alert.contains('`') && !alert.contains("--") && !alert.contains("sender "),
            "{alert:?} is not in plain words"
        );
    }
    // A URL typed wrong is said as such, without quoting it.
    let refused = admin
        .post_form(
            &cookie,
            "/webhooks",
            &[
                ("name", "x"),
                ("url", "crm.example.com/hook"),
                ("auth", "none"),
                ("events", "CI_STATS"),
            ],
        )
        .await;
    let html = String::from_utf8_lossy(&refused.body).into_owned();
    assert_eq!(
        beside(&html, "url").as_deref(),
        Some("Target URL needs http:// or https:// in front, such as https://crm.example.com/webhook")
    );
    assert!(
        html.contains("value=\"crm.example.com/hook\""),
        "kept: {html}"
    );

    // Changed meanwhile: the Edit form was read, then the command line retired the webhook.
    let added = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(json!({"name": "CRM sync", "url": "http://127.0.0.1:9/hook",
                "events": ["COURSE_ENROLLMENT"]})),
            201,
        )
        .await;
    let id = added["id"].as_str().expect("id").to_owned();
    let (_, page) = admin.page(&cookie, &format!("/webhooks/{id}")).await;
    let (version, read) = (input_value(&page, "version"), input_value(&page, "read"));
    let (code, _, stderr) = admin.cli(&["webhooks", "retire", &id]);
    assert_eq!(code, Some(0), "{stderr}");
    let typed = [
        ("version", version.as_str()),
        ("read", read.as_str()),
        ("name", "CRM sync"),
        ("description", "typed before the retire was seen"),
        ("url", "http://127.0.0.1:9/hook"),
        ("auth", "none"),
        ("events", "COURSE_ENROLLMENT"),
    ];
    let refused = admin
        .post_form(&cookie, &format!("/webhooks/{id}"), &typed)
        .await;
    let html = String::from_utf8_lossy(&refused.body).into_owned();
    assert_eq!(refused.status, StatusCode::CONFLICT, "{html}");
    assert!(
        html.contains("This webhook was changed meanwhile"),
        "{html}"
    );
    assert!(
        html.contains("<li>Activation status: Active → Inactive</li>"),
        "{html}"
    );
    assert!(
        html.contains(">typed before the retire was seen</textarea>"),
        "kept: {html}"
    );
    let (_, shown, _) = admin.cli(&["webhooks", "show", &id, "--json"]);
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["description"], "", "nothing was written");
    // The form now carries the version seen: Save again applies what was typed.
    let read_at = version;
    let (version, read) = (input_value(&html, "version"), input_value(&html, "read"));
    assert_ne!(version, read_at, "the version seen now");
    let again = [
        ("version", version.as_str()),
        ("read", read.as_str()),
        ("name", "CRM sync"),
        ("description", "typed before the retire was seen"),
        ("url", "http://127.0.0.1:9/hook"),
        ("auth", "none"),
        ("events", "COURSE_ENROLLMENT"),
    ];
    let saved = admin
        .post_form(&cookie, &format!("/webhooks/{id}"), &again)
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let (_, shown, _) = admin.cli(&["webhooks", "show", &id, "--json"]);
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["description"], "typed before the retire was seen");
    assert_eq!(
        shown["status"], "retired",
        "the switch was off in the form sent"
    );

    // The address of a test result, reloaded, leads back to the form and says why.
    let reloaded = admin
        .raw(
            Method::GET,
            &format!("/webhooks/{id}/test"),
            &[("cookie", &cookie)],
            "",
        )
        .await;
    assert_eq!(reloaded.status, StatusCode::SEE_OTHER);
    let location = reloaded.headers["location"]
        .to_str()
        .expect("text")
        .to_owned();
    assert_eq!(location, format!("/webhooks/{id}?done=test"));
    let (status, html) = admin.page(&cookie, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("A test result is shown once"), "{html}");
    let reloaded = admin
        .raw(
            Method::GET,
            "/webhooks/new/test",
            &[("cookie", &cookie)],
            "",
        )
        .await;
    assert_eq!(reloaded.headers["location"], "/webhooks/new?done=test");
    // No page at an address: an HTML page with the way back, not a bare 404.
    let (status, html) = admin.page(&cookie, "/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no page at this address") && html.contains("href=\"/\""));
    let (status, html) = admin.page(&cookie, "/webhooks/wh_gone").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no such webhook"), "{html}");
    admin.stop().await;
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn the_list_shows_what_holds_a_queue_up_and_asks_before_switching(harness: Harness) {
    list_states(&harness).await;
}
}

/// Polls (bounded) the API's list until `done` holds for the first webhook.
async fn listed_until(admin: &AdminProcess, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
        if done(&listed[0]) {
            return listed[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the list never got there: {listed:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn list_states(harness: &Harness) {
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(Reply::status(503));
    // Batches wait an hour here, so the staged events stay staged while the test looks.
    let admin = AdminProcess::start_changed(&harness.location, &[("--batch-interval", "1h")]).await;
    let cookie = admin.sign_in().await;
    let added = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(json!({"name": "CRM sync", "url": endpoint.url(),
                "events": ["COURSE_ENROLLMENT", "COURSE_COMPLETED_BATCH"]})),
            201,
        )
        .await;
    let id = added["id"].as_str().expect("id").to_owned();

    // Trigger names the webhook, with a link to where its requests show.
    let triggered = admin
        .post_form(
            &cookie,
            "/trigger",
            &[
                ("event", "COURSE_ENROLLMENT"),
                ("count", "2"),
                ("account", "1010"),
                ("set", ""),
            ],
        )
        .await;
    let html = String::from_utf8_lossy(&triggered.body).into_owned();
    assert!(
        html.contains(&format!(
            "Queued 2 events of COURSE_ENROLLMENT for 1 webhook: <a href=\"/webhooks/{id}/deliveries\">CRM sync</a>"
        )),
        "{html}"
    );
    assert!(
        !html.contains(&format!(">{id}<")),
        "named, not by id: {html}"
    );

    // The oldest request fails again and again; the newer one waits behind it, untried.
    let listed = listed_until(&admin, |webhook| {
        webhook["oldestFailing"]["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert_eq!(
        listed["lastDelivery"]["attempts"], 0,
        "the newest is untried: {listed:#}"
    );
    let (_, page) = admin.page(&cookie, "/").await;
    assert!(
        page.contains("<span class=\"state\" data-state=\"failing\">Failing</span> since")
            && page.contains(": 503 after")
            && page.contains("1 request behind it"),
        "{page}"
    );
    assert!(!page.contains("not tried yet"), "{page}");

    // A batch event: where it waits and when it goes.
    let triggered = admin
        .post_form(
            &cookie,
            "/trigger",
            &[
                ("event", "COURSE_COMPLETED_BATCH"),
                ("count", "2"),
                ("account", "1010"),
                ("set", ""),
            ],
        )
        .await;
    let html = String::from_utf8_lossy(&triggered.body).into_owned();
    assert!(
        html.contains("Staged 2 events of COURSE_COMPLETED_BATCH, a batch event, for 1 webhook")
            && html.contains("a batch interval (1h)")
            && html.contains(&format!(
                "<a href=\"/webhooks/{id}/deliveries\">CRM sync</a>: 2 batch events staged, sent as one request by "
            )),
        "{html}"
    );
    let listed = listed_until(&admin, |webhook| webhook["stagedEvents"] == 2).await;
    let due = listed["stagedDueAt"]
        .as_str()
        .expect("when they go")
        .to_owned();
    let due_ms = verify::timestamp::parse_iso_millis(&due).expect("ISO");
    let in_an_hour = verify::unix_now_ms() + 3_600_000;
    assert!(
        (in_an_hour - 60_000..=in_an_hour).contains(&due_ms),
        "{due} is not an hour after the staging"
    );
    let (_, page) = admin.page(&cookie, "/").await;
    assert!(
        page.contains("2 batch events staged</span>, sent as a batch by "),
        "{page}"
    );

    // Retire asks first, saying how many requests wait and what becomes of them.
    let version = listed["version"].to_string();
    let (status, page) = admin
        .page(
            &cookie,
            &format!("/webhooks/{id}/status?active=off&version={version}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Retire <strong>CRM sync</strong>")
            && page.contains(
                "2 requests and 2 staged batch events wait in its queue: they stay there"
            ),
        "{page}"
    );
    let (_, list) = admin.page(&cookie, "/").await;
    assert!(
        list.contains("data-state=\"active\""),
        "nothing switched before the confirmation"
    );
    let retired = admin
        .post_form(
            &cookie,
            &format!("/webhooks/{id}/status"),
            &[("version", &version), ("active", "off")],
        )
        .await;
    assert_eq!(retired.status, StatusCode::SEE_OTHER);
    let location = retired.headers["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let (_, list) = admin.page(&cookie, &location).await;
    assert!(
        list.contains(
            "CRM sync is now Inactive: nothing is delivered to it; 4 requests are waiting"
        ),
        "{list}"
    );
    assert!(list.contains("data-state=\"inactive\" aria-label=\"Activation status of CRM sync\">Inactive</button>"), "{list}");
    assert!(
        list.contains("; no attempt while it is not Active")
            && list.contains("2 batch events staged</span>, sent once it is Active again"),
        "a retired webhook's queue waits: {list}"
    );
    let (_, page) = admin
        .page(&cookie, &format!("/webhooks/{id}/status?active=on"))
        .await;
    assert!(
        page.contains("Activate <strong>CRM sync</strong>")
            && page
                .contains("wait in its queue: once it is active they are delivered, oldest first"),
        "{page}"
    );

    // Disabled by the sender at the end of retention: worded and coloured as such.
    harness
        .state
        .give_up(
            &sender::registry::WebhookId(id.clone()),
            "retention ended",
            verify::unix_now_ms(),
        )
        .expect("give up");
    let (_, list) = admin.page(&cookie, "/").await;
    assert!(
        list.contains("data-state=\"disabled\" aria-label=\"Activation status of CRM sync\" title=\"retention ended\">Disabled after failures</button>"),
        "{list}"
    );
    admin.stop().await;
}
