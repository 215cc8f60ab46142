//! The inspector's pages and stream over real HTTP (SPEC section 8): the token guard, the
//! list and its filters, the detail, the capture download against `receiver export`, the live
//! stream and its resumption, Send again, HTML escaping, and the `--ui` flags of `listen`.
//! Each page test runs once per store ([`for_each_store!`]).

use std::time::Duration;

use http::StatusCode;
use verify::{SignatureFile, SigningSecret};

use crate::support::inspector::{Inspected, TOKEN};
use crate::support::receiver::{envelope, run_cli, wait_until, Process};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(
    every_page_stream_and_download_needs_the_token_which_a_cookie_then_keeps,
    filters_narrow_the_list_and_the_url_keeps_them,
    the_detail_shows_headers_in_order_the_body_the_diagnosis_and_each_event,
    the_capture_download_is_byte_for_byte_what_receiver_export_writes,
    the_stream_delivers_new_requests_and_a_reconnect_gets_the_missed_ones,
    a_flood_is_skipped_to_the_newest_with_a_notice,
    hostile_names_ids_headers_and_bodies_are_shown_as_text_never_as_markup,
    send_again_reaches_a_second_receiver_verbatim_or_re_signed,
);

/// The request keys of a list page's rows, top to bottom.
fn row_keys(page: &str) -> Vec<String> {
    page.split("<tr data-href=\"/requests/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The value of `attribute="…"` after the first `marker` in `page`, unescaped of `&amp;`.
fn attribute_after(page: &str, marker: &str, attribute: &str) -> String {
    let from = page
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {page}"));
    let rest = &page[from..];
    let start = rest.find(&format!("{attribute}=\"")).unwrap() + attribute.len() + 2;
    let value = &rest[start..];
    value[..value.find('"').unwrap()].replace("&amp;", "&")
}

/// Asserts that `page` holds every one of `parts`.
fn assert_shows(page: &str, parts: &[&str]) {
    for part in parts {
        assert!(page.contains(part), "{part} is not in {page}");
    }
}

/// The `href` of the link whose text is `text`, unescaped of `&amp;`.
fn link(page: &str, text: &str) -> String {
    let end = page
        .find(&format!(">{text}</a>"))
        .unwrap_or_else(|| panic!("no link {text}"));
    let start = page[..end].rfind("href=\"").unwrap() + 6;
    page[start..end]
        .trim_end_matches('"')
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

fn event(id: &str, name: &str) -> String {
    format!(
        r#"{{"eventId":"{id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","data":{{}}}}"#
    )
}

fn body(account: i64, events: &[(&str, &str)]) -> String {
    let events: Vec<String> = events.iter().map(|(id, name)| event(id, name)).collect();
    format!(
        r#"{{"accountId":{account},"events":[{}]}}"#,
        events.join(",")
    )
}

async fn start(store: &TestStore) -> Inspected {
    Inspected::start(store.config()).await
}

/// Waits until the store keeps `count` refused requests (they are written after the answer).
async fn refused_kept(store: &TestStore, count: i64) {
    let kept = wait_until(Duration::from_secs(10), || async {
        store.scalar("SELECT COUNT(*) FROM {refused}").await == count
    })
    .await;
    assert!(kept, "refused requests kept");
}

async fn every_page_stream_and_download_needs_the_token_which_a_cookie_then_keeps(
    store: TestStore,
) {
    let inspected = start(&store).await;
    assert_eq!(
        inspected.post(&[], envelope(1, &["e1"])).await.status,
        StatusCode::OK
    );
    let cookie_name = format!("receiver_inspector_{}", inspected.ui.port());
    let paths = [
        "/",
        "/stream",
        "/download",
        "/requests/a1",
        "/requests/a1/body",
        "/assets/web.js",
        "/nowhere",
    ];
    for path in paths {
        let bare = inspected.get_bare(path, &[]).await;
        assert_eq!(
            bare.status,
            StatusCode::UNAUTHORIZED,
            "{path} without token"
        );
        assert!(!String::from_utf8_lossy(&bare.body).contains(TOKEN));
        let wrong_url = format!("{path}?token=test-token-0123456788");
        let wrong = inspected.get_bare(&wrong_url, &[]).await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        // Neither a made-up session nor the token itself is a cookie that opens it.
        for cookie in [
            format!("{cookie_name}=nope"),
            format!("{cookie_name}={TOKEN}"),
            format!("receiver_inspector={TOKEN}"),
        ] {
            let wrong_cookie = inspected.get_bare(path, &[("cookie", &cookie)]).await;
            assert_eq!(
                wrong_cookie.status,
                StatusCode::UNAUTHORIZED,
                "{path} with the cookie {cookie}"
            );
        }
    }
    // A POST without the token is refused before its form is looked at.
    let cross_site = crate::support::receiver::post(
        inspected.ui,
        "/requests/a1/send",
        &[("content-type", "application/x-www-form-urlencoded")],
        "to=http%3A%2F%2F127.0.0.1%3A1%2F&mode=verbatim",
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::UNAUTHORIZED);

    let first = inspected.get_bare(&format!("/?token={TOKEN}"), &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let cookie = first.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with(&format!("{cookie_name}=")), "{cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds no token: {cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let policy = first.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
    assert!(!policy.contains("unsafe-inline"));
    for path in [
        "/",
        "/requests/a1",
        "/assets/web.css",
        "/assets/web.js",
        "/download",
    ] {
        assert_eq!(
            inspected.get(path).await.status,
            StatusCode::OK,
            "{path} with the cookie"
        );
    }
    assert_eq!(
        inspected.get("/requests/a9").await.status,
        StatusCode::NOT_FOUND
    );
    inspected.stop().await;
}

async fn filters_narrow_the_list_and_the_url_keeps_them(store: TestStore) {
    let inspected = start(&store).await;
    let post = |body: String| {
        let inspected = &inspected;
        async move { inspected.post(&[], body).await.status }
    };
    assert_eq!(
        post(body(1, &[("alpha-1", "COURSE_ENROLLMENT")])).await,
        StatusCode::OK
    ); // a1
    assert_eq!(
        post(body(2, &[("beta-2", "LEARNER_PROGRESS")])).await,
        StatusCode::OK
    ); // a2
    let middle = verify::unix_now_ms() + 1;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            verify::unix_now_ms() > middle
        })
        .await
    );
    assert_eq!(
        post(body(1, &[("alpha-1", "COURSE_ENROLLMENT")])).await,
        StatusCode::OK
    ); // a3, duplicate
    assert_eq!(
        post(body(1, &[("", "COURSE_ENROLLMENT")])).await,
        StatusCode::BAD_REQUEST
    ); // r1
    refused_kept(&store, 1).await;

    let all = inspected.page("/").await;
    assert_eq!(row_keys(&all), ["r1", "a3", "a2", "a1"], "newest first");
    assert!(all.contains("data-verdict=\"duplicate\">duplicate<"));
    assert!(all.contains("data-verdict=\"refused\">invalid_envelope <span"));
    let check = |query: &'static str, expected: &'static [&'static str]| {
        let inspected = &inspected;
        async move {
            let page = inspected.page(&format!("/?{query}")).await;
            assert_eq!(row_keys(&page), expected, "{query}");
            page
        }
    };
    check("event_name=LEARNER_PROGRESS", &["a2"]).await;
    check("event_name=COURSE_ENROLLMENT", &["r1", "a3", "a1"]).await;
    check("account=2", &["a2"]).await;
    check("verdict=accepted", &["a2", "a1"]).await;
    check("verdict=duplicate", &["a3"]).await;
    check("verdict=refused", &["r1"]).await;
    check("verdict=invalid_envelope", &["r1"]).await;
    check("event_id=pha-", &["a3", "a1"]).await;
    let since = verify::timestamp::format_iso_millis(middle);
    let page = check(
        Box::leak(
            format!(
                "since={}&account=1",
                common::web::encode_query_value(&since)
            )
            .into_boxed_str(),
        ),
        &["r1", "a3"],
    )
    .await;
    // The form shows the filter back, and the live stream and download follow it.
    assert!(page.contains(&format!(
        "id=\"since\" name=\"since\" type=\"text\" value=\"{since}\""
    )));
    assert!(page.contains("id=\"account\" name=\"account\" type=\"text\" value=\"1\""));
    let stream = attribute_after(&page, "<tbody", "data-stream");
    assert!(
        stream.contains("account=1") && stream.contains("since="),
        "{stream}"
    );
    check(
        Box::leak(format!("until={}", common::web::encode_query_value(&since)).into_boxed_str()),
        &["a2", "a1"],
    )
    .await;
    // Every filter field has a label naming it.
    for (id, label) in [
        ("event_name", "Event name"),
        ("account", "Account"),
        ("verdict", "Verdict"),
        ("since", "Since"),
        ("until", "Until"),
        ("event_id", "Event id"),
    ] {
        assert!(
            page.contains(&format!("<label for=\"{id}\">{label}<")),
            "{label}"
        );
    }
    // A field that cannot be read is said so, beside the form.
    let bad = inspected.get("/?account=ten").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bad.body)
        .contains("role=\"alert\">Account &quot;ten&quot; is not a number"));
    // Paging: one row a page, each page's Older link leads to the next, to the end.
    let mut path = "/?limit=1".to_owned();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = inspected.page(&path).await;
        seen.extend(row_keys(&page));
        if !page.contains(">Older requests</a>") {
            break;
        }
        path = link(&page, "Older requests");
    }
    assert_eq!(seen, ["r1", "a3", "a2", "a1"]);
    inspected.stop().await;
}

async fn the_detail_shows_headers_in_order_the_body_the_diagnosis_and_each_event(store: TestStore) {
    let inspected = start(&store).await;
    let batch = body(
        5,
        &[
            ("d-1", "COURSE_ENROLLMENT_BATCH"),
            ("d-2", "COURSE_ENROLLMENT_BATCH"),
        ],
    );
    let headers = [("x-first", "1"), ("x-second", "2"), ("x-third", "3")];
    assert_eq!(
        inspected.post(&headers, batch.clone()).await.status,
        StatusCode::OK
    );
    // d-2 again, with a new one: the first request stored d-2, this one stores d-3 only.
    let again = body(
        5,
        &[
            ("d-2", "COURSE_ENROLLMENT_BATCH"),
            ("d-3", "COURSE_ENROLLMENT_BATCH"),
        ],
    );
    assert_eq!(inspected.post(&[], again).await.json()["duplicates"], 1);
    let page = inspected.page("/requests/a2").await;
    assert_shows(
        &page,
        &[
            "data-verdict=\"accepted\">accepted<",
            "<td><code>d-2</code></td><td></td><td></td><td>duplicate</td><td>none</td>",
            "<td><code>d-3</code></td><td></td><td></td><td>new</td><td>none</td>",
            "receiver check: <strong>accepted</strong>",
        ],
    );
    let first = inspected.page("/requests/a1").await;
    let order: Vec<usize> = ["x-first", "x-second", "x-third"]
        .iter()
        .map(|name| {
            first
                .find(&format!("<td><code>{name}</code></td>"))
                .unwrap()
        })
        .collect();
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "headers in order"
    );
    // The body as received (escaped) and pretty-printed.
    assert!(first.contains(&common::web::escape(&batch)));
    assert!(first.contains("  &quot;accountId&quot;: 5,\n  &quot;events&quot;: ["));
    // The whole body downloads byte for byte; Copy as curl carries the same bytes.
    let raw = inspected.get("/requests/a1/body").await;
    assert_eq!(raw.body, batch.as_bytes());
    assert!(raw.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(first.contains("<button type=\"button\" data-copy=\"curl\">Copy as curl</button>"));
    assert!(first.contains(&common::web::escape(&format!("printf '{batch}' \\\n"))));
    assert!(first.contains(&common::web::escape(&format!(
        "| curl -X POST http://{}/webhook \\\n",
        inspected.addr
    ))));
    assert!(first.contains("--data-binary @-</pre>"));

    // A refused request shows its reason and the check diagnosis.
    assert_eq!(
        inspected.post(&[], "{\"accountId\":5}").await.status,
        StatusCode::BAD_REQUEST
    );
    refused_kept(&store, 1).await;
    let refused = inspected.page("/requests/r1").await;
    assert_shows(
        &refused,
        &[
            "data-verdict=\"refused\">invalid_envelope (answered 400) <span class=\"muted\">— the body is not a webhook envelope</span><",
            "receiver check: <strong>refused</strong> <code>invalid_envelope</code>",
            "<p>No events.</p>",
        ],
    );
    inspected.stop().await;
}

async fn the_capture_download_is_byte_for_byte_what_receiver_export_writes(store: TestStore) {
    let inspected = start(&store).await;
    let bodies: [&[u8]; 4] = [
        "{ \"accountId\": 1,\n \"events\": [{\"eventId\":\"x1\",\"eventName\":\"COURSE_ENROLLMENT\",\"timestamp\":1,\"data\":{\"name\":\"Jörg \\u00e9\"}}] }  \n".as_bytes(),
        b"\xff\xfe{not json",
        br#"{"accountId":2,"events":[{"eventId":"x2","eventName":"LEARNER_PROGRESS","timestamp":2,"data":{}}]}"#,
        br#"{"accountId":2,"events":[{"eventId":"x2","eventName":"LEARNER_PROGRESS","timestamp":2,"data":{}}]}"#,
    ];
    for body in bodies {
        inspected.post(&[("x-trace", "t")], body.to_vec()).await;
    }
    refused_kept(&store, 1).await;
    let page = inspected.page("/").await;
    assert_eq!(row_keys(&page).len(), 4);
    let download = inspected.get(&link(&page, "Download capture")).await;
    assert_eq!(download.status, StatusCode::OK);
    let disposition = download.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"capture-all-")
            && disposition.ends_with(".jsonl\""),
        "{disposition}"
    );
    let store = store.store_arg();
    let (code, exported, stderr) = run_cli(&["export", "--store", &store, "--verdict", "all"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&download.body), exported);
    // A filtered page downloads what it shows, as export filters it.
    let filtered = inspected.page("/?account=2").await;
    let download = inspected.get(&link(&filtered, "Download capture")).await;
    let (_, exported, _) = run_cli(&["export", "--store", &store, "--account", "2"], &[]);
    assert_eq!(String::from_utf8_lossy(&download.body), exported);
    assert_eq!(exported.lines().count(), 2);
    // One request from its detail page: export's line for it.
    let one = inspected
        .get(&link(
            &inspected.page("/requests/a1").await,
            "Download capture",
        ))
        .await;
    let (_, exported, _) = run_cli(&["export", "--store", &store, "--account", "1"], &[]);
    assert_eq!(String::from_utf8_lossy(&one.body), exported);
    inspected.stop().await;
}

async fn the_stream_delivers_new_requests_and_a_reconnect_gets_the_missed_ones(store: TestStore) {
    let inspected = start(&store).await;
    assert_eq!(
        inspected.post(&[], envelope(1, &["before"])).await.status,
        StatusCode::OK
    );
    let page = inspected.page("/").await;
    let stream_path = attribute_after(&page, "<tbody", "data-stream");
    let mut stream = inspected.stream(&stream_path, None).await;
    assert_eq!(
        inspected.post(&[], envelope(1, &["live-1"])).await.status,
        StatusCode::OK
    );
    let live = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("a row within a second or so");
    assert_eq!(live.kind, "row");
    assert_eq!(
        row_keys(&live.data),
        ["a2"],
        "only what came after the page: {}",
        live.data
    );
    assert!(live.data.contains("live-1"));
    drop(stream);
    // While nobody listens, two more arrive (and a refusal); the browser comes back with the
    // last id it saw.
    assert_eq!(
        inspected.post(&[], envelope(1, &["missed-1"])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        inspected.post(&[], "nope").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        inspected.post(&[], envelope(1, &["missed-2"])).await.status,
        StatusCode::OK
    );
    refused_kept(&store, 1).await;
    let mut resumed = inspected.stream(&stream_path, Some(&live.id)).await;
    let mut keys = Vec::new();
    while keys.len() < 3 {
        let event = resumed
            .next_event(Duration::from_secs(5))
            .await
            .expect("missed rows");
        // Each batch is newest first; batches come oldest first.
        let mut batch = row_keys(&event.data);
        batch.reverse();
        keys.extend(batch);
    }
    // Rows come in receive-time order, and requests received in the same millisecond are
    // ordered accepted before refused (as `receiver export` does), so r1 may follow a4.
    assert!(
        keys == ["a3", "r1", "a4"] || keys == ["a3", "a4", "r1"],
        "each missed request once, in receive order: {keys:?}"
    );
    // A filtered stream only carries matching rows.
    let mut refused_only = inspected
        .stream("/stream?verdict=refused&after=0.0", None)
        .await;
    let event = refused_only
        .next_event(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(row_keys(&event.data), ["r1"]);
    inspected.stop().await;
}

/// More new requests than one stream event carries (200) is more than a person reads live: the
/// stream sends one batch, then skips to the newest with a notice, and follows on from there.
async fn a_flood_is_skipped_to_the_newest_with_a_notice(store: TestStore) {
    let inspected = start(&store).await;
    const FLOOD: usize = 260;
    for i in 0..FLOOD {
        let name = format!("flood-{i}");
        assert_eq!(
            inspected.post(&[], envelope(1, &[&name])).await.status,
            StatusCode::OK
        );
    }
    let mut stream = inspected.stream("/stream?after=0.0", None).await;
    let first = stream.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.kind, "row");
    assert_eq!(row_keys(&first.data).len(), 200, "one full batch");
    let skipped = stream.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(skipped.kind, "skipped");
    assert!(skipped.data.contains("reload"), "{}", skipped.data);
    assert_ne!(
        skipped.id, first.id,
        "the cursor moved past the skipped rows"
    );
    // What comes after the skip is new, not the rest of the flood.
    assert_eq!(
        inspected
            .post(&[], envelope(1, &["after-the-flood"]))
            .await
            .status,
        StatusCode::OK
    );
    let next = stream.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.kind, "row");
    assert_eq!(row_keys(&next.data).len(), 1, "{}", next.data);
    assert!(next.data.contains("after-the-flood"));
    inspected.stop().await;
}

async fn hostile_names_ids_headers_and_bodies_are_shown_as_text_never_as_markup(store: TestStore) {
    let inspected = start(&store).await;
    let hostile_name = "<script>alert('name')</script>";
    let hostile_id = "\"><img src=x onerror=alert(1)>";
    let hostile = format!(
        r#"{{"accountId":3,"events":[{{"eventId":"{}","eventName":"{}","timestamp":1,"data":{{"x":"</pre><script>alert('body')</script>"}}}}]}}"#,
        hostile_id.replace('"', "\\\""),
        hostile_name
    );
    let stream = inspected.stream("/stream?after=0.0", None).await;
    let reply = inspected
        .post(
            &[("x-evil", "<script>alert('header')</script>")],
            hostile.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        inspected
            .post(&[], "<script>alert('refused')</script>")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    refused_kept(&store, 1).await;
    let mut stream = stream;
    let mut streamed = String::new();
    while row_keys(&streamed).len() < 2 {
        streamed.push_str(
            &stream
                .next_event(Duration::from_secs(5))
                .await
                .unwrap()
                .data,
        );
    }
    let pages = [
        inspected.page("/").await,
        inspected.page("/requests/a1").await,
        inspected.page("/requests/r1").await,
        inspected
            .page(&format!(
                "/?event_name={}",
                common::web::encode_query_value(hostile_name)
            ))
            .await,
        streamed,
    ];
    for page in &pages {
        // The only script element is the page's own, loaded from the binary.
        let scripts = page.matches("<script").count();
        let own = page
            .matches("<script src=\"/assets/web.js\" defer></script>")
            .count();
        assert_eq!(scripts, own, "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("onerror=alert(1)>"), "{page}");
    }
    assert!(pages[0].contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"));
    assert!(pages[1].contains("&lt;script&gt;alert(&#39;header&#39;)&lt;/script&gt;"));
    assert!(pages[1].contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(pages[1].contains("&lt;/pre&gt;&lt;script&gt;alert(&#39;body&#39;)"));
    assert!(pages[2].contains("&lt;script&gt;alert(&#39;refused&#39;)&lt;/script&gt;"));
    assert_eq!(
        row_keys(&pages[3]),
        ["a1"],
        "the hostile name filters like any other"
    );
    inspected.stop().await;
}

async fn send_again_reaches_a_second_receiver_verbatim_or_re_signed(store: TestStore) {
    let inspected = start(&store).await;
    // The second receiver checks signatures: only a re-signed request gets in.
    let secret = SigningSecret::generate();
    let file = SignatureFile::new(
        "wh_inspector",
        "CRM",
        &verify::Scheme::StandardWebhooks {
            tolerance_secs: 300,
        },
        &secret,
        verify::unix_now(),
    );
    let file_path = store.dir().join("sig.json");
    std::fs::write(&file_path, file.to_json_pretty()).unwrap();
    // The second receiver on SQLite whatever the first one's store: a re-send crosses stores.
    let mut config = receiver::Config::for_tests(store.dir().join("second.db"));
    config.authentication = verify::Authentication::Signature(vec![
        receiver::config::read_signature_file(&file_path).unwrap(),
    ]);
    let second = Inspected::start(config).await;
    let sent = body(4, &[("again-1", "COURSE_COMPLETED")]);
    assert_eq!(
        inspected
            .post(&[("webhook-id", "msg_keep")], sent.clone())
            .await
            .status,
        StatusCode::OK
    );
    let to = format!("http://{}/webhook", second.addr);

    let verbatim = inspected
        .post_form("/requests/a1/send", &[("to", &to), ("mode", "verbatim")])
        .await;
    assert_eq!(verbatim.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&verbatim.body);
    assert!(text.contains("role=\"status\">Answered 401"), "{text}");

    let resigned = inspected
        .post_form(
            "/requests/a1/send",
            &[
                ("to", &to),
                ("mode", "resign"),
                ("signature_file", &file.to_json_pretty()),
            ],
        )
        .await;
    let text = String::from_utf8_lossy(&resigned.body);
    assert!(text.contains("role=\"status\">Answered 200"), "{text}");
    assert!(text.contains("&quot;stored&quot;:1"), "{text}");
    // Stored there with the same bytes and the captured webhook-id.
    let there = second.page("/requests/a1").await;
    assert!(there.contains(&common::web::escape(&sent)));
    assert!(there.contains("<td><code>webhook-id</code></td><td><code>msg_keep</code></td>"));

    // Forms that cannot be used say why.
    for (fields, says) in [
        (
            vec![("to", "ftp://x/"), ("mode", "verbatim")],
            "Target URL must be an http:// URL",
        ),
        (
            vec![("to", to.as_str()), ("mode", "resign")],
            "Re-signing needs the signature file",
        ),
        (
            vec![
                ("to", to.as_str()),
                ("mode", "resign"),
                ("signature_file", "{}"),
            ],
            "The signature file cannot be used",
        ),
    ] {
        let reply = inspected.post_form("/requests/a1/send", &fields).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(
            String::from_utf8_lossy(&reply.body).contains(says),
            "{says}"
        );
    }
    // A form posted from another site is refused, token cookie or not.
    let cookie = inspected.cookie.clone();
    let forged = crate::support::receiver::send(
        inspected.ui,
        crate::support::receiver::request(
            inspected.ui,
            http::Method::POST,
            "/requests/a1/send",
            &[
                ("cookie", cookie.as_str()),
                ("origin", "http://evil.example"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            format!("to={}&mode=verbatim", common::web::encode_query_value(&to)),
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    second.stop().await;
    inspected.stop().await;
}

#[test]
fn listen_prints_the_inspector_url_and_the_ui_flags_behave() {
    let dir = tempfile::tempdir().unwrap();
    // A store for each listener: one `listen` per SQLite store.
    let store_named = |name: &str| format!("sqlite:{}", dir.path().join(name).display());
    let store = store_named("r.db");
    let process = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--output",
            "quiet",
        ],
        &[],
    );
    let line = process.inspector_line.clone().expect("second line");
    let rest = line
        .strip_prefix("inspector on http://127.0.0.1:")
        .expect(&line);
    let (_, token) = rest.split_once("/?token=").expect(&line);
    assert_eq!(token.len(), 48);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));

    // The default address is taken now or by someone else: either way another port serves.
    let other = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store_named("other.db"),
            "--output",
            "quiet",
        ],
        &[("RECEIVER_UI_TOKEN", "fixed-token-0123456789")],
    );
    let other_line = other.inspector_line.clone().unwrap();
    assert!(
        other_line.ends_with("/?token=fixed-token-0123456789"),
        "{other_line}"
    );
    assert_ne!(other_line.split('/').nth(2), line.split('/').nth(2));

    // An explicit address that cannot be bound is a start-up error.
    let taken = other_line.split('/').nth(2).unwrap().to_owned();
    let (code, stdout, stderr) = run_cli(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store_named("taken.db"),
            "--ui",
            &taken,
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{stdout} {stderr}");
    assert!(
        stderr.contains(&format!("the inspector cannot listen on {taken}")),
        "{stderr}"
    );
    // Beyond loopback only with a token given.
    let (code, _, stderr) = run_cli(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--ui",
            "0.0.0.0:0",
        ],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    let (code, _, stderr) = run_cli(&["listen", "--store", &store, "--ui", "nowhere"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--ui"), "{stderr}");
    // Off: no second line, nothing listening.
    let off = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store_named("off.db"),
            "--ui",
            "off",
        ],
        &[],
    );
    assert!(off.inspector_line.is_none());
    off.kill();
    process.kill();
    other.kill();
}
