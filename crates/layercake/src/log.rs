//! Log events through `tracing` (feature `tracing`): one function per event, so call sites
//! are one line, and each compiles to nothing without the feature.
//!
//! Levels keep a healthy cache silent above DEBUG: WARN when a circuit breaker opens (once
//! per opening, not per failed call) or the backplane listener lags, INFO when a breaker
//! closes again, DEBUG for each tier error the cache went on without, a fill dropped because
//! the key changed, a publish that failed and repairs applied. Nothing the cache absorbs is
//! logged at ERROR. Fields are the cache and tier names, error kinds and counts — never a
//! key, a value or an error message (`docs/observability.md`, "Logs with tracing").

use layercake_core::{Error, Result};

use crate::breaker::BreakerState;
use crate::telemetry::Telemetry;

/// The `tracing` target of every event.
#[cfg(feature = "tracing")]
const TARGET: &str = "layercake";

/// A circuit breaker changed state: WARN when it opens, INFO when it closes.
#[inline]
pub(crate) fn breaker_changed(tel: &Telemetry, tier: usize, state: BreakerState) {
    #[cfg(feature = "tracing")]
    {
        let (cache, tier) = (&*tel.cache_name, tel.tier_name(tier));
        match state {
            BreakerState::Open => tracing::warn!(
                target: TARGET, cache, tier,
                "circuit breaker opened: the tier is skipped until a probe succeeds"
            ),
            BreakerState::Closed => tracing::info!(
                target: TARGET, cache, tier,
                "circuit breaker closed: the tier answers again"
            ),
            BreakerState::HalfOpen => tracing::debug!(
                target: TARGET, cache, tier, "circuit breaker half-open: probing the tier"
            ),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (tel, tier, state);
}

/// A tier call failed and the cache went on without the tier (DEBUG: an outage is reported
/// once, by the breaker opening, and counted in the metrics).
#[inline]
pub(crate) fn tier_error(tel: &Telemetry, tier: usize, err: &Error) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: TARGET,
        cache = &*tel.cache_name,
        tier = tel.tier_name(tier),
        error.kind = err.kind().as_str(),
        "tier call failed; the cache went on without it"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (tel, tier, err);
}

/// A promotion's fill of `tier` ended: DEBUG when it was dropped because the key changed
/// since its read began (a newer write or removal wins).
#[inline]
pub(crate) fn fill(tel: &Telemetry, tier: usize, stored: &Result<bool>) {
    #[cfg(feature = "tracing")]
    if let Ok(false) = stored {
        tracing::debug!(
            target: TARGET,
            cache = &*tel.cache_name,
            tier = tel.tier_name(tier),
            "fill dropped: the key changed since its read began"
        );
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (tel, tier, stored);
}

/// Repairs were applied to `tier` (DEBUG).
#[inline]
pub(crate) fn repairs_applied(tel: &Telemetry, tier: usize, count: usize) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: TARGET,
        cache = &*tel.cache_name,
        tier = tel.tier_name(tier),
        count,
        "repairs applied: older copies removed from a tier that missed a write"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (tel, tier, count);
}

/// A backplane message could not be published (DEBUG: the backplane reports its own
/// disconnection once).
#[inline]
pub(crate) fn backplane_publish_failed(tel: &Telemetry) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: TARGET,
        cache = &*tel.cache_name,
        "backplane publish failed: other instances keep their local copies until TTL"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = tel;
}

/// The backplane listener lagged and lost `lost` messages; the local tiers are dropped (WARN).
#[inline]
pub(crate) fn backplane_lagged(tel: &Telemetry, lost: u64) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: TARGET,
        cache = &*tel.cache_name,
        lost,
        "backplane listener lagged: messages lost, local tiers dropped"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (tel, lost);
}
