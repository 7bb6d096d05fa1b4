//! CPU time spent per operation, beside the wall-clock figures: this process's (every thread's
//! run time) and, when the server is on this host, the Redis server's. On a CPU-bound machine
//! throughput is the inverse of the CPU an operation costs all processes together, and the
//! client / server split says whose time a difference is.
//!
//! Beside the time, the read and write system calls of this process per operation (from
//! `/proc/self/io`): on a loopback connection a `write` costs more than the bytes it carries
//! (the kernel delivers the segment to the receiver within the call), so how many commands a
//! client puts into one write is a large part of its CPU.
//!
//! Read from `/proc/<pid>/task/*/schedstat` (nanoseconds a thread has run) and
//! `/proc/<pid>/io`; elsewhere than Linux, or for a server on another host, the figures are
//! absent.

/// Nanoseconds every thread of process `pid` (`"self"` for this one) has run, if readable.
fn run_time_ns(pid: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        // A thread that ended after the directory was listed (a blocking-pool thread past its
        // keep-alive) has no statistics left: skip it rather than lose the whole reading.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Read and write system calls process `pid` has made (`syscr + syscw` of `/proc/<pid>/io`).
fn syscalls(pid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(field("syscr:")? + field("syscw:")?)
}

/// What to read around each timed batch: this process, and the server's pid if known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuProbe {
    server: Option<u32>,
}

/// CPU read at one instant (see [`CpuProbe::now`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuReading {
    client: Option<u64>,
    server: Option<u64>,
    syscalls: Option<u64>,
}

/// CPU time per operation of one side.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuPerOp {
    /// This process, nanoseconds per operation.
    pub(crate) client_ns: f64,
    /// The server, nanoseconds per operation, when it runs on this host.
    pub(crate) server_ns: Option<f64>,
    /// Read and write system calls of this process per operation.
    pub(crate) syscalls: Option<f64>,
}

/// Sums of CPU time over the timed batches of one side; a sum is dropped once one of its
/// readings fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTotals {
    client_ns: Option<u64>,
    server_ns: Option<u64>,
    syscalls: Option<u64>,
    ops: u64,
}

impl CpuProbe {
    /// A probe of this process and of the server with process id `server`.
    pub(crate) fn new(server: Option<u32>) -> CpuProbe {
        CpuProbe { server }
    }

    /// Read both now.
    pub(crate) fn now(&self) -> CpuReading {
        CpuReading {
            client: run_time_ns("self"),
            server: self.server.and_then(|p| run_time_ns(&p.to_string())),
            syscalls: syscalls("self"),
        }
    }
}

impl CpuTotals {
    /// Start counting.
    pub(crate) fn new() -> CpuTotals {
        CpuTotals {
            client_ns: Some(0),
            server_ns: Some(0),
            syscalls: Some(0),
            ops: 0,
        }
    }

    /// Add one batch of `ops` operations, read before and after.
    pub(crate) fn add(&mut self, before: CpuReading, after: CpuReading, ops: u64) {
        let spent =
            |sum: Option<u64>, b: Option<u64>, a: Option<u64>| Some(sum? + a?.saturating_sub(b?));
        self.client_ns = spent(self.client_ns, before.client, after.client);
        self.server_ns = spent(self.server_ns, before.server, after.server);
        self.syscalls = spent(self.syscalls, before.syscalls, after.syscalls);
        self.ops += ops;
    }

    /// The averages, if every reading of this process succeeded.
    pub(crate) fn per_op(&self) -> Option<CpuPerOp> {
        let client = self.client_ns?;
        if self.ops == 0 {
            return None;
        }
        let ops = self.ops as f64;
        Some(CpuPerOp {
            client_ns: client as f64 / ops,
            server_ns: self.server_ns.map(|s| s as f64 / ops),
            syscalls: self.syscalls.map(|s| s as f64 / ops),
        })
    }
}

/// The process id of the Redis server at `url`, reached through `conn`, when it runs on this
/// host (`INFO server`'s `process_id`, for a loopback address only).
pub(crate) async fn local_redis_pid(
    url: &str,
    conn: &redis::aio::ConnectionManager,
) -> Option<u32> {
    let info = redis::IntoConnectionInfo::into_connection_info(url).ok()?;
    let redis::ConnectionAddr::Tcp(host, _) = info.addr() else {
        return None;
    };
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]") {
        return None;
    }
    let mut conn = conn.clone();
    let text: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}
