//! [`Selector`]: which entries an invalidation removes.

/// Which entries [`Backend::invalidate`](crate::Backend::invalidate) removes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Selector {
    /// Every key that starts with this text (byte-wise). Wildcard characters have no meaning:
    /// `a*` removes keys starting with the two characters `a*` only.
    Prefix(String),
    /// Every entry carrying this tag.
    Tag(String),
}

impl Selector {
    /// Whether an entry with this key and these tags is selected.
    pub fn matches(&self, key: &str, tags: &[String]) -> bool {
        match self {
            Selector::Prefix(p) => key.starts_with(p.as_str()),
            Selector::Tag(t) => tags.iter().any(|x| x == t),
        }
    }
}
