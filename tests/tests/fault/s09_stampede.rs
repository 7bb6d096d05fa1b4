//! Scenario 9: stampede.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use layercake::{ErrorKind, Source, SystemClock};
use layercake_tests::Tiers;

/// Four real tiers; 10 000 concurrent `get_or_compute` calls on one key:
///
/// - with a 200 ms loader, the loader runs once, one caller gets `Computed`, the others
///   `Coalesced` with the same value;
/// - with a loader that panics, every caller gets a `Loader` error, no single-flight entry is
///   left, and the next call runs the loader again and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_09_stampede_runs_the_loader_once_and_survives_a_panic() {
    const CALLERS: usize = 10_000;
    let tiers = Tiers::connect(Arc::new(SystemClock)).await;
    let cache = tiers.builder("fault-s9").build().unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute("hot", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, std::io::Error>("expensive".to_string())
                    })
                    .await
            })
        })
        .collect();
    let (mut computed, mut coalesced, mut other) = (0, 0, 0);
    for task in tasks {
        let l = task.await.unwrap().unwrap();
        assert_eq!(l.value.as_str(), "expensive");
        match l.source {
            Source::Computed => computed += 1,
            Source::Coalesced => coalesced += 1,
            _ => other += 1,
        }
    }
    let stampede_took = t.elapsed();
    let loader_calls = calls.load(Ordering::SeqCst);

    let panics = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, panics) = (cache.clone(), panics.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute("explodes", move || async move {
                        panics.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        explode()
                    })
                    .await
            })
        })
        .collect();
    let mut errors = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(l) => panic!(
                "a caller got a value from a panicking loader: {:?}",
                l.source
            ),
            Err(e) => {
                errors += 1;
                kinds.insert(e.kind().as_str());
                assert_eq!(e.kind(), ErrorKind::Loader, "{e}");
            }
        }
    }
    let flights_left = cache.loads_in_flight();
    let next = cache
        .get_or_compute("explodes", || async {
            Ok::<_, std::io::Error>("recovered".to_string())
        })
        .await
        .unwrap();
    println!(
        "scenario 9: callers={CALLERS} loader_calls={loader_calls} computed={computed} \
         coalesced={coalesced} other={other} took={}ms panicking_loader_runs={} errors={errors} \
         error_kinds={kinds:?} flights_left={flights_left} next_call={:?}",
        stampede_took.as_millis(),
        panics.load(Ordering::SeqCst),
        next.source,
    );
    assert_eq!(loader_calls, 1);
    assert_eq!((computed, coalesced + other), (1, CALLERS - 1));
    assert_eq!(errors, CALLERS, "every caller got an error");
    assert!(panics.load(Ordering::SeqCst) >= 1);
    assert_eq!(flights_left, 0);
    assert_eq!(
        (next.value.as_str(), next.source),
        ("recovered", Source::Computed)
    );
    tiers.cleanup().await;
}

/// The panicking part of the loader.
fn explode() -> Result<String, std::io::Error> {
    panic!("loader panic (expected by scenario 9)")
}
