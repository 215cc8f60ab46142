//! What the listener prints on standard output for each event and refusal.
//!
//! Lines go through a bounded queue to one printing thread: if whoever reads our standard
//! output stops reading (a full pipe), the printer blocks but the server does not; lines that
//! do not fit in the queue are dropped and counted in the metrics. The `listening on` line is
//! not printed here but by the command, before serving, so it is always the first line.

use std::io::Write as _;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::text::{printable, printable_json};
use serde_json::json;
use verify::timestamp::format_iso_millis;

use crate::accept_outcome::AcceptOutcome;
use crate::config::OutputMode;
use crate::metrics::Metrics;
use crate::store::AcceptedRequest;

/// Lines waiting for the printer.
const QUEUE_LINES: usize = 8192;
/// How long closing waits for the printer to write what is queued.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The printer handle.
pub(crate) struct Output {
    mode: OutputMode,
    // Std mutexes held only for a non-blocking `try_send` or a take, never across `.await`.
    lines: Mutex<Option<SyncSender<String>>>,
    done: Mutex<Option<Receiver<()>>>,
    metrics: Arc<Metrics>,
}

impl Output {
    /// Starts the printing thread unless the mode is quiet.
    pub(crate) fn start(mode: OutputMode, metrics: Arc<Metrics>) -> Output {
        if mode == OutputMode::Quiet {
            return Output {
                mode,
                lines: Mutex::new(None),
                done: Mutex::new(None),
                metrics,
            };
        }
        let (sender, receiver) = mpsc::sync_channel::<String>(QUEUE_LINES);
        let (done_sender, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("output".to_owned())
            .spawn(move || {
                let stdout = std::io::stdout();
                for line in receiver {
                    let mut out = stdout.lock();
                    // A closed stdout (EPIPE) must not stop the receiver: drop the line.
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
                let _ = done_sender.send(());
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the output thread; output is off");
            return Output {
                mode: OutputMode::Quiet,
                lines: Mutex::new(None),
                done: Mutex::new(None),
                metrics,
            };
        }
        Output {
            mode,
            lines: Mutex::new(Some(sender)),
            done: Mutex::new(Some(done)),
            metrics,
        }
    }

    fn emit(&self, line: String) {
        let sent = match self.lines.lock() {
            Ok(lines) => lines.as_ref().map(|lines| lines.try_send(line).is_ok()),
            Err(_) => Some(false),
        };
        if sent == Some(false) {
            self.metrics.output_line_dropped();
        }
    }

    /// One line per event of an accepted request.
    pub(crate) fn accepted(&self, request: &AcceptedRequest, outcome: &AcceptOutcome) {
        if self.mode == OutputMode::Quiet {
            return;
        }
        let at = format_iso_millis(request.received_at_ms);
        for (event, new) in request.events.iter().zip(&outcome.new) {
            let line = match self.mode {
                // JSON escapes only C0 controls: a C1 control or a bidi override in an id
                // would reach the terminal as it is.
                OutputMode::Json => printable_json(&json!({
                    "type": "event",
                    "receivedAt": at,
                    "accountId": request.account_id,
                    "eventId": event.event_id,
                    "eventName": event.event_name,
                    "timestamp": event.timestamp_ms,
                    "known": event.known,
                    "auth": request.auth,
                    "duplicate": !new,
                })
                .to_string())
                .into_owned(),
                _ => format!(
                    "{at}  {name}{unknown}  account={account} event={id}  event-time={time}  auth={auth}:ok  {state}",
                    name = printable(&event.event_name),
                    unknown = if event.known { "" } else { " (unknown name)" },
                    account = request.account_id,
                    id = printable(&event.event_id),
                    time = format_iso_millis(event.timestamp_ms),
                    auth = request.auth,
                    state = if *new { "new" } else { "duplicate" },
                ),
            };
            self.emit(line);
        }
        if request.events.is_empty() && self.mode == OutputMode::Pretty {
            self.emit(format!(
                "{at}  (no events)  account={}  auth={}:ok",
                request.account_id, request.auth
            ));
        }
    }

    /// One line for a refused request.
    pub(crate) fn refused(
        &self,
        received_at_ms: i64,
        method: &str,
        path: &str,
        status: u16,
        reason: &str,
    ) {
        let at = format_iso_millis(received_at_ms);
        let line = match self.mode {
            OutputMode::Quiet => return,
            OutputMode::Json => printable_json(
                &json!({
                    "type": "refusal",
                    "receivedAt": at,
                    "method": method,
                    "path": path,
                    "status": status,
                    "reason": reason,
                })
                .to_string(),
            )
            .into_owned(),
            OutputMode::Pretty => format!(
                "{at}  REFUSED {status} {reason}  {} {}",
                printable(method),
                printable(path)
            ),
        };
        self.emit(line);
    }

    /// Stops the printer after it wrote what is queued, waiting a bounded time.
    pub(crate) fn close(&self) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.take();
        }
        let done = self.done.lock().ok().and_then(|mut done| done.take());
        if let Some(done) = done {
            let _ = done.recv_timeout(CLOSE_WAIT);
        }
    }
}
