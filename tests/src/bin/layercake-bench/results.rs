//! What a run produces, section by section, before it is written out as a report.

use crate::harness::{Measure, Ratio};

/// A target from the issues: the subject / baseline cost ratio must not exceed `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Highest acceptable cost ratio.
    pub(crate) max: f64,
    /// How the issue states it.
    pub(crate) text: &'static str,
}

/// One subject measured beside its baseline.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    /// Table it belongs to (`L1 hit`, `L2 hit, 1 in flight`, …).
    pub(crate) group: &'static str,
    /// Stable identifier, used to compare runs (`l1.1k.quick_cache`).
    pub(crate) id: String,
    /// The baseline.
    pub(crate) baseline: Measure,
    /// The subject.
    pub(crate) subject: Measure,
    /// subject / baseline.
    pub(crate) ratio: Ratio,
    /// Show throughput (operations per second) rather than latency.
    pub(crate) throughput: bool,
    /// The target, when the issue sets one.
    pub(crate) target: Option<Target>,
    /// Short label in the chart of headline ratios (only headline comparisons have one).
    pub(crate) headline: Option<&'static str>,
}

impl Comparison {
    /// A comparison of `subject` against `baseline`.
    pub(crate) fn new(
        group: &'static str,
        id: impl Into<String>,
        baseline: &Measure,
        subject: &Measure,
    ) -> Comparison {
        Comparison {
            group,
            id: id.into(),
            baseline: baseline.clone(),
            subject: subject.clone(),
            ratio: Ratio::of(subject, baseline),
            throughput: false,
            target: None,
            headline: None,
        }
    }

    /// Set the target.
    pub(crate) fn target(mut self, max: f64, text: &'static str) -> Comparison {
        self.target = Some(Target { max, text });
        self
    }

    /// Mark as a headline ratio with a chart label.
    pub(crate) fn headline(mut self, label: &'static str) -> Comparison {
        self.headline = Some(label);
        self
    }

    /// Report throughput.
    pub(crate) fn throughput(mut self) -> Comparison {
        self.throughput = true;
        self
    }

    /// Whether the target is met (`None` without a target).
    pub(crate) fn met(&self) -> Option<bool> {
        self.target.map(|t| self.ratio.value <= t.max)
    }
}

/// Cost of one codec on one value size.
#[derive(Debug, Clone)]
pub(crate) struct CodecRow {
    /// `json`, `msgpack+lz4`, …
    pub(crate) codec: String,
    /// Size of the value (postcard bytes, about the payload size).
    pub(crate) value_bytes: usize,
    /// Bytes after encoding and compression.
    pub(crate) encoded_bytes: usize,
    /// Compression the codec kept (`none` when it did not save 10 %).
    pub(crate) kept: &'static str,
    /// Encoding.
    pub(crate) encode: Measure,
    /// Decoding.
    pub(crate) decode: Measure,
}

impl CodecRow {
    /// Encode + decode nanoseconds per KiB of value.
    pub(crate) fn round_trip_ns_per_kib(&self) -> f64 {
        (self.encode.median_ns + self.decode.median_ns) / (self.value_bytes as f64 / 1024.0)
    }
}

/// Per-tier counters over a workload's measured phase.
#[derive(Debug, Clone)]
pub(crate) struct TierShare {
    /// Reads served by this tier.
    pub(crate) hits: u64,
    /// Reads that reached this tier and found nothing usable.
    pub(crate) misses: u64,
}

/// One field workload.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadRow {
    /// Name.
    pub(crate) name: &'static str,
    /// What it does.
    pub(crate) description: String,
    /// Concurrent tasks.
    pub(crate) tasks: usize,
    /// Operations in the measured phase.
    pub(crate) ops: u64,
    /// Reads among them.
    pub(crate) reads: u64,
    /// Measured seconds.
    pub(crate) secs: f64,
    /// Per tier.
    pub(crate) tiers: Vec<TierShare>,
    /// Loader calls (reads that no tier could serve).
    pub(crate) loader_calls: u64,
    /// Read latency p50 / p99 (ns).
    pub(crate) read_p50: f64,
    /// Read p99.
    pub(crate) read_p99: f64,
    /// Write latency p50 (ns).
    pub(crate) write_p50: f64,
    /// Write p99.
    pub(crate) write_p99: f64,
    /// Errors returned to callers.
    pub(crate) errors: u64,
}

/// One stampede: `callers` concurrent `get_or_compute` on one missing key, `keys` times.
#[derive(Debug, Clone)]
pub(crate) struct StampedeRow {
    /// Callers per key.
    pub(crate) callers: usize,
    /// Keys stampeded (one after the other).
    pub(crate) keys: usize,
    /// Loader calls counted inside the loader.
    pub(crate) loader_calls: u64,
    /// Calls served by another caller's load (from `stats()`).
    pub(crate) coalesced: u64,
    /// Loader duration (ns).
    pub(crate) loader_ns: f64,
    /// Caller latency p50 (ns).
    pub(crate) p50: f64,
    /// Caller latency p99 (ns).
    pub(crate) p99: f64,
    /// Callers that got an error.
    pub(crate) errors: u64,
}

/// One workload of the comparison with hand-written glue (moka + redis-rs + serde_json).
#[derive(Debug, Clone)]
pub(crate) struct GlueRow {
    /// `Zipf 0.99`, `uniform`.
    pub(crate) workload: &'static str,
    /// Cost ratio layercake / hand-written (the inverse of the throughput ratio).
    pub(crate) ratio: Ratio,
    /// The hand-written side (cost per operation at 16 tasks).
    pub(crate) hand: Measure,
    /// layercake.
    pub(crate) layercake: Measure,
    /// Share of reads the hand-written side's moka answered.
    pub(crate) hand_hit_ratio: f64,
    /// Share of reads layercake's L1 answered.
    pub(crate) layercake_hit_ratio: f64,
    /// Entries in moka at the end.
    pub(crate) hand_entries: u64,
    /// Entries in layercake's L1 at the end.
    pub(crate) layercake_entries: u64,
    /// Reads that computed their value (found it in neither tier), hand-written and
    /// layercake, warm-up included: 0 in the steady state the workload models.
    pub(crate) computed: (u64, u64),
    /// Operations that failed, both sides.
    pub(crate) errors: u64,
}

/// Resident memory of an L1 under a churn of unique keys (measured in a child process).
#[derive(Debug, Clone)]
pub(crate) struct MemoryRow {
    /// Tasks (and runtime workers) writing.
    pub(crate) tasks: usize,
    /// The configured bound, bytes.
    pub(crate) bound: u64,
    /// Entries held at the end.
    pub(crate) entries: u64,
    /// Highest weighed bytes seen.
    pub(crate) weighed_max: u64,
    /// The tier's capacity (the bound rounded to the shards).
    pub(crate) capacity: u64,
    /// How many times the bound was written.
    pub(crate) written_times: u64,
    /// RSS growth over the start after each tenth of the churn, bytes.
    pub(crate) samples: Vec<u64>,
    /// Entries after filling to 90 % of the bound (before the churn, nothing evicted).
    pub(crate) fill_entries: u64,
    /// RSS growth at that point, bytes.
    pub(crate) fill_growth: u64,
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// Side-by-side comparisons.
    pub(crate) comparisons: Vec<Comparison>,
    /// Codec costs.
    pub(crate) codecs: Vec<CodecRow>,
    /// Field workloads.
    pub(crate) workloads: Vec<WorkloadRow>,
    /// Stampedes.
    pub(crate) stampedes: Vec<StampedeRow>,
    /// Against hand-written glue.
    pub(crate) glue: Vec<GlueRow>,
    /// Resident memory of the L1.
    pub(crate) memory: Vec<MemoryRow>,
    /// Hot-set restart figures (one line each).
    pub(crate) insight: Vec<String>,
    /// Notes gathered while running (what a section could not measure, and why).
    pub(crate) notes: Vec<String>,
}
