//! verify versus raw HMAC-SHA256 of the same bytes, and versus the `standardwebhooks` crate, at
//! 1 KiB, 64 KiB and 1 MiB bodies. After criterion has measured, prints each ratio against the
//! raw HMAC measured in the same run, and whether the goal (at most 1.1 times) is met.
//!
//! Run: `cd bench && cargo bench --bench verify` (add `-- --quick` for a shorter run).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
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
}
