//! `layercake invalidate --prefix P | --tag T --yes`: remove through the library (every tier,
//! and a backplane message so running instances drop their memory copies), counting the
//! matching keys of each tier before and after.

use layercake::config::NamedTier;
use layercake::{Backend, Selector};
use serde_json::json;

use crate::ctx::Ctx;
use crate::exit::{FAILED, Failure, OK, Outcome};
use crate::output;
use crate::walk;

/// How many keys of `backend` the selector matches (up to `max`), `None` if the tier cannot
/// tell.
async fn count(
    backend: &dyn Backend,
    selector: &Selector,
    max: usize,
) -> Result<(usize, bool), String> {
    match selector {
        Selector::Prefix(p) => walk::list(backend, p, max)
            .await
            .map(|(k, capped)| (k.len(), capped))
            .map_err(|e| e.to_string()),
        Selector::Tag(t) => {
            let (keys, capped) = walk::list(backend, "", max)
                .await
                .map_err(|e| e.to_string())?;
            let entries = walk::read(backend, &keys)
                .await
                .map_err(|e| e.to_string())?;
            let n = entries
                .iter()
                .flatten()
                .filter(|e| e.tags.iter().any(|x| x == t))
                .count();
            Ok((n, capped))
        }
        _ => Err("cannot count".to_owned()),
    }
}

async fn counts(
    tiers: &[NamedTier],
    selector: &Selector,
    max: usize,
) -> Vec<Result<(usize, bool), String>> {
    let mut v = Vec::with_capacity(tiers.len());
    for t in tiers {
        v.push(count(&*t.backend, selector, max).await);
    }
    v
}

fn text(c: &Result<(usize, bool), String>) -> String {
    match c {
        Ok((n, false)) => n.to_string(),
        Ok((n, true)) => format!("{n}+"),
        Err(e) => format!("error: {e}"),
    }
}

pub(crate) async fn run(
    ctx: &Ctx,
    prefix: Option<&str>,
    tag: Option<&str>,
    raw: bool,
    max_keys: usize,
    yes: bool,
) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let selector = match (prefix, tag) {
        (Some(p), None) => Selector::Prefix(ctx.prefix(p, raw)),
        (None, Some(t)) => Selector::Tag(t.to_owned()),
        _ => return Err(Failure::usage("give exactly one of --prefix and --tag")),
    };
    let what = match &selector {
        Selector::Prefix(p) => format!("every key starting with {p:?}"),
        Selector::Tag(t) => format!("every entry tagged {t:?}"),
        _ => String::new(),
    };
    if !yes {
        return Err(Failure::usage(format!(
            "would remove {what} from every tier ({}); run again with --yes",
            ctx.config.tier_names().join(", ")
        )));
    }
    let before = counts(&tiers, &selector, max_keys).await;
    let cache = ctx.cache()?;
    let result = cache.invalidate(selector.clone()).await;
    let after = counts(&tiers, &selector, max_keys).await;
    let (kind, value) = match &selector {
        Selector::Prefix(p) => ("prefix", p.clone()),
        Selector::Tag(t) => ("tag", t.clone()),
        _ => ("", String::new()),
    };
    if ctx.json {
        let list: Vec<_> = tiers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(t, (b, a))| {
                json!({
                    "tier": t.name,
                    "before": b.as_ref().ok().map(|x| x.0),
                    "after": a.as_ref().ok().map(|x| x.0),
                    "capped": b.as_ref().is_ok_and(|x| x.1),
                    "error": b.as_ref().err().or(a.as_ref().err()),
                })
            })
            .collect();
        output::print_json(&json!({
            kind: value,
            "invalidated": result.is_ok(),
            "error": result.as_ref().err().map(ToString::to_string),
            "tiers": list,
            "backplane": ctx.backplane_state(),
        }));
    } else {
        println!("{kind}  {value}");
        let rows: Vec<Vec<String>> = tiers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(t, (b, a))| vec![t.name.to_owned(), text(b), text(a)])
            .collect();
        print!(
            "{}",
            output::table(&["TIER", "MATCHING BEFORE", "MATCHING AFTER"], &rows)
        );
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
