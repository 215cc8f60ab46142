//! Test webhook and the signature before the first Save (SPEC section 8, issue 24), against a
//! real `sender admin` on both stores: through the JSON API (a pending signature, a test of a
//! webhook not registered, the add and the edit that keep its secret) and through the pages'
//! forms over HTTP (what a browser posts), where a typed password must come back neither lost
//! nor written into the page.

use std::time::Duration;

use base64::Engine as _;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use common::on_each_store;

use crate::sender::Harness;
use crate::support::admin::AdminProcess;
use crate::support::endpoint::FakeEndpoint;

/// The value of the hidden (or any) input `name` of a page, unescaped.
pub fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("the value ends") + start;
    unescape(&html[start..end])
}

/// HTML text back to what it says.
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The texts of every `role="alert"` paragraph of a page.
pub fn alerts(html: &str) -> Vec<String> {
    html.split("role=\"alert\"")
        .skip(1)
        .map(|rest| {
            let text = rest.split_once('>').map(|(_, text)| text).unwrap_or(rest);
            unescape(text.split("</").next().unwrap_or_default())
        })
        .collect()
}

/// A signature file from the body of a download.
fn signature_file(body: &[u8]) -> verify::SignatureFile {
    verify::SignatureFile::from_json(body).expect("a signature file")
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn the_api_tests_and_signs_before_save_and_the_save_keeps_the_secret(harness: Harness) {
    api_before_save(harness.location.clone()).await;
}
}

async fn api_before_save(state: String) {
    let endpoint = FakeEndpoint::start().await;
    let other = FakeEndpoint::start().await;
    let admin = AdminProcess::start(&state).await;

    // A secret for a webhook not saved yet, its file, and a test that signs with it.
    let pending = admin
        .json(
            Method::POST,
            "/api/pending-signatures",
            Some(json!({"name": "CRM sync"})),
            201,
        )
        .await;
    let pending_id = pending["id"].as_str().expect("id").to_owned();
    let file_path = format!("/api/pending-signatures/{pending_id}");
    let early = signature_file(&admin.call(Method::GET, &file_path, None).await.body);
    assert_eq!(
        (early.webhook_id.as_str(), early.webhook_name.as_str()),
        (pending["webhookId"].as_str().expect("id"), "CRM sync")
    );
    let body = json!({"name": "CRM sync", "url": endpoint.url(), "auth": "signature",
        "events": ["COURSE_ENROLLMENT"], "pendingSignature": pending_id});
    let tested = admin
        .json(
            Method::POST,
            "/api/test",
            Some(json!({"webhook": body})),
            200,
        )
        .await;
    assert_eq!(
        (tested["ok"].clone(), tested["status"].clone()),
        (json!(true), json!(200))
    );
    let received = endpoint.wait_for(1, Duration::from_secs(10)).await;
    let keyring = early.keyring().expect("keyring");
    keyring
        .verify(&received[0].headers, &received[0].body)
        .expect("the test verifies with the file got before Save");
    let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
    assert_eq!(listed, json!([]), "a test registers nothing");

    // Save keeps the secret and the id; the pending signature is gone with it.
    let added = admin
        .json(Method::POST, "/api/webhooks", Some(body.clone()), 201)
        .await;
    let id = added["id"].as_str().expect("id").to_owned();
    assert_eq!(id, pending["webhookId"].as_str().expect("id"));
    let saved = signature_file(
        &admin
            .call(Method::GET, &format!("/api/webhooks/{id}/signature"), None)
            .await
            .body,
    );
    assert_eq!(saved.secrets.len(), 1);
    assert_eq!(saved.secrets[0].secret, early.secrets[0].secret);
    admin.json(Method::GET, &file_path, None, 404).await;
    let again = admin
        .json(Method::POST, "/api/webhooks", Some(body.clone()), 422)
        .await;
    assert_eq!(again["field"], "pendingSignature", "{again}");

    // After Save the worker signs with that secret too.
    admin
        .json(
            Method::POST,
            "/api/trigger",
            Some(json!({"event": "COURSE_ENROLLMENT"})),
            202,
        )
        .await;
    let received = endpoint.wait_for(2, Duration::from_secs(20)).await;
    keyring
        .verify(&received[1].headers, &received[1].body)
        .expect("a delivery after Save verifies with the file got before it");

    // Edit: a test with unsaved changes uses them, and stores nothing.
    let tested = admin
        .json(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            Some(json!({"changes": {"url": other.url()}})),
            200,
        )
        .await;
    assert_eq!(tested["url"], other.url().as_str());
    other.wait_for(1, Duration::from_secs(10)).await;
    let shown = admin
        .json(Method::GET, &format!("/api/webhooks/{id}"), None, 200)
        .await;
    assert_eq!(shown["url"], endpoint.url().as_str(), "nothing was saved");
    let invalid = admin
        .json(
            Method::POST,
            &format!("/api/webhooks/{id}/test"),
            Some(json!({"changes": {"url": "ftp://x/y", "name": ""}})),
            422,
        )
        .await;
    assert_eq!(
        invalid["errors"].as_array().map(Vec::len),
        Some(2),
        "{invalid}"
    );

    // Edit to another scheme: a pending signature made for this webhook, kept by the edit.
    let stripe = admin
        .json(
            Method::POST,
            "/api/pending-signatures",
            Some(json!({"scheme": "stripe", "webhookId": id})),
            201,
        )
        .await;
    assert_eq!(stripe["webhookId"], id.as_str());
    let stripe_file = signature_file(
        &admin
            .call(
                Method::GET,
                &format!(
                    "/api/pending-signatures/{}",
                    stripe["id"].as_str().expect("id")
                ),
                None,
            )
            .await
            .body,
    );
    admin
        .json(
            Method::PATCH,
            &format!("/api/webhooks/{id}"),
            Some(json!({"scheme": "stripe", "pendingSignature": stripe["id"]})),
            200,
        )
        .await;
    let saved = signature_file(
        &admin
            .call(Method::GET, &format!("/api/webhooks/{id}/signature"), None)
            .await
            .body,
    );
    assert_eq!(saved.scheme, "stripe");
    assert_eq!(saved.secrets[0].secret, stripe_file.secrets[0].secret);

    // With 5 webhooks a test of a sixth still runs, and registers nothing.
    for n in 2..=5 {
        admin
            .json(
                Method::POST,
                "/api/webhooks",
                Some(
                    json!({"name": format!("hook {n}"), "url": "http://127.0.0.1:9/h",
                    "events": ["CI_STATS"]}),
                ),
                201,
            )
            .await;
    }
    let sixth = json!({"name": "sixth", "url": endpoint.url(), "events": ["CI_STATS"]});
    let tested = admin
        .json(
            Method::POST,
            "/api/test",
            Some(json!({"webhook": sixth})),
            200,
        )
        .await;
    assert_eq!(tested["ok"], true);
    let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(5));
    admin.stop().await;
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn the_add_form_tests_downloads_and_saves_with_what_was_typed(harness: Harness) {
    add_form(harness.location.clone()).await;
}
}

async fn add_form(state: String) {
    let endpoint = FakeEndpoint::start().await;
    let admin = AdminProcess::start(&state).await;
    let cookie = admin.sign_in().await;

    // The Add page generates its secret before Save.
    let (status, page) = admin.page(&cookie, "/webhooks/new").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Generated secret: <code>whsec_… (fingerprint "),
        "{page}"
    );
    let pending = input_value(&page, "pending");
    let url = endpoint.url();
    let signed = [
        ("pending", pending.as_str()),
        ("name", "CRM sync"),
        ("description", "typed, not saved"),
        ("url", url.as_str()),
        ("auth", "signature"),
        ("scheme", "standard-webhooks"),
        ("events", "COURSE_ENROLLMENT"),
        ("active", "on"),
    ];

    // Download signature, before Save: the file of the secret Test signs with.
    let download = admin
        .post_form(&cookie, "/webhooks/new/signature", &signed)
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert!(download.headers["content-disposition"]
        .to_str()
        .expect("text")
        .starts_with("attachment; filename=\"signature-wh_"));
    let file = signature_file(&download.body);
    assert_eq!(file.webhook_name, "CRM sync");
    let tested = admin
        .post_form(&cookie, "/webhooks/new/test", &signed)
        .await;
    let html = String::from_utf8_lossy(&tested.body).into_owned();
    assert_eq!(tested.status, StatusCode::OK, "{html}");
    assert!(
        html.contains("data-outcome=\"ok\"") && html.contains("Test succeeded: answered 200 OK in"),
        "{html}"
    );
    let received = endpoint.wait_for(1, Duration::from_secs(10)).await;
    file.keyring()
        .expect("keyring")
        .verify(&received[0].headers, &received[0].body)
        .expect("Test signs with the secret downloaded before Save");
    // Every value typed is still in the form, and its pending entry is the same.
    assert!(html.contains("value=\"CRM sync\"") && html.contains(">typed, not saved</textarea>"));
    assert_eq!(input_value(&html, "pending"), pending);
    let (_, listed, _) = admin.cli(&["webhooks", "list", "--json"]);
    assert_eq!(listed.trim(), "[]", "Test registered nothing");

    // Save keeps the secret: the file downloaded before Save is the webhook's.
    let saved = admin.post_form(&cookie, "/webhooks", &signed).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{saved:?}");
    let location = saved.headers["location"].to_str().expect("text").to_owned();
    assert_eq!(
        location,
        format!("/webhooks/{}?done=saved", file.webhook_id),
        "the webhook has the id the file names"
    );
    let stored = signature_file(
        &admin
            .raw(
                Method::GET,
                &format!("/webhooks/{}/signature.json", file.webhook_id),
                &[("cookie", &cookie)],
                "",
            )
            .await
            .body,
    );
    assert_eq!(stored.secrets[0].secret, file.secrets[0].secret);

    // Basic: a typed password is used by Test, kept for the form, and never in the page.
    let (_, page) = admin.page(&cookie, "/webhooks/new").await;
    let pending = input_value(&page, "pending");
    let password = "s3cret-pw-typed";
    let basic = |password: &str| -> Vec<(&'static str, String)> {
        vec![
            ("pending", pending.clone()),
            ("name", "Reporting".to_owned()),
            ("url", url.clone()),
            ("auth", "basic".to_owned()),
            ("username", "crm".to_owned()),
            ("password", password.to_owned()),
            ("events", "LEARNER_PROGRESS".to_owned()),
            ("active", "on".to_owned()),
        ]
    };
    let typed_pairs = basic(password);
    let typed: Vec<(&str, &str)> = typed_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let tested = admin.post_form(&cookie, "/webhooks/new/test", &typed).await;
    let html = String::from_utf8_lossy(&tested.body).into_owned();
    assert!(html.contains("Test succeeded"), "{html}");
    assert!(
        !html.contains(password),
        "the password is never written into the page"
    );
    assert!(
        html.contains("The password typed before is kept for this form"),
        "{html}"
    );
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("crm:{password}"))
    );
    let received = endpoint.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received[1].header("authorization"), Some(expected.as_str()));
    // Save with the Password field empty, as the page came back: the kept one is saved.
    let blank_pairs = basic("");
    let blank: Vec<(&str, &str)> = blank_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = admin.post_form(&cookie, "/webhooks", &blank).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{saved:?}");
    let id = saved.headers["location"]
        .to_str()
        .expect("text")
        .trim_start_matches("/webhooks/")
        .split('?')
        .next()
        .expect("id")
        .to_owned();
    admin
        .json(Method::POST, &format!("/api/webhooks/{id}/test"), None, 200)
        .await;
    let received = endpoint.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        received[2].header("authorization"),
        Some(expected.as_str()),
        "the saved webhook has the password typed before the test"
    );

    // Edit: Test uses the URL on screen, not the saved one, and saves nothing.
    let moved = FakeEndpoint::start().await;
    let (_, page) = admin.page(&cookie, &format!("/webhooks/{id}")).await;
    let version = input_value(&page, "version");
    let read = input_value(&page, "read");
    let moved_url = moved.url();
    let edited = [
        ("version", version.as_str()),
        ("read", read.as_str()),
        ("name", "Reporting"),
        ("url", moved_url.as_str()),
        ("auth", "basic"),
        ("username", "crm"),
        ("password", ""),
        ("events", "LEARNER_PROGRESS"),
        ("active", "on"),
    ];
    let tested = admin
        .post_form(&cookie, &format!("/webhooks/{id}/test"), &edited)
        .await;
    let html = String::from_utf8_lossy(&tested.body).into_owned();
    assert!(html.contains("Test succeeded"), "{html}");
    assert!(
        html.contains(&format!("<code>{moved_url}</code>")),
        "{html}"
    );
    let received = moved.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].header("authorization"), Some(expected.as_str()));
    assert_eq!(endpoint.received().len(), 3, "the saved URL got nothing");
    let (_, shown, _) = admin.cli(&["webhooks", "show", &id, "--json"]);
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["url"], url.as_str(), "a test saves nothing");

    // Edit from Basic to Signature: Download signature before Save, and Save keeps that key.
    let (_, page) = admin.page(&cookie, &format!("/webhooks/{id}")).await;
    let to_signature = [
        ("version", input_value(&page, "version")),
        ("read", input_value(&page, "read")),
        ("pending", input_value(&page, "pending")),
        ("name", "Reporting".to_owned()),
        ("url", url.clone()),
        ("auth", "signature".to_owned()),
        ("scheme", "svix".to_owned()),
        ("events", "LEARNER_PROGRESS".to_owned()),
        ("active", "on".to_owned()),
    ];
    let to_signature: Vec<(&str, &str)> =
        to_signature.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let download = admin
        .post_form(&cookie, &format!("/webhooks/{id}/signature"), &to_signature)
        .await;
    assert_eq!(download.status, StatusCode::OK);
    let early = signature_file(&download.body);
    assert_eq!(
        (early.webhook_id.as_str(), early.scheme.as_str()),
        (id.as_str(), "svix")
    );
    let saved = admin
        .post_form(&cookie, &format!("/webhooks/{id}"), &to_signature)
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{saved:?}");
    let stored = signature_file(
        &admin
            .call(Method::GET, &format!("/api/webhooks/{id}/signature"), None)
            .await
            .body,
    );
    assert_eq!(stored.secrets.len(), 1);
    assert_eq!(
        stored.secrets[0].secret, early.secrets[0].secret,
        "the Edit keeps the secret downloaded before its Save"
    );
    admin.stop().await;
}
