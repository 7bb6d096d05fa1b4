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

/// The child: churn, then print `memory-probe: bound entries weighed_max capacity s1,s2,…`.
pub(crate) fn probe() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        let total = BOUND * TIMES / per_entry;
        let baseline = rss_bytes();
        let mut samples = Vec::new();
        let mut weighed_max = 0;
        for round in 0..10u64 {
            let per_task = total / 10 / 2;
            let tasks: Vec<_> = (0..2u64)
                .map(|t| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            let id = (round * 2 + t) * per_task + i;
                            let key = format!("churn:{id:09}");
                            c.set(key.as_str(), Doc::sized(id, VALUE)).await?;
                        }
                        Ok::<_, layercake::Error>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            weighed_max = weighed_max.max(l1.weighted_bytes());
            samples.push(rss_bytes().saturating_sub(baseline));
        }
        let samples: Vec<String> = samples.iter().map(u64::to_string).collect();
        println!(
            "{MARK} {BOUND} {} {weighed_max} {} {}",
            l1.entries(),
            l1.capacity_bytes(),
            samples.join(",")
        );
        Ok(())
    })
}

/// Run the probe in a child process and record what it printed.
pub(crate) async fn run(results: &mut Results) -> Result<()> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg(FLAG)
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
        bound: num(0)?,
        entries: num(1)?,
        weighed_max: num(2)?,
        capacity: num(3)?,
        written_times: TIMES,
        samples,
    });
    Ok(())
}
