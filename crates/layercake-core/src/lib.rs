//! Contracts of the layercake tiered cache.
//!
//! Every tier implements [`Backend`]; every stored value is an [`Entry`] written in the one
//! binary [`envelope`] format; keys are validated [`Key`]s made by a [`KeyStrategy`];
//! caching decisions come from a [`Policy`]; typed values become bytes through a [`Codec`];
//! every failure is an [`Error`] with an [`ErrorKind`]. Cross-instance invalidation goes
//! through a [`Backplane`](backplane::Backplane).
//!
//! This crate has no I/O of its own: backends live in `layercake-memory`, `layercake-redis`,
//! `layercake-postgres` and `layercake-file`; the composer is the `layercake` crate.

pub mod backend;
pub mod backplane;
pub mod capability;
pub mod clock;
pub mod codec;
pub mod entry;
pub mod envelope;
pub mod error;
pub mod fill;
pub mod key;
pub mod lock;
pub mod policy;
pub mod selector;
pub mod strategy;

pub use backend::{Backend, DynBackend};
pub use capability::{Capability, Reach};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, Timestamp, system_clock};
pub use codec::{Codec, Compression, Encoded, Format};
pub use entry::{Entry, EntryFlags};
pub use envelope::EnvelopeLimits;
pub use error::{Error, ErrorKind, Result};
pub use fill::{FillOutcome, Tombstone, TombstoneLog};
pub use key::{DEFAULT_MAX_KEY_LEN, Key, KeyRule};
pub use lock::{DistributedLock, LockToken};
pub use policy::{
    Decision, FixedTtl, Layered, NamespaceTable, Policy, PolicyContext, PolicyExt, Promotion,
    RefreshAhead, Rule, TierSet,
};
pub use selector::Selector;
pub use strategy::{
    HashedKeys, KeyStrategy, KeyStrategyExt, Namespace, PlainKeys, canonical_json, namespace_of,
};

/// Re-exported so backends and users name the same `Bytes` and `async_trait`.
pub use async_trait::async_trait;
pub use bytes::Bytes;
