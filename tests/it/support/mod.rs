//! Helpers shared by the integration tests.

pub mod external;

#[cfg(feature = "receiver-tests")]
pub mod receiver;

pub mod inspector;
pub mod prometheus;
pub mod rng;
#[cfg(feature = "receiver-tests")]
pub mod store;

#[cfg(feature = "receiver-tests")]
pub mod browser;

#[cfg(feature = "sender-tests")]
pub mod endpoint;

#[cfg(feature = "sender-tests")]
pub mod logged;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
pub mod admin;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
pub mod openapi;

#[cfg(feature = "receiver-tests")]
pub mod forwarding;
