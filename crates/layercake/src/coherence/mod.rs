//! Cross-instance coherence and the ordering of fills against changes: per-key epochs
//! ([`epochs`], in-process), entry versions ([`versions`]) and the backplane listener that drops
//! local copies when another instance changes a key ([`listener`]).
//!
//! `epochs` and `versions` sit below the [`Stack`](crate::stack::Stack) (it holds them);
//! `listener` sits above it (it applies events to the stack's tiers).

pub(crate) mod epochs;
mod listener;
mod versions;

pub(crate) use listener::{DEFAULT_DISCONNECTED_L1_CAP, spawn_listener};
pub(crate) use versions::Versions;
