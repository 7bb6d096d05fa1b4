//! `cargo xtask bench`: run the benchmark binary against real services.
//!
//! Benchmarks are not tests (a timing assertion would make CI flaky): this measures and
//! reports into `target/bench`; nothing here asserts a time.

use xshell::{Shell, cmd};

use crate::services;
use crate::{Result, banner};

/// Package holding the benchmark binary.
const PACKAGE: &str = "layercake-tests";

/// Name of the benchmark binary.
const BIN: &str = "layercake-bench";

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run a short version of every benchmark (a smoke run, not a measurement).
    #[arg(long)]
    quick: bool,
    /// The runtime of the benchmark: `current` (default: the client on one CPU, the servers on
    /// the others; repeatable on a small machine) or `multi` (one worker per CPU, as a service
    /// runs).
    #[arg(long, default_value = "current")]
    runtime: String,
    /// Where the file tier's rows write (default: `/dev/shm` where it exists, a tmpfs, so that
    /// a disk's journal and writeback do not move the ratios; give a directory on a disk to
    /// measure the tier there).
    #[arg(long)]
    file_dir: Option<String>,
}

/// Ensures the services, then runs `layercake-bench` in release mode.
pub(crate) fn run(sh: &Shell, args: &Args) -> Result<()> {
    if !bench_bin_exists(sh)? {
        return Err(format!(
            "the benchmark binary `{BIN}` does not exist yet in package {PACKAGE} \
             (expected a [[bin]] or tests/src/bin/{BIN}.rs); nothing to run"
        )
        .into());
    }
    banner("services");
    let endpoints = services::ensure(sh)?;
    sh.set_var("REDIS_URL", &endpoints.redis_url);
    sh.set_var("DATABASE_URL", &endpoints.database_url);

    let mut extra: Vec<String> = Vec::new();
    if args.quick {
        extra.push("--quick".into());
    }
    if let Some(d) = &args.file_dir {
        extra.push("--file-dir".into());
        extra.push(d.clone());
    }
    let runtime = &args.runtime;
    banner(&format!(
        "cargo run --release -p {PACKAGE} --bin {BIN} -- {}--runtime {runtime} --out target/bench",
        extra.iter().map(|a| format!("{a} ")).collect::<String>()
    ));
    cmd!(
        sh,
        "cargo run --release -p {PACKAGE} --bin {BIN} -- {extra...} --runtime {runtime} --out target/bench"
    )
    .run()?;
    println!("\nreports are in target/bench");
    Ok(())
}

/// Whether the workspace metadata lists a binary target named [`BIN`].
fn bench_bin_exists(sh: &Shell) -> Result<bool> {
    let metadata = cmd!(sh, "cargo metadata --no-deps --format-version 1")
        .quiet()
        .read()?;
    // Targets appear as `{"kind":["bin"],"crate_types":["bin"],"name":"layercake-bench",...}`.
    Ok(metadata.contains(&format!("\"name\":\"{BIN}\"")))
}
