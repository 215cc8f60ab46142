//! What a listening receiver is told: the [`Config`] that [`crate::run`] takes, and the
//! parsers that turn command-line text (authentication flags, signature files) into it; store
//! locations are read by `common::store_location`, sizes and durations by `common::parse`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use common::store_location::StoreLocation;
use verify::{Authentication, BasicCredentials, Keyring, SignatureFile};

/// Default `--max-body`: 1 MiB, far above any Learning Manager batch seen.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default cap on open connections; further clients wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send a request head; also the idle keep-alive limit,
/// because hyper starts this timer whenever it waits for the next head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a whole body once its head arrived.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may leave an answer unread (its socket buffers full, no byte taken)
/// before its connection is closed: without it, a client that stops reading would hold a
/// connection slot for ever, since hyper has no write timeout.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests before it closes their connections.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How many refused requests the store keeps (the newest).
pub const DEFAULT_KEEP_REFUSED: u32 = 10_000;

/// How the receiver reports what arrives, on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputMode {
    /// One readable line per event and per refusal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
    /// Nothing but the `listening on` line.
    Quiet,
}

/// Certificate chain and private key files (PEM) for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Resource limits that protect the receiver from slow or greedy clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted body; larger ones get 413 before (or while) they are read.
    pub max_body_bytes: usize,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Deadline for a request head, and idle limit between keep-alive requests.
    pub header_read_timeout: Duration,
    /// Deadline for reading a body.
    pub body_read_timeout: Duration,
    /// Longest a write may wait for the client to take bytes (see
    /// [`DEFAULT_WRITE_STALL_TIMEOUT`]).
    pub write_stall_timeout: Duration,
    /// Deadline for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Everything [`crate::run`] needs besides the listener.
///
/// Build one with [`Config::new`] (the defaults of SPEC section 3) or [`Config::for_tests`]
/// (the same, quiet), then set the public fields. `Debug` never shows a secret: the
/// credential types of `verify` redact themselves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The webhook path, such as `/webhook`.
    pub path: String,
    /// None, Basic or Signature.
    pub authentication: Authentication,
    /// Where events are stored: a SQLite file or a PostgreSQL database.
    pub store: StoreLocation,
    /// What to print for each event and refusal.
    pub output: OutputMode,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Size, time and connection limits.
    pub limits: Limits,
    /// How many refused requests the store keeps.
    pub keep_refused: u32,
    /// Forward stored requests to the team's apps (`--forward-to`), each to the targets that
    /// take its new events; off when `None`.
    pub forward: Option<crate::forward::ForwardConfig>,
    /// What the listener prunes while it serves (`--retain`, `--dedupe-window`).
    pub retention: crate::retention::Retention,
}

impl Config {
    /// The defaults: path `/webhook`, no authentication, pretty output, no TLS, the default
    /// limits, and the store at `store` (a SQLite path, or a `StoreLocation`).
    pub fn new(store: impl Into<StoreLocation>) -> Self {
        Self {
            path: "/webhook".to_owned(),
            authentication: Authentication::None,
            store: store.into(),
            output: OutputMode::Pretty,
            tls: None,
            limits: Limits::default(),
            keep_refused: DEFAULT_KEEP_REFUSED,
            forward: None,
            retention: crate::retention::Retention::default(),
        }
    }

    /// [`Config::new`] with quiet output, so tests running many receivers print nothing.
    pub fn for_tests(store: impl Into<StoreLocation>) -> Self {
        Self {
            output: OutputMode::Quiet,
            ..Self::new(store)
        }
    }
}

/// The authentication the flags ask for: Basic when a user is given, Signature when signature
/// files are, none otherwise.
///
/// Signature files of the same scheme are merged into one keyring (a rotation may arrive as
/// two files); files of different schemes stay separate keyrings and a request passes when
/// any of them accepts it.
///
/// # Errors
/// Both Basic and Signature given, a user without a password (or the reverse), a username
/// with a colon, or a signature file that cannot be read or used.
pub fn authentication_from_flags(
    basic_user: Option<&str>,
    basic_password: Option<&str>,
    signature_files: &[PathBuf],
) -> anyhow::Result<Authentication> {
    match (basic_user, basic_password, signature_files.is_empty()) {
        (None, None, true) => Ok(Authentication::None),
        (Some(_), _, false) | (_, Some(_), false) => {
            bail!("give either --basic-user/--basic-password or --signature-file, not both")
        }
        (Some(user), Some(password), true) => Ok(Authentication::Basic(
            BasicCredentials::new(user, password).context("--basic-user")?,
        )),
        (Some(_), None, true) => bail!("--basic-user needs --basic-password"),
        (None, Some(_), true) => bail!("--basic-password needs --basic-user"),
        (None, None, false) => {
            let mut keyrings: Vec<Keyring> = Vec::new();
            for path in signature_files {
                // `merge` hands the keyring back when the schemes differ; what no existing
                // keyring takes becomes a keyring of its own.
                let mut pending = Some(read_signature_file(path)?);
                for existing in &mut keyrings {
                    if let Some(keyring) = pending.take() {
                        pending = existing.merge(keyring).err();
                    }
                }
                keyrings.extend(pending);
            }
            Ok(Authentication::Signature(keyrings))
        }
    }
}

/// The keyring of one signature file (for `--forward-signature-file`).
///
/// # Errors
/// The file cannot be read or is not a usable signature file.
pub fn read_signature_file(path: &Path) -> anyhow::Result<Keyring> {
    let context = || format!("reading signature file {}", path.display());
    let bytes = std::fs::read(path).with_context(context)?;
    let file = SignatureFile::from_json(&bytes).with_context(context)?;
    file.keyring().with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_flags_pick_one_method() {
        assert!(matches!(
            authentication_from_flags(None, None, &[]),
            Ok(Authentication::None)
        ));
        assert!(matches!(
            authentication_from_flags(Some("crm"), Some("pw"), &[]),
            Ok(Authentication::Basic(_))
        ));
        assert!(authentication_from_flags(Some("crm"), None, &[]).is_err());
        assert!(authentication_from_flags(None, Some("pw"), &[]).is_err());
        assert!(authentication_from_flags(Some("c"), Some("p"), &[PathBuf::from("x")]).is_err());
        let missing =
            authentication_from_flags(None, None, &[PathBuf::from("/nonexistent/s")]).unwrap_err();
        let message = format!("{missing:#}");
        assert!(
            message.contains("reading signature file /nonexistent/s"),
            "{message}"
        );
    }
}
