//! The web page layer both programs share (SPEC section 8): the token guard, the page layout,
//! the stylesheet and script served from the binary, HTML escaping, query strings, and the
//! response helpers with the security headers every page carries.
//!
//! Pages are plain `format!` over [`escape`]d values: the templates are checked by the
//! compiler like any Rust code, and no template crate (with its proc-macro build cost on a
//! small machine) is needed for a handful of pages. Every value that did not come from our
//! own source text goes through [`escape`], attribute or text alike.
//!
//! Protection is Jupyter's: a random token per start (or one given, of at least 16
//! characters), required on every request, accepted from `?token=`, after which a cookie of
//! this server carries a session key (HttpOnly, SameSite=Strict, so other sites can neither
//! read it nor send it; `Secure` over TLS), compared in constant time, ending after
//! [`SESSION_IDLE`] without use and [`SESSION_MAX_AGE`] at most; wrong tokens are slowed down
//! per client and for all clients together (`throttle`). See [`Guard`] for what the cookie
//! does not protect against.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use subtle::ConstantTimeEq as _;

mod serve;
mod throttle;
pub use serve::{
    bind, choose_token, is_loopback, not_found, read_body, read_form, same_origin, serve, TokenRule,
};
pub use throttle::WrongTokenLimit;

/// The `Referrer-Policy` of every answer: the page's address goes along to this same server
/// only (its forms then carry an `Origin` that [`same_origin`] can compare; with
/// `no-referrer` browsers send `Origin: null`), and nothing, the first visit's `?token=`
/// included, leaves for other sites.
pub const REFERRER_POLICY: &str = "same-origin";

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

/// A query string of the `fields` that have a value (`name=value`, the value percent-encoded,
/// joined by `&`), without a leading `?`; the reverse of [`parse_query`] for filled fields.
pub fn query_string(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", encode_query_value(value)))
        .collect::<Vec<_>>()
        .join("&")
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

/// The fewest characters a page token may have (SPEC section 6).
pub const MIN_TOKEN_CHARS: usize = 16;

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
    /// Empty, with characters that would need escaping in a URL or a cookie, or shorter than
    /// [`MIN_TOKEN_CHARS`] (a short token is guessed, however slowly wrong ones are answered).
    pub fn given(text: &str) -> anyhow::Result<Token> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
        if text.is_empty() || !text.chars().all(plain) {
            anyhow::bail!("the token must be non-empty and made of letters, digits and -_.~");
        }
        if text.len() < MIN_TOKEN_CHARS {
            anyhow::bail!(
                "the token must have at least {MIN_TOKEN_CHARS} characters, so that it cannot be \
                 guessed (leave it out for a random one, or make one with `openssl rand -hex 24`)"
            );
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

/// Where a request to a page server comes from: [`serve`] puts it in every request's
/// extensions, and the guard counts wrong tokens by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// What the guard decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The cookie carried the session key.
    ByCookie,
    /// The token header carried the token (scripts calling an API).
    ByHeader,
    /// The URL carried the token: answer with the cookie so links need not carry it.
    ByUrl,
    /// No token, or a wrong one: answer 401.
    Refused,
    /// The client presented too many wrong tokens lately: answer 429, try again after this.
    Throttled(std::time::Duration),
}

impl Access {
    /// The answer to a request the guard stops (401 or 429); `None` when it may go on.
    pub fn refusal(self) -> Option<Response<WebBody>> {
        match self {
            Access::ByCookie | Access::ByHeader | Access::ByUrl => None,
            Access::Refused => Some(unauthorized()),
            Access::Throttled(wait) => Some(too_many_wrong_tokens(wait)),
        }
    }
}

/// How long a session lasts without a request: then the cookie opens nothing and the address
/// with `?token=` is needed again (a new session key).
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// How long a session lasts at most, however much it is used.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The token guard of one page server.
///
/// The token is taken from the URL (`?token=`) or a header; the cookie set after the first
/// visit carries a random session key, never the token. The cookie's name holds the server's
/// port, so two inspectors side by side keep theirs apart, and its key opens this server
/// only, and only while the session lasts: until it stops, [`SESSION_IDLE`] without a
/// request, or [`SESSION_MAX_AGE`] after the `?token=` visit that began it.
///
/// What the cookie does not protect against (the README says it too): browsers send a
/// host's cookies to every port of that host, so another server on the same host name (the
/// `--forward-to` app, a dev server on `localhost:3000`) receives this cookie with every
/// request the browser makes to it. It learns the session key, not the token, but the key
/// is a bearer credential: replayed to this server while the session lasts, it opens the
/// pages (for the sender's admin pages: signature files, that is signing secrets). Pages
/// opened by a host name of their own (`127.0.0.2`, `admin.localhost`) share cookies with
/// nothing else.
///
/// Wrong tokens (URL or header) are counted per client and for all clients
/// ([`WrongTokenLimit`]); a wrong cookie is not, as nobody guesses a 192-bit session key.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Token,
    /// What the cookie carries, shared by the server's clones of the guard.
    session: Arc<Mutex<Session>>,
    cookie: String,
    secure: bool,
    header: Option<&'static str>,
    throttle: Arc<throttle::Throttle>,
}

/// The session a `?token=` visit began: its random key and when it began and was last used.
#[derive(Debug)]
struct Session {
    key: Token,
    began: Instant,
    used: Instant,
}

impl Session {
    fn new(now: Instant) -> anyhow::Result<Session> {
        Ok(Session {
            key: Token::random()?,
            began: now,
            used: now,
        })
    }

    /// Whether the session still lasts at `now` (see [`SESSION_IDLE`], [`SESSION_MAX_AGE`]).
    fn lasts(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.used) < SESSION_IDLE
            && now.saturating_duration_since(self.began) < SESSION_MAX_AGE
    }
}

impl Guard {
    /// A guard for `token` of the server on `port`, whose cookie is named `cookie_prefix`
    /// and the port (`receiver_inspector_8081`).
    ///
    /// # Errors
    /// The system's random source failed (for the session key).
    pub fn new(token: Token, cookie_prefix: &str, port: u16) -> anyhow::Result<Guard> {
        Ok(Guard {
            token,
            session: Arc::new(Mutex::new(Session::new(Instant::now())?)),
            cookie: format!("{cookie_prefix}_{port}"),
            secure: false,
            header: None,
            throttle: Arc::new(throttle::Throttle::new(WrongTokenLimit::default())),
        })
    }

    /// Also takes the token from the request header `name` (for scripts; a header is never
    /// sent by a browser on its own, so it also proves a request is not a forged form).
    #[must_use]
    pub fn with_header(mut self, name: &'static str) -> Guard {
        self.header = Some(name);
        self
    }

    /// For a server reached over HTTPS: the cookie is `Secure` (never sent over plain HTTP)
    /// and named `__Host-…`, which browsers let only a secure page of this host set.
    #[must_use]
    pub fn over_tls(mut self) -> Guard {
        if !self.secure {
            self.secure = true;
            self.cookie = format!("__Host-{}", self.cookie);
        }
        self
    }

    /// Slows down wrong tokens by `limit` instead of [`WrongTokenLimit::default`].
    #[must_use]
    pub fn with_wrong_token_limit(mut self, limit: WrongTokenLimit) -> Guard {
        self.throttle = Arc::new(throttle::Throttle::new(limit));
        self
    }

    /// Checks the token header (when the guard has one), the `token` query parameter, then
    /// the cookie. A client that presented too many wrong tokens lately gets no token looked
    /// at until its window ends (a valid cookie still lets it in: it is no guess).
    pub fn check(&self, parts: &http::request::Parts) -> Access {
        self.check_at(parts, Instant::now())
    }

    /// [`Guard::check`] at `now`: a right token in the URL begins a new session when the
    /// last one ended, a cookie opens the pages while its session lasts and keeps it alive.
    fn check_at(&self, parts: &http::request::Parts, now: Instant) -> Access {
        let client = throttle::Client::at(
            parts
                .extensions
                .get::<ClientAddress>()
                .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |address| address.0),
        );
        let from_header = self
            .header
            .and_then(|name| parts.headers.get(name))
            .map(|value| value.to_str().unwrap_or_default());
        let from_url = parts.uri.query().and_then(|query| {
            parse_query(query)
                .into_iter()
                .find(|(name, _)| name == "token")
                .map(|(_, value)| value)
        });
        if from_header.is_some() || from_url.is_some() {
            if let Some(wait) = self.throttle.wait(client) {
                return Access::Throttled(wait);
            }
        }
        let mut wrong = false;
        if let Some(candidate) = from_header {
            if self.token.matches(candidate) {
                return Access::ByHeader;
            }
            wrong = true;
        }
        let access = match from_url {
            Some(candidate) if self.token.matches(&candidate) => self.begin_session(now),
            Some(_) => {
                wrong = true;
                Access::Refused
            }
            None if self.cookie_matches(parts, now) => Access::ByCookie,
            None => Access::Refused,
        };
        if wrong {
            self.throttle.record_wrong(client);
        }
        access
    }

    /// A right token came in the URL: the session goes on, or a new one begins when the last
    /// one ended (with a new key: the old cookie opens nothing any more).
    fn begin_session(&self, now: Instant) -> Access {
        let mut session = self.session();
        if !session.lasts(now) {
            match Session::new(now) {
                Ok(fresh) => *session = fresh,
                Err(error) => {
                    tracing::error!("{error:#}");
                    return Access::Refused;
                }
            }
        }
        session.used = now;
        Access::ByUrl
    }

    /// Whether the request carries this server's cookie with the key of a session that
    /// still lasts at `now`; if so, the session was used now.
    fn cookie_matches(&self, parts: &http::request::Parts, now: Instant) -> bool {
        let mut session = self.session();
        let carried = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && session.key.matches(value));
        let opens = carried && session.lasts(now);
        if opens {
            session.used = now;
        }
        opens
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        // Held for a comparison and two instants, never across an `.await`; a panic while
        // holding it leaves a whole session behind, so a poisoned lock is kept using.
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `Set-Cookie` value that keeps the session for later requests; the browser drops
    /// it when the session reaches [`SESSION_MAX_AGE`].
    pub fn cookie_header(&self) -> String {
        let session = self.session();
        let left = SESSION_MAX_AGE.saturating_sub(session.began.elapsed());
        format!(
            "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.cookie,
            session.key.expose(),
            left.as_secs(),
            if self.secure { "; Secure" } else { "" }
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
        HeaderValue::from_static(REFERRER_POLICY),
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

/// The answer to a client that presented too many wrong tokens lately: 429, and when to try
/// again (whole seconds, rounded up).
pub fn too_many_wrong_tokens(wait: std::time::Duration) -> Response<WebBody> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = respond(
        StatusCode::TOO_MANY_REQUESTS,
        "text/plain; charset=utf-8",
        format!("429 too many wrong tokens from your address: try again in {seconds} s\n"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
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

    fn request_from(client: [u8; 4], uri: &str, cookie: Option<&str>) -> http::request::Parts {
        let mut builder = http::Request::get(uri);
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        let mut parts = builder.body(()).expect("request").into_parts().0;
        parts
            .extensions
            .insert(ClientAddress(std::net::IpAddr::from(client)));
        parts
    }

    const SECRET: &str = "secret1-secret1-secret1";

    #[test]
    fn guard_takes_the_token_from_the_url_and_gives_a_session_cookie_of_its_port() {
        let guard = Guard::new(Token::given(SECRET).expect("token"), "t", 8081).expect("guard");
        let parts = |uri: &str, cookie: Option<&str>| request_from([127, 0, 0, 1], uri, cookie);
        assert_eq!(
            guard.check(&parts(&format!("/?token={SECRET}"), None)),
            Access::ByUrl
        );
        let set_cookie = guard.cookie_header();
        let pair = set_cookie.split(';').next().expect("pair").to_owned();
        assert!(pair.starts_with("t_8081="), "{set_cookie}");
        assert!(!set_cookie.contains(SECRET), "the cookie is no token");
        assert!(!set_cookie.contains("Secure"), "{set_cookie}");
        assert_eq!(
            guard.check(&parts("/?token=secret2-secret2-secret2", Some(&pair))),
            Access::Refused
        );
        assert_eq!(
            guard.check(&parts("/", Some(&format!("x=1; {pair}")))),
            Access::ByCookie
        );
        // The token itself is no cookie, nor is another server's session.
        let token_cookie = format!("t_8081={SECRET}");
        assert_eq!(
            guard.check(&parts("/", Some(&token_cookie))),
            Access::Refused
        );
        let other = Guard::new(Token::given(SECRET).expect("token"), "t", 8081).expect("guard");
        let other_pair = other
            .cookie_header()
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        assert_eq!(guard.check(&parts("/", Some(&other_pair))), Access::Refused);
        assert_eq!(guard.check(&parts("/", None)), Access::Refused);
        assert!(!format!("{guard:?}").contains(SECRET));
        assert!(!format!("{guard:?}").contains(pair.trim_start_matches("t_8081=")));
        let secure = guard.over_tls();
        assert!(secure.cookie_header().starts_with("__Host-t_8081="));
        assert!(secure.cookie_header().ends_with("; Secure"));
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
    fn a_session_ends_after_its_idle_time_or_its_age_and_the_token_begins_another() {
        let guard = Guard::new(Token::given(SECRET).expect("token"), "t", 8081).expect("guard");
        let start = Instant::now();
        let at =
            |hours: u64, minutes: u64| start + Duration::from_secs(hours * 3600 + minutes * 60);
        let parts = |uri: &str, cookie: Option<&str>| request_from([127, 0, 0, 1], uri, cookie);
        let signed_in = |now: Instant| {
            assert_eq!(
                guard.check_at(&parts(&format!("/?token={SECRET}"), None), now),
                Access::ByUrl
            );
            let header = guard.cookie_header();
            assert!(header.contains("; Max-Age="), "{header}");
            header.split(';').next().expect("pair").to_owned()
        };
        let cookie = signed_in(at(0, 0));
        // Used within 12 hours each time, it lasts.
        for hour in [6, 17] {
            assert_eq!(
                guard.check_at(&parts("/", Some(&cookie)), at(hour, 0)),
                Access::ByCookie
            );
        }
        // Left alone for 12 hours, it ends: a cookie replayed later opens nothing.
        assert_eq!(
            guard.check_at(&parts("/", Some(&cookie)), at(29, 1)),
            Access::Refused
        );
        // The token begins a new session, with a new key.
        let renewed = signed_in(at(29, 2));
        assert_ne!(renewed, cookie);
        assert_eq!(
            guard.check_at(&parts("/", Some(&cookie)), at(29, 3)),
            Access::Refused
        );
        assert_eq!(
            guard.check_at(&parts("/", Some(&renewed)), at(29, 3)),
            Access::ByCookie
        );
        // Used all the time, it still ends 24 hours after it began.
        for hour in 30..53 {
            assert_eq!(
                guard.check_at(&parts("/", Some(&renewed)), at(hour, 0)),
                Access::ByCookie,
                "hour {hour}"
            );
        }
        assert_eq!(
            guard.check_at(&parts("/", Some(&renewed)), at(53, 3)),
            Access::Refused
        );
        // A visit with the token within a session keeps its key (other tabs keep working).
        let third = signed_in(at(54, 0));
        assert_eq!(signed_in(at(55, 0)), third);
    }

    #[test]
    fn wrong_tokens_are_slowed_down_for_their_client_only() {
        let guard = Guard::new(Token::given(SECRET).expect("token"), "t", 1)
            .expect("guard")
            .with_header("x-token")
            .with_wrong_token_limit(WrongTokenLimit {
                attempts: 2,
                window: std::time::Duration::from_secs(60),
                ..WrongTokenLimit::default()
            });
        let right = format!("/?token={SECRET}");
        let pair = guard
            .cookie_header()
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let guesser = [192, 0, 2, 7];
        // A wrong cookie is no guess.
        for _ in 0..5 {
            assert_eq!(
                guard.check(&request_from(guesser, "/", Some("t_1=guess"))),
                Access::Refused
            );
        }
        let mut header_guess = request_from(guesser, "/", None);
        header_guess
            .headers
            .insert("x-token", HeaderValue::from_static("guess"));
        assert_eq!(guard.check(&header_guess), Access::Refused);
        assert_eq!(
            guard.check(&request_from(guesser, "/?token=guess", None)),
            Access::Refused
        );
        // Now no token of that client is looked at, the right one neither.
        assert!(matches!(
            guard.check(&request_from(guesser, &right, None)),
            Access::Throttled(wait) if wait > std::time::Duration::from_secs(50)
        ));
        assert!(matches!(guard.check(&header_guess), Access::Throttled(_)));
        // Its session cookie still works, and other clients are not slowed.
        assert_eq!(
            guard.check(&request_from(guesser, "/", Some(&pair))),
            Access::ByCookie
        );
        assert_eq!(
            guard.check(&request_from([192, 0, 2, 8], &right, None)),
            Access::ByUrl
        );
        let answer = Access::Throttled(std::time::Duration::from_millis(1500))
            .refusal()
            .expect("refused");
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            Access::Refused.refusal().expect("refused").status(),
            StatusCode::UNAUTHORIZED
        );
        assert!(Access::ByCookie.refusal().is_none());
    }

    #[test]
    fn given_tokens_must_be_url_safe_and_long_enough() {
        assert!(Token::given("").is_err());
        assert!(Token::given("a b c d e f g h i").is_err());
        assert!(Token::given("0123456789abcde").is_err());
        assert!(Token::given("0123456789abcdef").is_ok());
        assert_eq!(Token::random().expect("random").expose().len(), 48);
    }
}
