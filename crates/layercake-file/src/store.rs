//! The blocking half of the backend: every file-system operation, run either in place (small
//! reads) or on tokio's blocking pool (everything else), never holding the index lock across
//! I/O.
//!
//! Locking: a per-hash stripe lock orders, within this process, the rename of a new file with
//! the removal of an old one (lazy expiry, corruption, eviction, delete), and keeps the index
//! record in step with the file. Lock order is always stripe, then index.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use layercake_core::envelope::{self, HeaderInfo};
use layercake_core::{Entry, EnvelopeLimits, Key, Result, SharedClock, Timestamp};
use parking_lot::{Mutex, RwLock};

use crate::config::{Durability, FileConfig};
use crate::error::{dir_error, io_error};
use crate::index::{Index, NewMeta};
use crate::layout::{self, Hash};
use crate::report::SweepReport;

const STRIPES: usize = 64;
/// First read of a file while rebuilding the index: one page holds the header, the key and the
/// tags of almost every entry; longer keys or tag lists are read with a second, bounded read.
const PEEK_CHUNK: u64 = 4096;
/// A temp file of a process that no longer exists is removed once it is this old (the delay
/// protects writers in another pid namespace sharing the directory).
const TEMP_GRACE: Duration = Duration::from_secs(10);
/// A temp file this old is removed whoever wrote it: no write takes an hour.
const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Which temp files a scan removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TempPolicy {
    /// Every temp file (the directory is open by no other backend).
    All,
    /// Temp files of dead processes (after a grace period) and very old ones.
    Stale,
    /// None.
    Keep,
}

/// What a read found.
#[derive(Debug)]
pub(crate) enum Probe {
    /// No file, or nothing returnable.
    Miss,
    /// A valid, retained entry.
    Hit(Entry),
    /// A file too large to read in place: finish with [`Store::finish_read`] off the runtime.
    Large(Pending),
    /// A file to remove: garbled (`corrupt`) or expired.
    Bad { ino: u64, corrupt: bool },
}

/// An opened entry file waiting to be read.
#[derive(Debug)]
pub(crate) struct Pending {
    file: File,
    len: u64,
    ino: u64,
    seq_before: u64,
}

/// The shared state of one open backend.
pub(crate) struct Store {
    pub(crate) root: PathBuf,
    pub(crate) max_bytes: u64,
    durability: Durability,
    pub(crate) clock: SharedClock,
    pub(crate) limits: EnvelopeLimits,
    pub(crate) index: RwLock<Index>,
    stripes: Box<[Mutex<()>]>,
    corrupt: AtomicU64,
    dir_lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("max_bytes", &self.max_bytes)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

#[cfg(unix)]
fn ino_of(md: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(md)
}
#[cfg(not(unix))]
fn ino_of(_md: &fs::Metadata) -> u64 {
    0
}

fn nanos_of(t: io::Result<SystemTime>) -> u64 {
    t.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file's header, key and tags, read without its payload.
struct Peeked {
    meta: NewMeta,
    mtime_nanos: u64,
}

enum PeekError {
    /// The file disappeared.
    Gone,
    /// Not a valid envelope for the key its name is the hash of; carries its inode.
    Garbled(u64),
    Io(io::Error),
}

/// Read bytes from `f` until `buf` holds `need` bytes; false when the file is shorter.
fn fill(f: &mut File, buf: &mut Vec<u8>, need: usize, len: u64) -> io::Result<bool> {
    if buf.len() >= need {
        return Ok(true);
    }
    if need as u64 > len {
        return Ok(false);
    }
    let want = (need - buf.len()) as u64;
    f.take(want).read_to_end(buf)?;
    Ok(buf.len() >= need)
}

/// Read the header, key and tags of the entry file at `path` (named by hash `h`) and check
/// them against the file's length — never reading the payload beyond the first page.
fn peek_file(path: &Path, h: &Hash, limits: &EnvelopeLimits) -> Result<Peeked, PeekError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(PeekError::Gone),
        Err(e) => return Err(PeekError::Io(e)),
    };
    let md = f.metadata().map_err(PeekError::Io)?;
    let (len, ino) = (md.len(), ino_of(&md));
    let bad = PeekError::Garbled(ino);
    let mut buf = Vec::with_capacity(PEEK_CHUNK.min(len) as usize);
    (&mut f)
        .take(PEEK_CHUNK.min(len))
        .read_to_end(&mut buf)
        .map_err(PeekError::Io)?;
    let Ok(hi) = envelope::peek_header(&buf) else {
        return Err(bad);
    };
    if hi.key_len == 0
        || hi.key_len > limits.max_key_len
        || hi.tag_count > limits.max_tags
        || hi.payload_len > limits.max_payload_len
    {
        return Err(bad);
    }
    let mut pos = HeaderInfo::LEN + hi.key_len;
    if !fill(&mut f, &mut buf, pos, len).map_err(PeekError::Io)? {
        return Err(bad);
    }
    let Ok(key) = std::str::from_utf8(&buf[HeaderInfo::LEN..pos]) else {
        return Err(bad);
    };
    if layout::key_hash(key) != *h {
        // A foreign or misplaced file: its key does not hash to its name.
        return Err(bad);
    }
    let key: Arc<str> = Arc::from(key);
    let mut tags = Vec::with_capacity(hi.tag_count);
    for _ in 0..hi.tag_count {
        if !fill(&mut f, &mut buf, pos + 2, len).map_err(PeekError::Io)? {
            return Err(bad);
        }
        let tl = u16::from_le_bytes([buf[pos], buf[pos + 1]]) as usize;
        if tl > limits.max_tag_len
            || !fill(&mut f, &mut buf, pos + 2 + tl, len).map_err(PeekError::Io)?
        {
            return Err(bad);
        }
        let Ok(t) = std::str::from_utf8(&buf[pos + 2..pos + 2 + tl]) else {
            return Err(bad);
        };
        tags.push(t.to_owned());
        pos += 2 + tl;
    }
    if (pos + hi.payload_len + 8) as u64 != len {
        // Truncated (or trailing bytes): the checksum could not match.
        return Err(bad);
    }
    Ok(Peeked {
        meta: NewMeta {
            key,
            tags: tags.into(),
            size: len,
            retain_until: hi.retain_until(),
            ino,
        },
        mtime_nanos: nanos_of(md.modified()),
    })
}

impl Store {
    /// Open (creating) the directory, take the directory lock, sweep temp files and rebuild the
    /// index. Blocking.
    pub(crate) fn open(cfg: &FileConfig) -> Result<(Store, SweepReport)> {
        fs::create_dir_all(&cfg.dir).map_err(|e| dir_error(&cfg.dir, e))?;
        let lock_path = cfg.dir.join(layout::DIR_LOCK);
        let dir_lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error(&format!("opening {}", lock_path.display()), e))?;
        // Alone: no other backend (in any process) holds the directory, so every temp file is
        // left over from a crash.
        let alone = match dir_lock.try_lock() {
            Ok(()) => true,
            Err(fs::TryLockError::WouldBlock) => false,
            Err(fs::TryLockError::Error(e)) => {
                return Err(io_error("locking the directory", e));
            }
        };
        let store = Store {
            root: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            durability: cfg.durability,
            clock: cfg.clock.clone(),
            limits: cfg.limits,
            index: RwLock::new(Index::default()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            corrupt: AtomicU64::new(0),
            dir_lock,
        };
        let report = store.scan(if alone {
            TempPolicy::All
        } else {
            TempPolicy::Stale
        });
        if alone {
            store
                .dir_lock
                .unlock()
                .map_err(|e| io_error("unlocking the directory", e))?;
        }
        store
            .dir_lock
            .lock_shared()
            .map_err(|e| io_error("locking the directory (shared)", e))?;
        Ok((store, report?))
    }

    pub(crate) fn stripe(&self, h: &Hash) -> &Mutex<()> {
        &self.stripes[h[0] as usize % STRIPES]
    }

    /// Every stripe lock, in order (always taken in this order, so never deadlocks).
    pub(crate) fn lock_all_stripes(&self) -> Vec<parking_lot::MutexGuard<'_, ()>> {
        self.stripes.iter().map(|s| s.lock()).collect()
    }

    /// Number of stored copies that failed to decode and were removed.
    pub(crate) fn corrupt_reads(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// The largest file the limits allow.
    fn max_file_len(&self) -> u64 {
        let l = &self.limits;
        (HeaderInfo::LEN + l.max_key_len + l.max_tags * (2 + l.max_tag_len) + l.max_payload_len + 8)
            as u64
    }

    // ----- reads -----

    /// Open `key`'s file and, when it is at most `inline_max` bytes, read and judge it.
    pub(crate) fn probe(&self, key: &Key, h: &Hash, inline_max: u64) -> Result<Probe> {
        let seq_before = self.index.read().get(h).map_or(0, |m| m.seq);
        let path = layout::entry_path(&self.root, h);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if seq_before != 0 {
                    // Deleted by another process: forget it unless we rewrote it meanwhile.
                    let mut ix = self.index.write();
                    if ix.get(h).is_some_and(|m| m.seq == seq_before) {
                        ix.remove(h);
                    }
                }
                return Ok(Probe::Miss);
            }
            Err(e) => return Err(io_error("opening an entry file", e)),
        };
        let md = file
            .metadata()
            .map_err(|e| io_error("reading an entry file's metadata", e))?;
        let p = Pending {
            file,
            len: md.len(),
            ino: ino_of(&md),
            seq_before,
        };
        if p.len > inline_max {
            return Ok(Probe::Large(p));
        }
        self.finish_read(key, h, p)
    }

    /// Read an opened file and judge it: a valid, retained entry for `key`, or a file to
    /// remove.
    pub(crate) fn finish_read(&self, key: &Key, h: &Hash, p: Pending) -> Result<Probe> {
        if p.len > self.max_file_len() {
            return Ok(Probe::Bad {
                ino: p.ino,
                corrupt: true,
            });
        }
        // Exactly the length the open file had: one `read` for a whole file (reading to the
        // end would take a second one to see the end). The file under this handle does not
        // change (entries are replaced by renaming a new file over them); one shorter than
        // its length by now was truncated in place: garbled. What was read is judged by the
        // envelope, whose lengths and checksum cover every byte.
        let mut buf = vec![0u8; p.len as usize];
        let mut file = p.file;
        match file.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Probe::Bad {
                    ino: p.ino,
                    corrupt: true,
                });
            }
            Err(e) => return Err(io_error("reading an entry file", e)),
        }
        drop(file);
        let size = p.len;
        let entry = match envelope::decode_owned(key, buf, &self.limits) {
            Ok(e) => e,
            Err(_) => {
                return Ok(Probe::Bad {
                    ino: p.ino,
                    corrupt: true,
                });
            }
        };
        if !entry.is_retained(self.clock.now()) {
            return Ok(Probe::Bad {
                ino: p.ino,
                corrupt: false,
            });
        }
        // A hit on a file the index knows is only marked used, under the shared lock.
        let known = {
            let ix = self.index.read();
            let known = ix.get(h).is_some_and(|m| m.ino == p.ino && p.ino != 0);
            if known {
                ix.touch(h);
            }
            known
        };
        if !known {
            self.index.write().observe(
                *h,
                NewMeta {
                    key: Arc::from(key.as_str()),
                    tags: entry.tags.clone(),
                    size,
                    retain_until: entry.retain_until(),
                    ino: p.ino,
                },
                p.seq_before,
            );
        }
        Ok(Probe::Hit(entry))
    }

    /// A whole read, blocking: probe, finish, remove a bad file.
    pub(crate) fn get_blocking(&self, key: &Key) -> Result<Option<Entry>> {
        let h = layout::key_hash(key.as_str());
        let mut probe = self.probe(key, &h, u64::MAX)?;
        if let Probe::Large(p) = probe {
            probe = self.finish_read(key, &h, p)?;
        }
        Ok(match probe {
            Probe::Hit(e) => Some(e),
            Probe::Bad { ino, corrupt } => {
                self.remove_bad(&h, ino, corrupt);
                None
            }
            Probe::Miss | Probe::Large(_) => None,
        })
    }

    /// Remove the file of `h` if it is still inode `ino` (a newer file written meanwhile is
    /// kept), and its index record; count it when `corrupt`. Returns whether it was removed.
    pub(crate) fn remove_bad(&self, h: &Hash, ino: u64, corrupt: bool) -> bool {
        let path = layout::entry_path(&self.root, h);
        let _g = self.stripe(h).lock();
        let same = match fs::symlink_metadata(&path) {
            Ok(md) => ino == 0 || ino_of(&md) == ino,
            Err(_) => false,
        };
        let removed = same && fs::remove_file(&path).is_ok();
        self.index.write().remove_if_ino(h, ino);
        if removed && corrupt {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    // ----- writes -----

    fn create_temp(&self, dir: &Path, tmp: &Path) -> io::Result<File> {
        let open = || OpenOptions::new().write(true).create_new(true).open(tmp);
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                if self.durability == Durability::Full {
                    sync_dir(&self.root)?;
                }
                open()
            }
            r => r,
        }
    }

    fn write_temp(&self, dir: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<u64> {
        let mut f = self.create_temp(dir, tmp)?;
        f.write_all(bytes)?;
        if self.durability != Durability::None {
            f.sync_data()?;
        }
        Ok(ino_of(&f.metadata()?))
    }

    /// Write `bytes` (the envelope of `key`'s entry) atomically: temp file, optional fsync,
    /// rename, optional directory fsync; then evict down to the bound.
    pub(crate) fn write(
        &self,
        key: &Key,
        bytes: &[u8],
        tags: Arc<[String]>,
        retain_until: Timestamp,
    ) -> Result<()> {
        self.write_checked(key, bytes, tags, retain_until, |_| true)
            .map(|_| ())
    }

    /// [`write`](Store::write), with `check` run under the key's stripe lock just before the
    /// rename (given the entry file's path): when it returns false the temp file is removed
    /// and nothing changes. Returns whether the file was renamed into place.
    pub(crate) fn write_checked(
        &self,
        key: &Key,
        bytes: &[u8],
        tags: Arc<[String]>,
        retain_until: Timestamp,
        check: impl FnOnce(&Path) -> bool,
    ) -> Result<bool> {
        let h = layout::key_hash(key.as_str());
        let dir = layout::shard_dir(&self.root, &h);
        let tmp = dir.join(layout::temp_name());
        let ino = match self.write_temp(&dir, &tmp, bytes) {
            Ok(ino) => ino,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_error(
                    &format!("writing a {}-byte entry file", bytes.len()),
                    e,
                ));
            }
        };
        let path = layout::entry_path(&self.root, &h);
        {
            let _g = self.stripe(&h).lock();
            if !check(&path) {
                let _ = fs::remove_file(&tmp);
                return Ok(false);
            }
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(io_error("renaming a temp file into place", e));
            }
            self.index.write().insert(
                h,
                NewMeta {
                    key: Arc::from(key.as_str()),
                    tags,
                    size: bytes.len() as u64,
                    retain_until,
                    ino,
                },
                None,
            );
        }
        if self.durability == Durability::Full {
            sync_dir(&dir).map_err(|e| io_error("syncing the shard directory", e))?;
        }
        self.evict();
        Ok(true)
    }

    /// Remove `key`'s file and record, whatever version it is.
    pub(crate) fn delete(&self, h: &Hash) -> Result<()> {
        let path = layout::entry_path(&self.root, h);
        let _g = self.stripe(h).lock();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing an entry file", e)),
        }
        self.index.write().remove(h);
        Ok(())
    }

    /// Evict least recently used entries until the indexed bytes are within the bound.
    /// Returns how many files were removed.
    pub(crate) fn evict(&self) -> usize {
        let mut evicted = 0;
        loop {
            let victims = self.index.write().victims(self.max_bytes);
            if victims.is_empty() {
                return evicted;
            }
            let mut progressed = false;
            for (h, ino) in victims {
                let path = layout::entry_path(&self.root, &h);
                let _g = self.stripe(&h).lock();
                // Skip a victim this process rewrote since it was chosen.
                if self.index.read().get(&h).is_none_or(|m| m.ino != ino) {
                    continue;
                }
                if fs::remove_file(&path).is_ok() {
                    evicted += 1;
                }
                self.index.write().remove_if_ino(&h, ino);
                progressed = true;
            }
            if !progressed {
                return evicted;
            }
        }
    }

    // ----- directory walks -----

    fn temp_is_stale(&self, path: &Path, pid: Option<u32>, policy: TempPolicy) -> bool {
        match policy {
            TempPolicy::All => true,
            TempPolicy::Keep => false,
            TempPolicy::Stale => {
                let age = fs::symlink_metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or(Duration::ZERO);
                let dead = pid.is_none_or(|p| !layout::pid_alive(p));
                age >= TEMP_MAX_AGE || (dead && age >= TEMP_GRACE)
            }
        }
    }

    fn shard_dirs(&self) -> Result<Vec<PathBuf>> {
        let rd = fs::read_dir(&self.root).map_err(|e| io_error("listing the directory", e))?;
        let mut out = Vec::new();
        for de in rd {
            let de = de.map_err(|e| io_error("listing the directory", e))?;
            if layout::is_shard_name(&de.file_name()) && de.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(de.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Walk every shard: remove temp files per `temps`, expired and garbled files; index files
    /// this process does not know (or knows as another inode) by reading only their header,
    /// key and tags; forget records of vanished files; evict down to the bound. Linear in the
    /// number of files.
    pub(crate) fn scan(&self, temps: TempPolicy) -> Result<SweepReport> {
        let start_seq = self.index.read().seq();
        let now = self.clock.now();
        let mut seen = HashSet::new();
        let mut rep = SweepReport::default();
        for shard in self.shard_dirs()? {
            let rd = match fs::read_dir(&shard) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("listing a shard directory", e)),
            };
            for de in rd {
                let de = de.map_err(|e| io_error("listing a shard directory", e))?;
                let name = de.file_name();
                if let Some(pid) = layout::parse_temp_name(&name) {
                    let path = de.path();
                    if self.temp_is_stale(&path, pid, temps) && fs::remove_file(&path).is_ok() {
                        rep.temp_files_removed += 1;
                    }
                    continue;
                }
                let Some(h) = layout::parse_entry_name(&name) else {
                    continue;
                };
                rep.files += 1;
                seen.insert(h);
                #[cfg(unix)]
                let ino = std::os::unix::fs::DirEntryExt::ino(&de);
                #[cfg(not(unix))]
                let ino = 0;
                let known = {
                    let ix = self.index.read();
                    ix.get(&h)
                        .filter(|m| m.ino == ino && ino != 0)
                        .map(|m| m.retain_until)
                };
                if let Some(retain_until) = known {
                    if now >= retain_until && self.remove_bad(&h, ino, false) {
                        rep.expired_removed += 1;
                    }
                    continue;
                }
                match peek_file(&de.path(), &h, &self.limits) {
                    Ok(p) => {
                        if now >= p.meta.retain_until {
                            if self.remove_bad(&h, p.meta.ino, false) {
                                rep.expired_removed += 1;
                            }
                            continue;
                        }
                        let mut ix = self.index.write();
                        // Never replace a record this process wrote during the scan.
                        if ix.get(&h).is_none_or(|m| m.seq <= start_seq) {
                            ix.insert(h, p.meta, Some(p.mtime_nanos));
                            rep.indexed += 1;
                        }
                    }
                    Err(PeekError::Gone) => {}
                    Err(PeekError::Garbled(ino)) => {
                        if self.remove_bad(&h, ino, true) {
                            rep.corrupt_removed += 1;
                        }
                    }
                    Err(PeekError::Io(e)) => return Err(io_error("reading an entry header", e)),
                }
            }
        }
        rep.vanished = self.index.write().retain_seen(&seen, start_seq);
        rep.evicted = self.evict();
        let ix = self.index.read();
        rep.entries = ix.len();
        rep.bytes = ix.bytes();
        Ok(rep)
    }

    /// The periodic sweep: a [`scan`](Store::scan) under the exclusive sweep lock, skipped when
    /// another process holds it.
    pub(crate) fn sweep(&self) -> Result<SweepReport> {
        let path = self.root.join(layout::SWEEP_LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error("opening the sweep lock", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Ok(SweepReport {
                    skipped: true,
                    ..SweepReport::default()
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error("locking the sweep lock", e)),
        }
        let rep = self.scan(TempPolicy::Stale);
        drop(lock);
        rep
    }

    /// Remove every entry file of the directory (temp files of writes in flight are left to
    /// finish) and every index record.
    pub(crate) fn clear(&self) -> Result<()> {
        let start_seq = self.index.read().seq();
        for shard in self.shard_dirs()? {
            let rd = match fs::read_dir(&shard) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("listing a shard directory", e)),
            };
            for de in rd {
                let de = de.map_err(|e| io_error("listing a shard directory", e))?;
                if let Some(h) = layout::parse_entry_name(&de.file_name()) {
                    self.delete(&h)?;
                }
            }
        }
        let mut ix = self.index.write();
        ix.retain_seen(&HashSet::new(), start_seq);
        ix.tombstones.clear();
        Ok(())
    }
}
