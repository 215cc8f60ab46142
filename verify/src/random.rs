//! Random bytes for new secrets and keys, from the operating system's CSPRNG.
//!
//! Its own module because both kinds of key draw from it: HMAC secrets
//! ([`crate::signature`]) and Ed25519 seeds ([`crate::ed25519`]), neither of which should
//! depend on the other for it.

/// `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// When the operating system has no random source, which leaves no safe way to go on.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    #[allow(clippy::expect_used)] // no secure fallback exists
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}
