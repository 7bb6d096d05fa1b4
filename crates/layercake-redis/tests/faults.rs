//! Fault tests on throwaway redis-servers (own ports, own pids): kill and restart under load,
//! and SIGSTOP freeze, in both connection modes.
//!
//! The assertions are the backend's contract, not speed: no call outlives its configured
//! operation timeout (plus scheduling slack on a loaded 2-core machine), failures are
//! `Unavailable` / `Timeout`, and the backend serves again after the restart without being
//! rebuilt. Measured figures are printed.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use layercake_core::{Backend, Clock, Entry, ErrorKind, Key, SystemClock};
use layercake_redis::{ConnectionMode, RedisBackend, RedisConfig};
use support::{Server, unique_prefix};

const OP_TIMEOUT: Duration = Duration::from_millis(300);
/// Scheduling slack for a loaded 2-core machine: a timer that fires late is not a backend that
/// waited.
const SLACK: Duration = Duration::from_millis(150);

#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    took: Duration,
    error: Option<ErrorKind>,
}

async fn backend(server: &Server, mode: ConnectionMode) -> Arc<RedisBackend> {
    let cfg = RedisConfig::new(server.url())
        .with_key_prefix(unique_prefix("fault"))
        .with_mode(mode)
        .with_operation_timeout(OP_TIMEOUT)
        .with_connect_timeout(Duration::from_millis(200))
        .with_pool_wait_timeout(Duration::from_millis(200))
        // The load runs 8 workers: coalesce from the second concurrent GET on, so that the
        // coalesced path is under the faults too.
        .with_coalesce_after(1);
    Arc::new(RedisBackend::connect(cfg).await.unwrap())
}

/// Run `workers` loops of set+get until `stop`, recording every call.
fn load(
    b: Arc<RedisBackend>,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Call>>> {
    (0..workers)
        .map(|w| {
            let b = b.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = Key::new(format!("w{w}:{}", i % 50)).unwrap();
                    let e = Entry::new(vec![1u8; 100], SystemClock.now(), Duration::from_secs(30));
                    let at = Instant::now();
                    let r = if i.is_multiple_of(2) {
                        b.set(&k, &e).await.map(|_| ())
                    } else {
                        b.get(&k).await.map(|_| ())
                    };
                    let took = at.elapsed();
                    let failed = r.is_err();
                    calls.push(Call {
                        at,
                        took,
                        error: r.err().map(|e| e.kind()),
                    });
                    i += 1;
                    if failed {
                        // Do not spin on an instant failure.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                calls
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Call>>>) -> Vec<Call> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|c| c.at);
    all
}

fn check_bounded(calls: &[Call], what: &str) {
    let max = calls.iter().map(|c| c.took).max().unwrap_or_default();
    let failed = calls.iter().filter(|c| c.error.is_some()).count();
    println!(
        "{what}: {} calls, {failed} failed, max latency {:.1} ms (timeout {} ms)",
        calls.len(),
        max.as_secs_f64() * 1e3,
        OP_TIMEOUT.as_millis()
    );
    for c in calls {
        if let Some(k) = c.error {
            assert!(
                matches!(k, ErrorKind::Unavailable | ErrorKind::Timeout),
                "{what}: a call failed with {k:?}, expected Unavailable or Timeout"
            );
        }
    }
    assert!(
        max <= OP_TIMEOUT + SLACK,
        "{what}: a call took {max:?}, longer than the {OP_TIMEOUT:?} timeout"
    );
}

async fn kill_and_restart(mode: ConnectionMode) {
    let mut server = Server::start();
    let b = backend(&server, mode).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(b.clone(), 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed = Instant::now();
    server.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Calls that end before `restarting` ran while nothing listened; `restarted` is when the
    // new server answers PING (restart returns then).
    let restarting = Instant::now();
    server.restart();
    let restarted = Instant::now();
    // Keep the load running; the first success after the restart is the recovery.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let calls = collect(tasks).await;
    // The load's concurrent GETs went through the coalescer too: its batches are held to the
    // same bounds as lone commands.
    assert!(
        b.coalesced_gets() > 0,
        "{mode:?}: no GET of the load was coalesced; the test no longer covers that path"
    );

    // Calls that ended before the kill (one in flight at the kill may fail, correctly).
    let before: Vec<_> = calls
        .iter()
        .filter(|c| c.at + c.took < killed)
        .cloned()
        .collect();
    let bad: Vec<_> = before.iter().filter(|c| c.error.is_some()).collect();
    assert!(
        !before.is_empty() && bad.is_empty(),
        "{mode:?}: calls before the kill must succeed: {bad:?}"
    );
    let down: Vec<_> = calls
        .iter()
        .filter(|c| c.at >= killed + Duration::from_millis(50) && c.at + c.took < restarting)
        .cloned()
        .collect();
    assert!(
        !down.is_empty(),
        "{mode:?}: no call ran while the server was down"
    );
    assert!(
        down.iter().all(|c| c.error.is_some()),
        "{mode:?}: a call succeeded while the server was down"
    );
    check_bounded(&calls, &format!("{mode:?} kill/restart (all calls)"));
    check_bounded(&down, &format!("{mode:?} kill/restart (while down)"));

    let first_ok = calls
        .iter()
        .filter(|c| c.at >= restarted && c.error.is_none())
        .map(|c| c.at + c.took)
        .min()
        .expect("no call succeeded after the restart");
    let recovery = first_ok.saturating_duration_since(restarted);
    let last_err = calls
        .iter()
        .filter(|c| c.at >= restarted && c.error.is_some())
        .map(|c| (c.at + c.took).saturating_duration_since(restarted))
        .max()
        .unwrap_or_default();
    println!(
        "{mode:?}: first success {:.1} ms after the restart, last failure {:.1} ms after it",
        recovery.as_secs_f64() * 1e3,
        last_err.as_secs_f64() * 1e3
    );
    assert!(
        recovery < Duration::from_secs(1) && last_err < Duration::from_secs(1),
        "{mode:?}: calls must work again within 1 s of the restart (first success after \
         {recovery:?}, last failure after {last_err:?})"
    );
    // The same backend instance serves normally afterwards.
    let k = Key::new("after").unwrap();
    let e = Entry::new(&b"v"[..], SystemClock.now(), Duration::from_secs(30));
    b.set(&k, &e).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), Some(e));
    b.health().await.unwrap();
}

async fn freeze(mode: ConnectionMode) {
    let server = Server::start();
    let b = backend(&server, mode).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(b.clone(), 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen = Instant::now();
    server.freeze();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Taken before SIGCONT is sent: a call that ends before it ran entirely in the freeze.
    let thawed = Instant::now();
    server.thaw();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let calls = collect(tasks).await;
    // The load's concurrent GETs went through the coalescer too: its batches are held to the
    // same bounds as lone commands.
    assert!(
        b.coalesced_gets() > 0,
        "{mode:?}: no GET of the load was coalesced; the test no longer covers that path"
    );

    let during: Vec<_> = calls
        .iter()
        .filter(|c| c.at >= frozen + Duration::from_millis(50) && c.at + c.took < thawed)
        .cloned()
        .collect();
    assert!(
        !during.is_empty(),
        "{mode:?}: no call ran during the freeze"
    );
    let ok: Vec<_> = during.iter().filter(|c| c.error.is_none()).collect();
    assert!(
        ok.is_empty(),
        "{mode:?}: every call during the freeze must fail; these succeeded (freeze at {frozen:?}): {ok:?}"
    );
    check_bounded(&calls, &format!("{mode:?} SIGSTOP (all calls)"));
    let first_ok = calls
        .iter()
        .filter(|c| c.at >= thawed && c.error.is_none())
        .map(|c| (c.at + c.took).saturating_duration_since(thawed))
        .min()
        .expect("no call succeeded after SIGCONT");
    println!(
        "{mode:?}: first success {:.1} ms after SIGCONT",
        first_ok.as_secs_f64() * 1e3
    );
    let k = Key::new("after").unwrap();
    let e = Entry::new(&b"v"[..], SystemClock.now(), Duration::from_secs(30));
    b.set(&k, &e).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), Some(e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_restart_multiplexed() {
    kill_and_restart(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_restart_pool() {
    kill_and_restart(ConnectionMode::Pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_multiplexed() {
    freeze(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_pool() {
    freeze(ConnectionMode::Pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_and_auth_is_applied() {
    // Nothing listens and the server is required: connect fails with Unavailable/Timeout
    // within the connect timeout. (Without `require_server` it succeeds and connects in the
    // background: tests/start_down.rs.)
    let port = support::free_port(false);
    let started = Instant::now();
    let err = RedisBackend::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}"))
            .with_connect_timeout(Duration::from_millis(200))
            .with_operation_timeout(Duration::from_millis(200))
            .with_require_server(true),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(200) + SLACK);

    // A server with a password: wrong credentials are a permanent error, right ones work,
    // and the password never shows in Debug or in the error.
    let server = Server::start_with(&["--requirepass", "hunter2-secret"]);
    let err = RedisBackend::connect(
        RedisConfig::new(format!("redis://:wrong-secret@127.0.0.1:{}", server.port))
            .with_key_prefix(unique_prefix("auth")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-secret"));
    let b = RedisBackend::connect(
        RedisConfig::new(server.url())
            .with_key_prefix(unique_prefix("auth"))
            .with_auth(None, "hunter2-secret"),
    )
    .await
    .unwrap();
    b.health().await.unwrap();
    assert!(!format!("{b:?}").contains("hunter2"));
    let b = RedisBackend::connect(
        RedisConfig::new(format!("redis://:hunter2-secret@127.0.0.1:{}", server.port))
            .with_key_prefix(unique_prefix("auth")),
    )
    .await
    .unwrap();
    b.health().await.unwrap();
    assert!(!format!("{b:?}").contains("hunter2"), "{b:?}");
}
