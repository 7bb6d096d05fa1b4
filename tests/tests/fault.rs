//! The fault suite (issue 9): scenarios 1–18, each bounded in time and count, each printing
//! its measured figures as `scenario N: name=value …` lines (run with `--no-capture` to see
//! them; `docs/reliability.md` keeps the figures of the last run).
//!
//! Scenarios 12–17 check the write contract (issues 15 and 16): what `Ok` from `set`, `delete`
//! and `invalidate_tag` promises once a faulted tier is back (12–16, helpers in `contract`),
//! and read-your-writes of two instances with no fault (17); scenario 18 builds a cache while its
//! servers are down and measures how soon it uses each once it is up; run them alone with
//! `cargo nextest run -p layercake-tests --test fault -E 'test(/scenario_1[2-8]/)' --no-capture`.
//! Scenario 16 mounts a tmpfs of its own, so it needs root (or `CAP_SYS_ADMIN`).
//!
//! Scenarios that kill, freeze or restart a server start their own throwaway `redis-server` or
//! PostgreSQL on a free loopback port (never the shared 6379/5432); the others use the shared
//! services isolated by a random key prefix, schema and directory. The nextest configuration
//! runs this binary's tests one at a time (`serial-timing` group) so timing figures do not
//! compete for the 2 cores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

/// The scenarios (files under `tests/tests/fault/`); test names start with `fault::`.
mod fault {
    mod contract;
    mod support;

    mod s01_redis_killed;
    mod s02_redis_frozen;
    mod s03_postgres_outage;
    mod s04_slow_tiers;
    mod s05_exhaustion;
    mod s06_corruption;
    mod s07_oversized;
    mod s08_hostile_keys;
    mod s09_stampede;
    mod s10_coherence;
    mod s11_memory;
    mod s12_redis_aof_restart;
    mod s13_redis_unreachable;
    mod s14_redis_oom;
    mod s15_postgres_restart;
    mod s16_file_tier_full;
    mod s17_read_your_writes;
    mod s18_start_down;
}
