//! verify versus raw HMAC-SHA256 of the same bytes, and versus the `standardwebhooks` crate, at
//! 1 KiB, 64 KiB and 1 MiB bodies. After criterion has measured, prints each ratio against the
//! raw HMAC measured in the same run, and whether the goal (at most 1.1 times) is met.
//!
//! Then every other scheme at 1 KiB and 64 KiB: each HMAC preset (svix, github, shopify,
//! stripe, slack) against raw HMAC-SHA256 of the same bytes it signs, and Standard Webhooks
//! `v1a` sign and verify against the raw Ed25519 of `ring` (the crate `verify` uses) over the
//! same message, all in the same run (goal: at most 1.1 times).
//!
//! Run: `cd bench && cargo bench --bench verify` (add `-- --quick` for a shorter run, or a
//! filter such as `-- schemes_` for the schemes alone).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use base64::Engine as _;
use bench::SCHEME_FIGURES;
use verify::{Keyring, SigningSecret};

const SIZES: &[(&str, usize)] = &[("1KiB", 1024), ("64KiB", 65_536), ("1MiB", 1_048_576)];
const GOAL_RATIO: f64 = 1.1;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";

fn body(size: usize) -> Vec<u8> {
    // JSON-looking bytes, so nothing about the content favours one side.
    let unit =
        br#"{"eventId":"d5fb7071-10a9-46b2-9f9e-79dde346c052","eventName":"COURSE_ENROLLMENT"},"#;
    unit.iter().copied().cycle().take(size).collect()
}

fn measure(criterion: &mut Criterion) {
    let secret = SigningSecret::parse(SECRET).expect("valid secret");
    let key = secret_key();
    let keyring = Keyring::single(secret);
    let peer = standardwebhooks::Webhook::new(SECRET).expect("peer secret");
    #[cfg(feature = "svix")]
    let svix_peer = svix::webhooks::Webhook::new(SECRET).expect("svix secret");
    for (label, size) in SIZES {
        let body = body(*size);
        let now = verify::unix_now();
        let headers = keyring.sign_headers(MSG_ID, now, &body);
        let mut header_map = HeaderMap::new();
        for (name, value) in &headers {
            header_map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let mut group = criterion.benchmark_group(format!("verify_{label}"));
        group.throughput(Throughput::Bytes(*size as u64));
        group.bench_function(BenchmarkId::from_parameter("raw_hmac"), |bench| {
            bench.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes())
            })
        });
        group.bench_function(BenchmarkId::from_parameter("ours"), |bench| {
            bench.iter(|| {
                keyring
                    .verify_at(black_box(&header_map), black_box(&body), now)
                    .expect("verifies")
            })
        });
        group.bench_function(BenchmarkId::from_parameter("standardwebhooks"), |bench| {
            bench.iter(|| {
                peer.verify(black_box(&body), black_box(&header_map))
                    .expect("peer verifies")
            })
        });
        #[cfg(feature = "svix")]
        group.bench_function(BenchmarkId::from_parameter("svix"), |bench| {
            bench.iter(|| {
                svix_peer
                    .verify(black_box(&body), black_box(&header_map))
                    .expect("svix verifies")
            })
        });
        group.finish();
    }
}

/// The sizes the scheme comparison runs at.
const SCHEME_SIZES: &[(&str, usize)] = &[("1KiB", 1024), ("64KiB", 65_536)];
/// The HMAC presets, each with the bytes it signs before the body.
const PRESETS: &[&str] = &["svix", "github", "shopify", "stripe", "slack"];

/// What each preset signs before the body, given the timestamp text.
fn signed_prefix(scheme: &str, timestamp: &str) -> Vec<u8> {
    match scheme {
        "svix" => format!("{MSG_ID}.{timestamp}.").into_bytes(),
        "stripe" => format!("{timestamp}.").into_bytes(),
        "slack" => format!("v0:{timestamp}:").into_bytes(),
        _ => Vec::new(),
    }
}

fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

fn measure_schemes(criterion: &mut Criterion) {
    use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
    use verify::{KeyEntry, Scheme};

    let seed = [42u8; 32];
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
    let public = pair.public_key().as_ref().to_vec();
    let signing = Keyring::single(verify::Key::Ed25519Secret(
        verify::ed25519::SecretKey::parse(&format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode(seed)
        ))
        .expect("whsk_"),
    ));
    let receiving = Keyring::new(
        Scheme::default(),
        vec![KeyEntry::new(
            signing.entries()[0].key.for_receiver(),
        )],
    );
    for (label, size) in SCHEME_SIZES {
        let body = body(*size);
        let now = verify::unix_now();
        let timestamp = now.to_string();
        let mut group = criterion.benchmark_group(format!("schemes_{label}"));
        group.throughput(Throughput::Bytes(*size as u64));
        for scheme_name in PRESETS {
            let scheme = Scheme::from_name(scheme_name).expect("known scheme");
            let secret = scheme.generate_secret();
            let key = secret.expose_key_bytes().to_vec();
            let keyring = Keyring::new(scheme, vec![KeyEntry::new(secret)]);
            let headers = header_map(&keyring.sign_headers(MSG_ID, now, &body));
            let prefix = signed_prefix(scheme_name, &timestamp);
            group.bench_function(BenchmarkId::new("raw_hmac", scheme_name), |bench| {
                bench.iter(|| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
                    mac.update(black_box(&prefix));
                    mac.update(black_box(&body));
                    black_box(mac.finalize().into_bytes())
                })
            });
            group.bench_function(BenchmarkId::new("ours", scheme_name), |bench| {
                bench.iter(|| {
                    keyring
                        .verify_at(black_box(&headers), black_box(&body), now)
                        .expect("verifies")
                })
            });
        }
        // v1a: the raw crate signs and verifies the message `id.timestamp.body` already in
        // one buffer; ours parses the headers, assembles that message and encodes base64.
        let message = [format!("{MSG_ID}.{timestamp}.").as_bytes(), &body].concat();
        let signature = pair.sign(&message);
        let headers = header_map(&signing.sign_headers(MSG_ID, now, &body));
        group.bench_function(BenchmarkId::new("raw_ed25519", "sign"), |bench| {
            bench.iter(|| black_box(pair.sign(black_box(&message))))
        });
        group.bench_function(BenchmarkId::new("ours", "v1a_sign"), |bench| {
            bench.iter(|| black_box(signing.sign_headers(MSG_ID, now, black_box(&body))))
        });
        group.bench_function(BenchmarkId::new("raw_ed25519", "verify"), |bench| {
            bench.iter(|| {
                UnparsedPublicKey::new(&ED25519, &public)
                    .verify(black_box(&message), black_box(signature.as_ref()))
                    .expect("raw verifies")
            })
        });
        group.bench_function(BenchmarkId::new("ours", "v1a_verify"), |bench| {
            bench.iter(|| {
                receiving
                    .verify_at(black_box(&headers), black_box(&body), now)
                    .expect("verifies")
            })
        });
        group.finish();
    }
}

fn secret_key() -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("base64")
}

fn median_ns(directory: &Path, group: &str, function: &str) -> Option<f64> {
    let path = directory
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn main() {
    let output: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let quick = std::env::args().any(|arg| arg == "--quick");
    let mut criterion = Criterion::default()
        .output_directory(&output)
        .configure_from_args();
    if quick {
        criterion = criterion
            .warm_up_time(std::time::Duration::from_millis(300))
            .measurement_time(std::time::Duration::from_secs(1))
            .sample_size(20);
    }
    measure(&mut criterion);
    measure_schemes(&mut criterion);
    criterion.final_summary();

    println!(
        "\n| body | raw HMAC | ours | ours / raw (goal <= {GOAL_RATIO}) | standardwebhooks | its / raw | svix | its / raw |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, _) in SIZES {
        let group = format!("verify_{label}");
        let read = |name| median_ns(&output, &group, name).unwrap_or(f64::NAN);
        let (raw, ours) = (read("raw_hmac"), read("ours"));
        let (peer, svix) = (read("standardwebhooks"), read("svix"));
        let ratio = ours / raw;
        let met = if ratio <= GOAL_RATIO { "met" } else { "missed" };
        println!(
            "| {label} | {raw:.0} ns | {ours:.0} ns | {ratio:.3} ({met}) | {peer:.0} ns | {:.3} | {svix:.0} ns | {:.3} |",
            peer / raw,
            svix / raw
        );
    }

    println!("\n| scheme figure | body | ours | baseline | ours / baseline (goal <= {GOAL_RATIO}) |");
    println!("|---|---|---|---|---|");
    for (label, _) in SCHEME_SIZES {
        let group = format!("schemes_{label}");
        for (figure, ours, baseline) in SCHEME_FIGURES {
            let ours = median_ns(&output, &group, ours).unwrap_or(f64::NAN);
            let baseline = median_ns(&output, &group, baseline).unwrap_or(f64::NAN);
            let ratio = ours / baseline;
            let met = if ratio <= GOAL_RATIO { "met" } else { "missed" };
            println!("| {figure} | {label} | {ours:.0} ns | {baseline:.0} ns | {ratio:.3} ({met}) |");
        }
    }
}
