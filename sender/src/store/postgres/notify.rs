//! The wake-up of idle workers when another process enqueues: LISTEN/NOTIFY on one channel,
//! polling staying the fallback.

use std::sync::Arc;

use super::connection::PostgresState;

/// The channel an enqueue notifies, so idle workers look for work at once.
pub(super) const WORK_CHANNEL: &str = "sender_work";

/// Holds a connection that LISTENs on [`WORK_CHANNEL`] and raises `work` on each
/// notification, reconnecting (once a second) whenever the connection is lost. Polling
/// stays the fallback: a lost notification only delays work to the next poll.
async fn listen_for_work(config: tokio_postgres::Config, work: Arc<tokio::sync::Notify>) {
    loop {
        if let Ok((client, mut connection)) = config.connect(tokio_postgres::NoTls).await {
            let messages = async {
                while let Some(message) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => wake(&work),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            };
            tokio::pin!(messages);
            let listen = format!("LISTEN {WORK_CHANNEL}");
            let subscribed = tokio::select! {
                result = client.batch_execute(&listen) => result.is_ok(),
                () = &mut messages => false,
            };
            if subscribed {
                // Work may have come while no one listened.
                wake(&work);
                messages.await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Wakes every engine waiting for work now, and leaves a permit for one that is in the middle
/// of a pass: its pass may have read the queue before the enqueue committed, and without the
/// permit the work would wait for the next poll.
fn wake(work: &tokio::sync::Notify) {
    work.notify_waiters();
    work.notify_one();
}

/// [`Queue::work_signal`](crate::store::Queue::work_signal) in this store.
pub(super) fn work_signal(store: &PostgresState) -> Option<Arc<tokio::sync::Notify>> {
    // Only a delivery engine asks: short commands (`webhooks list`) never open the
    // listening connection.
    let runtime = store.runtime.as_ref()?;
    store.listening.get_or_init(|| {
        runtime.spawn(listen_for_work(
            store.url.config().clone(),
            store.work.clone(),
        ));
    });
    Some(store.work.clone())
}
