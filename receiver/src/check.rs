//! `receiver check`: would these requests be accepted? It reads capture records (SPEC section
//! 4), bare envelope files, directories of them, or JSON Lines of envelopes, and runs the same
//! authentication and envelope checks as the listener, without storing anything.
//!
//! A captured request is checked with the clock at its `receivedAt`, so a signature that was
//! valid on arrival still checks as valid later; a bare envelope has no headers and no time,
//! so it is checked against the current clock and passes only without authentication.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use verify::{Authentication, CaptureRecord};

/// One request to check, and where it came from.
#[derive(Debug)]
pub(crate) struct Item {
    /// `file` or `file:line`.
    pub(crate) source: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Unix seconds to verify at.
    pub(crate) at_secs: i64,
}

/// The verdict on one item: the number of events, or the refusal's reason code.
pub(crate) fn check(authentication: &Authentication, item: &Item) -> Result<usize, String> {
    authentication
        .verify_at(&item.headers, &item.body, item.at_secs)
        .map_err(|error| error.reason_code().into_owned())?;
    verify::parse_envelope(&item.body)
        .map(|envelope| envelope.events.len())
        .map_err(|error| error.reason_code().to_owned())
}

/// Reads every item of `source` (a file or a directory of files, in name order).
///
/// # Errors
/// The source cannot be read, or a line is neither a capture record nor JSON.
pub(crate) fn read_items(source: &Path) -> anyhow::Result<Vec<Item>> {
    if source.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(source)
            .with_context(|| format!("reading directory {}", source.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        let mut items = Vec::new();
        for file in files {
            items.extend(read_file(&file)?);
        }
        Ok(items)
    } else {
        read_file(source)
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Item>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    // A whole file that is one JSON value: one capture record or one envelope, however it
    // is laid out. Otherwise: JSON Lines of either.
    if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
        return Ok(vec![item_from(&name, &bytes)]);
    }
    let mut items = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        items.push(item_from(&format!("{name}:{}", index + 1), line));
    }
    Ok(items)
}

fn item_from(source: &str, bytes: &[u8]) -> Item {
    let capture = std::str::from_utf8(bytes)
        .ok()
        .filter(|text| text.contains("\"receivedAt\""))
        .and_then(|text| CaptureRecord::from_json_line(text).ok());
    match capture {
        Some(record) => Item {
            source: source.to_owned(),
            headers: record.headers,
            body: record.body,
            at_secs: record.received_at_ms.div_euclid(1000),
        },
        None => Item {
            source: source.to_owned(),
            headers: Vec::new(),
            body: bytes.to_vec(),
            at_secs: verify::unix_now(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verify::{Keyring, SigningSecret, Verdict};

    #[test]
    fn captures_are_checked_at_their_arrival_time() {
        let keyring = Keyring::single(SigningSecret::generate());
        let body = br#"{"accountId":1,"events":[{"eventId":"e","eventName":"X","timestamp":1,"data":{}}]}"#;
        let arrived = 1_700_000_000;
        let record = CaptureRecord {
            received_at_ms: arrived * 1000,
            method: "POST".into(),
            path: "/webhook".into(),
            headers: keyring.sign_headers("m", arrived, body),
            body: body.to_vec(),
            verdict: Verdict::Accepted,
            reason: None,
        };
        let item = item_from("c", record.to_json_line().as_bytes());
        let signature = Authentication::Signature(vec![keyring]);
        assert_eq!(check(&signature, &item), Ok(1));
        let bare = item_from("b", body);
        assert_eq!(
            check(&signature, &bare),
            Err("missing_header:webhook-id".to_owned())
        );
        assert_eq!(check(&Authentication::None, &bare), Ok(1));
        let broken = item_from("x", b"{\"accountId\":1}");
        assert_eq!(
            check(&Authentication::None, &broken),
            Err("invalid_envelope".to_owned())
        );
    }
}
