//! Showing text that came from someone else (an `eventId`, a header, a body) to a person, on a
//! terminal or a page, without letting it forge what they see.
//!
//! One rule, [`shown_escaped`], decides which characters are never shown as themselves:
//! control characters (line breaks, terminal escape sequences, C1 controls such as CSI), the
//! characters that reorder a line on display (bidirectional embeddings, overrides, isolates
//! and marks: an `eventName` with U+202E reads as another name) and the invisible ones
//! (zero-width spaces and joiners, the word joiner, the byte order mark, line and paragraph
//! separators). Three renderings apply it: [`printable`] for one line of text, [`printable_lines`]
//! for text shown over several lines (a body), [`printable_json`] for JSON text, which stays
//! valid JSON of the same value.

use std::borrow::Cow;

/// Whether `c` is shown escaped rather than as itself (see the module documentation).
pub fn shown_escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidirectional marks: Arabic letter mark, left-to-right and right-to-left marks.
            '\u{061c}' | '\u{200e}' | '\u{200f}'
            // Zero width space, non-joiner, joiner; word joiner; byte order mark
            // (zero width no-break space).
            | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'
            // Line and paragraph separators.
            | '\u{2028}' | '\u{2029}'
            // Bidirectional embeddings and overrides (LRE, RLE, PDF, LRO, RLO), then
            // isolates (LRI, RLI, FSI, PDI).
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` for one line: every [`shown_escaped`] character written as Rust writes it in a
/// string (`\n`, `\u{202e}`), the rest as it is. Borrowed when nothing needed escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_where(text, shown_escaped, |c, out| {
        out.extend(c.escape_default());
    })
}

/// [`printable`] for text shown over several lines (a body as received): line feeds,
/// carriage returns and tabs are kept, since they only lay the text out.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape_where(
        text,
        |c| shown_escaped(c) && !matches!(c, '\n' | '\r' | '\t'),
        |c, out| out.extend(c.escape_default()),
    )
}

/// JSON text (as `serde_json` writes it) with every [`shown_escaped`] character written as
/// a JSON escape (`\u202e`), so it reads safely and still parses to the same value. JSON's
/// own whitespace between tokens is kept; inside strings `serde_json` has already escaped
/// line breaks and the other C0 controls, and every character escaped here is in the Basic
/// Multilingual Plane, so one `\uXXXX` writes it.
pub fn printable_json(json: &str) -> Cow<'_, str> {
    escape_where(
        json,
        |c| shown_escaped(c) && !matches!(c, '\n' | '\r' | '\t'),
        |c, out| out.push_str(&format!("\\u{:04x}", u32::from(c))),
    )
}

/// `text` with the characters `escaped` picks written by `write`; borrowed when none is.
fn escape_where(
    text: &str,
    escaped: impl Fn(char) -> bool,
    write: impl Fn(char, &mut String),
) -> Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            write(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert!(matches!(printable("d5fb7071-10a9"), Cow::Borrowed(_)));
        assert_eq!(printable("é-ünïcode 中"), "é-ünïcode 中");
        assert_eq!(
            printable("x\n2026-11-28 FAKE\u{1b}]0;pwned\u{7}"),
            "x\\n2026-11-28 FAKE\\u{1b}]0;pwned\\u{7}"
        );
        assert_eq!(printable("/\u{9b}2J"), "/\\u{9b}2J", "C1 CSI");
        assert_eq!(printable("a\rid: 9"), "a\\rid: 9");
    }

    #[test]
    fn bidi_controls_and_zero_width_characters_are_escaped() {
        let check = |text: &str, expected: &str| assert_eq!(printable(text), expected);
        check("COURSE_\u{202e}DELLORNE", "COURSE_\\u{202e}DELLORNE");
        check(
            "\u{202a}\u{202b}\u{202c}\u{202d}",
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
        );
        check(
            "\u{2066}\u{2067}\u{2068}\u{2069}",
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
        );
        check("\u{200e}\u{200f}\u{061c}", "\\u{200e}\\u{200f}\\u{61c}");
        check(
            "a\u{200b}b\u{200c}c\u{200d}d\u{2060}e\u{feff}",
            "a\\u{200b}b\\u{200c}c\\u{200d}d\\u{2060}e\\u{feff}",
        );
        check("a\u{2028}b\u{2029}", "a\\u{2028}b\\u{2029}");
        // Neighbours of the ranges stay as they are.
        check(
            "\u{2027}\u{202f}\u{2065}\u{206a}\u{200a}",
            "\u{2027}\u{202f}\u{2065}\u{206a}\u{200a}",
        );
    }

    #[test]
    fn lines_keep_their_layout() {
        assert_eq!(
            printable_lines("{\n\t\"a\": 1\r\n}\u{202e}\u{1b}"),
            "{\n\t\"a\": 1\r\n}\\u{202e}\\u{1b}"
        );
    }

    #[test]
    fn json_stays_json_of_the_same_value() {
        let value = serde_json::json!({"eventName": "A\u{202e}B\u{feff}\u{7f}", "n": [1, 2]});
        let pretty = serde_json::to_string_pretty(&value).expect("serialises");
        let shown = printable_json(&pretty);
        assert!(shown.contains(r#""A\u202eB\ufeff\u007f""#), "{shown}");
        assert!(shown.contains("\n  \"n\": ["), "layout kept: {shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, value);
    }
}
