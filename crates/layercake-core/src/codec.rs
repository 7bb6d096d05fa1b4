//! [`Codec`]: how typed values become payload bytes (serde format plus optional compression).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The largest scratch buffer [`Codec::encode`] keeps for its thread between calls; a larger
/// value's buffer is freed once its bytes are copied out.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Serialize `value` in `format` at the end of `out`.
fn serialize_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    format: Format,
    value: &T,
) -> Result<()> {
    match format {
        Format::Json => serde_json::to_writer(&mut *out, value)
            .map_err(|e| Error::codec("JSON encode failed").with_source(e)),
        Format::MessagePack => rmp_serde::encode::write_named(&mut *out, value)
            .map_err(|e| Error::codec("MessagePack encode failed").with_source(e)),
        Format::Postcard => postcard::to_io(value, &mut *out)
            .map(drop)
            .map_err(|e| Error::codec("postcard encode failed").with_source(e)),
        Format::Raw => Err(Error::codec("the raw format cannot serialize typed values")),
    }
}

/// The serialization format of a payload; its id is stored in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Opaque bytes written by the caller.
    Raw,
    /// JSON (serde_json): readable, the default.
    Json,
    /// MessagePack (rmp-serde, struct fields as maps so schemas can evolve).
    MessagePack,
    /// postcard: compact binary, fastest, not self-describing.
    Postcard,
}

impl Format {
    /// The id stored in the envelope.
    pub fn id(self) -> u8 {
        match self {
            Format::Raw => 0,
            Format::Json => 1,
            Format::MessagePack => 2,
            Format::Postcard => 3,
        }
    }
    /// The format for an envelope id.
    pub fn from_id(id: u8) -> Option<Format> {
        Some(match id {
            0 => Format::Raw,
            1 => Format::Json,
            2 => Format::MessagePack,
            3 => Format::Postcard,
            _ => return None,
        })
    }
    /// A stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::MessagePack => "msgpack",
            Format::Postcard => "postcard",
        }
    }
}

/// The compression of a payload; its id is stored in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed.
    None,
    /// LZ4 block format with the uncompressed size prepended (lz4_flex).
    Lz4,
    /// Zstandard frame.
    Zstd,
}

impl Compression {
    /// The id stored in the envelope.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }
    /// The compression for an envelope id.
    pub fn from_id(id: u8) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Lz4,
            2 => Compression::Zstd,
            _ => return None,
        })
    }
    /// A stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The payload produced by [`Codec::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Payload bytes.
    pub bytes: Vec<u8>,
    /// Their format.
    pub format: Format,
    /// Their compression.
    pub compression: Compression,
}

/// A serde format plus a compression rule, chosen per cache.
///
/// Contract:
/// - `encode` then `decode` with the returned ids gives back an equal value;
/// - compression is applied only to payloads of at least `threshold` bytes, and kept only when
///   it saves at least 10 %;
/// - `decode` reads any format and compression by the ids stored with the entry, so entries
///   written under another codec stay readable;
/// - decompression is bounded by `max_decoded_len`: a payload that would expand past it is a
///   [`Codec`](crate::ErrorKind::Codec) error (no decompression bombs).
///
/// ```
/// use layercake_core::{Codec, Compression};
/// let codec = Codec::json().with_compression(Compression::Zstd, 64);
/// let text = "to be or not to be ".repeat(20);
/// let enc = codec.encode(&text).unwrap();
/// assert_eq!(enc.compression, Compression::Zstd);
/// let back: String = codec.decode(&enc.bytes, enc.format, enc.compression).unwrap();
/// assert_eq!(back, text);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    format: Format,
    compression: Compression,
    threshold: usize,
    zstd_level: i32,
    max_decoded_len: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::json()
    }
}

impl Codec {
    /// JSON, no compression.
    pub fn json() -> Codec {
        Codec {
            format: Format::Json,
            compression: Compression::None,
            threshold: usize::MAX,
            zstd_level: 3,
            max_decoded_len: 256 * 1024 * 1024,
        }
    }
    /// MessagePack, no compression.
    pub fn msgpack() -> Codec {
        Codec {
            format: Format::MessagePack,
            ..Codec::json()
        }
    }
    /// postcard, no compression.
    pub fn postcard() -> Codec {
        Codec {
            format: Format::Postcard,
            ..Codec::json()
        }
    }
    /// Compress payloads of at least `threshold` bytes with `compression`.
    pub fn with_compression(mut self, compression: Compression, threshold: usize) -> Codec {
        self.compression = compression;
        self.threshold = threshold;
        self
    }
    /// The zstd level (default 3).
    pub fn with_zstd_level(mut self, level: i32) -> Codec {
        self.zstd_level = level;
        self
    }
    /// The largest payload decompression may produce (default 256 MiB).
    pub fn with_max_decoded_len(mut self, max: usize) -> Codec {
        self.max_decoded_len = max;
        self
    }
    /// The serde format.
    pub fn format(&self) -> Format {
        self.format
    }
    /// The compression applied above the threshold.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Serialize (and maybe compress) `value`.
    ///
    /// The bytes come back in an allocation of exactly their length: the serializer writes
    /// into this thread's scratch buffer, which keeps its capacity from one call to the next
    /// (up to 64 KiB), and the result is one copy of it. A serializer writing
    /// into a fresh buffer would grow it by doubling, reallocating a few times per value and
    /// leaving it up to twice the value's size.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Encoded> {
        let format = self.format;
        let bytes = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                let r = serialize_into(&mut buf, format, value).map(|()| buf.to_vec());
                if buf.capacity() > SCRATCH_KEEP {
                    *buf = Vec::new();
                }
                r
            }
            // A `Serialize` implementation that encodes another value through a codec.
            Err(_) => {
                let mut own = Vec::new();
                serialize_into(&mut own, format, value).map(|()| own)
            }
        })?;
        Ok(self.compress(bytes, format))
    }

    /// Apply the compression rule to already-encoded bytes of `format`.
    pub fn compress(&self, bytes: Vec<u8>, format: Format) -> Encoded {
        let plain = |bytes| Encoded {
            bytes,
            format,
            compression: Compression::None,
        };
        if self.compression == Compression::None || bytes.len() < self.threshold {
            return plain(bytes);
        }
        let packed = match self.compression {
            Compression::Lz4 => lz4_flex::compress_prepend_size(&bytes),
            Compression::Zstd => match zstd_compress(&bytes, self.zstd_level) {
                Ok(p) => p,
                Err(_) => return plain(bytes),
            },
            Compression::None => return plain(bytes),
        };
        // Keep compression only when it saves at least 10 %.
        if packed.len() * 10 <= bytes.len() * 9 {
            Encoded {
                bytes: packed,
                format,
                compression: self.compression,
            }
        } else {
            plain(bytes)
        }
    }

    /// Undo the compression of a payload.
    pub fn decompress<'a>(
        &self,
        bytes: &'a [u8],
        compression: Compression,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        use std::borrow::Cow;
        match compression {
            Compression::None => Ok(Cow::Borrowed(bytes)),
            Compression::Lz4 => {
                if bytes.len() < 4 {
                    return Err(Error::codec("lz4 payload too short"));
                }
                let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if n > self.max_decoded_len {
                    return Err(Error::codec(format!(
                        "lz4 payload claims {n} bytes, over the limit {}",
                        self.max_decoded_len
                    )));
                }
                lz4_flex::decompress_size_prepended(bytes)
                    .map(Cow::Owned)
                    .map_err(|e| Error::codec("lz4 decompression failed").with_source(e))
            }
            Compression::Zstd => zstd_decompress(bytes, self.max_decoded_len)
                .map(Cow::Owned)
                .map_err(|e| Error::codec("zstd decompression failed").with_source(e)),
        }
    }

    /// Decompress and deserialize a payload written with `format` and `compression`.
    pub fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        format: Format,
        compression: Compression,
    ) -> Result<T> {
        let bytes = self.decompress(bytes, compression)?;
        match format {
            // JSON text is UTF-8: validated once for the whole payload, then parsed as text.
            // `from_slice` validates each string of the document on its own instead, which
            // made a ~1 KiB document's decode ~13 % slower. Either way a payload that is not
            // UTF-8 is refused.
            Format::Json => match std::str::from_utf8(&bytes) {
                Ok(text) => serde_json::from_str(text)
                    .map_err(|e| Error::codec("JSON decode failed").with_source(e)),
                Err(e) => {
                    Err(Error::codec("JSON decode failed: the payload is not UTF-8").with_source(e))
                }
            },
            Format::MessagePack => rmp_serde::from_slice(&bytes)
                .map_err(|e| Error::codec("MessagePack decode failed").with_source(e)),
            Format::Postcard => postcard::from_bytes(&bytes)
                .map_err(|e| Error::codec("postcard decode failed").with_source(e)),
            Format::Raw => Err(Error::codec(
                "a raw payload cannot be decoded as a typed value",
            )),
        }
    }
}

thread_local! {
    /// One zstd compression context per thread, with its level: making a context costs more
    /// than compressing a small value with it (a 1 KiB value took ~20 µs with a fresh context
    /// per call, ~11 µs with a reused one).
    static ZSTD_COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// One zstd decompression context per thread.
    static ZSTD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `zstd::bulk::compress` on this thread's reused context.
fn zstd_compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    ZSTD_COMPRESSOR.with(|cell| {
        // Never re-entered (compression calls no user code); a fresh context if it were.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::compress(bytes, level);
        };
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(bytes),
            None => zstd::bulk::compress(bytes, level),
        }
    })
}

/// `zstd::bulk::decompress` (at most `max` bytes out) on this thread's reused context.
fn zstd_decompress(bytes: &[u8], max: usize) -> std::io::Result<Vec<u8>> {
    ZSTD_DECOMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::decompress(bytes, max);
        };
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(bytes, max),
            None => zstd::bulk::decompress(bytes, max),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Doc {
        id: u64,
        title: String,
        vector: Vec<f32>,
    }

    fn doc() -> Doc {
        Doc {
            id: 7,
            title: "embedding".into(),
            vector: vec![0.25; 64],
        }
    }

    #[test]
    fn every_format_and_compression_round_trips() {
        for base in [Codec::json(), Codec::msgpack(), Codec::postcard()] {
            for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
                let codec = base.with_compression(c, 16);
                let enc = codec.encode(&doc()).unwrap();
                assert_eq!(enc.format, base.format());
                if c != Compression::None {
                    // 64 equal floats compress far better than 10 %.
                    assert_eq!(enc.compression, c, "{:?}", base.format());
                }
                let back: Doc = Codec::json()
                    .decode(&enc.bytes, enc.format, enc.compression)
                    .unwrap();
                assert_eq!(back, doc());
            }
        }
    }

    #[test]
    fn json_that_is_not_utf8_is_a_codec_error() {
        let c = Codec::json();
        let mut bytes = c.encode(&doc()).unwrap().bytes.to_vec();
        // Inside the title string, and outside any string.
        let at = bytes.windows(9).position(|w| w == b"embedding").unwrap();
        bytes[at] = 0xff;
        let e = c
            .decode::<Doc>(&bytes, Format::Json, Compression::None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let e = c
            .decode::<Doc>(b"\xc3{}", Format::Json, Compression::None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        // Valid UTF-8 that is not the document: still a codec error, from the parser.
        let e = c
            .decode::<Doc>(
                "{\"id\": \"é\"}".as_bytes(),
                Format::Json,
                Compression::None,
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Codec);
        assert!(!e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn compression_kept_only_when_it_saves_ten_percent() {
        // Random-looking bytes do not compress.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let c = Codec::json().with_compression(Compression::Lz4, 16);
        let enc = c.compress(noise.clone(), Format::Raw);
        assert_eq!(enc.compression, Compression::None);
        assert_eq!(enc.bytes, noise);
        // Below the threshold nothing is compressed.
        let c = Codec::json().with_compression(Compression::Zstd, 10_000);
        assert_eq!(
            c.compress(vec![0u8; 5000], Format::Raw).compression,
            Compression::None
        );
    }

    #[test]
    fn zstd_contexts_reused_across_levels_and_values_round_trip() {
        // One thread, alternating levels and inputs: the reused contexts must carry nothing
        // from one call to the next.
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog "
            .iter()
            .copied()
            .cycle()
            .take(3000)
            .collect();
        for round in 0..3 {
            for level in [1, 3, 19, 3] {
                let c = Codec::json()
                    .with_compression(Compression::Zstd, 1)
                    .with_zstd_level(level);
                let input: Vec<u8> = text.iter().map(|b| b.wrapping_add(round)).collect();
                let enc = c.compress(input.clone(), Format::Raw);
                assert_eq!(enc.compression, Compression::Zstd, "level {level}");
                // Exactly what a fresh context at that level writes: the level was applied.
                assert_eq!(
                    enc.bytes,
                    zstd::bulk::compress(&input, level).unwrap(),
                    "level {level}, round {round}"
                );
                let back = c.decompress(&enc.bytes, enc.compression).unwrap();
                assert_eq!(&*back, &input[..], "level {level}, round {round}");
            }
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let c = Codec::json().with_compression(Compression::Zstd, 1);
        let enc = c.compress(vec![0u8; 1 << 20], Format::Raw);
        assert_eq!(enc.compression, Compression::Zstd);
        let small = c.with_max_decoded_len(1024);
        let err = small.decompress(&enc.bytes, Compression::Zstd).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Codec);
        let bomb = [0xff, 0xff, 0xff, 0x7f, 0, 0];
        assert!(small.decompress(&bomb, Compression::Lz4).is_err());
        assert!(
            c.decode::<Doc>(b"\x00garbage", Format::Postcard, Compression::Lz4)
                .is_err()
        );
    }
}
