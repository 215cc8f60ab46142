//! HTTP Basic authentication (RFC 7617), checked in constant time.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::headers::{Headers, AUTHORIZATION};
use crate::VerifyError;

/// The realm receivers name in `WWW-Authenticate`.
pub const REALM: &str = "webhooks";

/// Base64 that accepts credentials with or without their `=` padding, as clients differ.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A username and password, for building or checking `Authorization: Basic` headers.
///
/// The check compares SHA-256 digests of each part with a constant-time equality, so neither
/// the content nor the length of the expected values leaks through timing. `Debug` shows the
/// username and hides the password.
#[derive(Clone)]
pub struct BasicCredentials {
    username: String,
    password: String,
    username_digest: [u8; 32],
    password_digest: [u8; 32],
}

impl BasicCredentials {
    /// Credentials from a username (without `:`, as RFC 7617 requires) and a password.
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] when the username contains a colon.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<Self, VerifyError> {
        let username = username.into();
        let password = password.into();
        if username.contains(':') {
            return Err(VerifyError::InvalidSecret(
                "a Basic username must not contain ':'".into(),
            ));
        }
        Ok(Self {
            username_digest: Sha256::digest(username.as_bytes()).into(),
            password_digest: Sha256::digest(password.as_bytes()).into(),
            username,
            password,
        })
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The value of an `Authorization` header carrying these credentials. Never log it.
    pub fn authorization_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }

    /// Checks the request's `Authorization` header.
    ///
    /// # Errors
    /// `basic_missing` when there is no Basic header, `basic_malformed` when it does not
    /// decode to `user:password`, `basic_mismatch` when either part differs.
    pub fn verify(&self, headers: &(impl Headers + ?Sized)) -> Result<(), VerifyError> {
        self.verify_header_value(headers.header(AUTHORIZATION))
    }

    /// Checks one `Authorization` header value (`None` when the header is absent).
    ///
    /// # Errors
    /// As [`BasicCredentials::verify`].
    pub fn verify_header_value(&self, value: Option<&[u8]>) -> Result<(), VerifyError> {
        let value = value.ok_or(VerifyError::BasicMissing)?.trim_ascii();
        let split = value.iter().position(|byte| *byte == b' ');
        let (scheme, credentials) = match split {
            Some(at) => (&value[..at], value[at..].trim_ascii()),
            None => (value, &b""[..]),
        };
        // The auth-scheme token is case-insensitive (RFC 7235 section 2.1).
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return Err(VerifyError::BasicMissing);
        }
        if credentials.is_empty() {
            return Err(VerifyError::BasicMalformed(
                "no credentials after \"Basic\"",
            ));
        }
        let decoded = LENIENT_BASE64
            .decode(credentials)
            .map_err(|_| VerifyError::BasicMalformed("the credentials are not base64"))?;
        let decoded = std::str::from_utf8(&decoded)
            .map_err(|_| VerifyError::BasicMalformed("the credentials are not UTF-8"))?;
        // The username cannot hold a colon, so the first one ends it; the password may hold more.
        let (username, password) = decoded.split_once(':').ok_or(VerifyError::BasicMalformed(
            "the credentials lack the ':' between username and password",
        ))?;
        let username_ok = self
            .username_digest
            .as_slice()
            .ct_eq(Sha256::digest(username.as_bytes()).as_slice());
        let password_ok = self
            .password_digest
            .as_slice()
            .ct_eq(Sha256::digest(password.as_bytes()).as_slice());
        // `&` on `Choice` does not short-circuit: both parts are always compared.
        if bool::from(username_ok & password_ok) {
            Ok(())
        } else {
            Err(VerifyError::BasicMismatch)
        }
    }
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(credentials: &BasicCredentials, header: Option<&[u8]>, expected: &str) {
        let got = match credentials.verify_header_value(header) {
            Ok(()) => "accepted".to_owned(),
            Err(error) => error.reason_code().into_owned(),
        };
        assert_eq!(got, expected, "{:?}", header.map(String::from_utf8_lossy));
    }

    fn encoded(text: &[u8]) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(text)).into_bytes()
    }

    #[test]
    fn rfc_7617_edge_cases() {
        let crm = BasicCredentials::new("crm", "pa:ss:word").expect("valid");
        check(
            &crm,
            Some(crm.authorization_header().as_bytes()),
            "accepted",
        );
        check(&crm, Some(&encoded(b"crm:pa:ss:word")), "accepted");
        check(&crm, Some(b"basic Y3JtOnBhOnNzOndvcmQ="), "accepted");
        check(&crm, Some(b"BASIC   Y3JtOnBhOnNzOndvcmQ  "), "accepted");
        check(&crm, None, "basic_missing");
        check(&crm, Some(b"Bearer abc"), "basic_missing");
        check(&crm, Some(b"Basic"), "basic_malformed");
        check(&crm, Some(b"Basic !!!"), "basic_malformed");
        check(&crm, Some(&encoded(b"no colon")), "basic_malformed");
        check(&crm, Some(&encoded(b"crm:\xff\xfe")), "basic_malformed");
        check(&crm, Some(&encoded(b"crm:pa:ss")), "basic_mismatch");
        check(&crm, Some(&encoded(b"CRM:pa:ss:word")), "basic_mismatch");
        check(&crm, Some(&encoded(b"crm:pa:ss:word ")), "basic_mismatch");

        let empty_user = BasicCredentials::new("", "secret").expect("valid");
        check(&empty_user, Some(&encoded(b":secret")), "accepted");
        check(&empty_user, Some(&encoded(b"x:secret")), "basic_mismatch");

        let unicode = BasicCredentials::new("jörg", "пароль").expect("valid");
        check(
            &unicode,
            Some(unicode.authorization_header().as_bytes()),
            "accepted",
        );
    }

    #[test]
    fn username_with_colon_is_refused_and_debug_hides_the_password() {
        assert!(BasicCredentials::new("a:b", "p").is_err());
        let credentials = BasicCredentials::new("crm", "hunter22").expect("valid");
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("crm") && !shown.contains("hunter22"),
            "{shown}"
        );
    }
}
