//! A watch on the raw bytes of a connection, for one thing hyper hides: a request that carries
//! both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper follows RFC 9112 section 6.1 for such a request: it drops `Content-Length`, reads the
//! body as chunked, and closes the connection afterwards. That defeats the desync, but the
//! request itself would still be served, and the issue asks for it to be refused. hyper gives
//! the service no trace of the dropped header, so [`WatchedIo`] counts the `Content-Length`
//! header lines that pass through the socket, and the service compares that count with the
//! requests that still show one: a chunked request arriving while the watch saw more
//! `Content-Length` lines than the service was shown is refused.
//!
//! [`StallBound`], on the socket itself, bounds how long a write may stall: a client that
//! stops reading its answers would otherwise keep its connection (and one of the capped slots)
//! for ever, since hyper has no write timeout and no read timer runs while it waits to write.
//!
//! The pattern is `\ncontent-length:` (any case): hyper also accepts header lines ended by a
//! bare LF, so the CR is not required. JSON bodies cannot hold a raw LF inside a string (and a
//! key is quoted), and chunk framing is hex digits, so bodies do not trip it; a pipelined
//! request read ahead of a chunked one can, and then the chunked one is refused: failing safe.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::wire_order::{HeadOrders, HeadTracker};

const PATTERN: &[u8] = b"\ncontent-length:";

/// What the watch saw on one connection, shared with that connection's service.
#[derive(Debug, Default)]
pub(crate) struct ConnectionWatch {
    content_length_lines: AtomicU64,
    shown_to_service: AtomicU64,
    /// The header order of each request head, as it arrived ([`crate::wire_order`]).
    pub(crate) orders: HeadOrders,
}

impl ConnectionWatch {
    /// Called once per request. Returns `true` when the request is chunked and a
    /// `Content-Length` line came with it that hyper removed.
    pub(crate) fn request_is_ambiguous(&self, has_content_length: bool, is_chunked: bool) -> bool {
        if has_content_length {
            self.shown_to_service.fetch_add(1, Ordering::Relaxed);
        }
        is_chunked
            && (has_content_length
                || self.content_length_lines.load(Ordering::Relaxed)
                    > self.shown_to_service.load(Ordering::Relaxed))
    }
}

/// An I/O stream that counts `Content-Length` header lines as they are read and follows the
/// heads' header order ([`crate::wire_order`]). It sees the plain bytes (above TLS).
pub(crate) struct WatchedIo<T> {
    inner: T,
    watch: Arc<ConnectionWatch>,
    /// How many bytes of [`PATTERN`] the last bytes read have matched.
    matched: usize,
    /// Follows the framing to record each head's header order.
    heads: HeadTracker,
}

impl<T> WatchedIo<T> {
    pub(crate) fn new(inner: T, watch: Arc<ConnectionWatch>) -> Self {
        Self {
            inner,
            watch,
            matched: 0,
            heads: HeadTracker::default(),
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        // Every read of every body passes here. With no partial match pending, only a `\n`
        // can start one, so jump to the next `\n` (memchr: a vectorised search) instead of
        // looking at every byte; a request head has one every few dozen bytes, a compact
        // body none.
        while !bytes.is_empty() {
            if self.matched == 0 {
                match memchr::memchr(b'\n', bytes) {
                    Some(at) => bytes = &bytes[at..],
                    None => return,
                }
            }
            let byte = bytes[0].to_ascii_lowercase();
            bytes = &bytes[1..];
            if byte == PATTERN[self.matched] {
                self.matched += 1;
                if self.matched == PATTERN.len() {
                    self.watch
                        .content_length_lines
                        .fetch_add(1, Ordering::Relaxed);
                    self.matched = 0;
                }
            } else {
                // `\n` occurs only at the start of the pattern, so a mismatch restarts there.
                self.matched = usize::from(byte == b'\n');
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            this.scan(read);
            this.heads.feed(read, &this.watch.orders);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The socket itself (under TLS when there is TLS, so it sees real progress), failing any
/// write, flush or shutdown that makes no progress for `timeout`: a client that stops reading
/// would otherwise keep its connection, and one of the capped slots, for ever.
pub(crate) struct StallBound<T> {
    inner: T,
    timeout: Duration,
    /// Armed when a write found the socket full; disarmed by any progress.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallBound<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
        }
    }

    /// Passes a write's result through, turning a wait longer than the timeout into an error
    /// that ends the connection.
    fn bound<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stall = None;
            return polled;
        }
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no bytes of its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallBound<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallBound<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bound(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.bound(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bound(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bound(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(chunks: &[&[u8]]) -> u64 {
        let watch = Arc::new(ConnectionWatch::default());
        let mut io = WatchedIo::new((), Arc::clone(&watch));
        for chunk in chunks {
            io.scan(chunk);
        }
        watch.content_length_lines.load(Ordering::Relaxed)
    }

    #[test]
    fn counts_header_lines_across_reads_in_any_case() {
        assert_eq!(
            lines_in(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"]),
            1
        );
        assert_eq!(
            lines_in(&[b"POST / HTTP/1.1\r\nCONTENT-", b"LENGTH: 5\r\n"]),
            1
        );
        assert_eq!(
            lines_in(&[b"POST / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 5\n\n"]),
            1,
            "bare LF line ends, which hyper accepts too"
        );
        assert_eq!(
            lines_in(&[b"POST / HTTP/1.1\r", b"\r\ncontent-length:1\r\n"]),
            1
        );
        assert_eq!(lines_in(&[b"{\"content-length:\":1}"]), 0);
        assert_eq!(lines_in(&[b"x: content-length:\r\n"]), 0);
    }

    #[test]
    fn finds_lines_after_long_runs_without_carriage_returns() {
        // The skip to the next LF must not hide a pattern at any offset, nor one split across reads.
        for padding in [0, 1, 63, 64, 65, 127, 128, 200] {
            let mut bytes = vec![b'x'; padding];
            bytes.extend_from_slice(b"\r\nContent-Length: 5\r\n");
            bytes.extend(std::iter::repeat_n(b'y', 150));
            assert_eq!(lines_in(&[&bytes]), 1, "padding {padding}");
            let split = padding + 5;
            assert_eq!(
                lines_in(&[&bytes[..split], &bytes[split..]]),
                1,
                "split at {split}"
            );
        }
        let mut two = vec![b'x'; 100];
        two.extend_from_slice(b"\r\ncontent-length:1");
        two.extend(std::iter::repeat_n(b'z', 100));
        two.extend_from_slice(b"\r\nCONTENT-LENGTH:2");
        assert_eq!(lines_in(&[&two]), 2);
    }

    #[test]
    fn ambiguity_needs_a_chunked_request_and_a_hidden_length() {
        let watch = ConnectionWatch::default();
        watch.content_length_lines.store(1, Ordering::Relaxed);
        assert!(
            !watch.request_is_ambiguous(true, false),
            "plain length request"
        );
        assert!(
            !watch.request_is_ambiguous(false, true),
            "plain chunked request"
        );
        watch.content_length_lines.store(2, Ordering::Relaxed);
        assert!(
            watch.request_is_ambiguous(false, true),
            "length removed by hyper"
        );
    }
}
