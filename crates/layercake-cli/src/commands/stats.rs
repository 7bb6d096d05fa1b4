//! `layercake stats`: what each tier below memory holds under a prefix (the namespace by
//! default): keys, payload bytes, fresh, stale and not-found markers, and the same by tag.

use std::collections::BTreeMap;

use layercake::system_clock;
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::exit::{FAILED, OK, Outcome};
use crate::output;
use crate::walk;

#[derive(Default)]
struct Counts {
    keys: u64,
    bytes: u64,
    fresh: u64,
    stale: u64,
    negative: u64,
}

pub(crate) async fn run(ctx: &Ctx, prefix: &str, raw: bool, max_keys: usize) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let prefix = ctx.prefix(prefix, raw);
    let now = system_clock().now();
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    let mut tag_rows = Vec::new();
    let mut failed = false;
    for t in &tiers {
        let walked = async {
            let (keys, capped) = walk::list(&*t.backend, &prefix, max_keys).await?;
            let entries = walk::read(&*t.backend, &keys).await?;
            Ok::<_, layercake::Error>((entries, capped))
        }
        .await;
        let (entries, capped) = match walked {
            Ok(w) => w,
            Err(e) => {
                failed = true;
                rows.push(vec![t.name.to_owned(), format!("error: {e}")]);
                docs.push(json!({"tier": t.name, "error": e.to_string()}));
                continue;
            }
        };
        let mut all = Counts::default();
        let mut tags: BTreeMap<String, Counts> = BTreeMap::new();
        for e in entries.iter().flatten() {
            let size = e.value.len() as u64;
            all.keys += 1;
            all.bytes += size;
            all.fresh += u64::from(e.is_fresh(now));
            all.stale += u64::from(!e.is_fresh(now));
            all.negative += u64::from(e.is_negative());
            for tag in e.tags.iter() {
                let c = tags.entry(tag.clone()).or_default();
                c.keys += 1;
                c.bytes += size;
            }
        }
        rows.push(vec![
            t.name.to_owned(),
            format!("{}{}", all.keys, if capped { "+" } else { "" }),
            output::bytes(all.bytes),
            all.fresh.to_string(),
            all.stale.to_string(),
            all.negative.to_string(),
        ]);
        for (tag, c) in &tags {
            tag_rows.push(vec![
                tag.clone(),
                t.name.to_owned(),
                c.keys.to_string(),
                output::bytes(c.bytes),
            ]);
        }
        let by_tag: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, c)| (k.clone(), json!({"keys": c.keys, "bytes": c.bytes})))
            .collect();
        docs.push(json!({
            "tier": t.name,
            "keys": all.keys,
            "bytes": all.bytes,
            "fresh": all.fresh,
            "stale": all.stale,
            "negative": all.negative,
            "capped": capped,
            "by_tag": by_tag,
        }));
    }
    if ctx.json {
        output::print_json(&json!({"prefix": prefix, "tiers": docs}));
    } else {
        println!("prefix {prefix:?}");
        print!(
            "{}",
            output::table(
                &[
                    "TIER",
                    "KEYS",
                    "BYTES",
                    "FRESH",
                    "STALE",
                    "NOT-FOUND MARKERS"
                ],
                &rows
            )
        );
        if !tag_rows.is_empty() {
            println!();
            print!(
                "{}",
                output::table(&["TAG", "TIER", "KEYS", "BYTES"], &tag_rows)
            );
        }
    }
    Ok(if failed { FAILED } else { OK })
}
