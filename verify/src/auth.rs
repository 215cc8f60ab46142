//! One entry point over the three authentication methods a webhook can use.

use crate::basic::BasicCredentials;
use crate::headers::Headers;
use crate::keyring::{unix_now, Keyring};
use crate::VerifyError;

/// How a receiver authenticates requests: the webhook's method in SPEC section 2.
#[derive(Debug, Clone, Default)]
pub enum Authentication {
    /// Nothing is checked.
    #[default]
    None,
    /// `Authorization: Basic`.
    Basic(BasicCredentials),
    /// Signatures; a request passes when any keyring accepts it (one keyring per scheme).
    Signature(Vec<Keyring>),
}

impl Authentication {
    /// Checks a request against the system clock.
    ///
    /// # Errors
    /// The refusal and its reason code.
    pub fn verify(
        &self,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_at(headers, body, unix_now())
    }

    /// Checks a request as a receiver whose clock reads `now_secs`.
    ///
    /// With several keyrings, the refusal reported is that of the first keyring whose headers
    /// were present, since that is the scheme the sender meant to use.
    ///
    /// # Errors
    /// The refusal and its reason code.
    pub fn verify_at(
        &self,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), VerifyError> {
        match self {
            Self::None => Ok(()),
            Self::Basic(credentials) => credentials.verify(headers),
            Self::Signature(keyrings) => {
                let mut first_error: Option<VerifyError> = None;
                for keyring in keyrings {
                    match keyring.verify_at(headers, body, now_secs) {
                        Ok(_) => return Ok(()),
                        Err(error) => {
                            let better = match &first_error {
                                None => true,
                                Some(VerifyError::MissingHeader(_)) => {
                                    !matches!(error, VerifyError::MissingHeader(_))
                                }
                                Some(_) => false,
                            };
                            if better {
                                first_error = Some(error);
                            }
                        }
                    }
                }
                Err(first_error.unwrap_or(VerifyError::NoMatchingSignature))
            }
        }
    }

    /// `none`, `basic` or `signature`.
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic(_) => "basic",
            Self::Signature(_) => "signature",
        }
    }
}
