//! Standard error, set up once for both programs: `tracing` logs filtered by `RUST_LOG`, and
//! [`tell`] for the lines meant for the person at the terminal.
//!
//! With `--log-format json` every line on standard error is one JSON object, the lines of
//! [`tell`] included, so a log shipper never meets a stray line of prose.

use std::sync::OnceLock;

/// The format of standard error (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What [`init`] was told: the program's name (the `target` of [`tell`]'s records) and whether
/// standard error carries JSON.
struct Setup {
    program: &'static str,
    format: LogFormat,
}

/// Set once by [`init`]; a process has one standard error, so one setting for it is honest.
static SETUP: OnceLock<Setup> = OnceLock::new();

/// Installs the `tracing` subscriber on standard error (filter from `RUST_LOG`, `info` when
/// unset) in `format`, and tells [`tell`] how to write. The first call wins.
pub fn init(program: &'static str, format: LogFormat) {
    let _ = SETUP.set(Setup { program, format });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A line for the person at the terminal, on standard error, whatever `RUST_LOG` says: plain
/// text, or with `--log-format json` a record shaped like the log records. `level` is `INFO`,
/// `WARN` or `ERROR`.
pub fn tell(level: &str, message: impl std::fmt::Display) {
    match SETUP.get() {
        Some(setup) if setup.format == LogFormat::Json => {
            eprintln!("{}", record(setup.program, level, &message.to_string()));
        }
        _ => eprintln!("{message}"),
    }
}

/// The JSON record of one [`tell`] line, with the fields `tracing-subscriber`'s JSON lines have.
fn record(program: &str, level: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "timestamp": verify::timestamp::format_iso_millis(verify::unix_now_ms()),
        "level": level,
        "fields": {"message": message},
        "target": program,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_has_the_shape_of_a_log_line() {
        let value = record("sender", "WARN", "careful \"now\"");
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["target"], "sender");
        assert_eq!(value["fields"]["message"], "careful \"now\"");
        assert!(value["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
}
