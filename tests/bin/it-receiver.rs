//! The `receiver` program, built in this package so the integration tests can run it.
fn main() -> std::process::ExitCode {
    receiver::cli_main()
}
