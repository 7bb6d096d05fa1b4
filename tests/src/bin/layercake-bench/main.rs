//! `layercake-bench`: layercake beside the raw clients it is built on, in the same process.
//!
//! Run it with `cargo xtask bench [--quick]` (which makes sure Redis and PostgreSQL are up and
//! sets `REDIS_URL` / `DATABASE_URL`). It writes `report.md`, `headline-ratios.svg` and
//! `ratios-{quick,full}.tsv` into `--out`. Benchmarks are not tests: nothing here asserts a
//! time; the report says which targets are met and by how much the others are missed.
//!
//! Sections (all by default, or a comma-separated subset with `--only`): `l1`, `remote` (L2
//! and L3), `file` (L4), `hybrid` (memory + file against foyer, read-only), `set`, `codec`,
//! `otel`, `insight` (miss-reason
//! accounting on vs off, the hot-set restart), `workloads`, `stampede`, `handwritten`
//! (layercake beside the moka + redis-rs glue it replaces), `memory` (resident memory of the
//! L1 against its bound).

mod chart;
mod codecs;
mod cpu;
mod data;
mod env;
mod handwritten;
mod harness;
mod hybrid;
mod insight;
mod l1;
mod local;
mod machine;
mod memory;
mod otel;
mod remote;
mod report;
mod results;
mod stampede;
mod workloads;
mod writes;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::env::Env;
use crate::harness::Plan;
use crate::machine::Machine;
use crate::results::Results;

/// Errors of the benchmark binary.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// Results of the benchmark binary.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "layercake beside the raw clients, in the same process")]
struct Args {
    /// A short run (about a minute): fewer rounds and operations, shorter workloads.
    #[arg(long)]
    quick: bool,
    /// Directory of the report, chart and ratios.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these sections (comma-separated): l1, remote, file, hybrid, set, codec, otel, insight,
    /// workloads, stampede, handwritten, memory.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(SECTIONS))]
    only: Vec<String>,
    /// The Tokio runtime the benchmark runs on (see docs/benchmarks.md, "How it measures").
    #[arg(long, value_enum, default_value_t = RuntimeKind::Current)]
    runtime: RuntimeKind,
    /// Where the file tier's rows write (a fresh directory is made inside). Default:
    /// `/dev/shm` (a tmpfs) where it exists, so that the journal and writeback of a disk do not
    /// move the ratios between runs; otherwise the system's temporary directory. Give a
    /// directory on a real disk to measure the tier there.
    #[arg(long)]
    file_dir: Option<PathBuf>,
    /// Internal: run the memory section's probe (the child process it starts) and exit.
    #[arg(long = "memory-probe", hide = true)]
    memory_probe: Option<usize>,
}

/// The directory the file rows write under: `--file-dir`, else `/dev/shm` if it is a
/// writable directory, else the system's temporary directory.
fn file_base(arg: Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d;
    }
    let shm = PathBuf::from("/dev/shm");
    let writable = tempfile::Builder::new()
        .prefix("layercake-bench-probe")
        .tempdir_in(&shm)
        .is_ok();
    if writable { shm } else { std::env::temp_dir() }
}

/// Which Tokio runtime runs the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeKind {
    /// One thread: the client keeps one CPU and the servers (Redis, PostgreSQL, on the same
    /// machine) the others, as when they run on other hosts; repeatable on two CPUs.
    Current,
    /// One worker per CPU, as a service runs; on a machine that also runs the servers, the
    /// client and the servers share every CPU and the placement of the servers moves the
    /// figures between runs.
    Multi,
}

impl RuntimeKind {
    fn describe(self, cpus: usize) -> String {
        match self {
            RuntimeKind::Current => "Tokio current-thread runtime (the client on one CPU, the \
                                     servers on the others)"
                .to_owned(),
            RuntimeKind::Multi => format!("Tokio multi-thread runtime, {cpus} workers"),
        }
    }
}

/// How much each section runs.
struct Plans {
    l1: Plan,
    remote: Plan,
    inflight: Plan,
    file_hits: Plan,
    file_sets: Plan,
    hybrid: Plan,
    set: Plan,
    codec: Plan,
}

impl Plans {
    fn new(quick: bool) -> Plans {
        if quick {
            Plans {
                l1: Plan::new(5, 20, 1000),
                remote: Plan::new(5, 100, 1),
                inflight: Plan::new(5, 3, 64 * 20),
                file_hits: Plan::new(5, 200, 1),
                file_sets: Plan::new(5, 40, 1),
                hybrid: Plan::new(5, 10, 100),
                set: Plan::new(5, 15, 1),
                codec: Plan::new(5, 10, 1),
            }
        } else {
            Plans {
                // Many short rounds: the finer the interleaving, the more evenly the noise of
                // a busy machine falls on both sides. L1 gets twice as many: its 1 KiB case
                // reads 20 000 entries from DRAM, whose speed moves the most between rounds.
                l1: Plan::new(41, 40, 1000),
                remote: Plan::new(21, 200, 1),
                inflight: Plan::new(21, 2, 64 * 50),
                file_hits: Plan::new(21, 400, 1),
                file_sets: Plan::new(21, 60, 1),
                // Throughput of a stream of reads: batches long enough that a round is a few ms.
                hybrid: Plan::new(21, 20, 100),
                set: Plan::new(21, 25, 1),
                codec: Plan::new(21, 20, 1),
            }
        }
    }
}

/// The sections `--only` accepts (a misspelt one is refused rather than running nothing).
const SECTIONS: [&str; 12] = [
    "l1",
    "remote",
    "file",
    "hybrid",
    "set",
    "codec",
    "otel",
    "insight",
    "workloads",
    "stampede",
    "handwritten",
    "memory",
];

/// Set in the environment of the re-executed benchmark (see [`steady_allocator`]).
pub(crate) const MALLOC_MARK: &str = "LAYERCAKE_BENCH_MALLOC";
/// glibc malloc settings of a run: blocks up to 32 MiB come from the heap (not a fresh `mmap`
/// each), and freed memory is not returned to the kernel, so that neither side of a comparison
/// pays page faults that depend on what the allocator happened to hold (the 64 KiB rows moved
/// by up to 59 % between two runs without this: a raw 64 KiB `fs::read` took 58 µs in one run
/// and 22 µs in the next).
const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296";

/// On glibc, run the benchmark again in a child process whose allocator has
/// [`MALLOC_TUNABLES`] (glibc reads them only at start-up); returns the child's exit code, or
/// `None` in the child itself and on other platforms.
fn steady_allocator() -> Result<Option<i32>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os(MALLOC_MARK).is_some()
    {
        return Ok(None);
    }
    let tunables = match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if !t.is_empty() => format!("{t}:{MALLOC_TUNABLES}"),
        _ => MALLOC_TUNABLES.to_owned(),
    };
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(MALLOC_MARK, "1")
        .env("GLIBC_TUNABLES", tunables)
        .status()?;
    Ok(Some(status.code().unwrap_or(1)))
}

fn main() -> Result<()> {
    if let Some(code) = steady_allocator()? {
        std::process::exit(code);
    }
    let args = Args::parse();
    if let Some(tasks) = args.memory_probe {
        return memory::probe(tasks);
    }
    std::fs::create_dir_all(&args.out)?;
    let mode = if args.quick { "quick" } else { "full" };
    eprintln!("waiting for the machine to go quiet (at most 60 s) …");
    let quiet = machine::wait_for_quiet(Duration::from_secs(60));
    eprintln!("{quiet}");
    let mut machine = Machine::describe();
    machine.quiet = quiet;
    let started = machine::now_utc();
    let t0 = Instant::now();
    let rt = match args.runtime {
        RuntimeKind::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        RuntimeKind::Multi => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(machine.cpus.max(1))
            .enable_all()
            .build()?,
    };
    let quick = args.quick;
    let only = args.only.clone();
    let file_dir = file_base(args.file_dir.clone());
    machine.file_dir = machine::describe_dir(&file_dir);
    machine.allocator = match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if std::env::var_os(MALLOC_MARK).is_some() => format!("glibc malloc, `{t}`"),
        _ => "the platform's default".to_owned(),
    };
    // Everything runs in a spawned task, as a service's handlers do.
    let (results, versions) = rt.block_on(async move {
        tokio::spawn(async move { run_all(quick, &only, &file_dir).await }).await
    })??;
    machine.redis = versions.0;
    machine.postgres = versions.1;
    machine.load_end = machine::load();
    let secs = t0.elapsed().as_secs_f64();

    // Ratios of a multi-thread run are compared with the previous multi-thread run only.
    let suffix = match args.runtime {
        RuntimeKind::Current => "",
        RuntimeKind::Multi => "-multi",
    };
    let ratios_path = args.out.join(format!("ratios-{mode}{suffix}.tsv"));
    let previous = report::read_previous(&ratios_path);
    let chart_name = "headline-ratios.svg";
    if let Err(e) = chart::draw(
        &args.out.join(chart_name),
        &results.comparisons,
        "layercake / raw baseline, same run",
    ) {
        eprintln!("chart not drawn: {e}");
    }
    let run = report::Run {
        mode,
        started,
        secs,
        machine: &machine,
        previous: &previous,
        chart: chart_name,
        runtime: args.runtime.describe(machine.cpus),
    };
    let text = report::render(&run, &results);
    std::fs::write(args.out.join("report.md"), &text)?;
    if args.only.is_empty() {
        report::write_ratios(&ratios_path, &results)?;
    }
    println!("\nTargets:");
    for c in results.comparisons.iter().filter(|c| c.target.is_some()) {
        println!(
            "  {:<28} {:>6.2}×  (limit {:.2}×)  {}",
            c.id,
            c.ratio.value,
            c.target.map_or(0.0, |t| t.max),
            if c.met() == Some(true) {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!(
        "\n{} run done in {secs:.0} s; report: {}",
        mode,
        args.out.join("report.md").display()
    );
    Ok(())
}

/// Run the selected sections; a failing section is reported in the notes, the others still run.
async fn run_all(
    quick: bool,
    only: &[String],
    file_dir: &std::path::Path,
) -> Result<(Results, (String, String))> {
    let plans = Plans::new(quick);
    let wants = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let mut results = Results::default();
    let env = Env::connect(file_dir).await?;
    let versions = (redis_version(&env).await, postgres_version(&env).await);
    let t0 = Instant::now();
    macro_rules! section {
        ($name:literal, $fut:expr) => {
            if wants($name) {
                eprintln!("[{:>5.1} s] {} …", t0.elapsed().as_secs_f64(), $name);
                if let Err(e) = $fut.await {
                    eprintln!("  section {} failed: {e}", $name);
                    results
                        .notes
                        .push(format!("Section `{}` failed and is missing: {e}", $name));
                }
            }
        };
    }
    section!("l1", l1::run(&mut results, plans.l1, quick));
    section!("otel", otel::run(&mut results, plans.l1));
    section!(
        "insight",
        insight::run(&env, &mut results, plans.l1, plans.remote, quick)
    );
    section!(
        "remote",
        remote::run(&env, &mut results, plans.remote, plans.inflight)
    );
    section!(
        "file",
        local::run(&env, &mut results, plans.file_hits, plans.file_sets)
    );
    section!("hybrid", hybrid::run(&env, &mut results, plans.hybrid));
    section!("set", writes::run(&env, &mut results, plans.set));
    section!("codec", codecs::run(&mut results, plans.codec));
    section!("workloads", workloads::run(&env, &mut results, quick));
    section!("stampede", stampede::run(&env, &mut results, quick));
    section!("handwritten", handwritten::run(&mut results, quick));
    section!("memory", memory::run(&mut results));
    eprintln!("[{:>5.1} s] cleanup", t0.elapsed().as_secs_f64());
    env.cleanup().await;
    eprintln!("[{:>5.1} s] done", t0.elapsed().as_secs_f64());
    Ok((results, versions))
}

async fn redis_version(env: &Env) -> String {
    let mut c = env.raw_redis.clone();
    let info: redis::RedisResult<String> =
        redis::cmd("INFO").arg("server").query_async(&mut c).await;
    info.ok()
        .and_then(|i| {
            i.lines()
                .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into())
}

async fn postgres_version(env: &Env) -> String {
    match env.raw_pg.query_one("SHOW server_version", &[]).await {
        Ok(row) => row.get::<_, String>(0),
        Err(_) => "unknown".into(),
    }
}
