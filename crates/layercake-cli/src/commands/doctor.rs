//! `layercake doctor`: every configured tier checked — reachable, read latency, server
//! version and settings, table and directory use, clock skew — with warnings where a setting
//! would refuse writes, evict other data, or let the tier grow or lag.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use layercake::config::CacheConfig;
use layercake::{Backend, Key};
use serde_json::{Map, Value, json};

use crate::cli::Cli;
use crate::ctx::load_config;
use crate::exit::{FAILED, FINDINGS, OK, Outcome};
use crate::output;

/// Reads timed for the latency figure.
const PROBES: usize = 5;
/// Clock skew above this is a warning: Redis expires keys by its own clock, entries are
/// judged by each host's.
const SKEW_WARN: Duration = Duration::from_secs(1);
/// Share of a bound above which a tier is "near its bound".
const NEAR_BOUND: f64 = 0.9;
/// A temp file older than this was left by a crashed writer.
const TEMP_STALE: Duration = Duration::from_secs(600);
/// An expired row waiting longer than this means no reaper is keeping up.
const REAPER_LAG_WARN: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

struct Check {
    tier: &'static str,
    name: &'static str,
    status: Status,
    detail: String,
    figures: Value,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        tier: &'static str,
        name: &'static str,
        status: Status,
        detail: String,
        figures: Value,
    ) {
        self.checks.push(Check {
            tier,
            name,
            status,
            detail,
            figures,
        });
    }
}

fn now_micros() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i128)
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Median and largest of `PROBES` reads of a key that is never written.
async fn latency(backend: &dyn Backend) -> Result<(Duration, Duration), String> {
    let probe = Key::new("layercake-doctor:probe").map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t = Instant::now();
        backend.get(&probe).await.map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok((times[PROBES / 2], times[PROBES - 1]))
}

fn latency_check(r: &mut Report, tier: &'static str, l: Result<(Duration, Duration), String>) {
    match l {
        Ok((median, max)) => r.add(
            tier,
            "latency",
            Status::Ok,
            format!(
                "read round trip median {:.3}ms, max {:.3}ms of {PROBES}",
                ms(median),
                ms(max)
            ),
            json!({"median_ms": ms(median), "max_ms": ms(max), "reads": PROBES}),
        ),
        Err(e) => r.add(tier, "latency", Status::Fail, e, Value::Null),
    }
}

/// Skew of a server clock read between `before` and `after` (µs since the epoch).
fn skew_check(r: &mut Report, tier: &'static str, server_us: i128, before: i128, after: i128) {
    let skew_ms = (server_us - (before + after) / 2) as f64 / 1000.0;
    let status = if skew_ms.abs() > SKEW_WARN.as_millis() as f64 {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut detail = format!("server clock {skew_ms:+.1}ms from this host's");
    if status == Status::Warn {
        detail.push_str(
            "; entries are judged by each host's clock and Redis expires by its own: sync the clocks (NTP)",
        );
    }
    r.add(tier, "clock", status, detail, json!({"skew_ms": skew_ms}));
}

/// The connected backend when it answers a health call; otherwise its failure is reported.
/// Backends start while their server is down (calls then fail with `Unavailable`), so
/// reachability is a health call, not the connect.
async fn reachable<B: Backend>(
    r: &mut Report,
    tier: &'static str,
    connected: layercake::Result<Option<B>>,
) -> Option<B> {
    let failed = match connected {
        Ok(Some(b)) => match b.health().await {
            Ok(()) => return Some(b),
            Err(e) => e,
        },
        Ok(None) => return None,
        Err(e) => e,
    };
    r.add(
        tier,
        "reachable",
        Status::Fail,
        failed.to_string(),
        Value::Null,
    );
    None
}

async fn redis(r: &mut Report, c: &CacheConfig) {
    let t = Instant::now();
    let Some(backend) = reachable(r, "redis", c.connect_redis().await).await else {
        return;
    };
    r.add(
        "redis",
        "reachable",
        Status::Ok,
        format!(
            "connected in {:.1}ms, key prefix {:?}",
            ms(t.elapsed()),
            backend.key_prefix()
        ),
        json!({"connect_ms": ms(t.elapsed())}),
    );
    latency_check(r, "redis", latency(&backend).await);
    match backend.server_info().await {
        Ok(i) => {
            r.add(
                "redis",
                "version",
                Status::Ok,
                format!("Redis {} ({}, {})", i.version, i.mode, i.role),
                json!({"version": i.version, "mode": i.mode, "role": i.role}),
            );
            let figures = json!({
                "maxmemory": i.maxmemory,
                "maxmemory_policy": i.maxmemory_policy,
                "used_memory": i.used_memory,
                "evicted_keys": i.evicted_keys,
            });
            let used = format!("used {}", output::bytes(i.used_memory));
            let (status, detail) = if i.maxmemory == 0 {
                (
                    Status::Warn,
                    format!(
                        "no maxmemory ({used}): Redis grows until the host runs out of memory; \
                         set maxmemory with a volatile-lru or volatile-ttl policy"
                    ),
                )
            } else {
                let share = i.used_memory as f64 / i.maxmemory as f64;
                let bound = format!(
                    "maxmemory {} ({used}, {:.0}%), policy {}",
                    output::bytes(i.maxmemory),
                    share * 100.0,
                    i.maxmemory_policy
                );
                if i.maxmemory_policy == "noeviction" {
                    (
                        Status::Warn,
                        format!(
                            "{bound}: once full, every write fails with OOM; use volatile-lru \
                             or volatile-ttl (every cache key has a TTL)"
                        ),
                    )
                } else if i.maxmemory_policy.starts_with("allkeys-") {
                    (
                        Status::Warn,
                        format!(
                            "{bound}: evicts keys without a TTL too, so other data in this \
                             Redis can go; volatile-* evicts only keys with a TTL"
                        ),
                    )
                } else if share >= NEAR_BOUND {
                    (Status::Warn, format!("{bound}: near the bound, evicting"))
                } else {
                    (Status::Ok, bound)
                }
            };
            r.add("redis", "memory", status, detail, figures);
            r.add(
                "redis",
                "evictions",
                Status::Ok,
                format!("{} keys evicted since the server started", i.evicted_keys),
                json!({"evicted_keys": i.evicted_keys}),
            );
            let save = match &i.rdb_save {
                Some(s) if s.is_empty() => "RDB snapshots off".to_owned(),
                Some(s) => format!("RDB save {s:?}"),
                None => "RDB schedule unknown (CONFIG refused)".to_owned(),
            };
            let aof = if i.aof_enabled { "AOF on" } else { "AOF off" };
            let persistent = i.aof_enabled || i.rdb_save.as_deref().is_some_and(|s| !s.is_empty());
            let (status, detail) = if !i.rdb_last_save_ok {
                (
                    Status::Warn,
                    format!(
                        "{aof}, {save}: the last snapshot failed; with \
                         stop-writes-on-bgsave-error Redis refuses writes"
                    ),
                )
            } else if persistent {
                (
                    Status::Ok,
                    format!("{aof}, {save}: a restart keeps the entries"),
                )
            } else {
                (
                    Status::Ok,
                    format!("{aof}, {save}: a restart empties this tier"),
                )
            };
            r.add(
                "redis",
                "persistence",
                status,
                detail,
                json!({"aof": i.aof_enabled, "rdb_save": i.rdb_save, "last_save_ok": i.rdb_last_save_ok}),
            );
        }
        Err(e) => r.add("redis", "version", Status::Fail, e.to_string(), Value::Null),
    }
    let before = now_micros();
    match backend.server_time_micros().await {
        Ok(t) => skew_check(r, "redis", i128::from(t), before, now_micros()),
        Err(e) => r.add("redis", "clock", Status::Fail, e.to_string(), Value::Null),
    }
}

async fn postgres(r: &mut Report, c: &CacheConfig) {
    let t = Instant::now();
    let Some(backend) = reachable(r, "postgres", c.connect_postgres().await).await else {
        return;
    };
    r.add(
        "postgres",
        "reachable",
        Status::Ok,
        format!(
            "connected in {:.1}ms, table {}",
            ms(t.elapsed()),
            backend.qualified_table()
        ),
        json!({"connect_ms": ms(t.elapsed())}),
    );
    latency_check(r, "postgres", latency(&backend).await);
    let before = now_micros();
    match backend.table_info(Duration::from_secs(10)).await {
        Ok(i) => {
            let after = now_micros();
            r.add(
                "postgres",
                "version",
                Status::Ok,
                format!("PostgreSQL {}", i.server_version),
                json!({"version": i.server_version}),
            );
            r.add(
                "postgres",
                "table",
                Status::Ok,
                format!(
                    "{} rows, {} with indexes",
                    i.rows,
                    output::bytes(i.total_bytes.max(0).unsigned_abs())
                ),
                json!({"rows": i.rows, "total_bytes": i.total_bytes}),
            );
            let lag = i.oldest_expired_for.unwrap_or_default();
            let (status, detail) = if i.expired_rows > 0 && lag > REAPER_LAG_WARN {
                (
                    Status::Warn,
                    format!(
                        "{} expired rows not yet deleted, the oldest expired {} ago: no reaper \
                         is keeping up (each service's reaper runs every 30 s)",
                        i.expired_rows,
                        output::duration(lag)
                    ),
                )
            } else {
                (
                    Status::Ok,
                    format!(
                        "{} expired rows waiting for the reaper (oldest {})",
                        i.expired_rows,
                        output::duration(lag)
                    ),
                )
            };
            r.add(
                "postgres",
                "expired",
                status,
                detail,
                json!({"expired_rows": i.expired_rows, "reaper_lag_ms": lag.as_millis() as u64}),
            );
            skew_check(
                r,
                "postgres",
                i128::from(i.server_now_ms) * 1000,
                before,
                after,
            );
        }
        Err(e) => r.add(
            "postgres",
            "table",
            Status::Fail,
            e.to_string(),
            Value::Null,
        ),
    }
}

async fn file(r: &mut Report, c: &CacheConfig) {
    let Some(dir) = &c.file_dir else { return };
    match layercake::file::inspect_dir(dir) {
        Ok(u) => {
            let share = u.entry_bytes as f64 / c.file_max_bytes as f64;
            let detail = format!(
                "{} entries, {} of {} ({:.0}%) in {}",
                u.entries,
                output::bytes(u.entry_bytes),
                output::bytes(c.file_max_bytes),
                share * 100.0,
                dir.display()
            );
            let figures = json!({
                "entries": u.entries,
                "bytes": u.entry_bytes,
                "max_bytes": c.file_max_bytes,
                "used_share": share,
            });
            if share >= NEAR_BOUND {
                r.add(
                    "file",
                    "usage",
                    Status::Warn,
                    format!("{detail}: near its bound, every write evicts; raise LAYERCAKE_FILE_MAX_BYTES or shorten lifetimes"),
                    figures,
                );
            } else {
                r.add("file", "usage", Status::Ok, detail, figures);
            }
            let age = u.oldest_temp_age.unwrap_or_default();
            let figures = json!({
                "temp_files": u.temp_files,
                "temp_bytes": u.temp_bytes,
                "oldest_temp_s": age.as_secs(),
                "foreign_files": u.foreign_files,
            });
            if u.temp_files > 0 && age > TEMP_STALE {
                r.add(
                    "file",
                    "temp files",
                    Status::Warn,
                    format!(
                        "{} temp files ({}) left by crashed writers, the oldest {} old; the \
                         next open or sweep removes them",
                        u.temp_files,
                        output::bytes(u.temp_bytes),
                        output::duration(age)
                    ),
                    figures,
                );
            } else {
                r.add(
                    "file",
                    "temp files",
                    Status::Ok,
                    format!("{} temp files (writes in flight)", u.temp_files),
                    figures,
                );
            }
        }
        Err(e) if e.kind() == layercake::ErrorKind::Config => r.add(
            "file",
            "usage",
            Status::Warn,
            format!("{}: the tier creates it when it first opens", e.message()),
            Value::Null,
        ),
        Err(e) => r.add("file", "usage", Status::Fail, e.to_string(), Value::Null),
    }
    let t = Instant::now();
    match c.open_file().await {
        Ok(Some(b)) => {
            r.add(
                "file",
                "reachable",
                Status::Ok,
                format!("opened in {:.1}ms", ms(t.elapsed())),
                json!({"open_ms": ms(t.elapsed())}),
            );
            latency_check(r, "file", latency(&b).await);
        }
        Ok(None) => {}
        Err(e) => r.add(
            "file",
            "reachable",
            Status::Fail,
            e.to_string(),
            Value::Null,
        ),
    }
}

async fn backplane(r: &mut Report, c: &CacheConfig) {
    let Some(kind) = c.backplane_choice() else {
        let shared = c.redis_url.is_some() || c.postgres_url.is_some();
        r.add(
            "backplane",
            "configured",
            if shared { Status::Warn } else { Status::Ok },
            "none: other instances keep memory copies after a delete until they expire".to_owned(),
            Value::Null,
        );
        return;
    };
    match c.connect().await {
        Ok(t) => {
            let up = t.backplane.as_ref().is_some_and(|b| b.is_connected());
            r.add(
                "backplane",
                "reachable",
                if up { Status::Ok } else { Status::Fail },
                format!(
                    "{kind}: {}",
                    if up { "subscribed" } else { "not connected" }
                ),
                json!({"kind": kind, "connected": up}),
            );
        }
        Err(e) => r.add(
            "backplane",
            "reachable",
            Status::Fail,
            e.to_string(),
            Value::Null,
        ),
    }
}

pub(crate) async fn run(cli: &Cli) -> Outcome {
    let c = load_config(cli)?;
    let mut r = Report::default();
    r.add(
        "memory",
        "configured",
        Status::Ok,
        format!(
            "{} per instance (in each service's process)",
            output::bytes(c.memory_bytes)
        ),
        json!({"max_bytes": c.memory_bytes}),
    );
    redis(&mut r, &c).await;
    postgres(&mut r, &c).await;
    file(&mut r, &c).await;
    let reachable = !r
        .checks
        .iter()
        .any(|k| k.name == "reachable" && k.status == Status::Fail);
    if reachable {
        backplane(&mut r, &c).await;
    }
    let count = |s: Status| r.checks.iter().filter(|k| k.status == s).count();
    let (ok, warn, fail) = (count(Status::Ok), count(Status::Warn), count(Status::Fail));
    if cli.json {
        let config: Map<String, Value> = c
            .summary()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        let checks: Vec<Value> = r
            .checks
            .iter()
            .map(|k| {
                json!({
                    "tier": k.tier,
                    "check": k.name,
                    "status": k.status.as_str().to_lowercase(),
                    "detail": k.detail,
                    "figures": k.figures,
                })
            })
            .collect();
        output::print_json(&json!({
            "config": config,
            "checks": checks,
            "summary": {"ok": ok, "warn": warn, "fail": fail},
        }));
    } else {
        println!(
            "tiers {}  namespace {}  backplane {}",
            c.tier_names().join(","),
            c.namespace().map(|n| n.prefix()).unwrap_or_default(),
            c.backplane_choice().unwrap_or("none")
        );
        let rows: Vec<Vec<String>> = r
            .checks
            .iter()
            .map(|k| {
                vec![
                    k.tier.to_owned(),
                    k.name.to_owned(),
                    k.status.as_str().to_owned(),
                    k.detail.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["TIER", "CHECK", "STATUS", "DETAIL"], &rows)
        );
        println!("{ok} ok, {warn} warnings, {fail} failures");
    }
    Ok(if fail > 0 {
        FAILED
    } else if warn > 0 {
        FINDINGS
    } else {
        OK
    })
}
