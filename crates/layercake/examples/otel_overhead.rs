//! What OpenTelemetry costs on the hottest path: an L1 hit, measured side by side in one run.
//!
//! ```sh
//! cargo run --release -p layercake --features otel --example otel_overhead
//! ```
//!
//! Three caches over identical memory tiers, read in interleaved rounds:
//!
//! - `off`: `OtelConfig::disabled()` — the same code as the feature being off, plus one
//!   `Option` check;
//! - `on`: an SDK meter provider (with a reader) and an SDK tracer provider (batch exporter),
//!   default choices — counters, sampled duration histogram, no span for an untraced L1 hit;
//!   also read inside a sampled parent span (`on, traced request`), where every L1 hit gets
//!   its own `layercake.get` span;
//! - `on+all`: as `on` with `L1HitSpans::Always` and `time_every_operation(true)`.
//!
//! Then it times the pieces alone (clock reads, an atomic add, a histogram record).
//!
//! It prints the best and the median round of each, in ns per hit, and the ratio to `off`. A
//! benchmark, not a test: numbers vary with the machine; only ratios from the same run are
//! comparable.

use std::hint::black_box;
use std::time::Instant;

use layercake::otel::{L1HitSpans, OtelConfig};
use layercake::{Cache, MemoryBackend};
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, global};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

/// Drops spans after the batch processor hands them over (export cost is the exporter's).
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

const KEYS: usize = 1_000;
const OPS_PER_ROUND: usize = 100_000;
const ROUNDS: usize = 41;

async fn build(name: &str, otel: OtelConfig) -> layercake::Result<Cache> {
    let cache = Cache::builder(name)
        .tier(MemoryBackend::with_max_bytes(64 << 20)?)
        .otel(otel)
        .build()?;
    for i in 0..KEYS {
        cache.set(&format!("key-{i}"), i as u64).await?;
    }
    Ok(cache)
}

async fn round(cache: &Cache, keys: &[String], parent: Option<&Context>) -> f64 {
    let start = Instant::now();
    for i in 0..OPS_PER_ROUND {
        let k = keys[i % keys.len()].as_str();
        let got = match parent {
            Some(cx) => {
                let _guard = cx.clone().attach();
                cache.get::<u64>(k).await
            }
            None => cache.get::<u64>(k).await,
        };
        black_box(got.ok().flatten());
    }
    start.elapsed().as_nanos() as f64 / OPS_PER_ROUND as f64
}

/// The cost of the pieces an instrumented L1 hit adds, each alone.
fn primitives(meters: &SdkMeterProvider) {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    const N: u32 = 2_000_000;
    fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_nanos() as f64 / f64::from(n)
    }
    let h = meters
        .meter("bench")
        .f64_histogram("bench.duration")
        .build();
    let attrs = [
        KeyValue::new("layercake.cache", "c"),
        KeyValue::new("layercake.operation", "get"),
        KeyValue::new("layercake.outcome", "hit"),
    ];
    let a = std::sync::atomic::AtomicU64::new(0);
    println!("pieces (ns each):");
    println!(
        "  SystemTime::now {:.1}, Instant::now {:.1}, relaxed fetch_add {:.1}, \
         Context::map_current {:.1}, SDK histogram record (3 attributes) {:.1}",
        per_op(N, || {
            black_box(std::time::SystemTime::now());
        }),
        per_op(N, || {
            black_box(Instant::now());
        }),
        per_op(N, || {
            a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }),
        per_op(N, || {
            black_box(Context::map_current(|cx| {
                cx.span().span_context().is_sampled()
            }));
        }),
        per_op(N, || h.record(black_box(0.000_001), &attrs)),
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> layercake::Result<()> {
    let reader = ManualReader::builder().build();
    let meters = SdkMeterProvider::builder().with_reader(reader).build();
    let tracers = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    global::set_tracer_provider(tracers.clone());

    let off = build("off", OtelConfig::disabled()).await?;
    let on = build("on", OtelConfig::from_providers(&meters, &tracers)).await?;
    let all = build(
        "all",
        OtelConfig::from_providers(&meters, &tracers)
            .l1_hit_spans(L1HitSpans::Always)
            .time_every_operation(true),
    )
    .await?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    // A sampled parent span, as a traced request would have.
    let app = tracers.tracer("app");
    let parent = Context::current_with_span(app.start("request"));

    // Warm up.
    for c in [&off, &on, &all] {
        round(c, &keys, None).await;
    }
    let (mut t_off, mut t_on, mut t_trace, mut t_all) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        t_off.push(round(&off, &keys, None).await);
        t_on.push(round(&on, &keys, None).await);
        t_trace.push(round(&on, &keys, Some(&parent)).await);
        t_all.push(round(&all, &keys, None).await);
    }
    // The parent-attach cost alone, to separate it from the span cost.
    let mut t_attach = vec![];
    for _ in 0..ROUNDS {
        t_attach.push(round(&off, &keys, Some(&parent)).await);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "best round: off {:.1}, on {:.1} ({:.2}x), on+all {:.1} ({:.2}x)",
        min(&t_off),
        min(&t_on),
        min(&t_on) / min(&t_off),
        min(&t_all),
        min(&t_all) / min(&t_off)
    );
    let base = median(&mut t_off);
    let attach = median(&mut t_attach);
    println!("L1 hit, median of {ROUNDS} rounds x {OPS_PER_ROUND} gets over {KEYS} keys:");
    println!("  off                 {base:8.1} ns/op  1.00x");
    for (label, v) in [
        ("on (default)", &mut t_on),
        ("on+all (span+timing)", &mut t_all),
    ] {
        let m = median(v);
        println!("  {label:<20}{m:8.1} ns/op  {:.2}x", m / base);
    }
    let m = median(&mut t_trace);
    println!(
        "  on, traced request  {m:8.1} ns/op  {:.2}x  (off with the same parent attached: {attach:.1} ns/op, {:.2}x)",
        m / base,
        m / attach
    );
    primitives(&meters);
    let stats = on.stats();
    println!(
        "  stats of `on`: {} L1 hits, hit ratio {:.1}%",
        stats.tiers[0].hits,
        stats.hit_ratio() * 100.0
    );
    let _ = tracers.shutdown();
    let _ = meters.shutdown();
    Ok(())
}
