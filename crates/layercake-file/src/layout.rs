//! Where things live in the directory: entry paths derived from a hash of the key, shard
//! directories, temp-file and lock-file names.
//!
//! ```text
//! <dir>/.layercake.lock            shared lock held by every open FileBackend
//! <dir>/.sweep.lock                exclusive lock taken (try_lock) by the sweep
//! <dir>/ab/<64 hex of blake3(key)>.lce   one envelope per entry
//! <dir>/ab/.tmp-<pid>-<counter>    a write in flight (or left by a crash)
//! ```
//!
//! A key never becomes a path: only the hex digest of its blake3 hash does, so `../`, NUL,
//! unicode and very long keys all map to a fixed-length name of `[0-9a-f]` under one of 256
//! shard directories.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::Key;

/// A blake3 digest of a key: the identity of an entry on disk and in the index.
pub(crate) type Hash = [u8; 32];

/// Extension of entry files.
pub(crate) const ENTRY_EXT: &str = "lce";
/// Prefix of temp files.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// The lock file every open backend holds shared.
pub(crate) const DIR_LOCK: &str = ".layercake.lock";
/// The lock file the sweep holds exclusively.
pub(crate) const SWEEP_LOCK: &str = ".sweep.lock";

/// The hash of a key.
pub(crate) fn key_hash(key: &str) -> Hash {
    *blake3::hash(key.as_bytes()).as_bytes()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn unhex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The shard directory name of a hash: two lowercase hex digits (256 shards).
pub(crate) fn shard_name(h: &Hash) -> String {
    hex(&h[..1])
}

/// Whether a directory name is a shard name.
pub(crate) fn is_shard_name(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    b.len() == 2 && b.iter().all(|&c| unhex_digit(c).is_some())
}

/// `<root>/<shard>/`.
pub(crate) fn shard_dir(root: &Path, h: &Hash) -> PathBuf {
    root.join(shard_name(h))
}

/// `<root>/<shard>/<hex>.lce`, built in one allocation (it is made on every read).
pub(crate) fn entry_path(root: &Path, h: &Hash) -> PathBuf {
    // "ab" then "ab…(64 hex).lce", on the stack.
    let mut name = [0u8; 64 + 1 + ENTRY_EXT.len()];
    for (i, b) in h.iter().enumerate() {
        name[2 * i] = HEX[(b >> 4) as usize];
        name[2 * i + 1] = HEX[(b & 15) as usize];
    }
    name[64] = b'.';
    name[65..].copy_from_slice(ENTRY_EXT.as_bytes());
    // Only ASCII hex digits, '.' and the extension: always UTF-8.
    let name = std::str::from_utf8(&name).unwrap_or_default();
    let mut p = PathBuf::with_capacity(root.as_os_str().len() + 2 + name.len() + 2);
    p.push(root);
    p.push(&name[..2]);
    p.push(name);
    p
}

/// The path of `key`'s entry under `root`.
pub(crate) fn path_of(root: &Path, key: &Key) -> PathBuf {
    entry_path(root, &key_hash(key.as_str()))
}

/// The hash named by an entry file name (`<64 hex>.lce`), if it is one.
pub(crate) fn parse_entry_name(name: &OsStr) -> Option<Hash> {
    let b = name.as_encoded_bytes();
    if b.len() != 64 + 1 + ENTRY_EXT.len() || &b[64..] != b".lce" {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, out) in h.iter_mut().enumerate() {
        *out = (unhex_digit(b[2 * i])? << 4) | unhex_digit(b[2 * i + 1])?;
    }
    Some(h)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file name unique in this host: `.tmp-<pid>-<counter>` (the counter is process-wide,
/// so several backends in one process never collide).
pub(crate) fn temp_name() -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{}-{n}", std::process::id())
}

/// The pid recorded in a temp file name, `None` when the name is not a temp file name.
/// `Some(None)` is a temp-looking name without a readable pid.
pub(crate) fn parse_temp_name(name: &OsStr) -> Option<Option<u32>> {
    let s = name.to_str()?;
    let rest = s.strip_prefix(TEMP_PREFIX)?;
    Some(rest.split('-').next().and_then(|p| p.parse().ok()))
}

/// Whether a process with this pid is alive, as far as this host can tell (`/proc/<pid>` on
/// Linux; elsewhere every pid counts as alive, so only age-based cleanup applies).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc/self");
    if !proc_root.exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_the_shard_dir_joined_with_the_hex_name() {
        for root in ["/base", "/base/", "relative/dir", ""] {
            let root = Path::new(root);
            for k in ["a", "ключ 🔑", &"x".repeat(300)] {
                let h = key_hash(k);
                let joined = shard_dir(root, &h).join(format!("{}.{ENTRY_EXT}", hex(&h)));
                assert_eq!(entry_path(root, &h), joined, "{root:?} {k}");
            }
        }
    }

    #[test]
    fn entry_names_round_trip_and_stay_inside() {
        let root = Path::new("/base");
        for k in [
            "../../etc/passwd",
            "/abs",
            "ключ 🔑",
            "a*b?[c]\\",
            &"x".repeat(1024),
        ] {
            let key = Key::new(k).unwrap();
            let p = path_of(root, &key);
            let rel = p.strip_prefix(root).unwrap();
            let parts: Vec<_> = rel.components().collect();
            assert_eq!(parts.len(), 2, "{p:?}");
            let name = p.file_name().unwrap();
            assert_eq!(name.len(), 68);
            assert_eq!(parse_entry_name(name), Some(key_hash(k)));
            assert!(is_shard_name(p.parent().unwrap().file_name().unwrap()));
        }
        assert_eq!(parse_entry_name(OsStr::new("zz.lce")), None);
        assert_eq!(
            parse_entry_name(OsStr::new(&format!("{}.lce", "G".repeat(64)))),
            None
        );
    }

    #[test]
    fn temp_names_are_unique_and_parse() {
        let a = temp_name();
        let b = temp_name();
        assert_ne!(a, b);
        assert_eq!(
            parse_temp_name(OsStr::new(&a)),
            Some(Some(std::process::id()))
        );
        assert_eq!(parse_temp_name(OsStr::new("x.lce")), None);
        assert!(pid_alive(std::process::id()));
    }
}
