//! The command line: global options and one subcommand per operator task.

use clap::{Args, Parser, Subcommand};

/// layercake: look into a tiered cache and act on it, with the configuration the services use
/// (LAYERCAKE_* variables; see `layercake config`).
///
/// Exit codes: 0 done, 1 a tier or operation failed, 2 bad usage (or a destructive command
/// without --yes), 3 the key is in no tier, 4 findings (drift found, doctor warnings).
#[derive(Debug, Parser)]
#[command(name = "layercake", version)]
pub(crate) struct Cli {
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Use this namespace instead of LAYERCAKE_NAMESPACE.
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) namespace: Option<String>,
    /// Use this key version instead of LAYERCAKE_KEY_VERSION.
    #[arg(long, global = true, value_name = "N")]
    pub(crate) key_version: Option<u32>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the configuration read from the environment (connection strings redacted).
    Config,
    /// Show a key's copy in every tier: present, created, expiry, stale window, size, codec,
    /// version, tags.
    Inspect {
        /// The key.
        #[command(flatten)]
        key: KeyArg,
        /// Also print the value as JSON (JSON and MessagePack payloads).
        #[arg(long)]
        decode: bool,
    },
    /// Print a key's value (the first tier holding a fresh copy, else a stale one), without
    /// filling upper tiers.
    Get {
        /// The key.
        #[command(flatten)]
        key: KeyArg,
    },
    /// Delete a key from every tier through the library; running instances drop their
    /// memory copy through the backplane.
    Del {
        /// The key.
        #[command(flatten)]
        key: KeyArg,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Remove every entry under a prefix or carrying a tag, from every tier, through the
    /// library; running instances drop their memory copies through the backplane.
    Invalidate {
        /// Key prefix, after the namespace prefix (`--raw`: the whole key prefix).
        #[arg(long, conflicts_with = "tag", required_unless_present = "tag")]
        prefix: Option<String>,
        /// Tag.
        #[arg(long)]
        tag: Option<String>,
        /// The prefix is a whole key prefix, not relative to the namespace.
        #[arg(long)]
        raw: bool,
        /// Most keys counted per tier before and after.
        #[arg(long, default_value_t = 10_000)]
        max_keys: usize,
        /// Confirm the invalidation.
        #[arg(long)]
        yes: bool,
    },
    /// List keys under a prefix with size and remaining life, one page at a time, from a
    /// tier that can list keys.
    Scan {
        /// Key prefix, after the namespace prefix (`--raw`: the whole key prefix).
        #[arg(long, default_value = "")]
        prefix: String,
        /// The prefix is a whole key prefix, not relative to the namespace.
        #[arg(long)]
        raw: bool,
        /// The tier to list (default: the first below memory).
        #[arg(long)]
        tier: Option<String>,
        /// Keys per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start after this key (the `next` of the previous page).
        #[arg(long, value_name = "KEY")]
        after: Option<String>,
        /// Most keys read from the tier to sort into pages.
        #[arg(long, default_value_t = 100_000)]
        max_keys: usize,
    },
    /// Compare the copies held by the tiers below memory: an older version above (or below)
    /// a newer one, a copy outliving the one below it. Without --repair it only reports.
    Drift {
        /// Key prefix, after the namespace prefix (`--raw`: the whole key prefix).
        #[arg(long, default_value = "")]
        prefix: String,
        /// The prefix is a whole key prefix, not relative to the namespace.
        #[arg(long)]
        raw: bool,
        /// Most keys walked.
        #[arg(long, default_value_t = 100_000)]
        max_keys: usize,
        /// Remove the stale copies found (with --yes; without it, show what would go).
        #[arg(long)]
        repair: bool,
        /// Confirm the repair.
        #[arg(long)]
        yes: bool,
    },
    /// Check every configured tier: reachable, latency, server version and settings, table
    /// and directory use, clock skew.
    Doctor,
    /// Why the cache missed, from the miss reports instances saved (`Cache::save_miss_report`,
    /// or periodically with `InsightConfig::save_miss_report`): per instance, each tier's hit
    /// ratio against its target, misses by reason and suggestions; then every instance
    /// combined, per tier and per namespace. Exit code 4 when a target is missed.
    Misses {
        /// Miss report files (JSON), one per instance.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// What the tiers below memory hold for the namespace: keys, bytes, fresh and stale, by
    /// tag.
    Stats {
        /// Key prefix, after the namespace prefix (`--raw`: the whole key prefix).
        #[arg(long, default_value = "")]
        prefix: String,
        /// The prefix is a whole key prefix, not relative to the namespace.
        #[arg(long)]
        raw: bool,
        /// Most keys walked per tier.
        #[arg(long, default_value_t = 100_000)]
        max_keys: usize,
    },
}

/// A key as the caller's text (through the key strategy), a whole stored key, or a request.
#[derive(Debug, Args)]
pub(crate) struct KeyArg {
    /// The key text, as the service passes it to the cache.
    pub(crate) key: String,
    /// KEY is a whole stored key (`namespace:vN:…`), used as is.
    #[arg(long, conflicts_with = "request")]
    pub(crate) raw: bool,
    /// KEY is a JSON request, keyed through its canonical JSON as the service's typed
    /// requests are.
    #[arg(long)]
    pub(crate) request: bool,
}
