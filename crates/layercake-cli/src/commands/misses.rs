//! `layercake misses FILE…`: why the cache missed, from the miss reports instances saved
//! (`Cache::save_miss_report`, or periodically with `InsightConfig::save_miss_report`): per
//! file its tiers' hit ratios against their targets, misses by reason and suggestions; with
//! several files, every instance combined, per tier and per namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;

use layercake::{MissReason, MissReasons, SavedMissReport, Timestamp};
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::exit::{FINDINGS, OK, Outcome};
use crate::output;

/// One tier of every instance together.
#[derive(Default)]
struct Combined {
    hits: u64,
    reads: u64,
    misses: MissReasons,
}

pub(crate) fn run(cli: &Cli, files: &[PathBuf]) -> Outcome {
    let saved: Vec<SavedMissReport> = files
        .iter()
        .map(SavedMissReport::read)
        .collect::<layercake::Result<_>>()?;
    // Per tier name, in the order first seen; per (namespace, tier name).
    let mut tiers: Vec<(String, Combined)> = Vec::new();
    let mut namespaces: BTreeMap<(String, String), MissReasons> = BTreeMap::new();
    for s in &saved {
        for (i, t) in s.tiers.iter().enumerate() {
            let at = match tiers.iter().position(|(n, _)| *n == t.tier) {
                Some(at) => at,
                None => {
                    tiers.push((t.tier.clone(), Combined::default()));
                    tiers.len() - 1
                }
            };
            let c = &mut tiers[at].1;
            c.hits += t.hits;
            c.reads += t.reads;
            if let Some(row) = s
                .report
                .rows
                .iter()
                .find(|r| r.position == i && r.namespace.is_none())
            {
                c.misses.add(&row.misses);
            }
        }
        for ns in &s.namespaces {
            for (i, m) in ns.tiers.iter().enumerate() {
                let tier = s
                    .tiers
                    .get(i)
                    .map_or_else(|| format!("#{i}"), |t| t.tier.clone());
                namespaces
                    .entry((ns.namespace.clone(), tier))
                    .or_default()
                    .add(m);
            }
        }
    }
    let missed = saved.iter().any(|s| s.report.missed().next().is_some());
    if cli.json {
        output::print_json(&json!({
            "instances": saved,
            "combined": {
                "tiers": tiers.iter().map(|(name, c)| json!({
                    "tier": name,
                    "hits": c.hits,
                    "reads": c.reads,
                    "hit_ratio": ratio(c.hits, c.reads),
                    "misses": c.misses,
                })).collect::<Vec<Value>>(),
                "namespaces": namespaces.iter().map(|((ns, tier), m)| json!({
                    "namespace": ns,
                    "tier": tier,
                    "misses": m,
                })).collect::<Vec<Value>>(),
            },
            "targets_missed": missed,
        }));
    } else {
        for (s, path) in saved.iter().zip(files) {
            println!(
                "{} — cache {}, saved {}",
                path.display(),
                s.cache,
                output::time(Timestamp(s.saved_at_ms))
            );
            print!("{}", s.report);
            println!();
        }
        if saved.len() > 1 {
            println!("all {} instances:", saved.len());
        }
        let reasons: Vec<String> = MissReason::ALL
            .iter()
            .map(|r| r.as_str().to_uppercase())
            .collect();
        let mut headers = vec!["TIER", "HIT RATIO", "READS"];
        headers.extend(reasons.iter().map(String::as_str));
        let rows: Vec<Vec<String>> = tiers
            .iter()
            .map(|(name, c)| {
                let mut row = vec![
                    name.clone(),
                    format!("{:.1} %", ratio(c.hits, c.reads) * 100.0),
                    c.reads.to_string(),
                ];
                row.extend(MissReason::ALL.iter().map(|&r| c.misses.get(r).to_string()));
                row
            })
            .collect();
        print!("{}", output::table(&headers, &rows));
        if !namespaces.is_empty() {
            println!();
            let mut headers = vec!["NAMESPACE", "TIER"];
            headers.extend(reasons.iter().map(String::as_str));
            let rows: Vec<Vec<String>> = namespaces
                .iter()
                .filter(|(_, m)| m.total() > 0)
                .map(|((ns, tier), m)| {
                    let mut row = vec![ns.clone(), tier.clone()];
                    row.extend(MissReason::ALL.iter().map(|&r| m.get(r).to_string()));
                    row
                })
                .collect();
            print!("{}", output::table(&headers, &rows));
        }
    }
    Ok(if missed { FINDINGS } else { OK })
}

fn ratio(hits: u64, reads: u64) -> f64 {
    if reads == 0 {
        0.0
    } else {
        hits as f64 / reads as f64
    }
}
