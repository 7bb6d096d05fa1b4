//! layercake: a tiered cache for Rust services.
//!
//! Compose tiers in code — L1 memory, L2 Redis, L3 PostgreSQL, L4 local files, any subset in
//! any order — and ask the stack for typed values. Reads walk the tiers and promote hits
//! upward with their remaining lifetime; writes go through; `get_or_compute` runs one loader
//! per key for all concurrent callers, serves stale values when the loader fails (fail-safe)
//! and refreshes ahead of expiry; each tier has its own timeout and circuit breaker; a
//! backplane keeps the memory tiers of several instances coherent.
//!
//! Backends are behind features of the same name: `memory` (default), `redis`, `postgres`,
//! `file`; `otel` adds OpenTelemetry traces and metrics.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> layercake::Result<()> {
//! use layercake::{Cache, FixedTtl, MemoryBackend, PolicyExt, Source};
//! use std::time::Duration;
//!
//! let cache = Cache::builder("catalog")
//!     .tier(MemoryBackend::with_max_bytes(64 << 20)?)
//!     .policy(FixedTtl::new(Duration::from_secs(3600)).stale_for(Duration::from_secs(600)))
//!     .build()?;
//! let tools = cache
//!     .get_or_compute("tools", || async {
//!         Ok::<_, std::io::Error>(vec!["search".to_string(), "fetch".to_string()])
//!     })
//!     .await?;
//! assert_eq!(tools.source, Source::Computed);
//! assert_eq!(tools.value.len(), 2);
//! # Ok(()) }
//! ```
// docs.rs builds with `--cfg docsrs` on nightly: every item behind a feature shows its badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod breaker;
mod builder;
mod cache;
mod coherence;
#[cfg(feature = "config")]
pub mod config;
mod counters;
#[cfg(doctest)]
mod doctests;
mod flight;
mod insight;
mod invalidate;
mod key_input;
mod load;
mod lock;
mod log;
mod lookup;
mod options;
#[cfg(feature = "otel")]
pub mod otel;
mod promote;
mod read;
mod repair;
mod stack;
mod stats;
mod telemetry;
mod tier;
mod tiered_backend;
mod value;
mod warm;
mod write;
mod write_behind;

pub use breaker::{BreakerConfig, BreakerState};
pub use builder::{CacheBuilder, DEFAULT_HARD_TIMEOUT};
pub use cache::{Cache, Warm, WriteOptions};
pub use insight::{
    HitTarget, HotSetFile, HotSetWarm, InsightConfig, MISS_REPORT_FORMAT, MissReason, MissReasons,
    MissReport, MissReportFile, NAMESPACES, NamespaceMisses, SavedMissReport, Suggestion,
    TargetReport, TierReads,
};
pub use key_input::{IntoKey, Request};
pub use lock::LockOptions;
pub use lookup::{Hit, Lookup, Source};
pub use options::{Computed, ReadOptions};
pub use repair::config::{Overflow, RepairConfig};
pub use repair::report::WriteReport;
pub use stats::{Latency, Op, RepairStats, Stats, TierStats};
pub use tier::{Scope, TierOptions, WriteMode};
pub use tiered_backend::TieredBackend;

pub use layercake_core as core;
pub use layercake_core::backplane::{Backplane, BackplaneEvent, InstanceId};
pub use layercake_core::{
    Backend, Capability, Clock, Codec, Compression, Decision, DistributedLock, Entry, Error,
    ErrorKind, FillOutcome, FixedTtl, Format, HashedKeys, Key, KeyStrategy, KeyStrategyExt,
    ManualClock, Namespace, NamespaceTable, PlainKeys, Policy, PolicyContext, PolicyExt, Promotion,
    Reach, RefreshAhead, Result, Selector, SharedClock, SystemClock, TierSet, Timestamp, Tombstone,
    system_clock,
};

#[cfg(feature = "memory")]
pub use layercake_memory::{self as memory, MemoryBackend};

#[cfg(feature = "redis")]
pub use layercake_redis as redis;

#[cfg(feature = "postgres")]
pub use layercake_postgres as postgres;

#[cfg(feature = "file")]
pub use layercake_file as file;

#[cfg(feature = "otel")]
pub use otel::{L1HitSpans, OtelConfig};

#[cfg(feature = "config")]
pub use config::CacheConfig;
