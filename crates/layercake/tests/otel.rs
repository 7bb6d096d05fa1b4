//! OpenTelemetry instrumentation on real tiers (memory + Redis + PostgreSQL), observed with the
//! SDK's in-memory exporters: exact counts per tier, operation and outcome, the span tree of a
//! `get_or_compute` that misses L1 and hits L3, no key or value in any attribute, and the
//! Prometheus example's scrape endpoint.
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use layercake::otel::{L1HitSpans, OtelConfig};
use layercake::{Backend, Cache, FixedTtl, MemoryBackend, Namespace, PlainKeys, TierOptions, Warm};
use layercake_postgres::{PostgresBackend, PostgresConfig};
use layercake_redis::{RedisBackend, RedisConfig};
use layercake_testkit::services::{require_postgres, require_redis, unique_id};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanId, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

#[allow(
    dead_code,
    unreachable_pub,
    reason = "the example is a program of its own; the test uses only its setup functions"
)]
#[path = "../examples/prometheus.rs"]
mod prometheus_example;

// ------------------------------------------------------------------------------ fixtures

struct Sdk {
    meters: SdkMeterProvider,
    metrics: InMemoryMetricExporter,
    tracers: SdkTracerProvider,
    spans: InMemorySpanExporter,
}

impl Sdk {
    fn new() -> Sdk {
        let metrics = InMemoryMetricExporter::default();
        let meters = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        let spans = InMemorySpanExporter::default();
        let tracers = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        Sdk {
            meters,
            metrics,
            tracers,
            spans,
        }
    }

    fn config(&self) -> OtelConfig {
        OtelConfig::from_providers(&self.meters, &self.tracers).time_every_operation(true)
    }

    /// Collect now and return the latest cumulative export.
    fn collect(&self) -> Metrics {
        self.metrics.reset();
        self.meters.force_flush().unwrap();
        let all = self.metrics.get_finished_metrics().unwrap();
        Metrics::from(all.last().expect("one export"))
    }
}

/// One data point: metric name, attributes (sorted), value (histograms: count).
#[derive(Debug, Default)]
struct Metrics {
    points: Vec<(String, BTreeMap<String, String>, f64)>,
    units: BTreeMap<String, String>,
}

fn attr_map<'a>(it: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    it.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

impl From<&ResourceMetrics> for Metrics {
    fn from(rm: &ResourceMetrics) -> Metrics {
        let mut m = Metrics::default();
        for sm in rm.scope_metrics() {
            for metric in sm.metrics() {
                let name = metric.name().to_owned();
                m.units.insert(name.clone(), metric.unit().to_owned());
                let mut push = |a: BTreeMap<String, String>, v: f64| {
                    m.points.push((name.clone(), a, v));
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            push(attr_map(p.attributes()), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            push(attr_map(p.attributes()), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            push(attr_map(p.attributes()), p.value());
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            push(attr_map(p.attributes()), p.count() as f64);
                        }
                    }
                    other => panic!("unexpected data for {name}: {other:?}"),
                }
            }
        }
        m
    }
}

impl Metrics {
    /// Points of `name` for `cache`, as (the other attributes' values joined by `/`) → value.
    fn of(&self, name: &str, cache: &str, keys: &[&str]) -> BTreeMap<String, f64> {
        self.points
            .iter()
            .filter(|(n, a, _)| {
                n == name && a.get("layercake.cache").map(String::as_str) == Some(cache)
            })
            .map(|(_, a, v)| {
                let k: Vec<&str> = keys
                    .iter()
                    .map(|k| a.get(*k).map_or("-", String::as_str))
                    .collect();
                (k.join("/"), *v)
            })
            .collect()
    }

    fn every_attribute_value(&self) -> Vec<String> {
        self.points
            .iter()
            .flat_map(|(_, a, _)| a.values().cloned())
            .collect()
    }
}

fn expect(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Memory + Redis + PostgreSQL, with its own Redis prefix and PostgreSQL schema.
struct Stack {
    redis: Arc<RedisBackend>,
    pg: Arc<PostgresBackend>,
    schema: String,
}

impl Stack {
    async fn new() -> Stack {
        let redis_url = require_redis();
        let pg_url = require_postgres();
        let prefix = format!("{}:", unique_id("lc-otel-"));
        let schema = unique_id("lc_otel_");
        let redis = RedisBackend::connect(RedisConfig::new(&redis_url).with_key_prefix(&prefix))
            .await
            .unwrap();
        let pg = PostgresBackend::connect(
            PostgresConfig::new(&pg_url)
                .unwrap()
                .with_table(schema.clone(), "cache"),
        )
        .await
        .unwrap();
        Stack {
            redis: Arc::new(redis),
            pg: Arc::new(pg),
            schema,
        }
    }

    /// A cache over a fresh memory tier and this stack's Redis and PostgreSQL.
    fn cache(&self, name: &str, otel: OtelConfig) -> Cache {
        Cache::builder(name)
            .keys(PlainKeys::new(Namespace::new("otel", 1).unwrap()))
            .policy(FixedTtl::new(Duration::from_secs(600)))
            .tier_with(
                MemoryBackend::with_max_bytes(8 << 20).unwrap(),
                TierOptions::new().name("l1"),
            )
            .shared_tier_with(self.redis.clone(), TierOptions::new().name("l2"))
            .shared_tier_with(self.pg.clone(), TierOptions::new().name("l3"))
            .otel(otel)
            .build()
            .unwrap()
    }

    async fn drop_all(self) {
        let _ = self.redis.clear().await;
        let client = self.pg.pool().get().await.unwrap();
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await
            .unwrap();
    }
}

fn span_attrs(s: &SpanData) -> BTreeMap<String, String> {
    attr_map(s.attributes.iter())
}

fn event_list(s: &SpanData) -> Vec<(String, BTreeMap<String, String>)> {
    s.events
        .iter()
        .map(|e| (e.name.to_string(), attr_map(e.attributes.iter())))
        .collect()
}

fn tier(t: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("layercake.tier".to_owned(), t.to_owned())])
}

fn fall_through(t: &str) -> BTreeMap<String, String> {
    let mut m = tier(t);
    m.insert("layercake.reason".to_owned(), "miss".to_owned());
    m
}

// ------------------------------------------------------------------------------ the workload

// Distinctive keys and values, so that "no attribute carries a key or a value" means
// something.
const K_ALPHA: &str = "user-7f3a-alpha";
const K_BRAVO: &str = "user-7f3a-bravo";
const K_CHARLIE: &str = "user-7f3a-charlie";
const K_DELTA: &str = "user-7f3a-delta";
const K_ABSENT: &str = "user-7f3a-absent";
const K_NOPE: &str = "user-7f3a-nope";
const V_BASE: u64 = 987_650;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_workload_on_real_tiers_reports_exact_counts_and_spans() {
    let sdk = Sdk::new();
    let stack = Stack::new().await;
    let writer = stack.cache("otel-writer", sdk.config());
    let reader = stack.cache("otel-reader", sdk.config());
    let keys = [K_ALPHA, K_BRAVO, K_CHARLIE, K_DELTA, K_ABSENT, K_NOPE];

    // The writer stores alpha, bravo and charlie in all three tiers; bravo is then removed
    // from Redis, so that the reader finds it only in PostgreSQL.
    writer.set(K_ALPHA, V_BASE + 1).await.unwrap();
    writer.set(K_BRAVO, V_BASE + 2).await.unwrap();
    writer.set(K_CHARLIE, V_BASE + 3).await.unwrap();
    stack
        .redis
        .delete(&reader.key(K_BRAVO).unwrap())
        .await
        .unwrap();

    // 1. alpha: L1 miss, L2 hit (promoted to L1).
    let got = reader.get::<u64>(K_ALPHA).await.unwrap().unwrap();
    assert_eq!(
        (*got.value, got.source),
        (V_BASE + 1, layercake::Source::Hit { tier: 1 })
    );
    // 2. alpha again: L1 hit (no span: nobody traces this call).
    let got = reader.get::<u64>(K_ALPHA).await.unwrap().unwrap();
    assert_eq!(got.source, layercake::Source::Hit { tier: 0 });
    // 3. bravo through get_or_compute inside a traced request: misses L1 and L2, hits L3,
    //    promoted to L2 and L1; the loader is not called.
    let app = sdk.tracers.tracer("app");
    let request = Context::current_with_span(app.start("request"));
    let got = reader
        .get_or_compute(K_BRAVO, || async {
            Err::<u64, _>(std::io::Error::other("the loader must not run on a hit"))
        })
        .with_context(request.clone())
        .await
        .unwrap();
    assert_eq!(
        (*got.value, got.source),
        (V_BASE + 2, layercake::Source::Hit { tier: 2 })
    );
    request.span().end();
    let request_span = request.span().span_context().span_id();
    // 4. delta: missing everywhere, computed.
    let got = reader
        .get_or_compute(K_DELTA, || async { Ok::<_, std::io::Error>(V_BASE + 4) })
        .await
        .unwrap();
    assert_eq!(got.source, layercake::Source::Computed);
    // 5. absent: a miss at every tier.
    assert!(reader.get::<u64>(K_ABSENT).await.unwrap().is_none());
    // 6. batch: L1 has alpha, bravo, delta; L2 has charlie; nope is nowhere.
    let batch = reader
        .get_many::<u64, _>(&[K_ALPHA, K_BRAVO, K_CHARLIE, K_DELTA, K_NOPE])
        .await
        .unwrap();
    let sources: Vec<Option<layercake::Source>> =
        batch.iter().map(|l| l.as_ref().map(|l| l.source)).collect();
    use layercake::Source::Hit;
    assert_eq!(
        sources,
        [
            Some(Hit { tier: 0 }),
            Some(Hit { tier: 0 }),
            Some(Hit { tier: 1 }),
            Some(Hit { tier: 0 }),
            None
        ]
    );
    // 7. delete, invalidate (matches nothing), warm (an L1 hit), and a bad key.
    reader.delete(K_ALPHA).await.unwrap();
    reader.invalidate_prefix("no-such-prefix-").await.unwrap();
    assert_eq!(reader.warm(Warm::Keys(&[K_DELTA])).await.unwrap(), 1);
    assert!(reader.get::<u64>("bad\u{1}key").await.is_err());

    // ---------------------------------------------------------------- metrics
    let m = sdk.collect();
    let dims = ["layercake.tier", "layercake.operation", "layercake.outcome"];
    assert_eq!(
        m.of("layercake.requests", "otel-reader", &dims),
        expect(&[
            ("l1/get/hit", 1.0),  // 2
            ("l1/get/miss", 2.0), // 1, 5
            ("l2/get/hit", 1.0),  // 1
            ("l2/get/miss", 1.0), // 5
            ("l3/get/miss", 1.0), // 5
            ("l1/get_or_compute/miss", 2.0),
            ("l2/get_or_compute/miss", 2.0),
            ("l3/get_or_compute/hit", 1.0),
            ("l3/get_or_compute/miss", 1.0),
            ("l1/get_many/hit", 3.0),
            ("l1/get_many/miss", 2.0),
            ("l2/get_many/hit", 1.0),
            ("l2/get_many/miss", 1.0),
            ("l3/get_many/miss", 1.0),
            ("l1/warm/hit", 1.0),
        ]),
        "tier requests of the reader"
    );
    assert_eq!(
        m.of("layercake.requests", "otel-writer", &dims),
        BTreeMap::new(),
        "the writer only wrote"
    );
    let op_dims = ["layercake.operation", "layercake.outcome"];
    let ops = expect(&[
        ("get/hit", 2.0),
        ("get/miss", 1.0),
        ("get/error", 1.0),
        ("get_or_compute/hit", 1.0),
        ("get_or_compute/computed", 1.0),
        ("get_many/ok", 1.0),
        ("delete/ok", 1.0),
        ("invalidate/ok", 1.0),
        ("warm/ok", 1.0),
    ]);
    assert_eq!(m.of("layercake.operations", "otel-reader", &op_dims), ops);
    assert_eq!(
        m.of("layercake.operations", "otel-writer", &op_dims),
        expect(&[("set/ok", 3.0)])
    );
    // Every operation was timed (time_every_operation): the histogram counts match.
    assert_eq!(
        m.of("layercake.operation.duration", "otel-reader", &op_dims),
        ops
    );
    assert_eq!(
        m.of(
            "layercake.loader.duration",
            "otel-reader",
            &["layercake.outcome"]
        ),
        expect(&[("ok", 1.0)])
    );
    assert_eq!(
        m.of(
            "layercake.tier.promotions",
            "otel-reader",
            &["layercake.tier"]
        ),
        expect(&[("l1", 3.0), ("l2", 1.0), ("l3", 0.0)]),
        "alpha, bravo and charlie into L1; bravo into L2"
    );
    assert_eq!(
        m.of(
            "layercake.tier.decode_failures",
            "otel-reader",
            &["layercake.tier"]
        ),
        expect(&[("l1", 0.0), ("l2", 0.0), ("l3", 0.0)])
    );
    assert_eq!(
        m.of("layercake.tier.errors", "otel-reader", &["layercake.tier"]),
        BTreeMap::new(),
        "no tier failed"
    );
    // bravo, charlie, delta stay in the reader's L1 (alpha was deleted).
    assert_eq!(
        m.of(
            "layercake.memory.entries",
            "otel-reader",
            &["layercake.tier"]
        ),
        expect(&[("l1", 3.0)])
    );
    let bytes = m.of("layercake.memory.size", "otel-reader", &["layercake.tier"]);
    assert!(bytes["l1"] > 0.0, "{bytes:?}");
    assert_eq!(m.units["layercake.memory.size"], "By");
    assert_eq!(m.units["layercake.operation.duration"], "s");
    assert_eq!(m.units["layercake.requests"], "{request}");
    // Breakers of Redis and PostgreSQL are closed (memory has none).
    assert_eq!(
        m.of(
            "layercake.breaker.state",
            "otel-reader",
            &["layercake.tier", "layercake.breaker.state"]
        ),
        expect(&[
            ("l2/closed", 1.0),
            ("l2/open", 0.0),
            ("l2/half_open", 0.0),
            ("l3/closed", 1.0),
            ("l3/open", 0.0),
            ("l3/half_open", 0.0),
        ])
    );
    // The stats snapshot (no OpenTelemetry involved) agrees.
    let s = reader.stats();
    assert_eq!(
        (s.tiers[0].hits, s.tiers[1].hits, s.tiers[2].hits),
        (5, 2, 1)
    );

    // ---------------------------------------------------------------- spans
    let spans = sdk.spans.get_finished_spans().unwrap();
    let of_reader = |name: &str| -> Vec<&SpanData> {
        spans
            .iter()
            .filter(|s| {
                s.name == name
                    && span_attrs(s).get("layercake.cache").map(String::as_str)
                        == Some("otel-reader")
            })
            .collect()
    };
    // The span tree of step 3: request -> layercake.get_or_compute, events in order.
    let goc = of_reader("layercake.get_or_compute");
    assert_eq!(goc.len(), 2, "bravo (hit at L3) and delta (computed)");
    let bravo = goc
        .iter()
        .find(|s| s.parent_span_id == request_span)
        .expect("the get_or_compute of bravo is a child of the request span");
    assert_eq!(
        bravo.span_context.trace_id(),
        request.span().span_context().trace_id()
    );
    assert_eq!(
        span_attrs(bravo),
        BTreeMap::from([
            ("layercake.cache".to_owned(), "otel-reader".to_owned()),
            (
                "layercake.operation".to_owned(),
                "get_or_compute".to_owned()
            ),
            ("layercake.outcome".to_owned(), "hit".to_owned()),
            ("layercake.tier".to_owned(), "l3".to_owned()),
        ])
    );
    let events = event_list(bravo);
    assert_eq!(
        events[..3],
        [
            ("layercake.fall_through".to_owned(), fall_through("l1")),
            ("layercake.fall_through".to_owned(), fall_through("l2")),
            ("layercake.hit".to_owned(), tier("l3")),
        ],
        "{events:#?}"
    );
    // The two promotions run concurrently: both are there, after the hit.
    let promoted: BTreeSet<String> = events[3..]
        .iter()
        .map(|(n, a)| {
            assert_eq!(n, "layercake.promotion");
            a["layercake.tier"].clone()
        })
        .collect();
    assert_eq!(events.len(), 5, "{events:#?}");
    assert_eq!(promoted, BTreeSet::from(["l1".to_owned(), "l2".to_owned()]));
    assert!(bravo.start_time <= bravo.end_time);

    // The computed delta: a root span (nobody traced it).
    let delta = goc
        .iter()
        .find(|s| s.parent_span_id != request_span)
        .unwrap();
    assert_eq!(delta.parent_span_id, SpanId::INVALID);
    assert_eq!(span_attrs(delta)["layercake.outcome"], "computed");
    assert!(!span_attrs(delta).contains_key("layercake.tier"));
    assert_eq!(
        event_list(delta),
        [
            ("layercake.fall_through".to_owned(), fall_through("l1")),
            ("layercake.fall_through".to_owned(), fall_through("l2")),
            ("layercake.fall_through".to_owned(), fall_through("l3")),
        ]
    );

    // layercake.get: alpha at L2 (1), absent (5), the bad key (error); the L1 hit of step 2
    // had no span.
    let gets = of_reader("layercake.get");
    let outcomes: BTreeSet<(String, Option<String>)> = gets
        .iter()
        .map(|s| {
            let a = span_attrs(s);
            (
                a["layercake.outcome"].clone(),
                a.get("layercake.tier").cloned(),
            )
        })
        .collect();
    assert_eq!(gets.len(), 3, "{outcomes:?}");
    assert_eq!(
        outcomes,
        BTreeSet::from([
            ("hit".to_owned(), Some("l2".to_owned())),
            ("miss".to_owned(), None),
            ("error".to_owned(), None),
        ])
    );
    let error = gets
        .iter()
        .find(|s| span_attrs(s)["layercake.outcome"] == "error")
        .unwrap();
    assert!(matches!(
        error.status,
        opentelemetry::trace::Status::Error { .. }
    ));
    for name in [
        "layercake.get_many",
        "layercake.delete",
        "layercake.invalidate",
        "layercake.warm",
    ] {
        assert_eq!(of_reader(name).len(), 1, "{name}");
    }
    let sets: Vec<&SpanData> = spans.iter().filter(|s| s.name == "layercake.set").collect();
    assert_eq!(sets.len(), 3);

    // ---------------------------------------------------------------- no keys, no values
    let mut values = m.every_attribute_value();
    for s in &spans {
        values.extend(s.attributes.iter().map(|kv| kv.value.to_string()));
        for e in s.events.iter() {
            values.extend(e.attributes.iter().map(|kv| kv.value.to_string()));
        }
    }
    assert!(values.len() > 100, "{}", values.len());
    let mut secrets: Vec<String> = Vec::new();
    for k in keys {
        secrets.push(k.to_owned());
        secrets.push(reader.key(k).unwrap().as_str().to_owned());
    }
    for v in 1..=4 {
        secrets.push((V_BASE + v).to_string());
    }
    for v in &values {
        for s in &secrets {
            assert!(
                !v.contains(s.as_str()),
                "attribute value {v:?} carries {s:?}"
            );
        }
    }
    let distinct: BTreeSet<&String> = values.iter().collect();
    assert!(
        distinct.len() < 40,
        "bounded attribute values: {distinct:?}"
    );

    writer.clear().await.unwrap();
    stack.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_spans_are_children_of_the_cache_span_and_l1_hit_spans_follow_the_choice() {
    let sdk = Sdk::new();
    let cfg = |spans: L1HitSpans| {
        OtelConfig::from_providers(&sdk.meters, &sdk.tracers).l1_hit_spans(spans)
    };
    let make = |name: &str, spans: L1HitSpans| {
        Cache::builder(name)
            .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
            .otel(cfg(spans))
            .build()
            .unwrap()
    };
    let default = make("default", L1HitSpans::InSampledTrace);
    let always = make("always", L1HitSpans::Always);
    let never = make("never", L1HitSpans::Never);
    let tracer = Arc::new(sdk.tracers.tracer("app"));
    for c in [&default, &always, &never] {
        c.set("h", 2u8).await.unwrap();
        sdk.spans.reset();
        // Untraced L1 hit.
        c.get::<u8>("h").await.unwrap().unwrap();
        // Traced L1 hit.
        let request = Context::current_with_span(tracer.start("request"));
        c.get::<u8>("h")
            .with_context(request.clone())
            .await
            .unwrap();
        request.span().end();
        let spans = sdk.spans.get_finished_spans().unwrap();
        let gets = spans.iter().filter(|s| s.name == "layercake.get").count();
        let want = match c.name() {
            "default" => 1,
            "always" => 2,
            _ => 0,
        };
        assert_eq!(gets, want, "{}", c.name());
        if want > 0 {
            let s = spans.iter().find(|s| s.name == "layercake.get").unwrap();
            assert_eq!(span_attrs(s)["layercake.tier"], "l1");
            assert_eq!(span_attrs(s)["layercake.outcome"], "hit");
            assert!(s.events.is_empty());
        }
    }
    // The loader runs in its own task, inside the cache span's context.
    sdk.spans.reset();
    let t = tracer.clone();
    default
        .get_or_compute("k", move || async move {
            let _s = t.start("load");
            Ok::<_, std::io::Error>(1u8)
        })
        .await
        .unwrap();
    let spans = sdk.spans.get_finished_spans().unwrap();
    let cache_span = spans
        .iter()
        .find(|s| s.name == "layercake.get_or_compute")
        .unwrap();
    let load = spans.iter().find(|s| s.name == "load").unwrap();
    assert_eq!(load.parent_span_id, cache_span.span_context.span_id());
    assert_eq!(
        load.span_context.trace_id(),
        cache_span.span_context.trace_id()
    );
    assert_eq!(span_attrs(cache_span)["layercake.outcome"], "computed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_config_reports_nothing_and_failures_are_counted_by_kind() {
    use layercake::ErrorKind;
    use layercake_testkit::faulty::{Fault, FaultyBackend};
    use layercake_testkit::recording::Operation;
    let sdk = Sdk::new();
    let off = Cache::builder("off")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .otel(OtelConfig::disabled())
        .build()
        .unwrap();
    off.set("a", 1u8).await.unwrap();
    off.get::<u8>("a").await.unwrap();
    assert_eq!(off.stats().tiers[0].hits, 1, "stats still work");

    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let l2 = Arc::new(FaultyBackend::new(inner.clone(), 7));
    let faults = l2.handle();
    let cache = Cache::builder("faulty")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .shared_tier_with(
            l2.clone(),
            TierOptions::new()
                .name("flaky")
                .breaker(Some(layercake::BreakerConfig {
                    failure_threshold: 2,
                    open_for: Duration::from_secs(60),
                })),
        )
        .otel(sdk.config())
        .build()
        .unwrap();
    // A copy in L2 that does not decode: a miss, removed and counted, with a span event.
    let seed = Cache::builder("seed")
        .shared_tier(inner.clone())
        .otel(OtelConfig::disabled())
        .build()
        .unwrap();
    seed.set("c", 7u8).await.unwrap();
    faults.inject(Operation::Get, Fault::FlipValue);
    assert!(cache.get::<u8>("c").await.unwrap().is_none());
    assert!(
        inner.get(&cache.key("c").unwrap()).await.unwrap().is_none(),
        "healed"
    );
    let spans = sdk.spans.get_finished_spans().unwrap();
    let get = spans.iter().rfind(|s| s.name == "layercake.get").unwrap();
    assert_eq!(
        event_list(get),
        [
            ("layercake.fall_through".to_owned(), fall_through("l1")),
            ("layercake.fall_through".to_owned(), fall_through("flaky")),
            ("layercake.corrupt".to_owned(), tier("flaky")),
        ]
    );
    // Then L2 fails: two errors open its breaker, the third read skips it.
    faults.clear_all();
    faults.inject_everywhere(Fault::Fail(ErrorKind::Unavailable));
    for _ in 0..3 {
        assert!(cache.get::<u8>("x").await.unwrap().is_none());
    }
    let m = sdk.collect();
    assert!(
        m.points
            .iter()
            .all(|(_, a, _)| a.get("layercake.cache").map(String::as_str) != Some("off")),
        "a disabled cache reports nothing"
    );
    assert_eq!(
        m.of(
            "layercake.tier.errors",
            "faulty",
            &["layercake.tier", "error.type"]
        ),
        expect(&[("flaky/unavailable", 2.0)])
    );
    assert_eq!(
        m.of(
            "layercake.requests",
            "faulty",
            &["layercake.tier", "layercake.outcome"]
        ),
        expect(&[
            ("l1/miss", 4.0),
            ("flaky/miss", 1.0),
            ("flaky/error", 2.0),
            ("flaky/skipped", 1.0)
        ])
    );
    assert_eq!(
        m.of(
            "layercake.tier.decode_failures",
            "faulty",
            &["layercake.tier"]
        ),
        expect(&[("l1", 0.0), ("flaky", 1.0)])
    );
    assert_eq!(
        m.of(
            "layercake.tier.misses",
            "faulty",
            &["layercake.tier", "layercake.reason"]
        ),
        expect(&[
            ("l1/never_seen", 4.0),
            ("flaky/corrupt", 1.0),
            ("flaky/error", 2.0),
            ("flaky/skipped", 1.0)
        ])
    );
    assert_eq!(
        m.of(
            "layercake.breaker.transitions",
            "faulty",
            &["layercake.tier", "layercake.breaker.state"]
        ),
        expect(&[("flaky/open", 1.0)])
    );
    let state = m.of(
        "layercake.breaker.state",
        "faulty",
        &["layercake.tier", "layercake.breaker.state"],
    );
    assert_eq!(state["flaky/open"], 1.0);
    assert_eq!(state["flaky/closed"], 0.0);
    let spans = sdk.spans.get_finished_spans().unwrap();
    let last = spans.iter().rfind(|s| s.name == "layercake.get").unwrap();
    assert_eq!(
        event_list(last),
        [
            ("layercake.fall_through".to_owned(), fall_through("l1")),
            ("layercake.breaker_skip".to_owned(), tier("flaky")),
        ]
    );
}

// ------------------------------------------------------------------------------ Prometheus

async fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// Sum of the samples of `metric` whose labels include all of `labels`.
fn prom_value(body: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((ls, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if labels
            .iter()
            .all(|(k, v)| ls.split(',').any(|l| l == format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += value.trim().parse::<f64>().unwrap();
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_example_serves_per_tier_hit_counters() {
    let stack = Stack::new().await;
    let prefix = format!("{}:", unique_id("lc-prom-"));
    let lower = prometheus_example::Lower {
        redis: Some((require_redis(), prefix)),
        postgres: Some((require_postgres(), stack.schema.clone())),
    };
    let demo = prometheus_example::build(&lower).await.unwrap();
    prometheus_example::workload(&demo).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(prometheus_example::serve(listener, demo.registry.clone()));

    let (head, body) = scrape(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain"), "{head}");
    let items = prometheus_example::ITEMS as f64;
    let rounds = prometheus_example::ROUNDS as f64;
    let hits = |cache: &str, tier: &str| {
        prom_value(
            &body,
            "layercake_requests_total",
            &[
                ("layercake_cache", cache),
                ("layercake_tier", tier),
                ("layercake_outcome", "hit"),
            ],
        )
    };
    assert_eq!(hits("demo", "memory"), Some(items * rounds), "{body}");
    assert_eq!(hits("demo", "redis"), None);
    assert_eq!(hits("demo-restarted", "memory"), None);
    assert_eq!(hits("demo-restarted", "redis"), Some(items));
    // Five absent keys per round missed every tier.
    for tier in ["memory", "redis", "postgres"] {
        let misses = prom_value(
            &body,
            "layercake_requests_total",
            &[
                ("layercake_cache", "demo"),
                ("layercake_tier", tier),
                ("layercake_operation", "get"),
                ("layercake_outcome", "miss"),
            ],
        );
        assert_eq!(misses, Some(5.0 * rounds), "{tier}");
    }
    assert_eq!(
        prom_value(
            &body,
            "layercake_operations_total",
            &[
                ("layercake_cache", "demo"),
                ("layercake_operation", "get_or_compute"),
                ("layercake_outcome", "computed"),
            ],
        ),
        Some(items)
    );
    assert_eq!(
        prom_value(
            &body,
            "layercake_loader_duration_seconds_count",
            &[("layercake_cache", "demo")],
        ),
        Some(items)
    );
    assert!(
        prom_value(
            &body,
            "layercake_memory_size_bytes",
            &[("layercake_cache", "demo"), ("layercake_tier", "memory")]
        )
        .is_some_and(|b| b > 0.0),
        "{body}"
    );

    let (head, _) = scrape(addr, "/other").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    server.abort();
    prometheus_example::clean_up(&demo).await;
    if let Some(r) = &demo.restarted {
        let _ = r.clear().await;
    }
    stack.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_and_write_behind_are_reported() {
    use layercake::WriteMode;
    use layercake_redis::{RedisBackplane, RedisBackplaneConfig};
    let sdk = Sdk::new();
    let url = require_redis();
    let prefix = format!("{}:", unique_id("lc-otel-bp-"));
    let channel = unique_id("lc-otel-bp-channel-");
    let instance = |name: &'static str| {
        let (url, prefix, channel, cfg) =
            (url.clone(), prefix.clone(), channel.clone(), sdk.config());
        async move {
            let l2 = RedisBackend::connect(RedisConfig::new(&url).with_key_prefix(&prefix))
                .await
                .unwrap();
            let bp = RedisBackplane::for_backend(&l2, RedisBackplaneConfig::new(channel))
                .await
                .unwrap();
            Cache::builder(name)
                .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
                .tier_with(
                    l2,
                    TierOptions::new()
                        .name("redis")
                        .write_mode(WriteMode::Behind { capacity: 64 }),
                )
                .backplane(Arc::new(bp))
                .otel(cfg)
                .build()
                .unwrap()
        }
    };
    let a = instance("bp-a").await;
    let b = instance("bp-b").await;
    b.set("k", 1u8).await.unwrap();
    for _ in 0..500 {
        if a.stats().backplane_applied >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.stats().backplane_applied, 1);
    b.shutdown().await;
    let m = sdk.collect();
    let one = |name: &str, cache: &str| m.of(name, cache, &[]).get("").copied();
    assert_eq!(one("layercake.backplane.messages.sent", "bp-b"), Some(1.0));
    assert_eq!(one("layercake.backplane.messages.sent", "bp-a"), Some(0.0));
    assert_eq!(
        one("layercake.backplane.messages.received", "bp-a"),
        Some(1.0)
    );
    assert_eq!(one("layercake.backplane.reconnects", "bp-a"), Some(0.0));
    assert_eq!(
        m.of(
            "layercake.backplane.messages.dropped",
            "bp-b",
            &["layercake.reason"]
        ),
        expect(&[("lagged", 0.0), ("publish_failed", 0.0)])
    );
    // B's write went through the write-behind queue, flushed by shutdown.
    for name in [
        "layercake.write_behind.depth",
        "layercake.write_behind.fallbacks",
        "layercake.write_behind.failures",
    ] {
        assert_eq!(
            m.of(name, "bp-b", &["layercake.tier"]),
            expect(&[("redis", 0.0)]),
            "{name}"
        );
    }
    let key = b.key("k").unwrap();
    let direct = RedisBackend::connect(RedisConfig::new(&url).with_key_prefix(&prefix))
        .await
        .unwrap();
    assert!(
        direct.get(&key).await.unwrap().is_some(),
        "flushed to Redis"
    );
    direct.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_are_reported_per_tier() {
    use layercake::{ErrorKind, RepairConfig, Source};
    use layercake_testkit::faulty::{Fault, FaultyBackend};
    use layercake_testkit::recording::Operation;
    let sdk = Sdk::new();
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let l2 = Arc::new(FaultyBackend::new(inner.clone(), 3));
    let l3: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let faults = l2.handle();
    let cache = Cache::builder("repairs")
        .shared_tier(l1.clone())
        .shared_tier_with(
            l2.clone(),
            TierOptions::new()
                .name("flaky")
                .scope(layercake::Scope::Shared),
        )
        .shared_tier_with(l3, TierOptions::new().name("l3"))
        .repairs(RepairConfig::new().with_retry_every(Duration::from_millis(20)))
        .otel(sdk.config())
        .build()
        .unwrap();
    cache.set("k", 1u8).await.unwrap();
    for op in [Operation::Set, Operation::Delete] {
        faults.inject(op, Fault::Fail(ErrorKind::Unavailable));
    }
    cache.set("k", 2u8).await.unwrap();
    // A read with an empty L1 skips the tier where the repair is pending.
    l1.clear().await.unwrap();
    let got = cache.get::<u8>("k").await.unwrap().unwrap();
    assert_eq!((*got.value, got.source), (2, Source::Hit { tier: 2 }));
    let spans = sdk.spans.get_finished_spans().unwrap();
    let get = spans.iter().rfind(|s| s.name == "layercake.get").unwrap();
    assert!(
        event_list(get).contains(&("layercake.repair_pending".to_owned(), tier("flaky"))),
        "{:?}",
        event_list(get)
    );
    let start = std::time::Instant::now();
    while cache.stats().tiers[1].repairs.failed == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no repair attempt"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = sdk.collect();
    let per_tier = |name: &str| m.of(name, "repairs", &["layercake.tier"]);
    assert_eq!(
        per_tier("layercake.repair.pending"),
        expect(&[("l1", 0.0), ("flaky", 1.0), ("l3", 0.0)])
    );
    assert_eq!(per_tier("layercake.repair.notes")["flaky"], 1.0);
    assert!(per_tier("layercake.repair.failures")["flaky"] >= 1.0);
    assert!(per_tier("layercake.repair.oldest_pending_age")["flaky"] >= 0.0);
    assert_eq!(m.units["layercake.repair.oldest_pending_age"], "s");
    faults.clear_all();
    let start = std::time::Instant::now();
    while cache.stats().tiers[1].repairs.pending > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never repaired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = sdk.collect();
    let per_tier = |name: &str| m.of(name, "repairs", &["layercake.tier"]);
    assert_eq!(per_tier("layercake.repair.pending")["flaky"], 0.0);
    assert_eq!(
        per_tier("layercake.repair.oldest_pending_age")["flaky"],
        0.0
    );
    assert_eq!(
        per_tier("layercake.repair.applied"),
        expect(&[("l1", 0.0), ("flaky", 1.0), ("l3", 0.0)])
    );
    for name in ["layercake.repair.overflows", "layercake.repair.refused"] {
        assert_eq!(per_tier(name)["flaky"], 0.0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_reads_are_timed_by_tier_and_outcome() {
    use layercake::ErrorKind;
    use layercake_testkit::faulty::{Fault, FaultyBackend};
    let sdk = Sdk::new();
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap());
    let l2 = Arc::new(FaultyBackend::new(inner.clone(), 3));
    let faults = l2.handle();
    let cache = Cache::builder("tier-reads")
        .tier(MemoryBackend::with_max_bytes(1 << 20).unwrap())
        .shared_tier_with(l2, TierOptions::new().name("l2").breaker(None))
        .otel(sdk.config())
        .build()
        .unwrap();
    let seed = Cache::builder("seed")
        .shared_tier(inner)
        .otel(OtelConfig::disabled())
        .build()
        .unwrap();
    seed.set("a", 1u8).await.unwrap();
    assert!(cache.get::<u8>("a").await.unwrap().is_some(), "L2 hit");
    assert!(cache.get::<u8>("b").await.unwrap().is_none(), "L2 miss");
    assert_eq!(
        cache
            .get_many::<u8, _>(&["a", "b", "c"])
            .await
            .unwrap()
            .len(),
        3
    );
    faults.inject_everywhere(Fault::Fail(ErrorKind::Unavailable));
    assert!(cache.get::<u8>("d").await.unwrap().is_none(), "L2 error");
    let m = sdk.collect();
    assert_eq!(m.units["layercake.tier.read.duration"], "s");
    // Single-key reads of the memory L1 are synchronous (not tier reads). "a" is in L1 now
    // (promoted): the batch's L1 read finds it, and "b" and "c" go on to L2 together, one
    // batch read that finds nothing.
    assert_eq!(
        m.of(
            "layercake.tier.read.duration",
            "tier-reads",
            &["layercake.tier", "layercake.outcome"]
        ),
        expect(&[
            ("l1/hit", 1.0),
            ("l2/hit", 1.0),
            ("l2/miss", 2.0),
            ("l2/error", 1.0)
        ])
    );
    assert!(
        m.of("layercake.tier.read.duration", "seed", &[]).is_empty(),
        "a disabled cache records nothing"
    );
}
