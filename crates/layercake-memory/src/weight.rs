//! What an entry of the memory tier weighs, and the copy of it the tier keeps.
//!
//! The bound is meant as resident memory: an entry weighs its payload, key and tags, the
//! tier's own allocations for it, and its decoded value when it carries one.

use layercake_core::{Bytes, Compression, Entry, Key};

/// Bytes an allocation costs beyond what it asks for (glibc: a size word, and the request
/// rounded up to 16 bytes).
const ALLOCATION_OVERHEAD: u64 = 16;

/// Bytes counted per stored entry beside [`Entry::weight`] and the key text, so that the bound
/// covers what the tier really allocates for it: the key's `Arc<str>` header and allocation,
/// the shared `Arc<Entry>` beyond the fixed part `Entry::weight` counts, the payload's shared
/// header, and the entry's slot and index in quick_cache's tables. (An entry of the
/// benchmark's ~1 KiB documents weighed 2 349 bytes before these and the decoded value's
/// overheads were counted, and held 2 880 bytes of resident memory.)
const ENTRY_OVERHEAD: u64 = 16 + ALLOCATION_OVERHEAD // key
    + (size_of::<Entry>() as u64 + 16 + ALLOCATION_OVERHEAD).saturating_sub(96) // Arc<Entry>
    + 32 + ALLOCATION_OVERHEAD // the payload's shared header
    + 64; // quick_cache's slot and index

/// Bytes counted for a decoded value besides its payload's uncompressed length: the shared
/// pointer's header and the value's own inline part (a `String` or `Vec` field is 24 bytes
/// beside its heap buffer), and the overhead of its allocations (a small struct with a few
/// strings makes several).
const DECODED_OVERHEAD: u64 = 16 + 64 + 6 * ALLOCATION_OVERHEAD;

/// How many times its compressed length a zstd payload is assumed to expand to when its frame
/// does not say (a frame written by layercake's codec always does).
const ZSTD_UNKNOWN_FACTOR: u64 = 4;

/// The weight of a stored entry: [`Entry::weight`] plus the key, plus the decoded value when
/// the entry carries one (see [`decoded_weight`]).
pub(crate) fn weigh(key: &Key, entry: &Entry) -> u64 {
    bytes_weight(key, entry) + decoded_weight(entry)
}

/// The weight of an entry without its decoded value: [`Entry::weight`], the key and
/// [`ENTRY_OVERHEAD`].
pub(crate) fn bytes_weight(key: &Key, entry: &Entry) -> u64 {
    entry.weight() as u64 + key.len() as u64 + ENTRY_OVERHEAD
}

/// The payload as the tier keeps it: in an allocation of its own, of exactly its length, and
/// already shared, so that reads never allocate.
///
/// What a writer hands over may hold more than its length: a serializer's buffer grown by
/// doubling (a 1.1 KiB JSON document in a 2 KiB buffer), a compressor's worst-case buffer, or
/// the whole envelope a lower tier's read returned. Kept as given, those bytes stay resident
/// for the entry's life without being weighed, and under churn the buffers the writer frees
/// next to the ones kept fragment the heap; a copy costs a `memcpy` per write.
pub(crate) fn resident_copy(payload: &Bytes) -> Bytes {
    let copy = Bytes::copy_from_slice(payload);
    // Cloning turns the `Vec`-backed copy into a shared one (its only allocation beside the
    // buffer happens here, not on the first read).
    drop(copy.clone());
    copy
}

/// `entry` as the tier stores it (its bytes already checked against `max_entry_weight`):
/// without its decoded value when it fits only without it (a hit then decodes the bytes), and
/// with its payload in an allocation of its own: kept as given when the entry knows it is
/// ([`Entry::value_is_whole`], as for a value the cache just encoded), else copied (see
/// [`resident_copy`]).
pub(crate) fn stored_copy(key: &Key, entry: &Entry, max_entry_weight: u64) -> Entry {
    let mut stored = if weigh(key, entry) > max_entry_weight {
        entry.clone().without_decoded()
    } else {
        entry.clone()
    };
    if !entry.value_is_whole() {
        stored.value = resident_copy(&entry.value);
    }
    stored
}

/// An estimate of what the decoded value kept beside the bytes holds: the payload's
/// uncompressed length (what the serializer wrote; a decoded value holds about as much, its
/// strings and numbers without the format's quoting and field names, plus a header per
/// field) and [`DECODED_OVERHEAD`]. Zero without a decoded value.
fn decoded_weight(entry: &Entry) -> u64 {
    if entry.decoded().is_none() {
        return 0;
    }
    uncompressed_len(&entry.value, entry.compression) + DECODED_OVERHEAD
}

/// The length of `payload` once decompressed, as its header states it (lz4: the prepended
/// length; zstd: the frame's content size), or an estimate when it does not.
fn uncompressed_len(payload: &[u8], compression: Compression) -> u64 {
    let n = payload.len() as u64;
    match compression {
        Compression::None => n,
        Compression::Lz4 => match payload.first_chunk::<4>() {
            Some(b) => u64::from(u32::from_le_bytes(*b)),
            None => n,
        },
        Compression::Zstd => {
            zstd_content_size(payload).unwrap_or(n.saturating_mul(ZSTD_UNKNOWN_FACTOR))
        }
        _ => n.saturating_mul(ZSTD_UNKNOWN_FACTOR),
    }
}

/// The content size a zstd frame header states (RFC 8878, 3.1.1.1), if it states one.
fn zstd_content_size(frame: &[u8]) -> Option<u64> {
    const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
    if frame.get(..4)? != MAGIC {
        return None;
    }
    let descriptor = *frame.get(4)?;
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_id_len = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
    let fcs_len = match fcs_flag {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let at = 5 + usize::from(!single_segment) + dictionary_id_len;
    let field = frame.get(at..at + fcs_len)?;
    let value = field
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Some(if fcs_len == 2 { value + 256 } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryBackend, MemoryConfig};
    use layercake_core::{Backend, Clock, ManualClock, Timestamp};
    use std::sync::Arc;
    use std::time::Duration;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn manual(max_bytes: u64) -> (MemoryBackend, ManualClock) {
        let clock = ManualClock::new();
        let b =
            MemoryBackend::new(MemoryConfig::new(max_bytes).with_clock(Arc::new(clock.clone())))
                .unwrap();
        (b, clock)
    }

    /// An entry carrying `value` encoded by `codec`, with the value itself as its decoded copy.
    fn decoded_entry(codec: layercake_core::Codec, value: &str, now: Timestamp) -> Entry {
        let enc = codec.encode(value).unwrap();
        Entry::new(enc.bytes, now, Duration::from_secs(60))
            .with_encoding(enc.format, enc.compression)
            .with_decoded(Arc::new(value.to_owned()))
    }

    #[test]
    fn a_whole_payload_is_kept_and_a_view_into_a_larger_buffer_is_copied() {
        let (b, clock) = manual(1 << 20);
        let now = clock.now();
        let mut owned = Vec::with_capacity(4096);
        owned.extend_from_slice(&[7u8; 1000]);
        let whole = Entry::new(Bytes::new(), now, Duration::from_secs(60)).with_owned_value(owned);
        b.set_sync(&key("whole"), &whole).unwrap();
        let kept = b.get_shared_at(&key("whole"), now).unwrap();
        assert_eq!(
            kept.value.as_ptr(),
            whole.value.as_ptr(),
            "a whole payload is not copied"
        );
        let big = Bytes::from(vec![9u8; 4096]);
        let view = Entry::new(big.slice(96..1096), now, Duration::from_secs(60));
        b.set_sync(&key("view"), &view).unwrap();
        let copied = b.get_shared_at(&key("view"), now).unwrap();
        assert_eq!(copied.value, view.value);
        assert_ne!(
            copied.value.as_ptr(),
            view.value.as_ptr(),
            "a view is copied out"
        );
        // A whole payload re-sliced by its writer is a view again.
        let mut resliced = whole.clone();
        resliced.value = whole.value.slice(1..);
        b.set_sync(&key("resliced"), &resliced).unwrap();
        let copied = b.get_shared_at(&key("resliced"), now).unwrap();
        assert_ne!(copied.value.as_ptr(), resliced.value.as_ptr());
    }

    #[tokio::test]
    async fn a_decoded_value_is_weighed_as_its_uncompressed_payload() {
        use layercake_core::Codec;
        let (b, clock) = manual(1 << 20);
        let text = "to be or not to be ".repeat(100);
        let json_len = Codec::json().encode(&text).unwrap().bytes.len() as u64;
        for (name, codec) in [
            ("none", Codec::json()),
            ("lz4", Codec::json().with_compression(Compression::Lz4, 0)),
            ("zstd", Codec::json().with_compression(Compression::Zstd, 0)),
        ] {
            let k = key(name);
            let e = decoded_entry(codec, &text, clock.now());
            assert_eq!(
                e.compression.as_str(),
                name,
                "the value compresses with {name}"
            );
            assert_eq!(
                weigh(&k, &e),
                bytes_weight(&k, &e) + json_len + DECODED_OVERHEAD,
                "{name}: the uncompressed length is counted"
            );
            assert_eq!(
                weigh(&k, &e.clone().without_decoded()),
                bytes_weight(&k, &e),
                "{name}: nothing is added without a decoded value"
            );
            let before = b.weighted_bytes();
            b.set(&k, &e).await.unwrap();
            assert_eq!(b.weighted_bytes() - before, weigh(&k, &e));
            assert!(b.get(&k).await.unwrap().unwrap().decoded().is_some());
        }
    }

    #[test]
    fn zstd_frame_content_sizes_are_read_from_the_header() {
        use layercake_core::Codec;
        for n in [10usize, 300, 70_000] {
            let text = "ab".repeat(n);
            let codec = Codec::postcard().with_compression(Compression::Zstd, 0);
            let enc = codec.encode(&text).unwrap();
            assert_eq!(enc.compression, Compression::Zstd);
            let plain = Codec::postcard().encode(&text).unwrap().bytes.len() as u64;
            assert_eq!(zstd_content_size(&enc.bytes), Some(plain), "{n}");
        }
        assert_eq!(zstd_content_size(b"not zstd"), None);
        assert_eq!(zstd_content_size(&[0x28, 0xB5, 0x2F, 0xFD]), None);
        assert_eq!(
            uncompressed_len(b"abcd1234", Compression::Zstd),
            8 * ZSTD_UNKNOWN_FACTOR,
            "a frame without a content size is estimated"
        );
    }

    #[tokio::test]
    async fn an_entry_that_fits_only_without_its_decoded_value_is_kept_without_it() {
        let (b, clock) = manual(1 << 20);
        let k = key("big");
        let max = b.max_entry_weight();
        let fixed = bytes_weight(
            &k,
            &Entry::new(Vec::new(), clock.now(), Duration::from_secs(9)),
        );
        let payload = vec![b'x'; (max - fixed) as usize];
        let e = Entry::new(payload, clock.now(), Duration::from_secs(9))
            .with_decoded(Arc::new(String::from("decoded")));
        assert_eq!(bytes_weight(&k, &e), max);
        b.set(&k, &e).await.unwrap();
        let got = b.get(&k).await.unwrap().unwrap();
        assert_eq!(got, e, "the bytes are kept");
        assert!(got.decoded().is_none(), "the decoded copy is not");
        assert!(b.weighted_bytes() <= b.capacity_bytes());
    }
}
