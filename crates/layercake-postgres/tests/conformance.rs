//! The testkit's conformance suite against the local PostgreSQL, in a schema of its own,
//! with a manual clock and raw access to the table.

mod support;

use std::sync::Arc;

use layercake_core::Backend;
use layercake_testkit::conformance::Conformance;
use support::{RawTable, TestSchema, manual_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_passes_conformance() {
    let schema = TestSchema::new();
    let (backend, clock) = manual_backend(&schema, "conf").await;
    let raw = RawTable::new(&schema.url, backend.qualified_table()).await;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    Conformance::new(backend)
        .with_manual_clock(clock)
        .with_raw(Arc::new(raw))
        .run()
        .await;
}
