//! The `receiver` program, built in the bench project so `bench/run` measures the real
//! listener from the same release build as its load generators.
fn main() -> std::process::ExitCode {
    receiver::cli_main()
}
