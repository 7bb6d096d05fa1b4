//! [`FileBackend`]: the async [`Backend`] over a [`Store`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use layercake_core::envelope;
use layercake_core::{
    Backend, Capability, Entry, Error, FillOutcome, Key, Result, Selector, Timestamp, Tombstone,
    async_trait,
};
use tokio::sync::Notify;

use crate::config::FileConfig;
use crate::error::{BACKEND, blocking_failed};
use crate::layout;
use crate::report::{FileStats, SweepReport};
use crate::store::{Probe, Store, TempPolicy};

/// `get_many` splits its keys into chunks of at least this many, each read on the blocking
/// pool; smaller batches are read one by one like `get`.
const MANY_CHUNK_MIN: usize = 8;

/// The file tier: one atomic envelope file per entry under a directory, bounded by bytes with
/// least-recently-used eviction.
///
/// Contract (beyond [`Backend`]'s):
/// - a key never becomes a path: the file of a key is `<dir>/<2 hex>/<blake3(key) hex>.lce`;
/// - `set` is atomic (temp file in the same shard directory, optional fsync, rename, optional
///   directory fsync per [`Durability`](crate::Durability)): a crash at any point leaves the
///   old entry, the new entry or no entry; temp files left by a crash are removed at open;
/// - after each `set` the sum of entry file sizes this process knows of is at most
///   `max_bytes` (least recently used entries are evicted first);
/// - `get` always consults the file system, so an entry written by another process sharing the
///   directory is found even if this process's index does not know it;
/// - expired entries are misses, removed on read and by the periodic [`sweep`](Self::sweep);
///   garbled, truncated or foreign files are misses, removed and counted in
///   [`corrupt_reads`](Backend::corrupt_reads);
/// - fills are conditional ([`Capability::conditional_fill`]) by the tier's own rename rule:
///   under the key's stripe lock, just before the rename, the fill checks the tombstones
///   (kept in this process's index, judged by the clock) and the version in the header of
///   the file in place, and removes its temp file instead when refused. The guarantee covers
///   the writers of this process: another process sharing the directory neither sees these
///   tombstones nor takes these locks;
/// - dropping the backend stops its background sweep.
#[derive(Debug)]
pub struct FileBackend {
    store: Arc<Store>,
    inline_read_max: u64,
    rescan_on_invalidate: bool,
    parallelism: usize,
    opened: SweepReport,
    stop: Arc<Notify>,
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(blocking_failed)?
}

impl FileBackend {
    /// Open (creating if needed) the directory of `config`: take the shared directory lock,
    /// remove temp files left by crashed writers, rebuild the index from each file's header,
    /// key and tags (not its payload), and start the periodic sweep.
    ///
    /// Must be called within a tokio runtime; the sweep needs the runtime's timer (enabled by
    /// `#[tokio::main]`, `#[tokio::test]` and `Builder::enable_all`).
    pub async fn open(config: FileConfig) -> Result<FileBackend> {
        config.validate()?;
        let cfg = config.clone();
        let (store, opened) = blocking(move || Store::open(&cfg)).await?;
        let store = Arc::new(store);
        let stop = Arc::new(Notify::new());
        if let Some(interval) = config.sweep_interval {
            tokio::spawn(sweep_loop(Arc::downgrade(&store), interval, stop.clone()));
        }
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        Ok(FileBackend {
            store,
            inline_read_max: config.inline_read_max,
            rescan_on_invalidate: config.rescan_on_invalidate,
            parallelism,
            opened,
            stop,
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.store.root
    }

    /// The path of `key`'s entry file (for tools and tests; the file may not exist).
    pub fn path_of(&self, key: &Key) -> PathBuf {
        layout::path_of(&self.store.root, key)
    }

    /// What the scan at open found: temp files removed, garbled files removed, entries indexed.
    pub fn open_report(&self) -> SweepReport {
        self.opened
    }

    /// A snapshot of the index: entries, bytes, bound, corrupt reads.
    pub fn stats(&self) -> FileStats {
        let ix = self.store.index.read();
        FileStats {
            entries: ix.len(),
            bytes: ix.bytes(),
            max_bytes: self.store.max_bytes,
            corrupt_reads: self.store.corrupt_reads(),
        }
    }

    /// Run one sweep now: under the exclusive sweep lock (skipped, with
    /// [`SweepReport::skipped`], when another process holds it), remove expired and garbled
    /// files and temp files of dead writers, index files written by other processes, forget
    /// files they removed, and evict down to the bound.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let store = self.store.clone();
        blocking(move || store.sweep()).await
    }

    /// Stop the periodic sweep (also done on drop).
    pub fn stop_sweeper(&self) {
        self.stop.notify_one();
    }
}

/// What a `set` does once its entry is judged and encoded.
enum Write {
    /// The entry is already past `retain_until`: remove any older copy.
    Delete(layout::Hash),
    /// Write this envelope.
    File(EncodedEntry),
}

struct EncodedEntry {
    key: Key,
    bytes: Vec<u8>,
    tags: Arc<[String]>,
    retain: Timestamp,
}

impl FileBackend {
    /// Judge and encode one entry for writing (CPU only, on the calling task).
    fn prepare(&self, key: &Key, entry: &Entry) -> Result<Write> {
        if !entry.is_retained(self.store.clock.now()) {
            return Ok(Write::Delete(layout::key_hash(key.as_str())));
        }
        let bytes = envelope::encode_with_limits(key, entry, &self.store.limits)
            .map_err(|e| e.with_backend(BACKEND))?;
        if bytes.len() as u64 > self.store.max_bytes {
            return Err(Error::too_large(format!(
                "file tier: an entry file of {} bytes exceeds max_bytes ({})",
                bytes.len(),
                self.store.max_bytes
            ))
            .with_backend(BACKEND));
        }
        Ok(Write::File(EncodedEntry {
            key: key.clone(),
            bytes,
            tags: entry.tags.clone(),
            retain: entry.retain_until(),
        }))
    }
}

impl Drop for FileBackend {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

async fn sweep_loop(store: Weak<Store>, interval: Duration, stop: Arc<Notify>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; open has just scanned
    loop {
        tokio::select! {
            biased;
            _ = stop.notified() => return,
            _ = tick.tick() => {}
        }
        let Some(store) = store.upgrade() else { return };
        // A failed sweep is retried at the next tick; reads and writes report their own errors.
        let _ = tokio::task::spawn_blocking(move || store.sweep()).await;
    }
}

#[async_trait]
impl Backend for FileBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn capability(&self) -> Capability {
        let mut c = Capability::MINIMAL;
        c.native_bulk = true;
        c.prefix_invalidation = true;
        c.tag_invalidation = true;
        c.clear = true;
        c.list_keys = true;
        c.clock_driven_expiry = true;
        c.stores_bytes = true;
        c.shared = true;
        c.reach = layercake_core::Reach::HostLocal;
        c.durable = true;
        c.max_value_bytes = Some(usize::try_from(self.store.max_bytes).unwrap_or(usize::MAX));
        c.conditional_fill = true;
        c
    }

    /// Contract: see [`Backend::get`]; reads files up to `inline_read_max` in place, larger
    /// ones and removals on the blocking pool.
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let h = layout::key_hash(key.as_str());
        let mut probe = self.store.probe(key, &h, self.inline_read_max)?;
        if let Probe::Large(p) = probe {
            let store = self.store.clone();
            let k = key.clone();
            probe = blocking(move || store.finish_read(&k, &h, p)).await?;
        }
        match probe {
            Probe::Hit(e) => Ok(Some(e)),
            Probe::Miss | Probe::Large(_) => Ok(None),
            Probe::Bad { ino, corrupt } => {
                let store = self.store.clone();
                blocking(move || Ok(store.remove_bad(&h, ino, corrupt))).await?;
                Ok(None)
            }
        }
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        let store = self.store.clone();
        match self.prepare(key, entry)? {
            Write::Delete(h) => blocking(move || store.delete(&h)).await,
            Write::File(w) => {
                blocking(move || store.write(&w.key, &w.bytes, w.tags, w.retain)).await
            }
        }
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let store = self.store.clone();
        let h = layout::key_hash(key.as_str());
        blocking(move || store.delete(&h)).await
    }

    /// Reads in parallel: the keys are split into chunks read concurrently on the blocking
    /// pool (batches under 8 keys are read one by one, like `get`).
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        if keys.len() < MANY_CHUNK_MIN {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.get(k).await?);
            }
            return Ok(out);
        }
        let chunks = keys.len().div_ceil(MANY_CHUNK_MIN).min(self.parallelism);
        let per = keys.len().div_ceil(chunks);
        let handles: Vec<_> = keys
            .chunks(per)
            .map(|chunk| {
                let store = self.store.clone();
                let chunk = chunk.to_vec();
                tokio::task::spawn_blocking(move || {
                    chunk
                        .iter()
                        .map(|k| store.get_blocking(k))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for h in handles {
            out.extend(h.await.map_err(blocking_failed)??);
        }
        Ok(out)
    }

    /// Encodes every entry, then writes them in order in one blocking task.
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        let writes = items
            .iter()
            .map(|(k, e)| self.prepare(k, e))
            .collect::<Result<Vec<_>>>()?;
        let store = self.store.clone();
        blocking(move || {
            writes.into_iter().try_for_each(|w| match w {
                Write::Delete(h) => store.delete(&h),
                Write::File(w) => store.write(&w.key, &w.bytes, w.tags, w.retain),
            })
        })
        .await
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        let store = self.store.clone();
        let hashes: Vec<_> = keys.iter().map(|k| layout::key_hash(k.as_str())).collect();
        blocking(move || hashes.iter().try_for_each(|h| store.delete(h))).await
    }

    /// Through the index; with `rescan_on_invalidate` (the default) the directory is listed
    /// first so that entries other processes wrote are selected too.
    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        let store = self.store.clone();
        let rescan = self.rescan_on_invalidate;
        let selector = selector.clone();
        blocking(move || {
            if rescan {
                store.scan(TempPolicy::Keep)?;
            }
            let hashes = store.index.read().select(&selector);
            hashes.iter().try_for_each(|h| store.delete(h))
        })
        .await
    }

    /// Through the index (after a rescan when `rescan_on_invalidate` is on, so other
    /// processes' entries are listed too).
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        let store = self.store.clone();
        let rescan = self.rescan_on_invalidate;
        let prefix = prefix.to_owned();
        let now = self.store.clock.now();
        blocking(move || {
            if rescan {
                store.scan(TempPolicy::Keep)?;
            }
            let keys = store.index.read().keys_with_prefix(&prefix, now, limit);
            Ok(keys.iter().filter_map(|k| Key::new(&**k).ok()).collect())
        })
        .await
    }

    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        let Write::File(w) = self.prepare(key, entry)? else {
            return Ok(FillOutcome::Expired);
        };
        let store = self.store.clone();
        let version = entry.version;
        blocking(move || store.fill(&w.key, &w.bytes, w.tags, w.retain, version)).await
    }

    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        let store = self.store.clone();
        let key = key.clone();
        blocking(move || store.delete_with(&key, tombstone)).await
    }

    /// Records the tombstone (under every stripe lock), then removes as `invalidate`.
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        let store = self.store.clone();
        let sel = selector.clone();
        blocking(move || {
            store.record_selector(&sel, tombstone);
            Ok(())
        })
        .await?;
        self.invalidate(selector).await
    }

    /// Removes every entry file of the directory, whoever wrote it (and every tombstone).
    async fn clear(&self) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.clear()).await
    }

    async fn health(&self) -> Result<()> {
        match std::fs::metadata(&self.store.root) {
            Ok(md) if md.is_dir() => Ok(()),
            Ok(_) => Err(
                Error::unavailable("file tier: the cache path is not a directory")
                    .with_backend(BACKEND),
            ),
            Err(e) => Err(crate::error::io_error("checking the cache directory", e)),
        }
    }

    fn corrupt_reads(&self) -> u64 {
        self.store.corrupt_reads()
    }
}
