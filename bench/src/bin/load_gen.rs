//! The load generator of `bench/run`, in a process of its own so it can be pinned to a core
//! away from the server under test. Prints one JSON line with what it measured.
//!
//! ```sh
//! load_gen closed ADDR SIGNATURE_FILE RUN SECONDS CONNECTIONS
//! load_gen open   ADDR SIGNATURE_FILE RUN SECONDS CONNECTIONS RATE
//! ```
//!
//! Every request is one ~1 KiB event signed with the secret of SIGNATURE_FILE (Standard
//! Webhooks); RUN makes the event ids unique across runs on the same store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bench::Measured;

/// Time the closed loop runs before measuring, so connections and caches are warm.
const WARMUP: Duration = Duration::from_millis(500);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, signature_file, run, seconds, connections, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: load_gen closed|open ADDR SIGNATURE_FILE RUN SECONDS CONNECTIONS [RATE]"
        );
    };
    let addr = addr.parse().context("ADDR")?;
    let duration = Duration::from_secs_f64(seconds.parse().context("SECONDS")?);
    let connections: usize = connections.parse().context("CONNECTIONS")?;
    let file = std::fs::read(signature_file)
        .with_context(|| format!("reading signature file {signature_file}"))?;
    let keyring = Arc::new(verify::SignatureFile::from_json(&file)?.keyring()?);
    // One thread: `bench/run` gives the generator one core; more threads would only contend.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured: Measured = runtime.block_on(async {
        match (mode.as_str(), rest) {
            ("closed", []) => {
                bench::closed_loop(addr, keyring, run, connections, WARMUP, duration).await
            }
            ("open", [rate]) => {
                let rate: f64 = rate.parse().context("RATE")?;
                bench::open_loop(addr, keyring, run, rate, connections, duration).await
            }
            _ => anyhow::bail!("mode is closed (no RATE) or open RATE"),
        }
    })?;
    println!(
        "{}",
        serde_json::json!({
            "rate": measured.rate(),
            "ok": measured.ok,
            "failed": measured.failed,
            "seconds": measured.seconds,
            "p50_ms": measured.percentile_ms(0.50),
            "p99_ms": measured.percentile_ms(0.99),
        })
    );
    Ok(())
}
