//! Helpers shared by the fault scenarios: tiers with small timeouts, raw access to what a tier
//! stored, a call log around a backend, a tiny deterministic RNG, percentiles, RSS.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::core::async_trait;
use layercake::{
    Backend, Capability, Entry, FillOutcome, Key, Result, Selector, TierOptions, Tombstone,
};
use layercake_postgres::tokio_postgres::{self, NoTls};
use layercake_postgres::{PostgresBackend, PostgresConfig};
use layercake_redis::{RedisBackend, RedisConfig};
use parking_lot::Mutex;

/// Read timeout the fault scenarios give the composer for every remote tier.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(150);
/// Write timeout the fault scenarios give the composer for every remote tier.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_millis(300);
/// What a bounded call may take beyond its timeout on a loaded 2-core machine (scheduling,
/// the other tiers of the same call).
pub(crate) const SLACK: Duration = Duration::from_millis(100);

/// Composer options of a remote tier in the fault suite: small timeouts, default breaker
/// (3 failures, 1 s open).
pub(crate) fn fast_tier() -> TierOptions {
    TierOptions::new()
        .read_timeout(Some(READ_TIMEOUT))
        .write_timeout(Some(WRITE_TIMEOUT))
}

/// A Redis tier with small backend timeouts (200 ms per operation, 200 ms to connect).
pub(crate) async fn redis_tier(url: &str, prefix: &str) -> RedisBackend {
    RedisBackend::connect(redis_config(url, prefix))
        .await
        .expect("redis tier")
}

/// The configuration of [`redis_tier`].
pub(crate) fn redis_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig::new(url)
        .with_key_prefix(prefix.to_owned())
        .with_operation_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(200))
}

/// A PostgreSQL tier with small timeouts (200 ms per operation and connect, 100 ms pool wait)
/// and no reaper, in its own schema.
pub(crate) async fn postgres_tier(url: &str, schema: &str) -> PostgresBackend {
    // Create the schema with the default (1 s) timeouts: DDL on a busy machine can take
    // longer than the 200 ms the tier gets for its operations.
    let ddl = PostgresConfig::new(url)
        .expect("postgres url")
        .with_table(schema.to_owned(), "entries")
        .with_reaper(None);
    drop(
        PostgresBackend::connect(ddl)
            .await
            .expect("postgres schema"),
    );
    PostgresBackend::connect(postgres_config(url, schema))
        .await
        .expect("postgres tier")
}

/// The configuration of [`postgres_tier`].
pub(crate) fn postgres_config(url: &str, schema: &str) -> PostgresConfig {
    PostgresConfig::new(url)
        .expect("postgres url")
        .with_table(schema.to_owned(), "entries")
        .with_operation_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(200))
        .with_pool_timeouts(
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(100),
        )
        .with_reaper(None)
}

/// A value whose content names the key it was written for and the write that made it, so a
/// read can tell a wrong value (another key's) from an old one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Val {
    /// The key index it belongs to.
    pub(crate) k: u32,
    /// The write generation (0 = computed by a loader).
    pub(crate) generation: u64,
    /// Padding, so values have a realistic size.
    pub(crate) pad: String,
}

impl Val {
    /// A value of key `k`, generation `g`.
    pub(crate) fn new(k: u32, g: u64) -> Val {
        Val {
            k,
            generation: g,
            pad: "x".repeat(200),
        }
    }
}

/// xorshift64*: deterministic, dependency-free randomness for workloads.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `percent` / 100.
    pub(crate) fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The `p`-quantile (0..=1) of `v` (sorted in place); zero for an empty slice.
pub(crate) fn quantile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Poll `f` every millisecond until it is true or `limit` passes; how long it took.
pub(crate) async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if f() {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Resident memory of this process (`VmRSS` of `/proc/self/status`), bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// Raw access to the keys of one Redis tier (its key prefix), bypassing the backend.
pub(crate) struct RawRedis {
    conn: redis::aio::MultiplexedConnection,
    prefix: String,
}

impl RawRedis {
    /// Connect to `url`, for keys under `prefix`.
    pub(crate) async fn connect(url: &str, prefix: &str) -> RawRedis {
        let client = redis::Client::open(url).expect("redis url");
        RawRedis {
            conn: client
                .get_multiplexed_async_connection()
                .await
                .expect("raw redis connection"),
            prefix: prefix.to_owned(),
        }
    }
    /// `SET prefix+key bytes`.
    pub(crate) async fn put(&self, key: &Key, bytes: &[u8]) {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{}{}", self.prefix, key.as_str()))
            .arg(bytes)
            .query_async::<()>(&mut c)
            .await
            .expect("raw SET");
    }
    /// Whether `prefix+key` exists.
    pub(crate) async fn exists(&self, key: &Key) -> bool {
        let mut c = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(format!("{}{}", self.prefix, key.as_str()))
            .query_async::<i64>(&mut c)
            .await
            .expect("raw EXISTS")
            == 1
    }
    /// Run any command; the reply as a debug string.
    pub(crate) async fn command(&self, args: &[&str]) -> String {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        match cmd.query_async::<redis::Value>(&mut c).await {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e}"),
        }
    }
}

/// Raw access to the rows of one PostgreSQL tier table, bypassing the backend.
pub(crate) struct RawPg {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    table: String,
}

impl Drop for RawPg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawPg {
    /// Connect to `url`, for the table `"schema".entries`.
    pub(crate) async fn connect(url: &str, schema: &str) -> RawPg {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("raw postgres connection");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        RawPg {
            client,
            task,
            table: format!("\"{schema}\".entries"),
        }
    }
    /// Upsert a row with `bytes` as its stored value, expiring far in the future.
    pub(crate) async fn put(&self, key: &Key, bytes: &[u8]) {
        let sql = format!(
            "INSERT INTO {} (key, value, expires_at) VALUES ($1, $2, 9223372036854775807) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            self.table
        );
        self.client
            .execute(&sql, &[&key.as_bytes(), &bytes])
            .await
            .expect("raw INSERT");
    }
    /// Whether a row for `key` exists.
    pub(crate) async fn exists(&self, key: &Key) -> bool {
        let sql = format!("SELECT 1 FROM {} WHERE key = $1", self.table);
        self.client
            .query_opt(&sql, &[&key.as_bytes()])
            .await
            .expect("raw SELECT")
            .is_some()
    }
    /// Number of rows in the table, `None` if the table does not exist.
    pub(crate) async fn count(&self) -> Option<i64> {
        let sql = format!("SELECT count(*) FROM {}", self.table);
        self.client
            .query_one(&sql, &[])
            .await
            .ok()
            .map(|r| r.get::<_, i64>(0))
    }
}

/// One call through a [`Logged`] backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    /// When it started.
    pub(crate) start: Instant,
    /// When it ended.
    pub(crate) end: Instant,
    /// Whether it succeeded.
    pub(crate) ok: bool,
}

/// A backend that logs the start, end and outcome of every call that reads or writes keys
/// (`get`, `set`, `delete`, their bulk forms, `fill`, `fill_many`, `delete_with`), so a test
/// can see exactly which calls reached a tier (e.g. none while its breaker is open). It
/// forwards every other method unlogged.
pub(crate) struct Logged {
    inner: Arc<dyn Backend>,
    log: Arc<Mutex<Vec<Call>>>,
}

impl fmt::Debug for Logged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logged")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Logged {
    /// Wrap `inner`; the returned log fills as calls end.
    pub(crate) fn new(inner: Arc<dyn Backend>) -> (Logged, Arc<Mutex<Vec<Call>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (
            Logged {
                inner,
                log: log.clone(),
            },
            log,
        )
    }

    /// Start logging a call. A call dropped before it ends (the composer's timeout cancelled
    /// it) is logged as a failure when it is dropped, as the breaker counts it.
    fn begin(&self) -> Logging<'_> {
        Logging {
            log: &self.log,
            start: Instant::now(),
            ended: false,
        }
    }

    /// Run one call of the tier, logging it (a call dropped before it ends is logged as failed).
    async fn logged<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let logging = self.begin();
        let r = call.await;
        logging.end(&r);
        r
    }
}

/// One call being logged by [`Logged`].
struct Logging<'a> {
    log: &'a Mutex<Vec<Call>>,
    start: Instant,
    ended: bool,
}

impl Logging<'_> {
    fn end<T>(mut self, r: &Result<T>) {
        self.ended = true;
        self.push(r.is_ok());
    }

    fn push(&self, ok: bool) {
        self.log.lock().push(Call {
            start: self.start,
            end: Instant::now(),
            ok,
        });
    }
}

impl Drop for Logging<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.push(false);
        }
    }
}

#[async_trait]
impl Backend for Logged {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capability(&self) -> Capability {
        self.inner.capability()
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.logged(self.inner.get(key)).await
    }
    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.logged(self.inner.set(key, entry)).await
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.logged(self.inner.delete(key)).await
    }
    // One bulk call is one call to the tier (the default would log one call per key).
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        self.logged(self.inner.get_many(keys)).await
    }
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        self.logged(self.inner.set_many(items)).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.logged(self.inner.delete_many(keys)).await
    }
    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        self.inner.invalidate(selector).await
    }
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.inner.keys_with_prefix(prefix, limit).await
    }
    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.logged(self.inner.fill(key, entry)).await
    }
    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        self.logged(self.inner.fill_many(items)).await
    }
    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.logged(self.inner.delete_with(key, tombstone)).await
    }
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.inner.invalidate_with(selector, tombstone).await
    }
    fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt_reads()
    }
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        // Not forwarded: calls past this wrapper would go unlogged.
        None
    }
}

/// What the breaker log of a tier says about one outage that started at `outage`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerReport {
    /// The longest run of consecutive failures (by completion) up to the point the breaker
    /// opened: 3 when it opened, fewer when it never had reason to.
    pub(crate) failures_before_open: usize,
    /// Calls that started after the third consecutive failure and before the cool-down ended
    /// (must be 0: the breaker skips the tier).
    pub(crate) admitted_while_open: usize,
}

/// Read a call log: after the 3rd consecutive failure completed at or after `outage`, no call
/// may start until the breaker's cool-down (`open_for`) has passed (`admitted_while_open`).
pub(crate) fn breaker_report(log: &[Call], outage: Instant, open_for: Duration) -> BreakerReport {
    let mut calls: Vec<Call> = log.iter().filter(|c| c.end >= outage).copied().collect();
    calls.sort_by_key(|c| c.end);
    // The breaker counts *consecutive* failures: a call that started before the outage and
    // succeeds after the first failures resets the count. Its opening point is the failure
    // that completes the first run of three.
    let mut run = 0;
    let mut longest = 0;
    let mut third = None;
    for c in &calls {
        if c.ok {
            run = 0;
            continue;
        }
        run += 1;
        longest = longest.max(run);
        if run == 3 {
            third = Some(*c);
            break;
        }
    }
    let Some(third) = third else {
        return BreakerReport {
            failures_before_open: longest,
            admitted_while_open: 0,
        };
    };
    // A call may start in the microseconds between the backend's answer and the composer's
    // bookkeeping of it; 5 ms covers that, the cool-down is 1 s.
    let from = third.end + Duration::from_millis(5);
    let to = third.end + open_for - Duration::from_millis(50);
    BreakerReport {
        failures_before_open: run,
        admitted_while_open: log
            .iter()
            .filter(|c| c.start > from && c.start < to)
            .count(),
    }
}

/// The shape of a mixed workload over one cache: `tasks` tasks on keys `k0..k{keys}`, each
/// operation a `set` with probability `write_pct` %, else a `get_or_compute` (or a `get` when
/// `compute` is false) that first drops the L1 copy with probability `drop_l1_pct` % so the
/// read must reach the lower tiers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    pub(crate) tasks: usize,
    pub(crate) keys: u32,
    pub(crate) write_pct: u64,
    pub(crate) drop_l1_pct: u64,
    pub(crate) compute: bool,
}

/// The timing of one operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) start: Instant,
    pub(crate) took: Duration,
    pub(crate) write: bool,
    /// Served from L1.
    pub(crate) l1: bool,
}

/// What a workload saw.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    pub(crate) ops: Vec<Op>,
    pub(crate) errors: Vec<String>,
    /// Values that belonged to another key or to a write that had not started.
    pub(crate) wrong: usize,
}

impl LoadResult {
    /// Operations that started in `[from, to)`.
    pub(crate) fn between(&self, from: Instant, to: Instant) -> impl Iterator<Item = &Op> {
        self.ops
            .iter()
            .filter(move |o| o.start >= from && o.start < to)
    }
    /// The p99 and count of L1-served reads that started in `[from, to)`.
    pub(crate) fn l1_p99(&self, from: Instant, to: Instant) -> (Duration, usize) {
        let mut v: Vec<Duration> = self
            .between(from, to)
            .filter(|o| o.l1 && !o.write)
            .map(|o| o.took)
            .collect();
        (quantile(&mut v, 0.99), v.len())
    }
    /// The longest read and write that started in `[from, to)`.
    pub(crate) fn max_between(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        let mut r = Duration::ZERO;
        let mut w = Duration::ZERO;
        for o in self.between(from, to) {
            let m = if o.write { &mut w } else { &mut r };
            *m = (*m).max(o.took);
        }
        (r, w)
    }
}

/// Write generation 1 of every key, then run `spec` until `stop` is set; the handle yields
/// the merged results.
pub(crate) async fn start_load(
    cache: layercake::Cache,
    l1: Arc<dyn Backend>,
    spec: LoadSpec,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<LoadResult> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let max_gen: Arc<Vec<AtomicU64>> =
        Arc::new((0..spec.keys).map(|_| AtomicU64::new(1)).collect());
    for k in 0..spec.keys {
        cache
            .set(format!("k{k}").as_str(), Val::new(k, 1))
            .await
            .expect("preload");
    }
    let next_gen = Arc::new(AtomicU64::new(2));
    let mut handles = Vec::new();
    for t in 0..spec.tasks {
        let (cache, l1, stop, max_gen, next_gen) = (
            cache.clone(),
            l1.clone(),
            stop.clone(),
            max_gen.clone(),
            next_gen.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(t as u64 + 1);
            let mut out = LoadResult::default();
            while !stop.load(Ordering::Relaxed) {
                // An operation served without I/O (L1 hit, open breaker) never returns
                // `Pending`; yield so that timers and other tasks run on the 2 workers.
                tokio::task::yield_now().await;
                let k = rng.below(u64::from(spec.keys)) as u32;
                let name = format!("k{k}");
                if rng.percent(spec.write_pct) {
                    let g = next_gen.fetch_add(1, Ordering::SeqCst);
                    max_gen[k as usize].fetch_max(g, Ordering::SeqCst);
                    let start = Instant::now();
                    let r = cache.set(name.as_str(), Val::new(k, g)).await;
                    out.ops.push(Op {
                        start,
                        took: start.elapsed(),
                        write: true,
                        l1: false,
                    });
                    if let Err(e) = r {
                        out.errors.push(format!("set: {e}"));
                    }
                    continue;
                }
                if rng.percent(spec.drop_l1_pct) {
                    let key = cache.key(name.as_str()).expect("key");
                    let _ = l1.delete(&key).await;
                }
                let start = Instant::now();
                let r = if spec.compute {
                    cache
                        .get_or_compute(name.as_str(), move || async move {
                            Ok::<_, std::io::Error>(Val::new(k, 0))
                        })
                        .await
                        .map(Some)
                } else {
                    cache.get::<Val>(name.as_str()).await
                };
                let took = start.elapsed();
                let mut l1_hit = false;
                match r {
                    Ok(Some(l)) => {
                        l1_hit = l.source == layercake::Source::Hit { tier: 0 };
                        if l.value.k != k
                            || l.value.generation > max_gen[k as usize].load(Ordering::SeqCst)
                        {
                            out.wrong += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => out.errors.push(format!("read: {e}")),
                }
                out.ops.push(Op {
                    start,
                    took,
                    write: false,
                    l1: l1_hit,
                });
            }
            out
        }));
    }
    tokio::spawn(async move {
        let mut all = LoadResult::default();
        for h in handles {
            let r = h.await.expect("load task");
            all.ops.extend(r.ops);
            all.errors.extend(r.errors);
            all.wrong += r.wrong;
        }
        all
    })
}
