//! The public configuration: [`OtelConfig`] (meter, tracer, span and timing choices),
//! [`L1HitSpans`], and what the builder collects for the observers ([`OtelSetup`]).

use std::sync::{Arc, Weak};

use layercake_core::Backend;
use opentelemetry::InstrumentationScope;
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::trace::{Tracer, TracerProvider};

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
    pub(super) parts: Option<Parts>,
}

pub(super) struct Parts {
    pub(super) meter: Meter,
    pub(super) tracer: BoxedTracer,
    pub(super) l1_hit_spans: L1HitSpans,
    pub(super) time_every_operation: bool,
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
    pub(super) memory: Vec<(usize, Weak<layercake_memory::MemoryBackend>)>,
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
