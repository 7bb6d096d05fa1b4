//! [`PostgresServer`]: a throwaway PostgreSQL cluster on a free loopback port.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::FixtureError;
use super::process::{self, Signal};

const HINT: &str = "PostgreSQL server binaries not found (looked at $PG_BINDIR, `pg_config \
--bindir`, /usr/lib/postgresql/*/bin and PATH): install them with `apt-get install postgresql` \
or run `cargo xtask services up`";
/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a start or restart (including crash recovery) may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client program (`createdb`, `psql`) may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGSTOP or SIGCONT may take to show in `/proc`.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at finding a free port at start.
const PORT_ATTEMPTS: usize = 5;
/// The database [`PostgresServer::url`] names.
const DATABASE: &str = "test";

/// A PostgreSQL cluster of its own for a fault test: a fresh `initdb` in a temporary directory,
/// a free loopback port, trust authentication for user `postgres`, database `test`.
///
/// - `initdb` and `postgres` run as the `postgres` OS user when this process is root (the
///   temporary directory is handed to that user); otherwise as the current user.
/// - The postmaster is a direct child (no `pg_ctl` daemon), started with `-c fsync=off
///   -c full_page_writes=off -c synchronous_commit=off`; its pid is checked against the first
///   line of `postmaster.pid`. Output goes to `postgres.log` in the temporary directory.
/// - Signals target the postmaster and its own child processes (found by parent pid in
///   `/proc`), never a process found by name.
/// - [`restart`](Self::restart) reuses the port and the data directory: committed data survives a
///   [`stop`](Self::stop), and a [`kill`](Self::kill) (crash recovery) too when started with
///   `synchronous_commit=on` (see [`start_with`](Self::start_with)).
/// - Dropping it kills the postmaster and its children and removes the temporary directory.
///
/// ```no_run
/// # async fn demo() -> Result<(), layercake_testkit::server::FixtureError> {
/// use layercake_testkit::server::PostgresServer;
/// let mut pg = PostgresServer::start_with(&[("synchronous_commit", "on")]).await?;
/// pg.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)").await?;
/// pg.kill().await?;
/// pg.restart().await?;
/// assert_eq!(pg.psql("SELECT v FROM t").await?, "1");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    bindir: PathBuf,
    /// `(uid, gid)` of the `postgres` OS user when running as root.
    owner: Option<(u32, u32)>,
    /// Extra `-c name=value` settings, kept for restarts.
    settings: Vec<String>,
    child: Option<Child>,
    /// The postmaster pid, from `postmaster.pid`.
    postmaster: Option<u32>,
    frozen: bool,
}

/// The outcome of one launch attempt.
enum Launch {
    Ready(Child, u32),
    PortBusy(String),
}

impl PostgresServer {
    /// Creates a cluster (`initdb`), starts it on a free loopback port, waits until it accepts
    /// connections and creates database `test`.
    ///
    /// # Errors
    /// [`FixtureError::NotFound`] when the server binaries (or, as root, the `postgres` OS user)
    /// are missing; otherwise when a step fails or does not finish in time (with the log tail).
    pub async fn start() -> Result<Self, FixtureError> {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with extra server settings, passed as `-c name=value` after the
    /// defaults (so they win) and kept for restarts.
    ///
    /// - E.g. `("synchronous_commit", "on")` so that a committed row survives
    ///   [`kill`](Self::kill) (the default `off` may lose the last ~200 ms of commits to a
    ///   SIGKILL), or `("max_connections", "10")` for pool-exhaustion tests.
    ///
    /// # Errors
    /// As [`start`](Self::start); an unknown setting makes the server exit at start.
    pub async fn start_with(settings: &[(&str, &str)]) -> Result<Self, FixtureError> {
        let settings = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let bindir = find_bindir()?;
        let owner = if process::is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("layercake-pg-")
            .tempdir()
            .map_err(|e| FixtureError::io("creating a temporary directory for PostgreSQL", e))?;
        let sockets = dir.path().join("sock");
        std::fs::create_dir(&sockets)
            .map_err(|e| FixtureError::io(format!("creating {}", sockets.display()), e))?;
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), sockets.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
                    FixtureError::io(format!("handing {} to user postgres", path.display()), e)
                })?;
            }
        }
        let mut server = Self {
            port: 0,
            dir,
            bindir,
            owner,
            settings,
            child: None,
            postmaster: None,
            frozen: false,
        };
        server.initdb().await?;
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = process::free_port()?;
            match server.launch().await? {
                Launch::Ready(child, pm) => {
                    server.child = Some(child);
                    server.postmaster = Some(pm);
                    server.client("createdb", &[DATABASE]).await?;
                    return Ok(server);
                }
                Launch::PortBusy(detail) => last = detail,
            }
        }
        Err(FixtureError::failed(
            format!("starting PostgreSQL: no free port after {PORT_ATTEMPTS} attempts"),
            last,
        ))
    }

    /// `postgres://postgres@127.0.0.1:<port>/test`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The loopback port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, e.g. as the upstream of a [`FaultProxy`](crate::proxy::FaultProxy).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The postmaster pid; `None` after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.postmaster
    }

    /// The pids of the postmaster's child processes (backends, checkpointer, …) right now.
    pub fn child_pids(&self) -> Vec<u32> {
        self.postmaster
            .map(process::children_of)
            .unwrap_or_default()
    }

    /// Whether the server runs (frozen counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the server is frozen by [`freeze`](Self::freeze).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The data directory, kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log (`postgres.log`, also holds `initdb`'s output).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Whether the server answers an `SSLRequest` (one byte, `N` or `S`) within `timeout`.
    ///
    /// - The postmaster forks a process to answer, so a frozen server does not answer.
    pub async fn ping(&self, timeout: Duration) -> bool {
        ping(self.port, timeout).await
    }

    /// Runs `sql` with `psql` against database `test` and returns its unaligned, tuples-only
    /// output, trimmed (`SELECT 1` → `"1"`).
    ///
    /// # Errors
    /// When `psql` fails (its stderr is in the error) or takes longer than 30 s.
    pub async fn psql(&self, sql: &str) -> Result<String, FixtureError> {
        self.client(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                DATABASE,
                "-c",
                sql,
            ],
        )
        .await
    }

    /// Fast shutdown (SIGINT to the postmaster), waiting until it exited.
    ///
    /// - A frozen server is thawed first. Does nothing when the server is not running.
    ///
    /// # Errors
    /// When the signal cannot be sent or the server did not exit within 30 s (it is then killed).
    pub async fn stop(&mut self) -> Result<(), FixtureError> {
        let Some(pm) = self.postmaster else {
            return Ok(());
        };
        if self.frozen {
            self.thaw().await?;
        }
        process::signal(pm, Signal::Int)?;
        let child_exited = match self.child.as_mut() {
            Some(child) => process::wait_exit(child, STOP_TIMEOUT).await?.is_some(),
            None => true,
        };
        let exited = child_exited && process::wait_gone(&[pm], STOP_TIMEOUT).await;
        if exited {
            self.child = None;
            self.postmaster = None;
            Ok(())
        } else {
            self.kill().await?;
            Err(FixtureError::Timeout {
                context: format!(
                    "stopping PostgreSQL (postmaster {pm}) with SIGINT; it was killed"
                ),
                waited: STOP_TIMEOUT,
                detail: process::log_since(&self.log_path(), 0, 20),
            })
        }
    }

    /// Kills the postmaster and its child processes (SIGKILL) and waits until they are gone, so
    /// that the port is free and connections fail.
    ///
    /// - The postmaster is frozen first so that it forks nothing while its children are listed.
    /// - Does nothing when the server is not running.
    ///
    /// # Errors
    /// When the postmaster cannot be signalled, or the processes outlive 10 s.
    pub async fn kill(&mut self) -> Result<(), FixtureError> {
        let Some(pm) = self.postmaster else {
            return Ok(());
        };
        let children = kill_all(pm, self.child.as_mut());
        if let Some(child) = self.child.as_mut() {
            process::wait_exit(child, STOP_TIMEOUT).await?;
        }
        self.child = None;
        self.postmaster = None;
        self.frozen = false;
        let mut pids = children;
        pids.push(pm);
        if process::wait_gone(&pids, Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(FixtureError::failed(
                "killing PostgreSQL",
                format!("processes {pids:?} outlived SIGKILL"),
            ))
        }
    }

    /// Freezes the server: SIGSTOP of the postmaster, then (once it is stopped, so that it forks
    /// nothing more) of each of its child processes.
    ///
    /// - Returns once `/proc` shows them all stopped.
    ///
    /// # Errors
    /// When the server is not running, the postmaster cannot be signalled, or the processes are
    /// not seen stopped within 5 s.
    pub async fn freeze(&mut self) -> Result<(), FixtureError> {
        let pm = self.running_pid("freeze")?;
        process::signal(pm, Signal::Stop)?;
        self.frozen = true;
        settle(&[pm], true).await?;
        let children = process::children_of(pm);
        process::signal_all(&children, Signal::Stop);
        settle(&children, true).await
    }

    /// Thaws a frozen server: SIGCONT of the postmaster's child processes, then of the
    /// postmaster.
    ///
    /// - Returns once `/proc` shows them all running again.
    ///
    /// # Errors
    /// When the server is not running, the postmaster cannot be signalled, or a process is still
    /// seen stopped after 5 s.
    pub async fn thaw(&mut self) -> Result<(), FixtureError> {
        let pm = self.running_pid("thaw")?;
        let children = process::children_of(pm);
        process::signal_all(&children, Signal::Cont);
        process::signal(pm, Signal::Cont)?;
        self.frozen = false;
        let mut pids = children;
        pids.push(pm);
        settle(&pids, false).await
    }

    /// Starts the server again on the same port and data directory and waits until it accepts
    /// connections (after crash recovery when it was killed).
    ///
    /// - A running server is stopped first ([`stop`](Self::stop)).
    /// - While the port is still held, the launch is retried for up to 60 s.
    ///
    /// # Errors
    /// When the server cannot be started within 60 s.
    pub async fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop().await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch().await? {
                Launch::Ready(child, pm) => {
                    self.child = Some(child);
                    self.postmaster = Some(pm);
                    return Ok(());
                }
                Launch::PortBusy(detail) if Instant::now() >= deadline => {
                    return Err(FixtureError::Timeout {
                        context: format!("restarting PostgreSQL on port {}", self.port),
                        waited: START_TIMEOUT,
                        detail,
                    });
                }
                Launch::PortBusy(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn running_pid(&self, what: &str) -> Result<u32, FixtureError> {
        self.postmaster.ok_or_else(|| {
            FixtureError::failed(format!("cannot {what} PostgreSQL"), "it is not running")
        })
    }

    /// A command running `program` from the bin directory as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            // std drops the supplementary groups of root when the uid changes.
            cmd.gid(gid).uid(uid);
        }
        cmd
    }

    async fn initdb(&self) -> Result<(), FixtureError> {
        let log = self.log_path();
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdout(process::log_stdio(&log)?)
            .stderr(process::log_stdio(&log)?);
        let mut child = cmd
            .spawn()
            .map_err(|e| process::spawn_error("initdb", HINT, e))?;
        match process::wait_exit(&mut child, INITDB_TIMEOUT).await? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(FixtureError::failed(
                format!("initdb ({status})"),
                process::log_since(&log, 0, 20),
            )),
            None => {
                process::kill_and_reap_blocking(&mut child, STOP_TIMEOUT);
                Err(FixtureError::Timeout {
                    context: "initdb".to_owned(),
                    waited: INITDB_TIMEOUT,
                    detail: process::log_since(&log, 0, 20),
                })
            }
        }
    }

    /// Spawns the postmaster on `self.port` and waits until it accepts connections, exits, or
    /// 60 s pass.
    async fn launch(&self) -> Result<Launch, FixtureError> {
        let log = self.log_path();
        let offset = process::log_len(&log);
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
            .args(["-c", "shared_buffers=32MB"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(process::log_stdio(&log)?)
            .stderr(process::log_stdio(&log)?);
        let mut child = cmd
            .spawn()
            .map_err(|e| process::spawn_error("postgres", HINT, e))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| FixtureError::io("waiting for PostgreSQL", e))?
            {
                let detail = process::log_since(&log, offset, 20);
                if detail.contains("could not bind") || detail.contains("Address already in use") {
                    return Ok(Launch::PortBusy(detail));
                }
                return Err(FixtureError::failed(
                    format!(
                        "PostgreSQL on port {} exited at start ({status})",
                        self.port
                    ),
                    detail,
                ));
            }
            if self.is_ready().await {
                let pm = self.postmaster_pid().unwrap_or(child.id());
                return Ok(Launch::Ready(child, pm));
            }
            if Instant::now() >= deadline {
                process::kill_and_reap_blocking(&mut child, STOP_TIMEOUT);
                return Err(FixtureError::Timeout {
                    context: format!(
                        "waiting for PostgreSQL on port {} to accept connections",
                        self.port
                    ),
                    waited: START_TIMEOUT,
                    detail: process::log_since(&log, offset, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_isready`: accepting connections (not starting up, not in recovery).
    async fn is_ready(&self) -> bool {
        let mut cmd = tokio::process::Command::new(self.bindir.join("pg_isready"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", "postgres", "-t", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
        matches!(
            tokio::time::timeout(Duration::from_secs(5), cmd.status()).await,
            Ok(Ok(status)) if status.success()
        )
    }

    /// The first line of `<data>/postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Runs client `program` (`createdb`, `psql`) over TCP as user `postgres`; its trimmed stdout.
    async fn client(&self, program: &str, args: &[&str]) -> Result<String, FixtureError> {
        let mut cmd = tokio::process::Command::new(self.bindir.join(program));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true);
        let context = format!("{program} {}", args.join(" "));
        let out = tokio::time::timeout(CLIENT_TIMEOUT, cmd.output())
            .await
            .map_err(|_| FixtureError::Timeout {
                context: context.clone(),
                waited: CLIENT_TIMEOUT,
                detail: String::new(),
            })?
            .map_err(|e| process::spawn_error(program, HINT, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(FixtureError::failed(
                format!("{context} ({})", out.status),
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(pm) = self.postmaster {
            kill_all(pm, self.child.as_mut());
        }
        if let Some(child) = self.child.as_mut() {
            process::kill_and_reap_blocking(child, STOP_TIMEOUT);
        }
    }
}

/// Waits until `/proc` shows `pids` stopped (or running again).
async fn settle(pids: &[u32], stopped: bool) -> Result<(), FixtureError> {
    if process::wait_stopped(pids, stopped, SIGNAL_TIMEOUT).await {
        Ok(())
    } else {
        Err(FixtureError::Timeout {
            context: format!(
                "waiting for PostgreSQL processes {pids:?} to {}",
                if stopped { "stop" } else { "continue" }
            ),
            waited: SIGNAL_TIMEOUT,
            detail: String::new(),
        })
    }
}

/// SIGSTOPs the postmaster (so it forks nothing more), lists its children, SIGKILLs them and
/// then it; returns the children's pids.
fn kill_all(pm: u32, child: Option<&mut Child>) -> Vec<u32> {
    process::signal_all(&[pm], Signal::Stop);
    // A signal lands asynchronously: list the children once the postmaster cannot fork.
    process::wait_stopped_blocking(pm, Duration::from_secs(1));
    let children = process::children_of(pm);
    process::signal_all(&children, Signal::Kill);
    process::signal_all(&[pm], Signal::Kill);
    if let Some(child) = child.filter(|c| c.id() != pm) {
        let _ = child.kill();
    }
    children
}

/// The directory holding `initdb`, `postgres`, `pg_isready`, `createdb` and `psql`.
fn find_bindir() -> Result<PathBuf, FixtureError> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from)
        && has_server(&dir)
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    // Debian/Ubuntu: /usr/lib/postgresql/<major>/bin, newest major first.
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| has_server(dir))
        .ok_or_else(|| FixtureError::NotFound {
            program: "initdb/postgres".to_owned(),
            hint: HINT.to_owned(),
        })
}

/// `(uid, gid)` of the `postgres` OS user, for running the server when this process is root.
fn postgres_user() -> Result<(u32, u32), FixtureError> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(FixtureError::NotFound {
            program: "OS user `postgres`".to_owned(),
            hint: "PostgreSQL refuses to run as root and this process is root: create the user \
                   (installing the `postgresql` package does) or run the tests as another user"
                .to_owned(),
        }),
    }
}

/// An `SSLRequest` on `127.0.0.1:port`, answered by one byte `N` or `S`, all within `timeout`.
async fn ping(port: u16, timeout: Duration) -> bool {
    // Length 8, then the SSLRequest code 80877103 (1234 << 16 | 5679).
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(&SSL_REQUEST).await.ok()?;
        let mut reply = [0_u8; 1];
        stream.read_exact(&mut reply).await.ok()?;
        Some(matches!(reply[0], b'N' | b'S'))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

#[cfg(test)]
mod fault {
    use super::*;

    const SHORT: Duration = Duration::from_millis(500);
    const LONG: Duration = Duration::from_secs(10);

    /// One test for the whole life cycle: each `initdb` costs seconds on a busy machine.
    #[tokio::test]
    async fn lifecycle() {
        let mut server = PostgresServer::start_with(&[("synchronous_commit", "on")])
            .await
            .unwrap();
        let port = server.port();
        assert_ne!(port, 5432);
        assert_eq!(
            server.url(),
            format!("postgres://postgres@127.0.0.1:{port}/test")
        );
        assert!(server.ping(LONG).await);
        let pm = server.pid().unwrap();
        assert_eq!(server.postmaster_pid(), Some(pm));
        assert_eq!(
            server.psql("SELECT current_database()").await.unwrap(),
            "test"
        );
        assert_eq!(server.psql("SHOW fsync").await.unwrap(), "off");
        assert_eq!(server.psql("SHOW synchronous_commit").await.unwrap(), "on");
        server
            .psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)")
            .await
            .unwrap();

        // Freeze: the postmaster and every child are stopped, nothing answers. (A frozen
        // postmaster forks nothing, so its list of children is stable; earlier lists may hold
        // backends that exited since.)
        server.freeze().await.unwrap();
        assert_eq!(process::state(pm), Some('T'));
        let children = server.child_pids();
        assert!(
            children.len() >= 3,
            "a postmaster has helper processes: {children:?}"
        );
        for &c in &children {
            assert_eq!(process::state(c), Some('T'), "child {c}");
        }
        assert!(!server.ping(SHORT).await);
        server.thaw().await.unwrap();
        for &c in &children {
            assert_ne!(process::state(c), Some('T'), "child {c}");
        }
        assert!(server.ping(LONG).await);
        assert_eq!(server.psql("SELECT sum(v) FROM t").await.unwrap(), "3");

        // Kill: the postmaster and its children are gone, connections are refused.
        server.psql("INSERT INTO t VALUES (4)").await.unwrap();
        let children = server.child_pids();
        server.kill().await.unwrap();
        assert_eq!(server.pid(), None);
        assert!(!process::alive(pm));
        assert!(children.iter().all(|&c| !process::alive(c)));
        assert!(!server.ping(SHORT).await);
        let refused = TcpStream::connect(server.addr()).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        // Restart after the crash: same port, same data directory, committed rows survive.
        server.restart().await.unwrap();
        assert_eq!(server.port(), port);
        let pm2 = server.pid().unwrap();
        assert_ne!(pm2, pm);
        assert_eq!(server.psql("SELECT sum(v) FROM t").await.unwrap(), "7");

        // Stop (fast shutdown), then restart again.
        server.stop().await.unwrap();
        assert!(!process::alive(pm2));
        assert!(!server.ping(SHORT).await);
        assert!(server.psql("SELECT 1").await.is_err());
        server.restart().await.unwrap();
        assert_eq!(server.psql("SELECT count(*) FROM t").await.unwrap(), "3");

        // Restart of a frozen server thaws and stops it first.
        server.freeze().await.unwrap();
        server.restart().await.unwrap();
        assert!(!server.is_frozen());
        assert_eq!(server.psql("SELECT 1").await.unwrap(), "1");

        // Drop: everything killed, temporary directory removed.
        let pm3 = server.pid().unwrap();
        let children = server.child_pids();
        let dir = server.dir.path().to_owned();
        drop(server);
        assert!(!process::alive(pm3));
        assert!(children.iter().all(|&c| !process::alive(c)));
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn defaults_trade_durability_for_speed() {
        let server = PostgresServer::start().await.unwrap();
        for setting in ["fsync", "full_page_writes", "synchronous_commit"] {
            assert_eq!(
                server.psql(&format!("SHOW {setting}")).await.unwrap(),
                "off",
                "{setting}"
            );
        }
        assert_eq!(
            server.psql("SHOW listen_addresses").await.unwrap(),
            "127.0.0.1"
        );
        assert_eq!(
            server.psql("SELECT current_user").await.unwrap(),
            "postgres"
        );
    }

    #[tokio::test]
    async fn a_bad_setting_fails_with_the_log() {
        let err = PostgresServer::start_with(&[("no_such_setting", "1")])
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited at start"), "{text}");
        assert!(text.contains("no_such_setting"), "{text}");
    }

    #[test]
    fn finds_the_binaries() {
        let dir = find_bindir().unwrap();
        assert!(dir.join("initdb").is_file());
        assert!(dir.join("pg_isready").is_file());
    }
}
