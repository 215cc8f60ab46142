//! The order in which a request's header lines arrived, which hyper does not keep: its
//! `HeaderMap` groups repeated names (wire order `a, b, a` iterates as `a, a, b`), while a
//! capture record must keep the headers "in their order and repeats" (SPEC section 4).
//!
//! [`HeadTracker`] follows the HTTP/1 framing of the bytes a connection reads (request heads,
//! `Content-Length` and chunked bodies) and queues, for each head, the header names in wire
//! order. The service takes one entry per request and uses it only when it names exactly the
//! headers hyper parsed ([`in_wire_order`]); anything unexpected (a line hyper would reject,
//! an oversized head) stops the tracking for the rest of the connection, and hyper's order is
//! used. So this can reorder the headers of a capture, never change them.

use std::collections::VecDeque;
use std::sync::Mutex;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Longest head followed; hyper refuses longer ones anyway.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bytes of a line kept to read a header name or a framing value; a line kept whole is at most
/// this long, so a longer one shows as cut (and a framing value read from it is not trusted).
const MAX_LINE_KEPT: usize = 256;
/// Most heads waiting for their request: hyper serves one request at a time and reads ahead
/// little, so more means the tracker lost step with hyper.
const MAX_QUEUED_HEADS: usize = 16;

/// One head's header names in arrival order, lowercase, each followed by `\n` (one
/// allocation per head rather than one per name: this runs for every request).
pub(crate) type Names = String;

/// Header names per request head, in arrival order, shared with the connection's service.
#[derive(Debug, Default)]
pub(crate) struct HeadOrders {
    heads: Mutex<Heads>,
}

#[derive(Debug, Default)]
struct Heads {
    queue: VecDeque<Names>,
    /// Out of step with hyper: no more orders on this connection.
    given_up: bool,
}

impl HeadOrders {
    fn push(&self, names: Names) {
        if let Ok(mut heads) = self.heads.lock() {
            if heads.given_up {
                return;
            }
            if heads.queue.len() >= MAX_QUEUED_HEADS {
                heads.given_up = true;
                heads.queue.clear();
                return;
            }
            heads.queue.push_back(names);
        }
    }

    /// The names of the next request's head, if they were followed.
    pub(crate) fn next(&self) -> Option<Names> {
        let mut heads = self.heads.lock().ok()?;
        if heads.given_up {
            return None;
        }
        heads.queue.pop_front()
    }

    /// A head did not match its request: the queue is out of step; stop using it.
    pub(crate) fn give_up(&self) {
        if let Ok(mut heads) = self.heads.lock() {
            heads.given_up = true;
            heads.queue.clear();
        }
    }
}

/// Where the tracker stands in the byte stream.
#[derive(Debug)]
enum State {
    /// Reading a head; `request_line` once its first line went by.
    Head {
        line: Vec<u8>,
        names: Names,
        request_line: bool,
        length: Option<u64>,
        chunked: bool,
        bytes: usize,
    },
    /// A body of known length: bytes still to skip.
    Fixed(u64),
    /// The line giving a chunk's size.
    ChunkSize(Vec<u8>),
    /// A chunk's data, then its CRLF.
    ChunkData(u64),
    /// The line ending a chunk's data.
    ChunkEnd(Vec<u8>),
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers(Vec<u8>),
    /// Something was not understood: no more orders for this connection.
    Lost,
}

impl State {
    fn head() -> State {
        State::Head {
            line: Vec::new(),
            names: Names::new(),
            request_line: false,
            length: None,
            chunked: false,
            bytes: 0,
        }
    }
}

/// Follows one connection's bytes (see the module documentation).
#[derive(Debug)]
pub(crate) struct HeadTracker {
    state: State,
}

impl Default for HeadTracker {
    fn default() -> Self {
        Self {
            state: State::head(),
        }
    }
}

impl HeadTracker {
    /// Feeds the bytes just read.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], orders: &HeadOrders) {
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Lost);
            let (next, rest) = step(state, bytes, orders);
            self.state = next;
            bytes = rest;
            if matches!(self.state, State::Lost) {
                return;
            }
        }
    }
}

/// One step of the machine: consumes some of `bytes` and gives the next state and the rest.
fn step<'b>(state: State, bytes: &'b [u8], orders: &HeadOrders) -> (State, &'b [u8]) {
    match state {
        State::Head {
            mut line,
            mut names,
            mut request_line,
            mut length,
            mut chunked,
            bytes: mut seen,
        } => {
            let Some(end) = memchr::memchr(b'\n', bytes) else {
                seen += bytes.len();
                keep(&mut line, bytes);
                if seen > MAX_HEAD_BYTES {
                    return (State::Lost, &[]);
                }
                let head = State::Head {
                    line,
                    names,
                    request_line,
                    length,
                    chunked,
                    bytes: seen,
                };
                return (head, &[]);
            };
            seen += end + 1;
            keep(&mut line, &bytes[..end]);
            let rest = &bytes[end + 1..];
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if seen > MAX_HEAD_BYTES {
                return (State::Lost, rest);
            }
            if line.is_empty() {
                if !request_line {
                    // Empty lines before a request line are allowed and ignored.
                    return (State::head(), rest);
                }
                orders.push(names);
                let body = if chunked {
                    State::ChunkSize(Vec::new())
                } else {
                    match length {
                        Some(length) if length > 0 => State::Fixed(length),
                        _ => State::head(),
                    }
                };
                return (body, rest);
            }
            if !request_line {
                request_line = true;
            } else {
                // A folded line (obs-fold) or a line without a name: hyper refuses those.
                let Some(colon) = line.iter().position(|byte| *byte == b':') else {
                    return (State::Lost, rest);
                };
                if colon == 0 || line[0] == b' ' || line[0] == b'\t' {
                    return (State::Lost, rest);
                }
                let name = &line[..colon];
                let is_length = name.eq_ignore_ascii_case(b"content-length");
                let is_encoding = name.eq_ignore_ascii_case(b"transfer-encoding");
                if is_length || is_encoding {
                    if line.len() > MAX_LINE_KEPT {
                        // The value was cut: what hyper reads from it cannot be known here.
                        return (State::Lost, rest);
                    }
                    // Only the two framing values are read; every other value is skipped.
                    let value = String::from_utf8_lossy(&line[colon + 1..]);
                    if is_length {
                        match value.trim().parse() {
                            Ok(declared) => length = Some(declared),
                            Err(_) => return (State::Lost, rest),
                        }
                    } else {
                        chunked = value.to_ascii_lowercase().contains("chunked");
                    }
                }
                // Header names are ASCII tokens; anything else is hyper's to refuse.
                let Ok(name) = std::str::from_utf8(name) else {
                    return (State::Lost, rest);
                };
                names.extend(name.chars().map(|c| c.to_ascii_lowercase()));
                names.push('\n');
            }
            line.clear();
            let head = State::Head {
                line,
                names,
                request_line,
                length,
                chunked,
                bytes: seen,
            };
            (head, rest)
        }
        State::Fixed(remaining) => match skip(remaining, bytes) {
            (0, rest) => (State::head(), rest),
            (left, rest) => (State::Fixed(left), rest),
        },
        State::ChunkSize(mut line) => match take_line(&mut line, bytes) {
            None => (State::ChunkSize(line), &[]),
            // hyper ends the lines of a chunked body only at CRLF.
            Some((rest, false)) => (State::Lost, rest),
            Some(_) if line.len() > MAX_LINE_KEPT => (State::Lost, &[]),
            Some((rest, true)) => {
                let text = String::from_utf8_lossy(&line);
                let digits = text.split(';').next().unwrap_or_default().trim();
                match u64::from_str_radix(digits, 16) {
                    Ok(0) => (State::Trailers(Vec::new()), rest),
                    Ok(size) => (State::ChunkData(size), rest),
                    Err(_) => (State::Lost, rest),
                }
            }
        },
        State::ChunkData(remaining) => match skip(remaining, bytes) {
            (0, rest) => (State::ChunkEnd(Vec::new()), rest),
            (left, rest) => (State::ChunkData(left), rest),
        },
        State::ChunkEnd(mut line) => match take_line(&mut line, bytes) {
            None => (State::ChunkEnd(line), &[]),
            Some((rest, true)) if line.is_empty() => (State::ChunkSize(Vec::new()), rest),
            Some((rest, _)) => (State::Lost, rest),
        },
        State::Trailers(mut line) => match take_line(&mut line, bytes) {
            None => (State::Trailers(line), &[]),
            Some((rest, false)) => (State::Lost, rest),
            Some((rest, true)) if line.is_empty() => (State::head(), rest),
            Some((rest, true)) => (State::Trailers(Vec::new()), rest),
        },
        State::Lost => (State::Lost, &[]),
    }
}

/// Skips up to `remaining` body bytes: what is left to skip after `bytes`, and the rest.
fn skip(remaining: u64, bytes: &[u8]) -> (u64, &[u8]) {
    let taken = usize::try_from(remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
    (remaining - taken as u64, &bytes[taken..])
}

/// Appends to a line buffer, keeping at most one byte more than [`MAX_LINE_KEPT`]: a kept
/// line longer than that limit was cut.
fn keep(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = (MAX_LINE_KEPT + 1).saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Reads up to the end of a line into `line`; once it ended, the rest of the bytes and whether
/// it ended with CRLF (the CR is dropped from `line`).
fn take_line<'b>(line: &mut Vec<u8>, bytes: &'b [u8]) -> Option<(&'b [u8], bool)> {
    match memchr::memchr(b'\n', bytes) {
        Some(end) => {
            keep(line, &bytes[..end]);
            let crlf = line.last() == Some(&b'\r');
            if crlf {
                line.pop();
            }
            Some((&bytes[end + 1..], crlf))
        }
        None => {
            keep(line, bytes);
            None
        }
    }
}

/// The headers in wire order, when `names` (from the tracker) names exactly the headers of
/// `headers`, repeats included; `None` otherwise (the caller keeps hyper's order).
pub(crate) fn in_wire_order<'h>(
    headers: &'h HeaderMap,
    names: &str,
) -> Option<Vec<(&'h HeaderName, &'h HeaderValue)>> {
    let names = names.split_terminator('\n');
    if names.clone().count() != headers.len() {
        return None;
    }
    let mut values: Vec<(&HeaderName, http::header::ValueIter<'h, HeaderValue>)> = Vec::new();
    let mut ordered = Vec::with_capacity(headers.len());
    for name in names {
        let position = match values.iter().position(|(known, _)| known.as_str() == name) {
            Some(position) => position,
            None => {
                let key = headers.keys().find(|key| key.as_str() == name)?;
                values.push((key, headers.get_all(key).iter()));
                values.len() - 1
            }
        };
        let (key, iter) = &mut values[position];
        ordered.push((*key, iter.next()?));
    }
    // Every value of every name used: the same headers, repeats included.
    values
        .iter_mut()
        .all(|(_, iter)| iter.next().is_none())
        .then_some(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads_of(chunks: &[&[u8]]) -> Vec<Vec<String>> {
        let orders = HeadOrders::default();
        let mut tracker = HeadTracker::default();
        for chunk in chunks {
            tracker.feed(chunk, &orders);
        }
        std::iter::from_fn(|| orders.next())
            .map(|names| names.split_terminator('\n').map(str::to_owned).collect())
            .collect()
    }

    const PIPELINED: &[u8] = b"POST /webhook HTTP/1.1\r\nX-A: 1\r\nContent-Length: 8\r\nX-B: 2\r\nx-a: 3\r\n\r\n\n\r\nabcdePOST /webhook HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-C: 1\r\n\r\n3;ext=1\r\n\n\r\n\r\n0\r\nTrailer: t\r\n\r\nGET /healthz HTTP/1.1\nHost: x\nX-D: 4\n\n";

    fn expected() -> Vec<Vec<String>> {
        let names = |list: &[&str]| list.iter().map(|name| (*name).to_owned()).collect();
        vec![
            names(&["x-a", "content-length", "x-b", "x-a"]),
            names(&["transfer-encoding", "x-c"]),
            names(&["host", "x-d"]),
        ]
    }

    #[test]
    fn pipelined_heads_with_fixed_and_chunked_bodies_in_any_split() {
        // Bodies that look like heads (`\n\r\n` inside them) do not fool it.
        assert_eq!(heads_of(&[PIPELINED]), expected());
        for split in 0..PIPELINED.len() {
            let (a, b) = PIPELINED.split_at(split);
            assert_eq!(heads_of(&[a, b]), expected(), "split at {split}");
        }
        let bytes: Vec<&[u8]> = PIPELINED.chunks(1).collect();
        assert_eq!(heads_of(&bytes), expected(), "byte by byte");
    }

    #[test]
    fn input_hyper_reads_otherwise_stops_the_tracking() {
        // A bare LF ends no line of a chunked body for hyper: the heads it would make up
        // here must not be queued.
        let mut trailer_flood =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\n".to_vec();
        trailer_flood.extend(b"x\n\n".repeat(100));
        assert_eq!(heads_of(&[&trailer_flood]).len(), 1, "only the real head");
        // A framing value longer than what is kept is not trusted.
        let zeros = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}5\r\n\r\nx\n\nx\n\n",
            "0".repeat(300)
        );
        assert_eq!(heads_of(&[zeros.as_bytes()]).len(), 0);
        let spaces = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding:{}chunked\r\n\r\n",
            " ".repeat(300)
        );
        assert_eq!(heads_of(&[spaces.as_bytes()]).len(), 0);
        let long_size = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{}2\r\n{{}}\r\n0\r\n\r\n",
            "0".repeat(300)
        );
        assert_eq!(heads_of(&[long_size.as_bytes()]).len(), 1);
        // However the tracker errs, the queue stays short.
        let orders = HeadOrders::default();
        let mut tracker = HeadTracker::default();
        tracker.feed(&b"GET / HTTP/1.1\r\n\r\n".repeat(1000), &orders);
        assert!(
            orders.next().is_none(),
            "more heads than hyper reads ahead: given up"
        );
    }

    #[test]
    fn anything_unexpected_stops_the_tracking() {
        assert!(heads_of(&[b"POST / HTTP/1.1\r\n folded: x\r\n\r\n"]).is_empty());
        assert!(heads_of(&[b"POST / HTTP/1.1\r\nno colon\r\n\r\n"]).is_empty());
        assert!(heads_of(&[b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"]).is_empty());
        let huge = [
            b"POST / HTTP/1.1\r\nX: ".as_slice(),
            &[b'a'; 70_000],
            b"\r\n\r\n",
        ]
        .concat();
        assert!(heads_of(&[&huge]).is_empty());
    }

    #[test]
    fn wire_order_is_used_only_when_it_names_exactly_the_headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("3"));
        headers.append("x-b", HeaderValue::from_static("2"));
        let names = |list: &[&str]| -> Names { list.iter().map(|n| format!("{n}\n")).collect() };
        let ordered = in_wire_order(&headers, &names(&["x-a", "x-b", "x-a"])).unwrap();
        let pairs: Vec<(&str, &str)> = ordered
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(pairs, [("x-a", "1"), ("x-b", "2"), ("x-a", "3")]);
        assert!(in_wire_order(&headers, &names(&["x-a", "x-b"])).is_none());
        assert!(in_wire_order(&headers, &names(&["x-a", "x-b", "x-b"])).is_none());
        assert!(in_wire_order(&headers, &names(&["x-a", "x-c", "x-a"])).is_none());
    }
}
