//! The hot set: a bounded frequency estimate of the keys read (from the read sample), the
//! hottest keys per namespace, and the file they are saved to.
//!
//! Bound: at most `hot_candidates` keys, in 16 shards. A shard that is full halves every count
//! and drops the keys that fall to zero before it takes a new key (aging, as TinyLFU does):
//! keys read often stay, one-off keys come and go, and old popularity fades.
//!
//! File format (UTF-8 text): a first line `layercake-hot-set 1`, then one key per line,
//! hottest first within each namespace.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use layercake_core::{Error, Key, Result, namespace_of};
use parking_lot::Mutex;

use super::ghost::key_hash;

const SHARDS: usize = 16;
/// The first line of a hot-set file.
pub(crate) const HEADER: &str = "layercake-hot-set 1";

/// Hashes the ghost hash of a key (already well mixed) as itself.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Per key hash: the key and its count.
type Counts = HashMap<u64, (Key, u32), std::hash::BuildHasherDefault<Identity>>;

/// The frequency estimate.
#[derive(Debug)]
pub(crate) struct HotSet {
    shards: Vec<Mutex<Counts>>,
    per_shard: usize,
}

impl HotSet {
    pub(crate) fn new(capacity: usize) -> HotSet {
        HotSet {
            shards: (0..SHARDS).map(|_| Mutex::new(Counts::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Count one sampled read of `key`.
    pub(crate) fn record(&self, key: &Key) {
        let h = key_hash(key);
        let shard = &self.shards[(h >> 60) as usize % SHARDS];
        let mut m = shard.lock();
        if let Some((k, n)) = m.get_mut(&h)
            && k == key
        {
            *n = n.saturating_add(1);
            return;
        }
        if m.len() >= self.per_shard {
            m.retain(|_, (_, n)| {
                *n /= 2;
                *n > 0
            });
        }
        if m.len() < self.per_shard {
            m.insert(h, (key.clone(), 1));
        }
    }

    /// The hottest `per_namespace` keys of each namespace, hottest first, namespaces in name
    /// order.
    pub(crate) fn hottest(&self, per_namespace: usize) -> Vec<Key> {
        let mut all: Vec<(Key, u32)> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .values()
                    .map(|(k, n)| (k.clone(), *n))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| {
            namespace_of(a.0.as_str())
                .cmp(namespace_of(b.0.as_str()))
                .then(b.1.cmp(&a.1))
                .then(a.0.as_str().cmp(b.0.as_str()))
        });
        let mut out = Vec::new();
        let mut current: Option<String> = None;
        let mut taken = 0;
        for (k, _) in all {
            let ns = namespace_of(k.as_str());
            if current.as_deref() != Some(ns) {
                current = Some(ns.to_owned());
                taken = 0;
            }
            if taken < per_namespace {
                out.push(k);
                taken += 1;
            }
        }
        out
    }
}

/// Write `keys` to `path` atomically (a temporary file next to it, then a rename).
pub(crate) fn write_file(path: &Path, keys: &[Key]) -> Result<()> {
    let mut text = String::with_capacity(keys.len() * 32 + HEADER.len() + 1);
    text.push_str(HEADER);
    text.push('\n');
    for k in keys {
        text.push_str(k.as_str());
        text.push('\n');
    }
    write_atomically(path, text.as_bytes(), "hot set file")
}

/// Write `bytes` to `path` atomically: a temporary file next to it, synced, then renamed over
/// it. Errors are `Config` errors naming `what` and the file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    let io =
        |e: std::io::Error| Error::config(format!("{what} {}: {e}", path.display())).with_source(e);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Read the keys of a hot-set file (lines that are not valid keys are skipped).
pub(crate) fn read_file(path: &Path) -> Result<Vec<Key>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!("hot set file {}: {e}", path.display())).with_source(e)
    })?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(Error::config(format!(
            "{} is not a hot set file (no `{HEADER}` line)",
            path.display()
        )));
    }
    Ok(lines.filter_map(|l| Key::new(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_frequent_keys_per_namespace() {
        let h = HotSet::new(64);
        let k = |s: &str| Key::new(s).unwrap();
        for i in 0..1000u32 {
            h.record(&k("a:v1:hot"));
            h.record(&k(&format!("a:v1:cold{i}")));
            if i % 2 == 0 {
                h.record(&k("b:v1:warm"));
            }
        }
        let top = h.hottest(1);
        assert_eq!(top, vec![k("a:v1:hot"), k("b:v1:warm")]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hot");
        write_file(&p, &top).unwrap();
        assert_eq!(read_file(&p).unwrap(), top);
    }
}
