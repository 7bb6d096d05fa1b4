//! The instruments: attribute sets built once per cache, the per-cache [`Otel`] state
//! (tracer, histograms; the counters are the cache's one store, `crate::counters`) and the per-operation [`OtelScope`] (lazy span, events,
//! duration sample).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use parking_lot::Mutex;

use super::config::{L1HitSpans, OtelConfig};
use super::{
    ATTR_BREAKER_STATE, ATTR_CACHE, ATTR_ERROR_TYPE, ATTR_OPERATION, ATTR_OUTCOME, ATTR_REASON,
    ATTR_TIER, DURATION_BOUNDARIES,
};
use crate::counters::{KINDS, OPS, OUTCOMES, REQ_OUTCOMES, STATES, op_index, outcome_index};
use crate::stats::Op;
use crate::telemetry::{Outcome, TierRead};

/// Attribute sets built once per cache, so that recording never builds one.
#[derive(Debug)]
pub(super) struct Attrs {
    pub(super) cache: KeyValue,
    pub(super) tier: Vec<KeyValue>,
    /// `[cache, tier]` per tier.
    pub(super) per_tier: Vec<[KeyValue; 2]>,
    /// `[cache, tier, op, outcome]`, same index as `Counters::requests()`.
    pub(super) requests: Vec<[KeyValue; 4]>,
    /// `[cache, op, outcome]`, same index as `Counters::ops()`.
    pub(super) ops: Vec<[KeyValue; 3]>,
    /// `[cache, tier, error.type]`, same index as `Counters::errors_by_kind()`.
    pub(super) errors: Vec<[KeyValue; 3]>,
    /// `[cache, tier, state]`, same index as `Counters::breaker()`.
    pub(super) breaker: Vec<[KeyValue; 3]>,
    /// `[cache, tier, outcome]` per tier, for hit / miss / error.
    pub(super) tier_read: Vec<[KeyValue; 3]>,
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
        let read_outcomes = ["hit", "miss", "error"].map(|o| KeyValue::new(ATTR_OUTCOME, o));
        let tier_read = tier
            .iter()
            .flat_map(|t| {
                read_outcomes
                    .iter()
                    .map(|o| [c.clone(), t.clone(), o.clone()])
            })
            .collect();
        Attrs {
            tier_read,
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
    pub(super) attrs: Attrs,
    pub(super) op_duration: Histogram<f64>,
    pub(super) loader_duration: Histogram<f64>,
    tier_read_duration: Histogram<f64>,
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

/// Of the reads of an in-process tier through the async path, the share
/// `layercake.tier.read.duration` records by default: one in this many per thread (as for
/// operations, `Stats::SAMPLE_EVERY × DURATION_SAMPLE_OF_TIMED`).
pub(super) const TIER_READ_SAMPLE: u32 = 16;

thread_local! {
    static TIER_READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
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
        let tier_read_duration = p
            .meter
            .f64_histogram("layercake.tier.read.duration")
            .with_unit("s")
            .with_description(
                "Duration of tier reads made by read operations, by tier and outcome (every \
                 read of an out-of-process tier; one in 16 per thread of an in-process tier \
                 unless time_every_operation)",
            )
            .with_boundaries(DURATION_BOUNDARIES.to_vec())
            .build();
        Some(Otel {
            tier_read_duration,
            tracer: p.tracer,
            meter: p.meter,
            attrs: Attrs::new(cache, tiers),
            op_duration,
            loader_duration,
            l1_hit_spans: p.l1_hit_spans,
            time_every_operation: p.time_every_operation,
            fast_first_tier: AtomicBool::new(false),
            observers: Mutex::new(Vec::new()),
        })
    }

    /// Time this tier read? Every read of an out-of-process tier; of an in-process tier,
    /// every one with `time_every_operation`, else one in [`TIER_READ_SAMPLE`] per thread.
    #[inline]
    pub(crate) fn tier_read_start(&self, in_process: bool) -> Option<Instant> {
        let timed = !in_process
            || self.time_every_operation
            || TIER_READS.with(|t| {
                let v = t.get().wrapping_add(1);
                t.set(v);
                v % TIER_READ_SAMPLE == 0
            });
        timed.then(Instant::now)
    }

    pub(crate) fn tier_read_done(&self, tier: usize, d: Duration, read: TierRead) {
        let outcome = match read {
            TierRead::Hit => 0,
            TierRead::Miss => 1,
            TierRead::Error => 2,
            TierRead::Skipped => return,
        };
        if let Some(a) = self.attrs.tier_read.get(tier * 3 + outcome) {
            self.tier_read_duration.record(d.as_secs_f64(), a);
        }
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
        if single_key(op) {
            self.served_by
                .store(u8::try_from(tier).unwrap_or(NO_TIER), Ordering::Relaxed);
            if tier > 0 {
                self.add_event(op, "layercake.hit", tier, None);
            }
        }
    }

    pub(crate) fn miss(&self, op: Op, tier: usize) {
        if single_key(op) {
            let reason = self.otel.attrs.reason_miss.clone();
            self.add_event(op, "layercake.fall_through", tier, Some(&reason));
        }
    }

    /// A named step from the composer (see `OpScope::event`): a span event only (the
    /// counting is done once, in the cache's counter store).
    pub(crate) fn step(&self, op: Op, name: &'static str, tier: usize) {
        match name {
            "fall_through" => {
                let reason = self.otel.attrs.reason_error.clone();
                self.add_event(op, "layercake.fall_through", tier, Some(&reason));
            }
            "breaker_skip" => self.add_event(op, "layercake.breaker_skip", tier, None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{Counters, REQ_MISS};

    #[test]
    fn attribute_sets_line_up_with_counters() {
        let tiers: Vec<Arc<str>> = vec![Arc::from("a"), Arc::from("b")];
        let a = Attrs::new("c", &tiers);
        let c = Counters::new(2);
        assert_eq!(a.requests.len(), c.requests().len());
        assert_eq!(a.ops.len(), c.ops().len());
        assert_eq!(a.errors.len(), c.errors_by_kind().len());
        assert_eq!(a.breaker.len(), c.breaker().len());
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
