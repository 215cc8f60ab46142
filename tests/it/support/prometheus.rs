//! A Prometheus text exposition read by the official Python client's parser (not our code),
//! for the `/metrics` tests of both programs.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

const PARSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/prometheus_families.py");

/// Whether the parser can run here (installing `prometheus_client` if needed); a test that
/// needs it returns early when not (loudly skipped, failed under `CI=true`).
pub fn parser_available(what: &str) -> bool {
    crate::support::external::python_module("prometheus_client", "prometheus_client", what)
}

/// The families the parser reads in `text`: `{name, type, help, samples: [{name, labels,
/// value}]}` each. Panics with the parser's message when it refuses the text.
pub fn families(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(PARSER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let output = child.wait_with_output().expect("the parser ran");
    assert!(
        output.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .expect("the parser's JSON")
        .as_array()
        .expect("a list of families")
        .clone()
}

/// The value of the sample `name` with exactly `labels`, if the families have it.
pub fn sample(families: &[Value], name: &str, labels: &Value) -> Option<f64> {
    families
        .iter()
        .flat_map(|family| family["samples"].as_array().into_iter().flatten())
        .find(|sample| sample["name"] == name && &sample["labels"] == labels)
        .and_then(|sample| sample["value"].as_f64())
}
