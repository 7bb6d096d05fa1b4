//! `cargo xtask release-check`, also the last steps of `cargo xtask test`: what a user of the
//! published crates would meet.
//!
//! - **package**: `cargo package --no-verify` of every publishable member (`publish = false`
//!   ones are left out). Cargo packages the members in dependency order and resolves the
//!   unpublished siblings from the packages it just made, so this works before anything is on
//!   crates.io. `--no-verify`: the outside-crate check below compiles the same sources.
//! - **deny**: `cargo deny check licenses bans sources` (licenses, banned crates and sources
//!   against `deny.toml`). Without cargo-deny installed, a local run says how to install it and
//!   goes on; under CI (`CI=true`) it fails, so CI never passes without the check (`.ci/run`
//!   installs it first).
//! - **outside crate**: a crate in a temporary directory outside the repository depends on
//!   `layercake` (every feature) and `layercake-testkit` by path, pins older semver-compatible
//!   `serde` and `tokio` ([`OLD_SERDE`], [`OLD_TOKIO`]), and type-checks the README example and
//!   every guide program (each Rust block of the READMEs and docs/ that has a `fn main` and is
//!   not `ignore`) as one binary each. `cargo check`, not a build: resolution and types are what
//!   an older lock file can break, and codegen would triple the time.
//!   `cargo xtask release-check --runs N` builds the programs instead and runs each one N
//!   times against the services (found or started as for `cargo xtask test`), as a user who
//!   copied it would: it reports each program's passes and fails if any run failed.

use std::path::Path;

use xshell::{Shell, cmd};

use crate::{Result, banner, project_root, target_dir};

/// The `serde` a user's crate may have locked: older than the workspace's lock, at or above
/// the libraries' caret minimum (`1.0.197`).
pub(crate) const OLD_SERDE: &str = "=1.0.200";
/// The `tokio` a user's crate may have locked (the libraries ask for `1.40`).
pub(crate) const OLD_TOKIO: &str = "=1.43.0";

/// Options of `cargo xtask release-check`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// Build the documented programs in the outside crate and run each this many times
    /// against the services (default: type-check them only).
    #[arg(long)]
    runs: Option<usize>,
}

/// Runs the three checks; the first failure stops.
pub(crate) fn run(sh: &Shell, args: &Args) -> Result<()> {
    package(sh)?;
    deny(sh)?;
    outside_crate(sh, args.runs)
}

/// The members of the workspace (their directories), from the root manifest.
fn members(root: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let start = manifest
        .find("members = [")
        .ok_or("no `members = [` in the root Cargo.toml")?;
    let list = &manifest[start..];
    let end = list.find(']').ok_or("unterminated members list")?;
    Ok(list[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect())
}

/// A manifest's `name = "…"` and whether it says `publish = false`.
fn package_of(manifest: &str) -> Option<(String, bool)> {
    let name = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = \""))?
        .trim_end_matches('"')
        .to_owned();
    let publish = !manifest
        .lines()
        .any(|l| l.trim().replace(' ', "") == "publish=false");
    Some((name, publish))
}

/// `cargo package --no-verify` of every publishable member.
fn package(sh: &Shell) -> Result<()> {
    let root = project_root();
    let mut args = Vec::new();
    for dir in members(&root)? {
        let manifest = std::fs::read_to_string(root.join(&dir).join("Cargo.toml"))?;
        if let Some((name, true)) = package_of(&manifest) {
            args.push("-p".to_owned());
            args.push(name);
        }
    }
    banner(&format!(
        "package: cargo package --no-verify {}",
        args.join(" ")
    ));
    cmd!(sh, "cargo package --no-verify {args...}")
        .run()
        .map_err(|e| format!("cargo package failed: {e}"))?;
    Ok(())
}

/// `cargo deny check licenses bans sources`, or how to install cargo-deny.
fn deny(sh: &Shell) -> Result<()> {
    let installed = cmd!(sh, "cargo deny --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if !installed && crate::env_flag("CI") {
        return Err(
            "cargo-deny is not installed, and CI must check licenses, bans and sources: \
                    install it with `cargo install cargo-deny --locked` (`.ci/run` does)"
                .into(),
        );
    }
    if !installed {
        banner("deny: skipped, cargo-deny is not installed");
        println!(
            "install it with `cargo install cargo-deny --locked` to check licenses, bans and \
             sources against deny.toml"
        );
        return Ok(());
    }
    banner("deny: cargo deny check licenses bans sources");
    cmd!(sh, "cargo deny check licenses bans sources")
        .run()
        .map_err(|e| format!("cargo deny failed: {e}"))?;
    Ok(())
}

/// The Rust programs of a Markdown file: blocks fenced as `rust` (with `no_run` and the like,
/// not `ignore`) that have a `fn main`, with rustdoc's hidden-line markers removed.
fn programs(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut block {
            None => {
                if let Some(info) = fence.strip_prefix("```rust")
                    && !info.contains("ignore")
                {
                    block = Some(Vec::new());
                }
            }
            Some(lines) if fence.starts_with("```") => {
                let code: Vec<&str> = lines
                    .iter()
                    .map(|l| match l.trim_start() {
                        "#" => "",
                        t if t.starts_with("# ") => &t[2..],
                        _ => l,
                    })
                    .collect();
                let code = code.join("\n");
                if code.contains("fn main") {
                    out.push(code);
                }
                block = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    out
}

/// `name = …` of the root `[workspace.dependencies]`, made usable outside the repository
/// (paths absolute).
fn workspace_dependency(root: &Path, manifest: &str, name: &str) -> Option<String> {
    let line = manifest
        .lines()
        .find(|l| l.split_once(" = ").is_some_and(|(n, _)| n.trim() == name))?;
    let spec = line.split_once(" = ")?.1;
    Some(spec.replace("path = \"", &format!("path = \"{}/", root.display())))
}

/// The crate outside the repository: older `serde` / `tokio`, every documented program.
fn outside_crate(sh: &Shell, runs: Option<usize>) -> Result<()> {
    let root = project_root();
    let dir = std::env::temp_dir().join(format!("layercake-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/bin"))?;
    let workspace = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let mut docs = vec![
        root.join("README.md"),
        root.join("crates/layercake/README.md"),
    ];
    for sub in ["docs", "docs/guides"] {
        let mut found: Vec<_> = std::fs::read_dir(root.join(sub))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        found.sort();
        docs.extend(found);
    }
    let mut used = std::collections::BTreeSet::new();
    let mut count = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc)?;
        let stem = doc
            .strip_prefix(&root)
            .unwrap_or(doc)
            .to_string_lossy()
            .replace(['/', '.', '-'], "_");
        for (i, code) in programs(&text).iter().enumerate() {
            // Crates the program names (`name::…`), looked up in the workspace's dependencies.
            for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                if let Some((krate, _)) = word.split_once("::") {
                    used.insert(krate.to_owned());
                }
            }
            std::fs::write(dir.join(format!("src/bin/{stem}_{i}.rs")), code)?;
            count += 1;
        }
    }
    let features = layercake_features(&root)?;
    let mut deps = format!(
        "layercake = {{ path = \"{}/crates/layercake\", features = [{features}] }}\n\
         serde = {{ version = \"{OLD_SERDE}\", features = [\"derive\"] }}\n\
         tokio = {{ version = \"{OLD_TOKIO}\", features = [\"full\"] }}\n",
        root.display()
    );
    for krate in &used {
        if ["layercake", "serde", "tokio"].contains(&krate.as_str()) {
            continue;
        }
        // A dependency is named with `-` or `_` in the manifest, always `_` in code.
        let dashed = krate.replace('_', "-");
        for name in [krate.as_str(), dashed.as_str()] {
            if let Some(spec) = workspace_dependency(&root, &workspace, name) {
                deps.push_str(&format!("{name} = {spec}\n"));
                break;
            }
        }
    }
    let manifest = format!(
        "[package]\nname = \"outside-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
         publish = false\n\n[workspace]\n\n[dependencies]\n{deps}"
    );
    std::fs::write(dir.join("Cargo.toml"), &manifest)?;
    banner(&format!(
        "outside crate: cargo check of {count} documented programs in {} (serde {OLD_SERDE}, \
         tokio {OLD_TOKIO})",
        dir.display()
    ));
    let target = target_dir().join("outside-check");
    let manifest_path = dir.join("Cargo.toml");
    let verb = if runs.is_some() { "build" } else { "check" };
    let mut result = cmd!(
        sh,
        "cargo {verb} --quiet --bins --manifest-path {manifest_path}"
    )
    .env("CARGO_TARGET_DIR", &target)
    .run()
    .map_err(|e| -> crate::Error {
        format!("the outside crate does not build against older serde/tokio: {e}").into()
    });
    if let (Ok(()), Some(n)) = (&result, runs) {
        result = run_programs(sh, &dir, &target.join("debug"), n);
    }
    let resolved = cmd!(
        sh,
        "cargo tree --quiet --manifest-path {manifest_path} --depth 1 -i serde -e normal"
    )
    .env("CARGO_TARGET_DIR", &target)
    .quiet()
    .read()
    .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|e| format!("{e}\n{manifest}"))?;
    println!(
        "{count} programs build with {}",
        resolved.lines().next().unwrap_or("serde (version unknown)")
    );
    Ok(())
}

/// Runs every program of the outside crate `runs` times against the services, one at a time,
/// from the crate's directory; prints each program's passes and fails if any run failed.
fn run_programs(sh: &Shell, dir: &Path, bins: &Path, runs: usize) -> Result<()> {
    let endpoints = crate::services::ensure(sh)?;
    let mut names: Vec<String> = std::fs::read_dir(dir.join("src/bin"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    banner(&format!(
        "running {} programs {runs} times each",
        names.len()
    ));
    let mut failed = Vec::new();
    for name in &names {
        let mut passed = 0;
        let mut last_error = String::new();
        for _ in 0..runs {
            let out = std::process::Command::new(bins.join(name))
                .current_dir(dir)
                .env("REDIS_URL", &endpoints.redis_url)
                .env("DATABASE_URL", &endpoints.database_url)
                .output()?;
            if out.status.success() {
                passed += 1;
            } else {
                last_error = String::from_utf8_lossy(&out.stderr).into_owned();
            }
        }
        println!("{passed:>3}/{runs}  {name}");
        if passed < runs {
            failed.push(format!(
                "{name}: {passed}/{runs}; last failure:\n{last_error}"
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("documented programs failed:\n{}", failed.join("\n")).into())
    }
}

/// Every feature of the `layercake` crate, quoted for a manifest.
fn layercake_features(root: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(root.join("crates/layercake/Cargo.toml"))?;
    let table = manifest
        .split("[features]")
        .nth(1)
        .ok_or("crates/layercake/Cargo.toml has no [features]")?;
    let names: Vec<String> = table
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| l.split_once(" = ").map(|(n, _)| n.trim().to_owned()))
        .filter(|n| !n.starts_with('#') && n != "default")
        .map(|n| format!("\"{n}\""))
        .collect();
    Ok(names.join(", "))
}
