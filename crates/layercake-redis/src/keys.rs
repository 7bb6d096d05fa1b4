//! The Redis key layout of one cache, and the glob escaping used by `SCAN MATCH`.
//!
//! - an entry lives at `prefix + key`;
//! - the tag index of tag `t` is a set at `prefix + "\0tag:" + t` whose members are the
//!   (unprefixed) keys written with that tag. [`Key`]s never contain control characters and
//!   the prefix has none, so no entry key can start with `prefix + "\0"`: the two spaces never
//!   collide, and a prefix scan for a user prefix never meets a tag set;
//! - no hash tags are added: in a cluster, entries spread over every slot; operations that
//!   touch several slots (tag writes, `MGET`, `UNLINK`) are split per slot by the backend or
//!   by redis-rs.

use layercake_core::envelope::{self, HeaderInfo};
use layercake_core::{Error, Key, Result};

/// An entry's Redis key (`prefix + key`) as one command argument.
pub(crate) struct EntryArg<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl redis::ToRedisArgs for EntryArg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = w.write_all(self.prefix.as_bytes());
        let _ = w.write_all(self.key.as_bytes());
    }
}

/// The key layout of one cache.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    prefix: String,
}

impl Layout {
    pub(crate) fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the entry for `key` lives, as a command argument written in place (no `String`
    /// is built for it: a `GET` is the hottest path of the tier).
    pub(crate) fn entry_arg<'a>(&'a self, key: &'a Key) -> EntryArg<'a> {
        EntryArg {
            prefix: &self.prefix,
            key: key.as_str(),
        }
    }

    /// Where the entry for `key` lives.
    pub(crate) fn entry(&self, key: &Key) -> String {
        self.entry_str(key.as_str())
    }

    /// Where the entry for the key text `key` lives.
    pub(crate) fn entry_str(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.len());
        s.push_str(&self.prefix);
        s.push_str(key);
        s
    }

    /// Where the distributed lock for `key` lives (a control character keeps it apart from
    /// entries, whose keys cannot contain one).
    pub(crate) fn lock(&self, key: &Key) -> String {
        format!("{}\0lock:{}", self.prefix, key.as_str())
    }

    /// Where the index of `tag` lives.
    pub(crate) fn tag(&self, tag: &str) -> String {
        format!("{}\0tag:{tag}", self.prefix)
    }

    /// The `SCAN MATCH` pattern for every key of this cache starting with `user_prefix`.
    pub(crate) fn scan_pattern(&self, user_prefix: &str) -> String {
        let mut p = escape_glob(&self.prefix);
        p.push_str(&escape_glob(user_prefix));
        p.push('*');
        p
    }
}

/// Escape the glob characters of Redis `MATCH` patterns (`*`, `?`, `[`, `]`, `\`) so that
/// `text` matches only itself.
///
/// ```
/// # use layercake_redis::escape_glob;
/// assert_eq!(escape_glob(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
/// ```
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How many bytes of an envelope hold its header, key and tags at most.
pub(crate) fn tag_section_bound(key_len: usize, limits: &envelope::EnvelopeLimits) -> usize {
    HeaderInfo::LEN + key_len + limits.max_tags * (2 + limits.max_tag_len)
}

/// The tags of an envelope, read from its first bytes (header, key, tags; the payload and the
/// checksum are not needed). Any malformation is a `Corrupt` error.
pub(crate) fn tags_from_head(
    key: &str,
    head: &[u8],
    limits: &envelope::EnvelopeLimits,
) -> Result<Vec<String>> {
    let h = envelope::peek_header(head)?;
    if h.key_len != key.len() || h.tag_count > limits.max_tags {
        return Err(Error::corrupt("envelope header does not fit the key"));
    }
    let mut pos = HeaderInfo::LEN;
    if head.get(pos..pos + h.key_len) != Some(key.as_bytes()) {
        return Err(Error::corrupt("envelope holds another key's entry"));
    }
    pos += h.key_len;
    let mut tags = Vec::with_capacity(h.tag_count);
    for _ in 0..h.tag_count {
        let len = match head.get(pos..pos + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
            None => return Err(Error::corrupt("tag length past the end")),
        };
        pos += 2;
        let bytes = head
            .get(pos..pos + len)
            .ok_or_else(|| Error::corrupt("tag past the end"))?;
        let t = std::str::from_utf8(bytes).map_err(|_| Error::corrupt("tag is not UTF-8"))?;
        tags.push(t.to_owned());
        pos += len;
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use layercake_core::{Entry, EnvelopeLimits, Timestamp};
    use std::time::Duration;

    #[test]
    fn an_entry_argument_is_the_entry_key_as_one_argument() {
        let l = Layout::new("lc:c:");
        let k = Key::new("doc:ü/1").unwrap();
        let written = redis::cmd("GET").arg(l.entry_arg(&k)).get_packed_command();
        let built = redis::cmd("GET").arg(l.entry(&k)).get_packed_command();
        assert_eq!(written, built);
        assert!(
            String::from_utf8_lossy(&written).contains("$13\r\nlc:c:doc:ü/1\r\n"),
            "{}",
            String::from_utf8_lossy(&written)
        );
    }

    #[test]
    fn layout_keeps_entries_and_tags_apart() {
        let l = Layout::new("lc:c:");
        let k = Key::new("a*b").unwrap();
        assert_eq!(l.entry(&k), "lc:c:a*b");
        assert_eq!(l.tag("t"), "lc:c:\0tag:t");
        assert_eq!(l.scan_pattern("a*["), r"lc:c:a\*\[*");
        assert_eq!(Layout::new("x[1]:").scan_pattern(""), r"x\[1\]:*");
    }

    #[test]
    fn tags_are_read_from_the_head_only() {
        let k = Key::new("some:key").unwrap();
        let e = Entry::new(vec![9u8; 1000], Timestamp(1), Duration::from_secs(5))
            .with_tags(["alpha", "", "γ"]);
        let bytes = envelope::encode(&k, &e).unwrap();
        let lim = EnvelopeLimits::default();
        let head = &bytes[..tag_section_bound(k.len(), &lim).min(bytes.len())];
        assert_eq!(
            tags_from_head(k.as_str(), head, &lim).unwrap(),
            ["alpha", "", "γ"]
        );
        assert!(tags_from_head("other:k", head, &lim).is_err());
        assert!(tags_from_head(k.as_str(), &head[..60], &lim).is_err());
        assert!(tags_from_head(k.as_str(), b"garbage", &lim).is_err());
    }
}
