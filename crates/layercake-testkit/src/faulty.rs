//! [`FaultyBackend`]: a wrapper that injects failures, delays, hangs and corrupted values into
//! any backend, under the control of a [`FaultHandle`], for resilience tests of the composer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use layercake_core::{Backend, ErrorKind, Key};
//! use layercake_testkit::conformance::reference::ReferenceBackend;
//! use layercake_testkit::faulty::{Fault, FaultyBackend};
//! use layercake_testkit::recording::Operation;
//!
//! let faulty = FaultyBackend::new(Arc::new(ReferenceBackend::new()), 42);
//! let faults = faulty.handle();
//! let tier: Arc<dyn Backend> = Arc::new(faulty);
//! let k = Key::new("k").unwrap();
//!
//! faults.inject(Operation::Get, Fault::Fail(ErrorKind::Unavailable));
//! let err = tier.get(&k).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Unavailable);
//! assert!(err.is_temporary());
//!
//! faults.clear_all();
//! assert_eq!(tier.get(&k).await.unwrap(), None);
//! assert_eq!(faults.calls(Operation::Get), 2);
//! assert_eq!(faults.injected(Operation::Get), 1);
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use layercake_core::{
    Backend, Bytes, Capability, Entry, Error, ErrorKind, FillOutcome, Key, Result, Selector,
    Tombstone,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::recording::Operation;

/// What to inject into an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fail at once with an error of this kind (temporary per
    /// [`ErrorKind::default_temporary`]), without asking the inner backend. Typical kinds:
    /// [`Unavailable`](ErrorKind::Unavailable), [`Timeout`](ErrorKind::Timeout).
    Fail(ErrorKind),
    /// Wait this long (on the tokio timer), then go on (to other faults or the inner backend).
    Delay(Duration),
    /// Never complete; the call ends only when its future is dropped (e.g. by a timeout).
    Hang,
    /// Ask the inner backend, then return every entry read with its value bytes inverted
    /// (an empty value becomes one `0xFF` byte) and without its decoded value, so the
    /// composer's codec must catch it. Only affects `get` and `get_many`.
    FlipValue,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    fault: Fault,
    probability: f64,
}

#[derive(Debug)]
struct Rules {
    per_op: [Vec<Rule>; Operation::ALL.len()],
    rng: StdRng,
}

#[derive(Debug)]
struct Shared {
    rules: Mutex<Rules>,
    calls: [AtomicU64; Operation::ALL.len()],
    injected: [AtomicU64; Operation::ALL.len()],
}

/// Controls the faults of a [`FaultyBackend`] at runtime and reads its counters; cheap to
/// clone.
///
/// Contract:
/// - each operation has an ordered list of rules `(fault, probability)`; on each call every rule
///   is rolled once, in order, with the seeded generator: delays add up, the first `Fail` or
///   `Hang` that fires ends the call (after the delays), `FlipValue` applies to the result;
/// - the same seed and the same sequence of calls give the same faults (per operation order
///   across tasks is whatever order the calls reach the handle);
/// - counters count every call, and calls in which at least one fault fired.
#[derive(Debug, Clone)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

impl FaultHandle {
    /// Always inject `fault` into `op` (added after its existing rules).
    pub fn inject(&self, op: Operation, fault: Fault) {
        self.inject_with_probability(op, fault, 1.0);
    }

    /// Inject `fault` into `op` with `probability` (clamped to `0.0..=1.0`; NaN is 0).
    pub fn inject_with_probability(&self, op: Operation, fault: Fault, probability: f64) {
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        self.shared.rules.lock().per_op[op.index()].push(Rule { fault, probability });
    }

    /// Always inject `fault` into every operation.
    pub fn inject_everywhere(&self, fault: Fault) {
        for op in Operation::ALL {
            self.inject(op, fault);
        }
    }

    /// Remove every rule of `op`.
    pub fn clear(&self, op: Operation) {
        self.shared.rules.lock().per_op[op.index()].clear();
    }

    /// Remove every rule of every operation.
    pub fn clear_all(&self) {
        for rules in self.shared.rules.lock().per_op.iter_mut() {
            rules.clear();
        }
    }

    /// Restart the generator from `seed`.
    pub fn reseed(&self, seed: u64) {
        self.shared.rules.lock().rng = StdRng::seed_from_u64(seed);
    }

    /// Calls of `op` so far (including failed and hanging ones).
    pub fn calls(&self, op: Operation) -> u64 {
        self.shared.calls[op.index()].load(Ordering::Relaxed)
    }

    /// Calls of every operation so far.
    pub fn total_calls(&self) -> u64 {
        Operation::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// Calls of `op` in which at least one fault fired.
    pub fn injected(&self, op: Operation) -> u64 {
        self.shared.injected[op.index()].load(Ordering::Relaxed)
    }

    /// Roll the rules of `op` and return the plan for this call.
    fn plan(&self, op: Operation) -> Plan {
        self.shared.calls[op.index()].fetch_add(1, Ordering::Relaxed);
        let mut plan = Plan::default();
        let mut guard = self.shared.rules.lock();
        let Rules { per_op, rng } = &mut *guard;
        for rule in &per_op[op.index()] {
            if !rng.random_bool(rule.probability) {
                continue;
            }
            plan.fired = true;
            match rule.fault {
                Fault::Delay(d) => plan.delay += d,
                Fault::FlipValue => plan.flip = true,
                Fault::Fail(kind) => {
                    plan.end = Some(End::Fail(kind));
                    break;
                }
                Fault::Hang => {
                    plan.end = Some(End::Hang);
                    break;
                }
            }
        }
        drop(guard);
        if plan.fired {
            self.shared.injected[op.index()].fetch_add(1, Ordering::Relaxed);
        }
        plan
    }
}

#[derive(Debug, Default)]
struct Plan {
    fired: bool,
    delay: Duration,
    flip: bool,
    end: Option<End>,
}

#[derive(Debug)]
enum End {
    Fail(ErrorKind),
    Hang,
}

/// A [`Backend`] that injects faults into calls to the inner backend; see the
/// [module docs](self) and [`FaultHandle`].
///
/// Contract:
/// - with no rule set, behaves exactly like the inner backend, forwarding every method
///   (defaulted ones included: a `get_many` stays a `get_many`);
/// - `kind`, `capability` and `corrupt_reads` are the inner backend's and never faulted, except
///   that the capability declares no self-imposed bound (`get_timeout` and `set_timeout` are
///   `None`): an injected delay or hang breaks any bound the inner backend keeps, so the
///   composer must arm its own timers around this backend;
/// - an injected error names the inner backend's kind and the operation in its message.
#[derive(Debug, Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    handle: FaultHandle,
}

impl FaultyBackend {
    /// Wrap `inner`, with no fault yet and the generator seeded with `seed`.
    pub fn new(inner: Arc<dyn Backend>, seed: u64) -> Self {
        FaultyBackend {
            inner,
            handle: FaultHandle {
                shared: Arc::new(Shared {
                    rules: Mutex::new(Rules {
                        per_op: Default::default(),
                        rng: StdRng::seed_from_u64(seed),
                    }),
                    calls: Default::default(),
                    injected: Default::default(),
                }),
            },
        }
    }

    /// The handle controlling this backend's faults (keep it before moving the backend).
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Apply the plan's delay and terminal fault; `Ok(flip)` lets the call through.
    async fn before(&self, op: Operation) -> Result<bool> {
        let plan = self.handle.plan(op);
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        match plan.end {
            Some(End::Fail(kind)) => Err(Error::new(
                kind,
                format!("fault injected into {op} by FaultyBackend"),
            )
            .with_backend(self.inner.kind())),
            Some(End::Hang) => std::future::pending().await,
            None => Ok(plan.flip),
        }
    }
}

/// The entry with its value bytes inverted and no decoded value.
fn flip(entry: Entry) -> Entry {
    let mut bytes: Vec<u8> = entry.value.iter().map(|b| !b).collect();
    if bytes.is_empty() {
        bytes.push(0xFF);
    }
    let mut e = entry.without_decoded();
    e.value = Bytes::from(bytes);
    e
}

#[async_trait]
impl Backend for FaultyBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capability(&self) -> Capability {
        let mut c = self.inner.capability();
        c.get_timeout = None;
        c.set_timeout = None;
        c
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let flip_it = self.before(Operation::Get).await?;
        let got = self.inner.get(key).await?;
        Ok(if flip_it { got.map(flip) } else { got })
    }
    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.before(Operation::Set).await?;
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.before(Operation::Delete).await?;
        self.inner.delete(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let flip_it = self.before(Operation::GetMany).await?;
        let got = self.inner.get_many(keys).await?;
        Ok(if flip_it {
            got.into_iter().map(|e| e.map(flip)).collect()
        } else {
            got
        })
    }
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        self.before(Operation::SetMany).await?;
        self.inner.set_many(items).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.before(Operation::DeleteMany).await?;
        self.inner.delete_many(keys).await
    }
    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        self.before(Operation::Invalidate).await?;
        self.inner.invalidate(selector).await
    }
    async fn clear(&self) -> Result<()> {
        self.before(Operation::Clear).await?;
        self.inner.clear().await
    }
    async fn health(&self) -> Result<()> {
        self.before(Operation::Health).await?;
        self.inner.health().await
    }
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.before(Operation::KeysWithPrefix).await?;
        self.inner.keys_with_prefix(prefix, limit).await
    }
    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.before(Operation::Fill).await?;
        // A fault planned for the plain operation covers its conditional form too.
        self.before(Operation::Set).await?;
        self.inner.fill(key, entry).await
    }
    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        self.before(Operation::FillMany).await?;
        // A fault planned for the plain operation covers its conditional form too.
        self.before(Operation::SetMany).await?;
        self.inner.fill_many(items).await
    }
    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.before(Operation::DeleteWith).await?;
        // A fault planned for the plain operation covers its conditional form too.
        self.before(Operation::Delete).await?;
        self.inner.delete_with(key, tombstone).await
    }
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.before(Operation::InvalidateWith).await?;
        // A fault planned for the plain operation covers its conditional form too.
        self.before(Operation::Invalidate).await?;
        self.inner.invalidate_with(selector, tombstone).await
    }
    fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt_reads()
    }
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        // Not forwarded: a caller that found the inner backend's concrete type would call it
        // directly, past the injected faults (the composer's synchronous memory reads, for one).
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::reference::ReferenceBackend;
    use crate::recording::RecordingBackend;
    use layercake_core::{Clock, SystemClock};
    use std::any::Any;
    use std::time::Instant;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn setup(seed: u64) -> (FaultyBackend, FaultHandle, crate::recording::Recorder) {
        let rec = RecordingBackend::new(Arc::new(ReferenceBackend::new()));
        let log = rec.recorder();
        let f = FaultyBackend::new(Arc::new(rec), seed);
        let h = f.handle();
        (f, h, log)
    }

    fn entry(v: &'static [u8]) -> Entry {
        Entry::new(v, SystemClock.now(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn injected_errors_skip_the_inner_backend() {
        let (f, h, log) = setup(1);
        h.inject(Operation::Set, Fault::Fail(ErrorKind::Timeout));
        let err = f.set(&key("k"), &entry(b"v")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.is_temporary());
        assert_eq!(err.backend(), Some("reference"));
        assert!(err.message().contains("set"), "{err}");
        assert_eq!(log.count(Operation::Set), 0, "inner must not be asked");
        // Other operations are untouched.
        assert_eq!(f.get(&key("k")).await.unwrap(), None);
        assert_eq!(log.count(Operation::Get), 1);
        h.clear(Operation::Set);
        let e = entry(b"v");
        f.set(&key("k"), &e).await.unwrap();
        assert_eq!(f.get(&key("k")).await.unwrap(), Some(e));
        assert_eq!(h.calls(Operation::Set), 2);
        assert_eq!(h.injected(Operation::Set), 1);
        assert_eq!(h.total_calls(), 4);
    }

    #[tokio::test]
    async fn seeded_probability_is_reproducible() {
        async fn outcomes(seed: u64) -> Vec<bool> {
            let (f, h, _) = setup(seed);
            h.inject_with_probability(Operation::Get, Fault::Fail(ErrorKind::Unavailable), 0.5);
            let mut out = Vec::new();
            for _ in 0..200 {
                out.push(f.get(&key("k")).await.is_err());
            }
            out
        }
        let a = outcomes(7).await;
        assert_eq!(a, outcomes(7).await, "same seed, same faults");
        assert_ne!(a, outcomes(8).await, "another seed, other faults");
        let failed = a.iter().filter(|x| **x).count();
        assert!(
            (60..=140).contains(&failed),
            "{failed} of 200 failed at p = 0.5"
        );
    }

    #[tokio::test]
    async fn probabilities_outside_the_range_are_clamped() {
        let (f, h, _) = setup(3);
        h.inject_with_probability(Operation::Get, Fault::Fail(ErrorKind::Unavailable), 7.0);
        h.inject_with_probability(Operation::Delete, Fault::Fail(ErrorKind::Unavailable), -1.0);
        h.inject_with_probability(Operation::Delete, Fault::Hang, f64::NAN);
        assert!(f.get(&key("k")).await.is_err());
        f.delete(&key("k")).await.unwrap();
        assert_eq!(h.injected(Operation::Delete), 0);
    }

    #[tokio::test]
    async fn delay_then_call_through() {
        let (f, h, log) = setup(1);
        h.inject(Operation::Health, Fault::Delay(Duration::from_millis(40)));
        h.inject(Operation::Health, Fault::Delay(Duration::from_millis(40)));
        let start = Instant::now();
        f.health().await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "delays add up"
        );
        assert_eq!(log.count(Operation::Health), 1);
    }

    #[tokio::test]
    async fn hang_until_dropped_then_recover() {
        let (f, h, log) = setup(1);
        h.inject_everywhere(Fault::Hang);
        let r = tokio::time::timeout(Duration::from_millis(50), f.get(&key("k"))).await;
        assert!(r.is_err(), "a hanging call must not complete");
        let r = tokio::time::timeout(Duration::from_millis(50), f.clear()).await;
        assert!(r.is_err());
        assert_eq!(log.total(), 0);
        h.clear_all();
        assert_eq!(f.get(&key("k")).await.unwrap(), None);
        assert_eq!(h.injected(Operation::Get), 1);
        assert_eq!(h.calls(Operation::Get), 2);
    }

    #[tokio::test]
    async fn flip_value_inverts_bytes_and_drops_decoded() {
        let inner = Arc::new(ReferenceBackend::new());
        let f = FaultyBackend::new(inner.clone(), 9);
        let h = f.handle();
        let decoded: Arc<dyn Any + Send + Sync> = Arc::new(5u32);
        f.set(&key("a"), &entry(b"\x00\x0f").with_decoded(decoded))
            .await
            .unwrap();
        f.set(&key("empty"), &entry(b"")).await.unwrap();
        h.inject(Operation::Get, Fault::FlipValue);
        h.inject(Operation::GetMany, Fault::FlipValue);
        let got = f.get(&key("a")).await.unwrap().unwrap();
        assert_eq!(got.value.as_ref(), b"\xff\xf0");
        assert!(got.decoded().is_none());
        let many = f
            .get_many(&[key("a"), key("missing"), key("empty")])
            .await
            .unwrap();
        assert_eq!(many[0].as_ref().unwrap().value.as_ref(), b"\xff\xf0");
        assert!(many[1].is_none());
        assert_eq!(many[2].as_ref().unwrap().value.as_ref(), b"\xff");
        // Writes are untouched; the stored copy is intact.
        assert_eq!(
            inner.get(&key("a")).await.unwrap().unwrap().value.as_ref(),
            b"\x00\x0f"
        );
    }

    #[tokio::test]
    async fn every_method_is_forwarded_natively() {
        let (f, _h, log) = setup(1);
        f.set_many(&[(key("a"), entry(b"1")), (key("b"), entry(b"2"))])
            .await
            .unwrap();
        f.get_many(&[key("a")]).await.unwrap();
        f.delete_many(&[key("a")]).await.unwrap();
        f.invalidate(&Selector::Tag("t".into())).await.unwrap();
        f.delete(&key("b")).await.unwrap();
        f.clear().await.unwrap();
        f.health().await.unwrap();
        assert_eq!(
            log.operations(),
            vec![
                Operation::SetMany,
                Operation::GetMany,
                Operation::DeleteMany,
                Operation::Invalidate,
                Operation::Delete,
                Operation::Clear,
                Operation::Health
            ]
        );
        assert_eq!(f.kind(), "reference");
        assert!(f.capability().tag_invalidation);
        assert_eq!(f.corrupt_reads(), 0);
    }
}
