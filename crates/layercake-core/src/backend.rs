//! [`Backend`]: the one trait every tier implements.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::capability::Capability;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fill::{FillOutcome, Tombstone};
use crate::key::Key;
use crate::selector::Selector;

/// A cache tier: memory, Redis, PostgreSQL, a directory, or anything else.
///
/// Required: [`get`](Backend::get), [`set`](Backend::set), [`delete`](Backend::delete),
/// [`kind`](Backend::kind), [`capability`](Backend::capability). Everything else has a default
/// that a backend overrides when it can do better (and says so in its [`Capability`]).
///
/// The contract is written as `# Behavior` bullets: those below hold for every method, and
/// each method carries its own. `layercake-testkit`'s conformance suite checks every bullet
/// with a case of its own (and the repository's tidy test keeps bullets and cases in step).
///
/// # Behavior
///
/// - an error (unreachable server, timeout, …) is `Err`, never reported as a miss: a backend
///   that cannot reach its storage fails `get`, `get_many`, `keys_with_prefix`, `fill`, its
///   writes and `health`
/// - hostile keys (path traversal, SQL quotes, glob characters, unicode, the longest allowed
///   key) round-trip and never reach anywhere but the backend's own storage
/// - an operation the backend's [`Capability`] does not claim (`invalidate` by prefix or by
///   tag, `clear`, `keys_with_prefix`) is [`Unsupported`](crate::ErrorKind::Unsupported) and
///   changes nothing
///
/// # Conditional fills and tombstones
///
/// An authoritative write (`set`, `delete`, `invalidate`) always applies. A *fill* (a
/// promotion from a lower tier, or a loader's result written after its read) is conditional,
/// so that it can never undo a newer write or a removal; removals that must hold against fills
/// in flight leave short-lived tombstones. With [`Capability::conditional_fill`] the backend
/// checks and writes atomically against every writer sharing its storage; without it the
/// trait's defaults apply (see each method).
///
/// A backend may keep a tombstone when a later `set` or `delete` of the key happens (the
/// entry written by `set` refuses older fills anyway) or drop it; a newer tombstone of a key
/// that has one keeps the higher version.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// The backend kind: `"memory"`, `"redis"`, `"postgres"`, `"file"`, … (bounded, used in
    /// metrics and errors).
    fn kind(&self) -> &'static str;

    /// What the backend supports natively.
    fn capability(&self) -> Capability;

    /// Read an entry.
    ///
    /// # Behavior
    ///
    /// - a key never written, or deleted, is a miss: `Ok(None)`; so are keys that merely
    ///   resemble a stored one (a prefix of it, an extension, another case)
    /// - a key past its entry's `retain_until` (by the backend's clock) is a miss
    /// - an entry past `expires_at` but before `retain_until` is returned: staleness is the
    ///   caller's to judge
    /// - stored bytes that are not a valid envelope for the key are a miss, are removed, and
    ///   are counted in [`corrupt_reads`](Backend::corrupt_reads); they are never returned
    async fn get(&self, key: &Key) -> Result<Option<Entry>>;

    /// Write an entry (replacing any previous one). The backend keeps it until
    /// `entry.retain_until()`.
    ///
    /// # Behavior
    ///
    /// - `set` then `get` returns an entry equal to the one written: value bytes (empty and
    ///   1 MiB included), created-at, expiry, stale-until, version, tags, format, compression
    ///   and flags
    /// - a second `set` of a key replaces the first entirely
    /// - `set` of an entry already past `retain_until` stores nothing and removes any older copy
    /// - concurrent writers never produce a torn entry: a read returns one of the written
    ///   entries
    async fn set(&self, key: &Key, entry: &Entry) -> Result<()>;

    /// Remove an entry; removing a missing key succeeds.
    ///
    /// # Behavior
    ///
    /// - `delete` removes the key and only the key; deleting a missing key is `Ok(())`; a
    ///   deleted key can be written again
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Read several entries; the result has one slot per key, in order.
    ///
    /// # Behavior
    ///
    /// - `get_many` returns, in order, exactly what a loop of `get` returns (duplicates
    ///   allowed)
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }

    /// Write several entries.
    ///
    /// # Behavior
    ///
    /// - `set_many` and `delete_many` are equivalent to loops of `set` and `delete`
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        for (k, e) in items {
            self.set(k, e).await?;
        }
        Ok(())
    }

    /// Remove several entries.
    ///
    /// # Behavior
    ///
    /// - `set_many` and `delete_many` are equivalent to loops of `set` and `delete`
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        for k in keys {
            self.delete(k).await?;
        }
        Ok(())
    }

    /// Remove every entry the selector matches.
    ///
    /// # Behavior
    ///
    /// - `invalidate(Prefix(p))` removes exactly the keys starting with the literal text `p`
    ///   (`*`, `?`, `[`, `\` and `%` have no special meaning)
    /// - `invalidate(Tag(t))` removes exactly the entries tagged `t`
    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        Err(Error::unsupported(format!(
            "{} backend cannot invalidate by {selector:?}",
            self.kind()
        ))
        .with_backend(self.kind()))
    }

    /// Remove every entry of this backend instance.
    ///
    /// # Behavior
    ///
    /// - `clear` removes every entry and tombstone of this backend instance: its own prefix,
    ///   table or directory only, never other data on the same server
    async fn clear(&self) -> Result<()> {
        Err(
            Error::unsupported(format!("{} backend cannot clear", self.kind()))
                .with_backend(self.kind()),
        )
    }

    /// Check that the backend can serve requests.
    ///
    /// # Behavior
    ///
    /// - `health` is `Ok` when the backend can serve requests
    async fn health(&self) -> Result<()> {
        Ok(())
    }

    /// Up to `limit` live keys starting with the literal text `prefix`, in no particular
    /// order (used to warm upper tiers from a lower one). Backends without
    /// [`Capability::list_keys`] return [`Unsupported`](crate::ErrorKind::Unsupported).
    ///
    /// # Behavior
    ///
    /// - `keys_with_prefix` lists the live keys starting with the literal text `prefix` (no
    ///   wildcards), at most `limit` of them; a deleted key is not listed
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        let _ = (prefix, limit);
        Err(
            Error::unsupported(format!("{} backend cannot list keys", self.kind()))
                .with_backend(self.kind()),
        )
    }

    /// Write an entry only if nothing newer is known for its key (see the trait's
    /// "Conditional fills and tombstones").
    ///
    /// The default (for backends without [`Capability::conditional_fill`]) is a best-effort
    /// `get`, version compare, then `set`: not atomic (a write or removal between the two
    /// calls can be undone) and blind to tombstones; an already expired entry goes through
    /// `set` (which stores nothing) and is reported as `Stored`.
    ///
    /// # Behavior
    ///
    /// - `fill` of a key holding nothing (or only an expired entry) stores the entry and
    ///   returns [`FillOutcome::Stored`]; `fill_many` is equivalent to a loop of `fill`; with
    ///   [`Capability::conditional_fill`], `fill` of an entry already past `retain_until`
    ///   stores nothing, removes nothing and returns [`FillOutcome::Expired`]
    /// - `fill` never replaces a stored entry whose version is at or above the entry's: it
    ///   returns [`FillOutcome::KeptNewer`] and the stored entry is unchanged; an older stored
    ///   entry is replaced; `set` is never conditional
    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        if let Some(stored) = self.get(key).await?
            && stored.version >= entry.version
        {
            return Ok(FillOutcome::KeptNewer);
        }
        self.set(key, entry).await?;
        Ok(FillOutcome::Stored)
    }

    /// [`fill`](Backend::fill) several entries; one outcome per item, in order. The default
    /// is a loop of `fill` that stops at the first error.
    ///
    /// # Behavior
    ///
    /// - `fill` of a key holding nothing (or only an expired entry) stores the entry and
    ///   returns [`FillOutcome::Stored`]; `fill_many` is equivalent to a loop of `fill`; with
    ///   [`Capability::conditional_fill`], `fill` of an entry already past `retain_until`
    ///   stores nothing, removes nothing and returns [`FillOutcome::Expired`]
    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        let mut out = Vec::with_capacity(items.len());
        for (k, e) in items {
            out.push(self.fill(k, e).await?);
        }
        Ok(out)
    }

    /// Remove an entry and leave a tombstone that refuses fills of the key at or below
    /// `tombstone.version` for `tombstone.ttl`. Removing a missing key succeeds (and still
    /// leaves the tombstone).
    ///
    /// The default (for backends without [`Capability::conditional_fill`]) is
    /// [`delete`](Backend::delete): no tombstone is kept.
    ///
    /// # Behavior
    ///
    /// With [`Capability::conditional_fill`]:
    ///
    /// - `delete_with(key, tombstone)` removes the entry like `delete` and, for
    ///   `tombstone.ttl`, refuses every fill of the key at or below `tombstone.version`
    ///   ([`FillOutcome::Tombstoned`]); a fill above it is stored, and `set` is never refused
    /// - tombstones are invisible: `get`, `get_many` and `keys_with_prefix` never return or
    ///   list them, and they never count as entries
    /// - a tombstone (of `delete_with` or `invalidate_with`) stops refusing fills once its
    ///   `ttl` has passed, by the backend's clock (or the server's, for backends without
    ///   `clock_driven_expiry`)
    /// - a fill racing a `delete_with` or `invalidate_with` of its key never leaves an entry
    ///   at or below the tombstone's version, whatever the interleaving
    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        let _ = tombstone;
        self.delete(key).await
    }

    /// Remove every entry the selector matches and leave a tombstone that refuses fills of
    /// matching keys (prefix) or entries (tag) at or below `tombstone.version` for
    /// `tombstone.ttl`.
    ///
    /// The default (for backends without [`Capability::conditional_fill`]) is
    /// [`invalidate`](Backend::invalidate): no tombstone is kept.
    ///
    /// # Behavior
    ///
    /// With [`Capability::conditional_fill`]:
    ///
    /// - `invalidate_with(selector, tombstone)` removes what `invalidate(selector)` removes
    ///   and, for `tombstone.ttl`, refuses fills at or below `tombstone.version` of keys
    ///   starting with the prefix, or of entries carrying the tag
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        let _ = tombstone;
        self.invalidate(selector).await
    }

    /// How many stored copies failed to decode and were removed since start.
    fn corrupt_reads(&self) -> u64 {
        0
    }

    /// The concrete backend, for callers that know a backend type and want its inherent
    /// fast paths (the composer uses the memory tier's synchronous reads this way).
    /// `None` by default.
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        None
    }
}

/// A shared, type-erased backend.
pub type DynBackend = Arc<dyn Backend>;

/// The future of a forwarded call: the inner backend's own boxed future, returned as is.
type Fwd<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// Forwards every call to the shared backend. The async methods hand back the inner backend's
/// boxed future itself instead of boxing another one around it: a tier is an `Arc<dyn
/// Backend>`, and a second allocation and dynamic call per operation measured ~0.1 µs.
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn capability(&self) -> Capability {
        (**self).capability()
    }
    fn get<'s, 'k, 'f>(&'s self, key: &'k Key) -> Fwd<'f, Option<Entry>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).get(key)
    }
    fn set<'s, 'k, 'e, 'f>(&'s self, key: &'k Key, entry: &'e Entry) -> Fwd<'f, ()>
    where
        's: 'f,
        'k: 'f,
        'e: 'f,
        Self: 'f,
    {
        (**self).set(key, entry)
    }
    fn delete<'s, 'k, 'f>(&'s self, key: &'k Key) -> Fwd<'f, ()>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).delete(key)
    }
    fn get_many<'s, 'k, 'f>(&'s self, keys: &'k [Key]) -> Fwd<'f, Vec<Option<Entry>>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).get_many(keys)
    }
    fn set_many<'s, 'i, 'f>(&'s self, items: &'i [(Key, Entry)]) -> Fwd<'f, ()>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        (**self).set_many(items)
    }
    fn delete_many<'s, 'k, 'f>(&'s self, keys: &'k [Key]) -> Fwd<'f, ()>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).delete_many(keys)
    }
    fn invalidate<'s, 'x, 'f>(&'s self, selector: &'x Selector) -> Fwd<'f, ()>
    where
        's: 'f,
        'x: 'f,
        Self: 'f,
    {
        (**self).invalidate(selector)
    }
    fn clear<'s, 'f>(&'s self) -> Fwd<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).clear()
    }
    fn health<'s, 'f>(&'s self) -> Fwd<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        (**self).health()
    }
    fn keys_with_prefix<'s, 'p, 'f>(&'s self, prefix: &'p str, limit: usize) -> Fwd<'f, Vec<Key>>
    where
        's: 'f,
        'p: 'f,
        Self: 'f,
    {
        (**self).keys_with_prefix(prefix, limit)
    }
    fn fill<'s, 'k, 'e, 'f>(&'s self, key: &'k Key, entry: &'e Entry) -> Fwd<'f, FillOutcome>
    where
        's: 'f,
        'k: 'f,
        'e: 'f,
        Self: 'f,
    {
        (**self).fill(key, entry)
    }
    fn fill_many<'s, 'i, 'f>(&'s self, items: &'i [(Key, Entry)]) -> Fwd<'f, Vec<FillOutcome>>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        (**self).fill_many(items)
    }
    fn delete_with<'s, 'k, 'f>(&'s self, key: &'k Key, tombstone: Tombstone) -> Fwd<'f, ()>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        (**self).delete_with(key, tombstone)
    }
    fn invalidate_with<'s, 'x, 'f>(
        &'s self,
        selector: &'x Selector,
        tombstone: Tombstone,
    ) -> Fwd<'f, ()>
    where
        's: 'f,
        'x: 'f,
        Self: 'f,
    {
        (**self).invalidate_with(selector, tombstone)
    }
    fn corrupt_reads(&self) -> u64 {
        (**self).corrupt_reads()
    }
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        (**self).as_any()
    }
}
