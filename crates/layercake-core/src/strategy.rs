//! [`KeyStrategy`]: how what the caller has (text or a request) becomes a [`Key`].

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::key::{DEFAULT_MAX_KEY_LEN, Key};

/// A namespace and its schema/model version; every key of a strategy starts with
/// `"{name}:v{version}:"`. Bumping the version changes every key of the namespace
/// (version-based invalidation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    name: Arc<str>,
    version: u32,
}

impl Namespace {
    /// A namespace; the name must be 1–64 characters of `[A-Za-z0-9_.-]`.
    ///
    /// ```
    /// use layercake_core::Namespace;
    /// assert!(Namespace::new("embedding", 3).is_ok());
    /// assert!(Namespace::new("bad:name", 1).is_err());
    /// ```
    pub fn new(name: impl AsRef<str>, version: u32) -> Result<Namespace> {
        let name = name.as_ref();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(Error::config(format!(
                "namespace {name:?} must be 1-64 characters of A-Z a-z 0-9 _ - ."
            )));
        }
        Ok(Namespace {
            name: Arc::from(name),
            version,
        })
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The same namespace at another version.
    pub fn with_version(&self, version: u32) -> Namespace {
        Namespace {
            name: self.name.clone(),
            version,
        }
    }
    /// `"{name}:v{version}:"`, the prefix of every key in this namespace (use it with prefix
    /// invalidation).
    pub fn prefix(&self) -> String {
        format!("{}:v{}:", self.name, self.version)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:v{}", self.name, self.version)
    }
}

/// The namespace of a key built by a strategy: the text before the first `:` (empty if none).
pub fn namespace_of(key: &str) -> &str {
    key.split_once(':').map_or("", |(ns, _)| ns)
}

/// Canonical JSON of any serializable value (RFC 8785: object keys sorted, no insignificant
/// whitespace), so equal requests give equal bytes whatever their map order.
///
/// ```
/// let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[2, 3]}"#).unwrap();
/// let b: serde_json::Value = serde_json::from_str(r#"{ "a":[2,3], "b":1 }"#).unwrap();
/// let ca = layercake_core::canonical_json(&a).unwrap();
/// assert_eq!(ca, layercake_core::canonical_json(&b).unwrap());
/// assert_eq!(ca, br#"{"a":[2,3],"b":1}"#);
/// ```
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_jcs::to_vec(value)
        .map_err(|e| Error::codec("request cannot be written as canonical JSON").with_source(e))
}

/// Turns what the caller has into a [`Key`].
///
/// Contract:
/// - every key starts with the namespace prefix `"{name}:v{version}:"`;
/// - equal inputs give equal keys; requests that serialize to the same canonical JSON give
///   equal keys regardless of map order;
/// - changing the namespace or its version changes every key;
/// - an input that cannot make a valid key is an error naming the broken rule, never a
///   truncated or altered key.
pub trait KeyStrategy: Send + Sync + fmt::Debug + 'static {
    /// The namespace of every key this strategy makes.
    fn namespace(&self) -> &Namespace;
    /// A key for caller text.
    fn key_for_text(&self, text: &str) -> Result<Key>;
    /// A key for a request already written as canonical JSON.
    fn key_for_canonical(&self, canonical_json: &[u8]) -> Result<Key>;
}

/// Conveniences for every [`KeyStrategy`].
pub trait KeyStrategyExt: KeyStrategy {
    /// A key for any serializable request (through its canonical JSON).
    fn key_for<T: Serialize + ?Sized>(&self, request: &T) -> Result<Key> {
        self.key_for_canonical(&canonical_json(request)?)
    }
}

impl<S: KeyStrategy + ?Sized> KeyStrategyExt for S {}

/// Readable keys: `"{ns}:v{version}:{text}"`; requests become their canonical JSON.
///
/// ```
/// use layercake_core::{KeyStrategy, KeyStrategyExt, Namespace, PlainKeys};
/// let s = PlainKeys::new(Namespace::new("catalog", 2).unwrap());
/// assert_eq!(s.key_for_text("tools").unwrap().as_str(), "catalog:v2:tools");
/// let k = s.key_for(&serde_json::json!({"b": 1, "a": 2})).unwrap();
/// assert_eq!(k.as_str(), r#"catalog:v2:{"a":2,"b":1}"#);
/// ```
#[derive(Debug, Clone)]
pub struct PlainKeys {
    ns: Namespace,
    prefix: String,
    max_len: usize,
}

impl PlainKeys {
    /// Plain keys in `ns`, limited to 1024 bytes.
    pub fn new(ns: Namespace) -> PlainKeys {
        let prefix = ns.prefix();
        PlainKeys {
            ns,
            prefix,
            max_len: DEFAULT_MAX_KEY_LEN,
        }
    }
    /// Set the key length limit.
    pub fn with_max_len(mut self, max_len: usize) -> PlainKeys {
        self.max_len = max_len;
        self
    }
}

impl KeyStrategy for PlainKeys {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
    fn key_for_text(&self, text: &str) -> Result<Key> {
        // Validate the caller's part (the namespace prefix is valid by construction), then
        // build the key once.
        crate::key::validate(text, self.max_len)?;
        let total = self.prefix.len() + text.len();
        if total > self.max_len {
            return Key::with_max_len(format!("{}{text}", self.prefix), self.max_len);
        }
        Ok(Key::from_validated_parts(&self.prefix, text))
    }
    fn key_for_canonical(&self, canonical_json: &[u8]) -> Result<Key> {
        let text = std::str::from_utf8(canonical_json)
            .map_err(|_| Error::codec("canonical JSON is not UTF-8"))?;
        self.key_for_text(text)
    }
}

/// Digest keys: `"{ns}:v{version}:{32 hex chars}"`, the first 128 bits of the blake3 hash of
/// the text or of the request's canonical JSON. Fixed length whatever the input size; use it
/// for prompts, documents and requests.
///
/// ```
/// use layercake_core::{HashedKeys, KeyStrategy, KeyStrategyExt, Namespace};
/// let s = HashedKeys::new(Namespace::new("llm", 1).unwrap());
/// let a = s.key_for(&serde_json::json!({"model": "m", "prompt": "hi"})).unwrap();
/// let b = s.key_for(&serde_json::json!({"prompt": "hi", "model": "m"})).unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.len(), "llm:v1:".len() + 32);
/// ```
#[derive(Debug, Clone)]
pub struct HashedKeys {
    ns: Namespace,
}

impl HashedKeys {
    /// Digest keys in `ns`.
    pub fn new(ns: Namespace) -> HashedKeys {
        HashedKeys { ns }
    }
    fn digest_key(&self, domain: u8, input: &[u8]) -> Result<Key> {
        let mut h = blake3::Hasher::new();
        h.update(&[domain, 0]);
        h.update(input);
        let hash = h.finalize();
        let hex = hash.to_hex();
        Key::new(format!(
            "{}:v{}:{}",
            self.ns.name(),
            self.ns.version(),
            &hex.as_str()[..32]
        ))
    }
}

impl KeyStrategy for HashedKeys {
    fn namespace(&self) -> &Namespace {
        &self.ns
    }
    fn key_for_text(&self, text: &str) -> Result<Key> {
        if text.is_empty() {
            return Key::new("");
        }
        self.digest_key(b't', text.as_bytes())
    }
    fn key_for_canonical(&self, canonical_json: &[u8]) -> Result<Key> {
        self.digest_key(b'j', canonical_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn version_changes_every_key() {
        let v1 = HashedKeys::new(Namespace::new("search", 1).unwrap());
        let v2 = HashedKeys::new(Namespace::new("search", 2).unwrap());
        let req = serde_json::json!({"q": "rust"});
        assert_ne!(v1.key_for(&req).unwrap(), v2.key_for(&req).unwrap());
        let p1 = PlainKeys::new(Namespace::new("search", 1).unwrap());
        let p2 = PlainKeys::new(Namespace::new("search", 2).unwrap());
        assert_ne!(p1.key_for_text("q").unwrap(), p2.key_for_text("q").unwrap());
        assert!(
            p1.key_for_text("q")
                .unwrap()
                .starts_with(&p1.namespace().prefix())
        );
    }

    #[test]
    fn invalid_text_is_rejected_with_the_rule() {
        let p = PlainKeys::new(Namespace::new("n", 1).unwrap());
        assert!(
            p.key_for_text("")
                .unwrap_err()
                .to_string()
                .contains("not-empty")
        );
        assert!(
            p.key_for_text("a\nb")
                .unwrap_err()
                .to_string()
                .contains("no-control")
        );
        let long = "x".repeat(1020);
        assert!(
            p.key_for_text(&long)
                .unwrap_err()
                .to_string()
                .contains("max-length")
        );
        let h = HashedKeys::new(Namespace::new("n", 1).unwrap());
        assert!(h.key_for_text(&long).is_ok());
        assert!(h.key_for_text("").is_err());
    }

    #[test]
    fn namespace_of_key() {
        assert_eq!(namespace_of("embedding:v3:abc"), "embedding");
        assert_eq!(namespace_of("plain"), "");
    }

    proptest! {
        #[test]
        fn map_order_does_not_change_the_key(entries in proptest::collection::vec(("[a-z]{1,6}", any::<i64>()), 0..12)) {
            let h = HashedKeys::new(Namespace::new("req", 1).unwrap());
            let ordered: BTreeMap<_, _> = entries.iter().cloned().collect();
            let hashed: HashMap<_, _> = entries.iter().cloned().collect();
            let mut reversed: Vec<_> = ordered.iter().collect();
            reversed.reverse();
            let json_rev = format!("{{{}}}", reversed.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","));
            let from_rev: serde_json::Value = serde_json::from_str(&json_rev).unwrap();
            let k1 = h.key_for(&ordered).unwrap();
            prop_assert_eq!(&k1, &h.key_for(&hashed).unwrap());
            prop_assert_eq!(&k1, &h.key_for(&from_rev).unwrap());
        }
    }
}
