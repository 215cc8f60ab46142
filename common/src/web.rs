//! The web page layer both programs share (SPEC section 8): the token guard, the page layout,
//! the stylesheet and script served from the binary, HTML escaping, query strings, and the
//! response helpers with the security headers every page carries.
//!
//! Pages are plain `format!` over [`escape`]d values: the templates are checked by the
//! compiler like any Rust code, and no template crate (with its proc-macro build cost on a
//! small machine) is needed for a handful of pages. Every value that did not come from our
//! own source text goes through [`escape`], attribute or text alike.
//!
//! Protection is Jupyter's: a random token per start (or one given), required on every
//! request, accepted from `?token=` or from the cookie set after the first visit (HttpOnly,
//! SameSite=Strict, so other sites can neither read it nor send it), compared in constant time.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use subtle::ConstantTimeEq as _;

mod serve;
pub use serve::{
    bind, choose_token, is_loopback, not_found, read_body, read_form, same_origin, serve,
    TokenRule, SAME_ORIGIN_REFERRER,
};

/// The body type of every page, file and stream.
pub type WebBody = BoxBody<Bytes, Infallible>;

/// Scripts and styles only from the binary itself; nothing inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The shared stylesheet (light and dark from `prefers-color-scheme`).
pub const STYLESHEET: &str = include_str!("../assets/web.css");
/// The shared script: live lists over server-sent events, j/k/Enter/Esc, Copy buttons.
pub const SCRIPT: &str = include_str!("../assets/web.js");
/// Where [`STYLESHEET`] is served.
pub const STYLESHEET_PATH: &str = "/assets/web.css";
/// Where [`SCRIPT`] is served.
pub const SCRIPT_PATH: &str = "/assets/web.js";

/// Escapes text for HTML element content and quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Percent-encodes a value for a query string.
pub fn encode_query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `name=value` pairs of a query string or form body, decoded (`+` is a space).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// The access token of a page server. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl Token {
    /// 24 random bytes as 48 hex digits, as Jupyter makes them.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn random() -> anyhow::Result<Token> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|error| anyhow::anyhow!("reading random bytes for the token: {error}"))?;
        Ok(Token(
            bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        ))
    }

    /// A token given by the user.
    ///
    /// # Errors
    /// Empty, or with characters that would need escaping in a URL or a cookie.
    pub fn given(text: &str) -> anyhow::Result<Token> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
        if text.is_empty() || !text.chars().all(plain) {
            anyhow::bail!("the token must be non-empty and made of letters, digits and -_.~");
        }
        Ok(Token(text.to_owned()))
    }

    /// The token itself, for the URL printed at start.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

/// What the guard decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The cookie carried the token.
    ByCookie,
    /// The token header carried it (scripts calling an API).
    ByHeader,
    /// The URL carried the token: answer with the cookie so links need not carry it.
    ByUrl,
    /// No token, or a wrong one: answer 401.
    Refused,
}

/// The token guard of one page server: `cookie` names its cookie, so two servers on one host
/// (inspector, admin) keep theirs apart.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Token,
    cookie: &'static str,
    header: Option<&'static str>,
}

impl Guard {
    /// A guard for `token` keeping it in the cookie `cookie`.
    pub fn new(token: Token, cookie: &'static str) -> Guard {
        Guard {
            token,
            cookie,
            header: None,
        }
    }

    /// Also takes the token from the request header `name` (for scripts; a header is never
    /// sent by a browser on its own, so it also proves a request is not a forged form).
    #[must_use]
    pub fn with_header(mut self, name: &'static str) -> Guard {
        self.header = Some(name);
        self
    }

    /// Whether the request carries the token in the guard's header.
    pub fn header_matches(&self, parts: &http::request::Parts) -> bool {
        self.header
            .and_then(|name| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .is_some_and(|candidate| self.token.matches(candidate))
    }

    /// Checks the token header (when the guard has one), the `token` query parameter, then
    /// the cookie.
    pub fn check(&self, parts: &http::request::Parts) -> Access {
        if self.header_matches(parts) {
            return Access::ByHeader;
        }
        let from_url = parts.uri.query().and_then(|query| {
            parse_query(query)
                .into_iter()
                .find(|(name, _)| name == "token")
                .map(|(_, value)| value)
        });
        if let Some(candidate) = from_url {
            return if self.token.matches(&candidate) {
                Access::ByUrl
            } else {
                Access::Refused
            };
        }
        let from_cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && self.token.matches(value));
        if from_cookie {
            Access::ByCookie
        } else {
            Access::Refused
        }
    }

    /// The `Set-Cookie` value that keeps the token for later requests.
    pub fn cookie_header(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie,
            self.token.expose()
        )
    }

    /// Adds the cookie to `response` when the token came in the URL.
    pub fn remember(&self, access: Access, response: &mut Response<WebBody>) {
        if access == Access::ByUrl {
            if let Ok(value) = HeaderValue::from_str(&self.cookie_header()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }
}

/// A whole page: `title` (plain text), `heading_html` and `main_html` (already escaped).
pub fn layout(title: &str, heading_html: &str, main_html: &str) -> String {
    let title = escape(title);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\
         <script src=\"{SCRIPT_PATH}\" defer></script></head>\
         <body><header>{heading_html}</header><main>{main_html}</main></body></html>\n"
    )
}

/// A response with the security headers every answer of a page server carries.
pub fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<WebBody> {
    with_body(status, content_type, Full::new(body.into()).boxed())
}

/// [`respond`] for any body (a stream, for instance).
pub fn with_body(status: StatusCode, content_type: &str, body: WebBody) -> Response<WebBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An HTML page.
pub fn html(status: StatusCode, page: String) -> Response<WebBody> {
    respond(status, "text/html; charset=utf-8", page)
}

/// The answer to a request without the right token. It says how to get in, and nothing else.
pub fn unauthorized() -> Response<WebBody> {
    respond(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "401 unauthorized: open the address printed at start, with its ?token=\n",
    )
}

/// A plain-text answer (404, 400, …).
pub fn text(status: StatusCode, message: String) -> Response<WebBody> {
    respond(status, "text/plain; charset=utf-8", message)
}

/// The shared stylesheet or script, when `path` names one.
pub fn asset(path: &str) -> Option<Response<WebBody>> {
    match path {
        STYLESHEET_PATH => Some(respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            STYLESHEET,
        )),
        SCRIPT_PATH => Some(respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            SCRIPT,
        )),
        _ => None,
    }
}

/// A body fed through a channel: each message is one chunk, the end of the channel is the end
/// of the body. Server-sent event streams are written through it.
pub struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it (bounded: a slow reader makes the writer wait).
    pub fn new(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
        let (sender, chunks) = tokio::sync::mpsc::channel(capacity);
        (sender, ChannelBody { chunks })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(context)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// One server-sent event: `id`, `event`, then `data` as one `data:` line per line of it.
///
/// A browser ends a line of the stream at `\r\n`, `\n` or a lone `\r`, so a line break
/// inside a field would end it and start a field or an event of the sender's choosing (an
/// `eventId` such as `"a\rid: 999999\r\rdata: x"` would move the stream's resume point and
/// add rows). So `data` is split at every kind of line break (the browser joins its `data:`
/// lines with `\n` again), and line breaks are removed from `id` and `event`, which are one
/// line by nature (NUL too from `id`, for which a browser would drop the id).
pub fn sse_event(id: &str, event: &str, data: &str) -> Bytes {
    let id: String = id
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect();
    let event: String = event
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    let mut text = format!("id: {id}\nevent: {event}\n");
    let data = data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn query_strings_decode_plus_and_percent() {
        assert_eq!(
            parse_query("a=b+c&d=%3Cx%3E&e"),
            vec![
                ("a".to_owned(), "b c".to_owned()),
                ("d".to_owned(), "<x>".to_owned()),
                ("e".to_owned(), String::new())
            ]
        );
        assert_eq!(
            parse_query(&format!("v={}", encode_query_value("a b&c"))),
            vec![("v".to_owned(), "a b&c".to_owned())]
        );
    }

    #[test]
    fn guard_takes_the_token_from_url_or_cookie_only() {
        let guard = Guard::new(Token::given("secret1").expect("token"), "t");
        let parts = |uri: &str, cookie: Option<&str>| {
            let mut builder = http::Request::get(uri);
            if let Some(cookie) = cookie {
                builder = builder.header("cookie", cookie);
            }
            builder.body(()).expect("request").into_parts().0
        };
        assert_eq!(guard.check(&parts("/?token=secret1", None)), Access::ByUrl);
        assert_eq!(
            guard.check(&parts("/?token=secret2", Some("t=secret1"))),
            Access::Refused
        );
        assert_eq!(
            guard.check(&parts("/", Some("x=1; t=secret1"))),
            Access::ByCookie
        );
        assert_eq!(guard.check(&parts("/", Some("t=secret"))), Access::Refused);
        assert_eq!(guard.check(&parts("/", None)), Access::Refused);
        assert!(!format!("{guard:?}").contains("secret1"));
    }

    /// The events a browser reads from `stream`, as the HTML standard's event stream
    /// interpretation does it: lines end at CRLF, LF or CR; `id` sets the last event id (kept
    /// for the events after), `event` the type, `data` lines join with LF; a blank line
    /// dispatches when there is data. Each event is `(last id, type, data)`.
    fn browser_reads(stream: &str) -> Vec<(String, String, String)> {
        let stream = stream.replace("\r\n", "\n").replace('\r', "\n");
        let (mut events, mut last_id, mut kind, mut data) =
            (Vec::new(), String::new(), String::new(), String::new());
        for line in stream.split('\n') {
            if line.is_empty() {
                if let Some(joined) = data.strip_suffix('\n') {
                    let kind = if kind.is_empty() { "message" } else { &kind };
                    events.push((last_id.clone(), kind.to_owned(), joined.to_owned()));
                }
                data.clear();
                kind.clear();
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" if !value.contains('\0') => last_id = value.to_owned(),
                "event" => kind = value.to_owned(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                _ => {}
            }
        }
        events
    }

    #[test]
    fn no_line_break_in_a_field_starts_a_field_or_an_event() {
        let hostile = "<code>a\rid: 999999\r\rdata: x\r\nevent: y\n\nz</code>";
        let stream = String::from_utf8(sse_event("7.0", "row", hostile).to_vec()).unwrap();
        assert_eq!(
            browser_reads(&stream),
            [(
                "7.0".to_owned(),
                "row".to_owned(),
                "<code>a\nid: 999999\n\ndata: x\nevent: y\n\nz</code>".to_owned()
            )]
        );
        let stream =
            String::from_utf8(sse_event("7.0\rdata: x\r\r", "row\nid: 1", "ok").to_vec()).unwrap();
        assert_eq!(
            browser_reads(&stream),
            [(
                "7.0data: x".to_owned(),
                "rowid: 1".to_owned(),
                "ok".to_owned()
            )]
        );
    }

    #[test]
    fn given_tokens_must_be_url_safe() {
        assert!(Token::given("").is_err());
        assert!(Token::given("a b").is_err());
        assert_eq!(Token::random().expect("random").expose().len(), 48);
    }
}
