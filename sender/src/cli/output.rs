//! How the commands print a record with `--json`.

use common::outln;
use common::text::printable_json;
use serde_json::Value;

/// Prints one JSON record on a line of its own (a closed pipe ends the command quietly). Text
/// that came from elsewhere (an endpoint's answer, a captured header, a name typed on the
/// pages) may hold terminal controls or bidirectional overrides that JSON leaves as they are:
/// they are written as JSON escapes, so the line reads safely and parses to the same value.
///
/// # Errors
/// Standard output cannot be written.
pub(super) fn print_json(value: &Value) -> anyhow::Result<()> {
    outln!("{}", printable_json(&value.to_string()))
}
