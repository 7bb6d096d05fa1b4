//! A description of the machine and services a run measured on.

use std::process::Command;

/// The machine and service versions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Machine {
    /// Logical CPUs (`nproc`).
    pub(crate) cpus: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub(crate) cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`.
    pub(crate) memory: String,
    /// Kernel release.
    pub(crate) kernel: String,
    /// `rustc --version`.
    pub(crate) rustc: String,
    /// Redis server version.
    pub(crate) redis: String,
    /// PostgreSQL server version.
    pub(crate) postgres: String,
    /// Load average (1 min) at the start of the run.
    pub(crate) load_start: String,
    /// Load average (1 min) at the end of the run.
    pub(crate) load_end: String,
    /// Where the file rows wrote, with its file system type.
    pub(crate) file_dir: String,
    /// The allocator and its settings.
    pub(crate) allocator: String,
    /// How long the run waited for the machine to go quiet, and how busy it was then.
    pub(crate) quiet: String,
}

/// Busy and total CPU time (in clock ticks, over all CPUs) from `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = read("/proc/stat");
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Wait until the machine is quiet before measuring: the share of CPU time used (by anything:
/// the servers' background work after a previous run, builds) stays under 10 % for three
/// consecutive seconds, or `max` has passed. A run started right after another one otherwise
/// measures its first sections while PostgreSQL vacuums and checkpoints what the previous
/// run's workloads wrote. Returns what happened, for the report.
pub(crate) fn wait_for_quiet(max: std::time::Duration) -> String {
    let t0 = std::time::Instant::now();
    let mut quiet_seconds = 0;
    let mut last = 0.0;
    let Some(mut prev) = cpu_ticks() else {
        return "not checked (no /proc/stat)".into();
    };
    while t0.elapsed() < max {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Some(now) = cpu_ticks() else { break };
        let (busy, total) = (now.0 - prev.0, now.1 - prev.1);
        prev = now;
        last = if total == 0 {
            0.0
        } else {
            busy as f64 / total as f64 * 100.0
        };
        quiet_seconds = if last < 10.0 { quiet_seconds + 1 } else { 0 };
        if quiet_seconds >= 3 {
            return format!(
                "quiet after {:.0} s (CPU {last:.0} % busy)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    format!(
        "**not quiet** after {:.0} s (CPU {last:.0} % busy): figures may be noisier",
        t0.elapsed().as_secs_f64()
    )
}

/// `dir` and the type of the file system it is on (the longest mount point of
/// `/proc/mounts` that contains it).
pub(crate) fn describe_dir(dir: &std::path::Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = read("/proc/mounts");
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(at).then(|| (at.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, kind)| kind);
    format!("{} ({fs})", dir.display())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// The 1-minute load average now.
pub(crate) fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned()
}

fn command(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn now_utc() -> String {
    command("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

impl Machine {
    /// Describe this machine (service versions are filled in by the caller).
    pub(crate) fn describe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let mem_kib: u64 = field(&read("/proc/meminfo"), "MemTotal")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            memory: format!("{:.1} GiB", mem_kib as f64 / (1024.0 * 1024.0)),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            rustc: command("rustc", &["--version"]),
            redis: String::new(),
            postgres: String::new(),
            load_start: load(),
            load_end: String::new(),
            file_dir: String::new(),
            allocator: String::new(),
            quiet: String::new(),
        }
    }
}
