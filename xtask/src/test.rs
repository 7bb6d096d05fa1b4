//! `cargo xtask test`: the one test command, the same locally and in CI.
//!
//! Steps, in order, stopping at the first that fails:
//! fmt, clippy (warnings denied), services, tests (nextest, else cargo test), doc tests (every
//! Rust program of the README and docs/ runs against the services, plus a throwaway Redis
//! Cluster when `redis-server` is installed), docs (as docs.rs builds them, rustdoc warnings
//! denied, each feature-gated item labelled with its feature), examples (build all, run the
//! quickstart).

use std::path::Path;
use std::time::Instant;

use xshell::{Shell, cmd};

use crate::cluster::Cluster;
use crate::services;
use crate::{Result, banner, env_flag, project_root};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Extra arguments for the test runner, after `--`: a test name filter, or nextest options
    /// such as `-E 'package(layercake-memory)'`.
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// One named step of the run.
struct Step<'a> {
    /// Position of the step, for the banner.
    number: usize,
    /// Short name shown in the banner and in the error.
    name: &'a str,
}

/// Total number of steps, for the banners.
const STEPS: usize = 8;

impl Step<'_> {
    /// Prints the banner of this step with the command it runs.
    fn start(&self, what: &str) {
        banner(&format!("[{}/{STEPS}] {}: {what}", self.number, self.name));
    }

    /// Wraps a failure of this step with the step's name.
    fn fail(&self, err: impl std::fmt::Display) -> crate::Error {
        format!("step {} ({}) failed: {err}", self.number, self.name).into()
    }
}

/// Runs every step; the first failure stops the run.
pub(crate) fn run(sh: &Shell, args: &Args) -> Result<()> {
    let test_args = &args.test_args;

    let step = Step {
        number: 1,
        name: "fmt",
    };
    step.start("cargo fmt --all -- --check");
    cmd!(sh, "cargo fmt --all -- --check").run().map_err(|e| {
        step.fail(format!(
            "{e}\n  run `cargo fmt --all` to fix the formatting"
        ))
    })?;

    let step = Step {
        number: 2,
        name: "clippy",
    };
    step.start("cargo clippy --workspace --all-targets --all-features -- -D warnings");
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --all-features -- -D warnings"
    )
    .run()
    .map_err(|e| step.fail(e))?;

    let step = Step {
        number: 3,
        name: "services",
    };
    step.start("find or start Redis and PostgreSQL");
    let endpoints = services::ensure(sh).map_err(|e| step.fail(format!("\n{e}")))?;
    sh.set_var("REDIS_URL", &endpoints.redis_url);
    sh.set_var("DATABASE_URL", &endpoints.database_url);
    println!(
        "exporting REDIS_URL={} DATABASE_URL={}",
        endpoints.redis_url, endpoints.database_url
    );

    let step = Step {
        number: 4,
        name: "tests",
    };
    if nextest_installed(sh) {
        let profile: Vec<&str> = if env_flag("CI") && std::env::var_os("NEXTEST_PROFILE").is_none()
        {
            vec!["--profile", "ci"]
        } else {
            Vec::new()
        };
        step.start(&join(
            "cargo nextest run --workspace --all-features --no-fail-fast",
            profile
                .iter()
                .copied()
                .chain(test_args.iter().map(String::as_str)),
        ));
        cmd!(
            sh,
            "cargo nextest run --workspace --all-features --no-fail-fast {profile...} {test_args...}"
        )
        .run()
        .map_err(|e| step.fail(e))?;
    } else {
        println!(
            "\ncargo-nextest was not found; falling back to cargo test \
             (install it with `cargo install --locked cargo-nextest`)"
        );
        step.start(&join(
            "cargo test --workspace --all-features --no-fail-fast",
            test_args.iter().map(String::as_str),
        ));
        cmd!(
            sh,
            "cargo test --workspace --all-features --no-fail-fast {test_args...}"
        )
        .run()
        .map_err(|e| step.fail(e))?;
    }

    let step = Step {
        number: 5,
        name: "doc tests",
    };
    step.start("cargo test --workspace --all-features --doc");
    // Every program of the README and docs/ runs here, against the services above (they read
    // REDIS_URL / DATABASE_URL) and, for the production guide's Cluster program, a throwaway
    // cluster (REDIS_CLUSTER_NODES).
    let started = Instant::now();
    let cluster = match Cluster::start(sh) {
        Ok(c) => {
            println!(
                "exporting REDIS_CLUSTER_NODES={} (throwaway cluster)",
                c.nodes()
            );
            Some(c)
        }
        Err(e) => {
            println!(
                "note: no throwaway Redis Cluster ({e}); the Cluster program of \
                 docs/guides/production.md will say so and stop"
            );
            None
        }
    };
    let cluster_took = started.elapsed();
    let mut doc_tests = cmd!(sh, "cargo test --workspace --all-features --doc");
    if let Some(c) = &cluster {
        doc_tests = doc_tests.env("REDIS_CLUSTER_NODES", c.nodes());
    }
    let result = doc_tests.run();
    drop(cluster);
    result.map_err(|e| step.fail(e))?;
    println!(
        "doc tests took {:.1?} (of which starting the cluster {:.1?})",
        started.elapsed(),
        cluster_took
    );

    let step = Step {
        number: 6,
        name: "docs",
    };
    // As docs.rs builds them: every feature, `--cfg docsrs` (the crates then turn on rustdoc's
    // `doc_cfg`, which labels each item with the feature it needs). docs.rs uses a nightly
    // compiler; `RUSTC_BOOTSTRAP=1` lets this stable one accept that one unstable attribute.
    step.start(
        "RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS=\"-D warnings --cfg docsrs\" \
         cargo doc --workspace --no-deps --all-features",
    );
    cmd!(sh, "cargo doc --workspace --no-deps --all-features")
        .env("RUSTDOCFLAGS", "-D warnings --cfg docsrs")
        .env("RUSTC_BOOTSTRAP", "1")
        .run()
        .map_err(|e| step.fail(e))?;
    feature_badges_shown().map_err(|e| step.fail(e))?;

    let step = Step {
        number: 7,
        name: "examples",
    };
    step.start("cargo build --workspace --all-features --examples");
    cmd!(sh, "cargo build --workspace --all-features --examples")
        .run()
        .map_err(|e| step.fail(e))?;
    let quickstart = Path::new("crates/layercake/examples/quickstart.rs");
    if project_root().join(quickstart).exists() {
        step.start("cargo run -p layercake --all-features --example quickstart");
        cmd!(
            sh,
            "cargo run -p layercake --all-features --example quickstart"
        )
        .run()
        .map_err(|e| step.fail(e))?;
    } else {
        println!(
            "note: {} does not exist yet; not running the quickstart example",
            quickstart.display()
        );
    }

    let step = Step {
        number: 8,
        name: "release",
    };
    step.start("cargo package, cargo deny, outside-crate check (cargo xtask release-check)");
    crate::release::run(sh, &crate::release::Args::default()).map_err(|e| step.fail(e))?;

    banner("cargo xtask test: all steps passed");
    Ok(())
}

/// Whether `cargo nextest` is installed.
fn nextest_installed(sh: &Shell) -> bool {
    cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// A command line for the banners: `command` followed by `args`, separated by spaces.
fn join<'a>(command: &'a str, args: impl Iterator<Item = &'a str>) -> String {
    std::iter::once(command)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The facade's rustdoc labels its feature-gated items (the `redis` re-export says it needs the
/// `redis` feature): `doc_cfg` is on under `--cfg docsrs`.
fn feature_badges_shown() -> Result<()> {
    let index = crate::target_dir().join("doc/layercake/index.html");
    let html =
        std::fs::read_to_string(&index).map_err(|e| format!("reading {}: {e}", index.display()))?;
    if html.contains("Available on crate feature `redis` only") {
        Ok(())
    } else {
        Err(format!(
            "{} shows no feature label for the `redis` re-export: is \
             `#![cfg_attr(docsrs, feature(doc_cfg))]` still in crates/layercake/src/lib.rs?",
            index.display()
        )
        .into())
    }
}
