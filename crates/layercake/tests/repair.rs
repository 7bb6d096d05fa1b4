//! The write contract and auto-recovery, on in-process tiers with injected faults: a write or
//! removal that does not reach a tier leaves a repair note; reads skip what is noted; the
//! repair removes the older copy once the tier answers again; a fresh instance then reads no
//! older value and no removed one. Also: the record's bound, strict writes, the report,
//! rejections known before writing, and the default hard timeout of loads.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{
    Backend, BreakerConfig, Cache, CacheBuilder, ErrorKind, FixedTtl, MemoryBackend, Overflow,
    RepairConfig, Scope, Source, TierOptions, WriteMode, WriteOptions,
};
use layercake_testkit::conformance::reference::ReferenceBackend;
use layercake_testkit::faulty::{Fault, FaultHandle, FaultyBackend};
use layercake_testkit::local_backplane::LocalBus;
use layercake_testkit::recording::Operation;

/// Repairs retried every 20 ms in these tests.
fn fast_repairs() -> RepairConfig {
    RepairConfig::new().with_retry_every(Duration::from_millis(20))
}

/// The tiers every instance shares: L2 a reference backend behind a fault injector, L3 a
/// reference backend.
struct Shared {
    l2: Arc<dyn Backend>,
    l2_inner: Arc<dyn Backend>,
    faults: FaultHandle,
    l3: Arc<dyn Backend>,
}

fn shared() -> Shared {
    let l2_inner: Arc<dyn Backend> = Arc::new(ReferenceBackend::new());
    let faulty = FaultyBackend::new(l2_inner.clone(), 7);
    let faults = faulty.handle();
    Shared {
        l2: Arc::new(faulty),
        l2_inner,
        faults,
        l3: Arc::new(ReferenceBackend::new()),
    }
}

fn l1() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::with_max_bytes(8 << 20).unwrap())
}

/// An instance: its own L1 over the shared L2 and L3, customised by `more`.
fn instance(
    s: &Shared,
    more: impl FnOnce(CacheBuilder) -> CacheBuilder,
) -> (Cache, Arc<dyn Backend>) {
    let l1 = l1();
    let b = Cache::builder("repair")
        .shared_tier(l1.clone())
        .shared_tier_with(
            s.l2.clone(),
            TierOptions::new().breaker(Some(BreakerConfig {
                failure_threshold: 10,
                open_for: Duration::from_millis(100),
            })),
        )
        .shared_tier(s.l3.clone())
        .policy(FixedTtl::new(Duration::from_secs(3600)))
        .repairs(fast_repairs());
    (more(b).build().unwrap(), l1)
}

/// Wait (at most 5 s) until `done` holds for the cache's stats of tier `tier`.
async fn until(
    cache: &Cache,
    tier: usize,
    what: &str,
    done: impl Fn(&layercake::RepairStats) -> bool,
) {
    let start = Instant::now();
    loop {
        let s = cache.stats();
        if done(&s.tiers[tier].repairs) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            s.tiers[tier].repairs
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn read(cache: &Cache, l1: &Arc<dyn Backend>, key: &str) -> Option<(u32, Source)> {
    l1.clear().await.unwrap();
    cache
        .get::<u32>(key)
        .await
        .unwrap()
        .map(|l| (*l.value, l.source))
}

async fn raw(tier: &Arc<dyn Backend>, cache: &Cache, key: &str) -> bool {
    tier.get(&cache.key(key).unwrap()).await.unwrap().is_some()
}

/// The removals fail: `delete` (and the repair's `delete_many`) and `invalidate`.
fn fail_removals(f: &FaultHandle, kind: ErrorKind) {
    for op in [
        Operation::Delete,
        Operation::DeleteMany,
        Operation::Invalidate,
        Operation::Clear,
    ] {
        f.inject(op, Fault::Fail(kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_a_tier_missed_is_repaired_and_no_instance_reads_the_older_value() {
    let s = shared();
    let (w, w_l1) = instance(&s, |b| b);
    for k in ["a", "b", "u"] {
        w.set(k, 1u32).await.unwrap();
    }
    // L2 takes no write and no removal, but still answers reads (as when only this instance
    // cannot write it, or the server refuses writes).
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::Unavailable));
    fail_removals(&s.faults, ErrorKind::Unavailable);
    let report = w
        .set_reporting("a", 2u32, &WriteOptions::new())
        .await
        .unwrap();
    assert_eq!(report.stored, ["l1", "l3"]);
    assert_eq!(report.pending_repair, ["l2"]);
    assert!(!report.is_complete());
    w.set("b", 2u32).await.unwrap();
    let st = w.stats().tiers[1].repairs.clone();
    assert_eq!((st.pending, st.noted), (2, 2), "{st:?}");
    assert!(st.oldest_pending.is_some());

    // The writer, its L1 dropped, skips L2 for the noted keys: the newest value, from L3.
    assert_eq!(
        read(&w, &w_l1, "a").await,
        Some((2, Source::Hit { tier: 2 }))
    );
    assert_eq!(
        read(&w, &w_l1, "u").await,
        Some((1, Source::Hit { tier: 1 }))
    );
    // …and does not promote it into L2, where the older copy waits for its repair.
    let older = s.l2_inner.get(&w.key("a").unwrap()).await.unwrap().unwrap();
    assert_eq!(older.value.as_ref(), b"1");
    // The window that remains: another instance reading L2 before the repair.
    let (early, early_l1) = instance(&s, |b| b);
    assert_eq!(
        read(&early, &early_l1, "a").await,
        Some((1, Source::Hit { tier: 1 }))
    );
    until(&w, 1, "a repair attempt failed", |r| r.failed >= 1).await;
    assert_eq!(w.stats().tiers[1].repairs.pending, 2, "nothing dropped");

    // Recovery: the repair removes the older copies, then drops its notes.
    s.faults.clear_all();
    until(&w, 1, "repaired", |r| r.pending == 0).await;
    let st = w.stats().tiers[1].repairs.clone();
    assert_eq!((st.applied, st.oldest_pending), (2, None), "{st:?}");
    assert!(!raw(&s.l2_inner, &w, "a").await && !raw(&s.l2_inner, &w, "b").await);
    let (fresh, fresh_l1) = instance(&s, |b| b);
    for (k, v) in [("a", 2), ("b", 2), ("u", 1)] {
        assert_eq!(
            read(&fresh, &fresh_l1, k).await.map(|x| x.0),
            Some(v),
            "fresh {k}"
        );
        assert_eq!(read(&w, &w_l1, k).await.map(|x| x.0), Some(v), "writer {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_or_invalidation_never_comes_back() {
    let s = shared();
    let (w, w_l1) = instance(&s, |b| b);
    let tagged = |t: &str| WriteOptions::new().tag(t);
    w.set("d", 1u32).await.unwrap();
    w.set_with("t1", 1u32, &tagged("gone")).await.unwrap();
    w.set_with("t2", 1u32, &tagged("kept")).await.unwrap();
    w.set("p:1", 1u32).await.unwrap();
    w.set("q:1", 1u32).await.unwrap();
    fail_removals(&s.faults, ErrorKind::Timeout);
    let e = w.delete("d").await.unwrap_err();
    assert_eq!((e.kind(), e.tier()), (ErrorKind::Timeout, Some("l2")));
    assert!(w.invalidate_tag("gone").await.is_err());
    assert!(w.invalidate_prefix("p:").await.is_err());
    assert_eq!(w.stats().tiers[1].repairs.pending, 3);
    // This instance reads what the removals promised, though L2 still holds the values.
    assert!(raw(&s.l2_inner, &w, "d").await && raw(&s.l2_inner, &w, "t1").await);
    for k in ["d", "t1", "p:1"] {
        assert_eq!(read(&w, &w_l1, k).await, None, "{k}");
    }
    for k in ["t2", "q:1"] {
        assert_eq!(
            read(&w, &w_l1, k).await,
            Some((1, Source::Hit { tier: 1 })),
            "{k}"
        );
    }
    s.faults.clear_all();
    until(&w, 1, "repaired", |r| r.pending == 0).await;
    assert_eq!(w.stats().tiers[1].repairs.applied, 3);
    let (fresh, fresh_l1) = instance(&s, |b| b);
    for k in ["d", "t1", "p:1"] {
        assert_eq!(read(&fresh, &fresh_l1, k).await, None, "fresh {k}");
        assert!(!raw(&s.l2_inner, &w, k).await, "{k} removed from L2");
    }
    for k in ["t2", "q:1"] {
        assert_eq!(
            read(&fresh, &fresh_l1, k).await.map(|x| x.0),
            Some(1),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_clear_notes_the_whole_tier() {
    let s = shared();
    let (w, w_l1) = instance(&s, |b| b);
    w.set("a", 1u32).await.unwrap();
    s.faults
        .inject(Operation::Clear, Fault::Fail(ErrorKind::Unavailable));
    assert!(w.clear().await.is_err());
    assert!(w.stats().tiers[1].repairs.whole_tier);
    w.set("b", 2u32).await.unwrap();
    // Every read skips L2 until the repair cleared it.
    assert_eq!(
        read(&w, &w_l1, "b").await,
        Some((2, Source::Hit { tier: 2 }))
    );
    s.faults.clear_all();
    until(&w, 1, "cleared", |r| r.pending == 0).await;
    assert!(!raw(&s.l2_inner, &w, "a").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_record_turns_into_a_whole_tier_repair() {
    let s = shared();
    let (w, w_l1) = instance(&s, |b| b.repairs(fast_repairs().with_max_pending(3)));
    w.set("untouched", 1u32).await.unwrap();
    s.faults
        .inject_everywhere(Fault::Fail(ErrorKind::Unavailable));
    for i in 0..5 {
        w.set(format!("k{i}").as_str(), 2u32).await.unwrap();
    }
    let st = w.stats().tiers[1].repairs.clone();
    assert_eq!(
        (st.pending, st.whole_tier, st.overflowed),
        (1, true, 1),
        "{st:?}"
    );
    assert_eq!(
        read(&w, &w_l1, "untouched").await,
        Some((1, Source::Hit { tier: 2 }))
    );
    s.faults.clear_all();
    until(&w, 1, "cleared", |r| r.pending == 0).await;
    assert!(
        !raw(&s.l2_inner, &w, "untouched").await,
        "the repair cleared L2"
    );
    assert_eq!(
        read(&w, &w_l1, "k4").await,
        Some((2, Source::Hit { tier: 2 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_record_can_refuse_writes_instead() {
    let s = shared();
    let (w, _) = instance(&s, |b| {
        b.repairs(
            fast_repairs()
                .with_max_pending(2)
                .with_overflow(Overflow::RefuseWrites),
        )
    });
    s.faults
        .inject_everywhere(Fault::Fail(ErrorKind::Unavailable));
    w.set("k0", 2u32).await.unwrap();
    w.set("k1", 2u32).await.unwrap();
    let e = w.set("k2", 2u32).await.unwrap_err();
    assert_eq!((e.kind(), e.tier()), (ErrorKind::Unavailable, Some("l2")));
    assert!(e.is_temporary());
    assert!(e.to_string().contains("repair record is full"), "{e}");
    w.set("k0", 3u32).await.unwrap();
    let st = w.stats().tiers[1].repairs.clone();
    assert_eq!(
        (st.pending, st.refused, st.whole_tier),
        (2, 1, false),
        "{st:?}"
    );
    s.faults.clear_all();
    until(&w, 1, "repaired", |r| r.pending == 0).await;
    w.set("k2", 2u32).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_writes_fail_when_a_tier_missed_and_still_repair_it() {
    let s = shared();
    let (w, _) = instance(&s, |b| b.strict_writes(true));
    w.set("a", 1u32).await.unwrap();
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::Timeout));
    let e = w.set("a", 2u32).await.unwrap_err();
    assert_eq!((e.kind(), e.tier()), (ErrorKind::Timeout, Some("l2")));
    // The report is still honest, never an error for a pending repair.
    let r = w
        .set_reporting("b", 2u32, &WriteOptions::new())
        .await
        .unwrap();
    assert_eq!(r.pending_repair, ["l2"]);
    s.faults.clear_all();
    until(&w, 1, "repaired", |r| r.pending == 0).await;
    let (fresh, fresh_l1) = instance(&s, |b| b);
    assert_eq!(read(&fresh, &fresh_l1, "a").await.map(|x| x.0), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_write_resolves_a_note_unless_the_failed_one_may_still_land() {
    let s = shared();
    // Repairs only at shutdown: the notes stay until then.
    let (w, _) = instance(&s, |b| {
        b.repairs(RepairConfig::new().with_retry_every(Duration::from_secs(3600)))
    });
    // The tier was not asked (an open breaker): surely not written.
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::CircuitOpen));
    w.set("sure", 1u32).await.unwrap();
    s.faults.clear_all();
    // A timeout: the write may still land later.
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::Timeout));
    w.set("unsure", 1u32).await.unwrap();
    s.faults.clear_all();
    w.set("sure", 2u32).await.unwrap();
    w.set("unsure", 2u32).await.unwrap();
    let st = w.stats().tiers[1].repairs.clone();
    assert_eq!((st.pending, st.resolved), (1, 1), "{st:?}");
    assert!(raw(&s.l2_inner, &w, "unsure").await);
    w.shutdown().await;
    let st = w.stats().tiers[1].repairs.clone();
    assert_eq!(
        (st.pending, st.applied),
        (0, 1),
        "shutdown applies the repairs: {st:?}"
    );
    assert!(!raw(&s.l2_inner, &w, "unsure").await);
    assert!(raw(&s.l2_inner, &w, "sure").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_behind_is_noted_and_repaired() {
    let s = shared();
    let l1 = l1();
    let w = Cache::builder("repair-wb")
        .shared_tier(l1)
        .shared_tier_with(
            s.l2.clone(),
            TierOptions::new().write_mode(WriteMode::Behind { capacity: 8 }),
        )
        .repairs(fast_repairs())
        .build()
        .unwrap();
    w.set("a", 1u32).await.unwrap();
    let start = Instant::now();
    while !raw(&s.l2_inner, &w, "a").await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the queued write never landed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::Unavailable));
    w.set("a", 2u32).await.unwrap();
    until(&w, 1, "noted and repaired", |r| {
        r.noted == 1 && r.applied == 1
    })
    .await;
    assert_eq!(w.stats().tiers[1].write_behind_failures, 1);
    assert!(!raw(&s.l2_inner, &w, "a").await, "the older copy is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_tells_other_instances_to_drop_what_they_filled_meanwhile() {
    let s = shared();
    let bus = LocalBus::new();
    let with_bus = |bp: layercake_testkit::local_backplane::LocalBackplane| {
        move |b: CacheBuilder| b.backplane(Arc::new(bp))
    };
    let (a, _) = instance(&s, with_bus(bus.join()));
    let (b, _) = instance(&s, with_bus(bus.join()));
    a.set("k", 1u32).await.unwrap();
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::Unavailable));
    fail_removals(&s.faults, ErrorKind::Unavailable);
    a.set("k", 2u32).await.unwrap();
    // B has applied both messages of A's sets.
    let start = Instant::now();
    while b.stats().backplane_applied < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "messages never applied"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // B reads L2 (it answers B's reads) before the repair, and keeps the older value in L1.
    let start = Instant::now();
    loop {
        let got = b.get::<u32>("k").await.unwrap().unwrap();
        if (*got.value, got.source) == (1, Source::Hit { tier: 0 }) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "B never read L2");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let applied = b.stats().backplane_applied;
    s.faults.clear_all();
    until(&a, 1, "repaired", |r| r.pending == 0).await;
    let start = Instant::now();
    while b.stats().backplane_applied == applied {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no message after the repair"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(*b.get::<u32>("k").await.unwrap().unwrap().value, 2);
}

#[tokio::test]
async fn a_rejection_known_before_writing_touches_no_tier() {
    // L1 refuses the entry: 64 tags of 250 bytes, not counted by a check of the value alone.
    let s = shared();
    let small_l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(16 << 10).unwrap());
    let c = Cache::builder("reject")
        .shared_tier(small_l1.clone())
        .shared_tier(s.l3.clone())
        .build()
        .unwrap();
    c.set("k", 1u32).await.unwrap();
    let tag = "t".repeat(250);
    let mut opts = WriteOptions::new();
    for i in 0..64 {
        opts = opts.tag(format!("{i:02}{}", &tag[2..]));
    }
    let e = c.set_with("k", 2u32, &opts).await.unwrap_err();
    assert_eq!((e.kind(), e.tier()), (ErrorKind::TooLarge, Some("l1")));
    assert_eq!(read(&c, &small_l1, "k").await.map(|x| x.0), Some(1));
    assert!(raw(&s.l3, &c, "k").await, "L3 keeps the previous value");

    // A lower tier refuses: a file tier bounded to 4 KiB, a value that fits without its tags.
    let dir = tempfile::tempdir().unwrap();
    let file = layercake_file::FileBackend::open(
        layercake_file::FileConfig::new(dir.path())
            .with_max_bytes(4096)
            .with_sweep_interval(None),
    )
    .await
    .unwrap();
    let l1 = l1();
    let c = Cache::builder("reject-file")
        .shared_tier(l1.clone())
        .tier(file)
        .shared_tier(s.l3.clone())
        .build()
        .unwrap();
    let key_len = c.key("f").unwrap().len();
    c.set("f", "old".to_string()).await.unwrap();
    // value + key + 64 fits the limit; the envelope with two 100-byte tags does not.
    let value = "x".repeat(4096 - key_len - 64 - 2);
    let opts = WriteOptions::new()
        .tag("a".repeat(100))
        .tag("b".repeat(100));
    let e = c.set_with("f", value, &opts).await.unwrap_err();
    assert_eq!((e.kind(), e.tier()), (ErrorKind::TooLarge, Some("l2")));
    l1.clear().await.unwrap();
    let got = c.get::<String>("f").await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_str(), got.source),
        ("old", Source::Hit { tier: 1 })
    );
    assert!(raw(&s.l3, &c, "f").await);
    assert!(c.stats().tiers.iter().all(|t| t.repairs.noted == 0));
}

#[tokio::test]
async fn a_tier_refusing_in_the_middle_of_the_fan_out_keeps_no_older_copy() {
    let s = shared();
    let (w, w_l1) = instance(&s, |b| b);
    w.set("k", 1u32).await.unwrap();
    // A refusal no check could foresee.
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::TooLarge));
    let e = w.set("k", 2u32).await.unwrap_err();
    assert_eq!((e.kind(), e.tier()), (ErrorKind::TooLarge, Some("l2")));
    // The others keep the new value; the refusing tier no longer holds the older one.
    assert!(!raw(&s.l2_inner, &w, "k").await);
    assert_eq!(
        read(&w, &w_l1, "k").await,
        Some((2, Source::Hit { tier: 2 }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_loader_ends_by_default() {
    let c = Cache::builder("hung")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let e = c
        .get_or_compute("k", || {
            std::future::pending::<Result<u32, std::io::Error>>()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let took = started.elapsed();
    assert!(
        took >= layercake::DEFAULT_HARD_TIMEOUT
            && took < layercake::DEFAULT_HARD_TIMEOUT + Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(c.loads_in_flight(), 0);
    let v = c
        .get_or_compute("k", || async { Ok::<_, std::io::Error>(7u32) })
        .await
        .unwrap();
    assert_eq!(*v.value, 7);

    // Opting out: the load runs as long as the loader does.
    let c = Cache::builder("hung")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .no_hard_timeout()
        .build()
        .unwrap();
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        c.get_or_compute("k", || {
            std::future::pending::<Result<u32, std::io::Error>>()
        }),
    )
    .await;
    assert!(waited.is_err(), "still loading after 10 minutes");
    assert_eq!(c.loads_in_flight(), 1);
}

#[tokio::test]
async fn a_shared_scope_l1_stand_in_is_not_special() {
    // A tier declared shared that is a memory backend: noted and repaired like any other.
    let l2: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let faulty = FaultyBackend::new(l2.clone(), 1);
    let faults = faulty.handle();
    let c = Cache::builder("scope")
        .shared_tier(l1())
        .tier_with(faulty, TierOptions::new().scope(Scope::Shared))
        .repairs(fast_repairs())
        .build()
        .unwrap();
    c.set("k", 1u32).await.unwrap();
    faults.inject(Operation::Set, Fault::Fail(ErrorKind::Unavailable));
    c.set("k", 2u32).await.unwrap();
    until(&c, 1, "repaired", |r| r.applied == 1 && r.pending == 0).await;
    assert!(!raw(&l2, &c, "k").await);
}
