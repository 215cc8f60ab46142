//! Helpers shared by the integration tests.

pub mod external;

#[cfg(feature = "receiver-tests")]
pub mod receiver;

#[cfg(feature = "sender-tests")]
pub mod endpoint;

#[cfg(feature = "sender-tests")]
pub mod logged;
