//! The `sender` program, built in this package so the integration tests can run it.
fn main() -> std::process::ExitCode {
    sender::cli_main()
}
