//! The flags `sender run` and `sender admin` share for running unattended (SPEC section 9):
//! `--metrics ADDR` (`/metrics` and `/healthz` on a listener of their own) and `--notify-url
//! URL [--notify-signature-file FILE]` (the operator's notifications), and what starting them
//! makes: the engine's [`Reporting`], the [`Monitoring`] the admin pages also answer with, the
//! metrics listener and the notifier, stopped with the worker.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use common::target_url::TargetUrl;
use tokio::sync::watch;

use super::signature_file::read_signature_file;
use crate::config::DeliveryConfig;
use crate::delivery::Reporting;
use crate::monitoring::Monitoring;
use crate::notify::{Notifier, NotifyConfig};
use crate::store::State;
use crate::UsageError;

#[derive(Debug, Clone, Args)]
pub(super) struct OperationsArgs {
    /// Serve /metrics (Prometheus text) and /healthz on this address, without the admin
    /// token: bind it where only the scraper reaches (e.g. 127.0.0.1:9464).
    #[arg(long, env = "SENDER_METRICS", value_name = "ADDR")]
    metrics: Option<String>,
    /// POST the operator a Standard Webhooks message when a webhook fails 5 times in a row
    /// (webhook.failing), is disabled at the end of retention (webhook.disabled) and answers
    /// 2xx again (webhook.recovered). Sent at least once, restarts included.
    #[arg(long, env = "SENDER_NOTIFY_URL", value_name = "URL")]
    notify_url: Option<TargetUrl>,
    /// Sign the notifications with this signature file (scheme standard-webhooks), which the
    /// operator's endpoint verifies with any Standard Webhooks library.
    #[arg(long, env = "SENDER_NOTIFY_SIGNATURE_FILE", value_name = "FILE")]
    notify_signature_file: Option<PathBuf>,
}

/// The operations side of a running `run` or `admin`.
pub(super) struct Operations {
    /// For the engine: the attempt counters, and the notifier's wake-up when notifications
    /// are on.
    pub reporting: Reporting,
    /// `/metrics` and `/healthz`.
    pub monitoring: Arc<Monitoring>,
    /// The metrics listener and the notifier, until the stop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// The flags checked and `--metrics` bound, before anything is printed or started.
pub(super) struct Prepared {
    notify: Option<NotifyConfig>,
    metrics: Option<tokio::net::TcpListener>,
}

impl OperationsArgs {
    /// Reads the signature file and binds `--metrics`.
    ///
    /// # Errors
    /// A [`UsageError`] for a signature file without `--notify-url` (clap's `requires` does
    /// not see a config file's values), an unreadable file or one of another scheme, or a
    /// `--metrics` address that cannot be bound.
    pub(super) async fn prepare(&self) -> anyhow::Result<Prepared> {
        let notify = self.notify_config()?;
        let metrics = match &self.metrics {
            Some(address) => Some(
                common::web::bind("--metrics", address, true)
                    .await
                    .map_err(|error| UsageError(format!("{error:#}")))?,
            ),
            None => None,
        };
        Ok(Prepared { notify, metrics })
    }

    fn notify_config(&self) -> Result<Option<NotifyConfig>, UsageError> {
        let Some(url) = self.notify_url.clone() else {
            return match &self.notify_signature_file {
                Some(_) => Err(UsageError(
                    "--notify-signature-file needs --notify-url: where should the signed notifications go?".into(),
                )),
                None => Ok(None),
            };
        };
        let keyring = match &self.notify_signature_file {
            None => None,
            Some(path) => {
                let file = read_signature_file(path)
                    .map_err(|error| UsageError(format!("--notify-signature-file: {error:#}")))?;
                let keyring = file
                    .keyring()
                    .map_err(|error| UsageError(format!("--notify-signature-file: {error}")))?;
                if !matches!(keyring.scheme(), verify::Scheme::StandardWebhooks { .. }) {
                    return Err(UsageError(format!(
                        "--notify-signature-file {}: its scheme is {:?}; notifications are Standard Webhooks messages, so give a file of scheme standard-webhooks",
                        path.display(),
                        file.scheme
                    )));
                }
                Some(keyring)
            }
        };
        Ok(Some(NotifyConfig { url, keyring }))
    }
}

impl Prepared {
    /// Starts the metrics listener (saying where on standard output) and the notifier.
    ///
    /// # Errors
    /// The listener's address cannot be read.
    pub(super) fn start(
        self,
        state: Arc<dyn State>,
        config: &DeliveryConfig,
    ) -> anyhow::Result<Operations> {
        let monitoring = Monitoring::new(state.clone());
        let (stop, stopped) = watch::channel(false);
        let wait = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let mut tasks = Vec::new();
        if let Some(listener) = self.metrics {
            let local = listener.local_addr()?;
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "metrics on http://{local}/metrics");
            let _ = stdout.flush();
            tasks.push(tokio::spawn(crate::monitoring::serve(
                listener,
                monitoring.clone(),
                wait(stopped.clone()),
            )));
        }
        let mut reporting = Reporting {
            counters: Some(monitoring.counters()),
            notifications: None,
        };
        if let Some(notify) = self.notify {
            let wake = Arc::new(tokio::sync::Notify::new());
            reporting.notifications = Some(wake.clone());
            let notifier = Notifier::new(state, notify, config);
            tasks.push(tokio::spawn(notifier.run(wake, wait(stopped))));
        }
        Ok(Operations {
            reporting,
            monitoring,
            tasks,
            stop,
        })
    }
}

impl Operations {
    /// Stops the metrics listener and lets the notifier finish the send under way.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
