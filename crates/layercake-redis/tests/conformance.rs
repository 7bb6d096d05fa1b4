//! The conformance suite against the local Redis (both connection modes) and against a local
//! three-master cluster started by the test.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use layercake_redis::{ConnectionMode, RedisBackend, RedisConfig};
use layercake_testkit::conformance::Conformance;
use layercake_testkit::services::{closed_port, require_redis};
use support::{Cluster, RawRedis, unique_prefix};

async fn run_standalone(mode: ConnectionMode) {
    let url = require_redis();
    let prefix = unique_prefix("conf");
    let backend = RedisBackend::connect(
        RedisConfig::new(&url)
            .with_key_prefix(&prefix)
            .with_mode(mode),
    )
    .await
    .unwrap();
    let raw = RawRedis::new(&url, &prefix).await;
    // The same backend pointed at a port nothing listens on: its calls must fail, never miss.
    let port = closed_port().unwrap();
    let unreachable = RedisBackend::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}"))
            .with_key_prefix(&prefix)
            .with_mode(mode)
            .with_connect_timeout(Duration::from_millis(500))
            .with_operation_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    Conformance::new(Arc::new(backend.clone()))
        .with_raw(Arc::new(raw))
        .with_unreachable(Arc::new(unreachable))
        .run()
        .await;
    // Nothing of this run is left behind.
    use layercake_core::Backend as _;
    backend.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_multiplexed() {
    run_standalone(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_pool() {
    run_standalone(ConnectionMode::Pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cluster() {
    let cluster = Cluster::start();
    let prefix = unique_prefix("conf-cluster");
    let backend =
        RedisBackend::connect(RedisConfig::cluster(cluster.urls()).with_key_prefix(&prefix))
            .await
            .unwrap();
    let raw = RawCluster::new(cluster.urls(), &prefix).await;
    Conformance::new(Arc::new(backend))
        .with_raw(Arc::new(raw))
        .run()
        .await;
    drop(cluster);
}

/// Raw access through a cluster connection.
struct RawCluster {
    conn: redis::cluster_async::ClusterConnection,
    prefix: String,
}

impl RawCluster {
    async fn new(urls: Vec<String>, prefix: &str) -> RawCluster {
        let client = redis::cluster::ClusterClient::new(urls).unwrap();
        RawCluster {
            conn: client.get_async_connection().await.unwrap(),
            prefix: prefix.to_owned(),
        }
    }
}

#[layercake_core::async_trait]
impl layercake_testkit::conformance::RawStore for RawCluster {
    async fn put_raw(
        &self,
        key: &layercake_core::Key,
        bytes: Vec<u8>,
    ) -> layercake_core::Result<()> {
        use redis::AsyncCommands;
        let mut c = self.conn.clone();
        c.set::<_, _, ()>(format!("{}{}", self.prefix, key.as_str()), bytes)
            .await
            .map_err(|e| layercake_core::Error::unavailable(e.to_string()))
    }
    async fn raw_exists(&self, key: &layercake_core::Key) -> layercake_core::Result<bool> {
        use redis::AsyncCommands;
        let mut c = self.conn.clone();
        c.exists(format!("{}{}", self.prefix, key.as_str()))
            .await
            .map_err(|e| layercake_core::Error::unavailable(e.to_string()))
    }
}
