//! The inspector's overview (SPEC section 10) over real HTTP, on both stores: the last hour
//! per minute by verdict, refusals by reason and events by name counted as they arrived; a
//! chosen range; the live stream that updates it; the forward target's queue.

use std::time::Duration;

use http::StatusCode;
use receiver::forward::{ForwardConfig, RetryPolicy};

use crate::support::inspector::Inspected;
use crate::support::receiver::{free_addr, post, wait_until};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(
    the_overview_counts_the_last_hour_by_minute_verdict_reason_and_name,
    a_chosen_range_counts_only_what_arrived_in_it_and_the_urls_keep_it,
    the_overview_updates_itself_from_its_own_stream,
    the_overview_shows_the_forward_targets_queue,
);

/// One bar of the chart: its label and counts.
#[derive(Debug)]
struct Bar {
    label: String,
    accepted: u64,
    duplicate: u64,
    refused: u64,
}

/// The value of `attribute="…"` in a tag's text.
fn attribute(tag: &str, name: &str) -> String {
    let start = tag
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + name.len()
        + 3;
    tag[start..].split('"').next().unwrap().to_owned()
}

/// The bars of the overview's chart in `html`, in time order.
fn bars(html: &str) -> Vec<Bar> {
    html.split("<g role=\"img\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            let count = |name: &str| attribute(tag, name).parse::<u64>().unwrap();
            Bar {
                label: attribute(tag, "aria-label"),
                accepted: count("data-accepted"),
                duplicate: count("data-duplicate"),
                refused: count("data-refused"),
            }
        })
        .collect()
}

/// The overview section of a list page.
fn overview(page: &str) -> &str {
    let start = page
        .find("<section class=\"overview\"")
        .unwrap_or_else(|| panic!("no overview in {page}"));
    let end = page[start..]
        .find("</section><form")
        .map_or(page.len(), |end| start + end);
    &page[start..end]
}

/// The rows of the table labelled `label` as `cell|cell` text, tags left out.
fn table_rows(html: &str, label: &str) -> Vec<String> {
    let Some(start) = html.find(&format!("<table aria-label=\"{label}\">")) else {
        return Vec::new();
    };
    let table = &html[start..];
    let table = &table[..table.find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td>")
                .skip(1)
                .map(|cell| {
                    let cell = &cell[..cell.find("</td>").unwrap()];
                    // Tags out, text kept.
                    let mut text = String::new();
                    let mut inside = false;
                    for c in cell.chars() {
                        match c {
                            '<' => inside = true,
                            '>' => inside = false,
                            c if !inside => text.push(c),
                            _ => {}
                        }
                    }
                    text.replace("&#39;", "'")
                        .replace("&quot;", "\"")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&")
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn envelope(events: &[(&str, &str)]) -> String {
    let events: Vec<String> = events
        .iter()
        .map(|(id, name)| {
            format!(
                r#"{{"eventId":"{id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","data":{{"userId":1,"loId":"course:1"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"accountId":1010,"events":[{}]}}"#, events.join(","))
}

/// Accepted, duplicate and refused requests: returns (accepted, duplicate, refused).
async fn send_mixed(inspected: &Inspected, store: &TestStore) -> (u64, u64, u64) {
    let first = envelope(&[("c1", "COURSE_COMPLETED")]);
    for body in [
        first.clone(),
        envelope(&[("c2", "COURSE_COMPLETED")]),
        envelope(&[
            ("b1", "COURSE_ENROLLMENT_BATCH"),
            ("b2", "COURSE_ENROLLMENT_BATCH"),
        ]),
        // A retry: a duplicate, storing nothing.
        first,
    ] {
        assert_eq!(inspected.post(&[], body).await.status, StatusCode::OK);
    }
    for body in ["{not json", "not json either"] {
        assert_eq!(
            inspected.post(&[], body).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    let elsewhere = post(inspected.addr, "/elsewhere", &[], envelope(&[])).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let kept = wait_until(Duration::from_secs(10), || async {
        store.scalar("SELECT COUNT(*) FROM {refused}").await == 3
    })
    .await;
    assert!(kept, "refused requests kept");
    (3, 1, 3)
}

async fn the_overview_counts_the_last_hour_by_minute_verdict_reason_and_name(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    let started = verify::unix_now_ms();
    let (accepted, duplicate, refused) = send_mixed(&inspected, &store).await;
    let page = inspected.page("/").await;
    let section = overview(&page);
    assert!(
        section.contains(&format!(
            "Last hour: {} requests: {accepted} accepted, {duplicate} duplicate, {refused} refused.",
            accepted + duplicate + refused
        )),
        "{section}"
    );
    let bars = bars(section);
    assert_eq!(bars.len(), 60, "a bar per minute of the hour");
    assert!(section.contains("aria-label=\"Requests per minute\""));
    let sum = |of: fn(&Bar) -> u64| bars.iter().map(of).sum::<u64>();
    assert_eq!(
        (
            sum(|bar| bar.accepted),
            sum(|bar| bar.duplicate),
            sum(|bar| bar.refused)
        ),
        (accepted, duplicate, refused)
    );
    // The requests sit in the last bars (the minute they arrived, or the one before it when
    // the test crossed a minute), each bar named by its minute and counts.
    let minute = verify::timestamp::format_iso_millis(started)[11..16].to_owned();
    let busy: Vec<&Bar> = bars
        .iter()
        .filter(|bar| bar.accepted + bar.duplicate + bar.refused > 0)
        .collect();
    assert!(busy.len() <= 2, "{busy:?}");
    assert!(busy[0].label.starts_with(&minute), "{busy:?}");
    assert!(busy[0].label.contains(" accepted, ") && busy[0].label.contains(" refused"));
    assert!(bars[0].label.ends_with("UTC: no requests"));
    assert_eq!(
        table_rows(section, "Refusals by reason"),
        [
            "invalid_json (the body is not JSON)|2",
            "not_found (sent to another path than the webhook's)|1"
        ]
    );
    assert_eq!(
        table_rows(section, "Events by name"),
        ["COURSE_COMPLETED|2", "COURSE_ENROLLMENT_BATCH|2"]
    );
    assert!(
        !section.contains("Forwarding targets"),
        "no forwarding, no targets"
    );
    // It is live: the first page has its stream.
    assert!(section.contains("data-overview-stream=\"/overview/stream\""));
    // Older pages are for reading back: no overview there.
    let older = inspected.page("/?before=2.1").await;
    assert!(!older.contains("class=\"overview\""));
    inspected.stop().await;
}

async fn a_chosen_range_counts_only_what_arrived_in_it_and_the_urls_keep_it(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    send_mixed(&inspected, &store).await;
    // Yesterday: nothing arrived then, and it does not change any more.
    let day = 86_400_000;
    let now = verify::unix_now_ms();
    let yesterday = |at: i64| verify::timestamp::format_iso_millis(at - day);
    let query = format!(
        "/?range_from={}&range_to={}",
        common::web::encode_query_value(&yesterday(now - 3_600_000)),
        common::web::encode_query_value(&yesterday(now))
    );
    let page = inspected.page(&query).await;
    let section = overview(&page);
    assert!(
        section.contains(": 0 requests: 0 accepted, 0 duplicate, 0 refused."),
        "{section}"
    );
    assert!(!section.contains("data-overview-stream"));
    assert!(section.contains(&format!("value=\"{}\"", yesterday(now))));
    // Six hours, five minutes a bar: every request counted.
    let page = inspected.page("/?range=6h").await;
    let section = overview(&page);
    let six = bars(section);
    assert_eq!(six.len(), 72);
    assert!(section.contains("aria-label=\"Requests per 5 minutes\""));
    assert_eq!(six.iter().map(|bar| bar.accepted).sum::<u64>(), 3);
    assert!(section.contains("<option value=\"6h\" selected>Last 6 hours</option>"));
    assert!(section.contains("data-overview-stream=\"/overview/stream?range=6h\""));
    // Filtering the list keeps the range, and the range keeps the list's filter out of it.
    assert!(page.contains("<input type=\"hidden\" name=\"range\" value=\"6h\">"));
    // A range that cannot be read says so in the overview; the list still shows.
    let page = inspected.page("/?range=2y").await;
    assert!(overview(&page).contains("role=\"alert\">Overview: range"));
    assert!(page.contains("aria-label=\"Requests\""));
    inspected.stop().await;
}

async fn the_overview_updates_itself_from_its_own_stream(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    let page = inspected.page("/").await;
    assert!(overview(&page).contains("Last hour: 0 requests"));
    let mut stream = inspected.stream("/overview/stream", None).await;
    for id in ["l1", "l2"] {
        let body = envelope(&[(id, "COURSE_COMPLETED")]);
        assert_eq!(inspected.post(&[], body).await.status, StatusCode::OK);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let updated = loop {
        let event = stream
            .next_event(deadline - tokio::time::Instant::now())
            .await
            .expect("an overview within the wait");
        assert_eq!(event.kind, "overview");
        if event.data.contains("Last hour: 2 requests: 2 accepted") {
            break event.data;
        }
    };
    assert_eq!(
        bars(&updated).iter().map(|bar| bar.accepted).sum::<u64>(),
        2
    );
    assert_eq!(
        table_rows(&updated, "Events by name"),
        ["COURSE_COMPLETED|2"]
    );
    // A finished range has no stream.
    let ended = inspected
        .get("/overview/stream?range_from=2026-01-01&range_to=2026-01-02")
        .await;
    assert_eq!(ended.status, StatusCode::BAD_REQUEST);
    inspected.stop().await;
}

async fn the_overview_shows_the_forward_targets_queue(store: TestStore) {
    // The app is down: the job waits.
    let app = format!("http://{}/inbox", free_addr());
    let mut config = store.config();
    let mut forward = ForwardConfig::new(app.parse().unwrap());
    forward.retry = RetryPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    forward.connect_timeout = Duration::from_secs(1);
    config.forward = Some(forward);
    let inspected = Inspected::start(config).await;
    let body = envelope(&[("f1", "COURSE_COMPLETED")]);
    assert_eq!(inspected.post(&[], body).await.status, StatusCode::OK);
    let page = inspected.page("/").await;
    // One table of the targets, in the overview (issue 21's, with the oldest job's age).
    assert_eq!(page.matches("aria-label=\"Forwarding targets\"").count(), 1);
    let rows = table_rows(overview(&page), "Forwarding targets");
    assert_eq!(rows.len(), 1, "{page}");
    let cells: Vec<&str> = rows[0].split('|').collect();
    assert_eq!(cells[..3], [app.as_str(), "1", "0"]);
    assert!(
        cells[3].ends_with("second ago)") || cells[3].ends_with("seconds ago)"),
        "{cells:?}"
    );
    assert!(cells[4].contains("request a1"), "{cells:?}");
    inspected.stop().await;
}
