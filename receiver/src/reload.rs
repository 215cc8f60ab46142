//! Reload without a restart (SIGHUP; SPEC section 9): the authentication (signature files,
//! Basic credentials) and the TLS certificate are held so that a reload replaces them whole
//! while the receiver serves.
//!
//! No request is refused and no connection dropped because of a reload: a request takes the
//! authentication in force when its body has arrived and keeps it to its answer; rustls asks
//! [`LiveCertificate`] for the certificate at each handshake, so new connections get the new
//! one and open connections keep theirs. A reload is all or nothing: everything is read and
//! checked first ([`Reloader::apply`] is handed a ready authentication, and loads the
//! certificate before it replaces anything), so a missing file or bad JSON leaves what was in
//! force.

use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use verify::Authentication;

use crate::config::TlsFiles;

/// The authentication in force, replaced whole by a reload.
#[derive(Debug)]
pub struct LiveAuthentication {
    // A std RwLock: held only to clone or swap the `Arc`, never across `.await`.
    current: RwLock<Arc<Authentication>>,
}

impl LiveAuthentication {
    /// `authentication` in force.
    pub fn new(authentication: Authentication) -> Self {
        Self {
            current: RwLock::new(Arc::new(authentication)),
        }
    }

    /// The authentication in force now; a request keeps it to its answer.
    pub fn current(&self) -> Arc<Authentication> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            // A writer panicked while swapping an `Arc`: the value is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, authentication: Authentication) {
        let new = Arc::new(authentication);
        match self.current.write() {
            Ok(mut current) => *current = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// The TLS certificate and key in force, asked by rustls at every handshake.
#[derive(Debug)]
pub struct LiveCertificate {
    // A std RwLock, as above.
    current: RwLock<Arc<CertifiedKey>>,
}

impl LiveCertificate {
    /// Reads the certificate chain and key of `files` and checks that they go together.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the two do not match.
    pub fn load(files: &TlsFiles) -> anyhow::Result<LiveCertificate> {
        Ok(LiveCertificate {
            current: RwLock::new(Arc::new(read_certified_key(files)?)),
        })
    }

    fn replace(&self, key: CertifiedKey) {
        let new = Arc::new(key);
        match self.current.write() {
            Ok(mut current) => *current = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

impl ResolvesServerCert for LiveCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        })
    }
}

/// The certificate chain and key of `files`, checked to go together.
fn read_certified_key(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let certs = read_pem(&files.cert, |reader| {
        rustls_pemfile::certs(reader).collect::<Result<Vec<_>, _>>()
    })
    .with_context(|| format!("reading TLS certificate {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", files.cert.display());
    }
    let key = read_pem(&files.key, rustls_pemfile::private_key)
        .with_context(|| format!("reading TLS key {}", files.key.display()))?
        .with_context(|| format!("no private key in {}", files.key.display()))?;
    CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider())
        .context("the TLS certificate and key do not go together")
}

fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> anyhow::Result<T> {
    let file = std::fs::File::open(path)?;
    Ok(parse(&mut BufReader::new(file))?)
}

/// A handle on what a reload replaces in a running receiver (cheap to clone).
#[derive(Clone)]
pub struct Reloader {
    authentication: Arc<LiveAuthentication>,
    certificate: Option<Arc<LiveCertificate>>,
}

impl Reloader {
    /// The handle over `authentication` and, with TLS, `certificate`.
    pub(crate) fn new(
        authentication: Arc<LiveAuthentication>,
        certificate: Option<Arc<LiveCertificate>>,
    ) -> Self {
        Self {
            authentication,
            certificate,
        }
    }

    /// Puts `authentication` and the certificate of `tls` in force, both or neither: the
    /// certificate is read and checked before anything is replaced.
    ///
    /// # Errors
    /// The certificate cannot be used, or TLS would be turned on or off (that needs a
    /// restart: the listener's socket speaks one or the other). What was in force stays.
    pub fn apply(
        &self,
        authentication: Authentication,
        tls: Option<&TlsFiles>,
    ) -> anyhow::Result<()> {
        let certificate = match (&self.certificate, tls) {
            (Some(live), Some(files)) => Some((live, read_certified_key(files)?)),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!(
                    "--tls-cert and --tls-key are gone: turning HTTPS off needs a restart"
                )
            }
            (None, Some(_)) => {
                anyhow::bail!(
                    "--tls-cert and --tls-key were added: turning HTTPS on needs a restart"
                )
            }
        };
        if let Some((live, key)) = certificate {
            live.replace(key);
        }
        self.authentication.replace(authentication);
        Ok(())
    }
}

/// What an authentication holds, in words for the log, never a secret: the method, and for
/// signatures how many keys are in force now in how many keyrings (one per scheme).
pub fn describe(authentication: &Authentication) -> String {
    match authentication {
        Authentication::None => "no authentication".to_owned(),
        Authentication::Basic(_) => "Basic credentials".to_owned(),
        Authentication::Signature(keyrings) => {
            let now = verify::unix_now();
            let in_force: usize = keyrings
                .iter()
                .map(|keyring| {
                    keyring
                        .entries()
                        .iter()
                        .filter(|entry| entry.in_force_at(now))
                        .count()
                })
                .sum();
            let schemes = keyrings.len();
            format!(
                "{in_force} signature key{} in force ({schemes} scheme{})",
                plural(in_force),
                plural(schemes)
            )
        }
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}
