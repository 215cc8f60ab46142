//! The `sender` command.
fn main() -> std::process::ExitCode {
    sender::cli_main()
}
