//! `layercake drift`: compare the copies that the tiers below memory hold for each key under
//! a prefix, and with `--repair --yes` remove the stale ones.
//!
//! For each key, each present copy is compared with the next present copy below it:
//! - **older-above**: the upper copy has an older version than the one below (a write or
//!   delete did not reach the upper tier): the upper copy goes;
//! - **older-below**: the lower copy is older (it would come back once the upper copy
//!   expires): the lower copy goes;
//! - **outlives-lower**: same version, but the upper copy is kept longer than the one below
//!   it (fills never extend a lifetime): the upper copy goes;
//! - **diverged**: same version, different bytes or times: reported, not repaired (no copy is
//!   known to be the right one).
//!
//! A repair re-reads the copy first and removes it only if it is still the one found, then
//! sends a key invalidation on the backplane so running instances drop their memory copy.

use std::collections::{BTreeSet, HashSet};

use layercake::config::NamedTier;
use layercake::core::backplane::{Message, Target};
use layercake::{Entry, Key, Timestamp, system_clock};
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::exit::{FAILED, FINDINGS, Failure, OK, Outcome, USAGE};
use crate::output;
use crate::walk;

/// Options of `drift`.
pub(crate) struct Drift<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) raw: bool,
    pub(crate) max_keys: usize,
    pub(crate) repair: bool,
    pub(crate) yes: bool,
}

/// One stale copy found.
struct Finding {
    key: Key,
    kind: &'static str,
    /// Index (in the tiers below memory) of the copy to remove, and of the copy compared.
    stale: usize,
    other: usize,
    stale_entry: Entry,
    other_entry: Entry,
    repairable: bool,
    action: String,
}

fn same_copy(a: &Entry, b: &Entry) -> bool {
    a.version == b.version && a.created_at == b.created_at && a.retain_until() == b.retain_until()
}

/// Compare `upper` (tier `u`) with `lower` (tier `l`, below it).
fn compare(key: &Key, u: usize, upper: &Entry, l: usize, lower: &Entry) -> Option<Finding> {
    let found = |kind, stale, other, s: &Entry, o: &Entry, repairable| Finding {
        key: key.clone(),
        kind,
        stale,
        other,
        stale_entry: s.clone(),
        other_entry: o.clone(),
        repairable,
        action: String::new(),
    };
    if upper.version < lower.version {
        Some(found("older-above", u, l, upper, lower, true))
    } else if upper.version > lower.version {
        Some(found("older-below", l, u, lower, upper, true))
    } else if upper.retain_until() > lower.retain_until() {
        Some(found("outlives-lower", u, l, upper, lower, true))
    } else if upper.value != lower.value || upper.created_at != lower.created_at {
        Some(found("diverged", u, l, upper, lower, false))
    } else {
        None
    }
}

fn ms_left(e: &Entry, now: Timestamp) -> i64 {
    let r = e.retain_until().0;
    if r >= now.0 {
        i64::try_from(r - now.0).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(now.0 - r).unwrap_or(i64::MAX)
    }
}

async fn repair_one(ctx: &Ctx, tiers: &[NamedTier], f: &Finding) -> Result<String, String> {
    let backend = &tiers[f.stale].backend;
    match backend.get(&f.key).await {
        Ok(Some(now)) if same_copy(&now, &f.stale_entry) => {}
        Ok(Some(_)) => return Ok("kept: changed since it was read".to_owned()),
        Ok(None) => return Ok("gone already".to_owned()),
        Err(e) => return Err(e.to_string()),
    }
    backend.delete(&f.key).await.map_err(|e| e.to_string())?;
    if let Some(bp) = &ctx.tiers.backplane {
        let msg = Message {
            target: Target::Key(f.key.as_str().to_owned()),
            version: 0,
            origin: bp.instance(),
        };
        bp.publish(&msg)
            .await
            .map_err(|e| format!("removed, but the backplane message failed: {e}"))?;
    }
    Ok("removed".to_owned())
}

pub(crate) async fn run(ctx: &Ctx, o: Drift<'_>) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let prefix = ctx.prefix(o.prefix, o.raw);
    // Every key any listing tier holds under the prefix.
    let mut keys = BTreeSet::new();
    let mut capped = false;
    for t in tiers.iter().filter(|t| t.backend.capability().list_keys) {
        let (k, c) = walk::list(&*t.backend, &prefix, o.max_keys)
            .await
            .map_err(|e| Failure {
                code: FAILED,
                message: e.to_string(),
            })?;
        capped |= c;
        keys.extend(k);
    }
    let keys: Vec<Key> = keys.into_iter().take(o.max_keys).collect();
    let mut findings = Vec::new();
    for chunk in keys.chunks(walk::CHUNK) {
        let mut per_tier = Vec::with_capacity(tiers.len());
        for t in &tiers {
            per_tier.push(walk::read(&*t.backend, chunk).await.map_err(|e| Failure {
                code: FAILED,
                message: e.to_string(),
            })?);
        }
        for (i, key) in chunk.iter().enumerate() {
            let present: Vec<(usize, &Entry)> = per_tier
                .iter()
                .enumerate()
                .filter_map(|(t, col)| col[i].as_ref().map(|e| (t, e)))
                .collect();
            let mut seen = HashSet::new();
            for w in present.windows(2) {
                if let Some(f) = compare(key, w[0].0, w[0].1, w[1].0, w[1].1)
                    && seen.insert(f.stale)
                {
                    findings.push(f);
                }
            }
        }
    }
    let repairable = findings.iter().filter(|f| f.repairable).count();
    let mut failed = 0;
    let mut repaired = 0;
    let dry = !(o.repair && o.yes);
    for f in &mut findings {
        f.action = if !f.repairable {
            "report only".to_owned()
        } else if dry {
            format!("would remove the {} copy", tiers[f.stale].name)
        } else {
            match repair_one(ctx, &tiers, f).await {
                Ok(a) => {
                    repaired += usize::from(a == "removed");
                    a
                }
                Err(e) => {
                    failed += 1;
                    format!("error: {e}")
                }
            }
        };
    }
    let now = system_clock().now();
    if ctx.json {
        let list: Vec<Value> = findings
            .iter()
            .map(|f| {
                json!({
                    "key": f.key.as_str(),
                    "kind": f.kind,
                    "stale_tier": tiers[f.stale].name,
                    "other_tier": tiers[f.other].name,
                    "stale_version": f.stale_entry.version,
                    "other_version": f.other_entry.version,
                    "stale_retained_ms": ms_left(&f.stale_entry, now),
                    "other_retained_ms": ms_left(&f.other_entry, now),
                    "action": f.action,
                })
            })
            .collect();
        output::print_json(&json!({
            "prefix": prefix,
            "tiers": tiers.iter().map(|t| t.name).collect::<Vec<_>>(),
            "keys_walked": keys.len(),
            "capped": capped,
            "findings": list,
            "repaired": repaired,
            "dry_run": dry,
        }));
    } else {
        println!(
            "prefix {prefix:?}: {} keys walked in {}{}",
            keys.len(),
            tiers.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
            if capped { " (--max-keys reached)" } else { "" }
        );
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                vec![
                    f.key.as_str().to_owned(),
                    f.kind.to_owned(),
                    format!(
                        "{} v{} ({})",
                        tiers[f.stale].name,
                        f.stale_entry.version,
                        output::duration(f.stale_entry.remaining(now))
                    ),
                    format!(
                        "{} v{} ({})",
                        tiers[f.other].name,
                        f.other_entry.version,
                        output::duration(f.other_entry.remaining(now))
                    ),
                    f.action.clone(),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no drift: every copy agrees with the one below it");
        } else {
            print!(
                "{}",
                output::table(
                    &["KEY", "KIND", "STALE COPY", "COMPARED WITH", "ACTION"],
                    &rows
                )
            );
            if dry && repairable > 0 {
                println!(
                    "{repairable} stale copies; remove them with: layercake drift --repair --yes{}",
                    if o.prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" --prefix '{}'", o.prefix)
                    }
                );
            } else if !dry {
                println!("{repaired} stale copies removed");
            }
        }
    }
    if o.repair && !o.yes && repairable > 0 {
        return Err(Failure {
            code: USAGE,
            message: format!(
                "would remove {repairable} stale copies; run again with --repair --yes"
            ),
        });
    }
    Ok(if failed > 0 {
        FAILED
    } else if findings.is_empty() || (!dry && findings.iter().all(|f| f.repairable)) {
        OK
    } else {
        FINDINGS
    })
}
