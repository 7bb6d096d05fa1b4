//! `layercake`: the operator's tool for a layercake tiered cache.
//!
//! It reads the configuration the services read (`LAYERCAKE_*` variables, see
//! `layercake config` and the `layercake::config` module) and looks into each tier on its
//! own: `inspect` a key's copy in every tier, `get` a value, `del` a key and `invalidate` a
//! prefix or tag through the library (so running instances hear it on the backplane), `scan`
//! keys page by page, find and repair `drift` between tiers, `doctor` the servers, show
//! `stats` of what the tiers hold, and why the cache missed (`misses`, from the miss reports
//! instances saved). Tables by default, `--json` for scripts.

mod cli;
mod commands;
mod ctx;
mod exit;
mod output;
mod view;
mod walk;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::ctx::Ctx;
use crate::exit::Outcome;

async fn run(cli: &Cli) -> Outcome {
    match &cli.command {
        Command::Config => commands::config::run(cli),
        Command::Doctor => commands::doctor::run(cli).await,
        Command::Misses { files } => commands::misses::run(cli, files),
        other => {
            let ctx = Ctx::connect(cli).await?;
            match other {
                Command::Inspect { key, decode } => {
                    commands::inspect::run(&ctx, key, *decode).await
                }
                Command::Get { key } => commands::get::run(&ctx, key).await,
                Command::Del { key, yes } => commands::del::run(&ctx, key, *yes).await,
                Command::Invalidate {
                    prefix,
                    tag,
                    raw,
                    max_keys,
                    yes,
                } => {
                    commands::invalidate::run(
                        &ctx,
                        prefix.as_deref(),
                        tag.as_deref(),
                        *raw,
                        *max_keys,
                        *yes,
                    )
                    .await
                }
                Command::Scan {
                    prefix,
                    raw,
                    tier,
                    limit,
                    after,
                    max_keys,
                } => {
                    commands::scan::run(
                        &ctx,
                        commands::scan::Scan {
                            prefix,
                            raw: *raw,
                            tier: tier.as_deref(),
                            limit: *limit,
                            after: after.as_deref(),
                            max_keys: *max_keys,
                        },
                    )
                    .await
                }
                Command::Drift {
                    prefix,
                    raw,
                    max_keys,
                    repair,
                    yes,
                } => {
                    commands::drift::run(
                        &ctx,
                        commands::drift::Drift {
                            prefix,
                            raw: *raw,
                            max_keys: *max_keys,
                            repair: *repair,
                            yes: *yes,
                        },
                    )
                    .await
                }
                Command::Stats {
                    prefix,
                    raw,
                    max_keys,
                } => commands::stats::run(&ctx, prefix, *raw, *max_keys).await,
                Command::Config | Command::Doctor | Command::Misses { .. } => Ok(exit::OK),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {f}");
            ExitCode::from(f.code)
        }
    }
}
