//! How the commands print a record with `--json`.

use common::outln;
use serde_json::Value;

/// Prints one JSON record on a line of its own (a closed pipe ends the command quietly).
///
/// # Errors
/// Standard output cannot be written.
pub(super) fn print_json(value: &Value) -> anyhow::Result<()> {
    outln!("{value}")
}
