//! Where a program keeps its data: `receiver --store` and `sender --state` take the same text,
//! read here once into a [`StoreLocation`].
//!
//! The forms, for both programs:
//!
//! | text | store |
//! |---|---|
//! | `sqlite:PATH`, a bare `PATH` | the SQLite file `PATH`, relative to the working directory unless it starts with `/` |
//! | `sqlite://PATH` | the same as `sqlite:PATH`: `sqlite://x.db` is `./x.db`, `sqlite:///var/x.db` is `/var/x.db` |
//! | `postgres://…`, `postgresql://…` | a PostgreSQL database ([`DatabaseUrl`]; `?host=/run/postgresql` for a socket) |
//!
//! Why `sqlite://PATH` is `PATH`: the two slashes are an empty URL authority (a file has no
//! host), and what follows is the path as written, so a third slash makes it absolute as in
//! `file:///var/x.db`. It is how the receiver always read it, and how the Rust SQL crates
//! read it (`sqlx`); the sender used to read `sqlite://x.db` as `//x.db`, a file at the root
//! of the disk, which nobody means.
//!
//! Anything else that starts like a URL scheme (`mysql://…`, `sqlit:x.db`: letters and digits
//! before the first `:`) is refused rather than taken for a file name, so a typo never
//! creates a stray database. Messages never repeat what follows the scheme, where a password
//! may stand.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::postgres::{is_postgres_url, DatabaseUrl};

/// The forms a store location may take, for help texts and messages.
pub const FORMS: &str = "sqlite:PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DB";

/// A parsed `--store` / `--state`. `Display` and `Debug` never show a database password.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded store: one SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which many processes may share (SPEC section 7).
    Postgres(Box<DatabaseUrl>),
}

impl StoreLocation {
    /// Reads one of the forms of the module's table.
    ///
    /// # Errors
    /// An empty text or path, a scheme other than `sqlite`, `postgres` and `postgresql`, or an
    /// invalid PostgreSQL URL. The message never holds the password.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if is_postgres_url(text) {
            return Ok(DatabaseUrl::parse(text)?.into());
        }
        let path = if let Some(rest) = text.strip_prefix("sqlite:") {
            rest.strip_prefix("//").unwrap_or(rest)
        } else if let Some(scheme) = scheme_of(text) {
            anyhow::bail!("unsupported store {scheme:?}: use {FORMS}");
        } else {
            text
        };
        if path.is_empty() {
            anyhow::bail!("the store location {text:?} names no file: use {FORMS}");
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

/// The scheme `text` starts with, if it starts like a URL: two or more ASCII letters and
/// digits, the first a letter, then `:`. A single letter is left alone (a drive letter), and
/// so is a path whose part before the first `:` holds anything else (`./a:b.db`).
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut characters = scheme.chars();
    let starts_with_letter = characters.next().is_some_and(|c| c.is_ascii_alphabetic());
    (starts_with_letter && scheme.len() > 1 && characters.all(|c| c.is_ascii_alphanumeric()))
        .then_some(scheme)
}

impl fmt::Display for StoreLocation {
    /// `sqlite:PATH`, or the PostgreSQL URL with `***` for its password: text that
    /// [`StoreLocation::parse`] reads back (the PostgreSQL one without its password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl From<PathBuf> for StoreLocation {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl From<&Path> for StoreLocation {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_owned())
    }
}

impl From<&PathBuf> for StoreLocation {
    fn from(path: &PathBuf) -> Self {
        Self::Sqlite(path.clone())
    }
}

impl From<&str> for StoreLocation {
    /// A SQLite path (use [`StoreLocation::parse`] for text that may be a URL).
    fn from(path: &str) -> Self {
        Self::Sqlite(PathBuf::from(path))
    }
}

impl From<DatabaseUrl> for StoreLocation {
    fn from(url: DatabaseUrl) -> Self {
        Self::Postgres(Box::new(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a form reads as: a SQLite path, or the redacted PostgreSQL URL.
    #[derive(Debug, PartialEq, Eq)]
    enum Read {
        Sqlite(&'static str),
        Postgres(&'static str),
    }

    #[test]
    fn every_form() {
        let cases = [
            ("sqlite:./receiver.db", Read::Sqlite("./receiver.db")),
            ("sqlite:receiver.db", Read::Sqlite("receiver.db")),
            ("sqlite:/var/lib/r.db", Read::Sqlite("/var/lib/r.db")),
            ("sqlite://receiver.db", Read::Sqlite("receiver.db")),
            ("sqlite://./data/r.db", Read::Sqlite("./data/r.db")),
            ("sqlite:///var/lib/r.db", Read::Sqlite("/var/lib/r.db")),
            ("receiver.db", Read::Sqlite("receiver.db")),
            ("/tmp/x.db", Read::Sqlite("/tmp/x.db")),
            ("./a:b.db", Read::Sqlite("./a:b.db")),
            ("C:x.db", Read::Sqlite("C:x.db")),
            (
                "postgres://crm:s3cret@db/hooks",
                Read::Postgres("postgres://crm:***@db/hooks"),
            ),
            (
                "postgres://crm@db:5433/hooks",
                Read::Postgres("postgres://crm@db:5433/hooks"),
            ),
            (
                "postgresql://crm:s3cret@db/hooks",
                Read::Postgres("postgresql://crm:***@db/hooks"),
            ),
            (
                "postgres:///hooks?host=/run/postgresql",
                Read::Postgres("postgres:///hooks?host=/run/postgresql"),
            ),
            (
                "postgres://crm:s3cret@/hooks?host=/run/postgresql",
                Read::Postgres("postgres://crm:***@/hooks?host=/run/postgresql"),
            ),
        ];
        for (text, expected) in cases {
            let location = StoreLocation::parse(text).unwrap_or_else(|error| {
                panic!("{text}: {error:#}");
            });
            match (&location, expected) {
                (StoreLocation::Sqlite(path), Read::Sqlite(expected)) => {
                    assert_eq!(path, Path::new(expected), "{text}");
                    assert_eq!(location.to_string(), format!("sqlite:{expected}"));
                }
                (StoreLocation::Postgres(url), Read::Postgres(expected)) => {
                    assert_eq!(url.redacted(), expected, "{text}");
                    assert_eq!(location.to_string(), expected);
                }
                (other, expected) => panic!("{text}: read as {other:?}, not {expected:?}"),
            }
            assert!(!format!("{location:?}").contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn refusals_say_why_and_never_show_the_password() {
        let cases = [
            ("", "names no file"),
            ("sqlite:", "names no file"),
            ("sqlite://", "names no file"),
            ("mysql://crm:s3cret@db/x", "unsupported store \"mysql\""),
            ("sqlit:./x.db", "unsupported store \"sqlit\""),
            ("redis:s3cret@db", "unsupported store \"redis\""),
            (
                "postgres://crm:s3cret@db:notaport/x",
                "invalid PostgreSQL URL",
            ),
            ("postgresql://crm:s3cret@db:port/hooks", "PostgreSQL URL"),
            ("postgres:///hooks", "names no host"),
        ];
        for (text, expected) in cases {
            let error = StoreLocation::parse(text).expect_err(text);
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("s3cret"), "{text}: {message}");
        }
        let unsupported = StoreLocation::parse("mysql://db/x").expect_err("mysql");
        assert!(unsupported.to_string().contains(FORMS), "{unsupported}");
    }
}
