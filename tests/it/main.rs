//! Integration tests over loopback: the receiver, the sender, and the two together.
//!
//! `support` holds what every test needs (spawning receivers, fake endpoints, bounded waits).

mod support;

#[cfg(feature = "receiver-tests")]
mod receiver;

#[cfg(feature = "sender-tests")]
mod sender;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod end_to_end;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod replay;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod logs;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod ecosystem;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod help_texts;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod config_file;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod deploy;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod sealed_secrets;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod admin;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod private_targets;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod private_targets_cli;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod store_location;

#[cfg(all(feature = "receiver-tests", feature = "sender-tests"))]
mod operations;
