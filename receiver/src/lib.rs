//! The receiver (placeholder until its issue lands).

/// Runs the command line.
pub fn cli_main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
