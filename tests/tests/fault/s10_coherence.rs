//! Scenario 10: coherence of two instances, checked against a history of random operations.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use layercake::{Backend, Cache, Entry, MemoryBackend};
use layercake_redis::{RedisBackplane, RedisBackplaneConfig};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::{require_postgres, unique_id};
use layercake_tests::drop_schema;

use super::support::{RawRedis, Rng, postgres_config, redis_config, wait_for};

const KEYS: u64 = 8;
const WORKERS_PER_INSTANCE: usize = 2;

/// One operation of the history.
#[derive(Debug, Clone)]
struct Rec {
    instance: usize,
    write: bool,
    key: u64,
    /// Value written or read; `None` = delete / miss.
    value: Option<u64>,
    start: Instant,
    end: Instant,
    /// Writes: when the other instance was seen to have applied the invalidation message.
    complete: Option<Instant>,
    /// Reads: the tier that served the value.
    tier: Option<usize>,
}

/// Shared state of a phase.
struct Phase {
    caches: [Cache; 2],
    /// Writes (set/delete) started on each instance since the phase began.
    started: [AtomicU64; 2],
    /// `backplane_applied` of each instance when the phase began.
    applied_base: [u64; 2],
    next_value: AtomicU64,
    errors: AtomicUsize,
    never_applied: AtomicUsize,
}

async fn worker(phase: Arc<Phase>, instance: usize, seed: u64, ops: usize) -> Vec<Rec> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(ops);
    let cache = &phase.caches[instance];
    let other = &phase.caches[1 - instance];
    for _ in 0..ops {
        let key = rng.below(KEYS);
        let name = format!("k{key}");
        let roll = rng.below(100);
        if roll < 55 {
            let start = Instant::now();
            let r = cache.get::<u64>(name.as_str()).await;
            let end = Instant::now();
            let tier = match &r {
                Ok(Some(l)) => match l.source {
                    layercake::Source::Hit { tier } => Some(tier),
                    _ => None,
                },
                _ => None,
            };
            let value = match r {
                Ok(v) => v.map(|l| *l.value),
                Err(_) => {
                    phase.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            out.push(Rec {
                instance,
                write: false,
                key,
                value,
                start,
                end,
                complete: None,
                tier,
            });
            continue;
        }
        let value = (roll < 90).then(|| phase.next_value.fetch_add(1, Ordering::SeqCst));
        phase.started[instance].fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let r = match value {
            Some(v) => cache.set(name.as_str(), v).await,
            None => cache.delete(name.as_str()).await,
        };
        let end = Instant::now();
        if let Err(e) = r {
            phase.errors.fetch_add(1, Ordering::Relaxed);
            println!("scenario 10: a write failed: {e}");
        }
        // Every write started on this instance before this one returned has published (or
        // will publish) its message before or after this one; once the other instance has
        // applied that many, this write's message is applied too.
        let need =
            phase.applied_base[1 - instance] + phase.started[instance].load(Ordering::SeqCst);
        let complete = match wait_for(Duration::from_secs(5), || {
            other.stats().backplane_applied >= need
        })
        .await
        {
            Some(_) => Some(Instant::now()),
            None => {
                phase.never_applied.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        out.push(Rec {
            instance,
            write: true,
            key,
            value,
            start,
            end,
            complete,
            tier: None,
        });
    }
    out
}

/// Run `ops` random operations split over the workers of both instances.
async fn run_phase(
    caches: &[Cache; 2],
    ops: usize,
    seed: u64,
    next_value: u64,
) -> (Vec<Rec>, usize, usize, u64) {
    let phase = Arc::new(Phase {
        caches: caches.clone(),
        started: [AtomicU64::new(0), AtomicU64::new(0)],
        applied_base: [
            caches[0].stats().backplane_applied,
            caches[1].stats().backplane_applied,
        ],
        next_value: AtomicU64::new(next_value),
        errors: AtomicUsize::new(0),
        never_applied: AtomicUsize::new(0),
    });
    let per = ops / (2 * WORKERS_PER_INSTANCE);
    let mut handles = Vec::new();
    for instance in 0..2 {
        for w in 0..WORKERS_PER_INSTANCE {
            let seed = seed * 100 + (instance * 10 + w) as u64;
            handles.push(tokio::spawn(worker(phase.clone(), instance, seed, per)));
        }
    }
    let mut history = Vec::new();
    for h in handles {
        history.extend(h.await.unwrap());
    }
    (
        history,
        phase.errors.load(Ordering::Relaxed),
        phase.never_applied.load(Ordering::Relaxed),
        phase.next_value.load(Ordering::SeqCst),
    )
}

/// A read that returned something older than a write completed before it began.
#[derive(Debug)]
struct Violation {
    read: Rec,
    newest_completed_write: Rec,
}

/// Check every read: it must not return a value (or a miss) that an operation completed
/// before the read began had already replaced. A value `v` is replaced by a write `W` when
/// the write of `v` ended before `W` started; a miss is replaced when every delete that could
/// have produced it (and the initial absence) ended before `W` started.
fn check(history: &[Rec]) -> (Vec<Violation>, usize) {
    let mut wrong = 0;
    let mut writes: HashMap<u64, Vec<&Rec>> = HashMap::new();
    let mut by_value: HashMap<u64, &Rec> = HashMap::new();
    for r in history.iter().filter(|r| r.write) {
        writes.entry(r.key).or_default().push(r);
        if let Some(v) = r.value {
            by_value.insert(v, r);
        }
    }
    let mut violations = Vec::new();
    for read in history.iter().filter(|r| !r.write) {
        let ws = writes.get(&read.key).map(Vec::as_slice).unwrap_or(&[]);
        // The newest write (by start) completed before the read began.
        let Some(newest) = ws
            .iter()
            .filter(|w| w.complete.is_some_and(|c| c < read.start))
            .max_by_key(|w| w.start)
        else {
            continue;
        };
        let stale = match read.value {
            Some(v) => match by_value.get(&v) {
                Some(w) if w.key == read.key && w.start < read.end => w.end < newest.start,
                _ => {
                    wrong += 1;
                    continue;
                }
            },
            None => !ws
                .iter()
                .any(|d| d.value.is_none() && d.start < read.end && d.end >= newest.start),
        };
        if stale {
            violations.push(Violation {
                read: read.clone(),
                newest_completed_write: (*newest).clone(),
            });
        }
    }
    (violations, wrong)
}

/// Tier options for the coherence scenario: 2 s reads, 3 s writes.
fn patient_tier() -> layercake::TierOptions {
    layercake::TierOptions::new()
        .read_timeout(Some(Duration::from_secs(2)))
        .write_timeout(Some(Duration::from_secs(3)))
}

/// Two instances, each with its own L1 and its own connections to a shared L2 (a throwaway
/// Redis) and L3 (PostgreSQL), kept coherent by a Redis backplane. 4 workers (2 per
/// instance) run 10 000 random operations on 8 keys (55 % get, 35 % set, 10 % delete); each
/// write waits until the other instance's `backplane_applied` shows its message applied.
/// Then `CLIENT KILL TYPE pubsub` drops both subscriber connections while one instance
/// writes; then 10 000 more operations.
///
/// - no read returns a value older than the newest one whose write and invalidation
///   message completed before the read began (checked over the whole history);
/// - no read returns a value that was never written for its key;
/// - after the subscriber connections are killed, each instance resets its L1 once
///   reconnected, and reads see the writes made while messages were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_10_two_instances_stay_coherent_also_after_the_subscriber_is_killed() {
    let database_url = require_postgres();
    let redis = RedisServer::start().await.unwrap();
    let name = unique_id("fault_s10_");
    let channel = format!("{name}-bp");
    let mut l1s: Vec<Arc<MemoryBackend>> = Vec::new();
    let mut caches = Vec::new();
    for i in 0..2 {
        let l1 = Arc::new(MemoryBackend::with_max_bytes(8 << 20).unwrap());
        let bp = RedisBackplane::connect(
            &redis_config(&redis.url(), "bp:"),
            RedisBackplaneConfig::new(&channel),
        )
        .await
        .unwrap();
        let cache = Cache::builder(format!("fault-s10-{i}"))
            .shared_tier(l1.clone() as Arc<dyn Backend>)
            // Coherence, not timing, is under test: patient timeouts, so a loaded machine
            // does not turn slow writes into failed ones.
            .shared_tier_with(
                Arc::new(
                    layercake_redis::RedisBackend::connect(
                        redis_config(&redis.url(), &format!("{name}:"))
                            .with_operation_timeout(Duration::from_secs(2)),
                    )
                    .await
                    .unwrap(),
                ),
                patient_tier(),
            )
            .shared_tier_with(
                Arc::new(
                    layercake_postgres::PostgresBackend::connect(
                        postgres_config(&database_url, &name)
                            .with_operation_timeout(Duration::from_secs(2))
                            .with_pool_timeouts(
                                Duration::from_secs(1),
                                Duration::from_secs(1),
                                Duration::from_secs(1),
                            ),
                    )
                    .await
                    .unwrap(),
                ),
                patient_tier(),
            )
            .backplane(Arc::new(bp))
            .build()
            .unwrap();
        l1s.push(l1);
        caches.push(cache);
    }
    let caches: [Cache; 2] = [caches[0].clone(), caches[1].clone()];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = Instant::now();
    let (history_a, errors_a, unapplied_a, next) = run_phase(&caches, 10_000, 1, 1).await;
    let took_a = t.elapsed();
    let (violations_a, wrong_a) = check(&history_a);

    // Kill the subscriber connections while instance 0 writes.
    for k in 0..KEYS {
        let _ = caches[1]
            .get::<u64>(format!("k{k}").as_str())
            .await
            .unwrap();
    }
    let resets = [
        caches[0].stats().backplane_resets,
        caches[1].stats().backplane_resets,
    ];
    let raw = RawRedis::connect(&redis.url(), "").await;
    let killed = raw.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    let mut written = Vec::new();
    for k in 0..KEYS {
        let v = 1_000_000 + k;
        caches[0].set(format!("k{k}").as_str(), v).await.unwrap();
        written.push(v);
    }
    let reconnected = wait_for(Duration::from_secs(5), || {
        caches[0].stats().backplane_resets > resets[0]
            && caches[1].stats().backplane_resets > resets[1]
    })
    .await;
    // Fence: a marker in instance 1's L1, dropped by a message sent after the reconnect;
    // once it is gone, every message sent before it has been applied too.
    let fence_key = caches[1].key("fence").unwrap();
    let marker = Entry::new(
        &b"0"[..],
        layercake::Clock::now(&layercake::SystemClock),
        Duration::from_secs(60),
    );
    l1s[1].set_sync(&fence_key, &marker).unwrap();
    caches[0].set("fence", 1u64).await.unwrap();
    let fenced = wait_for(Duration::from_secs(5), || {
        l1s[1].get_sync(&fence_key).is_none()
    })
    .await;
    let mut stale_after_kill = 0;
    for k in 0..KEYS {
        let got = caches[1]
            .get::<u64>(format!("k{k}").as_str())
            .await
            .unwrap()
            .map(|l| *l.value);
        if got != Some(written[k as usize]) {
            stale_after_kill += 1;
        }
    }

    let t = Instant::now();
    let (history_b, errors_b, unapplied_b, _) = run_phase(&caches, 10_000, 2, next).await;
    let took_b = t.elapsed();
    let (violations_b, wrong_b) = check(&history_b);

    let reads = |h: &[Rec]| h.iter().filter(|r| !r.write).count();
    let mut delivery: Vec<Duration> = history_a
        .iter()
        .chain(&history_b)
        .filter_map(|r| r.complete.map(|c| c - r.end))
        .collect();
    let p50 = super::support::quantile(&mut delivery, 0.5);
    let p99 = super::support::quantile(&mut delivery, 0.99);
    println!(
        "scenario 10: ops={} reads={} errors={errors_a} unapplied={unapplied_a} violations={} \
         wrong={wrong_a} took={}ms | pubsub killed: {killed} reconnected_in={reconnected:?} \
         fence={fenced:?} stale_after_kill={stale_after_kill} | after: ops={} reads={} \
         errors={errors_b} unapplied={unapplied_b} violations={} wrong={wrong_b} took={}ms | \
         message applied after write returned: p50={}µs p99={}µs",
        history_a.len(),
        reads(&history_a),
        violations_a.len(),
        took_a.as_millis(),
        history_b.len(),
        reads(&history_b),
        violations_b.len(),
        took_b.as_millis(),
        p50.as_micros(),
        p99.as_micros(),
    );
    for v in violations_a.iter().chain(&violations_b).take(3) {
        let t0 = v.newest_completed_write.start;
        println!(
            "scenario 10 violation: read on instance {} of k{} returned {:?} from tier {:?} (began \
             {:?} after the write of {:?} on instance {} started, which completed {:?} after it \
             started)",
            v.read.instance,
            v.read.key,
            v.read.value,
            v.read.tier,
            v.read.start - t0,
            v.newest_completed_write.value,
            v.newest_completed_write.instance,
            v.newest_completed_write.complete.map(|c| c - t0),
        );
    }
    let mut by_tier = [0usize; 4];
    let mut same_instance = 0;
    for v in violations_a.iter().chain(&violations_b) {
        by_tier[v.read.tier.unwrap_or(3).min(3)] += 1;
        same_instance += usize::from(v.read.instance == v.newest_completed_write.instance);
    }
    println!(
        "scenario 10: violations served by [L1, L2, L3, miss]={by_tier:?}, after a write on the \
         same instance: {same_instance}"
    );
    let _ = caches[0].clear().await;
    let _ = drop_schema(&database_url, &name).await;
    assert_eq!(errors_a + errors_b, 0, "operations failed");
    assert_eq!(unapplied_a + unapplied_b, 0, "messages never applied");
    assert_eq!(
        wrong_a + wrong_b,
        0,
        "reads returned values never written for their key"
    );
    assert!(reconnected.is_some(), "the subscribers did not reconnect");
    assert!(
        fenced.is_some(),
        "messages after the reconnect were not applied"
    );
    assert_eq!(stale_after_kill, 0, "stale values read after the reconnect");
    assert!(
        violations_a.is_empty(),
        "{} stale reads before the kill: {:?}",
        violations_a.len(),
        violations_a.first()
    );
    assert!(
        violations_b.is_empty(),
        "{} stale reads after the kill: {:?}",
        violations_b.len(),
        violations_b.first()
    );
}
