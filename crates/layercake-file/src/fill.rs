//! Conditional fills and tombstones of the file tier: its own rename rule.
//!
//! - A fill writes its temp file like a `set`, then, under the key's stripe lock and just
//!   before the rename, checks the tombstones (in the index) and the version in the header of
//!   the file in place; when either refuses, the temp file is removed instead of renamed.
//! - `delete_with` records its tombstone and removes the file under the same stripe lock;
//!   `invalidate_with` records its tombstone while holding every stripe lock, then removes as
//!   `invalidate` does, so a fill either renamed (and indexed) its file before the record — and
//!   the removal finds it — or sees the tombstone.
//! - Scope: tombstones are this process's; the stripe locks order the writes of this process.
//!   Another process sharing the directory neither sees them nor takes the locks.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use layercake_core::envelope::{self, HeaderInfo};
use layercake_core::{FillOutcome, Key, Result, Selector, Tombstone};

use crate::error::io_error;
use crate::layout;
use crate::store::Store;

/// The version and `retain_until` of the valid entry of `key` in the file at `path`, if any
/// (a missing, foreign or garbled file has none).
fn stored_header(path: &Path, key: &Key) -> io::Result<Option<HeaderInfo>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut head = Vec::with_capacity(HeaderInfo::LEN + key.len());
    (&mut f)
        .take((HeaderInfo::LEN + key.len()) as u64)
        .read_to_end(&mut head)?;
    let Ok(h) = envelope::peek_header(&head) else {
        return Ok(None);
    };
    let same_key = h.key_len == key.len() && head.get(HeaderInfo::LEN..) == Some(key.as_bytes());
    Ok(same_key.then_some(h))
}

impl Store {
    /// Write the envelope `bytes` of an entry of `key` (version `version`, `tags`, retained
    /// until `retain`) unless a tombstone or the entry in place refuses it. Blocking.
    pub(crate) fn fill(
        &self,
        key: &Key,
        bytes: &[u8],
        tags: std::sync::Arc<[String]>,
        retain: layercake_core::Timestamp,
        version: u64,
    ) -> Result<FillOutcome> {
        let mut verdict = FillOutcome::Stored;
        let mut failure = None;
        let check_tags = tags.clone();
        self.write_checked(key, bytes, tags, retain, |path| {
            let now = self.clock.now();
            if self
                .index
                .read()
                .tombstones
                .refuses(key, &check_tags, version, now)
            {
                verdict = FillOutcome::Tombstoned;
                return false;
            }
            match stored_header(path, key) {
                Ok(Some(h)) if h.retain_until() > now && h.version >= version => {
                    verdict = FillOutcome::KeptNewer;
                    false
                }
                Ok(_) => true,
                Err(e) => {
                    failure = Some(io_error("reading the header of an entry file", e));
                    false
                }
            }
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(verdict),
        }
    }

    /// Record a tombstone of `key` and remove its file and record. Blocking.
    pub(crate) fn delete_with(&self, key: &Key, t: Tombstone) -> Result<()> {
        let h = layout::key_hash(key.as_str());
        let path = layout::entry_path(&self.root, &h);
        let _g = self.stripe(&h).lock();
        self.index
            .write()
            .tombstones
            .record_key(key, t, self.clock.now());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing an entry file", e)),
        }
        self.index.write().remove(&h);
        Ok(())
    }

    /// Record a tombstone of `selector` while no fill of this process is between its check
    /// and its rename. Blocking.
    pub(crate) fn record_selector(&self, selector: &Selector, t: Tombstone) {
        let _all = self.lock_all_stripes();
        self.index
            .write()
            .tombstones
            .record_selector(selector, t, self.clock.now());
    }
}
