//! The pub/sub backplane: delivery to two subscribers, own-message filtering, malformed
//! messages, and `CLIENT KILL TYPE pubsub` reported as a disconnect and a reconnect.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use layercake_core::backplane::{Backplane, BackplaneEvent, InstanceId, Message, Target};
use layercake_redis::{RedisBackplane, RedisBackplaneConfig, RedisConfig};
use layercake_testkit::services::{require_redis, unique_id};
use support::Server;
use tokio::sync::broadcast::Receiver;

const WAIT: Duration = Duration::from_secs(10);

async fn next(rx: &mut Receiver<BackplaneEvent>) -> BackplaneEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no backplane event within 10 s")
        .expect("receiver closed or lagged")
}

fn msg(i: u64, origin: InstanceId) -> Message {
    Message {
        target: Target::Key(format!("user:{i}")),
        version: i,
        origin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_see_every_message() {
    let url = require_redis();
    let channel = unique_id("lctest:bp:");
    let cfg = RedisConfig::new(&url);
    let a = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
        .await
        .unwrap();
    let b = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
        .await
        .unwrap();
    let publisher = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
        .await
        .unwrap();
    assert!(a.is_connected() && b.is_connected());
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());
    let mut own = publisher.subscribe();

    let n = 300;
    for i in 0..n {
        publisher
            .publish(&msg(i, publisher.instance()))
            .await
            .unwrap();
    }
    for rx in [&mut ra, &mut rb] {
        for i in 0..n {
            assert_eq!(
                next(rx).await,
                BackplaneEvent::Message(msg(i, publisher.instance()))
            );
        }
    }
    // Own messages are filtered: a's message reaches b and the publisher, not a.
    a.publish(&msg(7, a.instance())).await.unwrap();
    assert_eq!(
        next(&mut rb).await,
        BackplaneEvent::Message(msg(7, a.instance()))
    );
    // The publisher saw none of its own 300, only a's.
    assert_eq!(
        next(&mut own).await,
        BackplaneEvent::Message(msg(7, a.instance()))
    );

    // Malformed messages are dropped and counted, never delivered.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    for garbage in [&b"not a message"[..], &[0u8; 5000][..], b"LB\x09xxxxxxxx"] {
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(garbage)
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
    }
    publisher
        .publish(&msg(8, publisher.instance()))
        .await
        .unwrap();
    // Each subscriber sees its messages in order: once both have message 8, both have
    // handled the three before it.
    for rx in [&mut ra, &mut rb] {
        assert_eq!(
            next(rx).await,
            BackplaneEvent::Message(msg(8, publisher.instance()))
        );
    }
    assert_eq!(a.dropped(), 3);
    assert_eq!(b.dropped(), 3);
    assert_eq!(a.reconnects(), 0);
    // Oversized messages are refused on publish.
    let big = Message {
        target: Target::Prefix("x".repeat(5000)),
        version: 0,
        origin: a.instance(),
    };
    assert!(a.publish(&big).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_is_reported_as_a_reconnect() {
    let mut server = Server::start();
    let channel = unique_id("lctest:bp:");
    let cfg = RedisConfig::new(server.url()).with_connect_timeout(Duration::from_millis(300));
    let a = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
        .await
        .unwrap();
    let b = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
        .await
        .unwrap();
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());

    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(killed, 2, "both subscriber connections are killed");
    for rx in [&mut ra, &mut rb] {
        assert_eq!(next(rx).await, BackplaneEvent::Disconnected);
        assert_eq!(next(rx).await, BackplaneEvent::Reconnected);
    }
    assert!(a.is_connected() && b.is_connected());
    assert_eq!((a.reconnects(), b.reconnects()), (1, 1));
    // Messages flow again.
    a.publish(&msg(1, a.instance())).await.unwrap();
    assert_eq!(
        next(&mut rb).await,
        BackplaneEvent::Message(msg(1, a.instance()))
    );

    // A server restart is a disconnect and a reconnect too.
    server.restart();
    assert_eq!(next(&mut ra).await, BackplaneEvent::Disconnected);
    assert_eq!(next(&mut ra).await, BackplaneEvent::Reconnected);
    assert_eq!(next(&mut rb).await, BackplaneEvent::Disconnected);
    assert_eq!(next(&mut rb).await, BackplaneEvent::Reconnected);
    // The publishing connection reconnects by itself; retry until it has.
    let mut sent = false;
    for _ in 0..50 {
        if b.publish(&msg(2, b.instance())).await.is_ok() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent, "publish did not recover after the restart");
    assert_eq!(
        next(&mut ra).await,
        BackplaneEvent::Message(msg(2, b.instance()))
    );

    // Shutdown stops the subscriber task.
    a.shutdown();
    assert!(!a.is_connected());
}
