//! The LISTEN/NOTIFY backplane on the shared server, on a channel of its own.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod support;

use std::time::Duration;

use layercake_core::backplane::{Backplane, BackplaneEvent, InstanceId, Message, Target};
use layercake_postgres::{PostgresBackplane, PostgresBackplaneConfig};
use layercake_testkit::services::{require_postgres, unique_id};
use support::raw_client;
use tokio::sync::broadcast;

async fn next(rx: &mut broadcast::Receiver<BackplaneEvent>) -> BackplaneEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no event within 5 s")
        .unwrap()
}

fn message(target: Target, origin: InstanceId) -> Message {
    Message {
        target,
        version: 7,
        origin,
    }
}

fn config(url: &str, channel: &str) -> PostgresBackplaneConfig {
    PostgresBackplaneConfig::new(url)
        .unwrap()
        .with_channel(channel)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_message_but_its_own() {
    let url = require_postgres();
    let channel = unique_id("LC Chan \"q\" ");
    let a = PostgresBackplane::connect(config(&url, &channel))
        .await
        .unwrap();
    let b = PostgresBackplane::connect(config(&url, &channel))
        .await
        .unwrap();
    let c = PostgresBackplane::connect(config(&url, &channel))
        .await
        .unwrap();
    assert!(a.is_connected() && b.is_connected() && c.is_connected());
    let mut ra = a.subscribe();
    let mut rb = b.subscribe();
    let mut rc = c.subscribe();
    let mut rb2 = b.subscribe();
    let sent = [
        message(Target::Key("'; DROP TABLE x; -- ключ".into()), a.instance()),
        message(Target::Prefix("user:".into()), a.instance()),
        message(Target::Tag("t".into()), a.instance()),
        message(Target::All, a.instance()),
    ];
    for m in &sent {
        a.publish(m).await.unwrap();
    }
    for m in &sent {
        assert_eq!(next(&mut rb).await, BackplaneEvent::Message(m.clone()));
        assert_eq!(next(&mut rc).await, BackplaneEvent::Message(m.clone()));
        assert_eq!(next(&mut rb2).await, BackplaneEvent::Message(m.clone()));
    }
    // a's own messages never reach a; c's do.
    let from_c = message(Target::Key("from-c".into()), c.instance());
    c.publish(&from_c).await.unwrap();
    assert_eq!(next(&mut ra).await, BackplaneEvent::Message(from_c.clone()));
    assert_eq!(next(&mut rb).await, BackplaneEvent::Message(from_c));

    // Malformed payloads are dropped and counted.
    let raw = raw_client(&url).await;
    raw.execute("SELECT pg_notify($1, $2)", &[&channel, &"not base64 !!"])
        .await
        .unwrap();
    raw.execute("SELECT pg_notify($1, $2)", &[&channel, &"QUJD"])
        .await
        .unwrap();
    let after = message(Target::Key("after".into()), a.instance());
    a.publish(&after).await.unwrap();
    assert_eq!(next(&mut rb).await, BackplaneEvent::Message(after.clone()));
    assert_eq!(next(&mut rc).await, BackplaneEvent::Message(after));
    assert_eq!(b.dropped(), 2);
    // a sees no message of its own to synchronize on: wait for its counter.
    assert!(support::eventually(Duration::from_secs(5), || a.dropped() == 2).await);

    // A key too long for one message arrives as a prefix of it.
    let long = "k".repeat(5000);
    a.publish(&message(Target::Key(long.clone()), a.instance()))
        .await
        .unwrap();
    match next(&mut rc).await {
        BackplaneEvent::Message(Message {
            target: Target::Prefix(p),
            ..
        }) => assert!(long.starts_with(&p) && !p.is_empty()),
        other => panic!("expected a prefix message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_listener_reports_disconnect_and_reconnect() {
    let url = require_postgres();
    let channel = unique_id("lc_bp_");
    let publisher = PostgresBackplane::connect(config(&url, &channel))
        .await
        .unwrap();
    let listener = PostgresBackplane::connect(config(&url, &channel))
        .await
        .unwrap();
    let mut rx = listener.subscribe();
    let pid = listener.listener_pid().unwrap();
    let raw = raw_client(&url).await;
    let killed: bool = raw
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    assert_eq!(next(&mut rx).await, BackplaneEvent::Disconnected);
    assert_eq!(next(&mut rx).await, BackplaneEvent::Reconnected);
    assert!(listener.is_connected());
    assert_eq!(listener.reconnects(), 1);
    assert_ne!(listener.listener_pid(), Some(pid));
    let m = message(Target::Key("flows again".into()), publisher.instance());
    publisher.publish(&m).await.unwrap();
    assert_eq!(next(&mut rx).await, BackplaneEvent::Message(m));

    // Shutdown stops the listener: it no longer counts as connected.
    listener.shutdown();
    assert!(!listener.is_connected());
}
