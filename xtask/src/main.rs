//! `cargo xtask`: project automation for layercake.
//!
//! One entry point for the chores around the workspace:
//!
//! - `cargo xtask services up|down|status`: find or start Redis and PostgreSQL for the tests;
//! - `cargo xtask test [-- <nextest args>]`: the one test command (format, clippy, tests, doc
//!   tests, docs, examples) that the README and `.ci/run` call;
//! - `cargo xtask bench [--quick] [--runtime current|multi] [--file-dir DIR]`: run the benchmark binary against real services;
//! - `cargo xtask fuzz [--seconds N]`: run every fuzz target when nightly and cargo-fuzz exist;
//! - `cargo xtask release-check`: `cargo package` of the publishable crates, `cargo deny`, and
//!   the documented programs built in a crate outside the repository with older serde/tokio.

mod bench;
mod cluster;
mod fuzz;
mod release;
mod services;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

/// The error type of every xtask step: a message meant for a person at a terminal.
type Error = Box<dyn std::error::Error>;

/// Result alias used throughout xtask.
type Result<T, E = Error> = std::result::Result<T, E>;

/// Command-line interface of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project automation for layercake: services, test, bench, fuzz.",
    after_help = "Environment:\n  \
        REDIS_URL, DATABASE_URL   services to use instead of the local defaults\n  \
        LAYERCAKE_SERVICES        auto (default) | native | docker | external\n  \
        LAYERCAKE_INSTALL=1       allow installing redis-server/postgresql with apt-get (also CI=true)"
)]
struct Cli {
    /// The task to run.
    #[command(subcommand)]
    command: Command,
}

/// The tasks `cargo xtask` knows.
#[derive(Debug, Subcommand)]
enum Command {
    /// Find, start, stop or inspect the Redis and PostgreSQL servers the tests use.
    Services {
        /// What to do with the services.
        #[command(subcommand)]
        action: services::Action,
    },
    /// Run the whole check: fmt, clippy, services, tests, doc tests, docs, examples.
    Test(test::Args),
    /// Run the benchmarks against real services and write reports to target/bench.
    Bench(bench::Args),
    /// Run every fuzz target for a while (needs a nightly toolchain and cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Package every publishable crate, run cargo-deny, and build the documented programs
    /// in a crate outside the repository that pins older serde and tokio.
    ReleaseCheck(release::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nerror: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches the parsed command line to the task modules.
fn run(cli: Cli) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    match cli.command {
        Command::Services { action } => services::run(&sh, action),
        Command::Test(args) => test::run(&sh, &args),
        Command::Bench(args) => bench::run(&sh, &args),
        Command::Fuzz(args) => fuzz::run(&sh, &args),
        Command::ReleaseCheck(args) => release::run(&sh, &args),
    }
}

/// The workspace root: the parent of the directory holding xtask's `Cargo.toml`.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (`CARGO_TARGET_DIR` when set, else `<root>/target`).
fn target_dir() -> PathBuf {
    let root = project_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Whether an environment variable is set to a true-ish value (`1`, `true`, `yes`).
fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Prints a step banner so the output of a long run is easy to scan.
fn banner(text: &str) {
    println!("\n==> {text}");
}
