//! `layercake inspect KEY`: the key's copy in every tier below memory.

use layercake::redis::ServerTtl;
use layercake::system_clock;
use serde_json::{Value, json};

use crate::cli::KeyArg;
use crate::ctx::Ctx;
use crate::exit::{FAILED, NOT_FOUND, OK, Outcome};
use crate::output;
use crate::view::{self, Copy};

pub(crate) async fn run(ctx: &Ctx, arg: &KeyArg, decode: bool) -> Outcome {
    let tiers = ctx.need_tiers()?;
    let key = ctx.key(arg)?;
    let mut copies = Vec::with_capacity(tiers.len());
    for t in &tiers {
        copies.push(Copy::from_result(t.backend.get(&key).await));
    }
    let now = system_clock().now();
    let server_ttl = match &ctx.tiers.redis {
        Some(r) => Some(r.server_ttl(&key).await),
        None => None,
    };
    let first = copies.iter().find_map(Copy::entry);
    let decoded = if decode {
        first.map(view::decode)
    } else {
        None
    };
    let from = tiers
        .iter()
        .zip(&copies)
        .find(|(_, c)| c.entry().is_some())
        .map(|(t, _)| t.name);
    if ctx.json {
        let mut list: Vec<Value> = tiers
            .iter()
            .zip(&copies)
            .map(|(t, c)| view::copy_json(t.name, c, now))
            .collect();
        for (t, v) in tiers.iter().zip(list.iter_mut()) {
            if t.name == "redis"
                && let Some(Ok(ttl)) = &server_ttl
            {
                v["server_ttl_ms"] = match ttl {
                    ServerTtl::Expires(d) => json!(d.as_millis() as u64),
                    ServerTtl::Persistent => json!("none"),
                    ServerTtl::Missing => Value::Null,
                };
            }
        }
        let mut doc = json!({
            "key": key.as_str(),
            "namespace": ctx.keys.namespace().prefix(),
            "tiers": list,
        });
        match decoded {
            Some(Ok(v)) => {
                doc["value"] = v;
                doc["value_from"] = json!(from);
            }
            Some(Err(e)) => doc["value_error"] = json!(e),
            None => {}
        }
        output::print_json(&doc);
    } else {
        println!("key  {}", key.as_str());
        let rows: Vec<Vec<String>> = tiers
            .iter()
            .zip(&copies)
            .map(|(t, c)| view::copy_row(t.name, c, now))
            .collect();
        print!(
            "{}",
            output::table(
                &[
                    "TIER",
                    "PRESENT",
                    "CREATED",
                    "EXPIRES IN",
                    "STALE UNTIL",
                    "SIZE",
                    "CODEC",
                    "VERSION",
                    "TAGS"
                ],
                &rows
            )
        );
        if let Some(Ok(ServerTtl::Expires(d))) = &server_ttl {
            println!(
                "redis removes the key itself in {} (PTTL)",
                output::duration(*d)
            );
        }
        println!(
            "memory: each instance's memory tier lives in its own process and is not visible here"
        );
        match (decoded, from) {
            (Some(Ok(v)), Some(tier)) => println!(
                "value (from {tier}):\n{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
            ),
            (Some(Err(e)), _) => println!("value: {e}"),
            _ => {}
        }
    }
    if copies.iter().any(|c| c.entry().is_some()) {
        Ok(OK)
    } else if copies.iter().any(|c| matches!(c, Copy::Failed(_))) {
        Ok(FAILED)
    } else {
        Ok(NOT_FOUND)
    }
}
