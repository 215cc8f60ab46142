//! External programs some tests lean on (bash, man, Python packages): found, or installed from
//! PyPI where that is how they come, or else the test fails under `CI=true` and is skipped,
//! loudly, elsewhere.

use std::process::{Command, Stdio};

/// Whether `program --version` runs. When it does not: under `CI=true` a panic (CI installs
/// every part the tests need, so its absence there is a broken CI); elsewhere a loud
/// `SKIPPED` line on standard error and `false`.
pub fn program(program: &str, what: &str, install: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    found || skip_or_fail(what, &format!("`{program}` is missing ({install})"))
}

/// Whether `python3` can import `module`, installing `pip_package` from PyPI first when it
/// cannot (so the README's test command works on a fresh machine); when it still cannot, as
/// [`program`].
pub fn python_module(module: &str, pip_package: &str, what: &str) -> bool {
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if importable() {
        return true;
    }
    let _ = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            pip_package,
        ])
        .status();
    importable()
        || skip_or_fail(
            what,
            &format!("python3 cannot import {module} (python3 -m pip install {pip_package})"),
        )
}

/// Under `CI=true`: panics. Elsewhere: prints a loud `SKIPPED` line and gives `false`.
fn skip_or_fail(what: &str, why: &str) -> bool {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{what}: {why}, and CI must have it");
    }
    eprintln!("\n*** SKIPPED: {what}: {why}\n");
    false
}
