//! The overview at the top of the inspector's first page (SPEC section 10): requests per
//! minute by verdict over the last hour (or a chosen range) as a chart the page draws itself
//! (SVG rendered here: no script, no chart library), refusals by reason, events by name, and
//! each forward target's queue; and its live updates.
//!
//! The counts come from the store's reader (`RequestQuery::traffic`). A live overview is a
//! server-sent event stream of its own (`GET /overview/stream`): every [`POLL`] it counts only
//! what committed since (`RequestQuery::add_newer`), slides the window with the clock, and
//! sends the section again, ready HTML, when it changed. So an open overview costs the
//! listener the reading of new rows once every two seconds, however busy the range.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use common::web::{self, escape, query_string, WebBody};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use verify::timestamp::{format_iso_millis, parse_instant_millis};

use super::{read_store, store_failed, State};
use crate::store::forward::TargetOverview;
use crate::store::{BucketCounts, Traffic, Window, COUNT_BUDGET};

/// How often a live overview counts what is new.
const POLL: Duration = Duration::from_secs(2);
/// Names of events listed, the most frequent first; the rest are counted in one line.
const NAMES_SHOWN: usize = 8;
/// The chart's drawing area, in SVG units (the picture scales to the page's width).
const CHART_WIDTH: f64 = 720.0;
const CHART_HEIGHT: f64 = 150.0;
const PLOT_LEFT: f64 = 44.0;
const PLOT_TOP: f64 = 8.0;
const PLOT_BOTTOM: f64 = 126.0;

/// The ranges offered: (query value, label, length, bucket width), in minutes.
const PRESETS: &[(&str, &str, i64, i64)] = &[
    ("1h", "Last hour", 60, 1),
    ("6h", "Last 6 hours", 360, 5),
    ("24h", "Last 24 hours", 1_440, 15),
    ("7d", "Last 7 days", 10_080, 120),
];
/// Bucket widths a chosen range may get, in minutes: the first that keeps the bars at most
/// [`MAX_BARS`].
const BUCKET_MINUTES: &[i64] = &[1, 2, 5, 10, 15, 30, 60, 120, 360, 720, 1_440, 10_080];
const MAX_BARS: i64 = 120;
const MINUTE_MS: i64 = 60_000;
/// Live ranges whose counts an inspector keeps.
const CACHED_RANGES: usize = 8;

/// The live overviews counted so far, by range: a page or a stream starts from these counts
/// and reads only what committed since, so the first page costs a range's count once per
/// inspector, not once per visit.
#[derive(Default)]
pub(super) struct Cache(Mutex<HashMap<String, Traffic>>);

impl Cache {
    /// The counts of `range` kept last, if any. A std Mutex, held only to copy.
    fn get(&self, range: &str) -> Option<Traffic> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(range)
            .cloned()
    }

    /// Keeps `traffic` as the counts of `range` (of a few ranges at most: a range typed once
    /// and never again must not stay for ever).
    fn keep(&self, range: &str, traffic: &Traffic) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= CACHED_RANGES && !kept.contains_key(range) {
            kept.clear();
        }
        kept.insert(range.to_owned(), traffic.clone());
    }
}

/// Counts `window`: from the counts `cached` of the same range when there are some (only
/// what committed since is read), else the whole range.
fn count_window(
    reader: &dyn crate::store::RequestQuery,
    window: Window,
    cached: Option<Traffic>,
) -> anyhow::Result<Traffic> {
    match cached.filter(|cached| cached.window.bucket_ms == window.bucket_ms) {
        Some(mut traffic) => {
            traffic.forget_before(window.since_ms);
            reader.add_newer(&mut traffic)?;
            Ok(traffic)
        }
        None => reader.traffic(window),
    }
}

/// The range the overview shows, as asked in the URL (`range=6h`, or `range_from` and
/// `range_to` for a chosen one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct OverviewRange {
    /// A preset (`1h`, …), empty for the default or a chosen range.
    preset: String,
    /// A chosen range's start and end as typed.
    from: String,
    to: String,
}

impl OverviewRange {
    /// The range of a query string.
    pub(super) fn from_query(query: &[(String, String)]) -> OverviewRange {
        let value = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default()
        };
        OverviewRange {
            preset: value("range"),
            from: value("range_from"),
            to: value("range_to"),
        }
    }

    /// Every field's query name and value.
    fn fields(&self) -> [(&'static str, &str); 3] {
        [
            ("range", &self.preset),
            ("range_from", &self.from),
            ("range_to", &self.to),
        ]
    }

    /// The range's part of a query string, without a leading `?` (empty for the default).
    pub(super) fn to_query(&self) -> String {
        query_string(&self.fields())
    }

    /// The range as hidden fields, for the list's filter form (its URL keeps both).
    pub(super) fn hidden_fields(&self) -> String {
        self.fields()
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| {
                format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                    escape(value)
                )
            })
            .collect()
    }

    /// The window to count at `now_ms`, and its words, or what is wrong with the range.
    fn window(&self, now_ms: i64) -> Result<(Window, String), String> {
        let time = |label: &str, text: &str| -> Result<Option<i64>, String> {
            if text.is_empty() {
                return Ok(None);
            }
            let completed = match text.len() {
                16 => format!("{text}:00Z"),
                19 => format!("{text}Z"),
                _ => text.to_owned(),
            };
            parse_instant_millis(&completed)
                .or_else(|| parse_instant_millis(text))
                .map(Some)
                .ok_or(format!(
                    "{label} {text:?} is not a time (use 2026-11-27T10:00:00Z, 2026-11-27 or epoch ms)"
                ))
        };
        let from = time("Overview from", &self.from)?;
        let to = time("Overview to", &self.to)?;
        if let Some(from) = from {
            let until = to.unwrap_or(now_ms + 1);
            if until <= from {
                return Err("Overview: the range ends before it starts".to_owned());
            }
            // Whole minutes, rounded up (positive: the range ends after it starts).
            let minutes = (until - from + MINUTE_MS - 1) / MINUTE_MS;
            let bucket = BUCKET_MINUTES
                .iter()
                .copied()
                .find(|width| (minutes + width - 1) / width <= MAX_BARS)
                .unwrap_or(10_080);
            let words = format!(
                "{} to {}",
                format_iso_millis(from),
                to.map_or("now".to_owned(), format_iso_millis)
            );
            return Ok((
                Window {
                    since_ms: from,
                    until_ms: to,
                    bucket_ms: bucket * MINUTE_MS,
                },
                words,
            ));
        }
        let (_, label, minutes, bucket) = PRESETS
            .iter()
            .copied()
            .find(|(value, ..)| *value == self.preset.as_str())
            .or_else(|| self.preset.is_empty().then_some(PRESETS[0]))
            .ok_or(format!(
                "Overview: range {:?} is not one of 1h, 6h, 24h, 7d",
                self.preset
            ))?;
        Ok((sliding(now_ms, minutes, bucket), label.to_owned()))
    }
}

/// The window of the last `minutes` (whole buckets of `bucket` minutes, the current one
/// last), until now and on.
fn sliding(now_ms: i64, minutes: i64, bucket: i64) -> Window {
    let bucket_ms = bucket * MINUTE_MS;
    let current = now_ms.div_euclid(bucket_ms) * bucket_ms;
    Window {
        since_ms: current - (minutes / bucket - 1) * bucket_ms,
        until_ms: None,
        bucket_ms,
    }
}

/// What the overview shows besides the counts.
pub(super) struct Shown<'a> {
    /// The range's words (`Last hour`).
    pub(super) words: &'a str,
    /// Each forward target's queue (the receiver's own targets, and any other with jobs).
    pub(super) targets: &'a [TargetOverview],
    pub(super) now_ms: i64,
}

/// The overview section of the first page: its range form, and the counts of `query`'s
/// range read now; live when the range runs until now.
pub(super) async fn section(state: &Arc<State>, range: &OverviewRange) -> String {
    let now_ms = verify::unix_now_ms();
    let (window, words) = match range.window(now_ms) {
        Ok(window) => window,
        Err(message) => {
            return wrap(
                range,
                None,
                &format!("<p role=\"alert\">{}</p>", escape(&message)),
            )
        }
    };
    // Only a range that runs until now goes on counting, and may start from its last counts.
    let key = window.until_ms.is_none().then(|| range.to_query());
    let cached = key.as_deref().and_then(|key| state.overviews.get(key));
    let configured = state.forward_targets.clone();
    let read = read_store(state, move |reader| {
        Ok((
            count_window(reader, window, cached)?,
            reader.forward_overview(&configured)?,
        ))
    })
    .await;
    if let (Ok((traffic, _)), Some(key)) = (&read, &key) {
        state.overviews.keep(key, traffic);
    }
    let inner = match read {
        Ok((traffic, targets)) => body(
            &traffic,
            &Shown {
                words: &words,
                targets: &targets,
                now_ms,
            },
        ),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "inspector: reading the overview");
            "<p role=\"alert\">The store cannot be read right now; reload in a moment.</p>"
                .to_owned()
        }
    };
    let live = window.until_ms.is_none().then(|| range.to_query());
    wrap(range, live.as_deref(), &inner)
}

/// The section around the overview's body, with its range form; `live` is the stream's
/// query when the body updates itself.
fn wrap(range: &OverviewRange, live: Option<&str>, inner: &str) -> String {
    let options: String = PRESETS
        .iter()
        .map(|(value, label, ..)| {
            let chosen = range.preset == *value || (range.preset.is_empty() && *value == "1h");
            let selected = if chosen && range.from.is_empty() {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{value}\"{selected}>{label}</option>")
        })
        .collect();
    let stream = live
        .map(|query| {
            let query = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            format!(
                " data-overview-stream=\"{}\"",
                escape(&format!("/overview/stream{query}"))
            )
        })
        .unwrap_or_default();
    format!(
        "<section class=\"overview\" aria-labelledby=\"overview\"><div class=\"bar\"><h2 id=\"overview\">Overview</h2>\
         <form class=\"inline\" method=\"get\" action=\"/\" aria-label=\"Overview range\">\
         <label for=\"range\">Range<select id=\"range\" name=\"range\">{options}</select></label>\
         <label for=\"range_from\">From<input id=\"range_from\" name=\"range_from\" type=\"text\" value=\"{from}\" placeholder=\"e.g. 2026-11-27T10:00:00Z\"></label>\
         <label for=\"range_to\">To<input id=\"range_to\" name=\"range_to\" type=\"text\" value=\"{to}\" placeholder=\"e.g. 2026-11-27T11:00:00Z\"></label>\
         <button type=\"submit\">Show</button></form></div>\
         <div{stream}>{inner}</div></section>",
        from = escape(&range.from),
        to = escape(&range.to),
    )
}

/// The overview's counts: totals, the chart, refusals by reason, events by name, forward
/// targets. What the live stream sends again.
pub(super) fn body(traffic: &Traffic, shown: &Shown<'_>) -> String {
    let totals = traffic.totals();
    let requests = totals.accepted + totals.duplicate + totals.refused;
    let capped = if traffic.capped {
        format!(" Counted the newest {COUNT_BUDGET} requests of the range.")
    } else {
        String::new()
    };
    format!(
        "<p data-totals>{words}: {requests} requests: {accepted} accepted, {duplicate} duplicate, \
         {refused} refused.{capped}</p><div class=\"overview-grid\">{chart}\
         <div class=\"overview-tables\">{reasons}{names}</div></div>{targets}",
        words = escape(shown.words),
        accepted = totals.accepted,
        duplicate = totals.duplicate,
        refused = totals.refused,
        chart = chart(traffic, shown.now_ms),
        reasons = reasons_table(&totals),
        names = names_table(&totals),
        targets = super::forwarding::overview(shown.targets, shown.now_ms),
    )
}

/// `10:42` (UTC) for a bucket start; the date too when buckets are a day or wider.
fn clock(at_ms: i64, bucket_ms: i64) -> String {
    let iso = format_iso_millis(at_ms);
    if bucket_ms >= 1_440 * MINUTE_MS {
        iso[..10].to_owned()
    } else if bucket_ms >= 60 * MINUTE_MS {
        format!("{} {}", &iso[5..10], &iso[11..16])
    } else {
        iso[11..16].to_owned()
    }
}

/// A round number at or above `value`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(value: u64) -> u64 {
    let mut step = 1;
    loop {
        for factor in [1, 2, 5] {
            if step * factor >= value {
                return step * factor;
            }
        }
        step *= 10;
    }
}

/// The chart: one bar per bucket (every one of the range, empty ones too), accepted,
/// duplicate and refused stacked, each bar named by its time and counts (`<title>` for the
/// pointer, `aria-label` for screen readers and tests).
fn chart(traffic: &Traffic, now_ms: i64) -> String {
    let Window {
        since_ms,
        until_ms,
        bucket_ms,
    } = traffic.window;
    let end = until_ms.unwrap_or(now_ms + 1);
    let first = since_ms.div_euclid(bucket_ms) * bucket_ms;
    let starts: Vec<i64> = (0..)
        .map(|index| first + index * bucket_ms)
        .take_while(|start| *start < end)
        .collect();
    let empty = BucketCounts::default();
    let counts: Vec<&BucketCounts> = starts
        .iter()
        .map(|start| traffic.buckets.get(start).unwrap_or(&empty))
        .collect();
    let highest = counts
        .iter()
        .map(|counts| counts.accepted + counts.duplicate + counts.refused)
        .max()
        .unwrap_or(0);
    let scale = nice_ceiling(highest.max(1));
    let plot_width = CHART_WIDTH - PLOT_LEFT - 4.0;
    let plot_height = PLOT_BOTTOM - PLOT_TOP;
    let bar_width = plot_width / starts.len().max(1) as f64;
    let per_bucket = if bucket_ms == MINUTE_MS {
        "minute".to_owned()
    } else {
        super::reasons::approximate_duration(bucket_ms / 1000)
    };
    let mut bars = String::new();
    for (index, (start, counts)) in starts.iter().zip(&counts).enumerate() {
        let x = PLOT_LEFT + index as f64 * bar_width;
        let time = if bucket_ms == MINUTE_MS {
            clock(*start, bucket_ms)
        } else {
            format!(
                "{}–{}",
                clock(*start, bucket_ms),
                clock(start + bucket_ms, bucket_ms)
            )
        };
        let total = counts.accepted + counts.duplicate + counts.refused;
        let label = if total == 0 {
            format!("{time} UTC: no requests")
        } else {
            format!(
                "{time} UTC: {} accepted, {} duplicate, {} refused",
                counts.accepted, counts.duplicate, counts.refused
            )
        };
        let mut rects = format!(
            "<rect class=\"slot\" x=\"{x:.1}\" y=\"{PLOT_TOP}\" width=\"{bar_width:.1}\" height=\"{plot_height}\"/>"
        );
        let mut top = PLOT_BOTTOM;
        for (class, value) in [
            ("accepted", counts.accepted),
            ("duplicate", counts.duplicate),
            ("refused", counts.refused),
        ] {
            if value == 0 {
                continue;
            }
            let height = plot_height * value as f64 / scale as f64;
            top -= height;
            rects.push_str(&format!(
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{height:.1}\"/>",
                x + 0.5,
                (bar_width - 1.0).max(0.5)
            ));
        }
        bars.push_str(&format!(
            "<g role=\"img\" aria-label=\"{label}\" data-start=\"{start}\" data-accepted=\"{}\" data-duplicate=\"{}\" data-refused=\"{}\"><title>{label}</title>{rects}</g>",
            counts.accepted, counts.duplicate, counts.refused
        ));
    }
    // Times under the first, middle and last bar.
    let mut axis = String::new();
    if let (Some(first), Some(last)) = (starts.first(), starts.last()) {
        let middle = starts[starts.len() / 2];
        for (at, anchor, x) in [
            (*first, "start", PLOT_LEFT),
            (
                middle,
                "middle",
                PLOT_LEFT + (starts.len() / 2) as f64 * bar_width + bar_width / 2.0,
            ),
            (*last, "end", CHART_WIDTH - 4.0),
        ] {
            axis.push_str(&format!(
                "<text class=\"axis\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                PLOT_BOTTOM + 16.0,
                clock(at, bucket_ms)
            ));
        }
    }
    format!(
        "<figure class=\"chart\"><svg role=\"group\" aria-label=\"Requests per {per_bucket}\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" width=\"100%\">\
         <line class=\"axis\" x1=\"{PLOT_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{right}\" y2=\"{PLOT_BOTTOM}\"/>\
         <text class=\"axis\" x=\"{label_x}\" y=\"{top_label:.1}\" text-anchor=\"end\">{scale}</text>\
         <text class=\"axis\" x=\"{label_x}\" y=\"{PLOT_BOTTOM}\" text-anchor=\"end\">0</text>{bars}{axis}</svg>\
         <figcaption>Requests per {per_bucket} (UTC): <span class=\"key accepted\">accepted</span> \
         <span class=\"key duplicate\">duplicate</span> <span class=\"key refused\">refused</span></figcaption></figure>",
        right = CHART_WIDTH - 4.0,
        label_x = PLOT_LEFT - 4.0,
        top_label = PLOT_TOP + 8.0,
    )
}

/// The rows of a two-column table of `(text, count)`, most first.
fn most_first(rows: &BTreeMap<String, u64>) -> Vec<(&String, u64)> {
    let mut rows: Vec<(&String, u64)> = rows.iter().map(|(text, count)| (text, *count)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    rows
}

fn reasons_table(totals: &BucketCounts) -> String {
    let rows = most_first(&totals.reasons);
    if rows.is_empty() {
        return "<section aria-labelledby=\"refusals\"><h3 id=\"refusals\">Refusals by reason</h3><p>No refusals.</p></section>".to_owned();
    }
    let body: String = rows
        .iter()
        .map(|(reason, count)| {
            let words = super::reasons::words(reason)
                .map(|words| format!(" <span class=\"muted\">({})</span>", escape(&words)))
                .unwrap_or_default();
            format!(
                "<tr><td><code>{}</code>{words}</td><td>{count}</td></tr>",
                escape(&common::text::printable(reason))
            )
        })
        .collect();
    format!(
        "<section aria-labelledby=\"refusals\"><h3 id=\"refusals\">Refusals by reason</h3>\
         <table aria-label=\"Refusals by reason\"><thead><tr><th scope=\"col\">Reason</th><th scope=\"col\">Requests</th></tr></thead>\
         <tbody>{body}</tbody></table></section>"
    )
}

fn names_table(totals: &BucketCounts) -> String {
    let rows = most_first(&totals.events);
    if rows.is_empty() {
        return "<section aria-labelledby=\"names\"><h3 id=\"names\">Events by name</h3><p>No events stored.</p></section>".to_owned();
    }
    let mut body: String = rows
        .iter()
        .take(NAMES_SHOWN)
        .map(|(name, count)| {
            format!(
                "<tr><td>{}</td><td>{count}</td></tr>",
                escape(&common::text::printable(name))
            )
        })
        .collect();
    if rows.len() > NAMES_SHOWN {
        let rest: u64 = rows[NAMES_SHOWN..].iter().map(|(_, count)| count).sum();
        body.push_str(&format!(
            "<tr><td>{} other names</td><td>{rest}</td></tr>",
            rows.len() - NAMES_SHOWN
        ));
    }
    format!(
        "<section aria-labelledby=\"names\"><h3 id=\"names\">Events by name</h3>\
         <table aria-label=\"Events by name\"><thead><tr><th scope=\"col\">Event name</th><th scope=\"col\">Stored</th></tr></thead>\
         <tbody>{body}</tbody></table></section>"
    )
}

/// `GET /overview/stream`: server-sent events `overview`, each the overview's body again,
/// when it changed (new requests, or the window moved on a bucket).
pub(super) async fn stream(state: &Arc<State>, query: &[(String, String)]) -> Response<WebBody> {
    let range = OverviewRange::from_query(query);
    let now_ms = verify::unix_now_ms();
    let (window, words) = match range.window(now_ms) {
        Ok((window, words)) if window.until_ms.is_none() => (window, words),
        Ok(_) => {
            return web::text(
                StatusCode::BAD_REQUEST,
                "400 a range that has ended does not change\n".to_owned(),
            )
        }
        Err(message) => return web::text(StatusCode::BAD_REQUEST, format!("400 {message}\n")),
    };
    let cached = state.overviews.get(&range.to_query());
    let traffic = match read_store(state, move |reader| count_window(reader, window, cached)).await
    {
        Ok(traffic) => traffic,
        Err(error) => return store_failed(&error),
    };
    let (chunks, body) = web::ChannelBody::new(2);
    tokio::spawn(follow(Arc::clone(state), range, words, traffic, chunks));
    web::with_body(
        StatusCode::OK,
        "text/event-stream; charset=utf-8",
        body.boxed(),
    )
}

/// Counts what is new every [`POLL`] and sends the overview when it changed, until the
/// browser goes away or the inspector stops.
async fn follow(
    state: Arc<State>,
    range: OverviewRange,
    words: String,
    mut traffic: Traffic,
    chunks: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut stopping = state.stopping.clone();
    if chunks
        .send(Bytes::from_static(b"retry: 2000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut last = String::new();
    let mut sent = 0_u64;
    loop {
        let now_ms = verify::unix_now_ms();
        if let Ok((window, _)) = range.window(now_ms) {
            traffic.forget_before(window.since_ms);
        }
        let configured = state.forward_targets.clone();
        let read = read_store(&state, move |reader| {
            reader.add_newer(&mut traffic)?;
            let targets = reader.forward_overview(&configured)?;
            Ok((traffic, targets))
        })
        .await;
        match read {
            Ok((counted, targets)) => {
                traffic = counted;
                state.overviews.keep(&range.to_query(), &traffic);
                let html = body(
                    &traffic,
                    &Shown {
                        words: &words,
                        targets: &targets,
                        now_ms,
                    },
                );
                // The first look only tells the stream where it stands: the page has it.
                if html != last && sent > 0 {
                    let event = web::sse_event(&sent.to_string(), "overview", &html);
                    if chunks.send(event).await.is_err() {
                        return;
                    }
                }
                last = html;
                sent += 1;
            }
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "inspector overview stream");
                // The store could not be read: the counts read so far are gone with the
                // closure; start again from the range at the next poll.
                match range.window(now_ms) {
                    Ok((window, _)) => {
                        match read_store(&state, move |reader| reader.traffic(window)).await {
                            Ok(again) => traffic = again,
                            Err(_) => return,
                        }
                    }
                    Err(_) => return,
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => return,
            () = chunks.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_from_the_url_become_windows_of_whole_buckets() {
        let now = 1_795_000_123_456;
        let range = |query: &[(&str, &str)]| {
            let query: Vec<(String, String)> = query
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
            OverviewRange::from_query(&query)
        };
        let (hour, words) = range(&[]).window(now).unwrap();
        assert_eq!(words, "Last hour");
        assert_eq!(hour.bucket_ms, MINUTE_MS);
        assert_eq!(hour.until_ms, None);
        // Sixty minutes, the current one last.
        let current = now / MINUTE_MS * MINUTE_MS;
        assert_eq!(hour.since_ms, current - 59 * MINUTE_MS);
        let (week, _) = range(&[("range", "7d")]).window(now).unwrap();
        assert_eq!(week.bucket_ms, 120 * MINUTE_MS);
        let (chosen, words) = range(&[
            ("range_from", "2026-11-27T10:00:00Z"),
            ("range_to", "2026-11-27T13:00:00Z"),
        ])
        .window(now)
        .unwrap();
        assert_eq!(
            chosen.bucket_ms,
            2 * MINUTE_MS,
            "180 minutes in at most 120 bars"
        );
        assert!(chosen.until_ms.is_some());
        assert!(words.starts_with("2026-11-27T10:00:00.000Z to "));
        assert!(range(&[("range", "2y")]).window(now).is_err());
        assert!(range(&[("range_from", "yesterday")]).window(now).is_err());
        assert_eq!(
            range(&[("range", "6h")]).to_query(),
            "range=6h",
            "the URL keeps the range"
        );
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(1), 1);
    }
}
