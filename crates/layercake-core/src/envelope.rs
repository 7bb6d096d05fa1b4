//! The binary envelope: one wire format for an [`Entry`] in every byte-storing tier.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `LYRC` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | flags |
//! | 6 | 1 | payload format id |
//! | 7 | 1 | compression id |
//! | 8 | 8 | created-at (ms since epoch) |
//! | 16 | 8 | expires-at (ms) |
//! | 24 | 8 | stale-until (ms, 0 = none) |
//! | 32 | 8 | per-key version |
//! | 40 | 4 | key length |
//! | 44 | 2 | tag count |
//! | 46 | 4 | payload length |
//! | 50 | … | key, then each tag as (u16 length, bytes), then payload |
//! | end-8 | 8 | xxh3-64 of every byte before it |
//!
//! Every length is checked against [`EnvelopeLimits`] and against the bytes actually present
//! before anything is allocated; the payload is returned as a zero-copy slice of the input
//! ([`decode_owned`]: moved to the front of the caller's buffer, which becomes the payload).

use std::sync::Arc;

use bytes::Bytes;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::clock::Timestamp;
use crate::codec::{Compression, Format};
use crate::entry::{Entry, EntryFlags};
use crate::error::{Error, Result};
use crate::key::Key;

/// The four magic bytes that start every envelope.
pub const MAGIC: [u8; 4] = *b"LYRC";
/// The envelope format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
const HEADER: usize = 50;
const CHECKSUM: usize = 8;

/// Upper bounds checked while decoding (and encoding), before any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeLimits {
    /// Largest key, bytes.
    pub max_key_len: usize,
    /// Largest payload, bytes.
    pub max_payload_len: usize,
    /// Most tags per entry.
    pub max_tags: usize,
    /// Longest tag, bytes.
    pub max_tag_len: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        EnvelopeLimits {
            max_key_len: 16 * 1024,
            max_payload_len: 256 * 1024 * 1024,
            max_tags: 64,
            max_tag_len: 256,
        }
    }
}

/// Encode `entry` stored under `key` with the default limits.
///
/// ```
/// use layercake_core::{envelope, Entry, Key, Timestamp};
/// use std::time::Duration;
/// let key = Key::new("k").unwrap();
/// let entry = Entry::new(&b"v"[..], Timestamp(5), Duration::from_secs(1)).with_tags(["t"]);
/// let bytes = envelope::encode(&key, &entry).unwrap();
/// let back = envelope::decode(&key, bytes.into()).unwrap();
/// assert_eq!(back, entry);
/// ```
pub fn encode(key: &Key, entry: &Entry) -> Result<Vec<u8>> {
    encode_with_limits(key, entry, &EnvelopeLimits::default())
}

/// The exact length [`encode_with_limits`] produces for `entry` under `key`, or the error it
/// returns (a limit exceeded), without encoding anything: what a caller checks against a
/// tier's [`max_value_bytes`](crate::Capability::max_value_bytes) before writing.
///
/// ```
/// use layercake_core::{envelope, Entry, EnvelopeLimits, Key, Timestamp};
/// use std::time::Duration;
/// let key = Key::new("k").unwrap();
/// let entry = Entry::new(&b"value"[..], Timestamp(5), Duration::from_secs(1)).with_tags(["t"]);
/// let n = envelope::measure(&key, &entry, &EnvelopeLimits::default()).unwrap();
/// assert_eq!(n, envelope::encode(&key, &entry).unwrap().len());
/// ```
pub fn measure(key: &Key, entry: &Entry, limits: &EnvelopeLimits) -> Result<usize> {
    let kb = key.as_bytes();
    if kb.len() > limits.max_key_len {
        return Err(Error::too_large(format!(
            "key of {} bytes exceeds the envelope limit of {}",
            kb.len(),
            limits.max_key_len
        )));
    }
    if entry.value.len() > limits.max_payload_len || entry.value.len() > u32::MAX as usize {
        return Err(Error::too_large(format!(
            "value of {} bytes exceeds the envelope limit of {}",
            entry.value.len(),
            limits.max_payload_len
        )));
    }
    if entry.tags.len() > limits.max_tags {
        return Err(Error::too_large(format!(
            "{} tags exceed the limit of {}",
            entry.tags.len(),
            limits.max_tags
        )));
    }
    let mut tags_len = 0usize;
    for t in entry.tags.iter() {
        if t.len() > limits.max_tag_len {
            return Err(Error::too_large(format!(
                "a tag of {} bytes exceeds the limit of {}",
                t.len(),
                limits.max_tag_len
            )));
        }
        tags_len += 2 + t.len();
    }
    Ok(HEADER + kb.len() + tags_len + entry.value.len() + CHECKSUM)
}

/// Encode with explicit limits; a value over a limit is a [`TooLarge`](crate::ErrorKind::TooLarge)
/// error.
pub fn encode_with_limits(key: &Key, entry: &Entry, limits: &EnvelopeLimits) -> Result<Vec<u8>> {
    let total = measure(key, entry, limits)?;
    let mut out = Vec::with_capacity(total);
    write_measured(key, entry, &mut out);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// [`encode_with_limits`] written into `out` (a client's command buffer, say) instead of a
/// buffer of its own: the same bytes, one copy fewer. Checked against `limits` before anything
/// is written (a limit exceeded leaves `out` as it was; a writer that fails midway keeps what
/// it took, and the error says so); returns the length written.
///
/// ```
/// use layercake_core::{envelope, Entry, EnvelopeLimits, Key, Timestamp};
/// use std::time::Duration;
/// let key = Key::new("k").unwrap();
/// let entry = Entry::new(&b"value"[..], Timestamp(5), Duration::from_secs(1)).with_tags(["t"]);
/// let mut out = b"prefix:".to_vec();
/// let n = envelope::encode_into(&key, &entry, &EnvelopeLimits::default(), &mut out).unwrap();
/// assert_eq!(&out[7..], &envelope::encode(&key, &entry).unwrap()[..]);
/// assert_eq!(n, out.len() - 7);
/// ```
pub fn encode_into<W: std::io::Write + ?Sized>(
    key: &Key,
    entry: &Entry,
    limits: &EnvelopeLimits,
    out: &mut W,
) -> Result<usize> {
    let total = measure(key, entry, limits)?;
    let mut sink = Hashing {
        out,
        hasher: Xxh3::new(),
        failed: None,
    };
    write_measured(key, entry, &mut sink);
    match sink.failed {
        None => Ok(total),
        Some(e) => Err(Error::codec("writing an envelope failed").with_source(e)),
    }
}

/// Where [`write_measured`] writes: a buffer that computes its checksum at the end, or a
/// writer hashed on the way.
trait EnvelopeSink {
    /// Append `bytes` (covered by the checksum).
    fn put(&mut self, bytes: &[u8]);
    /// Append the checksum of everything put.
    fn finish(&mut self);
}

impl EnvelopeSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn finish(&mut self) {
        let sum = xxh3_64(self);
        self.extend_from_slice(&sum.to_le_bytes());
    }
}

/// A writer hashed on the way; the first write error is kept (and nothing more is written).
struct Hashing<'a, W: std::io::Write + ?Sized> {
    out: &'a mut W,
    hasher: Xxh3,
    failed: Option<std::io::Error>,
}

impl<W: std::io::Write + ?Sized> Hashing<'_, W> {
    fn write(&mut self, bytes: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = self.out.write_all(bytes)
        {
            self.failed = Some(e);
        }
    }
}

impl<W: std::io::Write + ?Sized> EnvelopeSink for Hashing<'_, W> {
    fn put(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.write(bytes);
    }
    fn finish(&mut self) {
        let sum = self.hasher.digest();
        self.write(&sum.to_le_bytes());
    }
}

/// Write the envelope of an entry already [`measure`]d: header, key, tags, payload, then (for
/// a buffer) the checksum.
fn write_measured(key: &Key, entry: &Entry, sink: &mut impl EnvelopeSink) {
    let kb = key.as_bytes();
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = FORMAT_VERSION;
    header[5] = entry.flags.0;
    header[6] = entry.format.id();
    header[7] = entry.compression.id();
    header[8..16].copy_from_slice(&entry.created_at.0.to_le_bytes());
    header[16..24].copy_from_slice(&entry.expires_at.0.to_le_bytes());
    header[24..32].copy_from_slice(&entry.stale_until.map_or(0, |t| t.0).to_le_bytes());
    header[32..40].copy_from_slice(&entry.version.to_le_bytes());
    header[40..44].copy_from_slice(&(kb.len() as u32).to_le_bytes());
    header[44..46].copy_from_slice(&(entry.tags.len() as u16).to_le_bytes());
    header[46..50].copy_from_slice(&(entry.value.len() as u32).to_le_bytes());
    sink.put(&header);
    sink.put(kb);
    for t in entry.tags.iter() {
        sink.put(&(t.len() as u16).to_le_bytes());
        sink.put(t.as_bytes());
    }
    sink.put(&entry.value);
    sink.finish();
}

/// Decode an envelope that must hold `expected`'s entry, with the default limits.
///
/// Contract: any malformed input — truncated, wrong magic, unknown format version or flags,
/// bad checksum, lengths over the limits or past the end, a key other than `expected`,
/// invalid UTF-8 — is a [`Corrupt`](crate::ErrorKind::Corrupt) error; never a panic.
pub fn decode(expected: &Key, bytes: Bytes) -> Result<Entry> {
    decode_with_limits(expected, bytes, &EnvelopeLimits::default())
}

/// [`decode`] with explicit limits.
pub fn decode_with_limits(expected: &Key, bytes: Bytes, limits: &EnvelopeLimits) -> Result<Entry> {
    let (payload, mut entry) = parse_for(expected, &bytes, limits)?;
    entry.value = bytes.slice(payload);
    Ok(entry)
}

/// Decode an envelope without knowing its key (for tools that inspect a tier); returns the key.
pub fn decode_any(bytes: Bytes, limits: &EnvelopeLimits) -> Result<(Key, Entry)> {
    let (key, entry) = decode_parts(bytes, limits)?;
    let text = std::str::from_utf8(&key).map_err(|_| Error::corrupt("key is not UTF-8"))?;
    let key = Key::with_max_len(text, limits.max_key_len)
        .map_err(|e| Error::corrupt(format!("stored key is invalid: {}", e.message())))?;
    Ok((key, entry))
}

/// Read only the key and expiry fields of an envelope's header, verifying magic and version
/// but not the checksum (for index rebuilds that must not read whole payloads).
pub fn peek_header(head: &[u8]) -> Result<HeaderInfo> {
    if head.len() < HEADER {
        return Err(Error::corrupt("envelope shorter than its header"));
    }
    if head[0..4] != MAGIC {
        return Err(Error::corrupt("wrong magic bytes"));
    }
    if head[4] != FORMAT_VERSION {
        return Err(Error::corrupt(format!(
            "unsupported envelope format version {}",
            head[4]
        )));
    }
    Ok(HeaderInfo {
        expires_at: Timestamp(u64_at(head, 16)),
        stale_until: match u64_at(head, 24) {
            0 => None,
            t => Some(Timestamp(t)),
        },
        version: u64_at(head, 32),
        key_len: u32_at(head, 40) as usize,
        tag_count: u16_at(head, 44) as usize,
        payload_len: u32_at(head, 46) as usize,
    })
}

/// Fields of an envelope header, from [`peek_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Hard expiry.
    pub expires_at: Timestamp,
    /// End of the fail-safe window.
    pub stale_until: Option<Timestamp>,
    /// Per-key version.
    pub version: u64,
    /// Key length in bytes (the key follows the header).
    pub key_len: usize,
    /// Number of tags.
    pub tag_count: usize,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl HeaderInfo {
    /// Size of the fixed header in bytes.
    pub const LEN: usize = HEADER;

    /// The instant after which the entry must not be returned.
    pub fn retain_until(&self) -> Timestamp {
        match self.stale_until {
            Some(s) if s > self.expires_at => s,
            _ => self.expires_at,
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// [`decode_with_limits`] of an envelope the caller owns: the payload is moved to the front of
/// the buffer, which is then cut to it and becomes the entry's value
/// ([`Entry::with_owned_value`]: the memory tier keeps it without another copy).
///
/// The same contract as [`decode`]; a backend that reads each envelope into a buffer of its own
/// (a Redis reply) uses this one.
///
/// ```
/// use layercake_core::envelope::{self, EnvelopeLimits};
/// use layercake_core::{Entry, Key, Timestamp};
/// use std::time::Duration;
/// let key = Key::new("k").unwrap();
/// let entry = Entry::new(&b"payload"[..], Timestamp(1), Duration::from_secs(60));
/// let bytes = envelope::encode(&key, &entry).unwrap();
/// let back = envelope::decode_owned(&key, bytes.to_vec(), &EnvelopeLimits::default()).unwrap();
/// assert_eq!(back, entry);
/// assert!(back.value_is_whole());
/// ```
pub fn decode_owned(expected: &Key, mut bytes: Vec<u8>, limits: &EnvelopeLimits) -> Result<Entry> {
    let (payload, entry) = parse_for(expected, &bytes, limits)?;
    let len = payload.len();
    bytes.copy_within(payload, 0);
    bytes.truncate(len);
    Ok(entry.with_owned_value(bytes))
}

/// [`parse`] an envelope that must hold `expected`'s entry: the payload's range and the entry
/// without its payload.
fn parse_for(
    expected: &Key,
    bytes: &[u8],
    limits: &EnvelopeLimits,
) -> Result<(std::ops::Range<usize>, Entry)> {
    let (key, payload, entry) = parse(bytes, limits)?;
    if bytes[key] != *expected.as_bytes() {
        return Err(Error::corrupt(
            "envelope holds another key's entry (key mismatch)",
        ));
    }
    Ok((payload, entry))
}

fn decode_parts(bytes: Bytes, limits: &EnvelopeLimits) -> Result<(Bytes, Entry)> {
    let (key_range, payload, mut entry) = parse(&bytes, limits)?;
    entry.value = bytes.slice(payload);
    Ok((bytes.slice(key_range), entry))
}

/// Check an envelope and read its fields: the key's and the payload's ranges in `bytes`, and
/// the entry without its payload.
fn parse(
    bytes: &[u8],
    limits: &EnvelopeLimits,
) -> Result<(std::ops::Range<usize>, std::ops::Range<usize>, Entry)> {
    let h = peek_header(bytes)?;
    if bytes.len() < HEADER + CHECKSUM {
        return Err(Error::corrupt("envelope shorter than header and checksum"));
    }
    let flags = bytes[5];
    if flags & !EntryFlags::KNOWN != 0 {
        return Err(Error::corrupt(format!("unknown flags {flags:#04x}")));
    }
    let format = Format::from_id(bytes[6])
        .ok_or_else(|| Error::corrupt(format!("unknown payload format id {}", bytes[6])))?;
    let compression = Compression::from_id(bytes[7])
        .ok_or_else(|| Error::corrupt(format!("unknown compression id {}", bytes[7])))?;
    if h.key_len == 0 || h.key_len > limits.max_key_len {
        return Err(Error::corrupt(format!(
            "key length {} outside 1..={}",
            h.key_len, limits.max_key_len
        )));
    }
    if h.tag_count > limits.max_tags {
        return Err(Error::corrupt(format!(
            "tag count {} over the limit {}",
            h.tag_count, limits.max_tags
        )));
    }
    if h.payload_len > limits.max_payload_len {
        return Err(Error::corrupt(format!(
            "payload length {} over the limit {}",
            h.payload_len, limits.max_payload_len
        )));
    }
    let body_end = bytes.len() - CHECKSUM;
    // Walk the variable part with bounds checks before touching the checksum.
    let mut pos = HEADER;
    let key_range = pos..pos
        .checked_add(h.key_len)
        .filter(|&e| e <= body_end)
        .ok_or_else(|| Error::corrupt("key extends past the end of the envelope"))?;
    pos = key_range.end;
    let mut tag_ranges = Vec::with_capacity(h.tag_count);
    for _ in 0..h.tag_count {
        if pos + 2 > body_end {
            return Err(Error::corrupt("tag length past the end of the envelope"));
        }
        let len = u16_at(bytes, pos) as usize;
        if len > limits.max_tag_len {
            return Err(Error::corrupt(format!("tag of {len} bytes over the limit")));
        }
        pos += 2;
        if pos + len > body_end {
            return Err(Error::corrupt("tag extends past the end of the envelope"));
        }
        tag_ranges.push(pos..pos + len);
        pos += len;
    }
    if pos + h.payload_len != body_end {
        return Err(Error::corrupt(format!(
            "payload length {} does not match the {} bytes present",
            h.payload_len,
            body_end.saturating_sub(pos)
        )));
    }
    let stored = u64_at(bytes, body_end);
    if xxh3_64(&bytes[..body_end]) != stored {
        return Err(Error::corrupt("checksum mismatch"));
    }
    let mut tags = Vec::with_capacity(tag_ranges.len());
    for r in tag_ranges {
        let t = std::str::from_utf8(&bytes[r]).map_err(|_| Error::corrupt("tag is not UTF-8"))?;
        tags.push(t.to_owned());
    }
    // Built field by field: `Entry::new` would allocate an empty tag list only to replace it.
    let entry = Entry {
        value: Bytes::new(),
        created_at: Timestamp(u64_at(bytes, 8)),
        expires_at: h.expires_at,
        stale_until: h.stale_until,
        version: h.version,
        // An empty list is the shared empty slice: no allocation for the common case.
        tags: if tags.is_empty() {
            Arc::default()
        } else {
            Arc::from(tags)
        },
        format,
        compression,
        flags: EntryFlags(flags),
        decoded: None,
        whole: None,
    };
    Ok((key_range, pos..body_end, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn encoding_into_a_writer_gives_the_same_bytes_and_checks_the_same_limits() {
        let key = Key::new("k:ü").unwrap();
        for (value, tags) in [
            (Vec::new(), vec![]),
            (vec![1u8; 10], vec!["a"]),
            (vec![9u8; 5000], vec!["t1", "tag two", ""]),
        ] {
            let e = Entry::new(value, Timestamp(9), Duration::from_secs(3))
                .with_tags(tags)
                .with_version(77);
            let mut out = vec![0xAB];
            let n = encode_into(&key, &e, &EnvelopeLimits::default(), &mut out).unwrap();
            let whole = encode(&key, &e).unwrap();
            assert_eq!((n, &out[1..]), (whole.len(), &whole[..]));
            assert_eq!(decode(&key, Bytes::from(whole)).unwrap().version, 77);
        }
        let big = Entry::new(vec![0u8; 64], Timestamp(9), Duration::from_secs(3));
        let tight = EnvelopeLimits {
            max_payload_len: 16,
            ..EnvelopeLimits::default()
        };
        let mut out = Vec::new();
        let err = encode_into(&key, &big, &tight, &mut out).unwrap_err();
        assert_eq!((err.kind(), out.len()), (ErrorKind::TooLarge, 0));
    }

    fn sample() -> (Key, Entry) {
        let key = Key::new("ns:v1:item").unwrap();
        let e = Entry::new(
            Bytes::from(vec![7u8; 300]),
            Timestamp(1_700_000_000_000),
            Duration::from_secs(60),
        )
        .with_stale_for(Duration::from_secs(30))
        .with_tags(["a", "tag-b"])
        .with_version(42)
        .with_encoding(Format::Json, Compression::Lz4);
        (key, e)
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let (k, e) = sample();
        let b = encode(&k, &e).unwrap();
        assert_eq!(&b[..4], b"LYRC");
        let d = decode(&k, Bytes::from(b.clone())).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.stale_until, Some(Timestamp(1_700_000_090_000)));
        let (k2, d2) = decode_any(Bytes::from(b.clone()), &EnvelopeLimits::default()).unwrap();
        assert_eq!(k2, k);
        assert_eq!(d2, e);
        let owned = decode_owned(&k, b.to_vec(), &EnvelopeLimits::default()).unwrap();
        assert_eq!(owned, e);
        assert!(owned.value_is_whole());
        assert!(
            !d.value_is_whole(),
            "a slice of the envelope is not a whole allocation"
        );
    }

    #[test]
    fn every_malformation_is_corrupt() {
        let (k, e) = sample();
        let good = encode(&k, &e).unwrap();
        let check = |b: Vec<u8>, what: &str| {
            let owned = decode_owned(&k, b.clone(), &EnvelopeLimits::default()).unwrap_err();
            let err = decode(&k, Bytes::from(b)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
            assert_eq!(
                owned.message(),
                err.message(),
                "{what}: both decoders agree"
            );
            err.message().to_owned()
        };
        for cut in [0, 3, 10, 49, 50, 57, good.len() - 1] {
            check(good[..cut].to_vec(), "truncated");
        }
        let mut b = good.clone();
        b[0] = b'X';
        assert!(check(b, "magic").contains("magic"));
        let mut b = good.clone();
        b[4] = 2;
        assert!(check(b, "future version").contains("version 2"));
        let mut b = good.clone();
        let n = b.len();
        b[n - 20] ^= 1;
        assert!(check(b, "flip").contains("checksum"));
        let mut b = good.clone();
        b[46..50].copy_from_slice(&u32::MAX.to_le_bytes());
        check(b, "absurd payload length");
        let mut b = good.clone();
        b[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        check(b, "absurd key length");
        let other = Key::new("ns:v1:other").unwrap();
        let err = decode(&other, Bytes::from(good.clone())).unwrap_err();
        assert!(err.message().contains("key mismatch"));
        let err = decode_owned(&other, good, &EnvelopeLimits::default()).unwrap_err();
        assert!(err.message().contains("key mismatch"));
    }

    #[test]
    fn encode_rejects_oversized_values() {
        let k = Key::new("k").unwrap();
        let e = Entry::new(vec![0u8; 11], Timestamp(0), Duration::from_secs(1));
        let lim = EnvelopeLimits {
            max_payload_len: 10,
            ..Default::default()
        };
        assert_eq!(
            encode_with_limits(&k, &e, &lim).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let k = Key::new("ns:v1:item").unwrap();
            let _ = decode(&k, Bytes::from(data.clone()));
            let _ = decode_owned(&k, data.clone(), &EnvelopeLimits::default());
            let _ = decode_any(Bytes::from(data), &EnvelopeLimits::default());
        }

        #[test]
        fn mutated_envelopes_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..420) {
            let (k, e) = sample();
            let mut b = encode(&k, &e).unwrap();
            let p = pos % b.len();
            b[p] = byte;
            b.truncate(cut.min(b.len()));
            if let Ok(d) = decode_owned(&k, b.clone(), &EnvelopeLimits::default()) {
                prop_assert_eq!(d, e.clone());
            }
            if let Ok(d) = decode(&k, Bytes::from(b)) {
                // Only an unchanged envelope can decode.
                prop_assert_eq!(d, e);
            }
        }

        #[test]
        fn valid_entries_round_trip(
            value in proptest::collection::vec(any::<u8>(), 0..2048),
            key in "[a-z0-9:/ ._-]{1,80}",
            tags in proptest::collection::vec("[a-z]{0,12}", 0..5),
            created in any::<u32>(),
            ttl in 0u64..10_000_000,
            stale in 0u64..1_000_000,
            version in any::<u64>(),
            negative in any::<bool>(),
        ) {
            let k = Key::new(&key).unwrap();
            let flags = if negative { EntryFlags::NEGATIVE } else { EntryFlags::NONE };
            let e = Entry::new(value, Timestamp(created as u64), Duration::from_millis(ttl))
                .with_stale_for(Duration::from_millis(stale))
                .with_tags(tags)
                .with_version(version)
                .with_flags(flags)
                .with_encoding(Format::MessagePack, Compression::Zstd);
            let b = encode(&k, &e).unwrap();
            prop_assert_eq!(decode_owned(&k, b.to_vec(), &EnvelopeLimits::default()).unwrap(), e.clone());
            prop_assert_eq!(decode(&k, Bytes::from(b)).unwrap(), e);
        }
    }
}
