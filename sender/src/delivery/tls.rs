//! The TLS client of `https` Target URLs: the system's CA certificates and `--ca-file`.

use std::sync::Arc;

use anyhow::Context as _;

/// Where Debian, Ubuntu, Alpine, Fedora and RHEL keep the system CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A TLS client trusting the system bundle (or `SSL_CERT_FILE`) and `ca_file`.
pub(super) fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    match std::env::var_os("SSL_CERT_FILE") {
        Some(path) => files.push(path.into()),
        None => files.extend(
            SYSTEM_CA_BUNDLES
                .iter()
                .map(std::path::PathBuf::from)
                .filter(|p| p.exists())
                .take(1),
        ),
    }
    let extra = ca_file.map(std::path::Path::to_path_buf);
    files.extend(extra.clone());
    for path in &files {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading CA certificates {}", path.display()))?;
        for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
            let certificate = certificate
                .with_context(|| format!("parsing CA certificates {}", path.display()))?;
            // A bundle may hold a certificate rustls rejects; the rest still count. The
            // file given with --ca-file must be usable, though.
            let added = roots.add(certificate);
            if Some(path) == extra.as_ref() {
                added.with_context(|| format!("CA certificate in {}", path.display()))?;
            }
        }
    }
    if roots.is_empty() {
        anyhow::bail!(
            "no trusted CA certificates for https: install ca-certificates, or set SSL_CERT_FILE or --ca-file"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
