//! [`Key`]: the validated cache key every tier sees.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};

/// The default maximum key length in bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 1024;

/// The rule a rejected key broke; named in the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRule {
    /// Keys must not be empty.
    NotEmpty,
    /// Keys must not be longer than the limit (1024 bytes by default).
    MaxLength,
    /// Keys must not contain control characters (U+0000–U+001F, U+007F–U+009F).
    NoControlCharacters,
}

impl KeyRule {
    /// A stable name for the rule.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRule::NotEmpty => "not-empty",
            KeyRule::MaxLength => "max-length",
            KeyRule::NoControlCharacters => "no-control-characters",
        }
    }
}

/// A validated cache key.
///
/// Contract:
/// - built only through [`Key::new`] / [`Key::with_max_len`], which reject empty keys, keys over
///   the limit (1024 bytes by default) and keys with control characters, naming the rule broken;
/// - UTF-8 text; every tier sees the same key; a backend may encode it privately (the file tier
///   hashes it, never uses it as a path);
/// - cheap to clone (shared storage).
///
/// ```
/// use layercake_core::{Key, ErrorKind};
/// let k = Key::new("search:v1:rust tiered cache").unwrap();
/// assert_eq!(k.as_str(), "search:v1:rust tiered cache");
/// let err = Key::new("a\0b").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidKey);
/// assert!(err.to_string().contains("no-control-characters"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

impl Key {
    /// Validate `text` against the default limit ([`DEFAULT_MAX_KEY_LEN`]).
    pub fn new(text: impl AsRef<str>) -> Result<Key> {
        Self::with_max_len(text, DEFAULT_MAX_KEY_LEN)
    }

    /// Validate `text` against a custom length limit in bytes.
    pub fn with_max_len(text: impl AsRef<str>, max_len: usize) -> Result<Key> {
        let text = text.as_ref();
        validate(text, max_len)?;
        Ok(Key(Arc::from(text)))
    }

    /// The key `prefix + text`, both already checked against every rule and together within
    /// the length limit. One allocation (the key's own): short keys are joined on the stack
    /// first, where a `String` would be a second allocation and a second copy.
    pub(crate) fn from_validated_parts(prefix: &str, text: &str) -> Key {
        const STACK: usize = 192;
        let total = prefix.len() + text.len();
        if total <= STACK {
            let mut buf = [0u8; STACK];
            buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
            buf[prefix.len()..total].copy_from_slice(text.as_bytes());
            // Two `str`s joined are UTF-8; the check cannot fail, and costs little on ASCII.
            if let Ok(joined) = std::str::from_utf8(&buf[..total]) {
                return Key(Arc::from(joined));
            }
        }
        let mut s = String::with_capacity(total);
        s.push_str(prefix);
        s.push_str(text);
        Key(Arc::from(s))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: keys are never empty. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the key starts with `prefix`.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

fn invalid(rule: KeyRule, detail: String) -> Error {
    Error::new(
        ErrorKind::InvalidKey,
        format!("key rejected by rule {}: {detail}", rule.as_str()),
    )
}

/// Check `text` against the key rules without building a key.
pub fn validate(text: &str, max_len: usize) -> Result<()> {
    if text.is_empty() {
        return Err(invalid(KeyRule::NotEmpty, "the key is empty".into()));
    }
    if text.len() > max_len {
        return Err(invalid(
            KeyRule::MaxLength,
            format!("the key is {} bytes, the limit is {max_len}", text.len()),
        ));
    }
    // Fast path: printable ASCII only.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if let Some((at, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(invalid(
            KeyRule::NoControlCharacters,
            format!("control character U+{:04X} at byte {at}", c as u32),
        ));
    }
    Ok(())
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", &*self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        Key::new(value)
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Key::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_named() {
        let e = Key::new("").unwrap_err();
        assert!(e.to_string().contains("not-empty"), "{e}");
        let e = Key::new("x".repeat(1025)).unwrap_err();
        assert!(e.to_string().contains("max-length"), "{e}");
        assert!(e.to_string().contains("1025 bytes"), "{e}");
        let e = Key::new("tab\there").unwrap_err();
        assert!(e.to_string().contains("U+0009 at byte 3"), "{e}");
        let e = Key::new("c1\u{85}").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidKey);
    }

    #[test]
    fn accepts_unicode_and_punctuation() {
        for k in [
            "../../etc/passwd",
            "'; DROP TABLE x;--",
            "ключ 🔑",
            "a*b?[c]\\",
        ] {
            assert_eq!(Key::new(k).unwrap().as_str(), k);
        }
        assert!(Key::new("x".repeat(1024)).is_ok());
        assert!(Key::with_max_len("abcd", 3).is_err());
    }
}
