//! The composed `memory + file` stack, used as one backend, passes the conformance suite.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;

use layercake::{Cache, ManualClock, MemoryBackend};
use layercake_file::{FileBackend, FileConfig};
use layercake_memory::MemoryConfig;
use layercake_testkit::conformance::Conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_plus_file_stack_passes_the_conformance_suite() {
    let clock = ManualClock::new();
    let dir = tempfile::tempdir().unwrap();
    let memory =
        MemoryBackend::new(MemoryConfig::new(256 << 20).with_clock(Arc::new(clock.clone())))
            .unwrap();
    let file = FileBackend::open(
        FileConfig::new(dir.path())
            .with_max_bytes(1 << 30)
            .with_clock(Arc::new(clock.clone())),
    )
    .await
    .unwrap();
    let cache = Cache::builder("stack")
        .tier(memory)
        .tier(file)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    Conformance::new(Arc::new(cache.as_backend()))
        .with_manual_clock(clock)
        .run()
        .await;
}
