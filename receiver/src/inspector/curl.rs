//! Copy as curl: one kept request as a command a person pastes into a shell.
//!
//! Anyone who reaches the webhook port writes what goes into this text (every refused request
//! is kept, a 404 with a made-up method included), so pasting it must run curl once, with
//! exactly the kept request, and nothing else:
//! - every part (method, URL, each header) is one shell word: bare when made of characters no
//!   shell reads specially, single-quoted when it is printable ASCII, else written by
//!   `"$(printf 'FORMAT')"` (a header value with a tab or bytes beyond ASCII);
//! - the body reaches curl on standard input (`--data-binary @-`) from `printf 'FORMAT'`, so
//!   curl never reads it as `@file`; the format writes every byte that is not printable ASCII
//!   (and `'`, `%`, `\`) as an escape POSIX `printf` (a builtin of every shell) turns back into
//!   that very byte, NUL, bytes that are not UTF-8 and trailing newlines included (a heredoc
//!   would add a newline and cannot carry bytes that are not text);
//! - so the command is printable ASCII and line breaks only: no terminal, clipboard or
//!   encoding changes it, and no bidirectional control reorders what the operator reads;
//! - curl's own readings of its arguments are turned off where the request would trigger them:
//!   `--globoff` for `[]{}` in the URL (else one command sends several requests),
//!   `--path-as-is` for dot segments (else curl removes them), `-H 'name;'` for an empty value
//!   (`name:` would remove the header) and `-H 'Content-Type:'` for a body sent without a
//!   content type (else curl adds a form type the receiver refuses).

use crate::store::RequestDetail;

/// The request as a `curl` command line: its method, the receiver's origin with the kept
/// path, the kept headers (minus hop headers) in order, and the body byte for byte.
pub(super) fn curl_command(detail: &RequestDetail, webhook_url: &str) -> String {
    let record = &detail.record;
    let url = format!("{}{}", origin(webhook_url), record.path);
    let mut lines = Vec::new();
    let mut curl = format!(
        "curl -X {} {}",
        shell_word(&record.method),
        shell_word(&url)
    );
    if url.contains(['[', ']', '{', '}']) {
        curl.push_str(" --globoff");
    }
    if record.path.contains("/.") {
        curl.push_str(" --path-as-is");
    }
    let body = &record.body;
    if !body.is_empty() {
        lines.push(format!("printf '{}'", printf_format(body)));
        curl = format!("| {curl}");
    }
    lines.push(curl);
    let headers = verify::resend::verbatim_headers(record.headers.clone());
    let has_content_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    for (name, value) in &headers {
        let header = if value.is_empty() {
            format!("{name};")
        } else {
            format!("{name}: {value}")
        };
        lines.push(format!("-H {}", shell_word(&header)));
    }
    if !body.is_empty() {
        if !has_content_type {
            lines.push("-H 'Content-Type:'".to_owned());
        }
        lines.push("--data-binary @-".to_owned());
    }
    lines.join(" \\\n  ")
}

/// `scheme://host:port` of the receiver's webhook URL.
fn origin(webhook_url: &str) -> &str {
    let after_scheme = webhook_url.find("://").map_or(0, |at| at + 3);
    match webhook_url[after_scheme..].find('/') {
        Some(at) => &webhook_url[..after_scheme + at],
        None => webhook_url,
    }
}

/// `text` as one shell word that every POSIX shell passes on unchanged. Command substitution
/// drops trailing newlines, so the third form is only for text without them (methods, URLs
/// and header lines never have one).
fn shell_word(text: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !text.is_empty() && text.chars().all(bare) {
        text.to_owned()
    } else if text.bytes().all(|byte| (0x20..=0x7e).contains(&byte)) {
        format!("'{}'", text.replace('\'', r"'\''"))
    } else {
        format!("\"$(printf '{}')\"", printf_format(text.as_bytes()))
    }
}

/// A `printf` format that prints exactly `bytes`, fit to stand between single quotes: printable
/// ASCII as itself, `%` as `%%`, `\` as `\\`, a line feed as `\n`, and every other byte (the
/// quote `'` too, and a leading `-` that `printf` would take for an option) as three octal
/// digits, so a digit after it cannot join the escape.
fn printf_format(bytes: &[u8]) -> String {
    let mut format = String::with_capacity(bytes.len() + bytes.len() / 8);
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'%' => format.push_str("%%"),
            b'\\' => format.push_str("\\\\"),
            b'\n' => format.push_str("\\n"),
            b'-' if index == 0 => format.push_str("\\055"),
            b'\'' => format.push_str("\\047"),
            0x20..=0x7e => format.push(char::from(byte)),
            _ => format.push_str(&format!("\\{byte:03o}")),
        }
    }
    format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_readable_and_others_are_quoted_whole() {
        assert_eq!(shell_word("POST"), "POST");
        assert_eq!(
            shell_word("http://127.0.0.1:8080/webhook"),
            "http://127.0.0.1:8080/webhook"
        );
        assert_eq!(
            shell_word("X|touch$IFS'pwned'|true"),
            r"'X|touch$IFS'\''pwned'\''|true'"
        );
        assert_eq!(shell_word(""), "''");
        assert_eq!(
            shell_word("x: caf\u{e9}\t"),
            r#""$(printf 'x: caf\303\251\011')""#
        );
    }

    #[test]
    fn printf_formats_escape_everything_a_shell_or_printf_reads() {
        assert_eq!(
            printf_format(b"{\"a\":\"50% \\u00e9\"}\n"),
            r#"{"a":"50%% \\u00e9"}\n"#
        );
        assert_eq!(printf_format(b"it's"), r"it\047s");
        assert_eq!(printf_format(b"\0\x01\xff7"), r"\000\001\3777");
        assert_eq!(printf_format(b"-n -e"), r"\055n -e");
    }

    #[test]
    fn origin_is_scheme_host_and_port() {
        assert_eq!(
            origin("http://127.0.0.1:8080/webhook"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("https://[::1]:8443/a/b"), "https://[::1]:8443");
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
