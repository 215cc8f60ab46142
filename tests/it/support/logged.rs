//! A program run as a real process with its standard output and standard error written to
//! files, so a test can read both, as a user would see them, while it runs and after it exits.
//! Files rather than pipes: a chatty process (`RUST_LOG=trace`) never blocks on a full pipe.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running process whose output goes to files; killed (and reaped) when dropped.
pub struct Logged {
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    /// Spawns `command` with standard input closed and both outputs captured.
    pub fn spawn(command: &mut Command) -> Logged {
        let dir = tempfile::tempdir().expect("temp dir for the output");
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let stdout = std::fs::File::create(&stdout_path).expect("stdout file");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn");
        Logged {
            child,
            stdout_path,
            stderr_path,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to standard output so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Waits (bounded) for a complete stdout line starting with `prefix`, and returns it.
    pub async fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stdout();
            // Only lines already ended by a newline: the last one may still be being written.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            if let Some(line) = complete.lines().find(|line| line.starts_with(prefix)) {
                return line.to_owned();
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "exited ({status}) before printing {prefix:?}\nstdout: {text}\nstderr: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line {prefix:?} within {timeout:?}\nstdout: {text}\nstderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) until standard error contains `text`.
    pub async fn wait_for_stderr(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} on stderr within {timeout:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the receiver's `listening on http(s)://ADDR/PATH` line; gives ADDR.
    #[cfg(feature = "receiver-tests")]
    pub async fn wait_listening(&mut self) -> std::net::SocketAddr {
        let line = self
            .wait_for_line("listening on ", Duration::from_secs(15))
            .await;
        line.split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1): the workspace forbids `unsafe`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {timeout:?}\nstderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
