//! What a CRM developer ran into in the inspector while answering "did learner 4279332's
//! course completion arrive, and when?" (issue 25), each item with its test, on both stores:
//! a refused request's events are not called duplicates, and so on down the list.

use std::time::Duration;

use http::StatusCode;
use verify::{Keyring, SignatureFile, SigningSecret};

use crate::support::inspector::Inspected;
use crate::support::receiver::{run_cli, wait_until};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(
    a_refused_requests_events_are_not_stored_never_duplicate,
    the_filters_hint_with_examples_and_say_when_nothing_matches,
    the_event_name_filter_matches_any_case_and_any_part,
    each_event_shows_its_learner_and_learning_object_in_the_list_and_the_detail,
    refusal_reasons_have_their_words_beside_the_code,
    send_again_re_signs_with_the_receivers_keys_by_default_and_keeps_the_form,
    capture_downloads_are_named_by_what_they_hold,
    the_data_filter_finds_a_learners_requests_and_the_url_keeps_it,
);

/// A receiver that checks Standard Webhooks signatures with `secret`, and its inspector.
async fn signed_receiver(store: &TestStore, secret: &SigningSecret) -> Inspected {
    let mut config = store.config();
    config.authentication =
        verify::Authentication::Signature(vec![Keyring::single(secret.clone())]);
    Inspected::start(config).await
}

/// One event of a course completion for `user`.
fn completion(event_id: &str, user: i64) -> String {
    format!(
        r#"{{"accountId":1010,"events":[{{"eventId":"{event_id}","eventName":"COURSE_COMPLETED","timestamp":"2026-11-27T10:00:00.000Z","data":{{"userId":{user},"loId":"course:7374992","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateCompleted":"2026-11-27T10:00:00.000Z","hasPassed":true}}}}]}}"#
    )
}

/// Waits until the store keeps `count` refused requests (they are written after the answer).
async fn refused_kept(store: &TestStore, count: i64) {
    let kept = wait_until(std::time::Duration::from_secs(10), || async {
        store.scalar("SELECT COUNT(*) FROM {refused}").await == count
    })
    .await;
    assert!(kept, "refused requests kept");
}

async fn a_refused_requests_events_are_not_stored_never_duplicate(store: TestStore) {
    let secret = SigningSecret::generate();
    let inspected = signed_receiver(&store, &secret).await;
    // Signed with another secret: refused, nothing stored.
    let forged = completion("e-forged-1", 4279332);
    let headers = Keyring::single(SigningSecret::generate()).sign_headers(
        "msg_forged",
        verify::unix_now(),
        forged.as_bytes(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let reply = inspected.post(&headers, forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    refused_kept(&store, 1).await;

    let page = inspected.page("/requests/r1").await;
    assert!(
        page.contains("<td><code>e-forged-1</code></td>"),
        "the event is listed: {page}"
    );
    assert!(
        page.contains("<td>not stored (refused)</td>"),
        "its state says it was not stored: {page}"
    );
    assert!(!page.contains("<td>duplicate</td>"), "{page}");
    // What the command line says about it agrees.
    let (code, _, stderr) = run_cli(
        &[
            "events",
            "show",
            "e-forged-1",
            "--store",
            &store.store_arg(),
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no stored event"), "{stderr}");
    inspected.stop().await;
}

/// The request keys of a list page's rows, top to bottom.
fn row_keys(page: &str) -> Vec<String> {
    page.split("<tr data-href=\"/requests/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The `href` of the link whose text is `text`, unescaped of `&amp;`.
fn link(page: &str, text: &str) -> String {
    let end = page
        .find(&format!(">{text}</a>"))
        .unwrap_or_else(|| panic!("no link {text} in {page}"));
    let start = page[..end].rfind("href=\"").unwrap() + 6;
    page[start..end]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// A body of one event of `name` for `user` (JSON text: `42` or `"42"`) in `lo`.
fn one(event_id: &str, name: &str, user: &str, lo: &str) -> String {
    format!(
        r#"{{"accountId":1010,"events":[{{"eventId":"{event_id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","data":{{"userId":{user},"loId":"{lo}","enrollmentSource":"SELF_ENROLL"}}}}]}}"#
    )
}

async fn the_filters_hint_with_examples_and_say_when_nothing_matches(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    let empty = inspected.page("/").await;
    assert!(empty.contains("No requests here yet."), "{empty}");
    // Every placeholder of the filters reads as an example, not as a filter set.
    let form = &empty[empty.find("aria-label=\"Filters\"").unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    let placeholders: Vec<&str> = form
        .split("placeholder=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(placeholders.len(), 6, "{form}");
    assert!(
        placeholders.iter().all(|hint| hint.starts_with("e.g. ")),
        "{placeholders:?}"
    );
    assert!(placeholders.contains(&"e.g. userId=4279332"));
    // Event name offers the catalogue.
    assert!(form.contains("list=\"event-names\""));
    for kind in verify::CATALOG {
        assert!(
            form.contains(&format!("<option value=\"{}\">", kind.name)),
            "{}",
            kind.name
        );
    }
    assert_eq!(
        inspected
            .post(&[], one("h1", "COURSE_ENROLLMENT", "1", "course:1"))
            .await
            .status,
        StatusCode::OK
    );
    let none = inspected.page("/?account=999").await;
    assert!(row_keys(&none).is_empty());
    assert!(none.contains("No request matches these filters."), "{none}");
    assert!(!none.contains("No requests here yet."));
    inspected.stop().await;
}

async fn the_event_name_filter_matches_any_case_and_any_part(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    for (id, name) in [
        ("n1", "COURSE_COMPLETED"),
        ("n2", "COURSE_COMPLETED_BATCH"),
        ("n3", "COURSE_ENROLLMENT"),
    ] {
        let reply = inspected.post(&[], one(id, name, "1", "course:1")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    for (typed, expected) in [
        ("completed", &["a2", "a1"][..]),
        ("COMPLETED", &["a2", "a1"]),
        ("course_completed_b", &["a2"]),
        ("Enrol", &["a3"]),
        ("COURSE_COMPLETED", &["a2", "a1"]),
        ("unenrollment", &[]),
    ] {
        let page = inspected
            .page(&format!(
                "/?event_name={}",
                common::web::encode_query_value(typed)
            ))
            .await;
        assert_eq!(row_keys(&page), expected, "{typed}");
    }
    inspected.stop().await;
}

async fn each_event_shows_its_learner_and_learning_object_in_the_list_and_the_detail(
    store: TestStore,
) {
    let inspected = Inspected::start(store.config()).await;
    let reply = inspected
        .post(
            &[],
            one("l1", "COURSE_COMPLETED", "4279332", "course:7374992"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // An event without a learner: CI_STATS has a learning object instance only.
    let stats = r#"{"accountId":1010,"events":[{"eventId":"s1","eventName":"CI_STATS","timestamp":1,"data":{"loInstanceId":"course:1_2","seatLimit":20}}]}"#;
    assert_eq!(inspected.post(&[], stats).await.status, StatusCode::OK);
    let list = inspected.page("/").await;
    assert!(
        list.contains(
            "COURSE_COMPLETED <code>l1</code> · userId <code>4279332</code> · loId <code>course:7374992</code>"
        ),
        "{list}"
    );
    assert!(list.contains("CI_STATS <code>s1</code></td>"), "{list}");
    let detail = inspected.page("/requests/a1").await;
    assert!(detail.contains(
        "<th scope=\"col\">Learner (userId)</th><th scope=\"col\">Learning object (loId)</th>"
    ));
    assert!(
        detail.contains("<td><code>l1</code></td><td><code>4279332</code></td><td><code>course:7374992</code></td><td>new</td>"),
        "{detail}"
    );
    let detail = inspected.page("/requests/a2").await;
    assert!(detail.contains("<td><code>s1</code></td><td></td><td></td><td>new</td>"));
    inspected.stop().await;
}

/// Standard Webhooks headers for `body`, signed with `secret` at `at_secs`.
fn signed(secret: &SigningSecret, body: &str, at_secs: i64) -> Vec<(String, String)> {
    Keyring::single(secret.clone()).sign_headers("msg_findings", at_secs, body.as_bytes())
}

fn as_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

async fn refusal_reasons_have_their_words_beside_the_code(store: TestStore) {
    let secret = SigningSecret::generate();
    let inspected = signed_receiver(&store, &secret).await;
    // Signed three years (and a few days) before it arrives.
    let body = one("old-1", "COURSE_COMPLETED", "1", "course:1");
    let three_years = 3 * 365 * 86_400 + 10 * 86_400;
    let headers = signed(&secret, &body, verify::unix_now() - three_years);
    let reply = inspected.post(&as_pairs(&headers), body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.error().starts_with("timestamp_too_old:"));
    refused_kept(&store, 1).await;
    let words = "signed 3 years before it arrived";
    let list = inspected.page("/").await;
    let cell = &list[list.find("data-verdict=\"refused\">").unwrap()..];
    let cell = &cell[..cell.find("</td>").unwrap()];
    assert!(
        cell.contains("timestamp_too_old:") && cell.contains(words),
        "{cell}"
    );
    let detail = inspected.page("/requests/r1").await;
    assert!(detail.contains("(answered 401)"), "{detail}");
    assert!(detail.contains(words), "{detail}");
    inspected.stop().await;
}

async fn send_again_re_signs_with_the_receivers_keys_by_default_and_keeps_the_form(
    store: TestStore,
) {
    // Both receivers hold the same signature file, with a window of one second, so a
    // captured signature is stale a moment later, as a real one is after five minutes.
    let secret = SigningSecret::generate();
    let file = SignatureFile::new(
        "wh_findings",
        "CRM",
        &verify::Scheme::StandardWebhooks { tolerance_secs: 1 },
        &secret,
        verify::unix_now() - 60,
    );
    let keyring = file.keyring().unwrap();
    let mut config = store.config();
    config.authentication = verify::Authentication::Signature(vec![keyring.clone()]);
    let inspected = Inspected::start(config).await;
    let mut second = receiver::Config::for_tests(store.dir().join("second.db"));
    second.authentication = verify::Authentication::Signature(vec![keyring.clone()]);
    let second = Inspected::start(second).await;
    let to = format!("http://{}/webhook", second.addr);

    let body = one("again-1", "COURSE_COMPLETED", "4279332", "course:7374992");
    let signed_at = verify::unix_now();
    let headers = keyring.sign_headers("msg_again", signed_at, body.as_bytes());
    let reply = inspected.post(&as_pairs(&headers), body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // Until the captured signature is past its window.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            verify::unix_now() > signed_at + 1
        })
        .await
    );

    let detail = inspected.page("/requests/a1").await;
    assert!(
        detail.contains("<option value=\"resign-own\" selected>Re-signed with this receiver&#39;s signature file (standard-webhooks)</option>"),
        "re-signing with its own keys comes first: {detail}"
    );
    assert!(
        detail.contains("Verbatim sends the captured signature, made ")
            && detail.contains("refuses it as timestamp_too_old (its window is 1 s)"),
        "{detail}"
    );

    // Verbatim fails as the form said, and the form comes back as sent, to try again.
    let verbatim = inspected
        .post_form("/requests/a1/send", &[("to", &to), ("mode", "verbatim")])
        .await;
    let page = String::from_utf8_lossy(&verbatim.body).into_owned();
    assert!(page.contains("role=\"status\">Answered 401<"), "{page}");
    assert!(page.contains("<p role=\"note\">Verbatim sends the captured signature"));
    assert!(
        page.contains(&format!("value=\"{to}\"")),
        "the Target URL is kept"
    );
    assert!(page.contains("<option value=\"verbatim\" selected>"));

    // The default: re-signed with this receiver's keys, stored there.
    let resigned = inspected
        .post_form("/requests/a1/send", &[("to", &to), ("mode", "resign-own")])
        .await;
    let page = String::from_utf8_lossy(&resigned.body).into_owned();
    assert!(page.contains("role=\"status\">Answered 200<"), "{page}");
    assert!(
        !page.contains("aria-label=\"Send again\""),
        "nothing to try again"
    );
    let there = second.page("/requests/a1").await;
    assert!(there.contains("<td><code>webhook-id</code></td><td><code>msg_again</code></td>"));

    // A form that cannot go keeps what was typed, the error beside its field.
    for (fields, field, says) in [
        (
            vec![("to", "ftp://x/"), ("mode", "verbatim")],
            "to",
            "Target URL must be an http:// URL",
        ),
        (
            vec![("to", to.as_str()), ("mode", "resign")],
            "signature_file",
            "Re-signing needs the signature file",
        ),
        (
            vec![("to", to.as_str()), ("mode", "sideways")],
            "mode",
            "is not one of the choices",
        ),
    ] {
        let reply = inspected.post_form("/requests/a1/send", &fields).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let page = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(page.contains(&format!("id=\"{field}\"")), "{page}");
        assert!(
            page.contains(&format!(
                "aria-invalid=\"true\" aria-describedby=\"{field}-error\""
            )),
            "{field}: {page}"
        );
        assert!(
            page.contains(&format!("id=\"{field}-error\" role=\"alert\">")) && page.contains(says),
            "{page}"
        );
        assert!(
            page.contains(&format!("value=\"{}\"", fields[0].1)),
            "the URL is kept"
        );
    }

    // A refused request does not start on re-signing: that would pass it as signed.
    let forged = one("forged-1", "COURSE_COMPLETED", "1", "course:1");
    let wrong = signed(&SigningSecret::generate(), &forged, verify::unix_now());
    let reply = inspected.post(&as_pairs(&wrong), forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    refused_kept(&store, 1).await;
    let refused = inspected.page("/requests/r1").await;
    assert!(
        refused.contains("<option value=\"verbatim\" selected>"),
        "{refused}"
    );
    assert!(refused.contains("This request was refused: re-signed"));
    second.stop().await;
    inspected.stop().await;
}

/// The file name a download gives (`Content-Disposition`).
fn file_name(reply: &crate::support::receiver::Reply) -> String {
    let disposition = reply.headers["content-disposition"].to_str().unwrap();
    disposition
        .strip_prefix("attachment; filename=\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{disposition}"))
        .to_owned()
}

/// `2026-11-27T10:00:00.123Z` as a file name has it: `20261127T100000Z`.
fn compact(received_at: &str) -> String {
    format!("{}Z", received_at[..19].replace(['-', ':'], ""))
}

async fn capture_downloads_are_named_by_what_they_hold(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    for (id, name) in [
        ("d1", "COURSE_ENROLLMENT"),
        ("d2", "COURSE_COMPLETED"),
        ("d3", "COURSE_ENROLLMENT"),
    ] {
        let reply = inspected.post(&[], one(id, name, "1", "course:1")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let (_, exported, _) = run_cli(&["export", "--store", &store.store_arg()], &[]);
    let received: Vec<String> = exported
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            compact(record["receivedAt"].as_str().unwrap())
        })
        .collect();
    let page = inspected.page("/?event_name=enrollment&account=1010").await;
    let download = inspected.get(&link(&page, "Download capture")).await;
    assert_eq!(
        file_name(&download),
        format!(
            "capture-event_name-enrollment_account-1010-{}-{}.jsonl",
            received[0], received[2]
        )
    );
    let one_request = inspected
        .get(&link(
            &inspected.page("/requests/a2").await,
            "Download capture",
        ))
        .await;
    assert_eq!(
        file_name(&one_request),
        format!("capture-a2-{}.jsonl", received[1])
    );
    let nothing = inspected.page("/?account=999").await;
    let download = inspected.get(&link(&nothing, "Download capture")).await;
    assert_eq!(file_name(&download), "capture-account-999-empty.jsonl");
    let all = inspected.page("/").await;
    let download = inspected.get(&link(&all, "Download capture")).await;
    assert!(file_name(&download).starts_with("capture-all-"));
    inspected.stop().await;
}

async fn the_data_filter_finds_a_learners_requests_and_the_url_keeps_it(store: TestStore) {
    let secret = SigningSecret::generate();
    let inspected = signed_receiver(&store, &secret).await;
    let post = |body: String| {
        let inspected = &inspected;
        let secret = &secret;
        async move {
            let headers = signed(secret, &body, verify::unix_now());
            inspected.post(&as_pairs(&headers), body).await.status
        }
    };
    assert_eq!(
        post(one("f1", "COURSE_ENROLLMENT", "4279332", "course:7374992")).await,
        StatusCode::OK
    ); // a1
    assert_eq!(
        post(one("f2", "COURSE_ENROLLMENT", "42793320", "course:7374992")).await,
        StatusCode::OK
    ); // a2
       // A batch: the learner, written as a string, beside another one.
    let batch = r#"{"accountId":1010,"events":[{"eventId":"f3","eventName":"COURSE_COMPLETED_BATCH","timestamp":1,"data":{"userId":"4279332","loId":"course:1","enrollmentSource":"MANAGER_ENROLL"}},{"eventId":"f4","eventName":"COURSE_COMPLETED_BATCH","timestamp":1,"data":{"userId":7,"loId":"course:1"}}]}"#;
    assert_eq!(post(batch.to_owned()).await, StatusCode::OK); // a3
                                                              // A forged request about the learner: refused, and listed too (it did arrive).
    let forged = one("f5", "COURSE_COMPLETED", "4279332", "course:7374992");
    let wrong = signed(&SigningSecret::generate(), &forged, verify::unix_now());
    assert_eq!(
        inspected.post(&as_pairs(&wrong), forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    refused_kept(&store, 1).await;

    let data = |typed: &str| format!("/?data={}", common::web::encode_query_value(typed));
    for (typed, expected) in [
        ("userId=4279332", &["r1", "a3", "a1"][..]),
        ("data.userId=4279332", &["r1", "a3", "a1"]),
        ("userId=4279332 loId=course:7374992", &["r1", "a1"]),
        ("userId=427933", &[]),
        ("loId=course:1", &["a3"]),
        ("enrollmentSource=MANAGER_ENROLL", &["a3"]),
        ("f4", &["a3"]),
    ] {
        let page = inspected.page(&data(typed)).await;
        assert_eq!(row_keys(&page), expected, "{typed}");
        if expected.is_empty() {
            assert!(page.contains("No request matches these filters."));
        }
    }
    // With other filters; the form, the stream and the download keep it.
    let page = inspected
        .page(&format!("{}&verdict=accepted", data("userId=4279332")))
        .await;
    assert_eq!(row_keys(&page), ["a3", "a1"]);
    assert!(page.contains("id=\"data\" name=\"data\" type=\"text\" value=\"userId=4279332\""));
    let stream = page[page.find("data-stream=\"").unwrap() + 13..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(stream.contains("data=userId%3D4279332"), "{stream}");
    assert!(link(&page, "Download capture").contains("data=userId%3D4279332"));
    // A term that is not KEY=VALUE is said so.
    let bad = inspected.get(&data("=42")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bad.body).contains("Data:"));
    inspected.stop().await;
}
