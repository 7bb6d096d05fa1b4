//! The `tracing` feature: a capturing subscriber sees one WARN, with the tier's name, when a
//! circuit breaker opens (not one per failed call), an INFO when it closes, and nothing above
//! DEBUG from a healthy run of `get`, `set` and `get_or_compute`.
#![cfg(feature = "tracing")]
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layercake::{Backend, BreakerConfig, Cache, ErrorKind, MemoryBackend, TierOptions};
use layercake_testkit::faulty::{Fault, FaultyBackend};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};

/// One captured event: level and fields (the message under `message`).
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    fields: BTreeMap<String, String>,
}

/// A subscriber that keeps every `layercake` event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if !event.metadata().target().starts_with("layercake") {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn install(&self) -> tracing::dispatcher::DefaultGuard {
        tracing::dispatcher::set_default(&tracing::Dispatch::new(self.clone()))
    }

    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// Events more severe than DEBUG (INFO, WARN, ERROR).
    fn above_debug(&self) -> Vec<Captured> {
        self.events()
            .into_iter()
            .filter(|e| e.level < Level::DEBUG)
            .collect()
    }
}

// Current-thread runtimes: the capturing subscriber is the thread's default, and every task
// of the cache runs on this thread.

#[tokio::test]
async fn a_breaker_opening_is_one_warn_with_the_tier_and_its_closing_one_info() {
    let capture = Capture::default();
    let _guard = capture.install();
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let l2 = Arc::new(FaultyBackend::new(inner, 11));
    let faults = l2.handle();
    let cache = Cache::builder("traced")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .shared_tier_with(
            l2,
            TierOptions::new()
                .name("flaky")
                // Long enough that the ten failing reads below all fall in one open period
                // (a loaded machine once took over 1 ms between two of them, and the probe's
                // failure opened the breaker a second time); short enough for the probe below.
                .breaker(Some(BreakerConfig {
                    failure_threshold: 2,
                    open_for: Duration::from_millis(300),
                })),
        )
        .build()
        .unwrap();
    faults.inject_everywhere(Fault::Fail(ErrorKind::Unavailable));
    for i in 0..10 {
        assert!(cache.get::<u8>(&format!("k{i}")).await.unwrap().is_none());
    }
    let warns: Vec<Captured> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == Level::WARN)
        .collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert_eq!(warns[0].fields["tier"], "flaky");
    assert_eq!(warns[0].fields["cache"], "traced");
    assert!(
        warns[0].fields["message"].contains("circuit breaker opened"),
        "{warns:?}"
    );
    assert!(
        capture.events().iter().all(|e| e.level != Level::ERROR),
        "nothing the cache absorbs is an ERROR"
    );
    // The failures themselves are DEBUG, with the tier and the error kind.
    let debug = capture
        .events()
        .into_iter()
        .find(|e| e.level == Level::DEBUG && e.fields.contains_key("error.kind"))
        .unwrap();
    assert_eq!(
        (
            debug.fields["tier"].as_str(),
            debug.fields["error.kind"].as_str()
        ),
        ("flaky", "unavailable")
    );
    // The tier answers again: a probe closes the breaker, one INFO.
    faults.clear_all();
    for _ in 0..500 {
        cache.get::<u8>("again").await.unwrap();
        if cache.stats().tiers[1].breaker == layercake::BreakerState::Closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        cache.stats().tiers[1].breaker,
        layercake::BreakerState::Closed
    );
    let above = capture.above_debug();
    assert_eq!(
        above.iter().map(|e| e.level).collect::<Vec<_>>(),
        [Level::WARN, Level::INFO],
        "{above:?}"
    );
    assert_eq!(above[1].fields["tier"], "flaky");
}

#[tokio::test]
async fn a_healthy_cache_is_silent_above_debug() {
    let capture = Capture::default();
    let _guard = capture.install();
    let cache = Cache::builder("healthy")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .shared_tier(Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap()))
        .build()
        .unwrap();
    for i in 0..50u32 {
        let k = format!("k{i}");
        cache.set(&k, i).await.unwrap();
        assert_eq!(*cache.get::<u32>(&k).await.unwrap().unwrap().value, i);
        let v = cache
            .get_or_compute(&format!("c{i}"), move || async move {
                Ok::<_, std::io::Error>(i * 2)
            })
            .await
            .unwrap();
        assert_eq!(*v.value, i * 2);
        cache.get::<u32>("absent").await.unwrap();
    }
    assert_eq!(cache.stats().loader_calls, 50);
    assert!(
        capture.above_debug().is_empty(),
        "{:?}",
        capture.above_debug()
    );
}
