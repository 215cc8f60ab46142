//! PostgreSQL connection strings and the connection pool both programs use (SPEC section 7).
//!
//! `receiver --store postgres://…` and `sender --state postgres://…` take the same URL form
//! (`postgres://` or `postgresql://`, `?host=/run/postgresql` for a socket). The URL is parsed
//! once into a [`DatabaseUrl`], whose `Display` and `Debug` never show the password, so the
//! value can be logged and put in error messages as it is.

use std::fmt;

use anyhow::Context as _;
use std::str::FromStr;
use std::time::Duration;

pub use crate::postgres_tls::{SslMode, TlsSettings};

/// The URL schemes that select the PostgreSQL store.
pub const URL_SCHEMES: &[&str] = &["postgres://", "postgresql://"];

/// How long one of our sessions may sit idle inside a transaction before the server ends it.
/// No transaction of ours waits on anything but the database, so a session idle that long
/// belongs to a stalled or stopped process whose locks must not hold others up.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`DatabaseUrl::redacted`] shows instead of the password.
const REDACTED: &str = "***";

/// Whether `store` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(store: &str) -> bool {
    URL_SCHEMES.iter().any(|scheme| store.starts_with(scheme))
}

/// Whether `text` is a URL (of any scheme) that carries a password, in its user part
/// (`postgres://user:PASSWORD@host`) or as a `password=` parameter: text to keep out of
/// logs, errors and help texts.
pub fn url_has_password(text: &str) -> bool {
    text.contains("://") && redact(text) != text
}

/// A parsed PostgreSQL connection string.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    redacted: String,
    tls: TlsSettings,
}

impl DatabaseUrl {
    /// Parses `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`.
    ///
    /// # Errors
    /// The text is not a PostgreSQL URL or one of its parts is invalid. The message names the
    /// part, never the password.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if !is_postgres_url(url) {
            anyhow::bail!(
                "a PostgreSQL store is written postgres://USER[:PASSWORD]@HOST[:PORT]/DB"
            );
        }
        let redacted = redact(url);
        // `sslmode` values beyond the client library's three, and `sslrootcert`, are read
        // here; the client library gets the rest.
        let (client_url, tls) = take_tls_parameters(url)
            .map_err(|error| anyhow::anyhow!("invalid PostgreSQL URL {redacted}: {error:#}"))?;
        let mut config = tokio_postgres::Config::from_str(&client_url).map_err(|error| {
            anyhow::anyhow!(
                "invalid PostgreSQL URL {redacted}: {}",
                without_secret(&error, url)
            )
        })?;
        if config.get_hosts().is_empty() {
            anyhow::bail!("the PostgreSQL URL {redacted} names no host");
        }
        config.ssl_mode(tls.mode.client_mode());
        Ok(Self {
            config,
            redacted,
            tls,
        })
    }

    /// The TLS settings (`sslmode`, `sslrootcert`).
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The TLS connector for these settings, for code that opens its own connection.
    ///
    /// # Errors
    /// The root certificate file cannot be read, or no trusted root is found for a mode
    /// that checks the server's certificate.
    pub fn tls_connector(&self) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
        self.tls
            .connector()
            .with_context(|| format!("TLS for {}", self.redacted))
    }

    /// The URL with its password replaced by `***`, for logs, errors and output.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The client configuration, for code that opens its own connection (LISTEN, tests).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A pool of at most `max_size` connections, each tagged with `application_name` (seen in
    /// `pg_stat_activity`) and bounded by [`IDLE_IN_TRANSACTION_TIMEOUT`]. No connection is
    /// opened yet: the first use does, so a database that is down at start is reported by the
    /// first query, like any later outage.
    ///
    /// # Errors
    /// The pool could not be built (a `max_size` of zero).
    pub fn pool(
        &self,
        application_name: &str,
        max_size: usize,
    ) -> anyhow::Result<deadpool_postgres::Pool> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        config.options(format!(
            "-c idle_in_transaction_session_timeout={}",
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        ));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let manager = deadpool_postgres::Manager::from_config(
            config,
            self.tls_connector()?,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        deadpool_postgres::Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|error| anyhow::anyhow!("PostgreSQL pool for {}: {error}", self.redacted))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and the TLS settings they give.
fn take_tls_parameters(url: &str) -> anyhow::Result<(String, TlsSettings)> {
    let mut tls = TlsSettings::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), tls));
    };
    let mut kept = Vec::new();
    for parameter in query.split('&') {
        match parameter.split_once('=') {
            Some(("sslmode", value)) => tls.mode = SslMode::parse(&percent_decode(value)?)?,
            Some(("sslrootcert", value)) => {
                tls.root_cert = Some(std::path::PathBuf::from(percent_decode(value)?));
            }
            _ => kept.push(parameter),
        }
    }
    let client_url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((client_url, tls))
}

/// `%XX` escapes of a URL parameter decoded (a path may hold `%2F`).
fn percent_decode(value: &str) -> anyhow::Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("a bad %-escape in {value:?}"))?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("{value:?} is not UTF-8"))
}

/// `url` with the password of its user part and any `password=` parameter replaced.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_at(url.find("://").map_or(0, |at| at + 3));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (user_info, host) = authority.split_at(at);
            match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}{host}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => parameter.to_owned(),
                })
                .collect();
            format!("{path}?{}", parameters.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

/// The parser's message, unless it quotes a part of the URL that could hold the password.
fn without_secret(error: &tokio_postgres::Error, url: &str) -> String {
    let message = error.to_string();
    let secret_parts = password_parts(url);
    if secret_parts
        .iter()
        .any(|secret| message.contains(secret.as_str()))
    {
        "it could not be parsed".to_owned()
    } else {
        message
    }
}

/// The raw texts in `url` that may be passwords (the user part's and any parameter's).
fn password_parts(url: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if let Some((user_info, _)) = authority.rsplit_once('@') {
        if let Some((_, password)) = user_info.split_once(':') {
            parts.push(password.to_owned());
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        for parameter in query.split('&') {
            if let Some((key, value)) = parameter.split_once('=') {
                if key.eq_ignore_ascii_case("password") {
                    parts.push(value.to_owned());
                }
            }
        }
    }
    parts.retain(|part| !part.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_schemes_and_nothing_else() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite:./receiver.db"));
        assert!(!is_postgres_url("./postgres://x"));
    }

    #[test]
    fn redacts_the_password_wherever_it_stands() {
        let cases = [
            (
                "postgres://alice:s3cret@db:5432/hooks",
                "postgres://alice:***@db:5432/hooks",
            ),
            ("postgresql://alice@db/hooks", "postgresql://alice@db/hooks"),
            (
                "postgres://alice:p%40ss@db/hooks?sslmode=require",
                "postgres://alice:***@db/hooks?sslmode=require",
            ),
            (
                "postgres:///hooks?host=/run/postgresql&password=hunter2",
                "postgres:///hooks?host=/run/postgresql&password=***",
            ),
            ("postgres://a:b@c@db/x", "postgres://a:***@db/x"),
        ];
        for (url, expected) in cases {
            let parsed = DatabaseUrl::parse(url).expect(url);
            assert_eq!(parsed.redacted(), expected);
            assert_eq!(parsed.to_string(), expected);
            assert!(!format!("{parsed:?}").contains("s3cret"));
        }
    }

    #[test]
    fn keeps_what_it_parsed() {
        let url =
            DatabaseUrl::parse("postgres://alice:s3cret@127.0.0.1:6543/hooks").expect("valid");
        assert_eq!(url.config().get_user(), Some("alice"));
        assert_eq!(url.config().get_password(), Some(&b"s3cret"[..]));
        assert_eq!(url.config().get_dbname(), Some("hooks"));
        assert_eq!(url.config().get_ports(), &[6543]);
    }

    #[test]
    fn errors_name_the_problem_and_never_the_password() {
        for url in [
            "postgres://alice:s3cret@db:notaport/hooks",
            "postgres://alice:s3cret@db/hooks?sslmode=sometimes",
            "postgres://alice:s3cret@db/hooks?nosuchoption=1",
            "postgres:///hooks",
        ] {
            let error = DatabaseUrl::parse(url).expect_err(url);
            let message = format!("{error:#}");
            assert!(!message.contains("s3cret"), "{message}");
            assert!(message.contains("PostgreSQL URL"), "{message}");
        }
        let error = DatabaseUrl::parse("mysql://x").expect_err("not postgres");
        assert!(error.to_string().contains("postgres://USER"));
    }

    #[test]
    fn reads_sslmode_and_sslrootcert_as_libpq_does() {
        let url = DatabaseUrl::parse(
            "postgres://a:s3cret@db/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=r",
        )
        .expect("valid");
        assert_eq!(url.tls().mode, SslMode::VerifyFull);
        assert_eq!(
            url.tls().root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(
            url.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(url.config().get_application_name(), Some("r"));
        for (mode, expected) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
        ] {
            let url = DatabaseUrl::parse(&format!("postgres://a@db/x?sslmode={mode}")).expect(mode);
            assert_eq!(url.tls().mode, expected, "{mode}");
        }
        assert_eq!(
            DatabaseUrl::parse("postgres://a@db/x")
                .expect("valid")
                .tls()
                .mode,
            SslMode::Prefer
        );
        let error = DatabaseUrl::parse("postgres://a:s3cret@db/x?sslmode=always").expect_err("bad");
        assert!(format!("{error:#}").contains("verify-full"));
        assert!(!format!("{error:#}").contains("s3cret"));
        let missing =
            DatabaseUrl::parse("postgres://a@db/x?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
                .expect("parses")
                .pool("t", 1)
                .map(|_| ())
                .expect_err("no such root file");
        assert!(
            format!("{missing:#}").contains("/nonexistent.pem"),
            "{missing:#}"
        );
    }

    #[tokio::test]
    async fn a_pool_is_built_without_connecting() {
        // Port 1 on loopback has no server: building the pool must not try.
        let url = DatabaseUrl::parse("postgres://u:p@127.0.0.1:1/db").expect("valid");
        let pool = url.pool("common-test", 2).expect("pool");
        assert_eq!(pool.status().max_size, 2);
        let error = pool.get().await.expect_err("no server there");
        assert!(!format!("{error:#}").contains(":p@"));
    }
}
