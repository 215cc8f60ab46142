//! The Integration Admin pages in a real headless Chromium, clicked through as an admin
//! would, controls found by role, label and text, against real `receiver` processes: every
//! flow of the seed. Screenshots of each page go to `target/admin-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::support::admin::AdminProcess;
use crate::support::browser::{self, Browser};
use crate::support::receiver::{free_addr, run_cli, Process};

/// A `receiver listen` on `addr` with its own store and the given auth flags.
pub(super) fn receiver(
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    auth: &[&str],
) -> (Process, PathBuf) {
    let store = dir.join(format!("{name}.db"));
    let store_arg = format!("sqlite:{}", store.display());
    let listen = addr.to_string();
    let mut args = vec![
        "listen", "--listen", &listen, "--path", "/webhook", "--store", &store_arg, "--ui", "off",
        "--output", "quiet",
    ];
    args.extend_from_slice(auth);
    (Process::spawn(&args, &[]), store)
}

/// A receiver that verifies with the signature file at `file`.
fn signed_receiver(dir: &Path, name: &str, addr: SocketAddr, file: &Path) -> (Process, PathBuf) {
    let file = file.display().to_string();
    receiver(dir, name, addr, &["--signature-file", &file])
}

/// A signature file of the same scheme with a secret of its own.
fn other_secret_file(path: &Path) {
    let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let file = serde_json::json!({"version": 1, "webhookId": "wh_other", "webhookName": "other",
        "scheme": "standard-webhooks", "algorithm": "HMAC-SHA256", "toleranceSeconds": 300,
        "secrets": [{"secret": format!("whsec_{secret}"), "createdAt": "2026-01-01T00:00:00Z",
                     "expiresAt": null}]});
    std::fs::write(path, file.to_string()).expect("write the other file");
}

pub(super) fn shot(browser: &Browser, name: &str) {
    browser.screenshot(&browser::screenshots("admin-screenshots").join(format!("{name}.png")));
}

/// Waits for a status line starting with `text`.
pub(super) fn status(browser: &Browser, text: &str) {
    browser.wait_for(
        &format!("//*[@role='status' and starts-with(normalize-space(), '{text}')]"),
        Duration::from_secs(15),
    );
}

/// Waits for an alert starting with `text`.
fn alert(browser: &Browser, text: &str) {
    browser.wait_for(
        &format!("//*[@role='alert' and starts-with(normalize-space(), '{text}')]"),
        Duration::from_secs(15),
    );
}

/// Fills the Add webhook form (Name, Target URL, trigger events) and leaves it unsaved.
fn fill(browser: &Browser, name: &str, url: &str, events: &[&str]) {
    browser.type_into(&browser.field("Name"), name);
    browser.type_into(&browser.field("Target URL"), url);
    for event in events {
        browser.click(&browser.field(event));
    }
}

/// Opens the Edit page of the webhook named `name` from the list.
fn open_edit(browser: &Browser, admin: &AdminProcess, name: &str) {
    browser.goto(&format!("http://{}/", admin.addr));
    browser.click(&browser.link(name));
    browser.button("Test webhook");
}

/// Points the webhook being edited at `url` and saves.
fn retarget(browser: &Browser, url: &str) {
    browser.type_into(&browser.field("Target URL"), url);
    browser.click_to_navigate(&browser.button("Save"));
    status(browser, "Saved.");
}

#[test]
fn an_integration_admin_clicks_through_every_flow_in_chromium() {
    if !browser::available("admin browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    let admin = runtime.block_on(AdminProcess::start(&state));
    assert!(admin.first_line.starts_with("admin on http://127.0.0.1:"));
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    let browser = Browser::start(&downloads);
    let crm_addr = free_addr();
    let crm_url = format!("http://{crm_addr}/webhook");

    // Add webhook: a mistake is shown beside its field, in words.
    browser.goto(&admin.url());
    browser.click_to_navigate(&browser.button("Add webhook"));
    fill(
        &browser,
        "CRM sync",
        "ftp://crm.example.com/hook",
        &["COURSE_ENROLLMENT"],
    );
    browser.click_to_navigate(&browser.button("Save"));
    // The error is an alert right after the field, which names it as its description.
    let url_error = browser.wait_for(
        "//label[normalize-space()='Target URL']/following-sibling::*[@role='alert']",
        Duration::from_secs(5),
    );
    assert!(browser
        .text(&url_error)
        .contains("must start with http:// or https://"));
    let url_field = browser.field("Target URL");
    assert_eq!(browser.attribute(&url_field, "aria-invalid"), "true");
    assert_eq!(
        browser.attribute(&url_field, "aria-describedby"),
        browser.attribute(&url_error, "id")
    );
    shot(&browser, "add-webhook-error");

    // Fixed: a Signature webhook with two trigger events.
    browser.type_into(&url_field, &crm_url);
    browser.click(&browser.field("COURSE_COMPLETED"));
    browser.type_into(&browser.field("Description"), "first description");
    browser.click(&browser.field("Signature"));
    browser.click_to_navigate(&browser.button("Save"));
    status(&browser, "Saved.");
    let edit_url = browser.url();
    let id = edit_url
        .split("/webhooks/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .expect("the edit page's URL names the id")
        .to_owned();
    for (event, chosen) in [
        ("COURSE_ENROLLMENT", true),
        ("COURSE_COMPLETED", true),
        ("COURSE_UNENROLLMENT", false),
    ] {
        assert_eq!(
            browser.is_selected(&browser.field(event)),
            chosen,
            "{event}"
        );
    }
    assert!(browser.is_selected(&browser.field("Activation status")));

    // Download signature, and start the CRM's receiver with that file.
    browser.click(&browser.button("Download signature"));
    let file_name = format!("signature-{id}.json");
    let file = browser.downloaded(&file_name, Duration::from_secs(10));
    let parsed = verify::SignatureFile::from_json(&file).expect("a signature file");
    assert_eq!(
        (parsed.webhook_id.as_str(), parsed.secrets.len()),
        (id.as_str(), 1)
    );
    let page = browser.text(&browser.wait_for("//main", Duration::from_secs(1)));
    let secret = &parsed.secrets[0].secret;
    assert!(page.contains("whsec_… (fingerprint") && !page.contains(&secret[6..14]));
    let (crm, crm_store) =
        signed_receiver(dir.path(), "crm", crm_addr, &downloads.join(&file_name));
    // Test webhook: the receiver accepts it.
    browser.click_to_navigate(&browser.button("Test webhook"));
    status(&browser, "Test succeeded: answered 200");
    shot(&browser, "edit-tested");

    // Against a receiver with another secret: refused, with the auth hint.
    let other = dir.path().join("other.json");
    other_secret_file(&other);
    let (other_receiver, _) = signed_receiver(dir.path(), "other", free_addr(), &other);
    retarget(&browser, &format!("http://{}/webhook", other_receiver.addr));
    browser.click_to_navigate(&browser.button("Test webhook"));
    alert(&browser, "Test failed: answered 401");
    let hint = browser.wait_for(
        "//*[@role='alert' and starts-with(normalize-space(), 'Hint:')]",
        Duration::from_secs(5),
    );
    assert!(
        browser.text(&hint).contains("credentials"),
        "{}",
        browser.text(&hint)
    );
    retarget(&browser, &crm_url);

    // Edit the description.
    browser.type_into(&browser.field("Description"), "second description");
    browser.click_to_navigate(&browser.button("Save"));
    status(&browser, "Saved.");
    assert_eq!(
        browser.value(&browser.field("Description")),
        "second description"
    );

    // Retire and activate from the list's Activation status switch, each confirmed.
    browser.goto(&format!("http://{}/", admin.addr));
    let switch = "//button[@role='switch' and @aria-label='Activation status of CRM sync']";
    browser.click_to_navigate(&browser.wait_for(switch, Duration::from_secs(5)));
    browser.click_to_navigate(&browser.button("Retire"));
    let off = browser.wait_for(
        &format!("{switch}[@aria-checked='false']"),
        Duration::from_secs(5),
    );
    assert_eq!(browser.text(&off), "Inactive");
    assert_eq!(browser.computed_role(&off), "switch");
    let (_, shown, _) = admin.cli(&["webhooks", "show", &id, "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).expect("JSON")["status"],
        "retired"
    );
    browser.click_to_navigate(&browser.wait_for(switch, Duration::from_secs(5)));
    browser.click_to_navigate(&browser.button("Activate"));
    let on = browser.wait_for(
        &format!("{switch}[@aria-checked='true']"),
        Duration::from_secs(5),
    );
    assert_eq!(browser.text(&on), "Active");

    // Trigger an event while the CRM's receiver is down, and watch the attempts fail, then
    // succeed once it is back: the Deliveries page refreshes itself while requests are pending.
    drop(crm);
    browser.click(&browser.link("Trigger"));
    browser.choose(&browser.field("Event"), "COURSE_ENROLLMENT");
    browser.type_into(&browser.field("Count"), "2");
    browser.type_into(&browser.field("Field values"), "userId=42");
    browser.click_to_navigate(&browser.button("Trigger"));
    status(&browser, "Queued 2 events of COURSE_ENROLLMENT");
    shot(&browser, "trigger");
    browser.goto(&format!("http://{}/webhooks/{id}/deliveries", admin.addr));
    // The request holding the queue is the first row, says so, and shows the refusal.
    let head = "//table[@aria-label='Requests']/tbody/tr[1][td[normalize-space()='pending: holding the queue']]";
    browser.wait_for(
        &format!("{head}/td[contains(., 'refused')]"),
        Duration::from_secs(10),
    );
    status(&browser, "Requests are pending");
    shot(&browser, "deliveries-pending");
    let (crm, _) = signed_receiver(dir.path(), "crm", crm_addr, &downloads.join(&file_name));
    let delivered = "//table[@aria-label='Requests']/tbody/tr[starts-with(@aria-label, 'Request msg_') and td[normalize-space()='delivered']]";
    browser.wait_for(&format!("({delivered})[2]"), Duration::from_secs(20));
    browser.wait_for(
        &format!("({delivered})[1]//table[starts-with(@aria-label, 'Attempts of')]//td[normalize-space()='200']"),
        Duration::from_secs(1),
    );
    shot(&browser, "deliveries");
    let (code, events, stderr) = run_cli(
        &[
            "events",
            "list",
            "--store",
            &format!("sqlite:{}", crm_store.display()),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let events: Vec<Value> = serde_json::from_str(&events).expect("JSON");
    let triggered = events
        .iter()
        .filter(|event| {
            // Parsed, not searched: a random learner such as 4208458 also starts with 42.
            event["raw"].as_str().is_some_and(|raw| {
                serde_json::from_str::<Value>(raw).expect("event JSON")["data"]["userId"] == 42
            })
        })
        .count();
    assert_eq!(triggered, 2, "{events:#?}");

    // Rotate the secret: the receiver with the old file still accepts (both secrets sign),
    // and so does one given the new file.
    open_edit(&browser, &admin, "CRM sync");
    browser.type_into(&browser.field("Overlap"), "1h");
    browser.click_to_navigate(&browser.button("Rotate secret"));
    status(&browser, "Rotated: both secrets sign until");
    browser.wait_for(
        "//table[@aria-label='Secrets']/tbody/tr[2]",
        Duration::from_secs(1),
    );
    browser.click_to_navigate(&browser.button("Test webhook"));
    status(&browser, "Test succeeded: answered 200");
    browser.click(&browser.button("Download signature"));
    let rotated_name = format!("signature-{id} (1).json");
    let rotated = verify::SignatureFile::from_json(
        &browser.downloaded(&rotated_name, Duration::from_secs(10)),
    )
    .expect("the rotated file");
    assert_eq!(rotated.secrets.len(), 2);
    let (new_receiver, _) = signed_receiver(
        dir.path(),
        "new",
        free_addr(),
        &downloads.join(&rotated_name),
    );
    retarget(&browser, &format!("http://{}/webhook", new_receiver.addr));
    browser.click_to_navigate(&browser.button("Test webhook"));
    status(&browser, "Test succeeded: answered 200");
    drop(crm);

    // A Basic webhook, tested against a receiver that checks Basic.
    let (basic_receiver, _) = receiver(
        dir.path(),
        "basic",
        free_addr(),
        &["--basic-user", "crm", "--basic-password", "s3cret-pw"],
    );
    browser.goto(&format!("http://{}/webhooks/new", admin.addr));
    fill(
        &browser,
        "Reporting",
        &format!("http://{}/webhook", basic_receiver.addr),
        &["LEARNER_PROGRESS"],
    );
    browser.click(&browser.field("Basic"));
    browser.type_into(&browser.field("Username"), "crm");
    browser.type_into(&browser.field("Password"), "s3cret-pw");
    browser.click_to_navigate(&browser.button("Save"));
    status(&browser, "Saved.");
    browser.click_to_navigate(&browser.button("Test webhook"));
    status(&browser, "Test succeeded: answered 200");
    assert!(!browser
        .text(&browser.wait_for("//main", Duration::from_secs(1)))
        .contains("s3cret-pw"));

    // Up to 5 webhooks; then the page says so and a sixth is refused.
    for n in 3..=5 {
        browser.goto(&format!("http://{}/webhooks/new", admin.addr));
        fill(
            &browser,
            &format!("Extra {n}"),
            "http://127.0.0.1:9/hook",
            &["CI_STATS"],
        );
        browser.click(&browser.field("None"));
        browser.click_to_navigate(&browser.button("Save"));
        status(&browser, "Saved.");
    }
    browser.goto(&format!("http://{}/", admin.addr));
    status(&browser, "The limit of 5 webhooks is reached");
    assert!(browser
        .try_find("//button[normalize-space()='Add webhook' and @disabled]")
        .is_some());
    shot(&browser, "webhooks");
    browser::publish_screenshot(&browser, "admin.png");
    browser.goto(&format!("http://{}/webhooks/new", admin.addr));
    fill(&browser, "Sixth", "http://127.0.0.1:9/hook", &["CI_STATS"]);
    browser.click_to_navigate(&browser.button("Save"));
    let refused = browser.wait_for(
        "//*[@role='alert' and contains(., 'the most allowed is 5')]",
        Duration::from_secs(5),
    );
    assert!(browser.text(&refused).contains("5 webhooks are registered"));

    // Delete with a confirmation.
    browser.goto(&format!("http://{}/", admin.addr));
    browser.click(&browser.wait_for(
        "//tr[.//a[normalize-space()='Extra 5']]//a[normalize-space()='Delete']",
        Duration::from_secs(5),
    ));
    browser.wait_for(
        "//p[contains(., 'Delete the webhook')]",
        Duration::from_secs(5),
    );
    shot(&browser, "delete-confirmation");
    browser.click_to_navigate(&browser.button("Delete"));
    status(&browser, "The webhook was deleted.");
    assert!(browser
        .try_find("//a[normalize-space()='Extra 5']")
        .is_none());
    let (_, listed, _) = admin.cli(&["webhooks", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&listed)
            .expect("JSON")
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    drop(browser);
    drop((other_receiver, new_receiver, basic_receiver));
    runtime.block_on(admin.stop());
}

#[test]
fn the_forms_work_through_a_name_that_is_not_loopback() {
    if !browser::available("admin browser test") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    let admin = runtime.block_on(AdminProcess::start(&state));
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    // A plain-HTTP remote site to the browser (no Sec-Fetch-Site), 127.0.0.1 underneath.
    let browser = Browser::start_with_args(
        &downloads,
        &["--host-resolver-rules=MAP admin.test 127.0.0.1"],
    );
    browser.goto(&format!(
        "http://admin.test:{}/?token={}",
        admin.addr.port(),
        crate::support::admin::TOKEN
    ));
    browser.click_to_navigate(&browser.button("Add webhook"));
    fill(
        &browser,
        "By name",
        &format!("http://{}/webhook", free_addr()),
        &["COURSE_ENROLLMENT"],
    );
    browser.click_to_navigate(&browser.button("Save"));
    status(&browser, "Saved.");
    assert!(
        browser.url().starts_with("http://admin.test:"),
        "{}",
        browser.url()
    );
    let (_, listed, _) = admin.cli(&["webhooks", "list", "--json"]);
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed[0]["name"], "By name", "{listed}");

    drop(browser);
    runtime.block_on(admin.stop());
}
