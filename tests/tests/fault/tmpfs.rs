//! A small tmpfs of the test's own: mounted on a temporary directory, filled to its last page
//! on demand (writes then fail with `ENOSPC`), unmounted when dropped. Mounting needs root (or
//! `CAP_SYS_ADMIN`) and the `mount`/`umount` programs.

use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long `mount` may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A mounted tmpfs; `umount` on drop (lazily if busy), then the directory is removed.
pub(crate) struct Tmpfs {
    mounted: bool,
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `bytes` (rounded up to pages by the kernel) on a new temporary
    /// directory; panics, saying what is needed, when it cannot.
    pub(crate) async fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("layercake-tmpfs-")
            .tempdir()
            .expect("a temporary directory for the tmpfs");
        let run = tokio::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(MOUNT_TIMEOUT, run).await;
        match out {
            Ok(Ok(o)) if o.status.success() => Tmpfs { mounted: true, dir },
            other => panic!(
                "this scenario mounts a tmpfs of its own, which needs root (or CAP_SYS_ADMIN) \
                 and the `mount` program (util-linux); run the fault suite as root, e.g. in the \
                 CI container. `mount -t tmpfs` said: {}",
                match other {
                    Ok(Ok(o)) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {MOUNT_TIMEOUT:?}"),
                }
            ),
        }
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Fill every free page (appending to one filler file, so calling it again takes what was
    /// freed since); the bytes written.
    pub(crate) fn fill(&self) -> u64 {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("opening the filler file");
        let mut written = 0u64;
        for chunk in [64 << 10, 4 << 10, 1] {
            let buf = vec![0xA5_u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling the tmpfs: {e}"),
                }
            }
        }
        written
    }

    /// Whether writing one byte to a new file fails with `ENOSPC`.
    pub(crate) fn is_full(&self) -> bool {
        let probe = self.path().join("probe");
        let full = match File::create(&probe) {
            Ok(mut f) => matches!(f.write_all(b"x").and_then(|()| f.sync_all()),
                Err(e) if e.kind() == ErrorKind::StorageFull),
            Err(e) => e.kind() == ErrorKind::StorageFull,
        };
        let _ = fs::remove_file(probe);
        full
    }

    /// Remove the filler file: the space is free again.
    pub(crate) fn unfill(&self) {
        fs::remove_file(self.filler()).expect("removing the filler file");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let path = self.dir.path();
        let ok = Command::new("umount")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a file open somewhere): detach it now, the kernel frees it later.
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
        self.mounted = false;
    }
}
