//! `report.md`: the machine, the method, the targets (met or missed, by how much), every
//! comparison with its figures and ratio, codec costs, field workloads and stampedes; and
//! `ratios-{quick,full}.tsv`, the ratios of the run, which the next run of the same kind
//! shows beside its own so that repeatability can be read off the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::Result;
use crate::harness::{fmt_ns, fmt_rate};
use crate::machine::Machine;
use crate::results::{Comparison, Results};

/// Ratios of a previous run, by comparison id.
pub(crate) type Previous = BTreeMap<String, f64>;

/// Read `ratios-*.tsv` (missing file: empty).
pub(crate) fn read_previous(path: &Path) -> Previous {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (id, r) = l.split_once('\t')?;
            Some((id.to_owned(), r.trim().parse().ok()?))
        })
        .collect()
}

/// Write the ratios of this run.
pub(crate) fn write_ratios(path: &Path, results: &Results) -> Result<()> {
    let mut s = String::new();
    for c in &results.comparisons {
        let _ = writeln!(s, "{}\t{:.4}", c.id, c.ratio.value);
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// What the report is about.
pub(crate) struct Run<'a> {
    /// `quick` or `full`.
    pub(crate) mode: &'a str,
    /// When it started.
    pub(crate) started: String,
    /// How long it took, seconds.
    pub(crate) secs: f64,
    /// The machine.
    pub(crate) machine: &'a Machine,
    /// The previous run of the same mode.
    pub(crate) previous: &'a Previous,
    /// File name of the chart, next to the report.
    pub(crate) chart: &'a str,
    /// The runtime the benchmark ran on.
    pub(crate) runtime: String,
}

fn verdict(c: &Comparison) -> String {
    match (c.target, c.met()) {
        (Some(t), Some(true)) => format!(
            "**met** ({:.0} % headroom)",
            (t.max / c.ratio.value - 1.0) * 100.0
        ),
        (Some(t), Some(false)) => format!(
            "**missed** by {:.0} %",
            (c.ratio.value / t.max - 1.0) * 100.0
        ),
        _ => "—".into(),
    }
}

fn previous_cell(c: &Comparison, previous: &Previous) -> String {
    match previous.get(&c.id) {
        Some(p) => format!("{p:.2}× ({:+.0} %)", (c.ratio.value / p - 1.0) * 100.0),
        None => "—".into(),
    }
}

fn figure(c: &Comparison, side: &crate::harness::Measure) -> String {
    if c.throughput {
        fmt_rate(side.ops_per_sec())
    } else {
        fmt_ns(side.median_ns)
    }
}

/// The whole report as Markdown.
pub(crate) fn render(run: &Run<'_>, results: &Results) -> String {
    let mut s = String::new();
    let m = run.machine;
    let _ = writeln!(s, "# layercake benchmark report\n");
    let _ = writeln!(
        s,
        "A **{}** run of `cargo xtask bench{}`, started {}, {:.0} s long. Every figure below was \
         measured in this run, beside its baseline, in the same process.\n",
        run.mode,
        if run.mode == "quick" { " --quick" } else { "" },
        run.started,
        run.secs
    );
    let _ = writeln!(s, "![headline ratios]({})\n", run.chart);

    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| CPUs (`nproc`) | {} |", m.cpus);
    let _ = writeln!(s, "| CPU model | {} |", m.cpu_model);
    let _ = writeln!(s, "| memory | {} |", m.memory);
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(s, "| rustc | {} |", m.rustc);
    let _ = writeln!(s, "| Redis | {} (local, loopback) |", m.redis);
    let _ = writeln!(s, "| file tier rows written under | {} |", m.file_dir);
    let _ = writeln!(s, "| allocator | {} |", m.allocator);
    let _ = writeln!(s, "| before the run | {} |", m.quiet);
    let _ = writeln!(s, "| PostgreSQL | {} (local, loopback) |", m.postgres);
    let _ = writeln!(
        s,
        "| load average (1 min) | {} at start, {} at end |\n",
        m.load_start, m.load_end
    );

    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "- Every micro-benchmark runs its baseline and its subjects in the same process, in \
         interleaved rounds (the order rotates every round; a warm-up round is discarded), so \
         that machine noise hits every side alike.\n\
         - Fast operations are timed in batches (1000 L1 hits per timing) and divided; network \
         and file operations are timed one by one. A side's figure is the **median of its round \
         medians**; p50 / p99 are over all timed batches (per operation).\n\
         - **ratio** = the median over rounds of (subject round median / baseline round \
         median): each round pairs the sides measured moments apart, so slow swings of the \
         machine's load cancel out. Cost: lower is better; for the 64-in-flight rows the cost \
         per operation, i.e. the inverse of throughput. The range in brackets is the lowest and \
         highest per-round ratio.\n\
         - \"L1 miss\" rows use a cache whose memory L1 is asked first and never filled (routing \
         policy), so the read really misses L1 and hits the tier below. Caches use the default \
         JSON codec and OpenTelemetry disabled unless a row says otherwise.\n\
         - Baselines read the very same bytes: the raw `GET` reads the Redis key the tier wrote, \
         the raw `SELECT` the same row, `std::fs::read` the same file.\n\
         - Runtime: {}; every side runs in a spawned task.\n",
        run.runtime
    );

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(
        s,
        "| target | ratio [round range] | verdict | previous run |\n|---|---|---|---|"
    );
    for c in results.comparisons.iter().filter(|c| c.target.is_some()) {
        let t = c.target.map_or("", |t| t.text);
        let _ = writeln!(
            s,
            "| {t} (`{}`) | {:.2}× [{:.2}–{:.2}] | {} | {} |",
            c.id,
            c.ratio.value,
            c.ratio.lo,
            c.ratio.hi,
            verdict(c),
            previous_cell(c, run.previous)
        );
    }
    let _ = writeln!(s);

    let mut groups: Vec<&str> = Vec::new();
    for c in &results.comparisons {
        if !groups.contains(&c.group) {
            groups.push(c.group);
        }
    }
    let _ = writeln!(s, "## Side by side\n");
    for g in groups {
        let _ = writeln!(s, "### {g}\n");
        let _ = writeln!(
            s,
            "| subject | baseline | baseline | subject | subject p50 / p99 | ratio [round range] | previous run |\n\
             |---|---|---|---|---|---|---|"
        );
        for c in results.comparisons.iter().filter(|c| c.group == g) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} | **{:.2}×** [{:.2}–{:.2}] | {} |",
                c.subject.name,
                c.baseline.name,
                figure(c, &c.baseline),
                figure(c, &c.subject),
                fmt_ns(c.subject.p50_ns),
                fmt_ns(c.subject.p99_ns),
                c.ratio.value,
                c.ratio.lo,
                c.ratio.hi,
                previous_cell(c, run.previous)
            );
        }
        let first = results.comparisons.iter().find(|c| c.group == g);
        if let Some(c) = first {
            let _ = writeln!(
                s,
                "\n{} operations per side, {} per timing.\n",
                c.subject.ops, c.subject.batch
            );
        }
    }

    if !results.codecs.is_empty() {
        let _ = writeln!(s, "## Codec and compression cost\n");
        let _ = writeln!(
            s,
            "Encode and decode of the benchmark document (a title, tags, a score and a text \
             body) with each codec; compression is asked for on every value and kept only when \
             it saves at least 10 %. Per KiB of value (the postcard size).\n"
        );
        let _ = writeln!(
            s,
            "| codec | value | encoded | compression kept | encode / KiB | decode / KiB | round trip / KiB | vs postcard+none |\n\
             |---|---|---|---|---|---|---|---|"
        );
        let mut base = 0.0;
        for r in &results.codecs {
            if r.codec == "json+none" {
                base = results
                    .codecs
                    .iter()
                    .find(|x| x.codec == "postcard+none" && x.value_bytes == r.value_bytes)
                    .map_or(0.0, |x| x.round_trip_ns_per_kib());
            }
            let kib = r.value_bytes as f64 / 1024.0;
            let rt = r.round_trip_ns_per_kib();
            let _ = writeln!(
                s,
                "| {} | {} B | {} B | {} | {} | {} | {} | {:.2}× |",
                r.codec,
                r.value_bytes,
                r.encoded_bytes,
                r.kept,
                fmt_ns(r.encode.median_ns / kib),
                fmt_ns(r.decode.median_ns / kib),
                fmt_ns(rt),
                if base > 0.0 { rt / base } else { 0.0 }
            );
        }
        let _ = writeln!(s);
    }

    if !results.workloads.is_empty() {
        let _ = writeln!(
            s,
            "## Field workloads (four tiers: memory, Redis, PostgreSQL, file)\n"
        );
        let _ = writeln!(
            s,
            "Default tier options (write-through to every tier, PostgreSQL table logged, file \
             durability none). Reads are `get_or_compute` with an instant loader; a read no tier \
             serves costs a load and a write through all four tiers. \"Served by\" is the share \
             of reads each tier answered.\n"
        );
        for w in &results.workloads {
            let _ = writeln!(s, "- **{}**: {}.", w.name, w.description);
        }
        let _ = writeln!(
            s,
            "\n| workload | ops/s | served by L1 / L2 / L3 / L4 / loader | hit ratio at each tier | read p50 / p99 | write p50 / p99 | errors |\n\
             |---|---|---|---|---|---|---|"
        );
        for w in &results.workloads {
            let reads = w.reads.max(1) as f64;
            let mut served: Vec<String> = w
                .tiers
                .iter()
                .map(|t| format!("{:.1} %", 100.0 * t.hits as f64 / reads))
                .collect();
            served.push(format!("{:.1} %", 100.0 * w.loader_calls as f64 / reads));
            let ratios: Vec<String> = w
                .tiers
                .iter()
                .map(|t| {
                    let n = t.hits + t.misses;
                    if n == 0 {
                        "—".into()
                    } else {
                        format!("{:.2}", t.hits as f64 / n as f64)
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} ({} tasks) | {} | {} | {} | {} / {} | {} / {} | {} |",
                w.name,
                w.tasks,
                fmt_rate(w.ops as f64 / w.secs.max(1e-9)),
                served.join(" / "),
                ratios.join(" / "),
                fmt_ns(w.read_p50),
                fmt_ns(w.read_p99),
                fmt_ns(w.write_p50),
                fmt_ns(w.write_p99),
                w.errors
            );
        }
        let _ = writeln!(s);
    }

    if !results.stampedes.is_empty() {
        let _ = writeln!(s, "## Stampede\n");
        let _ = writeln!(
            s,
            "N callers call `get_or_compute` on one key that no tier holds, released together by \
             a barrier; the loader sleeps {} and counts its calls. Repeated on fresh keys over \
             the four-tier stack.\n",
            results
                .stampedes
                .first()
                .map_or(String::new(), |r| fmt_ns(r.loader_ns))
        );
        let _ = writeln!(
            s,
            "| callers per key | keys | loader calls | coalesced callers | caller p50 / p99 | errors |\n\
             |---|---|---|---|---|---|"
        );
        for r in &results.stampedes {
            let _ = writeln!(
                s,
                "| {} | {} | **{}** (ideal {}) | {} | {} / {} | {} |",
                r.callers,
                r.keys,
                r.loader_calls,
                r.keys,
                r.coalesced,
                fmt_ns(r.p50),
                fmt_ns(r.p99),
                r.errors
            );
        }
        let _ = writeln!(s);
    }

    if !results.glue.is_empty() {
        glue_section(&mut s, results);
    }

    if !results.memory.is_empty() {
        memory_section(&mut s, results);
    }

    if !results.insight.is_empty() {
        let _ = writeln!(s, "## Hot-set restart\n");
        for n in &results.insight {
            let _ = writeln!(s, "- {n}");
        }
        let _ = writeln!(s);
    }

    if !results.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in &results.notes {
            let _ = writeln!(s, "- {n}");
        }
        let _ = writeln!(s);
    }
    s
}

/// The comparison with hand-written glue, as throughput ratios (higher is better for
/// layercake), with the hit ratios and L1 sizes of both sides and their single-call latencies.
fn glue_section(s: &mut String, results: &Results) {
    let _ = writeln!(
        s,
        "## Against hand-written glue (moka + redis-rs + serde_json)\n"
    );
    let _ = writeln!(
        s,
        "What a user writes without layercake: a moka `future::Cache` of {} entries in front of \
         a redis-rs `ConnectionManager`, values as JSON (`get`, else `try_get_with` that reads \
         Redis and on a miss computes and `SET … EX`; a set is `SET … EX` then a moka insert). \
         layercake: a memory L1 bounded to the same number of entries (its byte bound is that \
         many times the mean weight of a sample of the workload's entries) over the Redis tier, \
         default options but OpenTelemetry off and the Redis operation timeout and the tier's \
         read timeout at 2 s. Both sides on a Tokio multi-thread runtime of 2 workers, 16 \
         tasks, 90 % `get_or_compute` / 10 % `set` over 50 000 keys of ~1 KiB, all of them in \
         Redis beforehand (each side under its own prefix); interleaved rounds. The ratio is **layercake's throughput / the hand-written \
         one** (higher is better; the median of the per-round ratios, range in brackets).\n",
        crate::handwritten::L1_ENTRIES
    );
    let _ = writeln!(
        s,
        "The CPU columns are the time each side's operations cost, per operation, in this \
         process (all threads) and in the Redis server (when it runs on this host): on a \
         machine whose cores are busy, throughput is the inverse of their sum. The system \
         calls are this process's reads and writes per operation (the reading of the counters \
         adds a few per batch of thousands of operations).\n"
    );
    let _ = writeln!(
        s,
        "| workload | hand-written | layercake | throughput ratio [round range] | client CPU / op hand / layercake | Redis CPU / op hand / layercake | system calls / op hand / layercake | L1 hit ratio hand / layercake | L1 entries at the end hand / layercake | values computed hand / layercake | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    let cpu = |m: &crate::harness::Measure, server: bool| match m.cpu {
        Some(c) if !server => fmt_ns(c.client_ns),
        Some(c) => c.server_ns.map_or_else(|| "—".to_owned(), fmt_ns),
        None => "—".to_owned(),
    };
    let calls = |m: &crate::harness::Measure| {
        m.cpu
            .and_then(|c| c.syscalls)
            .map_or_else(|| "—".to_owned(), |n| format!("{n:.2}"))
    };
    for r in &results.glue {
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{:.2}×** [{:.2}–{:.2}] | {} / {} | {} / {} | {} / {} | {:.3} / {:.3} | {} / {} | {} / {} | {} |",
            r.workload,
            fmt_rate(r.hand.ops_per_sec()),
            fmt_rate(r.layercake.ops_per_sec()),
            1.0 / r.ratio.value,
            1.0 / r.ratio.hi,
            1.0 / r.ratio.lo,
            cpu(&r.hand, false),
            cpu(&r.layercake, false),
            cpu(&r.hand, true),
            cpu(&r.layercake, true),
            calls(&r.hand),
            calls(&r.layercake),
            r.hand_hit_ratio,
            r.layercake_hit_ratio,
            r.hand_entries,
            r.layercake_entries,
            r.computed.0,
            r.computed.1,
            r.errors
        );
    }
    let singles: Vec<&Comparison> = results
        .comparisons
        .iter()
        .filter(|c| c.id.starts_with("hand.l"))
        .collect();
    if !singles.is_empty() {
        let _ = writeln!(
            s,
            "\nSingle `get_or_compute` calls, one in flight, timed one by one (cost ratio \
             layercake / baseline of the round medians, lower is better). The last row puts \
             layercake's L2 hit beside a bare `GET` + JSON decode on the hand-written side's \
             `ConnectionManager`, to show how much of the difference is the connection:\n"
        );
        let _ = writeln!(
            s,
            "| call | baseline | baseline p50 / p99 | layercake p50 / p99 | cost ratio [round range] |\n\
             |---|---|---|---|---|"
        );
        for c in singles {
            let _ = writeln!(
                s,
                "| {} | {} | {} / {} | {} / {} | **{:.2}×** [{:.2}–{:.2}] |",
                if c.id == "hand.l1_hit" {
                    "L1 hit"
                } else {
                    "L2 hit (L1 miss, promoted)"
                },
                c.baseline.name,
                fmt_ns(c.baseline.p50_ns),
                fmt_ns(c.baseline.p99_ns),
                fmt_ns(c.subject.p50_ns),
                fmt_ns(c.subject.p99_ns),
                c.ratio.value,
                c.ratio.lo,
                c.ratio.hi
            );
        }
    }
    let _ = writeln!(s);
}

/// Resident memory of the L1 against its bound.
fn memory_section(s: &mut String, results: &Results) {
    let _ = writeln!(s, "## Memory tier: resident memory against the bound\n");
    let _ = writeln!(
        s,
        "A child process (fresh heap, the platform's default allocator settings) fills an \
         L1-only cache (default JSON codec, ~1 KiB documents, every entry keeping its decoded \
         value beside its bytes) with unique keys, from one task on a one-worker runtime and \
         from two tasks on a two-worker runtime (glibc then gives each thread its own arena, \
         and memory freed into one is not reused by the other); RSS growth over the start is \
         sampled after every tenth of the churn. Before the churn the cache is filled to 90 % \
         of its bound (nothing evicted): RSS growth per entry then is what a live entry really \
         holds, beside what the tier weighs it.\n"
    );
    let _ = writeln!(
        s,
        "| writers | bound | filled to 90 %: RSS per entry (weighed per entry) | written | entries at the end | weighed (max) / capacity | RSS growth at the end | RSS growth / bound (end; max over samples) | RSS per entry | samples (MiB) |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    for r in &results.memory {
        let end = r.samples.last().copied().unwrap_or(0);
        let max = r.samples.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            s,
            "| {} | {:.0} MiB | {:.0} B ({:.0} B) | {}× | {} | {:.1} / {:.1} MiB | {:.1} MiB | **{:.2}×**; {:.2}× | {:.0} B | {} |",
            r.tasks,
            mib(r.bound),
            r.fill_growth as f64 / r.fill_entries.max(1) as f64,
            r.weighed_max as f64 / r.entries.max(1) as f64,
            r.written_times,
            r.entries,
            mib(r.weighed_max),
            mib(r.capacity),
            mib(end),
            end as f64 / r.bound as f64,
            max as f64 / r.bound as f64,
            end as f64 / r.entries.max(1) as f64,
            r.samples
                .iter()
                .map(|x| format!("{:.1}", mib(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(s);
}
