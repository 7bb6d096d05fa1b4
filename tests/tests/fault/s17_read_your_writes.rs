//! Scenario 17: read-your-writes of two instances, no fault, no wait between an instance's own
//! write and its own read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use layercake::{Backend, Backplane, Cache, MemoryBackend, Source};
use layercake_postgres::{PostgresBackend, PostgresBackplane, PostgresBackplaneConfig};
use layercake_redis::{RedisBackend, RedisBackplane, RedisBackplaneConfig};
use layercake_testkit::server::{PostgresServer, RedisServer};
use layercake_testkit::services::unique_id;

use super::contract::{CALL_LIMIT, bounded, patient_tier};
use super::support::{Rng, postgres_config, redis_config};

const INSTANCES: usize = 2;
const TASKS_PER_INSTANCE: usize = 4;
const OPS_PER_TASK: usize = 5_000;
const KEYS: u64 = 50;
/// Bound of one variant (its Redis is killed when it is exceeded).
const VARIANT_LIMIT: Duration = Duration::from_secs(58);

/// Which backplane keeps the instances' L1s coherent.
#[derive(Debug, Clone, Copy)]
enum Bp {
    Redis,
    Postgres,
}

/// What one operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Set,
    Delete,
}

/// One operation of the history.
#[derive(Debug, Clone, Copy)]
struct Rec {
    instance: usize,
    kind: Kind,
    key: u64,
    /// Set: the value written; get: the value read (`None`: a miss).
    value: Option<u64>,
    start: Instant,
    end: Instant,
    /// The call returned `Ok`.
    ok: bool,
    /// Get: the tier that served it.
    tier: Option<usize>,
}

/// Two instances over 50 keys, each with its own L1 and its own connections to a shared L2
/// and L3 (a throwaway Redis; a throwaway PostgreSQL with fsync and synchronous commit on),
/// kept coherent by the Redis backplane. Each instance runs 4 tasks × 5 000 operations (a
/// `get` of a random key, or a `set` or `delete` of a random key followed at once by a `get`
/// of the same key), with no wait between an operation and the next (40 000 operations):
///
/// - 0 read-your-writes violations: no read by an instance returns a value that was written
///   (by either instance) before this instance's own acknowledged write of the key began —
///   whether that write was a `set` (an older value) or a `delete` (its own deleted value) —
///   nor misses a key whose own acknowledged `set` no later `delete` can explain;
/// - no read returns a value never written for its key; no operation fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_17a_read_your_writes_with_the_redis_backplane() {
    bounded("scenario 17a", VARIANT_LIMIT, run("17a", Bp::Redis)).await;
}

/// As `scenario_17a`, with the PostgreSQL backplane (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_17b_read_your_writes_with_the_postgres_backplane() {
    bounded("scenario 17b", VARIANT_LIMIT, run("17b", Bp::Postgres)).await;
}

/// One instance: its own L1, connections, backplane subscription.
async fn instance(redis_url: &str, database_url: &str, name: &str, bp: Bp) -> Cache {
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(8 << 20).unwrap());
    let redis = RedisBackend::connect(
        redis_config(redis_url, &format!("{name}:")).with_operation_timeout(Duration::from_secs(2)),
    );
    let redis = bounded("connecting redis", CALL_LIMIT, redis)
        .await
        .unwrap();
    let postgres = PostgresBackend::connect(
        postgres_config(database_url, name)
            .with_operation_timeout(Duration::from_secs(2))
            .with_pool_timeouts(
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_secs(1),
            ),
    );
    let postgres = bounded("connecting postgres", Duration::from_secs(20), postgres)
        .await
        .unwrap();
    let channel = format!("{name}_bp");
    let backplane: Arc<dyn Backplane> = match bp {
        Bp::Redis => Arc::new(
            bounded(
                "connecting the redis backplane",
                CALL_LIMIT,
                RedisBackplane::connect(
                    &redis_config(redis_url, "bp:"),
                    RedisBackplaneConfig::new(&channel),
                ),
            )
            .await
            .unwrap(),
        ),
        Bp::Postgres => Arc::new(
            bounded(
                "connecting the postgres backplane",
                CALL_LIMIT,
                PostgresBackplane::connect(
                    PostgresBackplaneConfig::new(database_url)
                        .unwrap()
                        .with_channel(&channel),
                ),
            )
            .await
            .unwrap(),
        ),
    };
    // Coherence, not timing, is under test: patient timeouts, so a loaded machine does not
    // turn slow calls into failed ones.
    Cache::builder(format!("fault-s17-{name}"))
        .shared_tier(l1)
        .shared_tier_with(Arc::new(redis), patient_tier())
        .shared_tier_with(Arc::new(postgres), patient_tier())
        .backplane(backplane)
        .build()
        .unwrap()
}

/// One task: `OPS_PER_TASK` operations, none waiting for anything: a `get` of a random key
/// (50 %), or a `set` (35 %) or `delete` (15 %) of a random key followed at once by a `get` of
/// the same key.
async fn task(cache: Cache, instance: usize, seed: u64, next: Arc<AtomicU64>) -> Vec<Rec> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(OPS_PER_TASK);
    let mut read_back = None;
    for _ in 0..OPS_PER_TASK {
        let (key, kind) = match read_back.take() {
            Some(key) => (key, Kind::Get),
            None => {
                let key = rng.below(KEYS);
                let kind = match rng.below(100) {
                    0..50 => Kind::Get,
                    50..85 => Kind::Set,
                    _ => Kind::Delete,
                };
                if kind != Kind::Get {
                    read_back = Some(key);
                }
                (key, kind)
            }
        };
        let name = format!("k{key}");
        let start = Instant::now();
        let (value, ok, tier) = match kind {
            Kind::Get => {
                match tokio::time::timeout(CALL_LIMIT, cache.get::<u64>(name.as_str())).await {
                    Ok(Ok(Some(l))) => {
                        let tier = match l.source {
                            Source::Hit { tier } => Some(tier),
                            _ => None,
                        };
                        (Some(*l.value), true, tier)
                    }
                    Ok(Ok(None)) => (None, true, None),
                    _ => (None, false, None),
                }
            }
            Kind::Set => {
                let v = next.fetch_add(1, Ordering::SeqCst);
                let r = tokio::time::timeout(CALL_LIMIT, cache.set(name.as_str(), v)).await;
                (Some(v), matches!(r, Ok(Ok(()))), None)
            }
            Kind::Delete => {
                let r = tokio::time::timeout(CALL_LIMIT, cache.delete(name.as_str())).await;
                (None, matches!(r, Ok(Ok(()))), None)
            }
        };
        out.push(Rec {
            instance,
            kind,
            key,
            value,
            start,
            end: Instant::now(),
            ok,
            tier,
        });
    }
    out
}

/// A read that broke read-your-writes, with the own write it should have seen.
#[derive(Debug, Clone, Copy)]
struct Violation {
    read: Rec,
    own_write: Rec,
}

/// What the check found.
#[derive(Debug, Default)]
struct Found {
    /// Reads of a value written before the instance's own acknowledged `set` began.
    older_than_own_set: Vec<Violation>,
    /// Reads of a value written before the instance's own acknowledged `delete` began.
    own_deleted_value: Vec<Violation>,
    /// Misses after the instance's own acknowledged `set` that no `delete` explains.
    own_set_missing: Vec<Violation>,
    /// Values never written for their key (or whose write began after the read ended).
    wrong: usize,
}

impl Found {
    fn violations(&self) -> usize {
        self.older_than_own_set.len() + self.own_deleted_value.len() + self.own_set_missing.len()
    }
}

/// Check every read against its own instance's acknowledged writes of the same key.
///
/// For a read `R` by instance `I`, let `W` be, among `I`'s acknowledged writes of the key that
/// ended before `R` began, the one that began last. A value `v` is older than `W` when the
/// write of `v` ended before `W` began: `R` returning it is a violation. A miss is a violation
/// when `W` is a `set` and no `delete` of the key (by anyone, acknowledged or not) overlaps
/// `[W.start, R.end]`.
fn check(history: &[Rec]) -> Found {
    let mut found = Found::default();
    let mut by_value: HashMap<u64, &Rec> = HashMap::new();
    let mut own: HashMap<(usize, u64), Vec<&Rec>> = HashMap::new();
    let mut deletes: HashMap<u64, Vec<&Rec>> = HashMap::new();
    for r in history {
        match r.kind {
            Kind::Get => continue,
            Kind::Set => {
                if let Some(v) = r.value {
                    by_value.insert(v, r);
                }
            }
            Kind::Delete => deletes.entry(r.key).or_default().push(r),
        }
        if r.ok {
            own.entry((r.instance, r.key)).or_default().push(r);
        }
    }
    for read in history.iter().filter(|r| r.kind == Kind::Get && r.ok) {
        let Some(w) = own
            .get(&(read.instance, read.key))
            .and_then(|ws| {
                ws.iter()
                    .filter(|w| w.end < read.start)
                    .max_by_key(|w| w.start)
            })
            .copied()
        else {
            continue;
        };
        let v = Violation {
            read: *read,
            own_write: *w,
        };
        match read.value {
            Some(value) => match by_value.get(&value) {
                Some(src) if src.key == read.key && src.start < read.end => {
                    if src.end < w.start {
                        match w.kind {
                            Kind::Delete => found.own_deleted_value.push(v),
                            _ => found.older_than_own_set.push(v),
                        }
                    }
                }
                _ => found.wrong += 1,
            },
            None => {
                let explained = deletes
                    .get(&read.key)
                    .is_some_and(|ds| ds.iter().any(|d| d.start < read.end && d.end >= w.start));
                if w.kind == Kind::Set && !explained {
                    found.own_set_missing.push(v);
                }
            }
        }
    }
    found
}

/// One variant: two instances, 8 tasks, then the check.
async fn run(label: &str, bp: Bp) {
    let redis = bounded(
        "starting redis-server",
        Duration::from_secs(20),
        RedisServer::start(),
    )
    .await
    .unwrap();
    // A throwaway cluster, durable as in production (fsync and synchronous commit on): a
    // commit takes a flush, which is what widens the window between another instance's read
    // of L3 and its fill of L2.
    let pg = bounded(
        "starting postgres",
        Duration::from_secs(30),
        PostgresServer::start_with(&[("fsync", "on"), ("synchronous_commit", "on")]),
    )
    .await
    .unwrap();
    let database_url = pg.url();
    let name = unique_id("fault_s17_");
    let mut caches = Vec::new();
    for _ in 0..INSTANCES {
        caches.push(instance(&redis.url(), &database_url, &name, bp).await);
    }
    // Let both subscriptions settle before the first write.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let next = Arc::new(AtomicU64::new(1));
    let t = Instant::now();
    let mut handles = Vec::new();
    for (i, cache) in caches.iter().enumerate() {
        for k in 0..TASKS_PER_INSTANCE {
            let seed = 1_000 * (i as u64 + 1) + k as u64;
            handles.push(tokio::spawn(task(cache.clone(), i, seed, next.clone())));
        }
    }
    let mut history = Vec::new();
    for h in handles {
        history.extend(h.await.unwrap());
    }
    let took = t.elapsed();
    let found = check(&history);

    let count = |k: Kind| history.iter().filter(|r| r.kind == k).count();
    let errors = history.iter().filter(|r| !r.ok).count();
    let mut by_tier = [0usize; 4];
    let mut after = Vec::new();
    let all: Vec<&Violation> = found
        .older_than_own_set
        .iter()
        .chain(&found.own_deleted_value)
        .chain(&found.own_set_missing)
        .collect();
    for v in &all {
        by_tier[v.read.tier.unwrap_or(3).min(3)] += 1;
        after.push(v.read.start - v.own_write.end);
    }
    let worst = after.iter().max().copied().unwrap_or_default();
    println!(
        "scenario {label}: ops={} gets={} sets={} deletes={} errors={errors} took={}ms | \
         ryw_violations={} (older_than_own_set={} own_deleted_value={} own_set_missing={}) \
         wrong={} | served_by [L1, L2, L3, miss]={by_tier:?} latest_after_own_write={}µs",
        history.len(),
        count(Kind::Get),
        count(Kind::Set),
        count(Kind::Delete),
        took.as_millis(),
        found.violations(),
        found.older_than_own_set.len(),
        found.own_deleted_value.len(),
        found.own_set_missing.len(),
        found.wrong,
        worst.as_micros(),
    );
    for v in all.iter().take(3) {
        println!(
            "scenario {label} violation: instance {} read k{} = {:?} from tier {:?}, {}µs after \
             its own {:?} of {:?} returned",
            v.read.instance,
            v.read.key,
            v.read.value,
            v.read.tier,
            (v.read.start - v.own_write.end).as_micros(),
            v.own_write.kind,
            v.own_write.value,
        );
    }
    for c in &caches {
        bounded("shutting an instance down", CALL_LIMIT, c.shutdown()).await;
    }
    assert_eq!(errors, 0, "operations failed");
    assert_eq!(
        found.wrong, 0,
        "reads returned values never written for their key"
    );
    assert!(
        history.len() >= 40_000,
        "only {} operations ran",
        history.len()
    );
    assert_eq!(
        found.violations(),
        0,
        "read-your-writes violations: {:?}",
        all.first()
    );
}
