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

use base64::Engine as _;
use bench::SCHEME_FIGURES;
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

/// The sizes the scheme comparison runs at.
const SCHEME_SIZES: &[(&str, usize)] = &[("1KiB", 1024), ("64KiB", 65_536)];

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

/// A measured operation, boxed so one figure's two sides run through the same call path.
type Operation<'a> = Box<dyn FnMut() + 'a>;

/// The two sides of one scheme figure at one size.
fn scheme_operations<'a>(
    ours_id: &str,
    body: &'a [u8],
    now: i64,
    ed25519: &'a Ed25519Fixture,
) -> (Operation<'a>, Operation<'a>) {
    use verify::{KeyEntry, Scheme};
    let timestamp = now.to_string();
    match ours_id {
        "ours/v1a_sign" => (
            Box::new(move || {
                black_box(ed25519.signing.sign_headers(MSG_ID, now, black_box(body)));
            }),
            Box::new(move || {
                black_box(ed25519.pair.sign(black_box(&ed25519.message)));
            }),
        ),
        "ours/v1a_verify" => {
            let headers = header_map(&ed25519.signing.sign_headers(MSG_ID, now, body));
            let signature = ed25519.pair.sign(&ed25519.message);
            (
                Box::new(move || {
                    ed25519
                        .receiving
                        .verify_at(black_box(&headers), black_box(body), now)
                        .expect("verifies");
                }),
                Box::new(move || {
                    ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ED25519,
                        &ed25519.public,
                    )
                    .verify(black_box(&ed25519.message), black_box(signature.as_ref()))
                    .expect("raw verifies");
                }),
            )
        }
        _ => {
            let scheme_name = ours_id.trim_start_matches("ours/");
            let scheme = Scheme::from_name(scheme_name).expect("known scheme");
            let secret = scheme.generate_secret();
            let key = secret.expose_key_bytes().to_vec();
            let keyring = Keyring::new(scheme, vec![KeyEntry::new(secret)]);
            let headers = header_map(&keyring.sign_headers(MSG_ID, now, body));
            let prefix = signed_prefix(scheme_name, &timestamp);
            (
                Box::new(move || {
                    keyring
                        .verify_at(black_box(&headers), black_box(body), now)
                        .expect("verifies");
                }),
                Box::new(move || {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
                    mac.update(black_box(&prefix));
                    mac.update(black_box(body));
                    black_box(mac.finalize().into_bytes());
                }),
            )
        }
    }
}

/// The Ed25519 key pair of the v1a figures, as `verify` holds it and as raw `ring` does.
struct Ed25519Fixture {
    pair: ring::signature::Ed25519KeyPair,
    public: Vec<u8>,
    signing: Keyring,
    receiving: Keyring,
    /// `id.timestamp.body`, what the raw crate signs and verifies.
    message: Vec<u8>,
}

impl Ed25519Fixture {
    fn new(body: &[u8], now: i64) -> Self {
        use ring::signature::{Ed25519KeyPair, KeyPair as _};
        let seed = [42u8; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
        let public = pair.public_key().as_ref().to_vec();
        let secret = verify::ed25519::SecretKey::parse(&format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode(seed)
        ))
        .expect("whsk_");
        let signing = Keyring::single(verify::Key::Ed25519Secret(secret));
        let receiving = Keyring::single(signing.entries()[0].key.for_receiver());
        let message = [format!("{MSG_ID}.{now}.").as_bytes(), body].concat();
        Self {
            pair,
            public,
            signing,
            receiving,
            message,
        }
    }
}

/// Per-iteration time of `operation` over `iterations` calls, in nanoseconds.
fn time_ns(operation: &mut Operation<'_>, iterations: u32) -> f64 {
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        operation();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// The figure measured interleaved: short rounds of ours then the baseline, back to back.
/// On a machine shared with other work, a round is slowed by whatever else runs then; the
/// fastest round of each side is the one least disturbed, so the figure is the ratio of the
/// two fastest rounds (with the median of the per-round ratios kept as a check). Gives
/// (ours ns, baseline ns, ratio of fastest, median per-round ratio).
fn interleaved(
    ours: &mut Operation<'_>,
    baseline: &mut Operation<'_>,
    rounds: usize,
) -> (f64, f64, f64, f64) {
    // About half a millisecond per side and round.
    let single = time_ns(baseline, 3).max(1.0);
    let iterations = ((5e5 / single) as u32).clamp(1, 10_000);
    let (mut fastest_ours, mut fastest_baseline) = (f64::INFINITY, f64::INFINITY);
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let o = time_ns(ours, iterations);
        let b = time_ns(baseline, iterations);
        fastest_ours = fastest_ours.min(o);
        fastest_baseline = fastest_baseline.min(b);
        ratios.push(o / b);
    }
    ratios.sort_by(f64::total_cmp);
    let median_ratio = ratios[ratios.len() / 2];
    (
        fastest_ours,
        fastest_baseline,
        fastest_ours / fastest_baseline,
        median_ratio,
    )
}

/// Criterion and the interleaved measurement of every scheme figure; gives the interleaved
/// figures as JSON for `perf_report`.
fn measure_schemes(criterion: &mut Criterion, rounds: usize) -> Vec<serde_json::Value> {
    let mut figures = Vec::new();
    for (label, size) in SCHEME_SIZES {
        let body = body(*size);
        let now = verify::unix_now();
        let ed25519 = Ed25519Fixture::new(&body, now);
        let mut group = criterion.benchmark_group(format!("schemes_{label}"));
        group.throughput(Throughput::Bytes(*size as u64));
        for (figure, ours_id, baseline_id) in SCHEME_FIGURES {
            let (mut ours, mut baseline) = scheme_operations(ours_id, &body, now, &ed25519);
            for (id, operation) in [(ours_id, &mut ours), (baseline_id, &mut baseline)] {
                let (function, parameter) = id.split_once('/').expect("function/parameter");
                group.bench_function(BenchmarkId::new(function, parameter), |bench| {
                    bench.iter(&mut *operation)
                });
            }
            let (ours_ns, baseline_ns, ratio, median_ratio) =
                interleaved(&mut ours, &mut baseline, rounds);
            figures.push(serde_json::json!({
                "figure": figure, "body": label, "ours_ns": ours_ns,
                "baseline_ns": baseline_ns, "ratio": ratio,
                "median_round_ratio": median_ratio, "rounds": rounds,
            }));
        }
        group.finish();
    }
    figures
}

fn secret_key() -> Vec<u8> {
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
    let schemes = measure_schemes(&mut criterion, if quick { 101 } else { 401 });
    criterion.final_summary();
    // perf_report reads the interleaved figures from here (bench/run clears the directory).
    std::fs::create_dir_all(&output).expect("criterion directory");
    std::fs::write(
        output.join(bench::SCHEMES_FILE),
        serde_json::to_vec_pretty(&schemes).expect("JSON"),
    )
    .expect("writing the scheme figures");

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

    println!(
        "\n| scheme figure | body | ours (fastest round) | baseline (fastest round) | ours / baseline (goal <= {GOAL_RATIO}) | median per-round ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for figure in &schemes {
        let ratio = figure["ratio"].as_f64().unwrap_or(f64::NAN);
        let met = if ratio <= GOAL_RATIO { "met" } else { "missed" };
        println!(
            "| {} | {} | {:.0} ns | {:.0} ns | {ratio:.3} ({met}) | {:.3} |",
            figure["figure"].as_str().unwrap_or(""),
            figure["body"].as_str().unwrap_or(""),
            figure["ours_ns"].as_f64().unwrap_or(f64::NAN),
            figure["baseline_ns"].as_f64().unwrap_or(f64::NAN),
            figure["median_round_ratio"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
