//! The forwarding targets as the command line gives them: `--forward-to [EVENTS=]URL`
//! (repeated) and `--forward-signature-file [URL=]FILE` (repeated), read into
//! [`ForwardTarget`]s once, where they enter.

use std::path::PathBuf;

use http::Uri;
use verify::Keyring;

use crate::routing::{EventSelector, MAX_TARGETS};

/// One app a receiver forwards to.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    /// The app's URL (`http://` only).
    pub url: Uri,
    /// The events it takes (a request goes whole when one of its new events is one).
    pub events: EventSelector,
    /// Re-sign each request with this keyring instead of passing the original signature on.
    pub signing: Option<Keyring>,
}

impl ForwardTarget {
    /// Every event to `url`, original headers.
    pub fn new(url: Uri) -> ForwardTarget {
        ForwardTarget {
            url,
            events: EventSelector::all(),
            signing: None,
        }
    }

    /// The target's name in the store, the metrics, the log and the commands: its URL as
    /// parsed (`http://app:3000/hooks`).
    pub fn name(&self) -> String {
        self.url.to_string()
    }
}

/// Reads a `--forward-to` URL.
///
/// # Errors
/// Not a URL, not `http://`, no host, or credentials in it.
pub fn parse_forward_url(text: &str) -> anyhow::Result<Uri> {
    // Credentials in the URL would be logged with it; refuse without quoting it back.
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    if after_scheme
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
    {
        anyhow::bail!(
            "the forwarding URL carries credentials (user:password@host); forwarding sends no \
             credentials of its own: protect the app with --forward-signature-file instead"
        );
    }
    let url: Uri = text
        .parse()
        .map_err(|error| anyhow::anyhow!("{text:?} is not a URL: {error}"))?;
    match url.scheme_str() {
        Some("http") => {}
        Some("https") => anyhow::bail!(
            "{text:?}: only http:// targets are supported (forward to the app on the same \
             host or network, or put a TLS proxy in front of it)"
        ),
        _ => anyhow::bail!("{text:?} is not an http:// URL"),
    }
    if url.host().is_none_or(str::is_empty) {
        anyhow::bail!("{text:?} names no host");
    }
    Ok(url)
}

/// Splits `[EVENTS=]URL`: the text before the first `=` is an event list when it holds no
/// `:` or `/` (a URL always does before any `=` of its query), else the whole text is the URL.
fn split_events(text: &str) -> (Option<&str>, &str) {
    match text.split_once('=') {
        Some((events, url)) if !events.contains([':', '/']) => (Some(events), url),
        _ => (None, text),
    }
}

/// Reads the `--forward-to` values into targets (without signing yet).
///
/// # Errors
/// A value that is not `[EVENTS=]URL`, a URL given twice, or more than [`MAX_TARGETS`].
pub fn parse_targets(values: &[String]) -> anyhow::Result<Vec<ForwardTarget>> {
    if values.len() > MAX_TARGETS {
        anyhow::bail!(
            "--forward-to is given {} times; at most {MAX_TARGETS} targets (put one app behind \
             a URL of its own per need, or run a second receiver)",
            values.len()
        );
    }
    let mut targets: Vec<ForwardTarget> = Vec::with_capacity(values.len());
    for value in values {
        let (events, url) = split_events(value.trim());
        let events = match events {
            Some(list) => EventSelector::parse(list)
                .map_err(|error| anyhow::anyhow!("--forward-to {list}=…: {error}"))?,
            None => EventSelector::all(),
        };
        let url = parse_forward_url(url)?;
        let target = ForwardTarget {
            url,
            events,
            signing: None,
        };
        if targets.iter().any(|other| other.name() == target.name()) {
            anyhow::bail!(
                "--forward-to {} is given twice: give it once, with every event it takes in one \
                 comma-separated list (COURSE_ENROLLMENT,COURSE_COMPLETED=URL)",
                target.name()
            );
        }
        targets.push(target);
    }
    Ok(targets)
}

/// Which signature file re-signs for which target: `--forward-signature-file FILE` for every
/// target without a file of its own, `--forward-signature-file URL=FILE` for the target of
/// that URL (as given to `--forward-to`).
///
/// # Errors
/// A `URL=` that names no target, two files for one target, or two files for every target.
pub fn signature_files_by_target(
    values: &[String],
    targets: &[ForwardTarget],
) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let names: Vec<String> = targets.iter().map(ForwardTarget::name).collect();
    let mut default: Option<PathBuf> = None;
    let mut own: Vec<Option<PathBuf>> = vec![None; targets.len()];
    for value in values {
        // The longest target URL the value starts with, followed by `=`: a URL may hold `=`.
        let named = names
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                let file = value.strip_prefix(name.as_str())?.strip_prefix('=')?;
                Some((index, name.len(), file))
            })
            .max_by_key(|(_, length, _)| *length);
        match named {
            Some((index, _, file)) => {
                if own[index].is_some() {
                    anyhow::bail!(
                        "--forward-signature-file names {} twice: one signature file per target",
                        names[index]
                    );
                }
                own[index] = Some(PathBuf::from(file));
            }
            None if value.starts_with("http://") || value.starts_with("https://") => {
                let url = value.split_once('=').map_or(value.as_str(), |(url, _)| url);
                anyhow::bail!(
                    "--forward-signature-file {url}=…: no --forward-to target has this URL \
                     (write it as --forward-to gives it: {})",
                    names.join(", ")
                );
            }
            None => {
                if default.is_some() {
                    anyhow::bail!(
                        "--forward-signature-file is given twice for every target: give one \
                         file for all, or URL=FILE for each target"
                    );
                }
                default = Some(PathBuf::from(value));
            }
        }
    }
    Ok(own
        .into_iter()
        .map(|file| file.or_else(|| default.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(values: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
        let values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
        Ok(parse_targets(&values)?
            .iter()
            .map(|target| (target.events.to_string(), target.name()))
            .collect())
    }

    #[test]
    fn urls_must_be_plain_http_with_a_host() {
        assert!(parse_forward_url("http://127.0.0.1:9000/events").is_ok());
        assert!(parse_forward_url("http://app/").is_ok());
        let https = parse_forward_url("https://app/x").unwrap_err().to_string();
        assert!(https.contains("only http://"), "{https}");
        assert!(parse_forward_url("ftp://app/x").is_err());
        assert!(parse_forward_url("/just/a/path").is_err());
        assert!(parse_forward_url("not a url").is_err());
        let credentials = parse_forward_url("http://app:s3cret@app:9/x")
            .unwrap_err()
            .to_string();
        assert!(!credentials.contains("s3cret"), "{credentials}");
    }

    #[test]
    fn targets_read_an_optional_event_list_before_the_url() {
        assert_eq!(
            names(&[
                "http://crm:3000/hooks?key=a=b",
                "LEARNER_*,COURSE_COMPLETED=http://reporting/in",
                "*=http://archive/",
            ])
            .unwrap(),
            [
                ("*".to_owned(), "http://crm:3000/hooks?key=a=b".to_owned()),
                (
                    "LEARNER_*,COURSE_COMPLETED".to_owned(),
                    "http://reporting/in".to_owned()
                ),
                ("*".to_owned(), "http://archive/".to_owned()),
            ]
        );
        for (values, said) in [
            (&["http://a/x", "COURSE_*=http://a/x"][..], "given twice"),
            (&["=http://a/x"][..], "empty"),
            (&["COURSE COMPLETED=http://a/x"][..], "letters, digits"),
            (&["COURSE_*=https://a/x"][..], "only http://"),
        ] {
            let error = format!("{:#}", names(values).unwrap_err());
            assert!(error.contains(said), "{values:?}: {error}");
        }
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("http://a/{i}")).collect();
        assert!(parse_targets(&many).is_err());
    }

    #[test]
    fn signature_files_go_to_their_target_or_to_every_other_one() {
        let targets = parse_targets(&[
            "http://crm/in?x=1".to_owned(),
            "LEARNER_*=http://rep/in".to_owned(),
        ])
        .unwrap();
        let files = |values: &[&str]| {
            let values: Vec<String> = values.iter().map(|value| (*value).to_owned()).collect();
            signature_files_by_target(&values, &targets).map(|files| {
                files
                    .into_iter()
                    .map(|file| file.map(|file| file.display().to_string()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(files(&[]).unwrap(), [None, None]);
        assert_eq!(
            files(&["all.json"]).unwrap(),
            [Some("all.json".to_owned()), Some("all.json".to_owned())]
        );
        assert_eq!(
            files(&["http://crm/in?x=1=crm=1.json", "all.json"]).unwrap(),
            [Some("crm=1.json".to_owned()), Some("all.json".to_owned())]
        );
        assert_eq!(
            files(&["http://rep/in=rep.json"]).unwrap(),
            [None, Some("rep.json".to_owned())]
        );
        for (values, said) in [
            (&["a.json", "b.json"][..], "twice for every target"),
            (&["http://rep/in=a", "http://rep/in=b"][..], "twice"),
            (&["http://other/=a.json"][..], "no --forward-to target"),
        ] {
            let error = files(values).unwrap_err().to_string();
            assert!(error.contains(said), "{values:?}: {error}");
        }
    }
}
