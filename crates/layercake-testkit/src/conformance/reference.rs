//! [`ReferenceBackend`]: the simplest backend that meets the whole [`Backend`] contract, storing
//! envelope bytes in a map behind one mutex.
//!
//! It exists to test the test kit: the conformance suite must pass on it, and must fail the
//! right case for each deliberate [`Flaw`] switched on. It also serves doc examples and composer
//! tests that need a byte-storing tier without a server. It is not fast (one global lock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use layercake_core::{
    Backend, Bytes, Capability, Entry, Error, Key, Result, Selector, SharedClock, Timestamp,
    envelope, system_clock,
};
use parking_lot::Mutex;

use super::RawStore;

/// A deliberate contract violation, switched on with [`ReferenceBackend::with_flaw`] to prove
/// that the conformance suite notices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flaw {
    /// `get` does not check `retain_until`: expired entries are returned.
    ReturnsExpired,
    /// `invalidate(Prefix)` treats `*` and `?` as glob wildcards.
    GlobPrefix,
    /// Corrupt bytes read as a miss but are neither removed nor counted.
    KeepsCorrupt,
    /// `set` of an already-expired entry is ignored, leaving the older copy in place.
    ExpiredSetKeepsOld,
    /// The per-key version is not stored (always read back as 0).
    DropsVersion,
    /// `invalidate(Tag)` removes entries whose tag merely starts with the requested tag.
    TagPrefixMatch,
}

/// A byte-storing, clock-driven backend with every optional capability; see the
/// [module docs](self).
///
/// Contract: the whole [`Backend`] contract, unless a [`Flaw`] is switched on; while
/// [`set_failing`](ReferenceBackend::set_failing) is on, every operation returns an
/// `Unavailable` error.
#[derive(Debug)]
pub struct ReferenceBackend {
    map: Mutex<HashMap<Key, Bytes>>,
    clock: SharedClock,
    corrupt: AtomicU64,
    failing: AtomicBool,
    flaws: Mutex<Vec<Flaw>>,
}

impl Default for ReferenceBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl ReferenceBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// An empty backend judging expiry with `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        ReferenceBackend {
            map: Mutex::new(HashMap::new()),
            clock,
            corrupt: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            flaws: Mutex::new(Vec::new()),
        }
    }

    /// Switch a deliberate contract violation on.
    pub fn with_flaw(self, flaw: Flaw) -> Self {
        self.flaws.lock().push(flaw);
        self
    }

    /// Make every operation fail with `Unavailable` (or serve again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The backend's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Number of stored copies (valid or not, expired or not).
    pub fn stored(&self) -> usize {
        self.map.lock().len()
    }

    fn has(&self, flaw: Flaw) -> bool {
        self.flaws.lock().contains(&flaw)
    }

    fn check(&self) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(Error::unavailable("reference backend set to fail").with_backend("reference"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Backend for ReferenceBackend {
    fn kind(&self) -> &'static str {
        "reference"
    }

    fn capability(&self) -> Capability {
        let mut c = Capability::MINIMAL;
        c.prefix_invalidation = true;
        c.tag_invalidation = true;
        c.clear = true;
        c.list_keys = true;
        c.clock_driven_expiry = true;
        c.stores_bytes = true;
        c
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.check()?;
        let Some(bytes) = self.map.lock().get(key).cloned() else {
            return Ok(None);
        };
        match envelope::decode(key, bytes) {
            Ok(e) if e.is_retained(self.now()) || self.has(Flaw::ReturnsExpired) => Ok(Some(e)),
            Ok(_) => {
                self.map.lock().remove(key);
                Ok(None)
            }
            Err(_) => {
                if !self.has(Flaw::KeepsCorrupt) {
                    self.map.lock().remove(key);
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None)
            }
        }
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.check()?;
        if !entry.is_retained(self.now()) {
            if !self.has(Flaw::ExpiredSetKeepsOld) {
                self.map.lock().remove(key);
            }
            return Ok(());
        }
        let stored = if self.has(Flaw::DropsVersion) {
            entry.clone().with_version(0)
        } else {
            entry.clone()
        };
        let bytes = envelope::encode(key, &stored)?;
        self.map.lock().insert(key.clone(), Bytes::from(bytes));
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.check()?;
        self.map.lock().remove(key);
        Ok(())
    }

    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        self.check()?;
        let glob = self.has(Flaw::GlobPrefix);
        let tag_prefix = self.has(Flaw::TagPrefixMatch);
        let limits = envelope::EnvelopeLimits::default();
        self.map.lock().retain(|k, bytes| match selector {
            Selector::Prefix(p) if glob => !glob_prefix(p.as_bytes(), k.as_bytes()),
            Selector::Tag(t) if tag_prefix => match envelope::decode_any(bytes.clone(), &limits) {
                Ok((_, e)) => !e.tags.iter().any(|x| x.starts_with(t.as_str())),
                Err(_) => true,
            },
            Selector::Prefix(_) => !selector.matches(k.as_str(), &[]),
            Selector::Tag(_) => match envelope::decode_any(bytes.clone(), &limits) {
                Ok((_, e)) => !selector.matches(k.as_str(), &e.tags),
                Err(_) => true,
            },
            _ => true,
        });
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.check()?;
        self.map.lock().clear();
        Ok(())
    }

    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.check()?;
        let now = self.now();
        Ok(self
            .map
            .lock()
            .iter()
            .filter(|(k, bytes)| {
                k.starts_with(prefix)
                    && envelope::peek_header(bytes).is_ok_and(|h| h.retain_until() > now)
            })
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect())
    }

    async fn health(&self) -> Result<()> {
        self.check()
    }

    fn corrupt_reads(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl RawStore for ReferenceBackend {
    async fn put_raw(&self, key: &Key, bytes: Vec<u8>) -> Result<()> {
        self.map.lock().insert(key.clone(), Bytes::from(bytes));
        Ok(())
    }

    async fn raw_exists(&self, key: &Key) -> Result<bool> {
        Ok(self.map.lock().contains_key(key))
    }
}

/// Whether `text` starts with something matching the glob `pattern` (`*` any run, `?` any
/// byte): the bug [`Flaw::GlobPrefix`] models.
fn glob_prefix(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => true,
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_prefix(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_prefix(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_prefix(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_prefix_models_the_bug() {
        assert!(glob_prefix(b"a*b", b"axxb/1"));
        assert!(glob_prefix(b"a?b", b"axb"));
        assert!(!glob_prefix(b"a?b", b"ab"));
        assert!(glob_prefix(b"", b"anything"));
    }
}
