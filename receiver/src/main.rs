//! The `receiver` command.
fn main() -> std::process::ExitCode {
    receiver::cli_main()
}
