//! The baseline server of `bench/run` ([`bench::serve_plain`]) as a process of its own, so it
//! can be pinned to a core like the receiver.
//!
//! Prints `listening on http://ADDR/` (like `receiver`) and serves until killed.

use std::io::Write as _;

use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    // Worker threads follow the CPUs this process may use, so `taskset` limits it as it
    // limits the receiver.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{}/", listener.local_addr()?)?;
        stdout.flush()?;
        drop(stdout);
        bench::serve_plain(listener).await;
        anyhow::Ok(())
    })
}
