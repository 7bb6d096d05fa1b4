//! The Redis key layout of one cache, and the glob escaping used by `SCAN MATCH`.
//!
//! - an entry lives at `prefix + key`;
//! - the tag index of tag `t` is a set at `prefix + "\0tag:" + t` whose members are the
//!   (unprefixed) keys written with that tag. [`Key`]s never contain control characters and
//!   the prefix has none, so no entry key can start with `prefix + "\0"`: the two spaces never
//!   collide, and a prefix scan for a user prefix never meets a tag set;
//! - the tombstone of a key (left by `delete_with`) is a string at the entry key +
//!   `"\0tomb:"` + three characters chosen so that it hashes to the entry's cluster slot (a
//!   fill's script touches both); it holds the tombstone's version (8 bytes, big-endian) and
//!   expires by `PX`. A key never contains `\0`, so no entry key collides with it; key
//!   listings skip it;
//! - the selector tombstones (left by `invalidate_with`) are the fields of one hash at
//!   `prefix + "\0marks"`: field `"p" + prefix` or `"t" + tag`, value version (8 bytes,
//!   big-endian) then expiry in server milliseconds (8 bytes, big-endian);
//! - no hash tags are added: in a cluster, entries spread over every slot; operations that
//!   touch several slots (tag writes, `MGET`, `UNLINK`) are split per slot by the backend or
//!   by redis-rs.

use std::sync::OnceLock;

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

    /// The length of [`entry`](Self::entry)'s text, without building it (to size a command).
    pub(crate) fn entry_len(&self, key: &Key) -> usize {
        self.prefix.len() + key.len()
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

    /// Where the tombstone of `key` lives: same cluster slot as its entry (see the module
    /// docs).
    pub(crate) fn tombstone(&self, key: &Key) -> String {
        tombstone_of(&self.entry(key))
    }

    /// Where the selector tombstones of this cache live.
    pub(crate) fn marks(&self) -> String {
        format!("{}\0marks", self.prefix)
    }

    /// Whether `redis_key` (a key of this cache, as `SCAN` returns it) is an entry, not a
    /// tombstone, tag index or lock (those hold a control character after the prefix).
    pub(crate) fn is_entry(&self, redis_key: &str) -> bool {
        redis_key
            .get(self.prefix.len()..)
            .is_some_and(|k| !k.contains('\0'))
    }

    /// The `SCAN MATCH` pattern for every key of this cache starting with `user_prefix`.
    pub(crate) fn scan_pattern(&self, user_prefix: &str) -> String {
        let mut p = escape_glob(&self.prefix);
        p.push_str(&escape_glob(user_prefix));
        p.push('*');
        p
    }
}

/// Marker between an entry key and the slot-fixing characters of its tombstone.
const TOMB_SUFFIX: &str = "\0tomb:";

/// Characters the slot fix is made of: printable, no `{` or `}` (so it never forms a hash
/// tag), no glob characters.
const FIX_ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";

/// The tombstone key of the entry key `entry`: `entry + "\0tomb:" + fix`, where `fix` (three
/// characters, empty when the entry key has a hash tag, which the suffix keeps) makes the
/// whole key hash to the entry's cluster slot.
pub(crate) fn tombstone_of(entry: &str) -> String {
    let mut t = String::with_capacity(entry.len() + TOMB_SUFFIX.len() + 3);
    t.push_str(entry);
    t.push_str(TOMB_SUFFIX);
    if hash_tag(entry.as_bytes()).is_some() {
        // The first `{` and the first `}` after it are both in the entry key: the suffix
        // changes neither, so both keys hash the same tag.
        return t;
    }
    // Both keys are hashed whole (the fix has no braces, so no tag appears). CRC-16/XMODEM
    // is linear: crc(t ‖ fix) = crc(t ‖ 000) ⊕ crc(fix), so the fix whose CRC makes up the
    // difference to the entry's slot is looked up.
    let mut padded = t.as_bytes().to_vec();
    padded.extend_from_slice(&[0, 0, 0]);
    let need = (crc16(entry.as_bytes()) ^ crc16(&padded)) & SLOT_MASK;
    let fix = fix_table()[need as usize];
    // The alphabet is ASCII.
    t.extend(fix.iter().map(|&b| b as char));
    t
}

const SLOT_MASK: u16 = 0x3FFF;

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the hash of Redis Cluster slots.
pub(crate) fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash tag of a Redis key: the bytes between the first `{` and the first `}` after it,
/// if not empty.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// The cluster slot of a Redis key.
#[cfg(test)]
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) & SLOT_MASK
}

/// For each 14-bit value, three alphabet characters whose CRC-16 has those low bits (every
/// value is reachable; checked by a test). Built once, on first use (~260 k CRCs of 3 bytes).
fn fix_table() -> &'static [[u8; 3]] {
    static TABLE: OnceLock<Vec<[u8; 3]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![[0u8; 3]; usize::from(SLOT_MASK) + 1];
        let mut found = vec![false; table.len()];
        for &a in FIX_ALPHABET {
            for &b in FIX_ALPHABET {
                for &c in FIX_ALPHABET {
                    let v = usize::from(crc16(&[a, b, c]) & SLOT_MASK);
                    if !found[v] {
                        found[v] = true;
                        table[v] = [a, b, c];
                    }
                }
            }
        }
        table
    })
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
    fn tombstones_share_their_entry_slot() {
        use redis::cluster_routing::Slot;
        // Every 14-bit value has a fix.
        let table = fix_table();
        for (v, fix) in table.iter().enumerate() {
            assert_eq!(usize::from(crc16(fix) & SLOT_MASK), v);
        }
        let prefixes = ["lc:c:", "", "{app}:", "a{", "a}b:", "{}:", "x{y", "p{}{q}:"];
        let keys = [
            "k",
            "user:42",
            "{tag}rest",
            "a}b",
            "}{",
            "{",
            "}",
            "{}",
            "ключ 🔑",
            "x{y}z",
            "é/del",
            "*?[]\\",
        ];
        let mut n = 0;
        for p in prefixes {
            let l = Layout::new(p);
            for k in keys {
                let k = Key::new(k).unwrap();
                for i in 0..20 {
                    let k = Key::new(format!("{}{i}", k.as_str())).unwrap();
                    let (e, t) = (l.entry(&k), l.tombstone(&k));
                    assert_eq!(slot(e.as_bytes()), slot(t.as_bytes()), "{e:?} / {t:?}");
                    // The same rule as redis-rs's own routing.
                    assert_eq!(Slot::for_key(e.as_bytes()), Slot::for_key(t.as_bytes()));
                    assert!(t.starts_with(&e) && !l.is_entry(&t) && l.is_entry(&e));
                    n += 1;
                }
            }
        }
        assert_eq!(n, prefixes.len() * keys.len() * 20);
        assert_eq!(crc16(b"123456789"), 0x31C3, "the CRC-16/XMODEM check value");
        assert_eq!(Layout::new("lc:").marks(), "lc:\0marks");
        assert!(!Layout::new("lc:").is_entry("lc:\0marks"));
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
