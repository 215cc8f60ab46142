//! Running the sender for months (SPEC section 9, sender part), with real processes: an outage
//! recovered (`deliveries recover` / `resend`, `webhooks activate`), the operator told
//! (notifications, also across a SIGKILL and with several workers on PostgreSQL), `/metrics`
//! read by Prometheus's own parser, and the keep-alive connection a receiver closed while idle.

mod keep_alive;
