//! The memory tier passes the whole conformance suite, with a manual clock.

use std::sync::Arc;

use layercake_core::ManualClock;
use layercake_memory::{MemoryBackend, MemoryConfig};
use layercake_testkit::conformance::Conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_passes_the_conformance_suite() {
    let clock = ManualClock::new();
    let backend =
        MemoryBackend::new(MemoryConfig::new(256 << 20).with_clock(Arc::new(clock.clone())))
            .unwrap();
    Conformance::new(Arc::new(backend))
        .with_manual_clock(clock)
        .run()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_passes_the_conformance_suite_in_real_time() {
    let backend = MemoryBackend::new(MemoryConfig::new(256 << 20)).unwrap();
    Conformance::new(Arc::new(backend)).run().await;
}
