//! A string that must never be shown: passwords given on a command line or in a config.

use std::fmt;
use std::str::FromStr;

/// A secret string. `Debug` and `Display` print `[redacted]`; [`RedactedString::expose`] gives
/// the text to the one place that needs it. Parses from any string, so command-line parsers
/// (clap's `FromStr` support) can hold passwords in it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedactedString(String);

impl RedactedString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for RedactedString {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for RedactedString {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl FromStr for RedactedString {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for RedactedString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for RedactedString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_secret() {
        let secret: RedactedString = "hunter22".parse().expect("infallible");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter22");
    }
}
