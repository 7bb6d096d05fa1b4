//! The instruments: attribute sets built once per cache, the per-cache [`Otel`] state
//! (tracer, histograms, counters) and the per-operation [`OtelScope`] (lazy span, events,
//! duration sample).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use parking_lot::Mutex;

use super::config::{L1HitSpans, OtelConfig};
use super::counters::{
    Counters, KINDS, OPS, OUTCOMES, REQ_ERROR, REQ_HIT, REQ_MISS, REQ_OUTCOMES, REQ_SKIPPED,
    STATES, bump, op_index, outcome_index,
};
use super::{
    ATTR_BREAKER_STATE, ATTR_CACHE, ATTR_ERROR_TYPE, ATTR_OPERATION, ATTR_OUTCOME, ATTR_REASON,
    ATTR_TIER, DURATION_BOUNDARIES,
};
use crate::stats::Op;
use crate::telemetry::Outcome;

/// Attribute sets built once per cache, so that recording never builds one.
#[derive(Debug)]
pub(super) struct Attrs {
    pub(super) cache: KeyValue,
    pub(super) tier: Vec<KeyValue>,
    /// `[cache, tier]` per tier.
    pub(super) per_tier: Vec<[KeyValue; 2]>,
    /// `[cache, tier, op, outcome]`, same index as `Counters::requests`.
    pub(super) requests: Vec<[KeyValue; 4]>,
    /// `[cache, op, outcome]`, same index as `Counters::ops`.
    pub(super) ops: Vec<[KeyValue; 3]>,
    /// `[cache, tier, error.type]`, same index as `Counters::errors`.
    pub(super) errors: Vec<[KeyValue; 3]>,
    /// `[cache, tier, state]`, same index as `Counters::breaker`.
    pub(super) breaker: Vec<[KeyValue; 3]>,
    /// `[cache, outcome]` for ok / error.
    pub(super) loader: [[KeyValue; 2]; 2],
    /// `[cache, reason]` for publish_failed / lagged.
    pub(super) dropped: [[KeyValue; 2]; 2],
    /// The span attribute `layercake.operation`, per op.
    pub(super) op: Vec<KeyValue>,
    /// The span attribute `layercake.outcome`, per outcome.
    pub(super) outcome: Vec<KeyValue>,
    pub(super) reason_miss: KeyValue,
    pub(super) reason_error: KeyValue,
}

impl Attrs {
    pub(super) fn new(cache: &str, tiers: &[Arc<str>]) -> Attrs {
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
    pub(super) tracer: BoxedTracer,
    pub(super) meter: Meter,
    pub(crate) counters: Counters,
    pub(super) attrs: Attrs,
    pub(super) op_duration: Histogram<f64>,
    pub(super) loader_duration: Histogram<f64>,
    l1_hit_spans: L1HitSpans,
    pub(super) time_every_operation: bool,
    /// Whether the first tier is in-process (set once the cache is built): then a
    /// single-key read may open its span after the L1 lookup without a visible error, and
    /// need not read the clock up front.
    pub(super) fast_first_tier: AtomicBool,
    /// Observable instruments, kept alive with the cache.
    pub(super) observers: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel")
            .field("counters", &self.counters)
            .field("l1_hit_spans", &self.l1_hit_spans)
            .finish_non_exhaustive()
    }
}

pub(super) const SPAN_NAMES: [&str; OPS] = [
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
pub(super) fn single_key(op: Op) -> bool {
    matches!(op, Op::Get | Op::GetOrCompute)
}

pub(super) const NO_TIER: u8 = u8::MAX;

/// Of the operations [`Stats`](crate::Stats) times (one in `Stats::SAMPLE_EVERY` per thread),
/// the share `layercake.operation.duration` records by default: one in this many.
pub const DURATION_SAMPLE_OF_TIMED: u32 = 4;

thread_local! {
    static TIMED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this timed operation goes into the duration histogram (one in
/// [`DURATION_SAMPLE_OF_TIMED`] per thread): an SDK histogram record costs ~130–200 ns here,
/// which at one in four operations would add a quarter of that to every L1 hit.
pub(super) fn record_this_timing() -> bool {
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

    pub(super) fn tier_attr(&self, tier: usize) -> Option<KeyValue> {
        self.attrs.tier.get(tier).cloned()
    }

    pub(super) fn open_span(&self, op: Op, started: Option<SystemTime>) -> Context {
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
    pub(super) otel: &'t Otel,
    /// When the operation started; `None` when the span may be opened late (see
    /// [`Otel::scope`]).
    pub(super) started: Option<SystemTime>,
    /// Whether an L1 hit gets a span.
    l1_hit_span: bool,
    /// The tier that answered a single-key read.
    pub(super) served_by: AtomicU8,
    /// The span, opened on first need.
    pub(super) span: OnceLock<Context>,
}

impl OtelScope<'_> {
    pub(super) fn cx(&self, op: Op) -> &Context {
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

    pub(super) fn add_event(
        &self,
        op: Op,
        name: &'static str,
        tier: usize,
        extra: Option<&KeyValue>,
    ) {
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
            "repair_pending" => self.add_event(op, "layercake.repair_pending", tier, None),
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
