//! The capture record of SPEC section 4: one HTTP request per JSON line, body byte-exact.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::timestamp::{format_iso_millis, parse_iso_millis};

/// The only version of the format so far.
pub const CAPTURE_VERSION: u32 = 1;

/// Whether the receiver accepted a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Answered 2xx: its events are stored.
    Accepted,
    /// Refused; `reason` says why.
    Refused,
}

impl Verdict {
    /// `accepted` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
        }
    }
}

/// One captured request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    /// When the receiver read the request, epoch milliseconds.
    pub received_at_ms: i64,
    /// The HTTP method.
    pub method: String,
    /// The request path (with query, if any).
    pub path: String,
    /// Headers in the order received, repeats kept; values that are not UTF-8 are kept lossily.
    pub headers: Vec<(String, String)>,
    /// The body, exactly the bytes received.
    pub body: Vec<u8>,
    /// The receiver's verdict.
    pub verdict: Verdict,
    /// The reason code of a refusal.
    pub reason: Option<String>,
}

/// Why a line is not a capture record.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Not JSON, or fields of the wrong type (quoted values left out of the message: a
    /// captured header may hold credentials).
    #[error("not a capture record: {0}")]
    Json(String),
    /// A `version` this code does not know.
    #[error("capture record version {0} is not supported (expected 1)")]
    UnsupportedVersion(u32),
    /// `receivedAt` is not an RFC 3339 date-time.
    #[error("receivedAt is not an RFC 3339 date-time")]
    InvalidTime,
    /// `bodyEncoding` is `base64` but `body` does not decode, or it is neither `utf8` nor `base64`.
    #[error("body does not decode as bodyEncoding {0:?} says")]
    InvalidBody(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    version: u32,
    received_at: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    body_encoding: String,
    verdict: Verdict,
    reason: Option<String>,
}

impl CaptureRecord {
    /// The record as one line of JSON, without the newline.
    pub fn to_json_line(&self) -> String {
        let (body, body_encoding) = match std::str::from_utf8(&self.body) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (BASE64.encode(&self.body), "base64"),
        };
        let wire = Wire {
            version: CAPTURE_VERSION,
            received_at: format_iso_millis(self.received_at_ms),
            method: self.method.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            body,
            body_encoding: body_encoding.to_owned(),
            verdict: self.verdict,
            reason: self.reason.clone(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads one line of JSON.
    ///
    /// # Errors
    /// [`CaptureError`] naming what is wrong.
    pub fn from_json_line(line: &str) -> Result<Self, CaptureError> {
        let wire: Wire = serde_json::from_str(line)
            .map_err(|error| CaptureError::Json(crate::error::json_error_detail(&error)))?;
        if wire.version != CAPTURE_VERSION {
            return Err(CaptureError::UnsupportedVersion(wire.version));
        }
        let body = match wire.body_encoding.as_str() {
            "utf8" => wire.body.into_bytes(),
            "base64" => BASE64
                .decode(wire.body)
                .map_err(|_| CaptureError::InvalidBody(wire.body_encoding.clone()))?,
            other => return Err(CaptureError::InvalidBody(other.to_owned())),
        };
        Ok(Self {
            received_at_ms: parse_iso_millis(&wire.received_at).ok_or(CaptureError::InvalidTime)?,
            method: wire.method,
            path: wire.path,
            headers: wire.headers,
            body,
            verdict: wire.verdict,
            reason: wire.reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8]) -> CaptureRecord {
        CaptureRecord {
            received_at_ms: 1_795_000_000_123,
            method: "POST".into(),
            path: "/webhook".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-dup".into(), "1".into()),
                ("x-dup".into(), "2".into()),
            ],
            body: body.to_vec(),
            verdict: Verdict::Refused,
            reason: Some("no_matching_signature".into()),
        }
    }

    #[test]
    fn utf8_body_is_kept_byte_exact_with_header_order() {
        let original = record(b"{ \"accountId\" : 1010,\n\"events\":[] }");
        let line = original.to_json_line();
        assert!(line.contains("\"bodyEncoding\":\"utf8\""));
        assert!(line.contains("\"receivedAt\":\"2026-11-18T"));
        assert_eq!(
            CaptureRecord::from_json_line(&line).expect("reads"),
            original
        );
    }

    #[test]
    fn binary_body_goes_base64() {
        let original = record(&[0xff, 0x00, 0x7b]);
        let line = original.to_json_line();
        assert!(line.contains("\"bodyEncoding\":\"base64\""));
        assert_eq!(
            CaptureRecord::from_json_line(&line).expect("reads"),
            original
        );
    }

    #[test]
    fn refuses_unknown_versions_and_encodings() {
        let line = record(b"{}").to_json_line();
        assert!(
            CaptureRecord::from_json_line(&line.replace("\"version\":1", "\"version\":9")).is_err()
        );
        assert!(CaptureRecord::from_json_line(&line.replace("\"utf8\"", "\"rot13\"")).is_err());
    }
}
