//! OpenTelemetry on vs off on an L1 hit: the same memory-only cache contents read through caches
//! that differ only in their `OtelConfig` — disabled, and the OpenTelemetry SDK (a meter
//! provider with a periodic reader (60 s) into an in-memory exporter, a tracer provider with the default always-on sampler) with
//! the defaults; plus two informational variants: every operation timed, and a span on every
//! L1 hit.

use std::sync::Arc;

use layercake::otel::{L1HitSpans, OtelConfig};
use layercake::{Backend, Cache, Codec, TierOptions};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::Result;
use crate::data::{Doc, shuffled};
use crate::env::{everywhere, memory};
use crate::harness::{Plan, cache_gets, interleave};
use crate::results::{Comparison, Results};

/// Target of issue 8 / issue 7.
pub(crate) const TARGET: f64 = 1.3;

fn over(l1: &Arc<dyn Backend>, name: &str, otel: OtelConfig) -> Result<Cache> {
    Ok(Cache::builder(name)
        .shared_tier_with(l1.clone(), TierOptions::new())
        .policy(everywhere())
        .codec(Codec::json())
        .otel(otel)
        .build()?)
}

/// The comparison.
pub(crate) async fn run(results: &mut Results, plan: Plan) -> Result<()> {
    const N: usize = 10_000;
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let tracers = SdkTracerProvider::builder().build();
    let sdk = || OtelConfig::from_providers(&meters, &tracers);
    let l1: Arc<dyn Backend> = Arc::new(memory(64 << 20)?);
    let off = over(&l1, "bench-otel", OtelConfig::disabled())?;
    let on = over(&l1, "bench-otel", sdk())?;
    let timed = over(&l1, "bench-otel", sdk().time_every_operation(true))?;
    let spans = over(&l1, "bench-otel", sdk().l1_hit_spans(L1HitSpans::Always))?;
    let keys: Vec<String> = (0..N).map(|i| format!("otel:{i:06}")).collect();
    for (i, k) in keys.iter().enumerate() {
        off.set(k.as_str(), Doc::sized(i as u64, 1024)).await?;
    }
    let order = shuffled(N, 0x77);
    let (keys, order) = (&keys, &order);
    let key = move |i: u64| keys[order[i as usize % N]].as_str();
    let side = |name: &str, cache: Cache| cache_gets(name, cache, key);
    let sides = vec![
        side("OpenTelemetry off (OtelConfig::disabled)", off),
        side("OpenTelemetry SDK, defaults", on),
        side("SDK, time_every_operation", timed),
        side("SDK, a span on every L1 hit", spans),
    ];
    let m = interleave(plan, sides).await?;
    let group = "OpenTelemetry on vs off (L1 hit, 1 KiB)";
    results.comparisons.push(
        Comparison::new(group, "otel.on", &m[0], &m[1])
            .target(TARGET, "OpenTelemetry on ≤ 1.3× off")
            .headline("L1 hit, OTel on / off"),
    );
    results
        .comparisons
        .push(Comparison::new(group, "otel.timed", &m[0], &m[2]));
    results
        .comparisons
        .push(Comparison::new(group, "otel.spans", &m[0], &m[3]));
    let _ = meters.shutdown();
    let _ = tracers.shutdown();
    Ok(())
}
