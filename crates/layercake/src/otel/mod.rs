//! OpenTelemetry traces and metrics (feature `otel`), through the `opentelemetry` API crate
//! only: the application picks the SDK and the exporter.
//!
//! Give a cache its meter and tracer with [`CacheBuilder::otel`](crate::CacheBuilder::otel);
//! without that call, a cache built with the feature on uses the **global** meter and tracer
//! providers as they are when [`build`](crate::CacheBuilder::build) runs (so install them
//! first). [`OtelConfig::disabled`] turns instrumentation off for one cache.
//!
//! What is reported (the full reference, with Prometheus names and a Grafana dashboard, is in
//! `docs/observability.md`):
//!
//! - spans `layercake.get`, `layercake.set`, `layercake.delete`, `layercake.get_or_compute`,
//!   `layercake.get_many`, `layercake.get_or_compute_many`, `layercake.invalidate`,
//!   `layercake.warm`, with attributes `layercake.cache`, `layercake.operation`,
//!   `layercake.outcome` and, for a hit, `layercake.tier`; events `layercake.fall_through`,
//!   `layercake.hit`, `layercake.breaker_skip`, `layercake.corrupt`, `layercake.promotion`,
//!   `layercake.repair_pending`, each with `layercake.tier`;
//! - counters `layercake.requests`, `layercake.operations`, `layercake.tier.errors`,
//!   `layercake.tier.promotions`, `layercake.tier.decode_failures`,
//!   `layercake.breaker.transitions`, `layercake.backplane.messages.sent` / `.received` /
//!   `.dropped`, `layercake.backplane.reconnects`, `layercake.write_behind.fallbacks`,
//!   `layercake.write_behind.failures`, `layercake.repair.notes`, `layercake.repair.applied`,
//!   `layercake.repair.failures`, `layercake.repair.overflows`, `layercake.repair.refused`;
//! - gauges `layercake.memory.entries`, `layercake.memory.size`, `layercake.breaker.state`,
//!   `layercake.write_behind.depth`, `layercake.repair.pending`,
//!   `layercake.repair.oldest_pending_age`;
//! - histograms `layercake.operation.duration`, `layercake.loader.duration` and
//!   `layercake.tier.read.duration` (seconds).
//!
//! Contract:
//! - attribute values are the cache name, tier names, operation names, outcomes, error kinds,
//!   breaker states and fixed reasons — never a key, a value, an error message or anything
//!   unbounded;
//! - counters are exact: they are the cache's one counter store, the atomics
//!   [`Cache::stats`](crate::Cache::stats) reads too, read by observable instruments when the
//!   reader collects (the hot path pays one relaxed atomic add per event, counted once);
//! - `layercake.tier.read.duration` records every read of an out-of-process tier and one in 16
//!   per thread of an in-process one (all with [`OtelConfig::time_every_operation`]);
//! - `layercake.operation.duration` records a uniform sample: one in
//!   [`DURATION_SAMPLE_OF_TIMED`] of the operations [`Stats`](crate::Stats) times (one in
//!   [`Stats::SAMPLE_EVERY`](crate::Stats::SAMPLE_EVERY) per thread), so one in 16 by default,
//!   or all with [`OtelConfig::time_every_operation`]; count operations with
//!   `layercake.operations`;
//! - a span is opened lazily, when the operation does more than an L1 hit; whether a plain L1
//!   hit gets a span is [`L1HitSpans`] (default: only inside a sampled trace);
//! - `layercake.memory.*` gauges report memory tiers given by value to
//!   [`tier`](crate::CacheBuilder::tier) / [`tier_with`](crate::CacheBuilder::tier_with) (a
//!   backend given as `Arc<dyn Backend>` cannot be inspected);
//! - observable callbacks hold only a weak reference to the cache: once the cache is dropped
//!   its series stop being reported.

mod config;
mod instruments;
mod observers;
mod repairs;

pub(crate) use config::OtelSetup;
pub use config::{L1HitSpans, OtelConfig, instrumentation_scope};
pub use instruments::DURATION_SAMPLE_OF_TIMED;
pub(crate) use instruments::{Otel, OtelScope};
pub(crate) use observers::observe;

/// The `opentelemetry` API crate layercake reports through (its version is the one your SDK and
/// exporters must match).
pub use opentelemetry;

/// Attribute key: the cache name.
pub const ATTR_CACHE: &str = "layercake.cache";
/// Attribute key: the tier name (`l1`, `l2`, … or the name given in `TierOptions`).
pub const ATTR_TIER: &str = "layercake.tier";
/// Attribute key: the public operation (`get`, `set`, …).
pub const ATTR_OPERATION: &str = "layercake.operation";
/// Attribute key: the outcome (`hit`, `miss`, `stale`, `computed`, `coalesced`, `ok`,
/// `error`; for tier requests also `skipped`).
pub const ATTR_OUTCOME: &str = "layercake.outcome";
/// Attribute key: a fixed reason (`miss`, `error` on fall-through; `publish_failed`, `lagged`
/// on dropped backplane messages).
pub const ATTR_REASON: &str = "layercake.reason";
/// Attribute key: a circuit-breaker state (`closed`, `open`, `half_open`).
pub const ATTR_BREAKER_STATE: &str = "layercake.breaker.state";
/// Attribute key for error kinds (OpenTelemetry semantic convention `error.type`), values
/// from [`ErrorKind::as_str`](layercake_core::ErrorKind::as_str).
pub const ATTR_ERROR_TYPE: &str = "error.type";

/// Boundaries of the duration histograms, in seconds: 10 µs … 10 s.
pub const DURATION_BOUNDARIES: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
