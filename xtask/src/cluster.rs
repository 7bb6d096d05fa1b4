//! A throwaway three-master Redis Cluster for the doc-test step: the production guide's
//! Cluster program reads its seed nodes from `REDIS_CLUSTER_NODES`, and `cargo xtask test`
//! starts this cluster so that the program runs against a real one.
//!
//! The nodes run from the machine's `redis-server` (no persistence, loopback only) under
//! `target/services/doc-cluster-<xtask pid>/`; dropping the [`Cluster`] stops each node by the
//! pid in its pidfile and removes the directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use xshell::{Shell, cmd};

use crate::services::{find_binary, port_is_free, probe_redis, wait_for};
use crate::{Result, target_dir};

/// Number of masters (the smallest cluster `redis-cli --cluster create` accepts).
const NODES: usize = 3;

/// A running throwaway cluster; stopped on drop.
pub(crate) struct Cluster {
    /// Ports of the nodes (each also uses port + 10000 for the cluster bus).
    ports: Vec<u16>,
    /// Where the nodes keep their pidfiles, logs and node tables.
    dir: PathBuf,
}

impl Cluster {
    /// Starts the cluster, or says why it cannot (`redis-server` or `redis-cli` missing, or a
    /// node that does not come up).
    pub(crate) fn start(sh: &Shell) -> Result<Cluster> {
        let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
        let server = find_binary("redis-server", &extra).ok_or("redis-server not found")?;
        let cli = find_binary("redis-cli", &extra).ok_or("redis-cli not found")?;
        let dir = target_dir()
            .join("services")
            .join(format!("doc-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Cluster {
            ports: Vec::new(),
            dir,
        };
        for port in free_ports()? {
            cluster.ports.push(port);
            start_node(sh, &server, &cluster.dir, port)?;
        }
        for &port in &cluster.ports {
            let url = format!("redis://127.0.0.1:{port}");
            wait_for(Duration::from_secs(15), || probe_redis(&url))
                .map_err(|e| format!("cluster node {port}: {e}"))?;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        cmd!(
            sh,
            "{cli} --cluster create {nodes...} --cluster-replicas 0 --cluster-yes"
        )
        .quiet()
        .ignore_stdout()
        .run()?;
        for &port in &cluster.ports {
            let port_s = port.to_string();
            wait_for(Duration::from_secs(30), || {
                let info = cmd!(sh, "{cli} -p {port_s} cluster info")
                    .quiet()
                    .ignore_stderr()
                    .read()
                    .map_err(|e| e.to_string())?;
                if info.contains("cluster_state:ok") {
                    Ok(())
                } else {
                    Err(format!("node {port}: cluster_state is not ok yet"))
                }
            })?;
        }
        Ok(cluster)
    }

    /// The seed nodes, as `REDIS_CLUSTER_NODES` takes them: comma-separated `redis://` URLs.
    pub(crate) fn nodes(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for port in &self.ports {
            if let Some(pid) = read_pid(&self.dir.join(format!("{port}.pid"))) {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `NODES` ports that are free on 127.0.0.1 together with their bus port (+10000, so below
/// 55536), from a start spread by xtask's pid so that two runs at once rarely try the same.
fn free_ports() -> Result<Vec<u16>> {
    let spread = u16::try_from(std::process::id() % 2500).unwrap_or(0);
    let start = 20_000 + spread * 10;
    let ports: Vec<u16> = (start..55_000)
        .filter(|&p| port_is_free(p) && port_is_free(p + 10_000))
        .take(NODES)
        .collect();
    if ports.len() < NODES {
        return Err("no free ports for the cluster nodes".into());
    }
    Ok(ports)
}

/// Starts one daemonized cluster node on `port`, with its files in `dir`.
fn start_node(sh: &Shell, server: &Path, dir: &Path, port: u16) -> Result<()> {
    let port_s = port.to_string();
    let pidfile = dir.join(format!("{port}.pid"));
    let logfile = dir.join(format!("{port}.log"));
    let nodes = dir.join(format!("nodes-{port}.conf"));
    cmd!(
        sh,
        "{server} --bind 127.0.0.1 --port {port_s} --cluster-enabled yes
            --cluster-config-file {nodes} --save '' --appendonly no --daemonize yes
            --pidfile {pidfile} --logfile {logfile} --dir {dir}"
    )
    .quiet()
    .run()?;
    Ok(())
}

/// The pid in a pidfile.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
