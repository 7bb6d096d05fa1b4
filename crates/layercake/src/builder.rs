//! [`CacheBuilder`]: tiers, keys, policy, codec, backplane and timeouts, validated by `build`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use layercake_core::DistributedLock;
use layercake_core::backplane::Backplane;
use layercake_core::{
    Backend, Codec, Error, FixedTtl, KeyStrategy, Namespace, PlainKeys, Policy, Result,
    SharedClock, system_clock,
};
use parking_lot::Mutex;

use crate::cache::Cache;
use crate::coherence::epochs::Epochs;
use crate::coherence::{DEFAULT_DISCONNECTED_L1_CAP, Versions, spawn_listener};

/// How long a removal's tombstone refuses older fills by default.
const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(60);
use crate::flight::Flights;
use crate::lock::LockOptions;
use crate::repair::Repairs;
use crate::repair::config::RepairConfig;
use crate::stack::Stack;
use crate::telemetry::Telemetry;
use crate::tier::{Tier, TierOptions, WriteMode};
use crate::write_behind::WriteBehind;

/// The hard timeout of a load when none is configured: past it the load ends with a
/// `Timeout` error (see [`CacheBuilder::loader_hard_timeout`]).
pub const DEFAULT_HARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a [`Cache`]. See [`Cache::builder`].
///
/// Defaults: keys [`PlainKeys`] in namespace `default` version 1; policy [`FixedTtl`] of
/// 5 minutes; codec JSON; system clock; no backplane; no soft loader timeout and a hard one of
/// [`DEFAULT_HARD_TIMEOUT`] (60 s); repairs with the [`RepairConfig`] defaults; writes not
/// strict (see [`strict_writes`](CacheBuilder::strict_writes)).
///
/// ```
/// use layercake::{Cache, MemoryBackend, TierOptions};
/// use std::time::Duration;
/// let err = Cache::builder("x").build().unwrap_err();
/// assert!(err.to_string().contains("at least one tier"));
/// let err = Cache::builder("x")
///     .tier_with(MemoryBackend::with_max_bytes(1024).unwrap(), TierOptions::new().name("a"))
///     .tier_with(MemoryBackend::with_max_bytes(1024).unwrap(), TierOptions::new().name("a"))
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("tier name \"a\" is used twice"));
/// let err = Cache::builder("x")
///     .tier(MemoryBackend::with_max_bytes(1024).unwrap())
///     .loader_soft_timeout(Duration::from_secs(2))
///     .loader_hard_timeout(Duration::from_secs(1))
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("soft timeout"));
/// ```
#[must_use]
pub struct CacheBuilder {
    name: String,
    tiers: Vec<(Arc<dyn Backend>, TierOptions)>,
    keys: Option<Arc<dyn KeyStrategy>>,
    policy: Option<Arc<dyn Policy>>,
    codec: Codec,
    clock: SharedClock,
    backplane: Option<Arc<dyn Backplane>>,
    soft: Option<Duration>,
    hard: Option<Duration>,
    no_hard: bool,
    repairs: RepairConfig,
    strict: bool,
    lock: Option<(Arc<dyn DistributedLock>, LockOptions)>,
    disconnected_cap: Duration,
    tombstone_ttl: Duration,
    background_fills: bool,
    insight: crate::InsightConfig,
    #[cfg(feature = "otel")]
    otel: crate::otel::OtelSetup,
}

impl std::fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .field("tiers", &self.tiers.len())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Start building a cache named `name` (the name appears in metrics and stats).
    pub fn builder(name: impl Into<String>) -> CacheBuilder {
        CacheBuilder::new(name)
    }
}

impl CacheBuilder {
    pub(crate) fn new(name: impl Into<String>) -> CacheBuilder {
        CacheBuilder {
            name: name.into(),
            tiers: Vec::new(),
            keys: None,
            policy: None,
            codec: Codec::json(),
            clock: system_clock(),
            backplane: None,
            soft: None,
            hard: None,
            no_hard: false,
            repairs: RepairConfig::default(),
            strict: false,
            lock: None,
            disconnected_cap: DEFAULT_DISCONNECTED_L1_CAP,
            tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
            background_fills: false,
            insight: crate::InsightConfig::new(),
            #[cfg(feature = "otel")]
            otel: crate::otel::OtelSetup::default(),
        }
    }

    /// Add the next tier (the first is L1) with the defaults for its kind.
    pub fn tier(self, backend: impl Backend) -> Self {
        self.tier_with(backend, TierOptions::default())
    }

    /// Add the next tier with options.
    pub fn tier_with(self, backend: impl Backend, opts: TierOptions) -> Self {
        let backend = Arc::new(backend);
        self.observe_tier(&backend).shared_tier_with(backend, opts)
    }

    /// With `otel`: remember a memory backend for the `layercake.memory.*` gauges.
    #[cfg(feature = "otel")]
    fn observe_tier<B: Backend>(mut self, backend: &Arc<B>) -> Self {
        self.otel.note_tier(self.tiers.len(), backend);
        self
    }

    #[cfg(not(feature = "otel"))]
    fn observe_tier<B: Backend>(self, _backend: &Arc<B>) -> Self {
        self
    }

    /// Add a tier given as a shared backend (e.g. one Redis backend shared by two caches).
    pub fn shared_tier(self, backend: Arc<dyn Backend>) -> Self {
        self.shared_tier_with(backend, TierOptions::default())
    }

    /// Add a shared backend with options.
    pub fn shared_tier_with(mut self, backend: Arc<dyn Backend>, opts: TierOptions) -> Self {
        self.tiers.push((backend, opts));
        self
    }

    /// The key strategy.
    pub fn keys(mut self, keys: impl KeyStrategy) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    /// The policy.
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// The codec.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The clock (give the same clock to clock-driven tiers).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The backplane that keeps other instances' local tiers coherent.
    pub fn backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// The loader's soft timeout (none by default): past it, a caller that has a stale copy
    /// gets it ([`Source::Stale`](crate::Source::Stale)) while the load goes on and fills the
    /// tiers when it ends. Must be shorter than the hard timeout.
    pub fn loader_soft_timeout(mut self, soft: Duration) -> Self {
        self.soft = Some(soft);
        self
    }

    /// The loader's hard timeout: past it the load ends with a `Timeout` error and the next
    /// caller starts a new one. Default [`DEFAULT_HARD_TIMEOUT`] (60 s; with a
    /// [`distributed_lock`](CacheBuilder::distributed_lock), at most the lock's ttl); see
    /// [`no_hard_timeout`](CacheBuilder::no_hard_timeout) to let loads run unbounded.
    pub fn loader_hard_timeout(mut self, hard: Duration) -> Self {
        self.hard = Some(hard);
        self.no_hard = false;
        self
    }

    /// Let loads run without a hard timeout: a loader that never returns then holds its key's
    /// flight, and every later caller of that key waits with it, for as long as it runs.
    pub fn no_hard_timeout(mut self) -> Self {
        self.hard = None;
        self.no_hard = true;
        self
    }

    /// Auto-recovery settings: how many repairs a tier's record holds, what happens when it
    /// is full, how often they are retried (default [`RepairConfig::new`]). See the write
    /// contract on [`Cache`].
    pub fn repairs(mut self, config: RepairConfig) -> Self {
        self.repairs = config;
        self
    }

    /// With `true`, `set` (and the raw adapter's `set`) returns an error when an assigned tier
    /// did not take the value, even though another did and the repair is noted; by default
    /// such a write is `Ok` (see [`Cache::set_reporting`] for the details). `delete`,
    /// invalidations and `clear` always return an error when a tier failed.
    pub fn strict_writes(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Coordinate loads across instances: on a miss in every tier, only the instance that
    /// takes the lock (e.g. a [`RedisBackend`](https://docs.rs/layercake-redis), which
    /// implements [`DistributedLock`]) runs the loader; the others wait for its value in the
    /// shared tiers. See [`LockOptions`].
    pub fn distributed_lock(mut self, lock: Arc<dyn DistributedLock>, opts: LockOptions) -> Self {
        self.lock = Some((lock, opts));
        self
    }

    /// The longest lifetime of a copy in a process- or host-local tier while the backplane is
    /// disconnected (default 5 s).
    pub fn disconnected_local_ttl(mut self, cap: Duration) -> Self {
        self.disconnected_cap = cap;
        self
    }

    /// How long a removal's tombstone refuses older fills in the tiers outside the process
    /// (default 60 s, at least 1 s).
    ///
    /// A fill (a promotion, or a loader's result) whose read began before a `delete` or an
    /// invalidation — in this instance or another — is refused when it lands within this time.
    /// Make it longer than your slowest loader: a load that outlives the tombstone of a
    /// removal that happened while it ran could write its value back (in this instance, the
    /// removal cancels the load's write anyway; other instances learn of it from the
    /// backplane).
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Whether `get_or_compute` returns before the loader's value is written to the tiers
    /// outside the process (default `false`).
    ///
    /// By default the leader and the callers waiting on it are answered once *every* tier
    /// the policy assigns has taken the value (or failed to): when the call returns, another
    /// instance reading the key finds it. With `true` they are answered as soon as the
    /// in-process tiers have it, and the shared tiers are written right after: a few
    /// milliseconds sooner for the callers, but another instance reading at once may miss and
    /// compute again.
    pub fn background_fills(mut self, yes: bool) -> Self {
        self.background_fills = yes;
        self
    }

    /// What the cache records to explain its misses and warm a restart (default
    /// [`InsightConfig::new`](crate::InsightConfig::new): miss reasons and the hot-set sample
    /// on); [`InsightConfig::off`](crate::InsightConfig::off) records nothing.
    pub fn insight(mut self, config: crate::InsightConfig) -> Self {
        self.insight = config;
        self
    }

    /// OpenTelemetry meter, tracer and choices for this cache (feature `otel`). Without this
    /// call the global providers are used, as installed when `build` runs; pass
    /// [`OtelConfig::disabled`](crate::OtelConfig::disabled) to turn instrumentation off.
    #[cfg(feature = "otel")]
    pub fn otel(mut self, config: crate::OtelConfig) -> Self {
        self.otel.config = Some(config);
        self
    }

    /// Validate and build. Needs a Tokio runtime when a backplane or a write-behind tier is
    /// configured (their tasks are spawned here).
    pub fn build(self) -> Result<Cache> {
        if self.tiers.is_empty() {
            return Err(Error::config("a cache needs at least one tier"));
        }
        if self.tiers.len() > 64 {
            return Err(Error::config("a cache has at most 64 tiers"));
        }
        let hard = match (self.no_hard, self.hard, &self.lock) {
            (true, _, _) => None,
            (false, Some(h), _) => Some(h),
            (false, None, Some((_, lo))) => Some(DEFAULT_HARD_TIMEOUT.min(lo.ttl)),
            (false, None, None) => Some(DEFAULT_HARD_TIMEOUT),
        };
        if let (Some(s), Some(h)) = (self.soft, hard)
            && s >= h
        {
            return Err(Error::config(format!(
                "the loader's soft timeout ({s:?}) must be shorter than its hard timeout ({h:?}; \
                 the default is {DEFAULT_HARD_TIMEOUT:?}, see loader_hard_timeout \
                 and no_hard_timeout)"
            )));
        }
        if let (Some((_, lo)), Some(h)) = (&self.lock, self.hard)
            && lo.ttl < h
        {
            return Err(Error::config(format!(
                "the distributed lock's ttl ({:?}) must be at least the loader's hard timeout \
                 ({h:?})",
                lo.ttl
            )));
        }
        let needs_runtime = self.backplane.is_some()
            || self
                .tiers
                .iter()
                .any(|(_, o)| matches!(o.write_mode, WriteMode::Behind { .. }));
        if needs_runtime && tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config(
                "a backplane or write-behind tier needs a Tokio runtime: call build() inside one",
            ));
        }
        let n_tiers = self.tiers.len();
        let repairs = Arc::new(Repairs::new(n_tiers, self.repairs, self.strict));
        let mut tiers = Vec::with_capacity(self.tiers.len());
        let mut names = HashSet::new();
        for (i, (backend, opts)) in self.tiers.into_iter().enumerate() {
            let mode = opts.write_mode;
            let mut t = Tier::new(i, backend, opts);
            if !names.insert(t.name.clone()) {
                return Err(Error::config(format!(
                    "tier name {:?} is used twice",
                    &*t.name
                )));
            }
            if let WriteMode::Behind { capacity } = mode {
                if capacity == 0 {
                    return Err(Error::config(
                        "a write-behind queue needs a capacity above 0",
                    ));
                }
                let notes = repairs.clone();
                let done = Box::new(
                    move |k: &layercake_core::Key, version: u64, r: &Result<()>| match r {
                        Ok(()) => notes.resolved_key(i, k),
                        Err(e) => {
                            let _ = notes.note_key(i, k, e, version.saturating_sub(1));
                        }
                    },
                );
                t.write_behind = Some(WriteBehind::start(t.backend.clone(), capacity, done));
            }
            tiers.push(t);
        }
        let keys: Arc<dyn KeyStrategy> = match self.keys {
            Some(k) => k,
            None => Arc::new(PlainKeys::new(Namespace::new("default", 1)?)),
        };
        let policy: Arc<dyn Policy> = match self.policy {
            Some(p) => p,
            None => Arc::new(FixedTtl::new(Duration::from_secs(300))),
        };
        let name: Arc<str> = Arc::from(self.name);
        let telemetry =
            Telemetry::new(name.clone(), tiers.iter().map(|t| t.name.clone()).collect())?;
        #[cfg(feature = "otel")]
        let (telemetry, otel) = {
            let mut otel = self.otel;
            (telemetry.with_otel(otel.config.take()), otel)
        };
        let inner = Arc::new(Stack {
            name,
            tiers,
            policy,
            codec: self.codec,
            versions: Versions::new(self.clock.clone()),
            clock: self.clock,
            flights: Arc::new(Flights::default()),
            epochs: Epochs::new(),
            recent_fills: Default::default(),
            telemetry,
            backplane: self.backplane.clone(),
            disconnected_cap: self.disconnected_cap,
            tombstone_ttl: self.tombstone_ttl,
            background_fills: self.background_fills,
            soft_timeout: self.soft,
            hard_timeout: hard,
            lock: self.lock,
            tasks: Mutex::new(Vec::new()),
            repairs,
            insight: crate::insight::Insight::new(self.insight, n_tiers),
        });
        inner.repairs.bind(Arc::downgrade(&inner));
        crate::insight::start_saver(&inner, keys.clone());
        #[cfg(feature = "otel")]
        crate::otel::observe(&inner, otel);
        if let Some(bp) = self.backplane {
            let task = spawn_listener(inner.clone(), bp);
            inner.tasks.lock().push(task);
        }
        Ok(Cache {
            inner,
            keys,
            call: Default::default(),
        })
    }
}
