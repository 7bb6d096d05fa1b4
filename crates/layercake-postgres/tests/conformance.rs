//! The testkit's conformance suite against the local PostgreSQL, in a schema of its own,
//! with a manual clock and raw access to the table.

mod support;

use std::sync::Arc;
use std::time::Duration;

use layercake_core::Backend;
use layercake_postgres::{PostgresBackend, PostgresConfig};
use layercake_testkit::conformance::Conformance;
use layercake_testkit::services::closed_port;
use support::{RawTable, TestSchema, manual_backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_passes_conformance() {
    let schema = TestSchema::new();
    let (backend, clock) = manual_backend(&schema, "conf").await;
    let raw = RawTable::new(&schema.url, backend.qualified_table()).await;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    // The same backend pointed at a port nothing listens on: its calls must fail, never miss.
    let port = closed_port().unwrap();
    let unreachable = PostgresBackend::connect(
        PostgresConfig::new(&format!("postgres://postgres@127.0.0.1:{port}/test"))
            .unwrap()
            .with_table(schema.schema.clone(), "conf")
            .with_connect_timeout(Duration::from_millis(500))
            .with_operation_timeout(Duration::from_millis(500))
            .with_reaper(None),
    )
    .await
    .unwrap();
    Conformance::new(backend)
        .with_manual_clock(clock)
        .with_raw(Arc::new(raw))
        .with_unreachable(Arc::new(unreachable))
        .run()
        .await;
}
