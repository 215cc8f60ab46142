//! Copy as curl, pasted into a shell (issue 20, item 1). Anyone who reaches the webhook port
//! writes what the command holds: every refused request is kept, a 404 with a made-up method
//! included. Hostile requests go over raw TCP; each one's command, read from its detail page
//! the way a browser shows it, runs in `bash` and in `sh` with `curl` replaced by a recorder,
//! and must call curl exactly once with exactly the kept method, URL, headers and body bytes,
//! and create nothing; then it runs with the real curl against the receiver, which must keep
//! the same request again.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use verify::CaptureRecord;

use crate::support::inspector::Inspected;
use crate::support::receiver::{raw_exchange, wait_until};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(copy_as_curl_runs_curl_once_with_exactly_the_kept_request);

/// Headers curl writes itself (and HTTP framing): not part of the comparison with a resent
/// request.
const CURL_OWN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "user-agent",
    "accept",
];
/// Headers Copy as curl leaves out, as Send again does: they describe the connection.
const HOP_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// A raw HTTP/1.1 request with `Connection: close`.
fn wire(method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes
}

/// The hostile requests: the issue's method, a method with backticks to a path full of curl
/// globs, dot segments and shell syntax, hostile header values with a refused body that starts
/// like a curl file reference, and an accepted JSON body sent without a content type.
fn hostile_requests() -> Vec<Vec<u8>> {
    let refused_body: &[u8] =
        b"@/etc/passwd it's \"$(touch pwned-body)\" `touch pwned-tick` %s%n%% \\n \\\\ \\047\n\
          \r\n\x00\xff\xfe\x80 -e\t\x1b[31m\n\n";
    let accepted_body = "{\"accountId\":7,\"events\":[{\"eventId\":\"it's $(touch pwned-id) `touch x` %d \\\\ \\u00e9\",\
                         \"eventName\":\"COURSE_COMPLETED\",\"timestamp\":1,\"data\":{\"note\":\"50% off\\nnext\"}}]}\r\n\n\n";
    vec![
        wire("X|touch$IFS'pwned'|true", "/nosuchpath", &[], b""),
        wire(
            "X`touch$IFS'pwned-method'`",
            "/a/../b/./{x,y}[1-2]?q=$(touch$IFS'pwned-q')&r=;touch$IFS'pwned-r'",
            &[("x-trace", b"t")],
            b"",
        ),
        wire(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("x-quote", b"it's \"quoted\" \\"),
                ("x-subst", b"$(touch pwned-header)"),
                ("x-tick", b"`touch pwned-header-tick`"),
                ("x-empty", b""),
                ("x-tab", b"a\tb"),
                ("x-latin", b"caf\xe9 %s"),
                ("x-at", b"@/etc/passwd"),
            ],
            refused_body,
        ),
        wire("POST", "/webhook?from=$HOME", &[], accepted_body.as_bytes()),
    ]
}

async fn copy_as_curl_runs_curl_once_with_exactly_the_kept_request(store: TestStore) {
    let inspected = Inspected::start(store.config()).await;
    // The newest accepted and refused ids seen.
    let (mut accepted_id, mut refused_id) = (0, 0);
    for (index, request) in hostile_requests().iter().enumerate() {
        let answer = raw_exchange(inspected.addr, request).await;
        let accepted = answer.starts_with("HTTP/1.1 200");
        let previous = if accepted {
            &mut accepted_id
        } else {
            &mut refused_id
        };
        let key = next_key(&store, accepted, previous).await;
        let kept = capture(&inspected, &key).await;
        let command = curl_command_on_page(&inspected.page(&format!("/requests/{key}")).await);
        assert!(
            command
                .chars()
                .all(|c| c == '\n' || (' '..='~').contains(&c)),
            "the command is printable ASCII: {command}"
        );
        for shell in ["bash", "sh"] {
            let call = run_with_recorder(shell, &command);
            assert_eq!(
                call.url,
                format!("http://{}{}", inspected.addr, kept.path),
                "request {index} in {shell}: {command}"
            );
            assert_eq!(call.method, kept.method, "request {index} in {shell}");
            let expected: Vec<(String, String)> = kept
                .headers
                .iter()
                .filter(|(name, _)| !HOP_HEADERS.contains(&name.as_str()))
                .cloned()
                .collect();
            assert_eq!(
                call.headers, expected,
                "request {index} in {shell}: {command}"
            );
            assert_eq!(
                call.stdin, kept.body,
                "request {index} in {shell}: the body byte for byte"
            );
        }
        // The real curl sends it again, and the receiver keeps the same request.
        run_real_curl(&command);
        let again = capture(&inspected, &next_key(&store, accepted, previous).await).await;
        assert_ne!(again.received_at_ms, 0);
        assert_eq!(
            (&again.method, &again.path, &again.body),
            (&kept.method, &kept.path, &kept.body),
            "request {index} sent again by curl"
        );
        let without_curls_own = |record: &CaptureRecord| -> Vec<(String, String)> {
            record
                .headers
                .iter()
                .filter(|(name, _)| !CURL_OWN_HEADERS.contains(&name.as_str()))
                .cloned()
                .collect()
        };
        assert_eq!(
            without_curls_own(&again),
            without_curls_own(&kept),
            "request {index} sent again by curl: the same headers"
        );
    }
    // A plain JSON request still reads as one: the body as it is, the URL unquoted.
    let body = r#"{"accountId":1,"events":[]}"#;
    inspected
        .post(&[("x-trace", "plain")], body.to_owned())
        .await;
    let key = next_key(&store, true, &mut accepted_id).await;
    let command = curl_command_on_page(&inspected.page(&format!("/requests/{key}")).await);
    assert_eq!(
        command,
        format!(
            "printf '{body}' \\\n  | curl -X POST http://{}/webhook \\\n  -H 'x-trace: plain' \\\n  \
             -H 'content-type: application/json' \\\n  --data-binary @-",
            inspected.addr
        )
    );
    inspected.stop().await;
}

/// The key of the next kept request of one kind after `previous` (its id, updated), once it
/// is kept (refusals are kept after the answer).
async fn next_key(store: &TestStore, accepted: bool, previous: &mut i64) -> String {
    let (table, prefix) = if accepted {
        ("{requests}", "a")
    } else {
        ("{refused}", "r")
    };
    let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
    let newest = std::cell::Cell::new(0);
    let kept = wait_until(Duration::from_secs(10), || async {
        newest.set(store.scalar(&sql).await);
        newest.get() > *previous
    })
    .await;
    assert!(kept, "a request is kept in {table}");
    *previous = newest.get();
    format!("{prefix}{}", newest.get())
}

/// The kept request, from the inspector's capture download.
async fn capture(inspected: &Inspected, key: &str) -> CaptureRecord {
    let download = inspected.get(&format!("/download?request={key}")).await;
    let line = String::from_utf8(download.body.to_vec()).unwrap();
    CaptureRecord::from_json_line(line.trim_end()).unwrap()
}

/// The text of the page's curl command, as a browser shows (and copies) it.
fn curl_command_on_page(page: &str) -> String {
    let start = page
        .find("<pre id=\"curl\" aria-label=\"curl command\">")
        .unwrap_or_else(|| panic!("no curl command in {page}"));
    let rest = &page[start..];
    let text = &rest[rest.find('>').unwrap() + 1..rest.find("</pre>").unwrap()];
    assert!(!text.contains('<'), "plain text: {text}");
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// What the recorder saw curl called with, read as curl reads its arguments.
#[derive(Debug)]
struct CurlCall {
    method: String,
    url: String,
    /// The headers curl sends beyond its own: `-H 'name: value'`, `-H 'name;'` (empty).
    headers: Vec<(String, String)>,
    stdin: Vec<u8>,
}

/// Runs `command` with `shell` in an empty directory, `curl` on `PATH` being a recorder of its
/// arguments and standard input; asserts it ran once and left the directory empty.
fn run_with_recorder(shell: &str, command: &str) -> CurlCall {
    let root = tempfile::tempdir().unwrap();
    let (bin, records, work) = (
        root.path().join("bin"),
        root.path().join("records"),
        root.path().join("work"),
    );
    for dir in [&bin, &records, &work] {
        std::fs::create_dir(dir).unwrap();
    }
    let recorder = bin.join("curl");
    std::fs::write(
        &recorder,
        "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$RECORDS/argv.$$\"\ncat > \"$RECORDS/stdin.$$\"\n",
    )
    .unwrap();
    make_executable(&recorder);
    let script = root.path().join("pasted.sh");
    std::fs::write(&script, command).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = Command::new(shell)
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("RECORDS", &records)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{shell}: {output:?}\n{command}"
    );
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(
        left.is_empty(),
        "{shell} created {left:?} running\n{command}"
    );
    let recorded: BTreeSet<String> = std::fs::read_dir(&records)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let runs: Vec<&String> = recorded
        .iter()
        .filter(|name| name.starts_with("argv."))
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "{shell} ran curl once: {recorded:?}\n{command}"
    );
    let pid = runs[0].trim_start_matches("argv.");
    let argv = std::fs::read(records.join(format!("argv.{pid}"))).unwrap();
    let stdin = std::fs::read(records.join(format!("stdin.{pid}"))).unwrap();
    let arguments: Vec<String> = argv
        .split(|byte| *byte == 0)
        .map(|part| String::from_utf8(part.to_vec()).unwrap())
        .collect();
    // `printf '%s\0'` ends every argument with a NUL: the last part is empty.
    let arguments = &arguments[..arguments.len() - 1];
    read_curl_arguments(arguments, stdin, command)
}

/// Reads curl's arguments as curl does, for the options Copy as curl may use; any other
/// option fails the test.
fn read_curl_arguments(arguments: &[String], stdin: Vec<u8>, command: &str) -> CurlCall {
    let mut call = CurlCall {
        method: String::new(),
        url: String::new(),
        headers: Vec::new(),
        stdin: Vec::new(),
    };
    let mut reads_stdin = false;
    let (mut globoff, mut path_as_is) = (false, false);
    let mut removed = Vec::new();
    let mut arguments = arguments.iter();
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().expect("an option's value").clone();
        match argument.as_str() {
            "-X" => call.method = value(),
            "-H" => {
                let header = value();
                if let Some((name, value)) = header.split_once(": ") {
                    call.headers.push((name.to_owned(), value.to_owned()));
                } else if let Some(name) = header.strip_suffix(';') {
                    call.headers.push((name.to_owned(), String::new()));
                } else if let Some(name) = header.strip_suffix(':') {
                    removed.push(name.to_ascii_lowercase());
                } else {
                    panic!("header {header:?} in {command}");
                }
            }
            "--data-binary" => {
                assert_eq!(value(), "@-", "the body comes from standard input");
                reads_stdin = true;
            }
            "--globoff" => globoff = true,
            "--path-as-is" => path_as_is = true,
            option if option.starts_with('-') => panic!("unexpected option {option}: {command}"),
            url => {
                assert!(call.url.is_empty(), "one URL: {command}");
                call.url = url.to_owned();
            }
        }
    }
    if reads_stdin {
        call.stdin = stdin;
        // curl would add a form content type to a body sent without one.
        let typed = call
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        assert!(
            typed || removed == ["content-type"],
            "no content type of curl's own: {command}"
        );
    } else {
        assert!(stdin.is_empty(), "curl had no body to read: {command}");
    }
    let path = call.url.split_once("//").map_or("", |(_, rest)| rest);
    assert!(
        globoff || !path.contains(['[', ']', '{', '}']),
        "curl would expand the globs of {}",
        call.url
    );
    assert!(
        path_as_is || !(path.contains("/./") || path.contains("/../")),
        "curl would squash the dot segments of {}",
        call.url
    );
    call
}

/// Runs `command` with the real curl, in an empty directory, quietly.
fn run_real_curl(command: &str) {
    let root = tempfile::tempdir().unwrap();
    let script = root.path().join("pasted.sh");
    std::fs::write(&script, format!("{command} --silent --output /dev/null")).unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(&work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}\n{command}");
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
