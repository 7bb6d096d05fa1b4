//! `layercake del KEY --yes`: delete through the library (every tier, and a backplane message
//! so running instances drop their memory copy), then report each tier before and after.

use layercake::Key;
use layercake::config::NamedTier;
use serde_json::json;

use crate::cli::KeyArg;
use crate::ctx::Ctx;
use crate::exit::{FAILED, Failure, OK, Outcome};
use crate::output;
use crate::view::Copy;

async fn presence(tiers: &[NamedTier], key: &Key) -> Vec<Copy> {
    let mut v = Vec::with_capacity(tiers.len());
    for t in tiers {
        v.push(Copy::from_result(t.backend.get(key).await));
    }
    v
}

fn word(c: &Copy) -> String {
    match c {
        Copy::Present(_) => "present".to_owned(),
        Copy::Absent => "absent".to_owned(),
        Copy::Failed(m) => format!("error: {m}"),
    }
}

pub(crate) async fn run(ctx: &Ctx, arg: &KeyArg, yes: bool) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let key = ctx.key(arg)?;
    if !yes {
        return Err(Failure::usage(format!(
            "would delete {} from every tier ({}); run again with --yes",
            key.as_str(),
            ctx.config.tier_names().join(", ")
        )));
    }
    let before = presence(&tiers, &key).await;
    let cache = ctx.cache()?;
    let result = cache.delete(&key).await;
    let after = presence(&tiers, &key).await;
    if ctx.json {
        let list: Vec<_> = tiers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(t, (b, a))| json!({"tier": t.name, "before": word(b), "after": word(a)}))
            .collect();
        output::print_json(&json!({
            "key": key.as_str(),
            "deleted": result.is_ok(),
            "error": result.as_ref().err().map(ToString::to_string),
            "tiers": list,
            "backplane": ctx.backplane_state(),
        }));
    } else {
        println!("key  {}", key.as_str());
        let rows: Vec<Vec<String>> = tiers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(t, (b, a))| vec![t.name.to_owned(), word(b), word(a)])
            .collect();
        print!("{}", output::table(&["TIER", "BEFORE", "AFTER"], &rows));
        match &ctx.tiers.backplane {
            Some(bp) => println!("backplane: {} message sent to running instances", bp.kind()),
            None => println!(
                "backplane: none configured; other instances keep memory copies until they expire"
            ),
        }
        if let Err(e) = &result {
            eprintln!("error: {e}");
        }
    }
    cache.shutdown().await;
    Ok(if result.is_ok() { OK } else { FAILED })
}
