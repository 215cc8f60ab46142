//! The signature file a webhook signs with, and the scheme its settings give: a change of
//! settings keeps the keys, a change of scheme makes a key of the new kind, and a file made
//! before Save (the pages' **Download signature**, the API's pending signatures) is the one
//! Save keeps. Used by the validation of a webhook's changes ([`super::validation`]).

use verify::{BodyHmacFormat, Encoding, Scheme, SignatureFile};

use crate::registry::{SchemeName, WebhookId};
use crate::UsageError;

/// The signature file a webhook of scheme `name` signs with: `current` when it is of that
/// kind (a change of settings keeps the keys), else `pending` when it was made for `id` and
/// is of that kind, else a new file with a fresh key. Another scheme reads secrets another
/// way (and v1a needs a key pair), so a change of scheme needs a key of the new kind.
pub fn signature_file_for(
    current: Option<&SignatureFile>,
    pending: Option<&SignatureFile>,
    id: &WebhookId,
    name: SchemeName,
    scheme: &Scheme,
    now_ms: i64,
) -> SignatureFile {
    let of_kind = |file: &&SignatureFile| SchemeName::of_file(file) == Some(name);
    if let Some(file) = current.filter(of_kind) {
        return file.clone();
    }
    if let Some(file) = pending
        .filter(of_kind)
        .filter(|file| file.webhook_id == id.as_str())
    {
        return file.clone();
    }
    let key: verify::Key = if name == SchemeName::StandardWebhooksV1a {
        verify::ed25519::SecretKey::generate().into()
    } else {
        scheme.generate_secret().into()
    };
    SignatureFile::with_key(id.as_str(), "", scheme, key, now_ms.div_euclid(1000))
}

/// The signature file a webhook `id` named `webhook_name` would sign with under scheme `name`
/// (its default settings), before it is saved: [`signature_file_for`] the stored `current`
/// file and a `pending` one, else a fresh key. What the admin pages' **Download signature**
/// and the API's pending signatures hand out, and what Save then keeps.
///
/// # Errors
/// A scheme the signature files do not know (never for a [`SchemeName`]).
pub fn signature_file_of(
    current: Option<&SignatureFile>,
    pending: Option<&SignatureFile>,
    id: &WebhookId,
    webhook_name: &str,
    name: SchemeName,
    now_ms: i64,
) -> Result<SignatureFile, UsageError> {
    let scheme = build_scheme(name, None, None, None, None, None)?;
    let mut file = signature_file_for(current, pending, id, name, &scheme, now_ms);
    file.webhook_name = webhook_name.to_owned();
    Ok(file)
}

/// The scheme after applying flags to the current one (or the default).
pub(super) fn build_scheme(
    name: SchemeName,
    current: Option<Scheme>,
    header: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    tolerance_secs: Option<i64>,
) -> Result<Scheme, UsageError> {
    let current = current.filter(|scheme| scheme.name() == name.file_scheme());
    match name {
        SchemeName::BodyHmacSha256 => {
            build_body_hmac(current, header, encoding, prefix, tolerance_secs)
        }
        _ => {
            if let Some(flag) = [
                header.as_ref().map(|_| "--signature-header"),
                encoding.as_ref().map(|_| "--signature-encoding"),
                prefix.as_ref().map(|_| "--signature-prefix"),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                return Err(UsageError(format!(
                    "{flag} applies to --scheme body-hmac-sha256 only"
                )));
            }
            let scheme = current
                .or_else(|| Scheme::from_name(name.file_scheme()))
                .ok_or_else(|| UsageError(format!("unknown scheme {}", name.file_scheme())))?;
            match (scheme.tolerance_secs(), tolerance_secs) {
                (None, Some(_)) => Err(UsageError(format!(
                    "--tolerance does not apply to {}: it signs no timestamp, so it has no replay window",
                    scheme.name()
                ))),
                (Some(_), Some(secs)) if secs < 0 => {
                    Err(UsageError("--tolerance must not be negative".into()))
                }
                (Some(_), Some(secs)) => Ok(scheme.with_tolerance(secs)),
                (_, None) => Ok(scheme),
            }
        }
    }
}

/// The `body-hmac-sha256` format after applying its flags to the current one.
fn build_body_hmac(
    current: Option<Scheme>,
    header: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    tolerance_secs: Option<i64>,
) -> Result<Scheme, UsageError> {
    if tolerance_secs.is_some() {
        return Err(UsageError(
            "--tolerance does not apply to body-hmac-sha256: it has no replay window".into(),
        ));
    }
    let mut format = match current {
        Some(Scheme::BodyHmacSha256(format)) => format,
        _ => BodyHmacFormat::default(),
    };
    if let Some(header) = header {
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(UsageError(format!(
                "--signature-header {header:?} is not a header name (letters, digits, '-')"
            )));
        }
        let header = header.to_ascii_lowercase();
        // Headers the HTTP layer or the other auth methods own would be overwritten,
        // duplicated or misread.
        const RESERVED: &[&str] = &[
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "authorization",
            "user-agent",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        ];
        if RESERVED.contains(&header.as_str()) {
            return Err(UsageError(format!(
                        "--signature-header {header} is reserved; pick a header of its own such as x-alm-signature"
                    )));
        }
        format.header = header;
    }
    if let Some(encoding) = encoding {
        format.encoding = Encoding::from_name(&encoding).ok_or_else(|| {
            UsageError(format!(
                "--signature-encoding {encoding:?}: use hex or base64"
            ))
        })?;
    }
    if let Some(prefix) = prefix {
        // The receiver splits several signatures on commas and spaces, and a header
        // value cannot hold control characters.
        if prefix
            .chars()
            .any(|c| c.is_control() || c == ',' || c == ' ')
        {
            return Err(UsageError(
                        "--signature-prefix must not hold spaces, commas or control characters (e.g. sha256=)".into(),
                    ));
        }
        format.prefix = prefix;
    }
    Ok(Scheme::BodyHmacSha256(format))
}
