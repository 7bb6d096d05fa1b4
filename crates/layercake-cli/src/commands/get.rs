//! `layercake get KEY`: the value, from the first tier with a fresh copy (else a stale one).
//! Read-only: unlike a service's read, it fills no upper tier.

use layercake::system_clock;
use serde_json::json;

use crate::cli::KeyArg;
use crate::ctx::Ctx;
use crate::exit::{FAILED, Failure, NOT_FOUND, OK, Outcome};
use crate::output;
use crate::view::{self, Copy};

pub(crate) async fn run(ctx: &Ctx, arg: &KeyArg) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let key = ctx.key(arg)?;
    let now = system_clock().now();
    let mut stale = None;
    let mut fresh = None;
    let mut errors = Vec::new();
    for t in &tiers {
        match Copy::from_result(t.backend.get(&key).await) {
            Copy::Present(e) if e.is_fresh(now) => {
                fresh = Some((t.name, e));
                break;
            }
            Copy::Present(e) => {
                if stale.is_none() {
                    stale = Some((t.name, e));
                }
            }
            Copy::Absent => {}
            Copy::Failed(m) => errors.push(format!("{}: {m}", t.name)),
        }
    }
    let Some((tier, entry)) = fresh.or(stale) else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        if ctx.json {
            output::print_json(&json!({"key": key.as_str(), "found": false, "errors": errors}));
        } else {
            eprintln!("{}: in no tier", key.as_str());
        }
        return Ok(if errors.is_empty() { NOT_FOUND } else { FAILED });
    };
    let value = view::decode(&entry).map_err(|e| Failure {
        code: FAILED,
        message: format!("{} (from {tier}): {e}", key.as_str()),
    })?;
    if ctx.json {
        output::print_json(&json!({
            "key": key.as_str(),
            "found": true,
            "tier": tier,
            "fresh": entry.is_fresh(now),
            "remaining_ms": entry.fresh_remaining(now).as_millis() as u64,
            "version": entry.version,
            "value": value,
        }));
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
        );
        eprintln!("(from {tier}, {})", view::life(&entry, now));
    }
    Ok(OK)
}
