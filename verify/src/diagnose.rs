//! Offline diagnosis of a captured request: the verdict a receiver gave (or would give) at the
//! time it was received, and the facts a person needs to fix a refusal.
//!
//! Used by `receiver check`. Pure: the caller reads the capture and the signature files.

use serde_json::Value;

use crate::auth::Authentication;
use crate::catalog::lookup;
use crate::headers::Headers;
use crate::key::{Key, KeyEntry};
use crate::keyring::{Keyring, Scheme};
use crate::scheme::{signed_timestamp, SCHEME_NAMES};
use crate::signature::{decode_tag, BodyHmacFormat, Encoding, SigningSecret};
use crate::timestamp::format_iso_seconds;
use crate::VerifyError;

/// The outcome of re-verifying one request, with explanations.
#[derive(Debug)]
pub struct Diagnosis {
    /// What the receiver would answer at the receive time.
    pub verdict: Result<(), VerifyError>,
    /// Plain sentences, most useful first; empty when the request was accepted.
    pub findings: Vec<String>,
}

impl Diagnosis {
    /// `accepted`, or the refusal's reason code.
    pub fn reason_code(&self) -> String {
        match &self.verdict {
            Ok(()) => "accepted".to_owned(),
            Err(error) => error.reason_code().into_owned(),
        }
    }
}

/// Re-verifies a request as a receiver whose clock read `received_at_secs`, and explains a
/// refusal.
pub fn diagnose_at<H: Headers + ?Sized>(
    authentication: &Authentication,
    headers: &H,
    body: &[u8],
    received_at_secs: i64,
) -> Diagnosis {
    let verdict = authentication.verify_at(headers, body, received_at_secs);
    let mut findings = Vec::new();
    if let Err(error) = &verdict {
        findings.push(error.to_string());
        if let Authentication::Signature(keyrings) = authentication {
            explain_signature(
                keyrings,
                headers,
                body,
                received_at_secs,
                error,
                &mut findings,
            );
        }
    }
    Diagnosis { verdict, findings }
}

fn explain_signature<H: Headers + ?Sized>(
    keyrings: &[Keyring],
    headers: &H,
    body: &[u8],
    at_secs: i64,
    error: &VerifyError,
    findings: &mut Vec<String>,
) {
    if let VerifyError::MissingHeader(name) = error {
        let expected: Vec<String> = keyrings
            .iter()
            .map(|keyring| {
                format!(
                    "{} ({})",
                    keyring.scheme().header_names().join(", "),
                    keyring.scheme().name()
                )
            })
            .collect();
        findings.push(format!(
            "the request has no {name} header; the signature files expect {}",
            expected.join(" or ")
        ));
        let carried: Vec<&str> = SCHEME_NAMES
            .iter()
            .filter_map(|name| Scheme::from_name(name))
            .filter(|scheme| headers.header(scheme.header_names()[0]).is_some())
            .filter(|scheme| !keyrings.iter().any(|k| k.scheme().name() == scheme.name()))
            .map(|scheme| scheme.name())
            .collect();
        findings.push(if carried.is_empty() {
            "was the webhook registered with another authentication method, or does a proxy \
             strip headers?"
                .to_owned()
        } else {
            format!(
                "the request carries the headers of {}: it was signed for another scheme; \
                 give the receiver that scheme's signature file",
                carried.join(" and ")
            )
        });
        return;
    }
    if matches!(error, VerifyError::MalformedSignature(_)) {
        explain_encoding(keyrings, headers, findings);
    }
    explain_secrets(keyrings, at_secs, findings);
    let signed_at = keyrings
        .iter()
        .find_map(|keyring| signed_timestamp(keyring.scheme(), headers));
    if let Some(signed_at) = signed_at {
        // Saturating: a capture may carry any i64 as its timestamp.
        let offset = at_secs.saturating_sub(signed_at);
        if matches!(
            error,
            VerifyError::TimestampTooOld { .. } | VerifyError::TimestampTooNew { .. }
        ) {
            findings.push(format!(
                "signed at {} and received at {}: {} s {}",
                format_iso_seconds(signed_at),
                format_iso_seconds(at_secs),
                offset.unsigned_abs(),
                if offset >= 0 {
                    "later"
                } else {
                    "earlier (the sender's clock runs ahead)"
                }
            ));
            // Judge the signature itself as of the signing time, so the person knows whether
            // the time is the only problem.
            let at_signing = keyrings
                .iter()
                .any(|keyring| keyring.verify_at(headers, body, signed_at).is_ok());
            findings.push(if at_signing {
                "the signature itself is valid: only the time is off (a replay of an old \
                 capture, a queue that held the request, or a clock out of sync)"
                    .to_owned()
            } else {
                "the signature does not match either, even at the signing time".to_owned()
            });
            return;
        }
    }
    if matches!(
        error,
        VerifyError::NoMatchingSignature | VerifyError::SecretExpired
    ) {
        explain_other_reading(keyrings, headers, body, at_secs, findings);
        explain_body_shape(keyrings, headers, body, at_secs, findings);
    }
}

/// A body-HMAC signature that does not parse in the configured encoding: whether it is the
/// other encoding, or lacks or has another prefix.
fn explain_encoding<H: Headers + ?Sized>(
    keyrings: &[Keyring],
    headers: &H,
    findings: &mut Vec<String>,
) {
    for keyring in keyrings {
        let format: &BodyHmacFormat = match keyring.scheme() {
            Scheme::BodyHmacSha256(format) => format,
            Scheme::Github => &crate::scheme::github::FORMAT,
            Scheme::Shopify => &crate::scheme::shopify::FORMAT,
            _ => continue,
        };
        let Some(value) = headers.header(&format.header) else {
            continue;
        };
        let Some(entry) = value
            .split(|b| *b == b',' || *b == b' ')
            .find(|e| !e.is_empty())
        else {
            continue;
        };
        let decodes = |bytes: &[u8]| {
            decode_tag(bytes, Encoding::Hex).is_some()
                || decode_tag(bytes, Encoding::Base64).is_some()
        };
        let bare = match entry.strip_prefix(format.prefix.as_bytes()) {
            Some(bare) => bare,
            None => match entry.iter().take(12).position(|b| *b == b'=') {
                // Base64 has '=' only as final padding, so an early '=' ends a prefix.
                Some(at) if decodes(&entry[at + 1..]) => {
                    findings.push(format!(
                        "{} starts with {:?}, not the configured prefix {:?}",
                        format.header,
                        String::from_utf8_lossy(&entry[..=at]),
                        format.prefix
                    ));
                    &entry[at + 1..]
                }
                _ => {
                    findings.push(format!(
                        "{} lacks the configured prefix {:?}",
                        format.header, format.prefix
                    ));
                    entry
                }
            },
        };
        for other in [Encoding::Hex, Encoding::Base64] {
            if other != format.encoding && decode_tag(bare, other).is_some() {
                findings.push(format!(
                    "{} is {} but the signature file says {}: fix \"encoding\" in the file (or the sender)",
                    format.header,
                    other.as_str(),
                    format.encoding.as_str()
                ));
            }
        }
    }
}

/// Whether the signature matches the secret read the other way: a `whsec_` text used as
/// plain bytes (Stripe's way) or decoded from base64 (Standard Webhooks' way). That is a
/// secret of another scheme, or a file of the wrong scheme.
fn explain_other_reading<H: Headers + ?Sized>(
    keyrings: &[Keyring],
    headers: &H,
    body: &[u8],
    at_secs: i64,
    findings: &mut Vec<String>,
) {
    for keyring in keyrings {
        let entries: Vec<KeyEntry> = keyring
            .entries()
            .iter()
            .filter_map(|entry| {
                let other = entry.key.hmac()?.other_reading()?;
                Some(KeyEntry {
                    key: Key::Hmac(other),
                    ..entry.clone()
                })
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        let other = Keyring::new(keyring.scheme().clone(), entries);
        if other.verify_at(headers, body, at_secs).is_ok() {
            let decoded_here = keyring.entries().iter().any(|entry| {
                entry
                    .key
                    .hmac()
                    .is_some_and(SigningSecret::is_base64_decoded)
            });
            findings.push(format!(
                "the signature matches the secret read another way: the sender {} while {} \
                 {}; it treats the secret as another scheme's (check the file's \"scheme\")",
                if decoded_here {
                    "uses the whsec_ text byte for byte (as Stripe does)"
                } else {
                    "base64-decodes the whsec_ text (as Standard Webhooks and Svix do)"
                },
                keyring.scheme().name(),
                if decoded_here {
                    "base64-decodes it"
                } else {
                    "uses it byte for byte"
                },
            ));
        }
    }
}

/// Whether any secret was in force at the receive time, and which were not.
fn explain_secrets(keyrings: &[Keyring], at_secs: i64, findings: &mut Vec<String>) {
    let entries: Vec<_> = keyrings.iter().flat_map(Keyring::entries).collect();
    let in_force = entries
        .iter()
        .filter(|entry| entry.in_force_at(at_secs))
        .count();
    if in_force == 0 {
        findings.push(format!(
            "no secret of the keyring was in force at {}: every one had expired (rotate, or \
             add the current secret's signature file)",
            format_iso_seconds(at_secs)
        ));
    }
    for (index, entry) in entries.iter().enumerate() {
        if let Some(expired) = entry.expires_at.filter(|expiry| *expiry <= at_secs) {
            findings.push(format!(
                "secret #{index} expired at {}, before the request was received",
                format_iso_seconds(expired)
            ));
        }
        if let Some(created) = entry.created_at.filter(|created| *created > at_secs) {
            findings.push(format!(
                "secret #{index} was created at {}, after the request was received: the sender \
                 could not have used it",
                format_iso_seconds(created)
            ));
        }
    }
}

/// When the body is JSON, whether it looks re-serialised: whitespace or key order other than
/// the compact, documented-order form the sender writes, and whether that form verifies.
fn explain_body_shape<H: Headers + ?Sized>(
    keyrings: &[Keyring],
    headers: &H,
    body: &[u8],
    at_secs: i64,
    findings: &mut Vec<String>,
) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        findings.push(
            "the body is not JSON, so it cannot be what the sender signed unless the sender \
             signed a non-JSON body"
                .to_owned(),
        );
        return;
    };
    let compact = serde_json::to_vec(&value).unwrap_or_default();
    let whitespace_differs = compact != body;
    let ordered = sender_order(&value);
    let order_differs = ordered != value_key_orders(&value);
    if whitespace_differs {
        findings.push(
            "the body's whitespace differs from the compact form the sender writes: it looks \
             pretty-printed or re-serialised after signing"
                .to_owned(),
        );
    }
    if order_differs {
        findings.push(
            "the body's keys are not in the order the sender writes (accountId, events; eventId, \
             eventName, timestamp, eventInfo, data): it looks re-serialised, e.g. with sorted keys"
                .to_owned(),
        );
    }
    if whitespace_differs || order_differs {
        let rebuilt = rebuild_in_sender_order(&value);
        let verifies = keyrings
            .iter()
            .any(|keyring| keyring.verify_at(headers, &rebuilt, at_secs).is_ok());
        if verifies {
            findings.push(
                "the body rewritten in the sender's form DOES verify: something between the \
                 sender and this capture re-serialised the JSON; verify the raw bytes instead"
                    .to_owned(),
            );
        }
    } else {
        findings.push(
            "the body is in the sender's compact form, so it was not re-serialised: the secret \
             differs from the sender's, or the body was changed"
                .to_owned(),
        );
    }
}

/// The documented key order of the envelope and of each event.
const ENVELOPE_ORDER: &[&str] = &["accountId", "events"];
const EVENT_ORDER: &[&str] = &["eventId", "eventName", "timestamp", "eventInfo", "data"];

/// The key orders of the envelope, its events and their `data`, as found.
fn value_key_orders(value: &Value) -> Vec<Vec<String>> {
    let mut orders = vec![keys(value)];
    for event in events(value) {
        orders.push(keys(event));
        orders.push(event.get("data").map(keys).unwrap_or_default());
    }
    orders
}

/// The same keys, each object's ordered as the sender writes them.
fn sender_order(value: &Value) -> Vec<Vec<String>> {
    let mut orders = vec![ordered_keys(value, ENVELOPE_ORDER)];
    for event in events(value) {
        orders.push(ordered_keys(event, EVENT_ORDER));
        let data_order = data_order(event);
        orders.push(
            event
                .get("data")
                .map(|data| ordered_keys(data, &data_order))
                .unwrap_or_default(),
        );
    }
    orders
}

fn events(value: &Value) -> impl Iterator<Item = &Value> {
    value
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The catalogue's order of the `data` fields of this event's name (empty when unknown).
fn data_order(event: &Value) -> Vec<&'static str> {
    event
        .get("eventName")
        .and_then(Value::as_str)
        .and_then(lookup)
        .map(|kind| kind.fields.iter().map(|field| field.json_name()).collect())
        .unwrap_or_default()
}

fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default()
}

/// Known keys first in the documented order, then the others as they came.
fn ordered_keys(value: &Value, order: &[&str]) -> Vec<String> {
    let found = keys(value);
    let mut ordered: Vec<String> = order
        .iter()
        .filter(|key| found.iter().any(|f| f == *key))
        .map(|key| (*key).to_owned())
        .collect();
    ordered.extend(
        found
            .into_iter()
            .filter(|key| !order.contains(&key.as_str())),
    );
    ordered
}

/// The body as the sender would have written it: compact, keys in the documented order,
/// `data` fields in the catalogue's order.
fn rebuild_in_sender_order(value: &Value) -> Vec<u8> {
    fn reorder(value: &Value, order: &[&str]) -> Value {
        let Some(object) = value.as_object() else {
            return value.clone();
        };
        let mut rebuilt = serde_json::Map::new();
        for key in ordered_keys(value, order) {
            if let Some(field) = object.get(&key) {
                rebuilt.insert(key, field.clone());
            }
        }
        Value::Object(rebuilt)
    }
    let mut envelope = reorder(value, ENVELOPE_ORDER);
    if let Some(Value::Array(events)) = envelope.get_mut("events") {
        for event in events.iter_mut() {
            let data_order = data_order(event);
            *event = reorder(event, EVENT_ORDER);
            if let Some(data) = event.get_mut("data") {
                *data = reorder(data, &data_order);
            }
        }
    }
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

    const NOW: i64 = 1_795_000_000;
    const BODY: &[u8] = br#"{"accountId":1010,"events":[{"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z","data":{"userId":1,"loId":"course:1","loType":"course"}}]}"#;

    fn secret(fill: u8) -> SigningSecret {
        SigningSecret::from_bytes(vec![fill; 32]).expect("valid")
    }

    /// One case: the receiver's secrets, the headers as signed (of `BODY` at `signed_at`, by
    /// secret 9), the body as captured, the expected code and phrases of the findings.
    struct Case {
        name: &'static str,
        entries: Vec<KeyEntry>,
        signed_at: i64,
        edit_headers: fn(&mut Vec<(String, String)>),
        captured: Vec<u8>,
        code: &'static str,
        phrases: &'static [&'static str],
    }

    fn case(name: &'static str, code: &'static str, phrases: &'static [&'static str]) -> Case {
        Case {
            name,
            entries: vec![KeyEntry::new(secret(9))],
            signed_at: NOW,
            edit_headers: |_| {},
            captured: BODY.to_vec(),
            code,
            phrases,
        }
    }

    fn set(headers: &mut [(String, String)], name: &str, value: &str) {
        for (_, kept) in headers.iter_mut().filter(|(n, _)| n == name) {
            *kept = value.to_owned();
        }
    }

    #[test]
    fn each_refusal_is_explained() {
        let value: Value = serde_json::from_slice(BODY).expect("json");
        let pretty = serde_json::to_vec_pretty(&value).expect("pretty");
        let sorted_envelope = br#"{"accountId":1010,"events":[{"data":{"userId":1,"loId":"course:1","loType":"course"},"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z"}]}"#;
        let sorted_everywhere = br#"{"accountId":1010,"events":[{"data":{"loId":"course:1","loType":"course","userId":1},"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z"}]}"#;
        let cases = [
            case("accepted", "accepted", &[]),
            Case {
                signed_at: NOW - 3600,
                ..case(
                    "stale",
                    "timestamp_too_old:3600",
                    &["3600 s later", "only the time is off"],
                )
            },
            Case {
                captured: pretty,
                ..case(
                    "pretty",
                    "no_matching_signature",
                    &["whitespace differs", "DOES verify"],
                )
            },
            Case {
                captured: sorted_envelope.to_vec(),
                ..case(
                    "sorted keys",
                    "no_matching_signature",
                    &["not in the order", "DOES verify"],
                )
            },
            Case {
                captured: sorted_everywhere.to_vec(),
                ..case(
                    "sorted data too",
                    "no_matching_signature",
                    &["not in the order", "DOES verify"],
                )
            },
            Case {
                entries: vec![KeyEntry::new(secret(1))],
                ..case("wrong secret", "no_matching_signature", &["secret differs"])
            },
            Case {
                entries: vec![KeyEntry {
                    expires_at: Some(NOW - 10),
                    ..KeyEntry::new(secret(9))
                }],
                ..case(
                    "expired",
                    "secret_expired",
                    &[
                        "no secret of the keyring was in force",
                        "secret #0 expired at",
                    ],
                )
            },
            Case {
                entries: vec![KeyEntry {
                    created_at: Some(NOW + 60),
                    ..KeyEntry::new(secret(1))
                }],
                ..case(
                    "created after",
                    "no_matching_signature",
                    &["after the request was received"],
                )
            },
            Case {
                signed_at: NOW + 3600,
                ..case(
                    "sender clock ahead",
                    "timestamp_too_new:3600",
                    &["3600 s earlier", "only the time is off"],
                )
            },
            Case {
                edit_headers: |headers| set(headers, WEBHOOK_TIMESTAMP, "soon"),
                ..case(
                    "timestamp not a number",
                    "invalid_timestamp",
                    &["not a whole number"],
                )
            },
            Case {
                // The extreme timestamps a hostile capture can carry: no overflow.
                edit_headers: |headers| set(headers, WEBHOOK_TIMESTAMP, "-9223372036854775808"),
                ..case("timestamp at i64::MIN", "invalid_timestamp", &[])
            },
            Case {
                edit_headers: |headers| set(headers, WEBHOOK_SIGNATURE, "v1,AAAA"),
                ..case(
                    "signature cut short",
                    "malformed_signature",
                    &["base64 of 32 bytes"],
                )
            },
            Case {
                edit_headers: |headers| headers.retain(|(name, _)| name != WEBHOOK_SIGNATURE),
                ..case(
                    "missing header",
                    "missing_header:webhook-signature",
                    &["another authentication method"],
                )
            },
        ];
        for case in cases {
            let authentication =
                Authentication::Signature(vec![Keyring::new(Scheme::default(), case.entries)]);
            let mut headers =
                Keyring::single(secret(9)).sign_headers("msg_1", case.signed_at, BODY);
            (case.edit_headers)(&mut headers);
            let diagnosis = diagnose_at(&authentication, &headers, &case.captured, NOW);
            assert_eq!(diagnosis.reason_code(), case.code, "{}", case.name);
            if case.code == "accepted" {
                assert!(diagnosis.findings.is_empty(), "{}", case.name);
            }
            for phrase in case.phrases {
                assert!(
                    diagnosis
                        .findings
                        .iter()
                        .any(|finding| finding.contains(phrase)),
                    "{}: no {phrase:?} in {:#?}",
                    case.name,
                    diagnosis.findings
                );
            }
        }
    }
}
