//! Read-only access to request headers, whatever HTTP library holds them.

/// Header names of the Standard Webhooks scheme.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Unix seconds of the delivery attempt.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// RFC 7617 credentials.
pub const AUTHORIZATION: &str = "authorization";

/// Lookup of a request header by its lowercase name.
///
/// Implemented for slices and vectors of `(name, value)` pairs (names compared without regard
/// to case, first match wins) and, with the `http` feature, for `http::HeaderMap`.
pub trait Headers {
    /// The first value of the header `name` (given in lowercase), as raw bytes.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

#[cfg(feature = "http")]
impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        use http::HeaderName;
        // The scheme's own names are built once: looking up by `&str` would parse and
        // validate the name on every request.
        static KNOWN: [(&str, HeaderName); 3] = [
            (WEBHOOK_ID, HeaderName::from_static(WEBHOOK_ID)),
            (
                WEBHOOK_TIMESTAMP,
                HeaderName::from_static(WEBHOOK_TIMESTAMP),
            ),
            (
                WEBHOOK_SIGNATURE,
                HeaderName::from_static(WEBHOOK_SIGNATURE),
            ),
        ];
        let value = match KNOWN.iter().find(|(known, _)| *known == name) {
            Some((_, header_name)) => self.get(header_name),
            None => self.get(name),
        };
        value.map(http::HeaderValue::as_bytes)
    }
}

/// The value of a header that must be present and non-empty.
pub(crate) fn required<'h>(
    headers: &'h (impl Headers + ?Sized),
    name: &str,
) -> Result<&'h [u8], crate::VerifyError> {
    match headers.header(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(crate::VerifyError::MissingHeader(name.to_owned().into())),
    }
}
