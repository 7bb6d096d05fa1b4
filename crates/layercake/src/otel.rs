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
//!   `layercake.hit`, `layercake.breaker_skip`, `layercake.corrupt`, `layercake.promotion`, each
//!   with `layercake.tier`;
//! - counters `layercake.requests`, `layercake.operations`, `layercake.tier.errors`,
//!   `layercake.tier.promotions`, `layercake.tier.decode_failures`,
//!   `layercake.breaker.transitions`, `layercake.backplane.messages.sent` / `.received` /
//!   `.dropped`, `layercake.backplane.reconnects`, `layercake.write_behind.fallbacks`,
//!   `layercake.write_behind.failures`;
//! - gauges `layercake.memory.entries`, `layercake.memory.size`, `layercake.breaker.state`,
//!   `layercake.write_behind.depth`;
//! - histograms `layercake.operation.duration` and `layercake.loader.duration` (seconds).
//!
//! Contract:
//! - attribute values are the cache name, tier names, operation names, outcomes, error kinds,
//!   breaker states and fixed reasons — never a key, a value, an error message or anything
//!   unbounded;
//! - counters are exact: they are atomics in the cache, read by observable instruments when
//!   the reader collects (the hot path pays one relaxed atomic add per counted thing);
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

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use layercake_core::{Backend, ErrorKind};
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter, MeterProvider};
use opentelemetry::trace::{
    SpanBuilder, SpanKind, Status, TraceContextExt, Tracer, TracerProvider,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use parking_lot::Mutex;

/// The `opentelemetry` API crate layercake reports through (its version is the one your SDK and
/// exporters must match).
pub use opentelemetry;

use crate::breaker::BreakerState;
use crate::stack::Stack;
use crate::stats::Op;
use crate::telemetry::Outcome;

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
/// from [`ErrorKind::as_str`].
pub const ATTR_ERROR_TYPE: &str = "error.type";

/// Boundaries of the duration histograms, in seconds: 10 µs … 10 s.
pub const DURATION_BOUNDARIES: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Whether an operation answered by the first tier, with nothing else to report, gets a span.
///
/// An L1 hit costs a few hundred nanoseconds; a span costs about as much again or more (ids,
/// attributes, export), so by default it only gets one when someone is tracing the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L1HitSpans {
    /// Every L1 hit gets a span.
    Always,
    /// An L1 hit gets a span when the caller's context holds a sampled span (the default):
    /// traced requests show their cache hits, untraced traffic costs no span.
    #[default]
    InSampledTrace,
    /// L1 hits never get a span (they are still counted in metrics).
    Never,
}

/// How a cache reports to OpenTelemetry: the meter, the tracer and a few choices.
///
/// ```
/// use layercake::otel::{L1HitSpans, OtelConfig};
/// use opentelemetry::global;
/// // Globals (what a cache uses when `CacheBuilder::otel` is not called):
/// let cfg = OtelConfig::global().l1_hit_spans(L1HitSpans::Never);
/// // Or the application's own meter and tracer:
/// let cfg = OtelConfig::new(global::meter("layercake"), global::tracer("layercake"));
/// # let _ = cfg;
/// ```
pub struct OtelConfig {
    parts: Option<Parts>,
}

struct Parts {
    meter: Meter,
    tracer: BoxedTracer,
    l1_hit_spans: L1HitSpans,
    time_every_operation: bool,
}

impl std::fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.parts {
            None => f.write_str("OtelConfig(disabled)"),
            Some(p) => f
                .debug_struct("OtelConfig")
                .field("l1_hit_spans", &p.l1_hit_spans)
                .field("time_every_operation", &p.time_every_operation)
                .finish_non_exhaustive(),
        }
    }
}

/// The instrumentation scope layercake reports under (`layercake`, this crate's version).
pub fn instrumentation_scope() -> InstrumentationScope {
    InstrumentationScope::builder("layercake")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl OtelConfig {
    /// Report through this meter and tracer.
    pub fn new<T>(meter: Meter, tracer: T) -> OtelConfig
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        OtelConfig {
            parts: Some(Parts {
                meter,
                tracer: BoxedTracer::new(Box::new(tracer)),
                l1_hit_spans: L1HitSpans::default(),
                time_every_operation: false,
            }),
        }
    }

    /// Report through a meter and a tracer made from these providers with layercake's
    /// [`instrumentation_scope`].
    pub fn from_providers<M, P>(meters: &M, tracers: &P) -> OtelConfig
    where
        M: MeterProvider + ?Sized,
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Send + Sync + 'static,
    {
        OtelConfig::new(
            meters.meter_with_scope(instrumentation_scope()),
            tracers.tracer_with_scope(instrumentation_scope()),
        )
    }

    /// Report through the global meter and tracer providers (as installed when the cache is
    /// built).
    pub fn global() -> OtelConfig {
        let meter = opentelemetry::global::meter_with_scope(instrumentation_scope());
        let tracer = opentelemetry::global::tracer_with_scope(instrumentation_scope());
        OtelConfig::new(meter, tracer)
    }

    /// No instrumentation for this cache (what the feature being off does; the hot path
    /// checks one `Option`).
    pub fn disabled() -> OtelConfig {
        OtelConfig { parts: None }
    }

    /// Whether a plain L1 hit gets a span (default [`L1HitSpans::InSampledTrace`]).
    pub fn l1_hit_spans(mut self, choice: L1HitSpans) -> OtelConfig {
        if let Some(p) = &mut self.parts {
            p.l1_hit_spans = choice;
        }
        self
    }

    /// Time every operation and record each in `layercake.operation.duration` (and in
    /// [`Stats`](crate::Stats)) instead of a one-in-16 sample per thread (default `false`: two
    /// clock reads and a histogram record cost about as much as an L1 hit).
    pub fn time_every_operation(mut self, on: bool) -> OtelConfig {
        if let Some(p) = &mut self.parts {
            p.time_every_operation = on;
        }
        self
    }
}

// ------------------------------------------------------------------------------ builder glue

/// What the builder collects for OpenTelemetry: the config and the memory tiers to observe.
#[derive(Default)]
pub(crate) struct OtelSetup {
    pub(crate) config: Option<OtelConfig>,
    #[cfg(feature = "memory")]
    memory: Vec<(usize, Weak<layercake_memory::MemoryBackend>)>,
}

impl std::fmt::Debug for OtelSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelSetup")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OtelSetup {
    /// Remember `backend` (tier `position`) if it is a memory backend, for the
    /// `layercake.memory.*` gauges.
    pub(crate) fn note_tier<B: Backend>(&mut self, position: usize, backend: &Arc<B>) {
        #[cfg(feature = "memory")]
        {
            let any: Arc<dyn std::any::Any + Send + Sync> = backend.clone();
            if let Ok(m) = any.downcast::<layercake_memory::MemoryBackend>() {
                self.memory.push((position, Arc::downgrade(&m)));
            }
        }
        #[cfg(not(feature = "memory"))]
        let _ = (position, backend);
    }
}

// ------------------------------------------------------------------------------ counters

const OPS: usize = Op::ALL.len();
const OUTCOMES: usize = Outcome::ALL.len();
/// Tier request outcomes: hit, miss, error, skipped.
const REQ_OUTCOMES: [&str; 4] = ["hit", "miss", "error", "skipped"];
const REQ_HIT: usize = 0;
const REQ_MISS: usize = 1;
const REQ_ERROR: usize = 2;
const REQ_SKIPPED: usize = 3;
const KINDS: [ErrorKind; 10] = [
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::CircuitOpen,
    ErrorKind::Codec,
    ErrorKind::Corrupt,
    ErrorKind::InvalidKey,
    ErrorKind::TooLarge,
    ErrorKind::Config,
    ErrorKind::Unsupported,
    ErrorKind::Loader,
];
/// Index of kinds this version does not know (`ErrorKind` is non-exhaustive).
const KIND_OTHER: usize = KINDS.len();
const STATES: [BreakerState; 3] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
];

fn kind_index(k: ErrorKind) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap_or(KIND_OTHER)
}

fn state_index(s: BreakerState) -> usize {
    match s {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

fn outcome_index(o: Outcome) -> usize {
    o as usize
}

fn op_index(op: Op) -> usize {
    op as usize
}

fn atomics(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

#[inline]
fn bump(slot: Option<&AtomicU64>, n: u64) {
    if let Some(a) = slot {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// The counters behind the observable instruments.
#[derive(Debug)]
pub(crate) struct Counters {
    tiers: usize,
    /// `[tier][op][REQ_*]`.
    requests: Box<[AtomicU64]>,
    /// `[op][outcome]`.
    ops: Box<[AtomicU64]>,
    /// `[tier][kind]` (kinds + other).
    errors: Box<[AtomicU64]>,
    /// `[tier][state]`: transitions into each state.
    breaker: Box<[AtomicU64]>,
    /// `[tier]`.
    write_behind_full: Box<[AtomicU64]>,
    pub(crate) bp_sent: AtomicU64,
    pub(crate) bp_received: AtomicU64,
    pub(crate) bp_publish_failed: AtomicU64,
    pub(crate) bp_lagged: AtomicU64,
    pub(crate) bp_reconnects: AtomicU64,
}

impl Counters {
    fn new(tiers: usize) -> Counters {
        Counters {
            tiers,
            requests: atomics(tiers * OPS * REQ_OUTCOMES.len()),
            ops: atomics(OPS * OUTCOMES),
            errors: atomics(tiers * (KINDS.len() + 1)),
            breaker: atomics(tiers * STATES.len()),
            write_behind_full: atomics(tiers),
            bp_sent: AtomicU64::new(0),
            bp_received: AtomicU64::new(0),
            bp_publish_failed: AtomicU64::new(0),
            bp_lagged: AtomicU64::new(0),
            bp_reconnects: AtomicU64::new(0),
        }
    }

    #[inline]
    fn request(&self, tier: usize, op: Op, outcome: usize) {
        if tier < self.tiers {
            let i = (tier * OPS + op_index(op)) * REQ_OUTCOMES.len() + outcome;
            bump(self.requests.get(i), 1);
        }
    }

    pub(crate) fn error(&self, tier: usize, kind: ErrorKind) {
        if tier < self.tiers {
            bump(
                self.errors.get(tier * (KINDS.len() + 1) + kind_index(kind)),
                1,
            );
        }
    }

    pub(crate) fn breaker_changed(&self, tier: usize, state: BreakerState) {
        if tier < self.tiers {
            bump(
                self.breaker.get(tier * STATES.len() + state_index(state)),
                1,
            );
        }
    }

    pub(crate) fn write_behind_full(&self, tier: usize) {
        bump(self.write_behind_full.get(tier), 1);
    }
}

/// Attribute sets built once per cache, so that recording never builds one.
#[derive(Debug)]
struct Attrs {
    cache: KeyValue,
    tier: Vec<KeyValue>,
    /// `[cache, tier]` per tier.
    per_tier: Vec<[KeyValue; 2]>,
    /// `[cache, tier, op, outcome]`, same index as `Counters::requests`.
    requests: Vec<[KeyValue; 4]>,
    /// `[cache, op, outcome]`, same index as `Counters::ops`.
    ops: Vec<[KeyValue; 3]>,
    /// `[cache, tier, error.type]`, same index as `Counters::errors`.
    errors: Vec<[KeyValue; 3]>,
    /// `[cache, tier, state]`, same index as `Counters::breaker`.
    breaker: Vec<[KeyValue; 3]>,
    /// `[cache, outcome]` for ok / error.
    loader: [[KeyValue; 2]; 2],
    /// `[cache, reason]` for publish_failed / lagged.
    dropped: [[KeyValue; 2]; 2],
    /// The span attribute `layercake.operation`, per op.
    op: Vec<KeyValue>,
    /// The span attribute `layercake.outcome`, per outcome.
    outcome: Vec<KeyValue>,
    reason_miss: KeyValue,
    reason_error: KeyValue,
}

impl Attrs {
    fn new(cache: &str, tiers: &[Arc<str>]) -> Attrs {
        let c = KeyValue::new(ATTR_CACHE, cache.to_owned());
        let tier: Vec<KeyValue> = tiers
            .iter()
            .map(|t| KeyValue::new(ATTR_TIER, t.to_string()))
            .collect();
        let op: Vec<KeyValue> = Op::ALL
            .iter()
            .map(|o| KeyValue::new(ATTR_OPERATION, o.as_str()))
            .collect();
        let outcome: Vec<KeyValue> = Outcome::ALL
            .iter()
            .map(|o| KeyValue::new(ATTR_OUTCOME, o.as_str()))
            .collect();
        let mut requests = Vec::new();
        for t in &tier {
            for o in &op {
                for r in REQ_OUTCOMES {
                    requests.push([
                        c.clone(),
                        t.clone(),
                        o.clone(),
                        KeyValue::new(ATTR_OUTCOME, r),
                    ]);
                }
            }
        }
        let mut ops = Vec::new();
        for o in &op {
            for out in &outcome {
                ops.push([c.clone(), o.clone(), out.clone()]);
            }
        }
        let mut errors = Vec::new();
        let mut breaker = Vec::new();
        for t in &tier {
            for k in KINDS {
                errors.push([
                    c.clone(),
                    t.clone(),
                    KeyValue::new(ATTR_ERROR_TYPE, k.as_str()),
                ]);
            }
            errors.push([
                c.clone(),
                t.clone(),
                KeyValue::new(ATTR_ERROR_TYPE, "other"),
            ]);
            for s in STATES {
                breaker.push([
                    c.clone(),
                    t.clone(),
                    KeyValue::new(ATTR_BREAKER_STATE, s.as_str()),
                ]);
            }
        }
        Attrs {
            per_tier: tier.iter().map(|t| [c.clone(), t.clone()]).collect(),
            loader: [
                [c.clone(), KeyValue::new(ATTR_OUTCOME, "ok")],
                [c.clone(), KeyValue::new(ATTR_OUTCOME, "error")],
            ],
            dropped: [
                [c.clone(), KeyValue::new(ATTR_REASON, "publish_failed")],
                [c.clone(), KeyValue::new(ATTR_REASON, "lagged")],
            ],
            reason_miss: KeyValue::new(ATTR_REASON, "miss"),
            reason_error: KeyValue::new(ATTR_REASON, "error"),
            cache: c,
            tier,
            requests,
            ops,
            errors,
            breaker,
            op,
            outcome,
        }
    }
}

// ------------------------------------------------------------------------------ Otel

/// The per-cache OpenTelemetry state.
pub(crate) struct Otel {
    tracer: BoxedTracer,
    meter: Meter,
    pub(crate) counters: Counters,
    attrs: Attrs,
    op_duration: Histogram<f64>,
    loader_duration: Histogram<f64>,
    l1_hit_spans: L1HitSpans,
    time_every_operation: bool,
    /// Whether the first tier is a memory tier (set once the cache is built): then a
    /// single-key read may open its span after the L1 lookup without a visible error, and
    /// need not read the clock up front.
    fast_first_tier: AtomicBool,
    /// Observable instruments, kept alive with the cache.
    observers: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel")
            .field("counters", &self.counters)
            .field("l1_hit_spans", &self.l1_hit_spans)
            .finish_non_exhaustive()
    }
}

const SPAN_NAMES: [&str; OPS] = [
    "layercake.get",
    "layercake.set",
    "layercake.delete",
    "layercake.get_or_compute",
    "layercake.get_many",
    "layercake.get_or_compute_many",
    "layercake.invalidate",
    "layercake.warm",
];

/// Operations on one key: they get per-tier span events and a serving tier.
fn single_key(op: Op) -> bool {
    matches!(op, Op::Get | Op::GetOrCompute)
}

const NO_TIER: u8 = u8::MAX;

/// Of the operations [`Stats`](crate::Stats) times (one in `Stats::SAMPLE_EVERY` per thread),
/// the share `layercake.operation.duration` records by default: one in this many.
pub const DURATION_SAMPLE_OF_TIMED: u32 = 4;

thread_local! {
    static TIMED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this timed operation goes into the duration histogram (one in
/// [`DURATION_SAMPLE_OF_TIMED`] per thread): an SDK histogram record costs ~130–200 ns here,
/// which at one in four operations would add a quarter of that to every L1 hit.
fn record_this_timing() -> bool {
    TIMED.with(|t| {
        let v = t.get().wrapping_add(1);
        t.set(v);
        v % DURATION_SAMPLE_OF_TIMED == 0
    })
}

impl Otel {
    pub(crate) fn new(config: OtelConfig, cache: &str, tiers: &[Arc<str>]) -> Option<Otel> {
        let p = config.parts?;
        let op_duration = p
            .meter
            .f64_histogram("layercake.operation.duration")
            .with_unit("s")
            .with_description(
                "Duration of public cache operations (a uniform sample: one in 16 per thread \
                 unless time_every_operation; count operations with layercake.operations)",
            )
            .with_boundaries(DURATION_BOUNDARIES.to_vec())
            .build();
        let loader_duration = p
            .meter
            .f64_histogram("layercake.loader.duration")
            .with_unit("s")
            .with_description("Duration of loader calls made by get_or_compute(_many)")
            .with_boundaries(DURATION_BOUNDARIES.to_vec())
            .build();
        Some(Otel {
            tracer: p.tracer,
            meter: p.meter,
            counters: Counters::new(tiers.len()),
            attrs: Attrs::new(cache, tiers),
            op_duration,
            loader_duration,
            l1_hit_spans: p.l1_hit_spans,
            time_every_operation: p.time_every_operation,
            fast_first_tier: AtomicBool::new(false),
            observers: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn time_every_operation(&self) -> bool {
        self.time_every_operation
    }

    /// Start the OpenTelemetry part of an operation.
    ///
    /// A single-key read over a memory L1 may end as an L1 hit without a span; unless it will
    /// get one anyway (see [`L1HitSpans`]), it skips the clock read (~40 ns here, as much as
    /// the rest of the instrumentation) and, if it goes past L1, opens its span then — late by
    /// the L1 lookup, well under a microsecond.
    #[inline]
    pub(crate) fn scope(&self, op: Op) -> OtelScope<'_> {
        let l1_hit_span = match self.l1_hit_spans {
            L1HitSpans::Always => true,
            L1HitSpans::Never => false,
            L1HitSpans::InSampledTrace => {
                Context::map_current(|cx| cx.span().span_context().is_sampled())
            }
        };
        let lazy = single_key(op) && !l1_hit_span && self.fast_first_tier.load(Ordering::Relaxed);
        OtelScope {
            otel: self,
            started: if lazy { None } else { Some(SystemTime::now()) },
            l1_hit_span,
            served_by: AtomicU8::new(NO_TIER),
            span: OnceLock::new(),
        }
    }

    pub(crate) fn loader_done(&self, d: Duration, ok: bool) {
        self.loader_duration
            .record(d.as_secs_f64(), &self.attrs.loader[usize::from(!ok)]);
    }

    fn tier_attr(&self, tier: usize) -> Option<KeyValue> {
        self.attrs.tier.get(tier).cloned()
    }

    fn open_span(&self, op: Op, started: Option<SystemTime>) -> Context {
        let parent = Context::current();
        let mut attributes = Vec::with_capacity(4);
        attributes.push(self.attrs.cache.clone());
        if let Some(o) = self.attrs.op.get(op_index(op)) {
            attributes.push(o.clone());
        }
        let mut builder = SpanBuilder::from_name(Cow::Borrowed(SPAN_NAMES[op_index(op)]))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes);
        if let Some(t) = started {
            builder = builder.with_start_time(t);
        }
        let span = self.tracer.build_with_context(builder, &parent);
        parent.with_span(span)
    }
}

/// The OpenTelemetry part of one operation.
#[derive(Debug)]
pub(crate) struct OtelScope<'t> {
    otel: &'t Otel,
    /// When the operation started; `None` when the span may be opened late (see
    /// [`Otel::scope`]).
    started: Option<SystemTime>,
    /// Whether an L1 hit gets a span.
    l1_hit_span: bool,
    /// The tier that answered a single-key read.
    served_by: AtomicU8,
    /// The span, opened on first need.
    span: OnceLock<Context>,
}

impl OtelScope<'_> {
    fn cx(&self, op: Op) -> &Context {
        self.span
            .get_or_init(|| self.otel.open_span(op, self.started))
    }

    /// The context loaders run in: the operation's span if open, else the caller's.
    pub(crate) fn context(&self) -> Context {
        match self.span.get() {
            Some(cx) => cx.clone(),
            None => Context::current(),
        }
    }

    fn add_event(&self, op: Op, name: &'static str, tier: usize, extra: Option<&KeyValue>) {
        let cx = self.cx(op);
        let span = cx.span();
        if !span.is_recording() {
            return;
        }
        let mut attrs = Vec::with_capacity(2);
        if let Some(t) = self.otel.tier_attr(tier) {
            attrs.push(t);
        }
        if let Some(e) = extra {
            attrs.push(e.clone());
        }
        span.add_event(name, attrs);
    }

    #[inline]
    pub(crate) fn hit(&self, op: Op, tier: usize) {
        self.otel.counters.request(tier, op, REQ_HIT);
        if single_key(op) {
            self.served_by
                .store(u8::try_from(tier).unwrap_or(NO_TIER), Ordering::Relaxed);
            if tier > 0 {
                self.add_event(op, "layercake.hit", tier, None);
            }
        }
    }

    pub(crate) fn miss(&self, op: Op, tier: usize) {
        self.otel.counters.request(tier, op, REQ_MISS);
        if single_key(op) {
            let reason = self.otel.attrs.reason_miss.clone();
            self.add_event(op, "layercake.fall_through", tier, Some(&reason));
        }
    }

    /// A named step from the composer (see `OpScope::event`).
    pub(crate) fn step(&self, op: Op, name: &'static str, tier: usize) {
        match name {
            "fall_through" => {
                self.otel.counters.request(tier, op, REQ_ERROR);
                let reason = self.otel.attrs.reason_error.clone();
                self.add_event(op, "layercake.fall_through", tier, Some(&reason));
            }
            "breaker_skip" => {
                self.otel.counters.request(tier, op, REQ_SKIPPED);
                self.add_event(op, "layercake.breaker_skip", tier, None);
            }
            "corrupt" => self.add_event(op, "layercake.corrupt", tier, None),
            "promotion" => self.add_event(op, "layercake.promotion", tier, None),
            _ => self.add_event(op, "layercake.step", tier, None),
        }
    }

    #[inline]
    pub(crate) fn finish(self, op: Op, outcome: Outcome, elapsed: Option<Duration>) {
        let otel = self.otel;
        let i = op_index(op) * OUTCOMES + outcome_index(outcome);
        bump(otel.counters.ops.get(i), 1);
        if let (Some(d), Some(attrs)) = (elapsed, otel.attrs.ops.get(i))
            && (otel.time_every_operation || record_this_timing())
        {
            otel.op_duration.record(d.as_secs_f64(), attrs);
        }
        let served = self.served_by.load(Ordering::Relaxed);
        if self.span.get().is_none() && outcome == Outcome::Hit && served == 0 && !self.l1_hit_span
        {
            return;
        }
        let cx = self.cx(op);
        let span = cx.span();
        if let Some(o) = otel.attrs.outcome.get(outcome_index(outcome)) {
            span.set_attribute(o.clone());
        }
        if served != NO_TIER
            && let Some(t) = otel.tier_attr(usize::from(served))
        {
            span.set_attribute(t);
        }
        if outcome == Outcome::Error {
            span.set_status(Status::error("layercake operation failed"));
        }
        span.end();
    }
}

// ------------------------------------------------------------------------------ observers

/// Run `f` with the live cache's Otel state, if the cache still exists.
fn with<F: Fn(&Stack, &Otel)>(weak: &Weak<Stack>, f: F) {
    if let Some(inner) = weak.upgrade()
        && let Some(o) = inner.telemetry.otel.as_ref()
    {
        f(&inner, o);
    }
}

/// Report each non-zero counter with its attribute set.
fn observe_nonzero<A: AsRef<[KeyValue]>>(
    obs: &dyn AsyncInstrument<u64>,
    values: &[AtomicU64],
    attrs: &[A],
) {
    for (v, a) in values.iter().zip(attrs) {
        let v = v.load(Ordering::Relaxed);
        if v > 0 {
            obs.observe(v, a.as_ref());
        }
    }
}

/// Register a counter of one backplane figure (reported only when a backplane is set).
fn backplane_counter(
    keep: &mut Keep,
    m: &Meter,
    weak: &Weak<Stack>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    pick: fn(&Counters) -> &AtomicU64,
) {
    counter(
        keep,
        m,
        weak,
        name,
        unit,
        description,
        move |inner, o, obs| {
            if inner.backplane.is_some() {
                obs.observe(
                    pick(&o.counters).load(Ordering::Relaxed),
                    std::slice::from_ref(&o.attrs.cache),
                );
            }
        },
    );
}

/// What an observable instrument's callback reports from the live cache.
type Observe = dyn Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync;

/// Instruments kept alive for as long as the cache's telemetry lives.
type Keep = Vec<Box<dyn std::any::Any + Send + Sync>>;

/// Register an observable counter whose callback reads the live cache (weakly held).
fn counter(
    keep: &mut Keep,
    m: &Meter,
    weak: &Weak<Stack>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    f: impl Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync + 'static,
) {
    let w = weak.clone();
    let f: Box<Observe> = Box::new(f);
    keep.push(Box::new(
        m.u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |obs| with(&w, |inner, o| f(inner, o, obs)))
            .build(),
    ));
}

/// Register an observable gauge whose callback reads the live cache (weakly held).
fn gauge(
    keep: &mut Keep,
    m: &Meter,
    weak: &Weak<Stack>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    f: impl Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync + 'static,
) {
    let w = weak.clone();
    let f: Box<Observe> = Box::new(f);
    keep.push(Box::new(
        m.u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |obs| with(&w, |inner, o| f(inner, o, obs)))
            .build(),
    ));
}

/// Register the observable instruments of a built cache. Callbacks hold a weak reference.
pub(crate) fn observe(inner: &Arc<Stack>, setup: OtelSetup) {
    let Some(otel) = inner.telemetry.otel.as_ref() else {
        return;
    };
    otel.fast_first_tier.store(
        inner.tiers.first().is_some_and(|t| t.kind == "memory"),
        Ordering::Relaxed,
    );
    let m = &otel.meter;
    let mut keep: Keep = Vec::new();
    let weak = Arc::downgrade(inner);

    counter(
        &mut keep,
        m,
        &weak,
        "layercake.requests",
        "{request}",
        "Tier lookups made by read operations, by tier, operation and outcome (hit, miss, error, skipped)",
        move |_, o, obs| {
            observe_nonzero(obs, &o.counters.requests, &o.attrs.requests);
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.operations",
        "{operation}",
        "Public cache operations, by operation and outcome",
        move |_, o, obs| {
            observe_nonzero(obs, &o.counters.ops, &o.attrs.ops);
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.tier.errors",
        "{error}",
        "Failed tier calls (reads, writes, deletes, invalidations), by tier and error kind",
        move |_, o, obs| observe_nonzero(obs, &o.counters.errors, &o.attrs.errors),
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.tier.promotions",
        "{entry}",
        "Entries copied into a tier from a lower one",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(c), Some(a)) = (
                    inner.telemetry.stats.tier(t.position),
                    o.attrs.per_tier.get(t.position),
                ) {
                    obs.observe(c.promotions.load(Ordering::Relaxed), a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.tier.decode_failures",
        "{entry}",
        "Stored copies that failed to decode (corrupt or foreign bytes) and were removed, by tier",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(c), Some(a)) = (
                    inner.telemetry.stats.tier(t.position),
                    o.attrs.per_tier.get(t.position),
                ) {
                    let n = c.corrupt.load(Ordering::Relaxed) + t.backend.corrupt_reads();
                    obs.observe(n, a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.breaker.transitions",
        "{transition}",
        "Circuit-breaker state changes, by tier and new state",
        move |_, o, obs| {
            observe_nonzero(obs, &o.counters.breaker, &o.attrs.breaker);
        },
    );
    gauge(
        &mut keep,
        m,
        &weak,
        "layercake.breaker.state",
        "{state}",
        "1 for the current circuit-breaker state of each tier that has a breaker, 0 for the others",
        move |inner, o, obs| {
            for t in &inner.tiers {
                let Some(b) = &t.breaker else { continue };
                let now = state_index(b.state());
                for s in 0..STATES.len() {
                    if let Some(a) = o.attrs.breaker.get(t.position * STATES.len() + s) {
                        obs.observe(u64::from(s == now), a);
                    }
                }
            }
        },
    );
    backplane_counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.messages.sent",
        "{message}",
        "Backplane messages published after sets, deletes and invalidations",
        |c| &c.bp_sent,
    );
    backplane_counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.messages.received",
        "{message}",
        "Backplane messages from other instances applied to the local tiers",
        |c| &c.bp_received,
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.messages.dropped",
        "{message}",
        "Backplane messages lost: not published (publish_failed) or missed by a lagging listener (lagged)",
        move |inner, o, obs| {
            if inner.backplane.is_some() {
                obs.observe(
                    o.counters.bp_publish_failed.load(Ordering::Relaxed),
                    &o.attrs.dropped[0],
                );
                obs.observe(
                    o.counters.bp_lagged.load(Ordering::Relaxed),
                    &o.attrs.dropped[1],
                );
            }
        },
    );
    backplane_counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.reconnects",
        "{reconnect}",
        "Backplane reconnections (and lag events); each drops the local tiers",
        |c| &c.bp_reconnects,
    );
    gauge(
        &mut keep,
        m,
        &weak,
        "layercake.write_behind.depth",
        "{write}",
        "Writes waiting in a write-behind queue, by tier",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(wb), Some(a)) = (&t.write_behind, o.attrs.per_tier.get(t.position)) {
                    obs.observe(wb.depth() as u64, a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.write_behind.fallbacks",
        "{write}",
        "Writes done in line because the write-behind queue was full",
        move |inner, o, obs| {
            for t in inner.tiers.iter().filter(|t| t.write_behind.is_some()) {
                if let (Some(v), Some(a)) = (
                    o.counters.write_behind_full.get(t.position),
                    o.attrs.per_tier.get(t.position),
                ) {
                    obs.observe(v.load(Ordering::Relaxed), a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.write_behind.failures",
        "{write}",
        "Queued writes that failed in the background (the entry is missing from that tier)",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(wb), Some(a)) = (&t.write_behind, o.attrs.per_tier.get(t.position)) {
                    obs.observe(wb.failures.load(Ordering::Relaxed), a);
                }
            }
        },
    );
    #[cfg(feature = "memory")]
    if !setup.memory.is_empty() {
        let probes = Arc::new(setup.memory);
        let memory_gauge =
            |keep: &mut Keep,
             name: &'static str,
             unit: &'static str,
             description: &'static str,
             read: fn(&layercake_memory::MemoryBackend) -> u64| {
                let p = probes.clone();
                gauge(keep, m, &weak, name, unit, description, move |_, o, obs| {
                    for (pos, mem) in p.iter() {
                        if let (Some(mem), Some(a)) = (mem.upgrade(), o.attrs.per_tier.get(*pos)) {
                            obs.observe(read(&mem), a);
                        }
                    }
                });
            };
        memory_gauge(
            &mut keep,
            "layercake.memory.entries",
            "{entry}",
            "Entries held by a memory tier",
            |mem| mem.entries() as u64,
        );
        memory_gauge(
            &mut keep,
            "layercake.memory.size",
            "By",
            "Weighted bytes held by a memory tier (keys, values and overhead)",
            |mem| mem.weighted_bytes(),
        );
    }
    #[cfg(not(feature = "memory"))]
    let _ = setup;
    otel.observers.lock().extend(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_slot() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(kind_index(*k), i);
        }
        let c = Counters::new(2);
        c.error(1, ErrorKind::Timeout);
        c.error(5, ErrorKind::Timeout); // out of range: ignored
        assert_eq!(c.errors[KINDS.len() + 1 + 1].load(Ordering::Relaxed), 1);
        assert_eq!(
            c.errors
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .sum::<u64>(),
            1
        );
    }

    #[test]
    fn attribute_sets_line_up_with_counters() {
        let tiers: Vec<Arc<str>> = vec![Arc::from("a"), Arc::from("b")];
        let a = Attrs::new("c", &tiers);
        let c = Counters::new(2);
        assert_eq!(a.requests.len(), c.requests.len());
        assert_eq!(a.ops.len(), c.ops.len());
        assert_eq!(a.errors.len(), c.errors.len());
        assert_eq!(a.breaker.len(), c.breaker.len());
        // tier 1, op get_many, outcome miss
        let i = (OPS + op_index(Op::GetMany)) * REQ_OUTCOMES.len() + REQ_MISS;
        let kv: Vec<String> = a.requests[i].iter().map(|k| k.value.to_string()).collect();
        assert_eq!(kv, ["c", "b", "get_many", "miss"]);
        let i = op_index(Op::Warm) * OUTCOMES + outcome_index(Outcome::Error);
        let kv: Vec<String> = a.ops[i].iter().map(|k| k.value.to_string()).collect();
        assert_eq!(kv, ["c", "warm", "error"]);
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome_index(*o), i);
        }
        for (i, o) in Op::ALL.iter().enumerate() {
            assert_eq!(op_index(*o), i);
        }
    }
}
