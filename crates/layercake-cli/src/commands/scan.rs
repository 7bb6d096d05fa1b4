//! `layercake scan --prefix P`: keys under a prefix, sorted, one page at a time, with size and
//! remaining life, from one tier that can list keys.

use layercake::system_clock;
use serde_json::json;

use crate::ctx::Ctx;
use crate::exit::{FAILED, Failure, OK, Outcome};
use crate::output;
use crate::view;
use crate::walk;

/// Options of `scan`.
pub(crate) struct Scan<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) raw: bool,
    pub(crate) tier: Option<&'a str>,
    pub(crate) limit: usize,
    pub(crate) after: Option<&'a str>,
    pub(crate) max_keys: usize,
}

pub(crate) async fn run(ctx: &Ctx, o: Scan<'_>) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let tier = match o.tier {
        Some(name) => tiers.iter().find(|t| t.name == name).ok_or_else(|| {
            Failure::usage(format!(
                "no tier named {name:?} is configured (tiers: {})",
                ctx.config.tier_names().join(", ")
            ))
        })?,
        None => tiers
            .iter()
            .find(|t| t.backend.capability().list_keys)
            .ok_or_else(|| Failure::usage("no configured tier can list keys"))?,
    };
    if o.limit == 0 {
        return Err(Failure::usage("--limit must be at least 1"));
    }
    let prefix = ctx.prefix(o.prefix, o.raw);
    let (keys, capped) = walk::list(&*tier.backend, &prefix, o.max_keys)
        .await
        .map_err(|e| Failure {
            code: FAILED,
            message: e.to_string(),
        })?;
    let start = match o.after {
        Some(a) => keys.partition_point(|k| k.as_str() <= a),
        None => 0,
    };
    let page: Vec<_> = keys[start..].iter().take(o.limit).cloned().collect();
    let more = start + page.len() < keys.len();
    let entries = walk::read(&*tier.backend, &page)
        .await
        .map_err(|e| Failure {
            code: FAILED,
            message: e.to_string(),
        })?;
    let now = system_clock().now();
    let next = if more {
        page.last().map(|k| k.as_str().to_owned())
    } else {
        None
    };
    if ctx.json {
        let list: Vec<_> = page
            .iter()
            .zip(&entries)
            .map(|(k, e)| match e {
                Some(e) => {
                    let mut v = view::entry_json(e, now);
                    v["key"] = json!(k.as_str());
                    v
                }
                // Listed, then gone before the read (expired or removed meanwhile).
                None => json!({"key": k.as_str(), "gone": true}),
            })
            .collect();
        output::print_json(&json!({
            "tier": tier.name,
            "prefix": prefix,
            "keys": list,
            "next_after": next,
            "listed": keys.len(),
            "capped": capped,
        }));
    } else {
        let rows: Vec<Vec<String>> = page
            .iter()
            .zip(&entries)
            .map(|(k, e)| match e {
                Some(e) => vec![
                    k.as_str().to_owned(),
                    output::bytes(e.value.len() as u64),
                    view::life(e, now),
                    e.version.to_string(),
                    if e.tags.is_empty() {
                        "-".to_owned()
                    } else {
                        e.tags.join(",")
                    },
                ],
                None => vec![k.as_str().to_owned(), "(gone)".to_owned()],
            })
            .collect();
        println!("tier {}  prefix {prefix:?}", tier.name);
        print!(
            "{}",
            output::table(&["KEY", "SIZE", "EXPIRES IN", "VERSION", "TAGS"], &rows)
        );
        let shown = format!(
            "keys {}-{} of {}{}",
            if page.is_empty() { start } else { start + 1 },
            start + page.len(),
            keys.len(),
            if capped { "+ (--max-keys reached)" } else { "" }
        );
        match next {
            Some(n) => println!("{shown}; next page: --after '{n}'"),
            None => println!("{shown}"),
        }
    }
    Ok(OK)
}
