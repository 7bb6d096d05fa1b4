//! [`RedisServer`]: a throwaway `redis-server` on a free loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::FixtureError;
use super::process::{self, Signal};

const PROGRAM: &str = "redis-server";
const HINT: &str = "redis-server not found on PATH: install it with `apt-get install redis-server` \
or run `cargo xtask services up`";
/// How long a start or restart may take before it fails.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a polite stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGSTOP or SIGCONT may take to show in `/proc`.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at finding a free port at start (another process may take the one picked).
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` of its own for a fault test: a free loopback port, no persistence, a temporary
/// working directory.
///
/// - Started with `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no
///   --daemonize no --dir <tempdir>` as a direct child; its output goes to `redis.log` in the
///   temporary directory.
/// - Every signal targets this server's own pid, never a process found by name.
/// - [`restart`](Self::restart) comes back on the same port, empty (nothing is persisted unless
///   [`start_with`](Self::start_with) turned persistence on).
/// - Dropping it SIGKILLs the server if it still runs and removes the temporary directory.
///
/// ```no_run
/// # async fn demo() -> Result<(), layercake_testkit::server::FixtureError> {
/// use layercake_testkit::server::RedisServer;
/// let mut redis = RedisServer::start().await?;
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.kill().await?; // connections now fail
/// redis.restart().await?; // answers again on the same port
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
    /// Extra command-line arguments, kept for restarts.
    args: Vec<String>,
    child: Option<Child>,
    frozen: bool,
}

/// The outcome of one launch attempt.
enum Launch {
    Ready(Child),
    PortBusy(String),
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    /// [`FixtureError::NotFound`] when `redis-server` is not installed; otherwise when it does not
    /// answer within 15 s (with the tail of its log).
    pub async fn start() -> Result<Self, FixtureError> {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with extra `redis-server` arguments after the defaults (so they
    /// win), kept for restarts: e.g. `["--maxclients", "8"]`, or `["--appendonly", "yes"]` so
    /// that [`restart`](Self::restart) reloads what was written (the AOF lives in the temporary
    /// directory).
    ///
    /// # Errors
    /// As [`start`](Self::start); an invalid argument makes the server exit at start.
    pub async fn start_with(args: &[&str]) -> Result<Self, FixtureError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let dir = tempfile::Builder::new()
            .prefix("layercake-redis-")
            .tempdir()
            .map_err(|e| FixtureError::io("creating a temporary directory for redis-server", e))?;
        let log = dir.path().join("redis.log");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = process::free_port()?;
            match launch(dir.path(), &log, port, &args).await? {
                Launch::Ready(child) => {
                    return Ok(Self {
                        port,
                        dir,
                        log,
                        args,
                        child: Some(child),
                        frozen: false,
                    });
                }
                Launch::PortBusy(detail) => last = detail,
            }
        }
        Err(FixtureError::failed(
            format!("starting redis-server: no free port after {PORT_ATTEMPTS} attempts"),
            last,
        ))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, e.g. as the upstream of a [`FaultProxy`](crate::proxy::FaultProxy).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's pid; `None` after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process runs (frozen counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the server is frozen by [`freeze`](Self::freeze).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The temporary working directory (holds `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server answers `PING` with `+PONG` within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> bool {
        ping(self.port, timeout).await
    }

    /// Stops the server politely (SIGTERM) and waits until it exited.
    ///
    /// - A frozen server is thawed first, so that it can handle the signal.
    /// - Does nothing when the server is not running.
    ///
    /// # Errors
    /// When the signal cannot be sent, or the server did not exit within 10 s (it is then
    /// SIGKILLed).
    pub async fn stop(&mut self) -> Result<(), FixtureError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        if self.frozen {
            process::signal(pid, Signal::Cont)?;
            self.frozen = false;
        }
        process::signal(pid, Signal::Term)?;
        let exited = process::wait_exit(child, STOP_TIMEOUT).await?;
        if exited.is_none() {
            process::kill_and_reap_blocking(child, STOP_TIMEOUT);
        }
        self.child = None;
        match exited {
            Some(_) => Ok(()),
            None => Err(FixtureError::Timeout {
                context: format!(
                    "stopping redis-server (pid {pid}) with SIGTERM; it was SIGKILLed"
                ),
                waited: STOP_TIMEOUT,
                detail: process::log_since(&self.log, 0, 20),
            }),
        }
    }

    /// Kills the server (SIGKILL) and waits until it is gone: connections then fail.
    ///
    /// - Does nothing when the server is not running.
    ///
    /// # Errors
    /// When the process cannot be killed or reaped.
    pub async fn kill(&mut self) -> Result<(), FixtureError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        child
            .kill()
            .map_err(|e| FixtureError::io("killing redis-server", e))?;
        process::wait_exit(child, STOP_TIMEOUT).await?;
        self.child = None;
        self.frozen = false;
        Ok(())
    }

    /// Freezes the server (SIGSTOP of its pid): connections still open, nothing answers.
    ///
    /// - Returns once `/proc` shows the process stopped.
    ///
    /// # Errors
    /// When the server is not running, the signal cannot be sent, or the process is not seen
    /// stopped within 5 s.
    pub async fn freeze(&mut self) -> Result<(), FixtureError> {
        let pid = self.running_pid("freeze")?;
        process::signal(pid, Signal::Stop)?;
        self.frozen = true;
        settle(pid, true).await
    }

    /// Thaws a frozen server (SIGCONT of its pid): it answers again, including what queued up.
    ///
    /// - Returns once `/proc` shows the process running again.
    ///
    /// # Errors
    /// When the server is not running, the signal cannot be sent, or the process is still seen
    /// stopped after 5 s.
    pub async fn thaw(&mut self) -> Result<(), FixtureError> {
        let pid = self.running_pid("thaw")?;
        process::signal(pid, Signal::Cont)?;
        self.frozen = false;
        settle(pid, false).await
    }

    /// Starts the server again on the same port and waits until it answers `PING`.
    ///
    /// - A running server is stopped first ([`stop`](Self::stop)).
    /// - While the port is still held (a socket closing), the launch is retried for up to 15 s.
    /// - The new server is empty unless persistence was turned on (e.g. `--appendonly yes`).
    ///
    /// # Errors
    /// When the server cannot be started on its port within 15 s.
    pub async fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop().await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match launch(self.dir.path(), &self.log, self.port, &self.args).await? {
                Launch::Ready(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Launch::PortBusy(detail) if Instant::now() >= deadline => {
                    return Err(FixtureError::Timeout {
                        context: format!("restarting redis-server on port {}", self.port),
                        waited: START_TIMEOUT,
                        detail,
                    });
                }
                Launch::PortBusy(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn running_pid(&self, what: &str) -> Result<u32, FixtureError> {
        self.pid().ok_or_else(|| {
            FixtureError::failed(format!("cannot {what} redis-server"), "it is not running")
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            process::kill_and_reap_blocking(child, STOP_TIMEOUT);
        }
    }
}

/// Waits until `/proc` shows `pid` stopped (or running again).
async fn settle(pid: u32, stopped: bool) -> Result<(), FixtureError> {
    if process::wait_stopped(&[pid], stopped, SIGNAL_TIMEOUT).await {
        Ok(())
    } else {
        Err(FixtureError::Timeout {
            context: format!(
                "waiting for redis-server (pid {pid}) to {}",
                if stopped { "stop" } else { "continue" }
            ),
            waited: SIGNAL_TIMEOUT,
            detail: String::new(),
        })
    }
}

/// Spawns `redis-server` on `port` and waits until it answers, exits, or 15 s pass.
async fn launch(
    dir: &Path,
    log: &Path,
    port: u16,
    args: &[String],
) -> Result<Launch, FixtureError> {
    let offset = process::log_len(log);
    let mut child = Command::new(PROGRAM)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(process::log_stdio(log)?)
        .stderr(process::log_stdio(log)?)
        .spawn()
        .map_err(|e| process::spawn_error(PROGRAM, HINT, e))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| FixtureError::io("waiting for redis-server", e))?
        {
            let detail = process::log_since(log, offset, 20);
            if detail.contains("Address already in use") {
                return Ok(Launch::PortBusy(detail));
            }
            return Err(FixtureError::failed(
                format!("redis-server on port {port} exited at start ({status})"),
                detail,
            ));
        }
        if ping(port, Duration::from_millis(500)).await {
            return Ok(Launch::Ready(child));
        }
        if Instant::now() >= deadline {
            process::kill_and_reap_blocking(&mut child, STOP_TIMEOUT);
            return Err(FixtureError::Timeout {
                context: format!("waiting for redis-server on port {port} to answer PING"),
                waited: START_TIMEOUT,
                detail: process::log_since(log, offset, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raw `PING\r\n` → `+PONG` on `127.0.0.1:port`, all within `timeout`.
async fn ping(port: u16, timeout: Duration) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = Vec::with_capacity(16);
        let mut buf = [0_u8; 64];
        while !reply.ends_with(b"\r\n") && reply.len() < 64 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Some(reply.starts_with(b"+PONG"))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

#[cfg(test)]
mod fault {
    use super::*;

    const SHORT: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(5);

    /// Sends one RESP command and reads its reply: `lines` CRLF-terminated lines (`+OK` and a
    /// nil `$-1` are one, a bulk string `$2`/`v1` two, `CONFIG GET x` five).
    async fn command(
        stream: &mut TcpStream,
        args: &[&str],
        lines: usize,
    ) -> std::io::Result<String> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(req.as_bytes()).await?;
        let mut reply = Vec::new();
        let mut buf = [0_u8; 256];
        while reply.windows(2).filter(|w| w == b"\r\n").count() < lines {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    async fn connect(server: &RedisServer) -> std::io::Result<TcpStream> {
        TcpStream::connect(server.addr()).await
    }

    #[tokio::test]
    async fn start_freeze_thaw() {
        let mut server = RedisServer::start().await.unwrap();
        assert!(server.ping(LONG).await);
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert_ne!(server.port(), 6379);
        let pid = server.pid().unwrap();
        let mut conn = connect(&server).await.unwrap();
        assert_eq!(
            command(&mut conn, &["SET", "k", "v1"], 1).await.unwrap(),
            "+OK"
        );

        server.freeze().await.unwrap();
        assert!(server.is_frozen());
        assert_eq!(process::state(pid), Some('T'));
        // Connections still open (the kernel accepts), but nothing answers.
        assert!(!server.ping(SHORT).await);
        let get = tokio::time::timeout(SHORT, command(&mut conn, &["GET", "k"], 2)).await;
        assert!(get.is_err(), "a frozen server answered: {get:?}");

        server.thaw().await.unwrap();
        assert!(server.ping(LONG).await);
        // The GET that queued up is answered after the thaw; the connection still works.
        let mut reply = Vec::new();
        let mut buf = [0_u8; 64];
        while !String::from_utf8_lossy(&reply).ends_with("v1\r\n") {
            let n = tokio::time::timeout(LONG, conn.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(n, 0);
            reply.extend_from_slice(&buf[..n]);
        }
        assert_eq!(reply, b"$2\r\nv1\r\n");
        assert_eq!(
            command(&mut conn, &["GET", "k"], 2).await.unwrap(),
            "$2\r\nv1"
        );
        assert_eq!(server.pid(), Some(pid));
    }

    #[tokio::test]
    async fn kill_restart_stop() {
        let mut server = RedisServer::start().await.unwrap();
        let port = server.port();
        let old_pid = server.pid().unwrap();
        let mut conn = connect(&server).await.unwrap();
        assert_eq!(
            command(&mut conn, &["SET", "k", "v"], 1).await.unwrap(),
            "+OK"
        );

        server.kill().await.unwrap();
        assert_eq!(server.pid(), None);
        assert!(!process::alive(old_pid));
        assert!(!server.ping(SHORT).await);
        let refused = connect(&server).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        // The open connection sees the death: EOF or reset.
        let dead = tokio::time::timeout(LONG, command(&mut conn, &["GET", "k"], 2))
            .await
            .unwrap();
        assert!(dead.is_err(), "{dead:?}");

        server.restart().await.unwrap();
        assert_eq!(server.port(), port);
        assert_ne!(server.pid(), Some(old_pid));
        let mut conn = connect(&server).await.unwrap();
        // Nothing is persisted across a restart.
        assert_eq!(command(&mut conn, &["GET", "k"], 1).await.unwrap(), "$-1");

        let pid = server.pid().unwrap();
        server.stop().await.unwrap();
        assert!(!process::alive(pid));
        assert_eq!(
            connect(&server).await.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        // Restart after a polite stop, and from a frozen state (restart stops it first).
        server.restart().await.unwrap();
        server.freeze().await.unwrap();
        server.restart().await.unwrap();
        assert!(server.ping(LONG).await);
        assert!(!server.is_frozen());
        // Stop and kill of a stopped server do nothing.
        server.stop().await.unwrap();
        server.stop().await.unwrap();
        server.kill().await.unwrap();
        assert!(server.freeze().await.is_err());
    }

    #[tokio::test]
    async fn drop_kills_and_cleans_up() {
        let mut server = RedisServer::start().await.unwrap();
        let dir = server.dir().to_owned();
        let pid = server.pid().unwrap();
        server.freeze().await.unwrap();
        assert!(dir.join("redis.log").is_file());
        drop(server);
        assert!(!process::alive(pid));
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn extra_arguments_apply_and_survive_a_restart() {
        let mut server = RedisServer::start_with(&["--maxclients", "7"])
            .await
            .unwrap();
        let mut conn = connect(&server).await.unwrap();
        let reply = command(&mut conn, &["CONFIG", "GET", "maxclients"], 5)
            .await
            .unwrap();
        assert!(reply.contains("maxclients"), "{reply}");
        server.restart().await.unwrap();
        let mut conn = connect(&server).await.unwrap();
        assert_eq!(
            command(&mut conn, &["CONFIG", "GET", "maxclients"], 5)
                .await
                .unwrap(),
            "*2\r\n$10\r\nmaxclients\r\n$1\r\n7"
        );
        let err = RedisServer::start_with(&["--no-such-option", "1"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exited at start"), "{err}");
    }

    #[tokio::test]
    async fn two_servers_get_their_own_ports() {
        let (a, b) = tokio::join!(RedisServer::start(), RedisServer::start());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.port(), b.port());
        assert!(a.ping(LONG).await && b.ping(LONG).await);
    }
}
