//! A read-only walk of a cache directory, for operator tools: entry files, temp files and
//! their sizes, without opening a backend (opening removes temp files of dead writers, which
//! is what a tool wants to report first).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use layercake_core::Result;

use crate::error;
use crate::layout;

/// What a directory walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DirUsage {
    /// Entry files (`<shard>/<hash>.lce`).
    pub entries: u64,
    /// Their summed size, bytes.
    pub entry_bytes: u64,
    /// Temp files (writes in flight, or left by a crashed writer).
    pub temp_files: u64,
    /// Their summed size, bytes.
    pub temp_bytes: u64,
    /// Age of the oldest temp file, by its modification time.
    pub oldest_temp_age: Option<Duration>,
    /// Other files in shard directories (neither entries nor temp files).
    pub foreign_files: u64,
}

/// Walk `dir` (the directory of a file tier) and count what it holds. Changes nothing; a
/// file that vanishes during the walk is skipped. A missing directory is a `Config` error.
pub fn inspect_dir(dir: &Path) -> Result<DirUsage> {
    let top = match fs::read_dir(dir) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(error::config(format!(
                "file tier: the directory {} does not exist",
                dir.display()
            )));
        }
        Err(e) => return Err(error::io_error(&format!("listing {}", dir.display()), e)),
    };
    let now = SystemTime::now();
    let mut u = DirUsage::default();
    for shard in top.flatten() {
        if !layout::is_shard_name(&shard.file_name()) || !shard.path().is_dir() {
            continue;
        }
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(md) = f.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            let name = f.file_name();
            if layout::parse_entry_name(&name).is_some() {
                u.entries += 1;
                u.entry_bytes += md.len();
            } else if layout::parse_temp_name(&name).is_some() {
                u.temp_files += 1;
                u.temp_bytes += md.len();
                let age = md
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                u.oldest_temp_age = Some(u.oldest_temp_age.map_or(age, |o| o.max(age)));
            } else {
                u.foreign_files += 1;
            }
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_entries_temp_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("ab");
        fs::create_dir(&shard).unwrap();
        fs::write(shard.join(format!("{}.lce", "ab".repeat(32))), [0u8; 100]).unwrap();
        fs::write(shard.join(".tmp-1-0"), [0u8; 7]).unwrap();
        fs::write(shard.join("notes.txt"), b"x").unwrap();
        fs::write(dir.path().join("top-level.txt"), b"ignored").unwrap();
        let u = inspect_dir(dir.path()).unwrap();
        assert_eq!((u.entries, u.entry_bytes), (1, 100));
        assert_eq!((u.temp_files, u.temp_bytes), (1, 7));
        assert_eq!(u.foreign_files, 1);
        assert!(u.oldest_temp_age.is_some());
        let e = inspect_dir(&dir.path().join("missing")).unwrap_err();
        assert!(e.message().contains("does not exist"), "{e}");
    }
}
