//! GitHub: `X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256 of the body>`, keyed with
//! the webhook's secret text. No timestamp is signed: no replay window (GitHub's
//! `X-GitHub-Delivery` id is for deduplication, not signed).

use std::sync::LazyLock;

use crate::signature::{BodyHmacFormat, Encoding};

/// The signature header, lowercase.
pub const HEADER: &str = "x-hub-signature-256";

/// GitHub's format, built once.
pub(crate) static FORMAT: LazyLock<BodyHmacFormat> = LazyLock::new(|| BodyHmacFormat {
    header: HEADER.to_owned(),
    encoding: Encoding::Hex,
    prefix: "sha256=".to_owned(),
});
