//! [`IntoKey`]: what the typed API accepts as a key.

use layercake_core::{Key, KeyStrategy, KeyStrategyExt, Result};
use serde::Serialize;

/// Something the cache can turn into a [`Key`] with its [`KeyStrategy`].
///
/// - `&str` / `&String`: caller text, through [`KeyStrategy::key_for_text`];
/// - [`Request`]: any `Serialize` request, through its canonical JSON;
/// - `&Key`: an already built key, used as is;
/// - a reference to any of these that is `Copy` (`&&str`, `&&Key`).
pub trait IntoKey {
    /// Build the key.
    fn into_key(self, keys: &dyn KeyStrategy) -> Result<Key>;
}

impl IntoKey for &str {
    fn into_key(self, keys: &dyn KeyStrategy) -> Result<Key> {
        keys.key_for_text(self)
    }
}

impl IntoKey for &String {
    fn into_key(self, keys: &dyn KeyStrategy) -> Result<Key> {
        keys.key_for_text(self)
    }
}

impl IntoKey for &Key {
    fn into_key(self, _keys: &dyn KeyStrategy) -> Result<Key> {
        Ok(self.clone())
    }
}

/// A reference to any copyable key input (`&&str`, `&&Key`, …): what iterating a slice of
/// inputs yields, e.g. for [`Cache::get_many`](crate::Cache::get_many).
impl<K: IntoKey + Copy> IntoKey for &K {
    fn into_key(self, keys: &dyn KeyStrategy) -> Result<Key> {
        (*self).into_key(keys)
    }
}

/// A serializable request used as a key (through its canonical JSON).
///
/// ```
/// # use layercake::Request;
/// let prompt = serde_json::json!({"model": "m", "prompt": "hello"});
/// let _key = Request(&prompt);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Request<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> IntoKey for Request<'_, T> {
    fn into_key(self, keys: &dyn KeyStrategy) -> Result<Key> {
        keys.key_for(self.0)
    }
}
