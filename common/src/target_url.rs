//! A Target URL: where requests go, parsed and checked once where it enters (a flag, an API
//! body, a form, a stored row) and carried typed to the client that connects to it.
//!
//! One rule set: an absolute `http://` or `https://` URL with a host and without credentials.
//! Credentials in the authority (`user:password@host`) are refused rather than sent: they would
//! travel in the `Host` header and land in logs and listings; the error never quotes them. The
//! text is kept as given (it is what is stored and shown); the parts a client needs (host,
//! port, origin, path) are read from the parsed form.
//!
//! ```
//! use common::target_url::{TargetUrl, TargetUrlError};
//!
//! let url = TargetUrl::parse("https://crm.example.com/webhook?team=7")?;
//! assert_eq!((url.host(), url.port(), url.is_https()), ("crm.example.com", 443, true));
//! assert_eq!(url.origin(), "https://crm.example.com");
//! assert_eq!(url.path_and_query().as_str(), "/webhook?team=7");
//! assert_eq!(TargetUrl::parse("ftp://x/y"), Err(TargetUrlError::Scheme("ftp".into())));
//! # Ok::<(), TargetUrlError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;

/// An absolute `http` or `https` URL with a host and no credentials, as given.
#[derive(Clone)]
pub struct TargetUrl {
    /// The URL as given: stored, shown and compared as such.
    text: String,
    uri: Uri,
}

/// Why a text is not a Target URL. The messages name the fault without quoting the URL, which
/// may hold credentials; a caller that quotes it does so only when it holds none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrlError {
    /// The authority holds `user[:password]@`.
    Credentials,
    /// No `http://` or `https://` in front.
    NoScheme,
    /// Not a URL at all; the parser's reason.
    Invalid(String),
    /// A scheme other than `http` and `https`.
    Scheme(String),
    /// No host after the scheme.
    NoHost,
}

impl fmt::Display for TargetUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Credentials => f.write_str("it carries credentials (user:password@host)"),
            Self::NoScheme => f.write_str("it has no http:// or https:// scheme"),
            Self::Invalid(why) => write!(f, "not a valid URL ({why})"),
            Self::Scheme(scheme) => write!(f, "scheme {scheme:?} is not http or https"),
            Self::NoHost => f.write_str("it has no host"),
        }
    }
}

impl std::error::Error for TargetUrlError {}

impl TargetUrl {
    /// Parses `text` by the one rule set (see the module).
    ///
    /// # Errors
    /// A [`TargetUrlError`] naming the first rule `text` breaks, in this order: credentials,
    /// no scheme, not a URL, another scheme, no host.
    pub fn parse(text: &str) -> Result<TargetUrl, TargetUrlError> {
        if has_credentials(text) {
            return Err(TargetUrlError::Credentials);
        }
        if !text.contains("://") {
            return Err(TargetUrlError::NoScheme);
        }
        let uri: Uri = text
            .parse()
            .map_err(|error: http::uri::InvalidUri| TargetUrlError::Invalid(error.to_string()))?;
        match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS => {}
            Some(other) => return Err(TargetUrlError::Scheme(other.as_str().to_owned())),
            None => return Err(TargetUrlError::NoScheme),
        }
        match uri.host() {
            Some(host) if !host.is_empty() => Ok(TargetUrl {
                text: text.to_owned(),
                uri,
            }),
            _ => Err(TargetUrlError::NoHost),
        }
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Whether requests go over TLS.
    pub fn is_https(&self) -> bool {
        self.uri.scheme() == Some(&Scheme::HTTPS)
    }

    /// The host as the URL writes it: a name, an IPv4 address, or an IPv6 address in brackets.
    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default()
    }

    /// The port: the URL's, else 443 for `https` and 80 for `http`.
    pub fn port(&self) -> u16 {
        self.uri
            .port_u16()
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }

    /// `host[:port]`, as the `Host` header carries it.
    pub fn authority(&self) -> &Authority {
        self.uri
            .authority()
            .expect("a Target URL has a host, checked when parsed")
    }

    /// `scheme://authority`: what a kept-alive connection may be reused for.
    pub fn origin(&self) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }

    /// The path and query a request names (`/` when the URL has none).
    pub fn path_and_query(&self) -> PathAndQuery {
        self.uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    }
}

/// Whether a URL's authority holds `user[:password]@` (an `@` after the path starts is not).
fn has_credentials(text: &str) -> bool {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

impl FromStr for TargetUrl {
    type Err = TargetUrlError;

    fn from_str(text: &str) -> Result<TargetUrl, TargetUrlError> {
        TargetUrl::parse(text)
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetUrl({:?})", self.text)
    }
}

impl PartialEq for TargetUrl {
    fn eq(&self, other: &TargetUrl) -> bool {
        self.text == other.text
    }
}

impl Eq for TargetUrl {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_in_order() {
        // (text, what it parses to: Ok(host, port, https, origin, path) or the error)
        type Parsed = Result<(&'static str, u16, bool, &'static str, &'static str), TargetUrlError>;
        let check = |text: &str, expected: Parsed| {
            let parsed = TargetUrl::parse(text).map(|url| {
                (
                    url.host().to_owned(),
                    url.port(),
                    url.is_https(),
                    url.origin(),
                    url.path_and_query().as_str().to_owned(),
                )
            });
            let expected = expected.map(|(host, port, https, origin, path)| {
                (
                    host.to_owned(),
                    port,
                    https,
                    origin.to_owned(),
                    path.to_owned(),
                )
            });
            assert_eq!(parsed, expected, "{text}");
        };
        check(
            "http://127.0.0.1:8080/webhook",
            Ok((
                "127.0.0.1",
                8080,
                false,
                "http://127.0.0.1:8080",
                "/webhook",
            )),
        );
        check(
            "https://crm.example.com/hook?to=a@b",
            Ok((
                "crm.example.com",
                443,
                true,
                "https://crm.example.com",
                "/hook?to=a@b",
            )),
        );
        check(
            "http://crm.example.com",
            Ok(("crm.example.com", 80, false, "http://crm.example.com", "/")),
        );
        check(
            "HTTPS://Crm.Example.com:8443/x",
            Ok((
                "Crm.Example.com",
                8443,
                true,
                "https://Crm.Example.com:8443",
                "/x",
            )),
        );
        check(
            "http://[::1]:9000/hook",
            Ok(("[::1]", 9000, false, "http://[::1]:9000", "/hook")),
        );
        check(
            "https://crm:s3cret@crm.example.com/hook",
            Err(TargetUrlError::Credentials),
        );
        check("http://u@127.0.0.1:9/", Err(TargetUrlError::Credentials));
        check("crm.example.com/hook", Err(TargetUrlError::NoScheme));
        check("/webhook", Err(TargetUrlError::NoScheme));
        check("ftp://x/y", Err(TargetUrlError::Scheme("ftp".into())));
        check(
            "http://",
            Err(TargetUrlError::Invalid("empty string".into())),
        );
        check(
            "http://exa mple.com/",
            Err(TargetUrlError::Invalid("invalid uri character".into())),
        );
        check("", Err(TargetUrlError::NoScheme));
    }

    #[test]
    fn errors_never_quote_the_url() {
        let error = TargetUrl::parse("https://crm:s3cret@crm.example.com/hook")
            .expect_err("credentials")
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert_eq!(error, "it carries credentials (user:password@host)");
    }

    #[test]
    fn the_text_is_kept_as_given_and_parses_back() {
        for text in [
            "http://127.0.0.1:8080/webhook",
            "HTTPS://Crm.Example.com:8443/x?y=1#frag",
            "https://crm.example.com",
        ] {
            let url = TargetUrl::parse(text).expect(text);
            assert_eq!(url.as_str(), text);
            assert_eq!(url.to_string(), text);
            assert_eq!(url.as_str().parse::<TargetUrl>(), Ok(url));
        }
    }
}
