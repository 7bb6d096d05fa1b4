//! What the benchmarks store and how they pick keys: the value type, a small seeded PRNG and
//! a Zipf sampler (deterministic, so that two runs touch the same keys in the same order).

use serde::{Deserialize, Serialize};

/// The cached value: a document of the kind AI services cache (a search hit, a tool
/// description), sized by its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Doc {
    /// Identifier.
    pub(crate) id: u64,
    /// Short title.
    pub(crate) title: String,
    /// A few tags.
    pub(crate) tags: Vec<String>,
    /// A score.
    pub(crate) score: f64,
    /// Text filling the document to its size (words from a small vocabulary, so it compresses
    /// about as well as prose).
    pub(crate) body: String,
}

const WORDS: &[&str] = &[
    "cache",
    "tier",
    "redis",
    "postgres",
    "file",
    "memory",
    "latency",
    "value",
    "request",
    "model",
    "embedding",
    "search",
    "result",
    "tool",
    "catalog",
    "token",
    "prompt",
    "answer",
    "service",
    "instance",
    "shared",
    "local",
    "expiry",
    "version",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "that",
    "by",
    "fast",
    "slow",
    "durable",
    "fresh",
    "stale",
];

impl Doc {
    /// A document whose encoded size (postcard) is about `size` bytes; the content depends on
    /// `id` only.
    pub(crate) fn sized(id: u64, size: usize) -> Doc {
        let mut rng = Rng::new(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ size as u64);
        let title = format!("document {id}: results for query {}", rng.next() % 10_000);
        let tags = (0..4).map(|i| format!("tag-{}", (id + i) % 17)).collect();
        let overhead = 8 + title.len() + 4 * 7 + 8 + 8;
        let target = size.saturating_sub(overhead);
        let mut body = String::with_capacity(target + 16);
        while body.len() < target {
            let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
            body.push_str(w);
            body.push(' ');
        }
        body.truncate(target);
        Doc {
            id,
            title,
            tags,
            score: (id % 1000) as f64 / 7.0,
            body,
        }
    }
}

/// SplitMix64: a tiny, fast, seeded generator (quality is ample for picking keys).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n` ranks with exponent `s`.
    pub(crate) fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 0..n {
            sum += 1.0 / ((r + 1) as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// One rank.
    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// A deterministic permutation of `0..n` (the order in which micro-benchmarks visit keys, the
/// same for every side of a comparison).
pub(crate) fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}
