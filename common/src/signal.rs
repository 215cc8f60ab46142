//! The stop signals of the long-running commands (`receiver listen`, `sender run`, `sender
//! trigger`).

use anyhow::Context as _;

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either
/// (logging which one came).
///
/// Installing at the call, not at the first poll, matters: a signal sent right after a program
/// says it is ready must stop it gracefully, not kill it with the default action.
///
/// # Errors
/// The operating system refused to install a handler.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
