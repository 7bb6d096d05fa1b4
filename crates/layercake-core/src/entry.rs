//! [`Entry`]: a value's bytes and the metadata every tier keeps with it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::codec::{Compression, Format};

thread_local! {
    /// This thread's shared empty tag list: an entry without tags (most of them) takes a
    /// reference to it instead of allocating one of its own.
    static NO_TAGS: Arc<[String]> = Arc::from(Vec::<String>::new());
}

/// An empty tag list, without an allocation (the thread's shared one).
fn no_tags() -> Arc<[String]> {
    NO_TAGS
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from(Vec::<String>::new()))
}

/// Flags stored in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntryFlags(pub u8);

impl EntryFlags {
    /// No flag set.
    pub const NONE: EntryFlags = EntryFlags(0);
    /// The entry records that the value does not exist (negative caching); its payload is empty.
    pub const NEGATIVE: EntryFlags = EntryFlags(1);
    /// Every flag this format version knows; others make an envelope corrupt.
    pub const KNOWN: u8 = 1;

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: EntryFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A cached value and its metadata.
///
/// Contract:
/// - `value` holds the encoded (and possibly compressed) payload; `format` and `compression` say
///   how to read it;
/// - the entry is *fresh* while `now < expires_at`, *stale* (usable only for fail-safe) while
///   `expires_at <= now < stale_until`, and gone after [`retain_until`](Entry::retain_until):
///   a backend never returns an entry at or past that instant;
/// - `version` is monotonic per key across writers (used by the backplane and to reject stale
///   fills);
/// - the optional decoded value is an in-process shortcut that only the memory tier keeps; it
///   is never encoded and is ignored by equality.
#[derive(Clone)]
pub struct Entry {
    /// The payload bytes.
    pub value: Bytes,
    /// When the value was produced.
    pub created_at: Timestamp,
    /// Hard expiry: after this the entry is no longer fresh.
    pub expires_at: Timestamp,
    /// End of the fail-safe window, if any (at or after `expires_at`).
    pub stale_until: Option<Timestamp>,
    /// Per-key version, monotonic.
    pub version: u64,
    /// Tags for [`Selector::Tag`](crate::Selector::Tag) invalidation.
    pub tags: Arc<[String]>,
    /// The serialization format of `value`.
    pub format: Format,
    /// The compression applied to `value`.
    pub compression: Compression,
    /// Flags such as [`EntryFlags::NEGATIVE`].
    pub flags: EntryFlags,
    pub(crate) decoded: Option<Arc<dyn Any + Send + Sync>>,
    /// A second handle on `value` when it was set from an owned buffer
    /// ([`with_owned_value`](Entry::with_owned_value)): while `value` still views all of it,
    /// the payload is the whole of an allocation of exactly its length.
    pub(crate) whole: Option<Bytes>,
}

impl Entry {
    /// A raw entry (format [`Format::Raw`], no compression, no tags, version 0) holding `value`,
    /// created at `now` and expiring after `ttl`.
    ///
    /// ```
    /// use layercake_core::{Entry, Timestamp};
    /// use std::time::Duration;
    /// let e = Entry::new(&b"hello"[..], Timestamp(1_000), Duration::from_secs(1));
    /// assert_eq!(e.expires_at, Timestamp(2_000));
    /// assert!(e.is_fresh(Timestamp(1_999)));
    /// assert!(!e.is_retained(Timestamp(2_000)));
    /// ```
    pub fn new(value: impl Into<Bytes>, now: Timestamp, ttl: Duration) -> Entry {
        Entry {
            value: value.into(),
            created_at: now,
            expires_at: now.plus(ttl),
            stale_until: None,
            version: 0,
            tags: no_tags(),
            format: Format::Raw,
            compression: Compression::None,
            flags: EntryFlags::NONE,
            decoded: None,
            whole: None,
        }
    }

    /// Set the fail-safe window: the entry is kept, stale, for `stale` after its expiry.
    pub fn with_stale_for(mut self, stale: Duration) -> Entry {
        self.stale_until = if stale.is_zero() {
            None
        } else {
            Some(self.expires_at.plus(stale))
        };
        self
    }

    /// Set the tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Entry
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        self.tags = if tags.is_empty() {
            no_tags()
        } else {
            tags.into()
        };
        self
    }

    /// Set the version.
    pub fn with_version(mut self, version: u64) -> Entry {
        self.version = version;
        self
    }

    /// Set format and compression.
    pub fn with_encoding(mut self, format: Format, compression: Compression) -> Entry {
        self.format = format;
        self.compression = compression;
        self
    }

    /// Set the flags.
    pub fn with_flags(mut self, flags: EntryFlags) -> Entry {
        self.flags = flags;
        self
    }

    /// Set the payload from an owned buffer, shrunk to its length first (no work when it has
    /// no spare capacity, as with a buffer from `to_vec`).
    ///
    /// The entry then knows that its payload is the whole of an allocation of exactly its
    /// length, and says so in [`value_is_whole`](Entry::value_is_whole) for as long as `value`
    /// is not replaced or re-sliced: the memory tier keeps such a payload as it is, where it
    /// copies any other into an allocation of its own (a view into a larger buffer would keep
    /// the whole buffer resident, unweighed).
    ///
    /// ```
    /// use layercake_core::{Bytes, Entry, Timestamp};
    /// use std::time::Duration;
    /// let mut grown = Vec::with_capacity(64);
    /// grown.extend_from_slice(b"hello");
    /// let e = Entry::new(Bytes::new(), Timestamp(0), Duration::from_secs(1)).with_owned_value(grown);
    /// assert_eq!(&e.value[..], b"hello");
    /// assert!(e.value_is_whole());
    /// let mut sliced = e.clone();
    /// sliced.value = e.value.slice(1..);
    /// assert!(!sliced.value_is_whole());
    /// assert!(!Entry::new(&b"hello"[..], Timestamp(0), Duration::from_secs(1)).value_is_whole());
    /// ```
    pub fn with_owned_value(mut self, mut value: Vec<u8>) -> Entry {
        value.shrink_to_fit();
        self.value = Bytes::from(value);
        self.whole = Some(self.value.clone());
        self
    }

    /// Whether `value` is known to be the whole of an allocation of exactly its length: it was
    /// set by [`with_owned_value`](Entry::with_owned_value) and not replaced or re-sliced
    /// since (an empty payload holds no allocation and always is).
    pub fn value_is_whole(&self) -> bool {
        self.value.is_empty()
            || self
                .whole
                .as_ref()
                .is_some_and(|w| w.as_ptr() == self.value.as_ptr() && w.len() == self.value.len())
    }

    /// Attach an already decoded value (kept only by in-process tiers).
    pub fn with_decoded(mut self, decoded: Arc<dyn Any + Send + Sync>) -> Entry {
        self.decoded = Some(decoded);
        self
    }

    /// The attached decoded value, if any.
    pub fn decoded(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.decoded.as_ref()
    }

    /// The same entry without the decoded value.
    pub fn without_decoded(mut self) -> Entry {
        self.decoded = None;
        self
    }

    /// The instant after which no tier may return the entry: `stale_until` if set and later,
    /// else `expires_at`.
    pub fn retain_until(&self) -> Timestamp {
        match self.stale_until {
            Some(s) if s > self.expires_at => s,
            _ => self.expires_at,
        }
    }

    /// Fresh at `now`.
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// Still retained (fresh or stale) at `now`.
    pub fn is_retained(&self, now: Timestamp) -> bool {
        now < self.retain_until()
    }

    /// Time left until [`retain_until`](Entry::retain_until), zero if past.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        self.retain_until().saturating_since(now)
    }

    /// Time left until `expires_at`, zero if past.
    pub fn fresh_remaining(&self, now: Timestamp) -> Duration {
        self.expires_at.saturating_since(now)
    }

    /// Whether this is a negative entry.
    pub fn is_negative(&self) -> bool {
        self.flags.contains(EntryFlags::NEGATIVE)
    }

    /// Lifetime in total (from creation to expiry).
    pub fn ttl(&self) -> Duration {
        self.expires_at.saturating_since(self.created_at)
    }

    /// Approximate memory cost in bytes (payload, tags and a fixed overhead).
    pub fn weight(&self) -> usize {
        self.value.len() + self.tags.iter().map(|t| t.len() + 24).sum::<usize>() + 96
    }
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        self.value == o.value
            && self.created_at == o.created_at
            && self.expires_at == o.expires_at
            && self.stale_until == o.stale_until
            && self.version == o.version
            && self.tags == o.tags
            && self.format == o.format
            && self.compression == o.compression
            && self.flags == o.flags
    }
}

impl Eq for Entry {}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("value_len", &self.value.len())
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("stale_until", &self.stale_until)
            .field("version", &self.version)
            .field("tags", &self.tags)
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("flags", &self.flags)
            .field("decoded", &self.decoded.is_some())
            .finish()
    }
}
