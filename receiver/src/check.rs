//! `receiver check`: would these requests be accepted, and if not, why? It reads what
//! [`verify::parse_source`] reads (capture records, bare envelopes, JSON Lines of either), from
//! a file, a directory of files or standard input, and runs the listener's checks offline,
//! storing nothing: authentication first, explained by [`verify::diagnose_at`], then the
//! envelope.
//!
//! A captured request is checked with the clock at its `receivedAt`, so a signature that was
//! valid on arrival still checks as valid later; a bare envelope has no headers and no time,
//! so it is checked against the current clock and passes only without authentication.
//!
//! The store keeps `authorization` redacted (`Basic [redacted]`), so a Basic capture cannot be
//! re-checked: it gets the verdict `unchecked` and says so, instead of a misleading
//! `basic_malformed`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;
use verify::timestamp::format_iso_seconds;
use verify::{Authentication, SourceItem};

/// The reason given for a Basic capture whose credentials were redacted.
pub(crate) const CREDENTIALS_REDACTED: &str = "credentials_redacted";

/// One request to check, and where it came from.
#[derive(Debug)]
pub(crate) struct Item {
    /// `file`, `file:line`, or `-:line` for standard input.
    pub(crate) source: String,
    pub(crate) item: SourceItem,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Refused,
    /// Could not be decided offline (redacted Basic credentials).
    Unchecked,
}

impl Verdict {
    /// `accepted`, `refused` or `unchecked`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Unchecked => "unchecked",
        }
    }
}

/// The verdict on one item with everything a person needs to act on it.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) source: String,
    pub(crate) verdict: Verdict,
    /// The reason code of a refusal, or [`CREDENTIALS_REDACTED`].
    pub(crate) reason: Option<String>,
    /// How many events, when accepted.
    pub(crate) events: Option<usize>,
    /// Plain sentences, most useful first.
    pub(crate) findings: Vec<String>,
    /// The clock the check used, Unix seconds.
    pub(crate) checked_at_secs: i64,
    /// The verdict and reason recorded in the capture, if it is one.
    pub(crate) captured: Option<(verify::Verdict, Option<String>)>,
}

impl Report {
    /// One head line and the findings indented under it.
    pub(crate) fn to_text(&self) -> String {
        let head = match self.verdict {
            Verdict::Accepted => format!(
                "{}  accepted  {} events",
                self.source,
                self.events.unwrap_or_default()
            ),
            _ => format!(
                "{}  {}  {}",
                self.source,
                self.verdict.as_str(),
                self.reason.as_deref().unwrap_or_default()
            ),
        };
        let mut text = head;
        for finding in &self.findings {
            text.push_str("\n    ");
            text.push_str(finding);
        }
        text
    }

    /// The report as one JSON object.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "source": self.source,
            "verdict": self.verdict.as_str(),
            "reason": self.reason,
            "events": self.events,
            "findings": self.findings,
            "checkedAt": format_iso_seconds(self.checked_at_secs),
            "captured": self.captured.as_ref().map(|(verdict, reason)| json!({
                "verdict": verdict.as_str(),
                "reason": reason,
            })),
        })
    }
}

/// Checks one item; `now_secs` is the clock for bare envelopes.
pub(crate) fn check(authentication: &Authentication, item: &Item, now_secs: i64) -> Report {
    let (headers, body, at_secs, captured) = match &item.item {
        SourceItem::Capture(record) => (
            record.headers.as_slice(),
            record.body.as_slice(),
            record.received_at_ms.div_euclid(1000),
            Some((record.verdict, record.reason.clone())),
        ),
        SourceItem::Envelope(body) => (&[][..], body.as_slice(), now_secs, None),
    };
    let mut report = Report {
        source: item.source.clone(),
        verdict: Verdict::Accepted,
        reason: None,
        events: None,
        findings: Vec::new(),
        checked_at_secs: at_secs,
        captured: captured.clone(),
    };
    let redacted_basic = matches!(authentication, Authentication::Basic(_))
        && headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(verify::headers::AUTHORIZATION)
                && value.contains(crate::service::REDACTED)
        });
    if redacted_basic {
        report.verdict = Verdict::Unchecked;
        report.reason = Some(CREDENTIALS_REDACTED.to_owned());
        report
            .findings
            .push("credentials were redacted at capture; cannot re-check Basic".to_owned());
    } else {
        let diagnosis = verify::diagnose_at(authentication, headers, body, at_secs);
        if diagnosis.verdict.is_err() {
            report.verdict = Verdict::Refused;
            report.reason = Some(diagnosis.reason_code());
            report.findings = diagnosis.findings;
            if captured.is_none() {
                report.findings.push(
                    "a bare envelope carries no headers: only a receiver without \
                     authentication can accept it (check a capture record instead)"
                        .to_owned(),
                );
            }
        }
    }
    // The listener reads the envelope after authentication; a body it cannot read is refused
    // whatever the credentials were.
    if report.verdict != Verdict::Refused {
        match verify::parse_envelope(body) {
            Ok(envelope) if report.verdict == Verdict::Accepted => {
                report.events = Some(envelope.events.len());
            }
            Ok(_) => {}
            Err(error) => {
                report.verdict = Verdict::Refused;
                report.reason = Some(error.reason_code().to_owned());
                report.findings.push(error.to_string());
            }
        }
    }
    if let Some(declared) = declared_length(headers).filter(|length| *length > body.len() as u64) {
        report.findings.push(format!(
            "the capture keeps {} of the {declared} bytes that arrived (refused bodies are kept \
             cut short): this verdict is for the kept part, not for the request as it came",
            body.len()
        ));
    } else if matches!(captured, Some((verify::Verdict::Refused, _)))
        && body.len() == crate::service::MAX_KEPT_REFUSED_BODY
    {
        // Chunked, or a Content-Length list: no declared size to compare with.
        report.findings.push(format!(
            "the capture keeps exactly the {} bytes a refused body is cut to: it was probably \
             longer, and this verdict is for the kept part",
            body.len()
        ));
    }
    if let Some((verdict, reason)) = &captured {
        let same = match (verdict, report.verdict) {
            (verify::Verdict::Accepted, Verdict::Accepted) => true,
            (verify::Verdict::Refused, Verdict::Refused) => reason == &report.reason,
            _ => false,
        };
        if !same {
            report.findings.push(match (verdict, reason) {
                (verify::Verdict::Accepted, _) => {
                    "on arrival the receiver accepted it (with the keyring it had then)".to_owned()
                }
                (verify::Verdict::Refused, reason) => format!(
                    "on arrival the receiver refused it with {}",
                    reason.as_deref().unwrap_or("no reason recorded")
                ),
            });
        }
    }
    report
}

/// The `Content-Length` a captured request declared, if any.
fn declared_length(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// Reads every item of `source`: a file, a directory of files (in name order, hidden files
/// skipped, not recursive), or `-` for standard input.
///
/// # Errors
/// The source cannot be read, or a document in it is neither a capture record nor an envelope.
pub(crate) fn read_source(source: &Path) -> anyhow::Result<Vec<Item>> {
    if source == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        return items_of("-", &bytes).context("reading standard input");
    }
    if source.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(source)
            .with_context(|| format!("reading directory {}", source.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .filter(|path| {
                !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        let mut items = Vec::new();
        for file in files {
            items.extend(read_file(&file)?);
        }
        return Ok(items);
    }
    read_file(source)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Item>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    items_of(&path.display().to_string(), &bytes)
        .with_context(|| format!("reading {}", path.display()))
}

/// Names each item `name:line` for JSON Lines, or `name` for a whole-file document.
fn items_of(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<Item>> {
    let items = verify::parse_source(bytes)?;
    // `parse_source` gives one item per non-blank line for JSON Lines; anything else was one
    // document spanning the file.
    let lines: Vec<usize> = bytes
        .split(|byte| *byte == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, _)| index + 1)
        .collect();
    let by_line = lines.len() == items.len() && lines.len() > 1;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| Item {
            source: if by_line {
                format!("{name}:{}", lines[index])
            } else {
                name.to_owned()
            },
            item,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use verify::{BasicCredentials, CaptureRecord, Keyring, SigningSecret};

    const BODY: &[u8] =
        br#"{"accountId":1,"events":[{"eventId":"e","eventName":"X","timestamp":1,"data":{}}]}"#;

    fn capture(headers: Vec<(String, String)>, at_secs: i64) -> Item {
        Item {
            source: "c".into(),
            item: SourceItem::Capture(CaptureRecord {
                received_at_ms: at_secs * 1000,
                method: "POST".into(),
                path: "/webhook".into(),
                headers,
                body: BODY.to_vec(),
                verdict: verify::Verdict::Accepted,
                reason: None,
            }),
        }
    }

    #[test]
    fn captures_are_checked_at_their_arrival_time() {
        let keyring = Keyring::single(SigningSecret::generate());
        let arrived = 1_700_000_000;
        let item = capture(keyring.sign_headers("m", arrived, BODY), arrived);
        let signature = Authentication::Signature(vec![keyring]);
        let report = check(&signature, &item, arrived + 86_400);
        assert_eq!(report.verdict, Verdict::Accepted);
        assert_eq!(report.events, Some(1));
        let bare = Item {
            source: "b".into(),
            item: SourceItem::Envelope(BODY.to_vec()),
        };
        let report = check(&signature, &bare, arrived);
        assert_eq!(report.reason.as_deref(), Some("missing_header:webhook-id"));
        assert!(report
            .to_text()
            .contains("a bare envelope carries no headers"));
        assert_eq!(
            check(&Authentication::None, &bare, 0).verdict,
            Verdict::Accepted
        );
        let broken = Item {
            source: "x".into(),
            item: SourceItem::Envelope(b"{\"accountId\":1}".to_vec()),
        };
        let report = check(&Authentication::None, &broken, 0);
        assert_eq!(report.reason.as_deref(), Some("invalid_envelope"));
    }

    #[test]
    fn redacted_basic_is_unchecked_not_malformed() {
        let basic = Authentication::Basic(BasicCredentials::new("crm", "pw").unwrap());
        let item = capture(
            vec![("authorization".into(), "Basic [redacted]".into())],
            1_700_000_000,
        );
        let report = check(&basic, &item, 0);
        assert_eq!(report.verdict, Verdict::Unchecked);
        assert_eq!(report.reason.as_deref(), Some(CREDENTIALS_REDACTED));
        assert!(report
            .to_text()
            .contains("credentials were redacted at capture; cannot re-check Basic"));
        // No header at all is still an ordinary refusal.
        let report = check(&basic, &capture(Vec::new(), 1_700_000_000), 0);
        assert_eq!(report.reason.as_deref(), Some("basic_missing"));
        assert!(report
            .to_text()
            .contains("on arrival the receiver accepted it"));
    }

    #[test]
    fn a_body_kept_cut_short_is_said_to_be() {
        let mut item = capture(
            vec![("content-length".into(), "200000".into())],
            1_700_000_000,
        );
        let report = check(&Authentication::None, &item, 0);
        assert!(
            report
                .to_text()
                .contains(&format!("keeps {} of the 200000 bytes", BODY.len())),
            "{}",
            report.to_text()
        );
        // A whole body says nothing of the kind.
        if let SourceItem::Capture(record) = &mut item.item {
            record.headers = vec![("content-length".into(), record.body.len().to_string())];
        }
        let report = check(&Authentication::None, &item, 0);
        assert!(
            !report.to_text().contains("cut short"),
            "{}",
            report.to_text()
        );
        // A refused chunked body kept at the cut length has no size to compare with.
        if let SourceItem::Capture(record) = &mut item.item {
            record.headers = vec![("transfer-encoding".into(), "chunked".into())];
            record.body = vec![b' '; crate::service::MAX_KEPT_REFUSED_BODY];
            record.verdict = verify::Verdict::Refused;
            record.reason = Some("invalid_json".into());
        }
        let report = check(&Authentication::None, &item, 0);
        assert!(
            report.to_text().contains("it was probably longer"),
            "{}",
            report.to_text()
        );
    }

    #[test]
    fn items_are_named_by_line() {
        let lines = format!(
            "{}\n\n{}\n",
            std::str::from_utf8(BODY).unwrap(),
            std::str::from_utf8(BODY).unwrap()
        );
        let names: Vec<String> = items_of("f", lines.as_bytes())
            .unwrap()
            .into_iter()
            .map(|item| item.source)
            .collect();
        assert_eq!(names, vec!["f:1", "f:3"]);
        let pretty = "{\n \"accountId\": 1,\n \"events\": []\n}\n";
        let names: Vec<String> = items_of("p", pretty.as_bytes())
            .unwrap()
            .into_iter()
            .map(|item| item.source)
            .collect();
        assert_eq!(names, vec!["p"]);
    }
}
