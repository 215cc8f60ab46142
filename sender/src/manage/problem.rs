//! What a mistake in a webhook's changes says, and where: a [`Problem`] names its field and
//! says it twice, in the command line's words (flags) and in plain words for the pages and
//! the API ([`field_error`]: no flags, no backticks, no command names); [`one_a_field`]
//! keeps one beside each field.

use crate::UsageError;

/// One mistake in a webhook's changes: the field it is about (`name`, `url`, `events`,
/// `auth`, `username`, `password`, `scheme`, or `form` for none), what the pages and the API
/// say beside that field (plain words, no flags, no command names), and the command line's
/// error (flags named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field at fault.
    pub field: &'static str,
    /// What to do, in plain words.
    pub message: String,
    /// The same in the command line's words.
    pub usage: UsageError,
}

impl Problem {
    /// A problem said differently on the command line (`usage`) and beside the field
    /// (`plain`).
    pub fn new(field: &'static str, usage: &str, plain: &str) -> Problem {
        Problem {
            field,
            message: plain.to_owned(),
            usage: UsageError(usage.to_owned()),
        }
    }
}

impl From<UsageError> for Problem {
    /// The field the message names first, and the message in plain words ([`field_error`]).
    fn from(usage: UsageError) -> Problem {
        let (field, message) = field_error(&usage.0);
        Problem {
            field,
            message,
            usage,
        }
    }
}

/// Keeps the first problem of each field, in order: one error beside each field, the one the
/// command line would have named first.
pub fn one_a_field(problems: Vec<Problem>) -> Vec<Problem> {
    let mut seen: Vec<&'static str> = Vec::new();
    problems
        .into_iter()
        .filter(|problem| {
            let first = !seen.contains(&problem.field);
            seen.push(problem.field);
            first
        })
        .collect()
}

/// The part of a validation message that names the field, as `(field, message)`: the field is
/// the one whose flag the message names first (`--url` is `url`), for showing the error beside
/// it; the message is in plain words, for the pages and the API: a sentence the pages say
/// their own way is replaced whole, hints that name a command go, flags become the fields'
/// labels and no backtick is left.
pub fn field_error(message: &str) -> (&'static str, String) {
    // (start of the command line's message, field, what the pages say instead).
    const SENTENCES: &[(&str, &str, &str)] = &[
        ("--name must not be empty", "name", "Name is required"),
        (
            "--auth basic needs --username",
            "username",
            "Username is required for Basic authentication",
        ),
        (
            "--auth basic needs a non-empty --password",
            "password",
            "Password is required for Basic authentication",
        ),
        (
            "--username must not contain ':'",
            "username",
            "Username must not contain a colon (:)",
        ),
        (
            "--events needs catalogue names",
            "events",
            "Choose at least one trigger event, or All events",
        ),
    ];
    // Hints for a terminal, and what the pages say instead.
    const HINTS: &[(&str, &str)] = &[
        ("; `sender events` lists the catalogue", ""),
        ("; `sender webhooks list` shows the ids", ""),
        (" (`sender webhooks list`)", ""),
        (
            "(by `sender run`, another page or a command)",
            "(by the delivery worker, another page or a command)",
        ),
        (
            "(by `sender run` or another command)",
            "(by the delivery worker or another command)",
        ),
        ("or `all`", "or all events"),
    ];
    // (flag, field of the API and form, label on the pages), longer flags first so that
    // `--signature-header` is not read as `--signature`.
    const FIELDS: &[(&str, &str, &str)] = &[
        ("--signature-header", "scheme", "Signature header"),
        ("--signature-encoding", "scheme", "Signature encoding"),
        ("--signature-prefix", "scheme", "Signature prefix"),
        ("--tolerance", "scheme", "Tolerance"),
        ("--scheme", "scheme", "Scheme"),
        ("--name", "name", "Name"),
        ("--description", "description", "Description"),
        ("--url", "url", "Target URL"),
        ("--events", "events", "Trigger events"),
        ("--username", "username", "Username"),
        ("--password", "password", "Password"),
        ("--auth basic", "password", "Basic authentication"),
        ("--auth signature", "auth", "Signature authentication"),
        ("--auth", "auth", "Authentication"),
        ("--overlap", "overlap", "Overlap"),
        ("--count", "count", "Count"),
        ("--set", "set", "Field values"),
        ("--data", "data", "Data"),
        ("--status", "status", "Requests"),
        ("--since", "since", "Since"),
        ("--until", "until", "Until"),
    ];
    if let Some((_, field, plain)) = SENTENCES
        .iter()
        .find(|(start, _, _)| message.starts_with(start))
    {
        return (field, (*plain).to_owned());
    }
    let first = FIELDS
        .iter()
        .filter_map(|entry| message.find(entry.0).map(|at| (at, entry)))
        .min_by_key(|(at, entry)| (*at, std::cmp::Reverse(entry.0.len())));
    let field = match first {
        Some((_, (_, field, _))) => field,
        None if message.starts_with("unknown event") => "events",
        None => "form",
    };
    let mut readable = message.to_owned();
    for (hint, instead) in HINTS {
        readable = readable.replace(hint, instead);
    }
    for (flag, _, label) in FIELDS {
        readable = readable.replace(flag, label);
    }
    (field, readable.replace('`', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_name_their_field() {
        let check = |message: &str, field: &str, readable: &str| {
            let (found, text) = field_error(message);
            assert_eq!(found, field, "{message}");
            assert!(text.contains(readable), "{text:?} lacks {readable:?}");
        };
        check(
            "--url \"ftp://x\": scheme \"ftp\" is not http or https",
            "url",
            "Target URL \"ftp://x\"",
        );
        check(
            "--auth basic needs a non-empty --password",
            "password",
            "Password is required for Basic authentication",
        );
        check(
            "--auth basic needs --username",
            "username",
            "Username is required for Basic authentication",
        );
        check(
            "unknown event \"X\"; did you mean Y?",
            "events",
            "unknown event",
        );
        check(
            "--signature-prefix applies to --scheme body-hmac-sha256 only",
            "scheme",
            "Signature prefix applies to Scheme",
        );
        check("--name must not be empty", "name", "Name is required");
        check(
            "unknown event \"X\"; `sender events` lists the catalogue",
            "events",
            "unknown event \"X\"",
        );
        check(
            "5 webhooks are registered, the most allowed is 5; delete or edit one (`sender webhooks list`)",
            "form",
            "delete or edit one",
        );
        check("something else", "form", "something else");
    }
}
