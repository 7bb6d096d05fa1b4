//! Codec and compression cost: encode and decode of the benchmark document with every codec
//! (JSON, MessagePack, postcard) × compression (none, lz4, zstd), per KiB of value, all
//! codecs interleaved in the same rounds.

use std::hint::black_box;

use layercake::{Codec, Compression};

use crate::Result;
use crate::data::Doc;
use crate::harness::{Plan, Side, interleave};
use crate::results::{CodecRow, Results};

fn codecs() -> Vec<(String, Codec)> {
    let mut out = Vec::new();
    for (fname, base) in [
        ("json", Codec::json()),
        ("msgpack", Codec::msgpack()),
        ("postcard", Codec::postcard()),
    ] {
        for (cname, comp) in [
            ("none", Compression::None),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ] {
            let codec = if comp == Compression::None {
                base
            } else {
                base.with_compression(comp, 0)
            };
            out.push((format!("{fname}+{cname}"), codec));
        }
    }
    out
}

/// One value size; `plan.batch` is scaled so that a batch handles about 64 KiB.
async fn size(results: &mut Results, plan: Plan, bytes: usize) -> Result<()> {
    let doc = Doc::sized(7, bytes);
    let value_bytes = postcard_len(&doc)?;
    let codecs = codecs();
    let encoded = codecs
        .iter()
        .map(|(_, c)| Ok(c.encode(&doc)?))
        .collect::<Result<Vec<_>>>()?;
    for (e, (name, c)) in encoded.iter().zip(&codecs) {
        let back: Doc = c.decode(&e.bytes, e.format, e.compression)?;
        if back != doc {
            return Err(format!("codec {name} does not round-trip").into());
        }
    }
    let batch = (64 * 1024 / bytes).max(1);
    let plan = Plan::new(plan.rounds, plan.batches, batch);
    let doc = &doc;
    let enc_sides = codecs
        .iter()
        .map(|(name, c)| {
            Side::new(format!("encode {name}"), move |_, n| {
                Box::pin(async move {
                    for _ in 0..n {
                        let _ = black_box(c.encode(black_box(doc)));
                    }
                })
            })
        })
        .collect();
    let enc = interleave(plan, enc_sides).await?;
    let dec_sides = codecs
        .iter()
        .zip(&encoded)
        .map(|((name, c), e)| {
            Side::new(format!("decode {name}"), move |_, n| {
                Box::pin(async move {
                    for _ in 0..n {
                        let _ = black_box(c.decode::<Doc>(
                            black_box(&e.bytes),
                            e.format,
                            e.compression,
                        ));
                    }
                })
            })
        })
        .collect();
    let dec = interleave(plan, dec_sides).await?;
    for (i, (name, _)) in codecs.iter().enumerate() {
        results.codecs.push(CodecRow {
            codec: name.clone(),
            value_bytes,
            encoded_bytes: encoded[i].bytes.len(),
            kept: encoded[i].compression.as_str(),
            encode: enc[i].clone(),
            decode: dec[i].clone(),
        });
    }
    Ok(())
}

fn postcard_len(doc: &Doc) -> Result<usize> {
    Ok(Codec::postcard().encode(doc)?.bytes.len())
}

/// 1 KiB and 64 KiB.
pub(crate) async fn run(results: &mut Results, plan: Plan) -> Result<()> {
    size(results, plan, 1024).await?;
    size(results, plan, 64 * 1024).await?;
    Ok(())
}
