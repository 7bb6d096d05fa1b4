//! A 1 KiB `Cache::set` through all four tiers beside the sum of the four raw writes a
//! hand-written stack would do one after the other: quick_cache insert of an `Arc<T>`, redis-rs
//! `SET … PX`, tokio-postgres prepared upsert, file write + rename.

use std::hint::black_box;
use std::sync::Arc;

use layercake::{Backend, Codec, Key};

use crate::Result;
use crate::data::Doc;
use crate::env::{Env, TTL, cache, everywhere};
use crate::harness::{Plan, Side, interleave};
use crate::results::{Comparison, Results};

const KEYS: usize = 128;

/// The set comparison.
pub(crate) async fn run(env: &Env, results: &mut Results, plan: Plan) -> Result<()> {
    let c = cache(
        "bench-set",
        env.four_tiers(64 << 20)?,
        everywhere(),
        Codec::json(),
    )?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("set:{i:04}")).collect();
    let docs: Vec<Doc> = (0..KEYS).map(|i| Doc::sized(i as u64, 1024)).collect();
    for (k, d) in keys.iter().zip(&docs) {
        c.set(k.as_str(), d.clone()).await?;
    }
    // The raw writes store the same envelope bytes the tiers store.
    let key0: Key = c.key(keys[0].as_str())?;
    let envelope = std::fs::read(env.file.path_of(&key0))?;

    let table = env.postgres.qualified_table().to_owned();
    let upsert = env
        .raw_pg
        .prepare(&format!(
            "INSERT INTO {table} (key, value, expires_at, tags) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
             expires_at = EXCLUDED.expires_at, tags = EXCLUDED.tags"
        ))
        .await?;
    let raw_keys: Vec<String> = (0..KEYS)
        .map(|i| format!("{}:rawset:{i:04}", env.name))
        .collect();
    let raw_dir = tempfile::Builder::new()
        .prefix("rawset")
        .tempdir_in(env.dir.path())?;
    let qc: quick_cache::sync::Cache<String, Arc<Doc>> = quick_cache::sync::Cache::new(KEYS * 2);
    let ttl_ms = TTL.as_millis() as u64;
    let no_tags: Vec<String> = Vec::new();

    let (c, keys, docs, envelope, upsert, raw_keys, raw, qc, pg, conn, no_tags) = (
        &c,
        &keys,
        &docs,
        &envelope,
        &upsert,
        &raw_keys,
        raw_dir.path(),
        &qc,
        &*env.raw_pg,
        &env.raw_redis,
        &no_tags,
    );
    let sides = vec![
        Side::new(
            "sum of raw writes (quick_cache + SET + upsert + write/rename)",
            move |start, n| {
                Box::pin(async move {
                    let mut conn = conn.clone();
                    for i in start..start + n as u64 {
                        let j = i as usize % KEYS;
                        qc.insert(raw_keys[j].clone(), Arc::new(docs[j].clone()));
                        let r: redis::RedisResult<()> = redis::cmd("SET")
                            .arg(&raw_keys[j])
                            .arg(envelope.as_slice())
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async(&mut conn)
                            .await;
                        let _ = black_box(r);
                        let expires = now_ms() + ttl_ms as i64;
                        let r = pg
                            .execute(
                                upsert,
                                &[&raw_keys[j].as_bytes(), envelope, &expires, no_tags],
                            )
                            .await;
                        let _ = black_box(r);
                        let tmp = raw.join(format!(".{j}.tmp"));
                        let r = std::fs::write(&tmp, envelope)
                            .and_then(|()| std::fs::rename(&tmp, raw.join(j.to_string())));
                        let _ = black_box(r);
                    }
                })
            },
        ),
        Side::new("Cache::set, four tiers", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let j = i as usize % KEYS;
                    let _ = black_box(c.set(keys[j].as_str(), docs[j].clone()).await);
                }
            })
        }),
    ];
    let m = interleave(plan, sides).await?;
    // The subject must really have written every tier.
    for (name, tier) in [
        ("Redis", env.redis_mux.clone() as Arc<dyn Backend>),
        ("PostgreSQL", env.postgres.clone()),
        ("file", env.file.clone()),
    ] {
        let mut missing = 0;
        for k in keys.iter() {
            if tier.get(&c.key(k.as_str())?).await?.is_none() {
                missing += 1;
            }
        }
        if missing > 0 {
            results.notes.push(format!(
                "Set through all four tiers: {missing} of {KEYS} keys written with `Cache::set` \
                 are missing from the {name} tier afterwards."
            ));
        }
    }
    results.comparisons.push(Comparison::new(
        "Set through all four tiers (1 KiB)",
        "set.4tiers",
        &m[0],
        &m[1],
    ));
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
