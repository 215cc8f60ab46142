//! TLS to PostgreSQL with rustls (ring), with libpq's `sslmode` meanings:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (the default), `allow` | when the server offers it | no |
//! | `require` | yes | no (as libpq, unless `sslrootcert` is given: then as `verify-ca`) |
//! | `verify-ca` | yes | chain to a trusted root |
//! | `verify-full` | yes | chain, and the host name or address |
//!
//! Trusted roots: the PEM file of `sslrootcert=FILE`, else the system bundle (or
//! `SSL_CERT_FILE`), since libpq's `~/.postgresql/root.crt` rarely exists on a server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, certificate unchecked.
    Prefer,
    /// TLS or no connection, certificate unchecked.
    Require,
    /// TLS, and the certificate chains to a trusted root.
    VerifyCa,
    /// TLS, the certificate chains to a trusted root and names the host.
    VerifyFull,
}

impl SslMode {
    /// The mode named by an `sslmode` value.
    ///
    /// # Errors
    /// A value libpq does not know.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => anyhow::bail!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ),
        })
    }

    /// What the client library is told: whether TLS may, must or must not be used.
    pub(crate) fn client_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots.
    pub root_cert: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            mode: SslMode::Prefer,
            root_cert: None,
        }
    }
}

impl TlsSettings {
    /// The certificate check these settings ask for (`require` with a root file checks the
    /// chain, as libpq does).
    fn check(&self) -> SslMode {
        match self.mode {
            SslMode::Require if self.root_cert.is_some() => SslMode::VerifyCa,
            mode => mode,
        }
    }

    /// The connector for the pool.
    ///
    /// # Errors
    /// The root certificate file cannot be read or holds no certificate, or no trusted root
    /// is found for a mode that checks the certificate.
    pub fn connector(&self) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let mode = self.check();
        let chain = match mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => None,
            SslMode::VerifyCa | SslMode::VerifyFull => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.roots()?),
                    Arc::clone(&provider),
                )
                .build()
                .context("building the certificate verifier")?,
            ),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                provider,
                chain,
                host_name: mode == SslMode::VerifyFull,
            }))
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> anyhow::Result<rustls::RootCertStore> {
        let files: Vec<PathBuf> = match &self.root_cert {
            Some(path) => vec![path.clone()],
            None => match std::env::var_os("SSL_CERT_FILE") {
                Some(path) => vec![path.into()],
                None => SYSTEM_CA_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .filter(|path| path.exists())
                    .take(1)
                    .collect(),
            },
        };
        let mut roots = rustls::RootCertStore::empty();
        for path in &files {
            add_pem_file(&mut roots, path)?;
        }
        if roots.is_empty() {
            anyhow::bail!(
                "no trusted root certificate for sslmode={}: give sslrootcert=FILE in the URL",
                if self.mode == SslMode::VerifyFull {
                    "verify-full"
                } else {
                    "verify-ca"
                }
            );
        }
        Ok(roots)
    }
}

/// Where Debian, Ubuntu, Alpine, Fedora and RHEL keep the system CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn add_pem_file(roots: &mut rustls::RootCertStore, path: &Path) -> anyhow::Result<()> {
    let pem =
        std::fs::read(path).with_context(|| format!("reading sslrootcert {}", path.display()))?;
    for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
        let certificate =
            certificate.with_context(|| format!("parsing sslrootcert {}", path.display()))?;
        // A system bundle may hold a certificate rustls rejects; the rest still count.
        let _ = roots.add(certificate);
    }
    Ok(())
}

/// The server-certificate check of one `sslmode`. `prefer` / `require` (no `chain`): the
/// certificate is not checked (libpq's meaning), but the handshake's signatures still are, so
/// the session key belongs to whoever sent the certificate. `verify-ca` / `verify-full`: the
/// chain is checked, and the name only with `host_name`.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    host_name: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // verify-ca: a valid chain for another name is what it accepts.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) if !self.host_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
