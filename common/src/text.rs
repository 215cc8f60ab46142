//! Showing text that came from someone else (an `eventId`, a header, a body) to a person, on a
//! terminal or a page, without letting it forge what they see.
//!
//! One rule, [`shown_escaped`], decides which characters are never shown as themselves:
//! control characters (line breaks, terminal escape sequences, C1 controls such as CSI), every
//! *format* character (Unicode general category Cf: the bidirectional embeddings, overrides,
//! isolates and marks, by which an `eventName` with U+202E reads as another name; zero-width
//! spaces and joiners, the soft hyphen, invisible operators, tags, the byte order mark, …),
//! the other *default ignorable* code points (variation selectors, Hangul fillers, the
//! combining grapheme joiner, and those not assigned yet: a terminal or browser draws them as
//! nothing), and the line and paragraph separators. Three renderings apply it: [`printable`]
//! for one line of text, [`printable_lines`] for text shown over several lines (a body),
//! [`printable_json`] for JSON text, which stays valid JSON of the same value.

use std::borrow::Cow;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// Whether `c` is shown escaped rather than as itself (see the module documentation).
pub fn shown_escaped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || c.general_category() == GeneralCategory::Format
        || is_default_ignorable(c)
}

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt): characters drawn as
/// nothing when a font lacks them, assigned or not. Most are format characters (Cf) already;
/// the table lists them all, so that a character the Unicode tables above do not know yet
/// (an unassigned one in these ranges) is caught too.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'                       // soft hyphen
        | '\u{034f}'                     // combining grapheme joiner
        | '\u{061c}'                     // Arabic letter mark
        | '\u{115f}'..='\u{1160}'        // Hangul fillers
        | '\u{17b4}'..='\u{17b5}'        // Khmer inherent vowels
        | '\u{180b}'..='\u{180f}'        // Mongolian variation selectors, vowel separator
        | '\u{200b}'..='\u{200f}'        // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202a}'..='\u{202e}'        // bidirectional embeddings and overrides
        | '\u{2060}'..='\u{206f}'        // word joiner, invisible operators, isolates, …
        | '\u{3164}'                     // Hangul filler
        | '\u{fe00}'..='\u{fe0f}'        // variation selectors
        | '\u{feff}'                     // byte order mark (zero width no-break space)
        | '\u{ffa0}'                     // halfwidth Hangul filler
        | '\u{fff0}'..='\u{fff8}'        // unassigned specials
        | '\u{1bca0}'..='\u{1bca3}'      // shorthand format controls
        | '\u{1d173}'..='\u{1d17a}'      // musical format controls
        | '\u{e0000}'..='\u{e0fff}' // tags, variation selectors supplement
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
/// a JSON escape (`\u202e`; a character beyond the Basic Multilingual Plane, a tag, as its
/// UTF-16 surrogate pair `\udb40\udc01`), so it reads safely and still parses to the same
/// value. JSON's own whitespace between tokens is kept; inside strings `serde_json` has
/// already escaped line breaks and the other C0 controls.
pub fn printable_json(json: &str) -> Cow<'_, str> {
    escape_where(
        json,
        |c| shown_escaped(c) && !matches!(c, '\n' | '\r' | '\t'),
        |c, out| {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        },
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
        // Neighbours of the ranges stay as they are: a narrow no-break space, a hair space, an
        // ellipsis, the replacement character, an accent that combines visibly, a flag.
        check(
            "\u{2027}\u{202f}\u{200a}\u{2026}\u{fffd}e\u{301}\u{1f1eb}\u{1f1f7}",
            "\u{2027}\u{202f}\u{200a}\u{2026}\u{fffd}e\u{301}\u{1f1eb}\u{1f1f7}",
        );
    }

    #[test]
    fn every_invisible_format_character_is_escaped() {
        // Each is drawn as nothing (or reorders what follows), so a name holding it reads as
        // another name: soft hyphen, Mongolian vowel separator, invisible operators (function
        // application, times, separator, plus), the deprecated format characters, the
        // interlinear annotation characters, a tag, a variation selector, the combining
        // grapheme joiner, a Hangul filler, an unassigned default ignorable, a variation
        // selector of the supplement.
        for c in [
            '\u{ad}',
            '\u{180e}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{2065}',
            '\u{206a}',
            '\u{206f}',
            '\u{fff9}',
            '\u{fffa}',
            '\u{fffb}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{fe0f}',
            '\u{34f}',
            '\u{3164}',
            '\u{fff0}',
            '\u{e0100}',
            '\u{600}',
        ] {
            assert!(shown_escaped(c), "U+{:04X}", u32::from(c));
            let text = format!("COURSE{c}_ENROLLMENT");
            let shown = printable(&text);
            assert_eq!(
                shown,
                format!("COURSE\\u{{{:x}}}_ENROLLMENT", u32::from(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
        // No character of the tables is drawn as itself; everything printable beside them is.
        assert!(!shown_escaped('a') && !shown_escaped(' ') && !shown_escaped('\u{4e2d}'));
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
        // A tag, beyond the Basic Multilingual Plane, as its surrogate pair; C1 controls too.
        let value = serde_json::json!({"eventId": "a\u{e0041}b\u{9b}c\u{ad}"});
        let text = value.to_string();
        let shown = printable_json(&text);
        assert_eq!(shown, r#"{"eventId":"a\udb40\udc41b\u009bc\u00ad"}"#);
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, value);
    }
}
