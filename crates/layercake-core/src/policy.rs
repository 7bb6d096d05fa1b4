//! [`Policy`]: the caching decisions — TTL, tiers, promotion, fail-safe, refresh-ahead,
//! negative caching — as enums and durations, composed from small built-ins.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use crate::key::Key;
use crate::strategy::namespace_of;

/// A set of tier positions (0 = L1, the first tier given to the builder).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TierSet(u64);

impl TierSet {
    /// Every tier.
    pub const ALL: TierSet = TierSet(u64::MAX);
    /// No tier.
    pub const NONE: TierSet = TierSet(0);

    /// Only the given positions.
    pub fn only(positions: &[usize]) -> TierSet {
        TierSet(
            positions
                .iter()
                .filter(|&&p| p < 64)
                .fold(0, |m, &p| m | 1 << p),
        )
    }
    /// Whether position `i` is in the set.
    pub fn contains(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
    /// The set without the positions of `other`.
    pub fn without(self, other: TierSet) -> TierSet {
        TierSet(self.0 & !other.0)
    }
    /// The intersection.
    pub fn and(self, other: TierSet) -> TierSet {
        TierSet(self.0 & other.0)
    }
    /// Whether no position is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for TierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == TierSet::ALL {
            return f.write_str("TierSet(ALL)");
        }
        let v: Vec<usize> = (0..64).filter(|&i| self.contains(i)).collect();
        write!(f, "TierSet({v:?})")
    }
}

/// Whether a hit at a lower tier fills the tiers above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Promotion {
    /// Fill upper tiers with the entry's remaining lifetime.
    Always,
    /// Never fill upper tiers on a read.
    Never,
    /// Fill upper tiers, with the lifetime capped at this duration.
    Capped(Duration),
}

/// When to refresh a fresh entry in the background.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum RefreshAhead {
    /// Never.
    Off,
    /// Once this fraction (0 < f < 1) of the TTL has elapsed, a hit returns at once and one
    /// background refresh runs.
    AfterFraction(f32),
}

/// What a policy is asked about.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The key.
    pub key: &'a Key,
    /// The encoded payload size in bytes.
    pub value_len: usize,
    /// Whether the value is a negative entry (the loader found nothing).
    pub negative: bool,
}

impl PolicyContext<'_> {
    /// The key's namespace (text before the first `:`).
    pub fn namespace(&self) -> &str {
        namespace_of(self.key.as_str())
    }
}

/// The decisions for one write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Fresh lifetime. Zero means "do not cache".
    pub ttl: Duration,
    /// Fail-safe window after `ttl` during which a stale copy is kept and may be served when
    /// the loader fails.
    pub stale_for: Duration,
    /// Background refresh rule.
    pub refresh_ahead: RefreshAhead,
    /// Tiers the value may live in.
    pub tiers: TierSet,
    /// Promotion on reads at lower tiers.
    pub promotion: Promotion,
}

impl Decision {
    /// Cache for `ttl` in every tier, always promote, no stale window, no refresh.
    pub fn ttl(ttl: Duration) -> Decision {
        Decision {
            ttl,
            stale_for: Duration::ZERO,
            refresh_ahead: RefreshAhead::Off,
            tiers: TierSet::ALL,
            promotion: Promotion::Always,
        }
    }
    /// Whether the value is cached at all.
    pub fn caches(&self) -> bool {
        !self.ttl.is_zero() && !self.tiers.is_empty()
    }
}

/// The caching decisions for a write.
///
/// Contract:
/// - `decide` is pure and cheap: the same context gives the same decision (jitter is derived
///   from the key, not from a random source);
/// - negative values are not cached unless a [`PolicyExt::negative_ttl`] rule says so;
/// - built-ins compose: [`FixedTtl`] and [`NamespaceTable`] give TTLs, the [`PolicyExt`] methods
///   layer stale windows, refresh-ahead, routing and promotion on top.
///
/// ```
/// use layercake_core::*;
/// use std::time::Duration;
/// let policy = NamespaceTable::new(FixedTtl::new(Duration::from_secs(600)))
///     .with("catalog", FixedTtl::new(Duration::from_secs(24 * 3600)))
///     .with("search", FixedTtl::new(Duration::from_secs(3600)))
///     .stale_for(Duration::from_secs(300))
///     .route_by_size(256 * 1024, TierSet::only(&[0]));
/// let key = Key::new("catalog:v1:tools").unwrap();
/// let d = policy.decide(&PolicyContext { key: &key, value_len: 10, negative: false });
/// assert_eq!(d.ttl, Duration::from_secs(24 * 3600));
/// assert!(d.tiers.contains(0));
/// let d = policy.decide(&PolicyContext { key: &key, value_len: 300 * 1024, negative: false });
/// assert!(!d.tiers.contains(0) && d.tiers.contains(1));
/// ```
pub trait Policy: Send + Sync + fmt::Debug + 'static {
    /// Decide for one write.
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision;
}

impl<P: Policy + ?Sized> Policy for Arc<P> {
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        (**self).decide(ctx)
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        (**self).decide(ctx)
    }
}

/// A fixed TTL plus up to `jitter` extra, spread by key so entries written together do not
/// expire together.
#[derive(Debug, Clone, Copy)]
pub struct FixedTtl {
    ttl: Duration,
    jitter: Duration,
}

impl FixedTtl {
    /// `ttl` without jitter.
    pub fn new(ttl: Duration) -> FixedTtl {
        FixedTtl {
            ttl,
            jitter: Duration::ZERO,
        }
    }
    /// Add a per-key jitter in `[0, jitter)`.
    pub fn with_jitter(mut self, jitter: Duration) -> FixedTtl {
        self.jitter = jitter;
        self
    }
}

impl Policy for FixedTtl {
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        if ctx.negative {
            return Decision::ttl(Duration::ZERO);
        }
        let jitter_ms = self.jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            xxh3_64(ctx.key.as_bytes()) % jitter_ms
        };
        Decision::ttl(self.ttl + Duration::from_millis(extra))
    }
}

/// A policy per namespace, with a default for the others.
#[derive(Debug, Clone)]
pub struct NamespaceTable {
    table: HashMap<String, Arc<dyn Policy>>,
    default: Arc<dyn Policy>,
}

impl NamespaceTable {
    /// A table whose unlisted namespaces use `default`.
    pub fn new(default: impl Policy) -> NamespaceTable {
        NamespaceTable {
            table: HashMap::new(),
            default: Arc::new(default),
        }
    }
    /// Use `policy` for keys of `namespace`.
    pub fn with(mut self, namespace: impl Into<String>, policy: impl Policy) -> NamespaceTable {
        self.table.insert(namespace.into(), Arc::new(policy));
        self
    }
    /// The usual table for AI services: `catalog` 24 h, `embedding` 7 d, `search` 1 h,
    /// `idempotency` 1 h, `llm` 24 h, anything else 10 min; each with 5 % jitter.
    pub fn ai_defaults() -> NamespaceTable {
        let f = |secs: u64| {
            FixedTtl::new(Duration::from_secs(secs)).with_jitter(Duration::from_secs(secs / 20))
        };
        NamespaceTable::new(f(600))
            .with("catalog", f(24 * 3600))
            .with("embedding", f(7 * 24 * 3600))
            .with("search", f(3600))
            .with("idempotency", FixedTtl::new(Duration::from_secs(3600)))
            .with("llm", f(24 * 3600))
    }
}

impl Policy for NamespaceTable {
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        match self.table.get(ctx.namespace()) {
            Some(p) => p.decide(ctx),
            None => self.default.decide(ctx),
        }
    }
}

/// A rule layered on an inner policy by a [`PolicyExt`] method.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Rule {
    /// Keep entries stale for this long after expiry (fail-safe window).
    StaleFor(Duration),
    /// Refresh in the background after this fraction of the TTL.
    RefreshAhead(f32),
    /// Cache negative results for this long.
    NegativeTtl(Duration),
    /// Values larger than `over` bytes skip the tiers in `skip`.
    RouteBySize {
        /// Size threshold in bytes.
        over: usize,
        /// Tiers to skip above it.
        skip: TierSet,
    },
    /// Limit values to these tiers.
    Tiers(TierSet),
    /// Promotion rule.
    Promotion(Promotion),
}

/// An inner policy with one [`Rule`] applied on top.
#[derive(Debug, Clone)]
pub struct Layered<P> {
    inner: P,
    rule: Rule,
}

impl<P: Policy> Policy for Layered<P> {
    fn decide(&self, ctx: &PolicyContext<'_>) -> Decision {
        let mut d = self.inner.decide(ctx);
        match self.rule {
            Rule::StaleFor(s) => d.stale_for = s,
            Rule::RefreshAhead(f) => {
                d.refresh_ahead = if f > 0.0 && f < 1.0 {
                    RefreshAhead::AfterFraction(f)
                } else {
                    RefreshAhead::Off
                }
            }
            Rule::NegativeTtl(t) => {
                if ctx.negative {
                    d.ttl = t;
                }
            }
            Rule::RouteBySize { over, skip } => {
                if ctx.value_len > over {
                    d.tiers = d.tiers.without(skip);
                }
            }
            Rule::Tiers(t) => d.tiers = d.tiers.and(t),
            Rule::Promotion(p) => d.promotion = p,
        }
        d
    }
}

/// Composition methods for every [`Policy`].
pub trait PolicyExt: Policy + Sized {
    /// Apply a rule.
    fn with_rule(self, rule: Rule) -> Layered<Self> {
        Layered { inner: self, rule }
    }
    /// Keep entries stale for `d` after expiry and serve them when the loader fails.
    fn stale_for(self, d: Duration) -> Layered<Self> {
        self.with_rule(Rule::StaleFor(d))
    }
    /// Refresh in the background once `fraction` of the TTL has elapsed.
    fn refresh_ahead(self, fraction: f32) -> Layered<Self> {
        self.with_rule(Rule::RefreshAhead(fraction))
    }
    /// Cache "not found" results for `d`.
    fn negative_ttl(self, d: Duration) -> Layered<Self> {
        self.with_rule(Rule::NegativeTtl(d))
    }
    /// Values over `over` bytes skip the tiers in `skip` (e.g. L1 for values over 256 KiB).
    fn route_by_size(self, over: usize, skip: TierSet) -> Layered<Self> {
        self.with_rule(Rule::RouteBySize { over, skip })
    }
    /// Limit values to `tiers`.
    fn only_tiers(self, tiers: TierSet) -> Layered<Self> {
        self.with_rule(Rule::Tiers(tiers))
    }
    /// Set the promotion rule.
    fn promotion(self, p: Promotion) -> Layered<Self> {
        self.with_rule(Rule::Promotion(p))
    }
}

impl<P: Policy> PolicyExt for P {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(key: &Key, len: usize, negative: bool) -> PolicyContext<'_> {
        PolicyContext {
            key,
            value_len: len,
            negative,
        }
    }

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let p = FixedTtl::new(Duration::from_secs(100)).with_jitter(Duration::from_secs(10));
        let mut distinct = std::collections::HashSet::new();
        for i in 0..200 {
            let k = Key::new(format!("k{i}")).unwrap();
            let a = p.decide(&ctx(&k, 1, false)).ttl;
            assert_eq!(a, p.decide(&ctx(&k, 1, false)).ttl);
            assert!(a >= Duration::from_secs(100) && a < Duration::from_secs(110));
            distinct.insert(a);
        }
        assert!(distinct.len() > 100, "jitter spreads keys");
    }

    #[test]
    fn ai_defaults_table() {
        let t = NamespaceTable::ai_defaults();
        let ttl = |k: &str| {
            t.decide(&ctx(&Key::new(k).unwrap(), 1, false))
                .ttl
                .as_secs()
        };
        assert!((7 * 24 * 3600..7 * 24 * 3600 * 21 / 20).contains(&ttl("embedding:v1:x")));
        assert_eq!(ttl("idempotency:v1:x"), 3600);
        assert!((3600..3780).contains(&ttl("search:v1:x")));
        assert!((600..630).contains(&ttl("other:v1:x")));
    }

    #[test]
    fn rules_compose() {
        let p = FixedTtl::new(Duration::from_secs(60))
            .stale_for(Duration::from_secs(30))
            .refresh_ahead(0.8)
            .negative_ttl(Duration::from_secs(5))
            .promotion(Promotion::Capped(Duration::from_secs(10)))
            .only_tiers(TierSet::only(&[0, 1, 2]));
        let k = Key::new("x:v1:y").unwrap();
        let d = p.decide(&ctx(&k, 10, false));
        assert_eq!(d.ttl, Duration::from_secs(60));
        assert_eq!(d.stale_for, Duration::from_secs(30));
        assert_eq!(d.refresh_ahead, RefreshAhead::AfterFraction(0.8));
        assert_eq!(d.promotion, Promotion::Capped(Duration::from_secs(10)));
        assert!(d.tiers.contains(2) && !d.tiers.contains(3));
        let n = p.decide(&ctx(&k, 0, true));
        assert_eq!(n.ttl, Duration::from_secs(5));
        // Without a negative rule, negatives are not cached.
        assert!(
            !FixedTtl::new(Duration::from_secs(1))
                .decide(&ctx(&k, 0, true))
                .caches()
        );
    }
}
