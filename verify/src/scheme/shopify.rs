//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`, keyed with the app's
//! secret text. No timestamp is signed: no replay window.

use std::sync::LazyLock;

use crate::signature::{BodyHmacFormat, Encoding};

/// The signature header, lowercase.
pub const HEADER: &str = "x-shopify-hmac-sha256";

/// Shopify's format, built once.
pub(crate) static FORMAT: LazyLock<BodyHmacFormat> = LazyLock::new(|| BodyHmacFormat {
    header: HEADER.to_owned(),
    encoding: Encoding::Base64,
    prefix: String::new(),
});
