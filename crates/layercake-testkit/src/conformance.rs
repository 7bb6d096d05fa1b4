//! The conformance suite: one async case per contract bullet of
//! [`Backend`], selected by the backend's
//! [`Capability`](layercake_core::Capability).
//!
//! A backend crate runs it with one call from its own `tests/conformance.rs`:
//!
//! ```no_run
//! # async fn demo(backend: std::sync::Arc<dyn layercake_core::Backend>) {
//! use layercake_core::ManualClock;
//! use layercake_testkit::conformance::Conformance;
//!
//! let clock = ManualClock::new();
//! // … build the backend with `Arc::new(clock.clone())` as its clock …
//! Conformance::new(backend)
//!     .with_manual_clock(clock) // only when capability().clock_driven_expiry
//!     .run()
//!     .await; // panics listing every failed case
//! # }
//! ```
//!
//! How it works:
//! - every case writes keys under its own prefix `<run id>:<case>:` where the run id comes from
//!   [`unique_id`], so runs against shared servers do not clash;
//! - entries are stamped with the clock in use (the manual clock when given, else the system
//!   clock) and live 60 s, except in the expiry cases;
//! - cases run one after another, each as its own tokio task with a timeout (60 s by default),
//!   so a panicking or hanging backend fails that case only;
//! - a backend that talks to a server gives, with
//!   [`with_unreachable`](Conformance::with_unreachable), a second instance of itself that
//!   cannot reach its storage (an address nothing listens on): the `errors_are_not_misses`
//!   case checks that its failures are errors, never misses;
//! - the runner prints one line per case (name, outcome, elapsed) and
//!   [`run`](Conformance::run) finally panics listing every failed case with the contract
//!   bullet it checks; [`run_report`](Conformance::run_report) returns the [`Report`] instead.
//!
//! Cases and what selects them:
//!
//! | case | runs when |
//! |---|---|
//! | `configuration` | always (manual clock only with clock-driven expiry) |
//! | `miss_on_unknown_key` | always |
//! | `round_trip` | always (1 MiB: `TooLarge` expected if over `max_value_bytes`) |
//! | `overwrite_replaces_entirely` | always |
//! | `delete` | always |
//! | `expiry` | always: manual clock when given, else real time (1 s TTL, ≤ 3 s wait) |
//! | `stale_entry_is_returned` | always |
//! | `set_of_expired_entry` | always |
//! | `get_many_equals_get_loop` | always |
//! | `set_many_and_delete_many` | always |
//! | `invalidate_prefix_is_literal` | `prefix_invalidation` |
//! | `invalidate_tag_is_exact` | `tag_invalidation` |
//! | `unsupported_operations` | some of `prefix_invalidation`, `tag_invalidation`, `clear`, `list_keys` false |
//! | `clear` | `clear` |
//! | `hostile_keys` | always |
//! | `concurrent_writers` | always |
//! | `corrupt_bytes_are_healed_misses` | `stores_bytes` (needs [`with_raw`](Conformance::with_raw)) |
//! | `list_keys_by_prefix` | `list_keys` |
//! | `fill_writes_when_empty` | always (the `Expired` part with `conditional_fill`) |
//! | `fill_never_replaces_newer` | always |
//! | `delete_with_refuses_older_fills` | `conditional_fill` |
//! | `invalidate_with_refuses_older_fills` | `conditional_fill` and prefix or tag invalidation |
//! | `tombstones_are_invisible` | `conditional_fill` |
//! | `tombstones_expire` | `conditional_fill`: manual clock when given, else real time (400 ms ttl, ≤ 3 s) |
//! | `fill_races_delete_with` | `conditional_fill` |
//! | `errors_are_not_misses` | an unreachable instance is given ([`with_unreachable`](Conformance::with_unreachable)) |
//! | `health` | always |

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use layercake_core::{Backend, Key, ManualClock};

use crate::services::unique_id;

mod cases;
pub mod reference;
mod report;

use cases::{CASES, Case, Cx, Setup};
pub use report::{CaseResult, Outcome, Report};

/// Direct access to a byte-storing backend's storage, used to plant bytes that are not a valid
/// envelope and check that the backend treats them as a self-healing miss.
///
/// Contract:
/// - `put_raw` stores `bytes` exactly where the backend would store the envelope of `key`
///   (same key encoding, same table, same path), bypassing the envelope encoder;
/// - `raw_exists` tells whether anything is stored for `key`, valid or not.
#[async_trait]
pub trait RawStore: Send + Sync {
    /// Store `bytes` verbatim as the stored form of `key`.
    async fn put_raw(&self, key: &Key, bytes: Vec<u8>) -> layercake_core::Result<()>;
    /// Whether anything is stored for `key`.
    async fn raw_exists(&self, key: &Key) -> layercake_core::Result<bool>;
}

/// The conformance suite for one backend instance; see the [module docs](self).
pub struct Conformance {
    backend: Arc<dyn Backend>,
    clock: Option<ManualClock>,
    raw: Option<Arc<dyn RawStore>>,
    unreachable: Option<Arc<dyn Backend>>,
    case_timeout: Duration,
}

impl fmt::Debug for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conformance")
            .field("backend", &self.backend.kind())
            .field("manual_clock", &self.clock.is_some())
            .field("raw", &self.raw.is_some())
            .field("unreachable", &self.unreachable.is_some())
            .field("case_timeout", &self.case_timeout)
            .finish()
    }
}

impl Conformance {
    /// The suite for `backend`, with real time and no raw access.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Conformance {
            backend,
            clock: None,
            raw: None,
            unreachable: None,
            case_timeout: Duration::from_secs(60),
        }
    }

    /// Use `clock` (the one the backend was built with) to stamp entries and to move time in
    /// the expiry cases. Only for backends with `capability().clock_driven_expiry`; giving it
    /// to another backend fails the `configuration` case.
    pub fn with_manual_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Raw access to the backend's storage, required when `capability().stores_bytes`.
    pub fn with_raw(mut self, raw: Arc<dyn RawStore>) -> Self {
        self.raw = Some(raw);
        self
    }

    /// An instance of the same backend that cannot reach its storage (for a server backend:
    /// one configured with an address nothing listens on, connecting in the background), for
    /// the `errors_are_not_misses` case: its `get`, `get_many`, `keys_with_prefix`, `fill`,
    /// writes and `health` must all fail. Without it that case is skipped.
    pub fn with_unreachable(mut self, unreachable: Arc<dyn Backend>) -> Self {
        self.unreachable = Some(unreachable);
        self
    }

    /// How long one case may run before it fails as hung (default 60 s).
    pub fn with_case_timeout(mut self, timeout: Duration) -> Self {
        self.case_timeout = timeout;
        self
    }

    /// The name and contract bullet of every case, in the order they run.
    pub fn cases() -> Vec<(&'static str, &'static str)> {
        CASES.iter().map(|c| (c.name, c.bullet)).collect()
    }

    /// Run every selected case and panic if any failed.
    ///
    /// # Panics
    /// When a case fails, with one line per failed case: its name, the contract bullet it
    /// checks and what went wrong.
    pub async fn run(self) {
        let report = self.run_report().await;
        if !report.is_success() {
            panic!("{}", report.failure_summary());
        }
    }

    /// Run every selected case and return the outcomes without panicking (printing one line
    /// per case as it finishes).
    pub async fn run_report(self) -> Report {
        let cap = self.backend.capability();
        let kind = self.backend.kind();
        let run_id = unique_id("lcconf");
        let mut results = Vec::with_capacity(CASES.len());
        for case in CASES {
            let start = Instant::now();
            let setup = Setup {
                cap,
                unreachable: self.unreachable.is_some(),
            };
            let outcome = match (case.select)(&setup) {
                Err(reason) => Outcome::Skipped(reason),
                Ok(()) => {
                    let cx = Cx {
                        backend: self.backend.clone(),
                        clock: self.clock.clone(),
                        raw: self.raw.clone(),
                        unreachable: self.unreachable.clone(),
                        cap,
                        prefix: format!("{run_id}:{}:", case.name),
                    };
                    run_case(case, cx, self.case_timeout).await
                }
            };
            let result = CaseResult {
                name: case.name,
                bullet: case.bullet,
                outcome,
                elapsed: start.elapsed(),
            };
            println!("conformance[{kind}] {result}");
            results.push(result);
        }
        let report = Report {
            backend: kind,
            cases: results,
        };
        println!(
            "conformance[{kind}] {} passed, {} failed, {} skipped",
            report.passed(),
            report.failed(),
            report.skipped()
        );
        report
    }
}

async fn run_case(case: &Case, cx: Cx, timeout: Duration) -> Outcome {
    let mut handle = tokio::spawn((case.run)(cx));
    match tokio::time::timeout(timeout, &mut handle).await {
        Ok(Ok(Ok(()))) => Outcome::Passed,
        Ok(Ok(Err(msg))) => Outcome::Failed(msg),
        Ok(Err(join)) if join.is_panic() => {
            let payload = join.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Outcome::Failed(format!("panicked: {msg}"))
        }
        Ok(Err(join)) => Outcome::Failed(format!("task failed: {join}")),
        Err(_) => {
            handle.abort();
            Outcome::Failed(format!("did not finish within {timeout:?} (hung?)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{Flaw, ReferenceBackend};
    use super::*;
    use crate::faulty::{Fault, FaultyBackend};
    use crate::recording::Operation;
    use layercake_core::{Capability, Entry, ErrorKind};

    async fn report_for(flaw: Option<Flaw>) -> Report {
        let clock = ManualClock::new();
        let flawed = |b: ReferenceBackend| match flaw {
            Some(f) => b.with_flaw(f),
            None => b,
        };
        let b = Arc::new(flawed(ReferenceBackend::with_clock(Arc::new(
            clock.clone(),
        ))));
        let down = flawed(ReferenceBackend::with_clock(Arc::new(clock.clone())));
        down.set_failing(true);
        Conformance::new(b.clone())
            .with_manual_clock(clock)
            .with_raw(b)
            .with_unreachable(Arc::new(down))
            .run_report()
            .await
    }

    #[tokio::test]
    async fn the_reference_backend_passes_every_selected_case() {
        let r = report_for(None).await;
        assert!(r.is_success(), "{}", r.failure_summary());
        assert_eq!(r.passed(), CASES.len() - 1);
        assert_eq!(
            r.case("unsupported_operations").unwrap().outcome,
            Outcome::Skipped("every optional operation is supported")
        );
    }

    #[tokio::test]
    async fn the_reference_backend_passes_in_real_time() {
        let b = Arc::new(ReferenceBackend::new());
        let r = Conformance::new(b.clone()).with_raw(b).run_report().await;
        assert!(r.is_success(), "{}", r.failure_summary());
    }

    #[tokio::test]
    async fn each_flaw_fails_the_case_for_its_bullet() {
        let expect: &[(Flaw, &[&str])] = &[
            (Flaw::ReturnsExpired, &["expiry"]),
            (Flaw::GlobPrefix, &["invalidate_prefix_is_literal"]),
            (Flaw::KeepsCorrupt, &["corrupt_bytes_are_healed_misses"]),
            (
                Flaw::ExpiredSetKeepsOld,
                &["set_of_expired_entry", "set_many_and_delete_many"],
            ),
            (Flaw::TagPrefixMatch, &["invalidate_tag_is_exact"]),
            (
                Flaw::FillReplacesNewer,
                &["fill_writes_when_empty", "fill_never_replaces_newer"],
            ),
            (
                Flaw::DeleteKeepsNoTombstone,
                &[
                    "delete_with_refuses_older_fills",
                    "tombstones_expire",
                    "fill_races_delete_with",
                ],
            ),
            (
                Flaw::InvalidateKeepsNoTombstone,
                &[
                    "invalidate_with_refuses_older_fills",
                    "tombstones_expire",
                    "fill_races_delete_with",
                ],
            ),
            (Flaw::ListsTombstones, &["tombstones_are_invisible"]),
            (Flaw::TombstonesNeverExpire, &["tombstones_expire"]),
            (Flaw::FillNotAtomic, &["fill_races_delete_with"]),
            (Flaw::ErrorsAsMisses, &["errors_are_not_misses"]),
        ];
        for (flaw, names) in expect {
            let r = report_for(Some(*flaw)).await;
            assert_eq!(
                &r.failed_names(),
                names,
                "{flaw:?}: {}",
                r.failure_summary()
            );
        }
        let r = report_for(Some(Flaw::DropsVersion)).await;
        assert!(r.failed_names().contains(&"round_trip"));
        let Outcome::Failed(m) = &r.case("round_trip").unwrap().outcome else {
            unreachable!()
        };
        assert!(m.contains("version (0, expected"), "{m}");
    }

    #[tokio::test]
    async fn a_byte_store_without_raw_access_fails_configuration() {
        let r = Conformance::new(Arc::new(ReferenceBackend::new()))
            .run_report()
            .await;
        assert_eq!(
            r.failed_names(),
            vec!["configuration", "corrupt_bytes_are_healed_misses"]
        );
    }

    #[tokio::test]
    async fn hanging_and_failing_backends_fail_cases_without_stopping_the_run() {
        let clock = ManualClock::new();
        let inner = Arc::new(ReferenceBackend::with_clock(Arc::new(clock.clone())));
        let faulty = FaultyBackend::new(inner.clone(), 1);
        let h = faulty.handle();
        h.inject(Operation::Health, Fault::Hang);
        h.inject(Operation::Clear, Fault::Fail(ErrorKind::Unavailable));
        let r = Conformance::new(Arc::new(faulty))
            .with_manual_clock(clock)
            .with_raw(inner)
            .with_case_timeout(Duration::from_millis(500))
            .run_report()
            .await;
        assert_eq!(r.failed_names(), vec!["clear", "health"]);
        let Outcome::Failed(m) = &r.case("health").unwrap().outcome else {
            unreachable!()
        };
        assert!(m.contains("did not finish"), "{m}");
        let Outcome::Failed(m) = &r.case("clear").unwrap().outcome else {
            unreachable!()
        };
        assert!(m.contains("unavailable"), "{m}");
    }

    #[derive(Debug)]
    struct Panicky(ReferenceBackend);

    #[async_trait]
    impl Backend for Panicky {
        fn kind(&self) -> &'static str {
            "panicky"
        }
        fn capability(&self) -> Capability {
            self.0.capability()
        }
        async fn get(&self, _: &Key) -> layercake_core::Result<Option<Entry>> {
            panic!("boom in get")
        }
        async fn set(&self, k: &Key, e: &Entry) -> layercake_core::Result<()> {
            self.0.set(k, e).await
        }
        async fn delete(&self, k: &Key) -> layercake_core::Result<()> {
            self.0.delete(k).await
        }
    }

    #[tokio::test]
    async fn panics_are_caught_per_case_and_run_panics_with_a_summary() {
        let r = Conformance::new(Arc::new(Panicky(ReferenceBackend::new())))
            .run_report()
            .await;
        let Outcome::Failed(m) = &r.case("miss_on_unknown_key").unwrap().outcome else {
            unreachable!()
        };
        assert!(m.contains("panicked: boom in get"), "{m}");
        assert_eq!(r.case("health").unwrap().outcome, Outcome::Passed);
        let summary = r.failure_summary();
        assert!(summary.starts_with("conformance suite: backend `panicky` failed"));
        assert!(summary.contains("- round_trip (contract: set then get returns"));
        let run = tokio::spawn(Conformance::new(Arc::new(Panicky(ReferenceBackend::new()))).run());
        let err = run.await.unwrap_err();
        assert!(err.is_panic());
    }

    #[test]
    fn every_case_has_a_bullet_and_a_unique_name() {
        let cases = Conformance::cases();
        let mut names: Vec<_> = cases.iter().map(|c| c.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cases.len());
        assert!(cases.iter().all(|c| !c.1.is_empty()));
    }
}
