//! Text a sender chooses cannot forge what the operator sees (issue 20, items 5 and 13): a
//! line break in an `eventId` cannot add fields or events to the inspector's live stream, and
//! bidirectional controls and invisible characters in names, ids, headers and bodies show
//! escaped (`\u{202e}`) in the pages and in `receiver events list` / `show`, as control
//! characters do; JSON output (`--json`, `listen --output json`) writes them as JSON escapes.

use std::time::Duration;

use http::StatusCode;

use crate::support::inspector::Inspected;
use crate::support::receiver::{post, run_cli, Process};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(
    a_line_break_in_an_event_id_cannot_add_fields_to_the_live_stream,
    bidi_controls_and_invisible_characters_show_escaped_in_pages_and_the_cli,
);

/// The request keys of a list's rows, top to bottom.
fn row_keys(html: &str) -> Vec<String> {
    html.split("<tr data-href=\"/requests/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn one_event(event_id_json: &str, event_name_json: &str) -> String {
    format!(
        r#"{{"accountId":4,"events":[{{"eventId":"{event_id_json}","eventName":"{event_name_json}","timestamp":1,"data":{{"note":"{event_name_json}"}}}}]}}"#
    )
}

async fn a_line_break_in_an_event_id_cannot_add_fields_to_the_live_stream(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    let mut stream = inspected.stream("/stream?after=0.0", None).await;
    // Browsers end a stream line at a lone CR too: this id would set the resume id to 999999
    // and dispatch a second event of its own.
    let hostile = one_event(
        r"a\rid: 999999\r\rdata: x",
        r"COURSE_COMPLETED\r\revent: skipped",
    );
    assert_eq!(inspected.post(&[], hostile).await.status, StatusCode::OK);
    let first = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("the row arrives");
    assert_eq!(first.kind, "row", "{first:?}");
    assert_eq!(row_keys(&first.data), ["a1"], "{first:?}");
    assert!(
        first
            .data
            .contains(r"<code>a\rid: 999999\r\rdata: x</code>"),
        "the id shows escaped: {first:?}"
    );
    assert_ne!(first.id, "999999");
    drop(stream);
    // The id the browser kept resumes after that row, as a browser's reconnect does.
    assert_eq!(
        inspected
            .post(&[], one_event("plain", "COURSE_COMPLETED"))
            .await
            .status,
        StatusCode::OK
    );
    let mut resumed = inspected.stream("/stream?after=0.0", Some(&first.id)).await;
    let next = resumed
        .next_event(Duration::from_secs(5))
        .await
        .expect("the next row");
    assert_eq!(
        (next.kind.as_str(), row_keys(&next.data)),
        ("row", vec!["a2".to_owned()]),
        "only what came after the first row: {next:?}"
    );
    inspected.stop().await;
}

/// The characters that reorder or hide text: each, as a JSON escape writes it, and as a page
/// or a terminal must show it.
const SPOOFING: &[(char, &str, &str)] = &[
    ('\u{202e}', r"\u202e", r"\u{202e}"),
    ('\u{202a}', r"\u202a", r"\u{202a}"),
    ('\u{2066}', r"\u2066", r"\u{2066}"),
    ('\u{2069}', r"\u2069", r"\u{2069}"),
    ('\u{200e}', r"\u200e", r"\u{200e}"),
    ('\u{200f}', r"\u200f", r"\u{200f}"),
    ('\u{061c}', r"\u061c", r"\u{61c}"),
    ('\u{200b}', r"\u200b", r"\u{200b}"),
    ('\u{200c}', r"\u200c", r"\u{200c}"),
    ('\u{200d}', r"\u200d", r"\u{200d}"),
    ('\u{2060}', r"\u2060", r"\u{2060}"),
    ('\u{feff}', r"\ufeff", r"\u{feff}"),
    // Invisible too: soft hyphen, Mongolian vowel separator, invisible times, a deprecated
    // format character, an interlinear annotation anchor, a variation selector, a tag (beyond
    // the Basic Multilingual Plane: a surrogate pair in JSON), and a C1 control (CSI), which
    // JSON writers leave as it is.
    ('\u{ad}', r"\u00ad", r"\u{ad}"),
    ('\u{180e}', r"\u180e", r"\u{180e}"),
    ('\u{2062}', r"\u2062", r"\u{2062}"),
    ('\u{206a}', r"\u206a", r"\u{206a}"),
    ('\u{fff9}', r"\ufff9", r"\u{fff9}"),
    ('\u{fe0f}', r"\ufe0f", r"\u{fe0f}"),
    ('\u{e0041}', r"\udb40\udc41", r"\u{e0041}"),
    ('\u{9b}', r"\u009b", r"\u{9b}"),
];

/// Whether `text` holds any of the spoofing characters themselves.
fn holds_raw_spoofing_character(text: &str) -> bool {
    text.chars()
        .any(|c| SPOOFING.iter().any(|(spoofing, _, _)| *spoofing == c))
}

async fn bidi_controls_and_invisible_characters_show_escaped_in_pages_and_the_cli(
    store: TestStore,
) {
    let inspected = Inspected::start(store.config()).await;
    let mut stream = inspected.stream("/stream?after=0.0", None).await;
    let raw: String = SPOOFING.iter().map(|(c, _, _)| *c).collect();
    let json_escaped: String = SPOOFING.iter().map(|(_, json, _)| *json).collect();
    let shown: String = SPOOFING.iter().map(|(_, _, shown)| *shown).collect();
    // "COURSE_COMPLETED" then an override that makes "DELLORNE" read "ENROLLED".
    let name = format!("COURSE_COMPLETED\u{202e}DELLORNE{raw}");
    let name_shown = format!(r"COURSE_COMPLETED\u{{202e}}DELLORNE{shown}");
    let name_json_escaped = format!(r"COURSE_COMPLETED\u202eDELLORNE{json_escaped}");
    let id = format!("id-{raw}");
    let id_shown = format!("id-{shown}");
    // The characters travel raw in the body, as JSON allows.
    let body = serde_json::json!({"accountId": 4, "events": [{
        "eventId": id, "eventName": name, "timestamp": 1, "data": {"note": name}}]})
    .to_string();
    assert!(holds_raw_spoofing_character(&body));
    let reply = inspected
        .post(&[("x-note", "right\u{202e}txet")], body)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    let list = inspected.page("/").await;
    let detail = inspected.page("/requests/a1").await;
    let row = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("the row arrives")
        .data;
    for (what, page) in [("list", &list), ("detail", &detail), ("stream", &row)] {
        assert!(!holds_raw_spoofing_character(page), "{what}: {page}");
        assert!(
            page.contains(&name_shown),
            "{what} shows the name escaped: {page}"
        );
        assert!(
            page.contains(&id_shown),
            "{what} shows the id escaped: {page}"
        );
    }
    assert!(
        detail.contains(r"<td><code>right\u{202e}txet</code></td>"),
        "the header: {detail}"
    );
    // Pretty-printed, the body keeps JSON escapes, so it is still the same JSON.
    assert!(
        detail.contains(&format!(
            "&quot;note&quot;: &quot;{name_json_escaped}&quot;"
        )),
        "pretty-printed: {detail}"
    );
    inspected.stop().await;

    let store = store.store_arg();
    let (code, listed, stderr) = run_cli(&["events", "list", "--store", &store], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, shown_event, stderr) = run_cli(&["events", "show", "--store", &store, &id], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for (what, output) in [("events list", &listed), ("events show", &shown_event)] {
        assert!(!holds_raw_spoofing_character(output), "{what}: {output}");
        assert!(output.contains(&name_shown), "{what}: {output}");
        assert!(
            output.contains(&format!("event={id_shown}")),
            "{what}: {output}"
        );
    }
    // `show` prints the event's JSON with JSON escapes: it still parses to the stored event.
    let json_start = shown_event.find("\n{").unwrap();
    let event: serde_json::Value = serde_json::from_str(&shown_event[json_start..]).unwrap();
    assert_eq!(event["eventId"], id);
    assert_eq!(event["data"]["note"], name);
    // With --json too: JSON escapes, and the same values once parsed.
    for args in [
        vec!["events", "list", "--store", &store, "--json"],
        vec!["events", "show", "--store", &store, &id, "--json"],
    ] {
        let (code, output, stderr) = run_cli(&args, &[]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!holds_raw_spoofing_character(&output), "{args:?}: {output}");
        assert!(output.contains(&name_json_escaped), "{args:?}: {output}");
        let parsed: serde_json::Value = serde_json::from_str(&output).unwrap();
        let event = if parsed.is_array() {
            &parsed[0]
        } else {
            &parsed
        };
        assert_eq!(event["eventName"], name, "{args:?}");
    }
}

#[tokio::test]
async fn the_json_lines_of_listen_escape_what_json_leaves_raw() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("receiver.db").display());
    let receiver = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "off",
            "--output",
            "json",
            "--store",
            &store,
        ],
        &[],
    );
    let raw: String = SPOOFING.iter().map(|(c, _, _)| *c).collect();
    let json_escaped: String = SPOOFING.iter().map(|(_, json, _)| *json).collect();
    let body = serde_json::json!({"accountId": 4, "events": [{
        "eventId": format!("id-{raw}"), "eventName": "COURSE_COMPLETED", "timestamp": 1,
        "data": {}}]})
    .to_string();
    let reply = post(receiver.addr, "/webhook", &[], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let line = receiver.next_line().expect("a JSON line");
    assert!(!holds_raw_spoofing_character(&line), "{line}");
    assert!(line.contains(&format!("id-{json_escaped}")), "{line}");
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(parsed["type"], "event", "{line}");
    assert_eq!(parsed["eventId"], format!("id-{raw}"), "{line}");
    receiver.kill();
}
