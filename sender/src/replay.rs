//! `sender replay`: sends captured traffic again, verbatim or re-signed, at a controlled rate.
//!
//! The body bytes are never re-serialised: a capture's body, or a bare envelope file's bytes,
//! go out exactly as read. Only `--event-id` builds a new body, and even then the event's own
//! bytes are copied as they stood in the batch.
//!
//! Rate control is an open model: request `i` is due at `start + i / rate`, whether or not the
//! earlier ones have been answered; `--concurrency` bounds how many are in flight, and when it
//! is the bottleneck the lateness shows in the summary instead of silently slowing the run.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use common::target_url::TargetUrl;
use common::text::printable;
use serde::Serialize;
use tokio::sync::Semaphore;
use verify::{parse_envelope, parse_source, single_event_envelope, SourceItem, Verdict};

/// Whether captured headers are sent as they were or the body is signed anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayMode {
    /// Keep the body bytes, drop the captured authentication, sign with a fresh timestamp.
    Resign,
    /// Send the captured headers and bytes unchanged (a stale signature stays stale).
    Verbatim,
}

/// The credentials a re-signed request carries (built where `sender replay` and the
/// receiver inspector share it).
pub use verify::resend::ResendAuth as ReplayAuth;

/// Which captured requests to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Keep a request when any of its events has one of these names (all when empty).
    pub event_names: Vec<String>,
    /// Keep requests from this time on (epoch ms): a capture's receive time, or for a bare
    /// envelope its first event's timestamp.
    pub since_ms: Option<i64>,
    /// Keep requests before this time (epoch ms).
    pub until_ms: Option<i64>,
    /// Replay only this event, rebuilt as a one-event envelope.
    pub event_id: Option<String>,
    /// Re-sign captures whose verdict was a refusal too. Off by default: a fresh signature
    /// would make a forged or broken request (a bad signature, another account) pass as
    /// signed at the receiver it goes to. Verbatim replays send such captures as they are
    /// (their old signature still fails), so this matters only to re-signing.
    pub include_refused: bool,
}

/// What [`plan`] gives: the requests to send, and what it left out that the user must hear of.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The requests, in source order.
    pub requests: Vec<PlannedRequest>,
    /// Captures the filters kept but re-signing skipped, their verdict being a refusal
    /// ([`ReplayFilter::include_refused`] replays them).
    pub skipped_refused: usize,
}

/// One request ready to send.
#[derive(Clone)]
pub struct PlannedRequest {
    /// Where it came from: `file:line`.
    pub origin: String,
    /// Headers to send (without authentication in resign mode; it is added at send time).
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Bytes,
    /// The captured `webhook-id`, kept when re-signing so the receiver sees the same message.
    pub message_id: Option<String>,
}

impl std::fmt::Debug for PlannedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Verbatim mode carries the captured `Authorization`: never print it.
        f.debug_struct("PlannedRequest")
            .field("origin", &self.origin)
            .field("headers", &crate::delivery::redacted_headers(&self.headers))
            .field("body_bytes", &self.body.len())
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// Reads a source path: a file, or a directory of `.json` / `.jsonl` / `.ndjson` files read in
/// name order, or `-` for standard input.
///
/// # Errors
/// A path that cannot be read, or a line that is neither a capture nor an envelope.
pub fn load_source(path: &Path) -> anyhow::Result<Vec<(String, SourceItem)>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading standard input")?;
        return label_items("stdin", &bytes);
    }
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !metadata.is_dir() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return label_items(&path.display().to_string(), &bytes);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|file| {
            file.extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| matches!(ext, "json" | "jsonl" | "ndjson"))
        })
        .collect();
    files.sort();
    let mut items = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        items.extend(label_items(&file.display().to_string(), &bytes)?);
    }
    Ok(items)
}

fn label_items(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<(String, SourceItem)>> {
    let items = parse_source(bytes).with_context(|| format!("reading {name}"))?;
    let many = items.len() > 1;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let origin = if many {
                format!("{name}:{}", index + 1)
            } else {
                name.to_owned()
            };
            (origin, item)
        })
        .collect())
}

/// Applies the filters and the mode, giving the requests to send in source order; re-signing
/// skips refused captures unless [`ReplayFilter::include_refused`].
///
/// # Errors
/// `--event-id` on a body that is not an envelope.
pub fn plan(
    items: Vec<(String, SourceItem)>,
    mode: ReplayMode,
    filter: &ReplayFilter,
) -> anyhow::Result<Plan> {
    let mut planned = Vec::new();
    let mut skipped_refused = 0;
    for (origin, item) in items {
        if !keep(&item, filter) {
            continue;
        }
        let refused =
            matches!(&item, SourceItem::Capture(record) if record.verdict == Verdict::Refused);
        if refused && mode == ReplayMode::Resign && !filter.include_refused {
            skipped_refused += 1;
            continue;
        }
        let (captured_headers, body) = match item {
            SourceItem::Capture(record) => (record.headers, record.body),
            SourceItem::Envelope(body) => (Vec::new(), body),
        };
        let body = match &filter.event_id {
            None => body,
            Some(event_id) => match single_event_envelope(&body, event_id)
                .with_context(|| format!("{origin}: --event-id needs an envelope body"))?
            {
                Some(single) => single,
                None => continue,
            },
        };
        let message_id = verify::resend::captured_message_id(&captured_headers);
        let headers = match mode {
            ReplayMode::Verbatim => verify::resend::verbatim_headers(captured_headers),
            ReplayMode::Resign => verify::resend::resign_base_headers(),
        };
        planned.push(PlannedRequest {
            origin,
            headers,
            body: Bytes::from(body),
            message_id,
        });
    }
    Ok(Plan {
        requests: planned,
        skipped_refused,
    })
}

/// Requests of a verbatim replay whose captured signature is older than its window: a
/// receiver that checks it refuses them as `timestamp_too_old`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleCaptures {
    /// How many.
    pub count: usize,
    /// The oldest signature's age in seconds.
    pub oldest_secs: i64,
    /// The windows they passed, in seconds (one per scheme tolerance met).
    pub tolerances_secs: std::collections::BTreeSet<i64>,
}

/// The requests whose captured headers carry a signed timestamp older than its window at
/// `now_secs`, judged by `schemes` (the signature files' schemes, or
/// [`verify::resend::timestamped_schemes`]); `None` when there are none.
pub fn stale_captures(
    requests: &[PlannedRequest],
    schemes: &[verify::Scheme],
    now_secs: i64,
) -> Option<StaleCaptures> {
    let mut stale = StaleCaptures::default();
    for request in requests {
        if let Some(found) = verify::resend::stale_signature(&request.headers, schemes, now_secs) {
            stale.count += 1;
            stale.oldest_secs = stale.oldest_secs.max(found.age_secs);
            stale.tolerances_secs.insert(found.tolerance_secs);
        }
    }
    (stale.count > 0).then_some(stale)
}

fn keep(item: &SourceItem, filter: &ReplayFilter) -> bool {
    let envelope = parse_envelope(item.body()).ok();
    if !filter.event_names.is_empty() {
        let named = envelope.as_ref().is_some_and(|envelope| {
            envelope.events.iter().any(|event| {
                filter
                    .event_names
                    .iter()
                    .any(|name| *name == event.event_name)
            })
        });
        if !named {
            return false;
        }
    }
    if let Some(event_id) = &filter.event_id {
        let has = envelope
            .as_ref()
            .is_some_and(|envelope| envelope.events.iter().any(|e| e.event_id == *event_id));
        if !has {
            return false;
        }
    }
    let time = match item {
        SourceItem::Capture(record) => Some(record.received_at_ms),
        SourceItem::Envelope(_) => envelope
            .as_ref()
            .and_then(|envelope| envelope.events.first())
            .map(|event| event.timestamp.epoch_millis()),
    };
    let after_since = filter
        .since_ms
        .is_none_or(|since| time.is_some_and(|t| t >= since));
    let before_until = filter
        .until_ms
        .is_none_or(|until| time.is_some_and(|t| t < until));
    after_since && before_until
}

/// How to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The Target URL (`http://` only).
    pub to: TargetUrl,
    /// Verbatim or re-signed.
    pub mode: ReplayMode,
    /// Credentials for re-signed requests.
    pub auth: ReplayAuth,
    /// Requests per second, open model; `None` for as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Most requests in flight at once (1 keeps the source order strictly).
    pub concurrency: usize,
    /// Bound on one request, connect included.
    pub request_timeout: Duration,
    /// Show a progress bar (on a terminal) or plain progress lines.
    pub progress: bool,
}

/// What happened to one request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Where it came from.
    pub origin: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The transport error, when none did.
    pub error: Option<String>,
    /// Time from sending to the end of the answer.
    pub latency_ms: f64,
    /// How late the request left against its schedule (0 without `--rate`).
    pub late_ms: f64,
    /// The first bytes of the answer.
    pub response_excerpt: String,
}

impl Outcome {
    /// A 2xx answer.
    pub fn acknowledged(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// The end-of-run summary (also the `--report` JSON).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySummary {
    /// Requests tried: each was sent, or failed to be (a connection refused counts here too;
    /// `errors` says how many got no answer).
    pub attempted: usize,
    /// Requests answered 2xx.
    pub acknowledged: usize,
    /// Answers by class: `2xx`, `4xx`, …
    pub by_status_class: BTreeMap<String, usize>,
    /// Requests that got no answer (connection refused, timeout, …).
    pub errors: usize,
    /// Latency percentiles in milliseconds: `p50`, `p95`, `p99`, `max`.
    pub latency_ms: BTreeMap<String, f64>,
    /// The rate asked for, if any.
    pub rate: Option<f64>,
    /// Time from the first send to the last answer, in seconds.
    pub duration_secs: f64,
    /// Schedule lateness percentiles in milliseconds (`p50`, `p99`, `max`).
    pub late_ms: BTreeMap<String, f64>,
    /// Every request that was not acknowledged.
    pub failures: Vec<Outcome>,
    /// Refused captures re-signing left out (see [`ReplayFilter::include_refused`]).
    pub skipped_refused: usize,
}

impl ReplaySummary {
    fn from_outcomes(outcomes: &[Outcome], rate: Option<f64>, duration: Duration) -> Self {
        let mut by_status_class = BTreeMap::new();
        for status in outcomes.iter().filter_map(|outcome| outcome.status) {
            *by_status_class
                .entry(format!("{}xx", status / 100))
                .or_insert(0) += 1;
        }
        let latencies: Vec<f64> = outcomes.iter().map(|outcome| outcome.latency_ms).collect();
        let lateness: Vec<f64> = outcomes.iter().map(|outcome| outcome.late_ms).collect();
        Self {
            attempted: outcomes.len(),
            acknowledged: outcomes.iter().filter(|o| o.acknowledged()).count(),
            by_status_class,
            errors: outcomes.iter().filter(|o| o.status.is_none()).count(),
            latency_ms: percentiles(latencies, &[("p50", 50.0), ("p95", 95.0), ("p99", 99.0)]),
            rate,
            duration_secs: duration.as_secs_f64(),
            late_ms: percentiles(lateness, &[("p50", 50.0), ("p99", 99.0)]),
            failures: outcomes
                .iter()
                .filter(|outcome| !outcome.acknowledged())
                .cloned()
                .collect(),
            skipped_refused: 0,
        }
    }

    /// Whether every request tried was acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        self.acknowledged == self.attempted
    }

    /// The summary as the lines printed at the end of a run.
    pub fn render(&self) -> String {
        let classes: Vec<String> = self
            .by_status_class
            .iter()
            .map(|(class, count)| format!("{class}: {count}"))
            .collect();
        let pick = |map: &BTreeMap<String, f64>, key: &str| map.get(key).copied().unwrap_or(0.0);
        // "Acknowledged" first: a request tried is not a request delivered (a port nobody
        // listens on refuses every one of them).
        let mut text = format!(
            "{} of {} acknowledged in {:.2} s; {} got no answer\nby status: {}\nlatency ms: p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}\n",
            self.acknowledged,
            self.attempted,
            self.duration_secs,
            self.errors,
            if classes.is_empty() { "none".to_owned() } else { classes.join(", ") },
            pick(&self.latency_ms, "p50"),
            pick(&self.latency_ms, "p95"),
            pick(&self.latency_ms, "p99"),
            pick(&self.latency_ms, "max"),
        );
        if let Some(rate) = self.rate {
            text.push_str(&format!(
                "rate {rate}/s: behind schedule p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
                pick(&self.late_ms, "p50"),
                pick(&self.late_ms, "p99"),
                pick(&self.late_ms, "max"),
            ));
        }
        for failure in self.failures.iter().take(20) {
            // The answer's first bytes are the target's, the origin names a capture: shown
            // escaped, so neither can write terminal controls or fake a line of the summary.
            let what = match (failure.status, &failure.error) {
                (Some(status), _) => format!("{status} {}", failure.response_excerpt),
                (None, Some(error)) => error.clone(),
                (None, None) => "no answer".to_owned(),
            };
            text.push_str(&format!(
                "not acknowledged: {}: {}\n",
                printable(&failure.origin),
                printable(&what)
            ));
        }
        if self.skipped_refused > 0 {
            text.push_str(&format!(
                "skipped {} refused capture(s) (--include-refused re-signs them too)\n",
                self.skipped_refused
            ));
        }
        text
    }
}

/// Percentiles by nearest rank, plus `max`; empty input gives zeros.
fn percentiles(mut values: Vec<f64>, wanted: &[(&str, f64)]) -> BTreeMap<String, f64> {
    values.sort_by(f64::total_cmp);
    let at = |percent: f64| -> f64 {
        if values.is_empty() {
            return 0.0;
        }
        let rank = ((percent / 100.0) * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    let mut map: BTreeMap<String, f64> = wanted
        .iter()
        .map(|(name, percent)| ((*name).to_owned(), at(*percent)))
        .collect();
    map.insert("max".to_owned(), values.last().copied().unwrap_or(0.0));
    map
}

use common::client::HttpClient;

/// Sends every planned request and summarises.
///
/// # Errors
/// An `https` Target URL.
pub async fn send_all(
    requests: Vec<PlannedRequest>,
    options: &SendOptions,
) -> anyhow::Result<ReplaySummary> {
    if options.to.is_https() {
        bail!(
            "--to must be an http:// URL with a host (got {}); https targets are not supported by replay",
            options.to
        );
    }
    let client = common::client::http_client(options.request_timeout);
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let progress = Progress::new(options.progress, requests.len());
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, request) in requests.into_iter().enumerate() {
        let due = options
            .rate
            .map(|rate| start + Duration::from_secs_f64(index as f64 / rate));
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .context("the concurrency limiter closed")?;
        let late_ms = due.map_or(0.0, |due| {
            tokio::time::Instant::now()
                .saturating_duration_since(due)
                .as_secs_f64()
                * 1000.0
        });
        let client = client.clone();
        let options = options.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut outcome = send_one(&client, &options, request).await;
            outcome.late_ms = late_ms;
            progress.record(&outcome);
            drop(permit);
            (index, outcome)
        });
    }
    let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.context("a replay task panicked")?);
    }
    outcomes.sort_by_key(|(index, _)| *index);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, outcome)| outcome).collect();
    progress.finish();
    Ok(ReplaySummary::from_outcomes(
        &outcomes,
        options.rate,
        started.elapsed(),
    ))
}

/// The headers a request leaves with: captured or plain ones, plus fresh authentication.
pub fn outgoing_headers(
    request: &PlannedRequest,
    mode: ReplayMode,
    auth: &ReplayAuth,
    now_secs: i64,
) -> Vec<(String, String)> {
    let mut headers = request.headers.clone();
    if mode == ReplayMode::Resign {
        let message_id = request
            .message_id
            .clone()
            .unwrap_or_else(crate::registry::new_msg_id);
        verify::resend::add_authentication(
            &mut headers,
            auth,
            &message_id,
            now_secs,
            &request.body,
        );
    }
    headers
}

async fn send_one(client: &HttpClient, options: &SendOptions, request: PlannedRequest) -> Outcome {
    // Signed as it leaves, so a slow or rate-limited run never sends a stale timestamp.
    let headers = outgoing_headers(&request, options.mode, &options.auth, verify::unix_now());
    let answer = common::client::post(
        client,
        options.to.uri(),
        &headers,
        request.body,
        options.request_timeout,
    )
    .await;
    Outcome {
        origin: request.origin,
        status: answer.status,
        error: answer.error,
        latency_ms: answer.latency_ms,
        late_ms: 0.0,
        response_excerpt: answer.excerpt,
    }
}

/// Progress on standard error: a bar on a terminal, a plain line a second otherwise.
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: Option<Arc<PlainProgress>>,
}

struct PlainProgress {
    total: usize,
    done: std::sync::atomic::AtomicUsize,
    acknowledged: std::sync::atomic::AtomicUsize,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Self {
        if !enabled {
            return Self {
                bar: None,
                plain: None,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} tried  {per_sec}  eta {eta}  {msg}",
            ) {
                bar.set_style(style);
            }
            return Self {
                bar: Some(bar),
                plain: None,
            };
        }
        Self {
            bar: None,
            plain: Some(Arc::new(PlainProgress {
                total,
                done: std::sync::atomic::AtomicUsize::new(0),
                acknowledged: std::sync::atomic::AtomicUsize::new(0),
                last_line: std::sync::Mutex::new(Instant::now()),
            })),
        }
    }

    fn record(&self, outcome: &Outcome) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if !outcome.acknowledged() {
                bar.set_message(format!("last failure: {}", outcome.origin));
            }
        }
        if let Some(plain) = &self.plain {
            use std::sync::atomic::Ordering::Relaxed;
            if outcome.acknowledged() {
                plain.acknowledged.fetch_add(1, Relaxed);
            }
            let done = plain.done.fetch_add(1, Relaxed) + 1;
            // A std Mutex held for one comparison, never across an await.
            let mut last = plain.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(1) || done == plain.total {
                *last = Instant::now();
                let acknowledged = plain.acknowledged.load(Relaxed);
                common::logging::tell(
                    "INFO",
                    format_args!(
                        "replay: {done}/{} tried, {acknowledged} acknowledged",
                        plain.total
                    ),
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verify::{CaptureRecord, Verdict};

    fn capture(body: &str, at_ms: i64) -> SourceItem {
        SourceItem::Capture(CaptureRecord {
            received_at_ms: at_ms,
            method: "POST".into(),
            path: "/webhook".into(),
            headers: vec![
                ("Host".into(), "old:1".into()),
                ("content-type".into(), "application/json".into()),
                ("webhook-id".into(), "msg_old".into()),
                ("content-length".into(), "99".into()),
            ],
            body: body.as_bytes().to_vec(),
            verdict: Verdict::Accepted,
            reason: None,
        })
    }

    const BATCH: &str = r#"{"accountId":1,"events":[{"eventId":"a","eventName":"COURSE_ENROLLMENT_BATCH","timestamp":1,"data":{}},{"eventId":"b","eventName":"COURSE_ENROLLMENT_BATCH","timestamp":2,"data":{}}]}"#;

    #[test]
    fn verbatim_keeps_captured_headers_but_not_framing() {
        let planned = plan(
            vec![("f".into(), capture(BATCH, 5))],
            ReplayMode::Verbatim,
            &ReplayFilter::default(),
        )
        .expect("plans")
        .requests;
        let names: Vec<&str> = planned[0].headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type", "webhook-id"]);
        assert_eq!(planned[0].body, BATCH.as_bytes());
    }

    #[test]
    fn resign_keeps_the_message_id_and_signs_fresh() {
        let planned = plan(
            vec![("f".into(), capture(BATCH, 5))],
            ReplayMode::Resign,
            &ReplayFilter::default(),
        )
        .expect("plans")
        .requests;
        let keyring = verify::Keyring::single(verify::SigningSecret::generate());
        let auth = ReplayAuth {
            basic: None,
            keyrings: vec![keyring.clone()],
        };
        let headers = outgoing_headers(&planned[0], ReplayMode::Resign, &auth, 1_795_000_000);
        assert!(headers.contains(&("webhook-id".to_owned(), "msg_old".to_owned())));
        assert!(keyring
            .verify_at(&headers, BATCH.as_bytes(), 1_795_000_000)
            .is_ok());
    }

    #[test]
    fn filters_by_name_time_and_event_id() {
        let items = || {
            vec![
                ("a".to_owned(), capture(BATCH, 1_000)),
                (
                    "b".to_owned(),
                    capture(&BATCH.replace("COURSE_ENROLLMENT_BATCH", "CI_STATS"), 2_000),
                ),
            ]
        };
        let only = |filter: ReplayFilter| -> Vec<String> {
            plan(items(), ReplayMode::Resign, &filter)
                .expect("plans")
                .requests
                .into_iter()
                .map(|request| request.origin)
                .collect()
        };
        assert_eq!(
            only(ReplayFilter {
                event_names: vec!["CI_STATS".into()],
                ..Default::default()
            }),
            ["b"]
        );
        assert_eq!(
            only(ReplayFilter {
                since_ms: Some(1_500),
                ..Default::default()
            }),
            ["b"]
        );
        assert_eq!(
            only(ReplayFilter {
                until_ms: Some(1_500),
                ..Default::default()
            }),
            ["a"]
        );
        let single = plan(
            items(),
            ReplayMode::Resign,
            &ReplayFilter {
                event_id: Some("b".into()),
                ..Default::default()
            },
        )
        .expect("plans")
        .requests;
        assert_eq!(single.len(), 2);
        assert!(std::str::from_utf8(&single[0].body)
            .expect("utf8")
            .contains("\"events\":[{\"eventId\":\"b\""));
    }

    #[test]
    fn resigning_skips_refused_captures_unless_asked_verbatim_keeps_them() {
        let mut refused = capture(BATCH, 7);
        if let SourceItem::Capture(record) = &mut refused {
            record.verdict = Verdict::Refused;
            record.reason = Some("no_matching_signature".into());
        }
        let items = || {
            vec![
                ("accepted".to_owned(), capture(BATCH, 5)),
                ("refused".to_owned(), refused.clone()),
                (
                    "envelope".to_owned(),
                    SourceItem::Envelope(BATCH.as_bytes().to_vec()),
                ),
            ]
        };
        let origins = |mode: ReplayMode, include_refused: bool| {
            let planned = plan(
                items(),
                mode,
                &ReplayFilter {
                    include_refused,
                    ..Default::default()
                },
            )
            .expect("plans");
            let origins: Vec<String> = planned.requests.into_iter().map(|r| r.origin).collect();
            (origins, planned.skipped_refused)
        };
        assert_eq!(
            origins(ReplayMode::Resign, false),
            (vec!["accepted".to_owned(), "envelope".to_owned()], 1)
        );
        let all = vec![
            "accepted".to_owned(),
            "refused".to_owned(),
            "envelope".to_owned(),
        ];
        assert_eq!(origins(ReplayMode::Resign, true), (all.clone(), 0));
        assert_eq!(origins(ReplayMode::Verbatim, false), (all, 0));
    }

    #[test]
    fn stale_captures_are_counted_with_the_oldest_age() {
        const NOW: i64 = 1_795_000_000;
        let signed = |origin: &str, at: i64| PlannedRequest {
            origin: origin.into(),
            headers: vec![("webhook-timestamp".into(), at.to_string())],
            body: Bytes::from_static(b"{}"),
            message_id: None,
        };
        let requests = [
            signed("a", NOW - 3600),
            signed("b", NOW - 10),
            signed("c", NOW - 600),
        ];
        let schemes = verify::resend::timestamped_schemes();
        let stale = stale_captures(&requests, &schemes, NOW).expect("two are stale");
        assert_eq!((stale.count, stale.oldest_secs), (2, 3600));
        assert_eq!(stale.tolerances_secs.into_iter().collect::<Vec<_>>(), [300]);
        assert_eq!(stale_captures(&requests[1..2], &schemes, NOW), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let map = percentiles(values, &[("p50", 50.0), ("p99", 99.0)]);
        assert_eq!((map["p50"], map["p99"], map["max"]), (50.0, 99.0, 100.0));
        assert_eq!(percentiles(Vec::new(), &[("p50", 50.0)])["p50"], 0.0);
    }
}
