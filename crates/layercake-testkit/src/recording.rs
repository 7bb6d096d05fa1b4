//! [`RecordingBackend`]: a wrapper that records every call, so composer tests can assert which
//! tiers were asked what, in which order (e.g. "L2 was not asked").
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use layercake_core::{Backend, Key};
//! use layercake_testkit::recording::{Operation, RecordingBackend};
//! use layercake_testkit::conformance::reference::ReferenceBackend;
//! let inner: Arc<dyn Backend> = Arc::new(ReferenceBackend::new());
//! let recording = RecordingBackend::new(inner);
//! let recorder = recording.recorder();
//! let tier: Arc<dyn Backend> = Arc::new(recording);
//!
//! tier.get(&Key::new("a").unwrap()).await.unwrap();
//! assert_eq!(recorder.count(Operation::Get), 1);
//! assert_eq!(recorder.keys(Operation::Get), vec![Key::new("a").unwrap()]);
//! assert!(!recorder.was_asked(Operation::Set));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use layercake_core::{Backend, Capability, Entry, FillOutcome, Key, Result, Selector, Tombstone};
use parking_lot::Mutex;

/// A [`Backend`] operation, as recorded by [`RecordingBackend`] and targeted by
/// [`FaultyBackend`](crate::faulty::FaultyBackend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Backend::get`].
    Get,
    /// [`Backend::set`].
    Set,
    /// [`Backend::delete`].
    Delete,
    /// [`Backend::get_many`].
    GetMany,
    /// [`Backend::set_many`].
    SetMany,
    /// [`Backend::delete_many`].
    DeleteMany,
    /// [`Backend::invalidate`].
    Invalidate,
    /// [`Backend::clear`].
    Clear,
    /// [`Backend::health`].
    Health,
    /// [`Backend::keys_with_prefix`].
    KeysWithPrefix,
    /// [`Backend::fill`]. In a `FaultyBackend`, a fault planned for [`Set`](Operation::Set)
    /// applies to fills too.
    Fill,
    /// [`Backend::fill_many`]. In a `FaultyBackend`, a fault planned for
    /// [`SetMany`](Operation::SetMany) applies too.
    FillMany,
    /// [`Backend::delete_with`]. In a `FaultyBackend`, a fault planned for
    /// [`Delete`](Operation::Delete) applies too.
    DeleteWith,
    /// [`Backend::invalidate_with`]. In a `FaultyBackend`, a fault planned for
    /// [`Invalidate`](Operation::Invalidate) applies too.
    InvalidateWith,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 14] = [
        Operation::Get,
        Operation::Set,
        Operation::Delete,
        Operation::GetMany,
        Operation::SetMany,
        Operation::DeleteMany,
        Operation::Invalidate,
        Operation::Clear,
        Operation::Health,
        Operation::KeysWithPrefix,
        Operation::Fill,
        Operation::FillMany,
        Operation::DeleteWith,
        Operation::InvalidateWith,
    ];

    /// A stable lower-case name (`"get"`, `"set_many"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Set => "set",
            Operation::Delete => "delete",
            Operation::GetMany => "get_many",
            Operation::SetMany => "set_many",
            Operation::DeleteMany => "delete_many",
            Operation::Invalidate => "invalidate",
            Operation::Clear => "clear",
            Operation::Health => "health",
            Operation::KeysWithPrefix => "keys_with_prefix",
            Operation::Fill => "fill",
            Operation::FillMany => "fill_many",
            Operation::DeleteWith => "delete_with",
            Operation::InvalidateWith => "invalidate_with",
        }
    }

    /// Position in [`Operation::ALL`], for per-operation tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether the operation reads entries.
    pub fn is_read(self) -> bool {
        matches!(self, Operation::Get | Operation::GetMany)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub op: Operation,
    /// The keys it named, in argument order (empty for `invalidate`, `invalidate_with`,
    /// `clear`, `health`).
    pub keys: Vec<Key>,
    /// The selector of an `invalidate` or `invalidate_with` (and the prefix of a
    /// `keys_with_prefix`).
    pub selector: Option<Selector>,
}

/// The shared call log of a [`RecordingBackend`]; cheap to clone.
///
/// Contract:
/// - a call is recorded when it starts (before the inner backend is asked), so calls that fail,
///   hang or are cancelled are recorded too;
/// - calls are kept in the order they started.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn push(&self, op: Operation, keys: Vec<Key>, selector: Option<Selector>) {
        self.calls.lock().push(Call { op, keys, selector });
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// Every call so far, in order, clearing the log.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock())
    }

    /// Forget every recorded call.
    pub fn reset(&self) {
        self.calls.lock().clear();
    }

    /// The operations so far, in order.
    pub fn operations(&self) -> Vec<Operation> {
        self.calls.lock().iter().map(|c| c.op).collect()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: Operation) -> usize {
        self.calls.lock().iter().filter(|c| c.op == op).count()
    }

    /// How many calls were made in total.
    pub fn total(&self) -> usize {
        self.calls.lock().len()
    }

    /// Whether `op` was called at least once.
    pub fn was_asked(&self, op: Operation) -> bool {
        self.count(op) > 0
    }

    /// Whether any call named `key` (alone or in a bulk call).
    pub fn touched(&self, key: &Key) -> bool {
        self.calls.lock().iter().any(|c| c.keys.contains(key))
    }

    /// The keys named by calls of `op`, flattened, in order.
    pub fn keys(&self, op: Operation) -> Vec<Key> {
        self.calls
            .lock()
            .iter()
            .filter(|c| c.op == op)
            .flat_map(|c| c.keys.iter().cloned())
            .collect()
    }
}

/// A [`Backend`] that records every call and then delegates it to the inner backend.
///
/// Contract:
/// - every method, defaulted ones included, is forwarded to the inner backend unchanged (a
///   `get_many` stays a `get_many`), so the inner backend's native paths are exercised;
/// - `kind`, `capability` and `corrupt_reads` are the inner backend's and are not recorded.
#[derive(Debug, Clone)]
pub struct RecordingBackend {
    inner: Arc<dyn Backend>,
    recorder: Recorder,
}

impl RecordingBackend {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        RecordingBackend {
            inner,
            recorder: Recorder::default(),
        }
    }

    /// The shared call log (keep it before moving the backend into a cache).
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }
}

#[async_trait]
impl Backend for RecordingBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capability(&self) -> Capability {
        self.inner.capability()
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.recorder.push(Operation::Get, vec![key.clone()], None);
        self.inner.get(key).await
    }
    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.recorder.push(Operation::Set, vec![key.clone()], None);
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.recorder
            .push(Operation::Delete, vec![key.clone()], None);
        self.inner.delete(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        self.recorder.push(Operation::GetMany, keys.to_vec(), None);
        self.inner.get_many(keys).await
    }
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        let keys = items.iter().map(|(k, _)| k.clone()).collect();
        self.recorder.push(Operation::SetMany, keys, None);
        self.inner.set_many(items).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.recorder
            .push(Operation::DeleteMany, keys.to_vec(), None);
        self.inner.delete_many(keys).await
    }
    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        self.recorder
            .push(Operation::Invalidate, Vec::new(), Some(selector.clone()));
        self.inner.invalidate(selector).await
    }
    async fn clear(&self) -> Result<()> {
        self.recorder.push(Operation::Clear, Vec::new(), None);
        self.inner.clear().await
    }
    async fn health(&self) -> Result<()> {
        self.recorder.push(Operation::Health, Vec::new(), None);
        self.inner.health().await
    }
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.recorder.push(
            Operation::KeysWithPrefix,
            Vec::new(),
            Some(Selector::Prefix(prefix.to_owned())),
        );
        self.inner.keys_with_prefix(prefix, limit).await
    }
    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.recorder.push(Operation::Fill, vec![key.clone()], None);
        self.inner.fill(key, entry).await
    }
    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        let keys = items.iter().map(|(k, _)| k.clone()).collect();
        self.recorder.push(Operation::FillMany, keys, None);
        self.inner.fill_many(items).await
    }
    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.recorder
            .push(Operation::DeleteWith, vec![key.clone()], None);
        self.inner.delete_with(key, tombstone).await
    }
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.recorder.push(
            Operation::InvalidateWith,
            Vec::new(),
            Some(selector.clone()),
        );
        self.inner.invalidate_with(selector, tombstone).await
    }
    fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt_reads()
    }
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        // Not forwarded: a caller that found the inner backend's concrete type would call it
        // directly, unrecorded (the composer's synchronous memory reads, for one).
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::reference::ReferenceBackend;
    use layercake_core::Timestamp;
    use std::time::Duration;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[tokio::test]
    async fn records_every_call_in_order_and_delegates() {
        let inner = Arc::new(ReferenceBackend::new());
        let rec = RecordingBackend::new(inner.clone());
        let log = rec.recorder();
        let e = Entry::new(&b"v"[..], inner.now(), Duration::from_secs(60));
        rec.set(&key("a"), &e).await.unwrap();
        assert_eq!(rec.get(&key("a")).await.unwrap(), Some(e.clone()));
        rec.set_many(&[(key("b"), e.clone()), (key("c"), e.clone())])
            .await
            .unwrap();
        let many = rec.get_many(&[key("b"), key("x")]).await.unwrap();
        assert_eq!(many, vec![Some(e.clone()), None]);
        rec.delete(&key("a")).await.unwrap();
        rec.delete_many(&[key("b")]).await.unwrap();
        rec.invalidate(&Selector::Prefix("c".into())).await.unwrap();
        rec.clear().await.unwrap();
        rec.health().await.unwrap();
        let t = Tombstone::new(1, Duration::from_secs(1));
        assert_eq!(rec.fill(&key("f"), &e).await.unwrap(), FillOutcome::Stored);
        rec.fill_many(&[(key("g"), e.clone())]).await.unwrap();
        rec.delete_with(&key("f"), t).await.unwrap();
        rec.invalidate_with(&Selector::Tag("t".into()), t)
            .await
            .unwrap();
        assert_eq!(
            log.operations(),
            vec![
                Operation::Set,
                Operation::Get,
                Operation::SetMany,
                Operation::GetMany,
                Operation::Delete,
                Operation::DeleteMany,
                Operation::Invalidate,
                Operation::Clear,
                Operation::Health,
                Operation::Fill,
                Operation::FillMany,
                Operation::DeleteWith,
                Operation::InvalidateWith,
            ]
        );
        assert_eq!(log.keys(Operation::SetMany), vec![key("b"), key("c")]);
        assert_eq!(log.keys(Operation::GetMany), vec![key("b"), key("x")]);
        assert_eq!(
            log.calls()[6].selector,
            Some(Selector::Prefix("c".to_owned()))
        );
        assert!(log.touched(&key("x")));
        assert!(!log.touched(&key("zzz")));
        assert_eq!(log.total(), 13);
        assert_eq!(log.keys(Operation::DeleteWith), vec![key("f")]);
        assert_eq!(log.calls()[12].selector, Some(Selector::Tag("t".into())));
        // Delegation really happened: the inner backend saw the bulk calls natively.
        assert_eq!(inner.get(&key("c")).await.unwrap(), None, "cleared");
        assert_eq!(rec.kind(), "reference");
        assert_eq!(rec.capability(), inner.capability());
        assert_eq!(log.take().len(), 13);
        assert_eq!(log.total(), 0);
    }

    #[tokio::test]
    async fn failed_calls_are_recorded_too() {
        let inner = Arc::new(ReferenceBackend::new());
        let rec = RecordingBackend::new(inner.clone());
        let log = rec.recorder();
        let old = Entry::new(&b"v"[..], Timestamp(1), Duration::from_millis(1));
        rec.set(&key("old"), &old).await.unwrap();
        inner.set_failing(true);
        assert!(rec.get(&key("old")).await.is_err());
        assert_eq!(log.count(Operation::Get), 1);
        assert!(log.was_asked(Operation::Set));
        log.reset();
        assert!(!log.was_asked(Operation::Get));
    }
}
