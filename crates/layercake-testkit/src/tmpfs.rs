//! [`Tmpfs`]: a small tmpfs of a test's own, to make a real full filesystem (`ENOSPC`).
//!
//! - It is mounted on a new temporary directory and can be filled to its last page on demand
//!   (every write that needs a new page then fails with `ENOSPC`), freed again, and is
//!   unmounted when dropped.
//! - Mounting needs root (or `CAP_SYS_ADMIN`) and the `mount`/`umount` programs (util-linux);
//!   [`Tmpfs::mount`] says so when it cannot mount. The CI container runs as root.
//!
//! ```no_run
//! # async fn demo() -> Result<(), layercake_testkit::server::FixtureError> {
//! use layercake_testkit::tmpfs::Tmpfs;
//!
//! let fs = Tmpfs::mount(1 << 20).await?;
//! fs.fill()?;
//! assert!(fs.is_full());
//! fs.unfill()?;
//! assert!(!fs.is_full());
//! # Ok(()) }
//! ```

use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::server::FixtureError;

/// How long `mount` may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A mounted tmpfs; `umount` on drop (lazily if busy), then the directory is removed.
#[derive(Debug)]
pub struct Tmpfs {
    mounted: bool,
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `bytes` (rounded up to pages by the kernel) on a new temporary
    /// directory.
    ///
    /// - fails with [`FixtureError::Failed`], saying what is needed (root or `CAP_SYS_ADMIN`,
    ///   the `mount` program) and what `mount` said, when it cannot mount;
    /// - bounded: `mount` gets 10 s.
    pub async fn mount(bytes: u64) -> Result<Tmpfs, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("layercake-tmpfs-")
            .tempdir()
            .map_err(|e| FixtureError::io("creating a directory for the tmpfs", e))?;
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
        let said = match tokio::time::timeout(MOUNT_TIMEOUT, run).await {
            Ok(Ok(o)) if o.status.success() => return Ok(Tmpfs { mounted: true, dir }),
            Ok(Ok(o)) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {MOUNT_TIMEOUT:?}"),
        };
        Err(FixtureError::Failed {
            context: "mounting a tmpfs (a real full filesystem for this test)".to_owned(),
            detail: format!(
                "this needs root (or CAP_SYS_ADMIN) and the `mount` program (util-linux); run \
                 the test as root, e.g. in the CI container. `mount -t tmpfs` said: {said}"
            ),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Fill every free page (appending to one filler file, so calling it again takes what was
    /// freed since); returns the bytes written. An error other than `ENOSPC` is returned.
    pub fn fill(&self) -> Result<u64, FixtureError> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .map_err(|e| FixtureError::io("opening the tmpfs filler file", e))?;
        let mut written = 0u64;
        for chunk in [64 << 10, 4 << 10, 1] {
            let buf = vec![0xA5_u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == ErrorKind::StorageFull => break,
                    Err(e) => return Err(FixtureError::io("filling the tmpfs", e)),
                }
            }
        }
        Ok(written)
    }

    /// Whether writing one byte to a new file fails with `ENOSPC`.
    pub fn is_full(&self) -> bool {
        let probe = self.path().join("probe");
        let full = match File::create(&probe) {
            Ok(mut f) => matches!(f.write_all(b"x").and_then(|()| f.sync_all()),
                Err(e) if e.kind() == ErrorKind::StorageFull),
            Err(e) => e.kind() == ErrorKind::StorageFull,
        };
        let _ = fs::remove_file(probe);
        full
    }

    /// Remove the filler file: the space it took is free again.
    pub fn unfill(&self) -> Result<(), FixtureError> {
        fs::remove_file(self.filler())
            .map_err(|e| FixtureError::io("removing the tmpfs filler file", e))
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
