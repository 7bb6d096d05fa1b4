//! Reading many keys from one tier: list under a prefix, read in chunks.

use layercake::{Backend, Entry, Key, Result};

/// Keys read per `get_many`.
pub(crate) const CHUNK: usize = 500;

/// Up to `max` live keys under `prefix`, sorted; `true` when `max` was reached (more may
/// exist).
pub(crate) async fn list(
    backend: &dyn Backend,
    prefix: &str,
    max: usize,
) -> Result<(Vec<Key>, bool)> {
    // One more than asked tells whether the bound was reached.
    let mut keys = backend
        .keys_with_prefix(prefix, max.saturating_add(1))
        .await?;
    keys.sort_unstable();
    keys.dedup();
    let capped = keys.len() > max;
    keys.truncate(max);
    Ok((keys, capped))
}

/// The entries of `keys`, in order, read `CHUNK` at a time.
pub(crate) async fn read(backend: &dyn Backend, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        out.extend(backend.get_many(chunk).await?);
    }
    Ok(out)
}
