//! Private fixtures for this crate's tests: throwaway `redis-server`s (standalone and a
//! three-master cluster) on free loopback ports, and raw access for the conformance suite.
//! Only pids started here are ever signalled.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "test fixtures: panics are failures"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use layercake_core::{Key, Result, async_trait};
use layercake_testkit::conformance::RawStore;
use layercake_testkit::services::unique_id;
use redis::AsyncCommands;

/// A fresh key prefix for one test.
pub fn unique_prefix(what: &str) -> String {
    format!("{}:", unique_id(&format!("lctest:{what}:")))
}

/// Raw access to the keys of one prefix.
pub struct RawRedis {
    pub conn: redis::aio::MultiplexedConnection,
    pub prefix: String,
}

impl RawRedis {
    pub async fn new(url: &str, prefix: &str) -> RawRedis {
        let client = redis::Client::open(url).unwrap();
        RawRedis {
            conn: client.get_multiplexed_async_connection().await.unwrap(),
            prefix: prefix.to_owned(),
        }
    }
}

fn io(e: redis::RedisError) -> layercake_core::Error {
    layercake_core::Error::unavailable(e.to_string())
}

#[async_trait]
impl RawStore for RawRedis {
    async fn put_raw(&self, key: &Key, bytes: Vec<u8>) -> Result<()> {
        let mut c = self.conn.clone();
        c.set::<_, _, ()>(format!("{}{}", self.prefix, key.as_str()), bytes)
            .await
            .map_err(io)
    }
    async fn raw_exists(&self, key: &Key) -> Result<bool> {
        let mut c = self.conn.clone();
        c.exists(format!("{}{}", self.prefix, key.as_str()))
            .await
            .map_err(io)
    }
}

/// Raw PING over TCP with a bound.
pub fn ping(port: u16, within: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), within) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(within));
    let _ = s.set_write_timeout(Some(within));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // Any reply (+PONG, or -NOAUTH on a server with a password) means it serves.
    let mut buf = [0u8; 1];
    s.read_exact(&mut buf).is_ok() && (buf[0] == b'+' || buf[0] == b'-')
}

/// A loopback port that is free now (and, for cluster nodes, whose bus port +10000 is too).
pub fn free_port(cluster_bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if !cluster_bus {
            return p;
        }
        if p <= 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A throwaway standalone `redis-server` on its own port.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Start with extra `redis-server` arguments (e.g. `--requirepass x`).
    pub fn start_with(extra: &[&str]) -> Server {
        let mut s = Server {
            port: free_port(false),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the fault tests");
        self.child = Some(child);
        wait_until(Duration::from_secs(15), || {
            ping(self.port, Duration::from_millis(200))
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "CONT");
        }
        self.kill();
    }
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A throwaway three-master cluster on free loopback ports.
pub struct Cluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let p = free_port(true);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut cluster = Cluster {
            ports: ports.clone(),
            children: Vec::new(),
            _dir: dir,
        };
        for p in &ports {
            let conf: PathBuf = cluster._dir.path().join(format!("nodes-{p}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(&conf)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(cluster._dir.path())
                .args(["--loglevel", "warning"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed for the cluster tests");
            cluster.children.push(child);
        }
        for p in &ports {
            wait_until(Duration::from_secs(15), || {
                ping(*p, Duration::from_millis(200))
            });
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed for the cluster tests");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for p in &ports {
            wait_until(Duration::from_secs(30), || {
                Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
