//! Throwaway PostgreSQL servers for tests (feature `test-postgres`), shared by the receiver's,
//! the sender's and the integration tests so that each store suite runs on a real server.
//!
//! [`test_database`] hands a test a fresh, empty database:
//! - on the server named by `TEST_DATABASE_URL` (a superuser URL) when it is set;
//! - else on a cluster this process starts once from the installed PostgreSQL binaries
//!   (`/usr/lib/postgresql/*/bin`, `PG_BIN`, or `pg_config --bindir`), with its own data
//!   directory, socket directory and free loopback port;
//! - else nothing: under `CI=true` that is a failure (a panic); elsewhere a loud `SKIPPED`
//!   line on standard error and `None`.
//!
//! [`TestCluster::start`] gives a test a cluster of its own, for tests that stop and restart
//! the server. Every cluster is stopped when its [`TestCluster`] is dropped, and also by a
//! watchdog process when the test process ends in any way (a panic that aborts, SIGKILL), so
//! no server outlives its tests.
//!
//! `initdb` refuses to run as root, so as root the server runs as the `postgres` user.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Writes a store-suite case once and runs it on each store: the case is a function of a
/// `Harness` (the caller's type, with `Harness::sqlite()` and `Harness::postgres(what) ->
/// Option<Harness>`), and the macro makes a test `sqlite` and a test `postgres` in a module
/// named after the case. The `postgres` test is skipped loudly where PostgreSQL is missing
/// (`Harness::postgres` gives `None`, see [`test_database`]).
///
/// ```text
/// on_each_store! {
/// #[tokio::test]
/// async fn order_holds(harness: Harness) { /* … */ }
/// }
/// ```
#[macro_export]
macro_rules! on_each_store {
    (#[test] fn $name:ident($harness:ident: Harness) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn case($harness: Harness) $body

            #[test]
            fn sqlite() {
                case(Harness::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(harness) = Harness::postgres(stringify!($name)) {
                    case(harness);
                }
            }
        }
    };
    (#[$test:meta] async fn $name:ident($harness:ident: Harness) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($harness: Harness) $body

            #[$test]
            async fn sqlite() {
                case(Harness::sqlite()).await;
            }

            #[$test]
            async fn postgres() {
                if let Some(harness) = Harness::postgres(stringify!($name)) {
                    case(harness).await;
                }
            }
        }
    };
}

/// The environment variable naming an existing server to test against instead.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// The superuser password of the clusters started here (TCP connections need it; the socket
/// trusts local connections). Test-only, so a fixed value is fine.
pub const SUPERUSER_PASSWORD: &str = "pg-test-password";

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh database for one test, or `None` (after a loud `SKIPPED` line) where no PostgreSQL
/// can be had. `what` names the test in that line.
///
/// # Panics
/// Under `CI=true` when no PostgreSQL can be had, or when the database cannot be created.
pub fn test_database(what: &str) -> Option<String> {
    let created = match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.is_empty() => create_database_at(&url),
        _ => match shared_cluster() {
            Ok(cluster) => cluster.create_database(),
            Err(error) => {
                skip_or_fail(what, &error);
                return None;
            }
        },
    };
    match created {
        Ok(url) => Some(url),
        Err(error) => panic!("creating a test database for {what}: {error:#}"),
    }
}

/// Under `CI=true` a missing PostgreSQL fails the test; elsewhere it is skipped, loudly.
///
/// # Panics
/// Under `CI=true`.
pub fn skip_or_fail(what: &str, why: &anyhow::Error) {
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{what} needs PostgreSQL, and CI must have it: {why:#}");
    }
    eprintln!(
        "\n*** SKIPPED: {what} needs PostgreSQL: {why:#}\n*** install postgresql (Debian: apt-get install postgresql) or set {TEST_DATABASE_URL}\n"
    );
}

/// The cluster shared by every test of this process, started on first use.
fn shared_cluster() -> anyhow::Result<&'static TestCluster> {
    static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| TestCluster::start().map_err(|error| format!("{error:#}")))
        .as_ref()
        .map_err(|error| anyhow::anyhow!("{error}"))
}

/// A PostgreSQL cluster of its own, stopped on drop.
pub struct TestCluster {
    bin_dir: PathBuf,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    settings: Vec<(String, String)>,
}

impl TestCluster {
    /// Initialises and starts a cluster on a free loopback port.
    ///
    /// # Errors
    /// No PostgreSQL binaries, or the cluster would not start.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with_settings(&[])
    }

    /// Like [`TestCluster::start`], with extra server settings (`-c name=value`), for example
    /// `ssl=on` and its certificate files.
    ///
    /// # Errors
    /// As [`TestCluster::start`].
    pub fn start_with_settings(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "pg-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let run_as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let cluster = Self {
            data_dir: root.join("data"),
            socket_dir: root.join("socket"),
            bin_dir,
            root,
            port: 0,
            run_as_postgres,
            settings: settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        };
        cluster.init()?;
        let mut cluster = cluster;
        let mut last_error = None;
        // A free port is found by binding port 0 and letting it go; another process may take
        // it in between, so a start that fails is tried again on another port.
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the server did not start")))
    }

    /// The loopback TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory (for server settings and files a test places there).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A superuser URL over TCP to `database`, with the password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Creates a fresh empty database and returns its URL (TCP, with the password).
    ///
    /// # Errors
    /// The server refused.
    pub fn create_database(&self) -> anyhow::Result<String> {
        create_database_at(&self.url("postgres"))
    }

    /// Stops the server (fast shutdown), keeping its data, to test an outage.
    ///
    /// # Errors
    /// `pg_ctl` failed.
    pub fn stop(&self) -> anyhow::Result<()> {
        let status = self
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .status()
            .context("running pg_ctl stop")?;
        anyhow::ensure!(status.success(), "pg_ctl stop failed: {status}");
        Ok(())
    }

    /// Starts the server again after [`TestCluster::stop`], on the same port and data.
    ///
    /// # Errors
    /// It did not start.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.start_server()
    }

    fn init(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.socket_dir)?;
        let password_file = self.root.join("password");
        std::fs::File::create(&password_file)?.write_all(SUPERUSER_PASSWORD.as_bytes())?;
        if self.run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&self.root)
                .status()
                .context("running chown")?;
            anyhow::ensure!(
                status.success(),
                "chown postgres {} failed",
                self.root.display()
            );
        }
        let output = self
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ])
            .args(["--no-sync", "--locale=C.UTF-8"])
            .arg("--pwfile")
            .arg(&password_file)
            .arg("-D")
            .arg(&self.data_dir)
            .output()
            .context("running initdb")?;
        anyhow::ensure!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Starts `postgres` under a watchdog shell that stops it when this process is gone.
    fn start_server(&self) -> anyhow::Result<()> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=200 -c shared_buffers=64MB",
            self.port,
            self.socket_dir.display()
        );
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let log = self.root.join("server.log");
        // When the test process is gone the watchdog also removes the cluster's files (a shared
        // cluster lives in a static, which is never dropped).
        // `[ -d /proc/PID ]` rather than `kill -0`: the watchdog may run as `postgres`, which may
        // not signal a root test process but can always see it.
        let script = format!(
            r#""$0" -D "$1" {options} >>"$2" 2>&1 &
pg=$!
while kill -0 $pg 2>/dev/null && [ -d /proc/{parent} ]; do sleep 0.2; done
kill -INT $pg 2>/dev/null
wait $pg
[ -d /proc/{parent} ] || rm -rf "$3""#,
            parent = std::process::id()
        );
        self.command("sh")
            .arg("-c")
            .arg(script)
            .arg(self.bin_dir.join("postgres"))
            .arg(&self.data_dir)
            .arg(&log)
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = self
                .command("pg_isready")
                .arg("-q")
                .arg("-h")
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!("postgres did not accept connections in {START_TIMEOUT:?}: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command from the server's bin directory (or `sh`, `chown`), as `postgres` when root.
    fn command(&self, program: &str) -> Command {
        let path = match program {
            "sh" => PathBuf::from("sh"),
            _ => self.bin_dir.join(program),
        };
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Creates a database named after this process and a counter on the server of `admin_url`,
/// and returns the URL of the new database.
fn create_database_at(admin_url: &str) -> anyhow::Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin = crate::postgres::DatabaseUrl::parse(admin_url)?;
    let config = admin.config().clone();
    let statement = format!("CREATE DATABASE {name}");
    // Its own thread and runtime, so that a test may call this inside or outside tokio.
    std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            let connection = tokio::spawn(connection);
            client.batch_execute(&statement).await?;
            drop(client);
            let _ = connection.await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread creating the database panicked"))?
    .with_context(|| format!("creating database {name} on {admin}"))?;
    Ok(replace_database(admin_url, &name))
}

/// `url` with its database path replaced by `database`.
fn replace_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.split_once('?').map(|(_, query)| query);
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// The directory of `initdb`, `postgres`, `pg_ctl` and `pg_isready`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output();
    if let Ok(output) = output {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    anyhow::bail!(
        "no PostgreSQL server binaries (looked in /usr/lib/postgresql/*/bin, PG_BIN, pg_config)"
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_keeping_the_rest() {
        assert_eq!(
            replace_database("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            replace_database("postgres://u@h/postgres?sslmode=require", "t1"),
            "postgres://u@h/t1?sslmode=require"
        );
        assert_eq!(
            replace_database("postgres://u@h", "t1"),
            "postgres://u@h/t1"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_test_database_is_empty_and_usable_and_a_cluster_restarts() {
        let Some(url) = test_database("common::test_postgres self-test") else {
            return;
        };
        let url = crate::postgres::DatabaseUrl::parse(&url).expect("valid url");
        let pool = url.pool("self-test", 2).expect("pool");
        let client = pool.get().await.expect("connects");
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .expect("query")
            .get(0);
        assert_eq!(tables, 0);
        drop(client);

        if std::env::var(TEST_DATABASE_URL).is_ok() {
            return;
        }
        let cluster = TestCluster::start().expect("own cluster");
        let database = cluster.create_database().expect("database");
        let pool = crate::postgres::DatabaseUrl::parse(&database)
            .expect("url")
            .pool("self-test", 1)
            .expect("pool");
        pool.get()
            .await
            .expect("up")
            .batch_execute("CREATE TABLE t (x int)")
            .await
            .expect("create");
        cluster.stop().expect("stops");
        assert!(
            pool.get().await.is_err() || {
                // A pooled connection may still look open until it is used.
                pool.get()
                    .await
                    .expect("object")
                    .batch_execute("SELECT 1")
                    .await
                    .is_err()
            }
        );
        cluster.restart().expect("starts again");
        let client = pool.get().await.expect("reconnects");
        client
            .batch_execute("INSERT INTO t VALUES (1)")
            .await
            .expect("data kept");
    }
}
