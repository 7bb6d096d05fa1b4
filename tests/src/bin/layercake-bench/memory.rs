//! Resident memory of the memory tier against its configured bound, under a churn of unique
//! keys.
//!
//! Measured in a child process (this binary run again with `--memory-probe`), so that the heap
//! starts empty and nothing the other sections allocated hides or inflates the growth; the child
//! runs with the platform's default allocator settings (as a service does), not the benchmark's
//! steady ones. The child fills an L1-only cache (default JSON codec, the benchmark's ~1 KiB
//! documents) from two tasks on a two-worker runtime until ten times the bound has been written,
//! sampling its resident set size (RSS) after every tenth, and prints one line the parent reads.

use std::sync::Arc;

use layercake::Codec;

use crate::Result;
use crate::data::Doc;
use crate::env::{cache, everywhere, memory};
use crate::results::{MemoryRow, Results};

/// The bound of the L1 in the probe.
const BOUND: u64 = 32 << 20;
/// How many times the bound is written.
const TIMES: u64 = 10;
/// Size of a value.
const VALUE: usize = 1024;
/// The command-line flag that runs the probe.
pub(crate) const FLAG: &str = "--memory-probe";
/// Marks the line the child prints.
const MARK: &str = "memory-probe:";

/// Resident set size of this process, bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The child: churn from `tasks` tasks on as many workers, then print
/// `memory-probe: bound entries weighed_max capacity s1,s2,…`.
pub(crate) fn probe(tasks: usize) -> Result<()> {
    let tasks = tasks.max(1) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(tasks as usize)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let l1 = Arc::new(memory(BOUND)?);
        let c = cache(
            "bench-memory",
            vec![l1.clone()],
            everywhere(),
            Codec::json(),
        )?;
        let per_entry = Codec::json().encode(&Doc::sized(0, VALUE))?.bytes.len() as u64;
        let baseline = rss_bytes();
        // Fill to 90 % of the bound (no eviction): resident bytes per live entry.
        write(&c, tasks, 0, 1).await?;
        let fill = BOUND * 9 / 10 / l1.weighted_bytes().max(1);
        write(&c, tasks, 1, fill).await?;
        let fill_entries = l1.entries();
        let fill_growth = rss_bytes().saturating_sub(baseline);
        // Churn: ten times the bound in unique keys.
        let total = BOUND * TIMES / per_entry;
        let mut samples = Vec::new();
        let mut weighed_max = 0;
        let mut next = 1 + fill;
        for _ in 0..10 {
            write(&c, tasks, next, total / 10).await?;
            next += total / 10;
            weighed_max = weighed_max.max(l1.weighted_bytes());
            samples.push(rss_bytes().saturating_sub(baseline));
        }
        let samples: Vec<String> = samples.iter().map(u64::to_string).collect();
        println!(
            "{MARK} {BOUND} {} {weighed_max} {} {} {fill_entries} {fill_growth}",
            l1.entries(),
            l1.capacity_bytes(),
            samples.join(","),
        );
        Ok(())
    })
}

/// Set documents `first..first + n` (unique keys) from `tasks` tasks.
async fn write(c: &layercake::Cache, tasks: u64, first: u64, n: u64) -> Result<()> {
    let per_task = n.div_ceil(tasks);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                let from = first + t * per_task;
                for id in from..(from + per_task).min(first + n) {
                    let key = format!("churn:{id:09}");
                    c.set(key.as_str(), Doc::sized(id, VALUE)).await?;
                }
                Ok::<_, layercake::Error>(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    Ok(())
}

/// Run the probe with one task (one allocator arena) and with two (two arenas: memory freed in
/// one is not reused by the other thread), each in a child process, and record what they
/// printed.
pub(crate) async fn run(results: &mut Results) -> Result<()> {
    for tasks in [1, 2] {
        one(results, tasks).await?;
    }
    Ok(())
}

async fn one(results: &mut Results, tasks: usize) -> Result<()> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg(format!("{FLAG}={tasks}"))
        .env_remove("GLIBC_TUNABLES")
        .env(crate::MALLOC_MARK, "1")
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find_map(|l| l.strip_prefix(MARK)) else {
        return Err(format!(
            "the memory probe printed no result (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        Ok(f.get(i).ok_or("memory probe: short line")?.parse::<u64>()?)
    };
    let samples = f
        .get(4)
        .ok_or("memory probe: no samples")?
        .split(',')
        .map(|s| s.parse::<u64>())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    results.memory.push(MemoryRow {
        tasks,
        bound: num(0)?,
        entries: num(1)?,
        weighed_max: num(2)?,
        capacity: num(3)?,
        written_times: TIMES,
        samples,
        fill_entries: num(5)?,
        fill_growth: num(6)?,
    });
    Ok(())
}
