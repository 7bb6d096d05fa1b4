//! `cargo xtask fuzz`: run every cargo-fuzz target in `fuzz/` for a while.
//!
//! Fuzzing is optional tooling: without a nightly toolchain and cargo-fuzz this prints how to get
//! them and exits successfully, which is an explicit skip and not a test result.

use xshell::{Shell, cmd};

use crate::{Result, banner, project_root};

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How long to fuzz each target, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// Runs each target listed by `cargo +nightly fuzz list` for `--seconds`.
pub(crate) fn run(sh: &Shell, args: &Args) -> Result<()> {
    let nightly = cmd!(sh, "cargo +nightly --version")
        .quiet()
        .ignore_stderr()
        .read()
        .ok();
    let cargo_fuzz = cmd!(sh, "cargo +nightly fuzz --version")
        .quiet()
        .ignore_stderr()
        .read()
        .ok();
    let (Some(nightly), Some(cargo_fuzz)) = (&nightly, &cargo_fuzz) else {
        let state = |found: bool| if found { "found" } else { "missing" };
        println!(
            "fuzz: skipped (optional tool, not a test result). Fuzzing needs a nightly toolchain \
             ({}) and cargo-fuzz ({}):\n  \
             rustup toolchain install nightly\n  \
             cargo install --locked cargo-fuzz\n\
             then run `cargo xtask fuzz` again.",
            state(nightly.is_some()),
            state(cargo_fuzz.is_some()),
        );
        return Ok(());
    };
    if !project_root().join("fuzz").join("Cargo.toml").exists() {
        println!("fuzz: skipped. There is no fuzz/Cargo.toml (no fuzz targets yet).");
        return Ok(());
    }
    println!("using {} and {}", nightly.trim(), cargo_fuzz.trim());

    let list = cmd!(sh, "cargo +nightly fuzz list --fuzz-dir fuzz").read()?;
    let targets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if targets.is_empty() {
        println!("fuzz: fuzz/ lists no targets; nothing to run");
        return Ok(());
    }
    let max_time = format!("-max_total_time={}", args.seconds);
    let mut failed = Vec::new();
    for target in &targets {
        banner(&format!("fuzz {target} for {}s", args.seconds));
        if let Err(e) = cmd!(
            sh,
            "cargo +nightly fuzz run --fuzz-dir fuzz {target} -- {max_time}"
        )
        .run()
        {
            eprintln!("fuzz target {target} failed: {e}");
            failed.push(*target);
        }
    }
    if failed.is_empty() {
        println!(
            "\nfuzz: {} target(s) ran for {}s each without a crash",
            targets.len(),
            args.seconds
        );
        Ok(())
    } else {
        Err(format!(
            "fuzz targets failed: {} (crash inputs are under fuzz/artifacts)",
            failed.join(", ")
        )
        .into())
    }
}
