//! The whole conformance suite of `layercake-testkit` against a `FileBackend` in a fresh
//! directory, with a manual clock and raw access to the entry files.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions panic on failure too"
)]

use std::path::PathBuf;
use std::sync::Arc;

use layercake_core::{Key, ManualClock, Result, async_trait};
use layercake_file::{FileBackend, FileConfig};
use layercake_testkit::conformance::{Conformance, RawStore};

/// Writes bytes verbatim at the path the backend uses for the key.
struct RawFiles {
    backend: Arc<FileBackend>,
}

#[async_trait]
impl RawStore for RawFiles {
    async fn put_raw(&self, key: &Key, bytes: Vec<u8>) -> Result<()> {
        let path: PathBuf = self.backend.path_of(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        Ok(())
    }

    async fn raw_exists(&self, key: &Key) -> Result<bool> {
        Ok(self.backend.path_of(key).exists())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_backend_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let backend = Arc::new(
        FileBackend::open(FileConfig::new(dir.path()).with_clock(Arc::new(clock.clone())))
            .await
            .unwrap(),
    );
    let raw = Arc::new(RawFiles {
        backend: backend.clone(),
    });
    Conformance::new(backend.clone())
        .with_manual_clock(clock)
        .with_raw(raw)
        .run()
        .await;
    // Every file the suite left is a well-formed entry file inside the directory.
    for shard in std::fs::read_dir(dir.path()).unwrap() {
        let shard = shard.unwrap();
        if shard.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap() {
                let name = f.unwrap().file_name().into_string().unwrap();
                assert!(name.ends_with(".lce") && name.len() == 68, "{name}");
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn file_backend_passes_the_conformance_suite_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let backend = Arc::new(
        FileBackend::open(FileConfig::new(dir.path()).with_clock(Arc::new(clock.clone())))
            .await
            .unwrap(),
    );
    let raw = Arc::new(RawFiles {
        backend: backend.clone(),
    });
    Conformance::new(backend)
        .with_manual_clock(clock)
        .with_raw(raw)
        .run()
        .await;
}
