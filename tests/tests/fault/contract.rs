//! The write contract under a fault (scenarios 12–16): one writer writes generation 1 of every
//! key, then, while a tier is faulted, rewrites a group of keys, deletes a second group and
//! invalidates the tag of a third, noting what each call acknowledged; once the tier is back,
//! readers with an empty L1 read every key and count what breaks the contract.
//!
//! The contract checked: a key whose newest acknowledged `set` wrote generation `g` never reads
//! a generation below `g` (an *older* value); a key whose newest acknowledged call was a
//! removal (`delete` or `invalidate_tag` returned `Ok`) never reads a value (a *resurrected*
//! removal). A key may be missing (a cache may lose entries): counted, not an error. A call
//! that returned an error promises nothing: either outcome is fine.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache, MemoryBackend, TierOptions, WriteOptions};
use layercake_postgres::PostgresBackend;
use layercake_redis::RedisBackend;

use super::support::{Val, fast_tier, postgres_config, postgres_tier, redis_config, redis_tier};

/// Keys per group; four groups.
pub(crate) const PER_GROUP: u32 = 15;
/// Keys in all.
pub(crate) const KEYS: u32 = 4 * PER_GROUP;
/// Longest one cache call may take before the scenario records it as failed (dropping it).
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(5);
/// Longest the readers may take, after recovery, to see every key as the contract says.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// Pause between two read passes while settling.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// Bound of a whole scenario (its servers are killed when it is exceeded).
pub(crate) const SCENARIO_LIMIT: Duration = Duration::from_secs(55);
/// The tag invalidated during the fault (carried by the keys of [`Group::Invalidated`]).
pub(crate) const INVALIDATED_TAG: &str = "contract-invalidated";

/// What happens to a key during the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// `set` generation 2.
    Rewritten,
    /// `delete`.
    Deleted,
    /// Removed by `invalidate_tag(INVALIDATED_TAG)`.
    Invalidated,
    /// Nothing: must still read generation 1 (or be missing).
    Untouched,
}

impl Group {
    /// The group of key index `k`.
    pub(crate) fn of(k: u32) -> Group {
        match k / PER_GROUP {
            0 => Group::Rewritten,
            1 => Group::Deleted,
            2 => Group::Invalidated,
            _ => Group::Untouched,
        }
    }

    /// The tag written with key `k` of this group: the invalidated and untouched groups carry
    /// their own tag (so the invalidation must be selective); of the rewritten and deleted
    /// groups, even keys carry one and odd keys none (a tagged write takes another path in some
    /// backends, e.g. a Redis pipeline that also updates the tag's set).
    fn tag(self, k: u32) -> Option<&'static str> {
        match self {
            Group::Invalidated => Some(INVALIDATED_TAG),
            Group::Untouched => Some("contract-untouched"),
            Group::Rewritten if k.is_multiple_of(2) => Some("contract-rewritten"),
            Group::Deleted if k.is_multiple_of(2) => Some("contract-deleted"),
            Group::Rewritten | Group::Deleted => None,
        }
    }
}

/// The cache key of index `k`.
pub(crate) fn key(k: u32) -> String {
    format!("k{k}")
}

/// Tier options of a reader: patient timeouts, so a loaded machine does not turn a read of the
/// recovered tier into a skip to the tier below (which would hide what the recovered tier
/// holds).
pub(crate) fn patient_tier() -> TierOptions {
    TierOptions::new()
        .read_timeout(Some(Duration::from_secs(2)))
        .write_timeout(Some(Duration::from_secs(2)))
}

/// Who an instance is: the writer (the fault suite's small timeouts) or a reader (patient
/// timeouts, see [`patient_tier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

/// A Redis tier of its own connection for `role`, keys under `prefix`.
pub(crate) async fn redis(url: &str, prefix: &str, role: Role) -> Arc<dyn Backend> {
    match role {
        Role::Writer => Arc::new(redis_tier(url, prefix).await),
        Role::Reader => Arc::new(
            bounded(
                "connecting a reader's redis tier",
                CALL_LIMIT,
                RedisBackend::connect(
                    redis_config(url, prefix).with_operation_timeout(Duration::from_secs(1)),
                ),
            )
            .await
            .expect("reader's redis tier"),
        ),
    }
}

/// A PostgreSQL tier of its own pool for `role`, table `"schema".entries` (the writer creates
/// it).
pub(crate) async fn postgres(url: &str, schema: &str, role: Role) -> Arc<dyn Backend> {
    match role {
        Role::Writer => Arc::new(
            bounded(
                "connecting the writer's postgres tier",
                Duration::from_secs(20),
                postgres_tier(url, schema),
            )
            .await,
        ),
        Role::Reader => Arc::new(
            bounded(
                "connecting a reader's postgres tier",
                CALL_LIMIT,
                PostgresBackend::connect(
                    postgres_config(url, schema)
                        .with_operation_timeout(Duration::from_secs(1))
                        .with_pool_timeouts(
                            Duration::from_secs(1),
                            Duration::from_secs(1),
                            Duration::from_secs(1),
                        ),
                ),
            )
            .await
            .expect("reader's postgres tier"),
        ),
    }
}

/// One instance: a fresh L1 (memory, 8 MiB) over `shared` (each its own connection), with the
/// tier options of `role`; the cache and its L1.
pub(crate) fn instance(
    name: &str,
    role: Role,
    shared: Vec<Arc<dyn Backend>>,
) -> (Cache, Arc<dyn Backend>) {
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(8 << 20).expect("L1"));
    let opts = match role {
        Role::Writer => fast_tier(),
        Role::Reader => patient_tier(),
    };
    let mut b = Cache::builder(name).shared_tier(l1.clone());
    for t in shared {
        b = b.shared_tier_with(t, opts.clone());
    }
    (b.build().expect("cache"), l1)
}

/// `f`, or a panic naming `what` when it takes longer than `limit`.
pub(crate) async fn bounded<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} took longer than {limit:?}"),
    }
}

/// What the writer was told, per key.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// The newest generation whose `set` returned `Ok`.
    acked: Vec<u64>,
    /// The newest generation whose `set` was attempted (a read of a higher one is wrong).
    attempted: Vec<u64>,
    /// A removal returned `Ok` after the newest acknowledged `set`.
    removed: Vec<bool>,
    /// A removal returned an error (or did not end within [`CALL_LIMIT`]).
    removal_failed: Vec<bool>,
    /// Outcomes of the calls made during the fault.
    pub(crate) during: Outcomes,
}

/// How the calls made during the fault ended.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcomes {
    pub(crate) sets_ok: usize,
    pub(crate) sets_failed: usize,
    pub(crate) deletes_ok: usize,
    pub(crate) deletes_failed: usize,
    pub(crate) invalidate_ok: bool,
    /// The first few distinct errors, for the report.
    pub(crate) errors: Vec<String>,
}

impl Outcomes {
    /// Keep the first 4 distinct errors.
    fn error(&mut self, what: &str, e: &str) {
        let e = format!("{what}: {e}");
        if self.errors.len() < 4 && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    /// One line for the report.
    pub(crate) fn line(&self) -> String {
        format!(
            "sets_ok={} sets_failed={} deletes_ok={} deletes_failed={} invalidate_ok={} \
             first_errors={:?}",
            self.sets_ok,
            self.sets_failed,
            self.deletes_ok,
            self.deletes_failed,
            self.invalidate_ok,
            self.errors
        )
    }
}

/// A `set_with` of generation `g` of key `k` with its tag (if any), bounded by [`CALL_LIMIT`].
async fn set(cache: &Cache, k: u32, g: u64) -> Result<(), String> {
    let opts = match Group::of(k).tag(k) {
        Some(t) => WriteOptions::new().tag(t),
        None => WriteOptions::new(),
    };
    match tokio::time::timeout(
        CALL_LIMIT,
        cache.set_with(key(k).as_str(), Val::new(k, g), &opts),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_LIMIT:?}")),
    }
}

/// Write generation 1 of every key (each must be acknowledged: no fault yet).
pub(crate) async fn write_v1(cache: &Cache) -> Ledger {
    for k in 0..KEYS {
        if let Err(e) = set(cache, k, 1).await {
            panic!("writing generation 1 of {} before the fault: {e}", key(k));
        }
    }
    let n = KEYS as usize;
    Ledger {
        acked: vec![1; n],
        attempted: vec![1; n],
        removed: vec![false; n],
        removal_failed: vec![false; n],
        during: Outcomes::default(),
    }
}

/// During the fault, one call after the other: `set` generation 2 of the `i`-th rewritten key
/// and `delete` of the `i`-th deleted key for each `i`, with the `invalidate_tag` of the
/// invalidated group half-way (so that calls both reach the faulted tier and find its breaker
/// open), noting each outcome. `before_each` runs before every call (e.g. to keep a
/// filesystem full).
pub(crate) async fn write_during_fault_with(
    cache: &Cache,
    ledger: &mut Ledger,
    mut before_each: impl FnMut(),
) {
    let mut out = Outcomes::default();
    for i in 0..PER_GROUP {
        before_each();
        let k = i;
        debug_assert_eq!(Group::of(k), Group::Rewritten);
        ledger.attempted[k as usize] = 2;
        match set(cache, k, 2).await {
            Ok(()) => {
                out.sets_ok += 1;
                ledger.acked[k as usize] = 2;
                ledger.removed[k as usize] = false;
            }
            Err(e) => {
                out.sets_failed += 1;
                out.error("set", &e);
            }
        }
        before_each();
        let k = PER_GROUP + i;
        debug_assert_eq!(Group::of(k), Group::Deleted);
        match outcome(cache.delete(key(k).as_str())).await {
            Ok(()) => {
                out.deletes_ok += 1;
                ledger.removed[k as usize] = true;
            }
            Err(e) => {
                out.deletes_failed += 1;
                ledger.removal_failed[k as usize] = true;
                out.error("delete", &e);
            }
        }
        if i == PER_GROUP / 2 {
            before_each();
            let r = outcome(cache.invalidate_tag(INVALIDATED_TAG)).await;
            out.invalidate_ok = r.is_ok();
            if let Err(e) = r {
                out.error("invalidate_tag", &e);
            }
            for k in (0..KEYS).filter(|k| Group::of(*k) == Group::Invalidated) {
                if out.invalidate_ok {
                    ledger.removed[k as usize] = true;
                } else {
                    ledger.removal_failed[k as usize] = true;
                }
            }
        }
    }
    ledger.during = out;
}

/// [`write_during_fault_with`] with nothing to do between calls.
pub(crate) async fn write_during_fault(cache: &Cache, ledger: &mut Ledger) {
    write_during_fault_with(cache, ledger, || {}).await;
}

/// A removal's outcome, bounded by [`CALL_LIMIT`].
async fn outcome(f: impl Future<Output = layercake::Result<()>>) -> Result<(), String> {
    match tokio::time::timeout(CALL_LIMIT, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_LIMIT:?}")),
    }
}

/// One instance reading every key: its cache and its L1 (cleared before each pass, so every
/// pass reads as a fresh instance would).
pub(crate) struct Reader {
    pub(crate) name: &'static str,
    pub(crate) cache: Cache,
    pub(crate) l1: Arc<dyn Backend>,
}

/// What one read pass of one reader saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// (a) Keys that returned a generation below their newest acknowledged `set`.
    pub(crate) older: usize,
    /// (b) Keys whose newest acknowledged call was a removal and that returned a value.
    pub(crate) resurrected: usize,
    /// Keys with a failed removal that returned a value (allowed: reported).
    pub(crate) failed_removal_back: usize,
    /// Keys not removed that returned nothing (allowed: reported).
    pub(crate) missing: usize,
    /// Values of another key, or of a generation never written.
    pub(crate) wrong: usize,
    /// Reads that failed or did not end within [`CALL_LIMIT`].
    pub(crate) errors: usize,
}

impl Counts {
    /// Nothing the contract forbids.
    pub(crate) fn consistent(&self) -> bool {
        self.older == 0 && self.resurrected == 0 && self.wrong == 0 && self.errors == 0
    }

    fn show(&self) -> String {
        format!(
            "older={} resurrected={} failed_removal_back={} missing={} wrong={} errors={}",
            self.older,
            self.resurrected,
            self.failed_removal_back,
            self.missing,
            self.wrong,
            self.errors
        )
    }
}

/// Clear the reader's L1, then read every key through it.
pub(crate) async fn read_pass(reader: &Reader, ledger: &Ledger) -> Counts {
    let mut c = Counts::default();
    if tokio::time::timeout(CALL_LIMIT, reader.l1.clear())
        .await
        .map_or(true, |r| r.is_err())
    {
        c.errors += 1;
    }
    for k in 0..KEYS {
        let i = k as usize;
        match tokio::time::timeout(CALL_LIMIT, reader.cache.get::<Val>(key(k).as_str())).await {
            Ok(Ok(Some(l))) => {
                let v = &*l.value;
                if v.k != k || v.generation == 0 || v.generation > ledger.attempted[i] {
                    c.wrong += 1;
                } else if ledger.removed[i] {
                    c.resurrected += 1;
                } else if v.generation < ledger.acked[i] {
                    c.older += 1;
                } else if ledger.removal_failed[i] {
                    c.failed_removal_back += 1;
                }
            }
            Ok(Ok(None)) => {
                if !ledger.removed[i] && !ledger.removal_failed[i] {
                    c.missing += 1;
                }
            }
            Ok(Err(_)) | Err(_) => c.errors += 1,
        }
    }
    c
}

/// What the readers saw after recovery.
#[derive(Debug)]
pub(crate) struct Settled {
    /// The first pass of each reader, right after recovery.
    pub(crate) first: Vec<Counts>,
    /// The last pass of each reader (the consistent one, or the one at the deadline).
    pub(crate) last: Vec<Counts>,
    /// Passes made.
    pub(crate) passes: usize,
    /// From `recovered` to the end of the first pass in which every reader was consistent.
    pub(crate) settle: Option<Duration>,
}

impl Settled {
    /// Older values in the last pass, all readers.
    pub(crate) fn older(&self) -> usize {
        self.last.iter().map(|c| c.older).sum()
    }

    /// Resurrected removals in the last pass, all readers.
    pub(crate) fn resurrected(&self) -> usize {
        self.last.iter().map(|c| c.resurrected).sum()
    }

    /// The report lines of `scenario`.
    pub(crate) fn print(&self, scenario: &str, readers: &[Reader]) {
        println!(
            "{scenario}: settle={} passes={} older={} resurrected={}",
            self.settle
                .map_or_else(|| "never".to_owned(), |d| format!("{}ms", d.as_millis())),
            self.passes,
            self.older(),
            self.resurrected()
        );
        for (i, r) in readers.iter().enumerate() {
            println!(
                "{scenario}: reader={} first_pass: {} | last_pass: {}",
                r.name,
                self.first[i].show(),
                self.last[i].show()
            );
        }
    }

    /// The assertions of the contract: 0 older values, 0 resurrected removals, no wrong value
    /// and no failed read, within [`SETTLE_LIMIT`] of recovery.
    pub(crate) fn assert_kept(&self, scenario: &str) {
        let wrong: usize = self.last.iter().map(|c| c.wrong).sum();
        let errors: usize = self.last.iter().map(|c| c.errors).sum();
        assert_eq!(wrong, 0, "{scenario}: values never written for their key");
        assert_eq!(errors, 0, "{scenario}: reads failed after recovery");
        assert!(
            self.settle.is_some(),
            "{scenario}: {} older values and {} resurrected removals still read {SETTLE_LIMIT:?} \
             after recovery (first pass: {:?})",
            self.older(),
            self.resurrected(),
            self.first
        );
    }
}

/// Read passes by every reader, from `recovered` until all are consistent or
/// [`SETTLE_LIMIT`] has passed.
pub(crate) async fn settle(readers: &[Reader], ledger: &Ledger, recovered: Instant) -> Settled {
    let mut first = Vec::new();
    let mut passes = 0;
    loop {
        let mut last = Vec::with_capacity(readers.len());
        for r in readers {
            last.push(read_pass(r, ledger).await);
        }
        passes += 1;
        if first.is_empty() {
            first.clone_from(&last);
        }
        if last.iter().all(Counts::consistent) {
            return Settled {
                first,
                last,
                passes,
                settle: Some(recovered.elapsed()),
            };
        }
        if recovered.elapsed() >= SETTLE_LIMIT {
            return Settled {
                first,
                last,
                passes,
                settle: None,
            };
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}
