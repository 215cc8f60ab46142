//! Learning Manager webhooks: the payload, the event catalogue, and Basic and Signature
//! authentication, for receivers and senders alike.
//!
//! This crate does no I/O: it reads and writes bytes and headers that the caller's HTTP stack
//! holds, and takes the clock as an argument wherever time matters (`verify_at`).
//!
//! Layout:
//! - [`payload`]: the envelope reader (every form Learning Manager has sent) and writer;
//! - [`catalog`] and [`generate`]: every event name with its class and `data` fields, and a
//!   seeded generator of realistic events;
//! - [`basic`]: RFC 7617 credentials, checked in constant time;
//! - [`signature`]: HMAC secrets and the constant-time compare; [`ed25519`]: the `whpk_` /
//!   `whsk_` keys of Standard Webhooks `v1a`; [`key`]: one key with its expiry and the walk
//!   that finds the key a request was signed with; [`keyring`]: the keys of one scheme
//!   (rotation), verifying and signing through the scheme's module;
//! - [`scheme`]: one module per signature scheme (Standard Webhooks `v1`/`v1a` and Svix,
//!   `body-hmac-sha256`, GitHub, Shopify, Stripe, Slack), all of the same shape;
//! - [`signature_file`]: the JSON file an admin downloads; [`capture`]: the capture record;
//! - [`auth`]: one entry point over none, Basic and Signature; [`error`]: the refusals;
//! - [`source`]: reading capture and envelope files; [`diagnose`]: why a captured request was
//!   refused, for `receiver check`.
//!
//! # Example
//!
//! ```
//! use verify::{Keyring, SigningSecret};
//!
//! let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let keyring = Keyring::single(secret);
//! let body = br#"{"accountId":1010,"events":[]}"#;
//!
//! // The sender signs...
//! let now = 1_614_265_330;
//! let headers = keyring.sign_headers("msg_p5jXN8AQM9LWM0D4loKWxJek", now, body);
//!
//! // ...and the receiver verifies the same bytes, with its own clock.
//! keyring.verify_at(&headers, body, now + 2)?;
//!
//! // A tampered body is refused with a stable reason code.
//! let refused = keyring.verify_at(&headers, b"{}", now).unwrap_err();
//! assert_eq!(refused.reason_code(), "no_matching_signature");
//!
//! let envelope = verify::parse_envelope(body)?;
//! assert_eq!(envelope.account_id, 1010);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
pub mod basic;
pub mod capture;
pub mod catalog;
pub mod diagnose;
pub mod ed25519;
pub mod error;
pub mod generate;
pub mod headers;
pub mod key;
pub mod keyring;
pub mod payload;
mod random;
pub mod redacted;
pub mod resend;
pub mod scheme;
pub mod signature;
pub mod signature_file;
pub mod source;
pub mod timestamp;

pub use auth::Authentication;
pub use basic::BasicCredentials;
pub use capture::{CaptureRecord, Verdict};
pub use catalog::{lookup, EventClass, EventKind, CATALOG};
pub use diagnose::{diagnose_at, Diagnosis};
pub use error::{PayloadError, VerifyError};
pub use generate::EventGenerator;
pub use headers::Headers;
pub use key::{Key, KeyEntry, Verified};
pub use keyring::{unix_now, Keyring, Scheme};
pub use payload::{
    parse_envelope, single_event_envelope, Envelope, Event, EventTime, OutgoingEnvelope,
    OutgoingEvent, TimeStyle,
};
pub use redacted::RedactedString;
pub use signature::{sign, BodyHmacFormat, Encoding, SigningSecret};
pub use signature_file::{SignatureFile, SignatureFileError};
pub use source::{parse_source, SourceItem};
pub use timestamp::unix_now_ms;
