//! Private fixtures of the layercake-postgres tests: a schema per test on the shared server,
//! raw table access for the conformance suite, and a throwaway cluster for fault tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "fixtures shared by several test binaries; each uses a part"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake_core::{Key, ManualClock};
use layercake_postgres::{PostgresBackend, PostgresConfig};
use layercake_testkit::conformance::RawStore;
use layercake_testkit::services::{require_postgres, unique_id};
use tokio_postgres::NoTls;

/// A connected plain tokio-postgres client (its connection runs as a task).
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let cfg = tokio_postgres::Config::from_str(url).unwrap();
    let (client, conn) = cfg.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A schema of its own on the shared server, dropped (with everything in it) on drop.
pub struct TestSchema {
    pub url: String,
    pub schema: String,
}

impl TestSchema {
    pub fn new() -> TestSchema {
        TestSchema {
            url: require_postgres(),
            schema: unique_id("lcpg_"),
        }
    }

    /// A backend configuration for `table` in this schema.
    pub fn config(&self, table: &str) -> PostgresConfig {
        PostgresConfig::new(&self.url)
            .unwrap()
            .with_table(self.schema.clone(), table)
    }

    /// Rows in `table` (expired included).
    pub async fn count(&self, table: &str) -> i64 {
        let c = raw_client(&self.url).await;
        let sql = format!("SELECT count(*) FROM \"{}\".\"{table}\"", self.schema);
        c.query_one(&sql, &[]).await.unwrap().get(0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cfg = tokio_postgres::Config::from_str(&url).unwrap();
                if let Ok((c, conn)) = cfg.connect(NoTls).await {
                    let t = tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                    drop(c);
                    let _ = t.await;
                }
            });
        })
        .join();
    }
}

/// A backend on a fresh table in `schema`, with a manual clock and no reaper.
pub async fn manual_backend(schema: &TestSchema, table: &str) -> (PostgresBackend, ManualClock) {
    let clock = ManualClock::new();
    let cfg = schema
        .config(table)
        .with_clock(Arc::new(clock.clone()))
        .with_reaper(None);
    (PostgresBackend::connect(cfg).await.unwrap(), clock)
}

/// Raw access to a backend's table: `put_raw` upserts the value column with raw bytes
/// (a new row never expires), `raw_exists` sees any row, expired or not.
pub struct RawTable {
    client: tokio_postgres::Client,
    table: String,
}

impl RawTable {
    pub async fn new(url: &str, qualified_table: &str) -> RawTable {
        RawTable {
            client: raw_client(url).await,
            table: qualified_table.to_owned(),
        }
    }
}

#[async_trait::async_trait]
impl RawStore for RawTable {
    async fn put_raw(&self, key: &Key, bytes: Vec<u8>) -> layercake_core::Result<()> {
        let sql = format!(
            "INSERT INTO {} (key, value, expires_at) VALUES ($1, $2, 9223372036854775807) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            self.table
        );
        self.client
            .execute(&sql, &[&key.as_bytes(), &bytes])
            .await
            .map_err(|e| layercake_core::Error::unavailable("put_raw").with_source(e))?;
        Ok(())
    }

    async fn raw_exists(&self, key: &Key) -> layercake_core::Result<bool> {
        let sql = format!("SELECT 1 FROM {} WHERE key = $1", self.table);
        let row = self
            .client
            .query_opt(&sql, &[&key.as_bytes()])
            .await
            .map_err(|e| layercake_core::Error::unavailable("raw_exists").with_source(e))?;
        Ok(row.is_some())
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn pg_bin() -> PathBuf {
    for d in [
        "/usr/lib/postgresql/15/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/17/bin",
    ] {
        if Path::new(d).join("pg_ctl").exists() {
            return PathBuf::from(d);
        }
    }
    let out = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        .unwrap();
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !p.is_empty(),
        "fault tests need PostgreSQL's initdb and pg_ctl (apt-get install postgresql)"
    );
    PathBuf::from(p).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).output().unwrap()
}

fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A throwaway PostgreSQL cluster on a free loopback port, in a temporary directory; only
/// its own processes are ever stopped, frozen or killed.
pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    frozen: Vec<u32>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(unique_id("lcpg-cluster-"));
        std::fs::create_dir_all(&dir).unwrap();
        if nix_is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let data = dir.join("data");
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster {
            port: free_port(),
            dir,
            bin,
            frozen: Vec::new(),
        };
        c.pg_ctl_start();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_str().unwrap().to_owned()
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.to_str().unwrap()
        );
        let log = self.dir.join("log").to_str().unwrap().to_owned();
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stop the server (fast shutdown: sessions are terminated).
    pub fn stop(&self) {
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the server again after [`stop`](Self::stop); returns when it accepts connections.
    pub fn start_again(&self) -> Instant {
        self.pg_ctl_start();
        Instant::now()
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> u32 {
        let s = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid")).unwrap();
        s.lines().next().unwrap().trim().parse().unwrap()
    }

    /// The postmaster and its children (this cluster's processes only).
    fn own_pids(&self) -> Vec<u32> {
        let pm = self.postmaster_pid();
        let mut pids = vec![pm];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // The ppid is the second field after the parenthesized command name.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(pm) {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGSTOP the postmaster and its children.
    pub fn freeze(&mut self) {
        let pids = self.own_pids();
        signal("STOP", &pids);
        self.frozen = pids;
    }

    /// SIGCONT what [`freeze`](Self::freeze) stopped.
    pub fn thaw(&mut self) {
        let pids = std::mem::take(&mut self.frozen);
        signal("CONT", &pids);
    }
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .unwrap();
    assert!(st.success());
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.thaw();
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wait until `f` is true, polling every 20 ms, up to `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
