//! Reading what `sender replay` and `receiver check` are given: capture JSON Lines, a bare
//! envelope, or JSON Lines of envelopes (SPEC section 4). Pure: the caller reads the files and
//! walks directories.

use serde_json::value::RawValue;

use crate::capture::CaptureRecord;

/// One request found in a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceItem {
    /// A capture record: headers, body bytes, time and verdict.
    Capture(CaptureRecord),
    /// A bare envelope: only the body bytes, exactly as they stand in the file, without the
    /// whitespace before and after the document (a trailing newline is not part of a body).
    Envelope(Vec<u8>),
}

impl SourceItem {
    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        match self {
            Self::Capture(record) => &record.body,
            Self::Envelope(body) => body,
        }
    }
}

/// Why a source cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {detail}")]
pub struct SourceError {
    /// 1-based line number (1 for a whole-file document).
    pub line: usize,
    /// What is wrong.
    pub detail: String,
}

/// Reads a source file's bytes: a single JSON document (an envelope or one capture record,
/// pretty-printed or not), or JSON Lines of either, mixed freely. Blank lines are skipped.
///
/// # Errors
/// The first line that is neither a capture record nor an envelope.
pub fn parse_source(bytes: &[u8]) -> Result<Vec<SourceItem>, SourceError> {
    let whole = trim_ascii(bytes);
    if whole.is_empty() {
        return Ok(Vec::new());
    }
    // A whole-file document first: a pretty-printed envelope spans many lines.
    if serde_json::from_slice::<&RawValue>(whole).is_ok() {
        return classify(whole, 1).map(|item| vec![item]);
    }
    let mut items = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        let line = trim_ascii(line);
        if !line.is_empty() {
            items.push(classify(line, index + 1)?);
        }
    }
    Ok(items)
}

/// Decides whether a JSON document is a capture record or an envelope.
fn classify(document: &[u8], line: usize) -> Result<SourceItem, SourceError> {
    #[derive(serde::Deserialize)]
    struct Shape<'a> {
        #[serde(borrow)]
        version: Option<&'a RawValue>,
        #[serde(borrow)]
        body: Option<&'a RawValue>,
        #[serde(rename = "accountId", borrow)]
        account_id: Option<&'a RawValue>,
    }
    let error = |detail: String| SourceError { line, detail };
    let shape: Shape<'_> =
        serde_json::from_slice(document).map_err(|e| error(format!("not a JSON object: {e}")))?;
    if shape.version.is_some() && shape.body.is_some() {
        let text = std::str::from_utf8(document).map_err(|e| error(e.to_string()))?;
        return CaptureRecord::from_json_line(text)
            .map(SourceItem::Capture)
            .map_err(|e| error(e.to_string()));
    }
    if shape.account_id.is_some() {
        return Ok(SourceItem::Envelope(document.to_vec()));
    }
    Err(error(
        "neither a capture record (version, body, …) nor an envelope (accountId, events)".into(),
    ))
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Verdict;

    fn capture_line(body: &str) -> String {
        CaptureRecord {
            received_at_ms: 1_795_000_000_000,
            method: "POST".into(),
            path: "/webhook".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            verdict: Verdict::Accepted,
            reason: None,
        }
        .to_json_line()
    }

    #[test]
    fn reads_every_documented_form() {
        let envelope = r#"{"accountId":1,"events":[]}"#;
        let pretty = "{\n  \"accountId\": 1,\n  \"events\": []\n}\n";
        assert_eq!(
            parse_source(pretty.as_bytes()).expect("pretty envelope"),
            vec![SourceItem::Envelope(pretty.trim().as_bytes().to_vec())]
        );
        let lines = format!(
            "{}\n\n{envelope}\n{}\n",
            capture_line(envelope),
            capture_line("{}")
        );
        let items = parse_source(lines.as_bytes()).expect("mixed lines");
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], SourceItem::Capture(_)));
        assert_eq!(items[1].body(), envelope.as_bytes());
        assert_eq!(items[2].body(), b"{}");
        assert!(parse_source(b"  \n").expect("empty").is_empty());
    }

    #[test]
    fn names_the_bad_line() {
        let text = "{\"accountId\":1,\"events\":[]}\n{\"hello\":1}\n";
        let error = parse_source(text.as_bytes()).expect_err("second line is neither");
        assert_eq!(error.line, 2);
        let error = parse_source(b"{\"accountId\":1}\nnot json\n").expect_err("bad json");
        assert!(
            error.to_string().starts_with("line 2: not a JSON object"),
            "{error}"
        );
    }
}
