//! Side-by-side measurement: every side of a comparison (the baseline and the subjects) runs in
//! the same process, in interleaved rounds, so that machine noise hits all of them alike.
//!
//! - A *side* is a closure that performs a batch of `n` operations starting at operation index
//!   `i` (the index picks the key, so every side visits the same keys in the same order).
//! - One round runs `batches` batches of each side, in an order rotated every round
//!   (A B C, B C A, C A B, …); a warm-up round is run first and discarded.
//! - A batch is timed as a whole and divided by its size: very fast operations (an L1 hit is
//!   ~100 ns) are timed 1000 at a time, slow ones one at a time.
//! - The figure of a side is the median of its round medians; p50 / p99 are over every timed
//!   batch (per operation). A ratio is the median of the per-round ratios subject / baseline
//!   (paired within a round), with the spread of the per-round ratios beside it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use layercake::Cache;

use crate::Result;
use crate::cpu::{CpuPerOp, CpuProbe, CpuTotals};
use crate::data::Doc;

/// One side's batch runner: `(first operation index, operations)`.
pub(crate) type Batch<'a> = Box<dyn FnMut(u64, usize) -> BoxFuture<'a, ()> + Send + 'a>;

/// A named side of a comparison.
pub(crate) struct Side<'a> {
    name: String,
    run: Batch<'a>,
}

impl<'a> Side<'a> {
    /// A side named `name` running batches with `run`.
    pub(crate) fn new(
        name: impl Into<String>,
        run: impl FnMut(u64, usize) -> BoxFuture<'a, ()> + Send + 'a,
    ) -> Side<'a> {
        Side {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// A side whose operation `i` is `cache.get::<Doc>(key(i))`.
pub(crate) fn cache_gets<'a>(
    name: &str,
    cache: Cache,
    key: impl Fn(u64) -> &'a str + Copy + Send + Sync + 'a,
) -> Side<'a> {
    Side::new(name.to_owned(), move |start, n| {
        let cache = cache.clone();
        Box::pin(async move {
            for i in start..start + n as u64 {
                let _ = black_box(cache.get::<Doc>(key(i)).await);
            }
        })
    })
}

/// How much to run: rounds × batches × operations per batch, per side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Measured rounds (a warm-up round comes first).
    pub(crate) rounds: usize,
    /// Batches per side per round.
    pub(crate) batches: usize,
    /// Operations per batch.
    pub(crate) batch: usize,
    /// Read CPU time around each timed batch (see [`crate::cpu`]).
    pub(crate) cpu: Option<CpuProbe>,
}

impl Plan {
    /// A plan.
    pub(crate) const fn new(rounds: usize, batches: usize, batch: usize) -> Plan {
        Plan {
            rounds,
            batches,
            batch,
            cpu: None,
        }
    }

    /// The same plan, reading CPU time with `probe` around each timed batch (outside the
    /// timing; meant for batches of many operations).
    pub(crate) const fn with_cpu(mut self, probe: CpuProbe) -> Plan {
        self.cpu = Some(probe);
        self
    }
}

/// What was measured for one side. Times are nanoseconds per operation.
#[derive(Debug, Clone)]
pub(crate) struct Measure {
    /// Side name.
    pub(crate) name: String,
    /// Median of the round medians.
    pub(crate) median_ns: f64,
    /// Median over every batch.
    pub(crate) p50_ns: f64,
    /// 99th percentile over every batch.
    pub(crate) p99_ns: f64,
    /// Each round's median, in round order.
    pub(crate) rounds: Vec<f64>,
    /// Operations timed.
    pub(crate) ops: u64,
    /// Operations per batch (1 = single operations timed).
    pub(crate) batch: usize,
    /// CPU time per operation, when the plan read it.
    pub(crate) cpu: Option<CpuPerOp>,
}

impl Measure {
    /// Operations per second implied by the median.
    pub(crate) fn ops_per_sec(&self) -> f64 {
        if self.median_ns > 0.0 {
            1e9 / self.median_ns
        } else {
            0.0
        }
    }
}

/// The median of the per-round ratios subject / baseline (each round pairs the two sides
/// measured moments apart, so slow swings of the machine's load cancel out), and the lowest
/// and highest per-round ratio.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ratio {
    /// Median of the per-round ratios.
    pub(crate) value: f64,
    /// Lowest per-round ratio.
    pub(crate) lo: f64,
    /// Highest per-round ratio.
    pub(crate) hi: f64,
}

impl Ratio {
    /// The ratio of `subject` to `baseline`.
    pub(crate) fn of(subject: &Measure, baseline: &Measure) -> Ratio {
        let per_round: Vec<f64> = subject
            .rounds
            .iter()
            .zip(&baseline.rounds)
            .map(|(s, b)| s / b)
            .collect();
        let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_round.iter().copied().fold(0.0, f64::max);
        let mut sorted = per_round.clone();
        sorted.sort_by(f64::total_cmp);
        let value = if sorted.is_empty() {
            subject.median_ns / baseline.median_ns
        } else {
            sorted[sorted.len() / 2]
        };
        Ratio { value, lo, hi }
    }
}

/// Recorded values are picoseconds per operation (so that a 40 ns operation keeps 3
/// significant digits); the range reaches one hour.
fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000_000_000, 3)?)
}

fn quantile_ns(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Run `sides` in interleaved rounds per `plan`; the measures come back in the order given.
pub(crate) async fn interleave(plan: Plan, mut sides: Vec<Side<'_>>) -> Result<Vec<Measure>> {
    let n = sides.len();
    let mut all: Vec<Histogram<u64>> = (0..n).map(|_| histogram()).collect::<Result<_>>()?;
    let mut round_medians: Vec<Vec<f64>> = vec![Vec::with_capacity(plan.rounds); n];
    let mut next_op: Vec<u64> = vec![0; n];
    let mut cpu: Vec<CpuTotals> = vec![CpuTotals::new(); n];
    let batch = plan.batch.max(1);
    for round in 0..=plan.rounds {
        let warmup = round == 0;
        for k in 0..n {
            let s = (k + round) % n;
            let side = &mut sides[s];
            let mut h = histogram()?;
            let batches = if warmup {
                plan.batches.div_ceil(3)
            } else {
                plan.batches
            };
            for _ in 0..batches {
                let before = plan.cpu.map(|p| p.now());
                let start = Instant::now();
                (side.run)(next_op[s], batch).await;
                let el = start.elapsed();
                if let (Some(p), Some(before), false) = (plan.cpu, before, warmup) {
                    cpu[s].add(before, p.now(), batch as u64);
                }
                next_op[s] += batch as u64;
                let per_op_ps = (el.as_nanos() * 1000 / batch as u128).max(1) as u64;
                let _ = h.record(per_op_ps.min(h.high()));
            }
            if !warmup {
                round_medians[s].push(quantile_ns(&h, 0.5));
                let _ = all[s].add(&h);
            }
        }
    }
    Ok(sides
        .iter()
        .enumerate()
        .map(|(i, side)| {
            let mut rm = round_medians[i].clone();
            rm.sort_by(f64::total_cmp);
            let median = if rm.is_empty() { 0.0 } else { rm[rm.len() / 2] };
            Measure {
                name: side.name.clone(),
                median_ns: median,
                p50_ns: quantile_ns(&all[i], 0.5),
                p99_ns: quantile_ns(&all[i], 0.99),
                rounds: round_medians[i].clone(),
                ops: all[i].len() * batch as u64,
                batch,
                cpu: plan.cpu.and_then(|_| cpu[i].per_op()),
            }
        })
        .collect())
}

/// A latency histogram in nanoseconds for the field workloads (one value per operation).
pub(crate) fn latency_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000_000, 3)?)
}

/// Record one operation's latency.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = (d.as_nanos() as u64).clamp(1, h.high());
    let _ = h.record(ns);
}

/// Format nanoseconds for a table: `85 ns`, `12.3 µs`, `4.56 ms`.
pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Format a rate: `1.23 M/s`, `45.6 k/s`.
pub(crate) fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} /s")
    }
}
