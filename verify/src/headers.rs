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

    /// `webhook-id`, `webhook-timestamp` and `webhook-signature`, in that order. Override it
    /// where the three can be found faster than by three calls of [`Headers::header`].
    fn standard_webhook_headers(&self) -> [Option<&[u8]>; 3] {
        [
            self.header(WEBHOOK_ID),
            self.header(WEBHOOK_TIMESTAMP),
            self.header(WEBHOOK_SIGNATURE),
        ]
    }
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
        // The signature schemes' names, built once: a lookup by `&str` parses and validates
        // the name on every request, a tenth of a 1 KiB verification.
        static KNOWN: [HeaderName; 8] = [
            HeaderName::from_static("x-hub-signature-256"),
            HeaderName::from_static("x-shopify-hmac-sha256"),
            HeaderName::from_static("stripe-signature"),
            HeaderName::from_static("x-slack-signature"),
            HeaderName::from_static("x-slack-request-timestamp"),
            HeaderName::from_static("svix-id"),
            HeaderName::from_static("svix-timestamp"),
            HeaderName::from_static("svix-signature"),
        ];
        let known = match name {
            "x-hub-signature-256" => Some(&KNOWN[0]),
            "x-shopify-hmac-sha256" => Some(&KNOWN[1]),
            "stripe-signature" => Some(&KNOWN[2]),
            "x-slack-signature" => Some(&KNOWN[3]),
            "x-slack-request-timestamp" => Some(&KNOWN[4]),
            "svix-id" => Some(&KNOWN[5]),
            "svix-timestamp" => Some(&KNOWN[6]),
            "svix-signature" => Some(&KNOWN[7]),
            _ => None,
        };
        match known {
            Some(known) => self.get(known),
            None => self.get(name),
        }
        .map(http::HeaderValue::as_bytes)
    }

    fn standard_webhook_headers(&self) -> [Option<&[u8]>; 3] {
        use http::HeaderName;
        // Built once: a lookup by `&str` parses and validates the name on every request,
        // which shows at 1 KiB bodies.
        static NAMES: [HeaderName; 3] = [
            HeaderName::from_static(WEBHOOK_ID),
            HeaderName::from_static(WEBHOOK_TIMESTAMP),
            HeaderName::from_static(WEBHOOK_SIGNATURE),
        ];
        NAMES
            .each_ref()
            .map(|name| self.get(name).map(http::HeaderValue::as_bytes))
    }
}

/// The value of a header that must be present and non-empty.
pub(crate) fn required<'h>(
    headers: &'h (impl Headers + ?Sized),
    name: &str,
) -> Result<&'h [u8], crate::VerifyError> {
    present(headers.header(name), name)
}

/// A looked-up value that must be present and non-empty.
pub(crate) fn present<'h>(
    value: Option<&'h [u8]>,
    name: &str,
) -> Result<&'h [u8], crate::VerifyError> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(crate::VerifyError::MissingHeader(name.to_owned().into())),
    }
}
