//! A real headless Chromium driven over the W3C WebDriver protocol (chromedriver), with a
//! small blocking HTTP/1.1 client of our own: a handful of commands need no client crate.
//!
//! Elements are found the way a person finds them: by role and text (links, buttons), by
//! label (form fields), by the text of a row; never by CSS class. Chromedriver and the
//! browser run on loopback with a fresh profile and are stopped when the [`Browser`] drops,
//! on failure too.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Longest wait for one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the browser can run here. In CI its absence fails the test; elsewhere the test
/// says loudly that it skipped and returns.
pub fn available(test: &str) -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        let message = format!("{test}: Chromium and chromedriver are needed ({CHROMIUM}, {CHROMEDRIVER}); apt-get install chromium chromium-driver");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    present
}

/// One HTTP exchange with chromedriver: status and JSON body.
fn exchange(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut stream =
        TcpStream::connect_timeout(&addr, COMMAND_TIMEOUT).expect("connect chromedriver");
    stream
        .set_read_timeout(Some(COMMAND_TIMEOUT))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(payload.as_bytes()).expect("write");
    // Read the head, then exactly the body it announces: chromedriver may keep the
    // connection open whatever `Connection: close` says.
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let (split, head) = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                split,
                String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
            );
        }
        let read = read_some(&mut stream, &mut buffer, method, path);
        assert!(read > 0, "{method} {path}: chromedriver closed early");
        raw.extend_from_slice(&buffer[..read]);
    };
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let have = raw.len() - (split + 4);
        let complete = match length {
            Some(length) => have >= length,
            None if chunked => raw.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let read = read_some(&mut stream, &mut buffer, method, path);
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..read]);
    }
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// One read from chromedriver's answer, read again when interrupted: a socket read with a
/// read timeout is not restarted by the kernel after a signal, nor after the process was
/// stopped and continued (signal(7)), and fails with EINTR instead; that says nothing about
/// the page under test (seen in the whole suite on a loaded machine).
fn read_some(stream: &mut TcpStream, buffer: &mut [u8], method: &str, path: &str) -> usize {
    loop {
        match stream.read(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            read => return read.unwrap_or_else(|error| panic!("{method} {path}: {error}")),
        }
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// One browser at a time: two Chromiums starting and rendering at once on a small machine
/// (the inspector's and the admin pages' tests run in parallel) slow each other past the
/// command timeout.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A headless Chromium session.
pub struct Browser {
    /// Held for its `Drop`: chromedriver stops with the browser.
    _driver: Driver,
    addr: SocketAddr,
    session: String,
    /// Where downloads land.
    pub downloads: PathBuf,
    _profile: tempfile::TempDir,
    /// Dropped last: the next browser starts only after this one is gone.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// A found element.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium with a fresh profile.
    pub fn start(downloads: &Path) -> Browser {
        Browser::start_with_args(downloads, &[])
    }

    /// [`Browser::start`] with more Chromium switches, such as
    /// `--host-resolver-rules=MAP inspector.test 127.0.0.1` to reach a loopback server by a
    /// name that is not loopback (the browser then treats it as any remote site).
    pub fn start_with_args(downloads: &Path, extra_args: &[&str]) -> Browser {
        // A test that failed while holding the turn leaves it poisoned; the turn is still free.
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let addr = super::receiver::free_addr();
        // Owned by a guard from here on: a panic anywhere below still stops it.
        let driver = Driver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={}", addr.port()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(addr).is_ok()
                && exchange(addr, "GET", "/status", None).1["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
        ]
        .iter()
        .chain(extra_args)
        .map(|arg| (*arg).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let (status, answer) = exchange(addr, "POST", "/session", Some(&capabilities));
        assert_eq!(status, 200, "no browser session: {answer}");
        let session = answer["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Browser {
            _driver: driver,
            addr,
            session,
            downloads: downloads.to_owned(),
            _profile: profile,
            _turn: turn,
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, answer) = exchange(self.addr, method, &full, body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The cookies the browser keeps for the current page's host, as `name=value` (HttpOnly
    /// ones included: the browser has them, a page's script would not).
    pub fn cookies(&self) -> Vec<String> {
        self.command("GET", "/cookie", None)
            .as_array()
            .map(|cookies| {
                cookies
                    .iter()
                    .map(|cookie| {
                        format!(
                            "{}={}",
                            cookie["name"].as_str().unwrap_or_default(),
                            cookie["value"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Finds the first element matching `xpath` now.
    pub fn try_find(&self, xpath: &str) -> Option<Element> {
        let full = format!("/session/{}/element", self.session);
        let (status, answer) = exchange(
            self.addr,
            "POST",
            &full,
            Some(&json!({"using": "xpath", "value": xpath})),
        );
        (status == 200).then(|| {
            Element(
                answer["value"][ELEMENT]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
    }

    /// Every element matching `xpath` now, in document order.
    pub fn find_all(&self, xpath: &str) -> Vec<Element> {
        let full = format!("/session/{}/elements", self.session);
        let (status, answer) = exchange(
            self.addr,
            "POST",
            &full,
            Some(&json!({"using": "xpath", "value": xpath})),
        );
        assert_eq!(status, 200, "{xpath}: {answer}");
        answer["value"]
            .as_array()
            .map(|found| {
                found
                    .iter()
                    .map(|element| {
                        Element(element[ELEMENT].as_str().unwrap_or_default().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (bounded) for an element matching `xpath`.
    pub fn wait_for(&self, xpath: &str, limit: Duration) -> Element {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(element) = self.try_find(xpath) {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "nothing matched {xpath} within {limit:?} at {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The link whose text is `text`.
    pub fn link(&self, text: &str) -> Element {
        self.wait_for(
            &format!("//a[normalize-space()={}]", literal(text)),
            Duration::from_secs(5),
        )
    }

    /// The button whose text is `text`.
    pub fn button(&self, text: &str) -> Element {
        self.wait_for(
            &format!("//button[normalize-space()={}]", literal(text)),
            Duration::from_secs(5),
        )
    }

    /// The form field labelled `label` (a `<label for>` whose own text starts with it).
    pub fn field(&self, label: &str) -> Element {
        let xpath = format!(
            "//*[@id=//label[starts-with(normalize-space(text()[1]), {})]/@for]",
            literal(label)
        );
        let element = self.wait_for(&xpath, Duration::from_secs(5));
        let computed = self.computed_label(&element);
        assert!(
            computed.starts_with(label),
            "the accessible name of {label:?} is {computed:?}"
        );
        element
    }

    /// Clicks.
    pub fn click(&self, element: &Element) {
        self.command(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        );
    }

    /// Clicks an element that submits a form or follows a link, and waits (bounded) until the
    /// page it was on is gone, so what is looked for next is looked for on the new page (a
    /// status the old page also showed would otherwise match at once).
    pub fn click_to_navigate(&self, element: &Element) {
        let old_page = self.wait_for("/html", Duration::from_secs(5));
        self.click(element);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.is_stale(&old_page) {
            assert!(
                Instant::now() < deadline,
                "the page did not change after a click, at {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element matching `xpath` to submit a form or follow a link, as
    /// [`Browser::click_to_navigate`] does, on a page that reloads itself (one showing work in
    /// progress): when the page reloaded between finding the element and clicking it, the
    /// element is found again on the new page and clicked there.
    pub fn click_to_navigate_fresh(&self, xpath: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let element = self.wait_for(xpath, Duration::from_secs(5));
            let old_page = self.wait_for("/html", Duration::from_secs(5));
            let full = format!("/session/{}/element/{}/click", self.session, element.0);
            let (status, answer) = exchange(self.addr, "POST", &full, Some(&json!({})));
            if status == 200 {
                while !self.is_stale(&old_page) {
                    assert!(
                        Instant::now() < deadline,
                        "the page did not change after a click, at {}",
                        self.url()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            assert!(
                answer["value"]["error"] == "stale element reference" && Instant::now() < deadline,
                "clicking {xpath}: {answer}"
            );
        }
    }

    /// The computed value of a CSS property of `element` (`background-color`, …): what a
    /// person sees, for a check that a row is coloured apart from the others.
    pub fn css(&self, element: &Element, property: &str) -> String {
        self.command(
            "GET",
            &format!("/element/{}/css/{property}", element.0),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Whether `element` belongs to a page that has since been replaced.
    fn is_stale(&self, element: &Element) -> bool {
        let full = format!("/session/{}/element/{}/name", self.session, element.0);
        let (status, answer) = exchange(self.addr, "GET", &full, None);
        status == 404 && answer["value"]["error"] == "stale element reference"
    }

    /// Clears a field and types `text` into it.
    pub fn type_into(&self, element: &Element, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        );
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        );
    }

    /// An attribute's value (empty when absent).
    pub fn attribute(&self, element: &Element, name: &str) -> String {
        self.command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// A form field's current value (what a person typed or the page put there).
    pub fn value(&self, element: &Element) -> String {
        self.command(
            "GET",
            &format!("/element/{}/property/value", element.0),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Whether an element is shown (a person can see it), as the browser computes it.
    pub fn is_displayed(&self, element: &Element) -> bool {
        self.command("GET", &format!("/element/{}/displayed", element.0), None) == true
    }

    /// The HTML of the current page as the server sent it and the page left it (what "view
    /// source" and a page's script could read).
    pub fn source(&self) -> String {
        self.command("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Whether a checkbox, radio button or option is checked / selected.
    pub fn is_selected(&self, element: &Element) -> bool {
        self.command("GET", &format!("/element/{}/selected", element.0), None) == true
    }

    /// Chooses the option whose text is `text` in the list box `select`.
    pub fn choose(&self, select: &Element, text: &str) {
        let option = self.command(
            "POST",
            &format!("/element/{}/element", select.0),
            Some(json!({"using": "xpath",
                        "value": format!(".//option[normalize-space()={}]", literal(text))})),
        );
        let option = Element(option[ELEMENT].as_str().unwrap_or_default().to_owned());
        self.click(&option);
        assert!(self.is_selected(&option), "{text} is not chosen");
    }

    /// The visible text.
    pub fn text(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", element.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The accessible name the browser computes.
    pub fn computed_label(&self, element: &Element) -> String {
        self.command(
            "GET",
            &format!("/element/{}/computedlabel", element.0),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The accessible role the browser computes.
    pub fn computed_role(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/computedrole", element.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Presses and releases one key on whatever has focus (`\u{E007}` is Enter, `\u{E00C}` Esc).
    pub fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.command("POST", "/actions", Some(actions));
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Waits (bounded) until the downloads directory holds a complete `name`, and reads it.
    pub fn downloaded(&self, name: &str, limit: Duration) -> Vec<u8> {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + limit;
        loop {
            let partial = std::fs::read_dir(&self.downloads)
                .map(|dir| {
                    dir.flatten()
                        .any(|entry| entry.file_name().to_string_lossy().ends_with(".crdownload"))
                })
                .unwrap_or(false);
            if path.exists() && !partial {
                return std::fs::read(&path).expect("read download");
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not downloaded within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes the browser; killing the driver then leaves nothing behind.
        let _ = std::panic::catch_unwind(|| {
            exchange(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            )
        });
        // `_driver` drops after this, which stops chromedriver.
    }
}

/// The chromedriver process, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An XPath string literal for any text.
fn literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else {
        format!("concat('{}')", text.replace('\'', "', \"'\", '"))
    }
}

/// Where the inspector's screenshots go: `target/inspector-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    screenshots("inspector-screenshots")
}

/// Saves a screenshot as `docs/NAME`, the picture the README shows, so every test run
/// renews it from the pages as they are.
pub fn publish_screenshot(browser: &Browser, name: &str) {
    browser.screenshot(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name),
    );
}

/// A directory for screenshots under the workspace's `target/`.
pub fn screenshots(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(name)
}
