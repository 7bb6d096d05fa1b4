//! The cases of the conformance suite, one per contract bullet of [`Backend`], and their helpers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake_core::envelope::{self, FORMAT_VERSION};
use layercake_core::{
    Backend, Bytes, Capability, Clock, Compression, Entry, EntryFlags, ErrorKind, Format, Key,
    ManualClock, Selector, SystemClock, Timestamp,
};
use rand::RngExt as _;

use super::RawStore;

// ---------------------------------------------------------------------------------------------
// Case table.

pub(super) type CaseResultFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) bullet: &'static str,
    pub(super) select: fn(&Setup) -> Result<(), &'static str>,
    pub(super) run: fn(Cx) -> CaseResultFuture,
}

/// What selects a case: the backend's capability (reached through `Deref`) and what the suite
/// was given.
pub(super) struct Setup {
    pub(super) cap: Capability,
    /// Whether an unreachable instance was given ([`with_unreachable`](super::Conformance::with_unreachable)).
    pub(super) unreachable: bool,
}

impl std::ops::Deref for Setup {
    type Target = Capability;
    fn deref(&self) -> &Capability {
        &self.cap
    }
}

fn always(_: &Setup) -> Result<(), &'static str> {
    Ok(())
}

// The contract bullets, word for word as in the `# Behavior` sections of
// `layercake-core/src/backend.rs` (without their Markdown); the tidy test compares them.
const B_ERRORS: &str = "an error (unreachable server, timeout, …) is Err, never reported \
    as a miss: a backend that cannot reach its storage fails get, get_many, \
    keys_with_prefix, fill, its writes and health";
const B_HOSTILE: &str = "hostile keys (path traversal, SQL quotes, glob characters, \
    unicode, the longest allowed key) round-trip and never reach anywhere but the \
    backend's own storage";
const B_UNSUPPORTED: &str = "an operation the backend's Capability does not claim \
    (invalidate by prefix or by tag, clear, keys_with_prefix) is Unsupported and changes \
    nothing";
const B_MISS: &str = "a key never written, or deleted, is a miss: Ok(None); so are keys \
    that merely resemble a stored one (a prefix of it, an extension, another case)";
const B_EXPIRY: &str = "a key past its entry's retain_until (by the backend's clock) is a \
    miss";
const B_STALE: &str = "an entry past expires_at but before retain_until is returned: \
    staleness is the caller's to judge";
const B_CORRUPT: &str = "stored bytes that are not a valid envelope for the key are a \
    miss, are removed, and are counted in corrupt_reads; they are never returned";
const B_ROUND_TRIP: &str = "set then get returns an entry equal to the one written: value \
    bytes (empty and 1 MiB included), created-at, expiry, stale-until, version, tags, \
    format, compression and flags";
const B_OVERWRITE: &str = "a second set of a key replaces the first entirely";
const B_SET_EXPIRED: &str = "set of an entry already past retain_until stores nothing and \
    removes any older copy";
const B_CONCURRENT: &str = "concurrent writers never produce a torn entry: a read returns \
    one of the written entries";
const B_DELETE: &str = "delete removes the key and only the key; deleting a missing key is \
    Ok(()); a deleted key can be written again";
const B_GET_MANY: &str = "get_many returns, in order, exactly what a loop of get returns \
    (duplicates allowed)";
const B_BULK: &str = "set_many and delete_many are equivalent to loops of set and delete";
const B_PREFIX: &str = "invalidate(Prefix(p)) removes exactly the keys starting with the \
    literal text p (*, ?, [, \\ and % have no special meaning)";
const B_TAG: &str = "invalidate(Tag(t)) removes exactly the entries tagged t";
const B_CLEAR: &str = "clear removes every entry and tombstone of this backend instance: \
    its own prefix, table or directory only, never other data on the same server";
const B_HEALTH: &str = "health is Ok when the backend can serve requests";
const B_LIST: &str = "keys_with_prefix lists the live keys starting with the literal text \
    prefix (no wildcards), at most limit of them; a deleted key is not listed";
const B_FILL_EMPTY: &str = "fill of a key holding nothing (or only an expired entry) \
    stores the entry and returns FillOutcome::Stored; fill_many is equivalent to a loop of \
    fill; with Capability::conditional_fill, fill of an entry already past retain_until \
    stores nothing, removes nothing and returns FillOutcome::Expired";
const B_FILL_NEWER: &str = "fill never replaces a stored entry whose version is at or \
    above the entry's: it returns FillOutcome::KeptNewer and the stored entry is \
    unchanged; an older stored entry is replaced; set is never conditional";
const B_DELETE_WITH: &str = "delete_with(key, tombstone) removes the entry like delete \
    and, for tombstone.ttl, refuses every fill of the key at or below tombstone.version \
    (FillOutcome::Tombstoned); a fill above it is stored, and set is never refused";
const B_TOMB_INVISIBLE: &str = "tombstones are invisible: get, get_many and \
    keys_with_prefix never return or list them, and they never count as entries";
const B_TOMB_EXPIRE: &str = "a tombstone (of delete_with or invalidate_with) stops \
    refusing fills once its ttl has passed, by the backend's clock (or the server's, for \
    backends without clock_driven_expiry)";
const B_FILL_RACE: &str = "a fill racing a delete_with or invalidate_with of its key never \
    leaves an entry at or below the tombstone's version, whatever the interleaving";
const B_INVALIDATE_WITH: &str = "invalidate_with(selector, tombstone) removes what \
    invalidate(selector) removes and, for tombstone.ttl, refuses fills at or below \
    tombstone.version of keys starting with the prefix, or of entries carrying the tag";

/// Not a contract bullet: the suite checks its own configuration against the capability.
const B_CONFIG: &str = "the suite is configured as the backend's capability requires";

fn conditional(c: &Setup) -> Result<(), &'static str> {
    if c.conditional_fill {
        Ok(())
    } else {
        Err("capability().conditional_fill is false")
    }
}

macro_rules! case {
    ($name:ident, $bullet:expr, $select:expr) => {
        Case {
            name: stringify!($name),
            bullet: $bullet,
            select: $select,
            run: |cx| Box::pin($name(cx)),
        }
    };
}

pub(super) const CASES: &[Case] = &[
    case!(configuration, B_CONFIG, always),
    case!(miss_on_unknown_key, B_MISS, always),
    case!(round_trip, B_ROUND_TRIP, always),
    case!(overwrite_replaces_entirely, B_OVERWRITE, always),
    case!(delete, B_DELETE, always),
    case!(expiry, B_EXPIRY, always),
    case!(stale_entry_is_returned, B_STALE, always),
    case!(set_of_expired_entry, B_SET_EXPIRED, always),
    case!(get_many_equals_get_loop, B_GET_MANY, always),
    case!(set_many_and_delete_many, B_BULK, always),
    case!(invalidate_prefix_is_literal, B_PREFIX, |c| {
        if c.prefix_invalidation {
            Ok(())
        } else {
            Err("capability().prefix_invalidation is false")
        }
    }),
    case!(invalidate_tag_is_exact, B_TAG, |c| {
        if c.tag_invalidation {
            Ok(())
        } else {
            Err("capability().tag_invalidation is false")
        }
    }),
    case!(unsupported_operations, B_UNSUPPORTED, |c| {
        if c.prefix_invalidation && c.tag_invalidation && c.clear && c.list_keys {
            Err("every optional operation is supported")
        } else {
            Ok(())
        }
    }),
    case!(clear, B_CLEAR, |c| {
        if c.clear {
            Ok(())
        } else {
            Err("capability().clear is false")
        }
    }),
    case!(hostile_keys, B_HOSTILE, always),
    case!(concurrent_writers, B_CONCURRENT, always),
    case!(corrupt_bytes_are_healed_misses, B_CORRUPT, |c| {
        if c.stores_bytes {
            Ok(())
        } else {
            Err("capability().stores_bytes is false")
        }
    }),
    case!(list_keys_by_prefix, B_LIST, |c| {
        if c.list_keys {
            Ok(())
        } else {
            Err("capability().list_keys is false")
        }
    }),
    case!(fill_writes_when_empty, B_FILL_EMPTY, always),
    case!(fill_never_replaces_newer, B_FILL_NEWER, always),
    case!(delete_with_refuses_older_fills, B_DELETE_WITH, conditional),
    case!(
        invalidate_with_refuses_older_fills,
        B_INVALIDATE_WITH,
        |c| {
            conditional(c)?;
            if c.prefix_invalidation || c.tag_invalidation {
                Ok(())
            } else {
                Err("neither prefix nor tag invalidation is supported")
            }
        }
    ),
    case!(tombstones_are_invisible, B_TOMB_INVISIBLE, conditional),
    case!(tombstones_expire, B_TOMB_EXPIRE, conditional),
    case!(fill_races_delete_with, B_FILL_RACE, conditional),
    case!(errors_are_not_misses, B_ERRORS, |s| {
        if s.unreachable {
            Ok(())
        } else {
            Err("no unreachable instance given (with_unreachable)")
        }
    }),
    case!(health, B_HEALTH, always),
];

// ---------------------------------------------------------------------------------------------
// Helpers.

type CaseOutcome = Result<(), String>;

/// What one case gets: the backend, the clock, raw access and its own key prefix.
#[derive(Clone)]
pub(super) struct Cx {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) clock: Option<ManualClock>,
    pub(super) raw: Option<Arc<dyn RawStore>>,
    /// An instance of the backend that cannot reach its storage, when given.
    pub(super) unreachable: Option<Arc<dyn Backend>>,
    pub(super) cap: Capability,
    pub(super) prefix: String,
}

const TTL: Duration = Duration::from_secs(60);

impl Cx {
    fn now(&self) -> Timestamp {
        match &self.clock {
            Some(c) => c.now(),
            None => SystemClock.now(),
        }
    }

    fn key(&self, suffix: &str) -> Result<Key, String> {
        let text = format!("{}{suffix}", self.prefix);
        Key::new(&text).map_err(|e| format!("building key {text:?}: {e}"))
    }

    fn text(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A fresh raw entry stamped now, living [`TTL`].
    fn entry(&self, value: impl Into<Bytes>) -> Entry {
        Entry::new(value, self.now(), TTL)
    }

    async fn set(&self, key: &Key, entry: &Entry) -> CaseOutcome {
        self.backend
            .set(key, entry)
            .await
            .map_err(|e| format!("set {key:?} returned an error: {e}"))
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>, String> {
        self.backend
            .get(key)
            .await
            .map_err(|e| format!("get {key:?} returned an error: {e}"))
    }

    async fn delete(&self, key: &Key) -> CaseOutcome {
        self.backend
            .delete(key)
            .await
            .map_err(|e| format!("delete {key:?} returned an error: {e}"))
    }

    async fn expect(&self, key: &Key, want: Option<&Entry>, what: &str) -> CaseOutcome {
        let got = self.get(key).await?;
        same(got.as_ref(), want, &format!("{what} (key {key:?})"))
    }
}

/// Compare two optional entries, naming the fields that differ.
fn same(got: Option<&Entry>, want: Option<&Entry>, what: &str) -> CaseOutcome {
    match (got, want) {
        (None, None) => Ok(()),
        (Some(g), Some(w)) if g == w => Ok(()),
        (Some(g), Some(w)) => Err(format!("{what}: entry differs: {}", diff(g, w))),
        (Some(g), None) => Err(format!("{what}: expected a miss, got {g:?}")),
        (None, Some(w)) => Err(format!(
            "{what}: expected an entry ({} value bytes), got a miss",
            w.value.len()
        )),
    }
}

fn diff(g: &Entry, w: &Entry) -> String {
    let mut out = Vec::new();
    if g.value != w.value {
        let at = g
            .value
            .iter()
            .zip(w.value.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(g.value.len().min(w.value.len()));
        out.push(format!(
            "value ({} bytes, expected {}; first difference at byte {at})",
            g.value.len(),
            w.value.len()
        ));
    }
    macro_rules! field {
        ($f:ident) => {
            if g.$f != w.$f {
                out.push(format!(
                    "{} ({:?}, expected {:?})",
                    stringify!($f),
                    g.$f,
                    w.$f
                ));
            }
        };
    }
    field!(created_at);
    field!(expires_at);
    field!(stale_until);
    field!(version);
    field!(tags);
    field!(format);
    field!(compression);
    field!(flags);
    out.join(", ")
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !($cond) {
            return Err(format!($($arg)+));
        }
    };
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

mod errors;
mod fills;

use errors::errors_are_not_misses;
use fills::{
    delete_with_refuses_older_fills, fill_never_replaces_newer, fill_races_delete_with,
    fill_writes_when_empty, invalidate_with_refuses_older_fills, tombstones_are_invisible,
    tombstones_expire,
};

// ---------------------------------------------------------------------------------------------
// Cases.

async fn configuration(cx: Cx) -> CaseOutcome {
    ensure!(
        cx.clock.is_none() || cx.cap.clock_driven_expiry,
        "with_manual_clock was given, but capability().clock_driven_expiry is false: the \
         backend expires entries by its server's time, so a manual clock cannot drive it; \
         drop with_manual_clock (the expiry case then uses real time)"
    );
    ensure!(
        !cx.cap.stores_bytes || cx.raw.is_some(),
        "capability().stores_bytes is true but with_raw was not given: the corruption bullet \
         cannot be checked without a RawStore for this backend"
    );
    Ok(())
}

async fn miss_on_unknown_key(cx: Cx) -> CaseOutcome {
    let unknown = cx.key("never-written")?;
    cx.expect(&unknown, None, "a key never written").await?;
    // Keys next to an existing one are still misses.
    let present = cx.key("abc")?;
    let e = cx.entry(&b"present"[..]);
    cx.set(&present, &e).await?;
    cx.expect(&cx.key("ab")?, None, "a proper prefix of a stored key")
        .await?;
    cx.expect(&cx.key("abcd")?, None, "an extension of a stored key")
        .await?;
    cx.expect(&cx.key("ABC")?, None, "the stored key in another case")
        .await?;
    let many = cx
        .backend
        .get_many(&[unknown.clone(), cx.key("other")?])
        .await
        .map_err(|e| format!("get_many of unknown keys returned an error: {e}"))?;
    ensure!(
        many.len() == 2 && many.iter().all(Option::is_none),
        "get_many of two unknown keys: expected [None, None], got {many:?}"
    );
    cx.expect(&present, Some(&e), "the stored key itself").await
}

async fn round_trip(cx: Cx) -> CaseOutcome {
    let now = cx.now();
    let mut big = vec![0u8; 1 << 20];
    rand::rng().fill(&mut big[..]);
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let hostile_payload = envelope::encode(&cx.key("other")?, &cx.entry(&b"inner"[..]))
        .map_err(|e| format!("encoding an envelope payload: {e}"))?;
    let cases: Vec<(&str, Entry)> = vec![
        ("empty value", Entry::new(Bytes::new(), now, TTL)),
        ("every byte value", Entry::new(all_bytes, now, TTL)),
        (
            "a value that is itself an envelope",
            Entry::new(hostile_payload, now, TTL),
        ),
        (
            "json/lz4, stale window, tags, large version",
            Entry::new(
                &br#"{"a":1}"#[..],
                Timestamp(now.0.saturating_sub(1234)),
                TTL,
            )
            .with_stale_for(Duration::from_secs(30))
            .with_version(u64::MAX - 1)
            .with_tags(["alpha", "β-tag", "with space", "*?[%_\\"])
            .with_encoding(Format::Json, Compression::Lz4),
        ),
        (
            "messagepack/zstd, version 1",
            Entry::new(&b"\x81\xa1a\x01"[..], now, TTL)
                .with_version(1)
                .with_tags(["one"])
                .with_encoding(Format::MessagePack, Compression::Zstd),
        ),
        ("postcard, no compression, created at the epoch", {
            let mut e = Entry::new(&b"\x00\x01\x02"[..], now, TTL)
                .with_encoding(Format::Postcard, Compression::None);
            e.created_at = Timestamp(0);
            e
        }),
        (
            "negative entry (EntryFlags::NEGATIVE, empty payload)",
            Entry::new(Bytes::new(), now, TTL)
                .with_flags(EntryFlags::NEGATIVE)
                .with_version(7)
                .with_encoding(Format::Json, Compression::None),
        ),
    ];
    for (i, (what, e)) in cases.iter().enumerate() {
        let k = cx.key(&format!("v{i}"))?;
        cx.set(&k, e).await?;
        cx.expect(&k, Some(e), what).await?;
    }
    // 1 MiB, unless the backend declares a smaller limit (then it must say TooLarge).
    let k = cx.key("big")?;
    let e = Entry::new(big, now, TTL).with_version(3).with_tags(["big"]);
    let envelope_len = envelope::encode(&k, &e)
        .map_err(|err| format!("encoding the 1 MiB entry: {err}"))?
        .len();
    match cx.cap.max_value_bytes {
        Some(max) if envelope_len > max => match cx.backend.set(&k, &e).await {
            Err(err) if err.kind() == ErrorKind::TooLarge => {
                cx.expect(&k, None, "a rejected 1 MiB value").await
            }
            other => Err(format!(
                "set of a {envelope_len}-byte envelope over max_value_bytes {max}: expected a \
                 TooLarge error, got {other:?}"
            )),
        },
        _ => {
            cx.set(&k, &e).await?;
            cx.expect(&k, Some(&e), "a 1 MiB random value").await
        }
    }
}

async fn overwrite_replaces_entirely(cx: Cx) -> CaseOutcome {
    let k = cx.key("k")?;
    let tag = cx.text("tag-a");
    let a = cx
        .entry(vec![b'a'; 4096])
        .with_tags([tag.clone(), "shared".to_owned()])
        .with_stale_for(Duration::from_secs(30))
        .with_version(1)
        .with_flags(EntryFlags::NEGATIVE)
        .with_encoding(Format::Json, Compression::Lz4);
    let b = Entry::new(&b"b"[..], cx.now(), Duration::from_secs(120)).with_version(2);
    cx.set(&k, &a).await?;
    cx.expect(&k, Some(&a), "first write").await?;
    cx.set(&k, &b).await?;
    cx.expect(&k, Some(&b), "after a second, shorter write")
        .await?;
    let c = cx
        .entry(vec![b'c'; 8192])
        .with_version(3)
        .with_encoding(Format::Postcard, Compression::Zstd);
    cx.set(&k, &c).await?;
    cx.expect(&k, Some(&c), "after a third, longer write")
        .await?;
    if cx.cap.tag_invalidation {
        cx.backend
            .invalidate(&Selector::Tag(tag))
            .await
            .map_err(|e| format!("invalidate(Tag) returned an error: {e}"))?;
        cx.expect(
            &k,
            Some(&c),
            "invalidating a tag only the replaced entry had must not remove the new entry",
        )
        .await?;
    }
    Ok(())
}

async fn delete(cx: Cx) -> CaseOutcome {
    let k = cx.key("k")?;
    let neighbour = cx.key("k2")?;
    let e = cx.entry(&b"v"[..]);
    cx.set(&k, &e).await?;
    cx.set(&neighbour, &e).await?;
    cx.delete(&k).await?;
    cx.expect(&k, None, "a deleted key").await?;
    cx.expect(&neighbour, Some(&e), "a neighbour of a deleted key")
        .await?;
    cx.delete(&k)
        .await
        .map_err(|m| format!("deleting an already deleted key: {m}"))?;
    cx.delete(&cx.key("never-written")?)
        .await
        .map_err(|m| format!("deleting a never-written key: {m}"))?;
    // A deleted key can be written again.
    let e2 = cx.entry(&b"again"[..]).with_version(2);
    cx.set(&k, &e2).await?;
    cx.expect(&k, Some(&e2), "a key written again after delete")
        .await
}

async fn expiry(cx: Cx) -> CaseOutcome {
    match cx.clock.clone() {
        Some(clock) => expiry_manual(&cx, &clock).await,
        None => expiry_real_time(&cx).await,
    }
}

async fn expiry_manual(cx: &Cx, clock: &ManualClock) -> CaseOutcome {
    let hint = "(is the backend using the clock given to with_manual_clock?)";
    let t0 = clock.now();
    let ka = cx.key("fresh-only")?;
    let kb = cx.key("with-stale")?;
    let a = Entry::new(&b"a"[..], t0, Duration::from_secs(10));
    let b =
        Entry::new(&b"b"[..], t0, Duration::from_secs(10)).with_stale_for(Duration::from_secs(20));
    cx.set(&ka, &a).await?;
    cx.set(&kb, &b).await?;
    cx.expect(&ka, Some(&a), "right after set").await?;
    clock.advance(ms(9_999));
    cx.expect(&ka, Some(&a), "1 ms before expires_at").await?;
    clock.advance(ms(1));
    cx.expect(
        &ka,
        None,
        &format!("at expires_at without a stale window {hint}"),
    )
    .await?;
    cx.expect(&kb, Some(&b), "stale (past expires_at, before stale_until)")
        .await?;
    let many = cx
        .backend
        .get_many(&[ka.clone(), kb.clone()])
        .await
        .map_err(|e| format!("get_many returned an error: {e}"))?;
    ensure!(
        many.len() == 2 && many[0].is_none() && many[1].as_ref() == Some(&b),
        "get_many after the first expiry: expected [None, Some(stale entry)], got {many:?} {hint}"
    );
    clock.advance(ms(19_999));
    cx.expect(&kb, Some(&b), "1 ms before stale_until").await?;
    clock.advance(ms(1));
    cx.expect(&kb, None, &format!("at stale_until {hint}"))
        .await?;
    // Long after: still gone (no resurrection from a lazy path).
    clock.advance(Duration::from_secs(3600));
    cx.expect(&ka, None, "an hour after expiry").await?;
    cx.expect(&kb, None, "an hour after stale_until").await
}

async fn expiry_real_time(cx: &Cx) -> CaseOutcome {
    let k = cx.key("one-second")?;
    let written_at = Instant::now();
    let e = Entry::new(&b"short"[..], SystemClock.now(), Duration::from_secs(1));
    cx.set(&k, &e).await?;
    let deadline = written_at + Duration::from_secs(3);
    let mut seen_present = false;
    loop {
        let before = SystemClock.now();
        match cx.get(&k).await? {
            None => break,
            Some(got) => {
                same(Some(&got), Some(&e), "while not yet expired")?;
                ensure!(
                    before < e.retain_until(),
                    "returned an entry {} ms past its retain_until",
                    before.0 - e.retain_until().0
                );
                seen_present = true;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "an entry with a 1 s TTL was still returned 3 s after set"
        );
        tokio::time::sleep(ms(50)).await;
    }
    // Only if the first read was clearly early must it have seen the entry (no speed assertion
    // beyond that: a slow first read may legitimately miss).
    if !seen_present && SystemClock.now().0 < e.expires_at.0.saturating_sub(900) {
        return Err("a fresh entry with a 1 s TTL was a miss right after set".into());
    }
    cx.expect(&k, None, "after expiry, read again").await
}

async fn stale_entry_is_returned(cx: Cx) -> CaseOutcome {
    // Past expires_at by 30 s, retained for 60 s more.
    let now = cx.now();
    let k = cx.key("stale")?;
    let mut e = Entry::new(
        &b"stale but usable"[..],
        Timestamp(now.0.saturating_sub(90_000)),
        Duration::from_secs(60),
    )
    .with_version(5);
    e.stale_until = Some(now.plus(Duration::from_secs(60)));
    ensure!(
        !e.is_fresh(now) && e.is_retained(now),
        "suite bug: the entry is not stale"
    );
    cx.set(&k, &e).await?;
    cx.expect(
        &k,
        Some(&e),
        "a stale entry (past expires_at, before stale_until)",
    )
    .await
}

async fn set_of_expired_entry(cx: Cx) -> CaseOutcome {
    let now = cx.now();
    let past = Timestamp(now.0.saturating_sub(120_000));
    let k = cx.key("k")?;
    let fresh = cx.entry(&b"older copy"[..]);
    cx.set(&k, &fresh).await?;
    cx.expect(&k, Some(&fresh), "the older copy").await?;
    let expired = Entry::new(&b"expired"[..], past, Duration::from_secs(60)).with_version(2);
    cx.backend.set(&k, &expired).await.map_err(|e| {
        format!("set of an already-expired entry must succeed (storing nothing), got {e}")
    })?;
    cx.expect(
        &k,
        None,
        "after set of an already-expired entry over an older copy",
    )
    .await?;
    let k2 = cx.key("never-written")?;
    let stale_past = Entry::new(&b"x"[..], past, Duration::from_secs(30))
        .with_stale_for(Duration::from_secs(30));
    cx.set(&k2, &stale_past).await?;
    cx.expect(&k2, None, "set of an entry whose stale window has ended")
        .await?;
    if let Some(clock) = &cx.clock {
        // Exactly at retain_until counts as expired.
        let k3 = cx.key("exactly-now")?;
        let now = clock.now();
        let mut e = Entry::new(&b"y"[..], Timestamp(now.0.saturating_sub(1000)), ms(1000));
        e.stale_until = None;
        cx.set(&k3, &e).await?;
        cx.expect(
            &k3,
            None,
            "set of an entry whose retain_until is exactly now",
        )
        .await?;
    }
    Ok(())
}

async fn get_many_equals_get_loop(cx: Cx) -> CaseOutcome {
    let (a, b, c) = (cx.key("a")?, cx.key("b")?, cx.key("c")?);
    let (m1, m2) = (cx.key("miss-1")?, cx.key("miss-2")?);
    let ea = cx.entry(&b"A"[..]).with_version(1);
    let eb = cx.entry(Bytes::new()).with_version(2).with_tags(["t"]);
    let ec = cx.entry(vec![9u8; 70_000]).with_version(3);
    cx.set(&a, &ea).await?;
    cx.set(&b, &eb).await?;
    cx.set(&c, &ec).await?;
    let req = vec![
        a.clone(),
        m1.clone(),
        b.clone(),
        a.clone(),
        m2.clone(),
        c.clone(),
        c.clone(),
        m1.clone(),
    ];
    let want = [
        Some(&ea),
        None,
        Some(&eb),
        Some(&ea),
        None,
        Some(&ec),
        Some(&ec),
        None,
    ];
    let many = cx
        .backend
        .get_many(&req)
        .await
        .map_err(|e| format!("get_many returned an error: {e}"))?;
    ensure!(
        many.len() == req.len(),
        "get_many of {} keys returned {} slots",
        req.len(),
        many.len()
    );
    for (i, (k, w)) in req.iter().zip(want.iter()).enumerate() {
        same(many[i].as_ref(), *w, &format!("get_many slot {i}"))?;
        let single = cx.get(k).await?;
        same(
            many[i].as_ref(),
            single.as_ref(),
            &format!("get_many slot {i} vs get"),
        )?;
    }
    let empty = cx
        .backend
        .get_many(&[])
        .await
        .map_err(|e| format!("get_many of no keys returned an error: {e}"))?;
    ensure!(empty.is_empty(), "get_many of no keys returned {empty:?}");
    Ok(())
}

async fn set_many_and_delete_many(cx: Cx) -> CaseOutcome {
    let keys: Vec<Key> = (0..10)
        .map(|i| cx.key(&format!("k{i}")))
        .collect::<Result<_, _>>()?;
    let x = cx.key("x")?;
    let ex = cx.entry(&b"x before"[..]);
    cx.set(&x, &ex).await?;
    let mut items: Vec<(Key, Entry)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.clone(),
                cx.entry(format!("v{i}").into_bytes())
                    .with_version(i as u64),
            )
        })
        .collect();
    // A duplicate key: as with a loop of set, the last one wins.
    let last = cx.entry(&b"v0 last"[..]).with_version(100);
    items.push((keys[0].clone(), last.clone()));
    // An expired entry over an existing key: stores nothing and removes the older copy.
    let past = Timestamp(cx.now().0.saturating_sub(120_000));
    items.push((x.clone(), Entry::new(&b"x expired"[..], past, TTL)));
    cx.backend
        .set_many(&items)
        .await
        .map_err(|e| format!("set_many returned an error: {e}"))?;
    cx.expect(
        &keys[0],
        Some(&last),
        "set_many with a duplicate key: the last write wins",
    )
    .await?;
    for (i, (k, e)) in items.iter().enumerate().take(10).skip(1) {
        cx.expect(k, Some(e), &format!("set_many item {i}")).await?;
    }
    cx.expect(
        &x,
        None,
        "set_many with an expired entry over an older copy",
    )
    .await?;
    let missing = cx.key("missing")?;
    let del = vec![
        keys[0].clone(),
        keys[1].clone(),
        keys[2].clone(),
        missing,
        keys[1].clone(),
    ];
    cx.backend.delete_many(&del).await.map_err(|e| {
        format!("delete_many (with a missing and a duplicate key) returned an error: {e}")
    })?;
    for k in &keys[..3] {
        cx.expect(k, None, "deleted by delete_many").await?;
    }
    for (i, (k, e)) in items.iter().enumerate().take(10).skip(3) {
        cx.expect(k, Some(e), &format!("item {i}, not in delete_many"))
            .await?;
    }
    cx.backend
        .set_many(&[])
        .await
        .map_err(|e| format!("set_many of nothing returned an error: {e}"))?;
    cx.backend
        .delete_many(&[])
        .await
        .map_err(|e| format!("delete_many of nothing returned an error: {e}"))?;
    Ok(())
}

async fn invalidate_prefix_is_literal(cx: Cx) -> CaseOutcome {
    // (prefix, [(key, removed?)]) per group; each group lives under its own `g<i>/`.
    let groups: &[(&str, &[(&str, bool)])] = &[
        (
            "a*b",
            &[
                ("a*b", true),
                ("a*b/1", true),
                ("a*bc", true),
                ("axb/1", false),
                ("aab", false),
                ("axxb", false),
                ("a*", false),
                ("a", false),
            ],
        ),
        (
            "a?b",
            &[
                ("a?b1", true),
                ("axb1", false),
                ("a?c", false),
                ("ab", false),
            ],
        ),
        (
            "[ab]",
            &[("[ab]x", true), ("a", false), ("bx", false), ("[ab", false)],
        ),
        (
            "e\\*",
            &[
                ("e\\*1", true),
                ("e*1", false),
                ("e\\x", false),
                ("e\\", false),
            ],
        ),
        (
            "p%q",
            &[
                ("p%q1", true),
                ("pxxq", false),
                ("pq", false),
                ("p%", false),
            ],
        ),
        ("u_v", &[("u_v1", true), ("uxv", false), ("u_w", false)]),
        ("é", &[("éa", true), ("e", false), ("e\u{301}", false)]),
        ("^x$.", &[("^x$.+", true), ("x", false), ("^x$a", false)]),
    ];
    let e = cx.entry(&b"v"[..]);
    let sentinel = cx.key("sentinel")?;
    cx.set(&sentinel, &e).await?;
    let mut expectations = Vec::new();
    for (gi, (_, keys)) in groups.iter().enumerate() {
        for (suffix, removed) in keys.iter() {
            let k = cx.key(&format!("g{gi}/{suffix}"))?;
            cx.set(&k, &e).await?;
            expectations.push((gi, k, *removed));
        }
    }
    for (gi, (prefix, _)) in groups.iter().enumerate() {
        let p = cx.text(&format!("g{gi}/{prefix}"));
        cx.backend
            .invalidate(&Selector::Prefix(p.clone()))
            .await
            .map_err(|err| format!("invalidate(Prefix({p:?})) returned an error: {err}"))?;
    }
    let mut wrong = Vec::new();
    for (gi, k, removed) in &expectations {
        let got = cx.get(k).await?;
        if got.is_some() == *removed {
            wrong.push(format!(
                "{k:?} {} by Prefix({:?})",
                if *removed { "survived" } else { "was removed" },
                cx.text(&format!("g{gi}/{}", groups[*gi].0))
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    cx.expect(
        &sentinel,
        Some(&e),
        "a key outside every invalidated prefix",
    )
    .await
}

async fn invalidate_tag_is_exact(cx: Cx) -> CaseOutcome {
    let t1 = cx.text("t1");
    let t2 = cx.text("t2");
    let t1x = cx.text("t1x");
    let glob = cx.text("g*");
    let gx = cx.text("gx");
    let items: Vec<(&str, Vec<String>, bool)> = vec![
        ("only-t1", vec![t1.clone()], true),
        ("t1-and-t2", vec![t2.clone(), t1.clone()], true),
        ("only-t2", vec![t2.clone()], false),
        ("untagged", vec![], false),
        ("tag-extends-t1", vec![t1x.clone()], false),
        ("glob-tag", vec![glob.clone()], true),
        ("glob-neighbour", vec![gx.clone()], false),
    ];
    let mut entries = Vec::new();
    for (i, (name, tags, _)) in items.iter().enumerate() {
        let k = cx.key(name)?;
        let e = cx
            .entry(format!("v{i}").into_bytes())
            .with_tags(tags.clone());
        cx.set(&k, &e).await?;
        entries.push((k, e));
    }
    for t in [&t1, &glob] {
        cx.backend
            .invalidate(&Selector::Tag(t.clone()))
            .await
            .map_err(|err| format!("invalidate(Tag({t:?})) returned an error: {err}"))?;
    }
    let mut wrong = Vec::new();
    for ((k, e), (name, _, removed)) in entries.iter().zip(items.iter()) {
        let got = cx.get(k).await?;
        if *removed && got.is_some() {
            wrong.push(format!("{name} survived"));
        } else if !*removed && let Err(m) = same(got.as_ref(), Some(e), name) {
            wrong.push(m);
        }
    }
    ensure!(
        wrong.is_empty(),
        "after invalidate(Tag(t1)) and invalidate(Tag(\"g*\")): {}",
        wrong.join("; ")
    );
    // A tag no entry carries: Ok, nothing removed.
    cx.backend
        .invalidate(&Selector::Tag(cx.text("nobody")))
        .await
        .map_err(|err| format!("invalidate of an unused tag returned an error: {err}"))?;
    cx.expect(
        &entries[2].0,
        Some(&entries[2].1),
        "after invalidating an unused tag",
    )
    .await
}

async fn unsupported_operations(cx: Cx) -> CaseOutcome {
    let expect_unsupported = |what: &str, r: layercake_core::Result<()>| match r {
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
        other => Err(format!(
            "{what} is not in capability(), expected an Unsupported error, got {other:?}"
        )),
    };
    if !cx.cap.prefix_invalidation {
        let r = cx
            .backend
            .invalidate(&Selector::Prefix(cx.prefix.clone()))
            .await;
        expect_unsupported("invalidate(Prefix)", r)?;
    }
    if !cx.cap.tag_invalidation {
        let r = cx.backend.invalidate(&Selector::Tag(cx.text("t"))).await;
        expect_unsupported("invalidate(Tag)", r)?;
    }
    if !cx.cap.list_keys {
        let r = cx.backend.keys_with_prefix(&cx.prefix, 10).await;
        let r = r.map(|_listed| ());
        expect_unsupported("keys_with_prefix", r)?;
    }
    if !cx.cap.clear {
        let k = cx.key("survives")?;
        let e = cx.entry(&b"v"[..]);
        cx.set(&k, &e).await?;
        expect_unsupported("clear", cx.backend.clear().await)?;
        cx.expect(&k, Some(&e), "after an unsupported clear")
            .await?;
    }
    Ok(())
}

async fn clear(cx: Cx) -> CaseOutcome {
    let mut written = Vec::new();
    for i in 0..5 {
        let k = cx.key(&format!("k{i}"))?;
        let e = cx.entry(format!("v{i}").into_bytes()).with_tags(["c"]);
        cx.set(&k, &e).await?;
        written.push(k);
    }
    cx.backend
        .clear()
        .await
        .map_err(|e| format!("clear returned an error: {e}"))?;
    for k in &written {
        cx.expect(k, None, "after clear").await?;
    }
    let e = cx.entry(&b"after"[..]);
    cx.set(&written[0], &e).await?;
    cx.expect(&written[0], Some(&e), "a write after clear")
        .await?;
    if cx.cap.conditional_fill {
        fills::clear_removes_tombstones(&cx).await?;
    }
    Ok(())
}

async fn list_keys_by_prefix(cx: Cx) -> CaseOutcome {
    let inside = ["l/a*", "l/a?b", "l/[x]", "l/%_", "l/plain"];
    let outside = ["lx", "m/a", "l"];
    for s in inside.iter().chain(&outside) {
        let k = cx.key(s)?;
        cx.set(&k, &cx.entry(s.as_bytes().to_vec())).await?;
    }
    let prefix = cx.text("l/");
    let mut got: Vec<String> = cx
        .backend
        .keys_with_prefix(&prefix, 100)
        .await
        .map_err(|e| format!("keys_with_prefix returned an error: {e}"))?
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = inside.iter().map(|s| cx.text(s)).collect();
    want.sort();
    if got != want {
        return Err(format!(
            "keys_with_prefix({prefix:?}) listed {got:?}, expected {want:?}"
        ));
    }
    let some = cx
        .backend
        .keys_with_prefix(&prefix, 2)
        .await
        .map_err(|e| format!("keys_with_prefix with limit 2 returned an error: {e}"))?;
    if some.len() != 2 || !some.iter().all(|k| k.as_str().starts_with(&prefix)) {
        return Err(format!("limit 2 listed {some:?}"));
    }
    let deleted = cx.key("l/plain")?;
    cx.backend
        .delete(&deleted)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    let after = cx
        .backend
        .keys_with_prefix(&prefix, 100)
        .await
        .map_err(|e| format!("keys_with_prefix returned an error: {e}"))?;
    if after.contains(&deleted) || after.len() != inside.len() - 1 {
        return Err(format!("after deleting {deleted:?}, listed {after:?}"));
    }
    Ok(())
}

async fn hostile_keys(cx: Cx) -> CaseOutcome {
    let suffixes = [
        "/../../etc/passwd",
        "..\\..\\windows\\system32",
        "'; DROP TABLE t;--",
        "\"quoted\" $(rm -rf /) `x`",
        "*",
        "a*b?c[d]e\\f%g_h{i,j}",
        "ключ 🔑 中文 ü",
        "é",
        "e\u{301}",
        "Case",
        "case",
        "with spaces  ",
        "with spaces",
        "nbsp\u{a0}here",
        "/",
        ".",
        "..",
        "NUL.txt",
        ":colon:and;semicolon",
    ];
    let mut keys = Vec::new();
    for s in suffixes {
        keys.push(cx.key(s)?);
    }
    // The longest allowed key: exactly 1024 bytes.
    let longest = format!(
        "{}{}",
        cx.prefix,
        "L".repeat(layercake_core::DEFAULT_MAX_KEY_LEN - cx.prefix.len())
    );
    keys.push(Key::new(&longest).map_err(|e| format!("building the 1024-byte key: {e}"))?);
    let entries: Vec<Entry> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            cx.entry(k.as_bytes().to_vec())
                .with_version(i as u64)
                .with_tags([k.as_str().chars().take(40).collect::<String>()])
        })
        .collect();
    for (k, e) in keys.iter().zip(&entries) {
        cx.set(k, e).await?;
    }
    for (k, e) in keys.iter().zip(&entries) {
        cx.expect(k, Some(e), "a hostile key").await?;
    }
    // Deleting the key `*` must delete that key only.
    let star = &keys[4];
    cx.delete(star).await?;
    cx.expect(star, None, "the deleted key `*`").await?;
    for (k, e) in keys.iter().zip(&entries) {
        if k != star {
            cx.expect(k, Some(e), "after deleting the key `*`").await?;
        }
    }
    Ok(())
}

const WRITERS: u64 = 16;
const WRITES: u64 = 50;

fn payload_for(version: u64) -> Vec<u8> {
    let mut v = version.to_le_bytes().to_vec();
    v.resize(2048 + (version % 7) as usize * 100, (version % 251) as u8);
    v
}

fn check_untorn(e: &Entry) -> CaseOutcome {
    let (t, i) = (e.version / 1000, e.version % 1000);
    ensure!(
        t < WRITERS && i < WRITES,
        "read an entry with version {} that no writer wrote",
        e.version
    );
    ensure!(
        e.value.as_ref() == payload_for(e.version).as_slice(),
        "torn entry: the value does not belong to version {}",
        e.version
    );
    ensure!(
        e.tags.len() == 1 && e.tags[0] == format!("w{t}"),
        "torn entry: tags {:?} do not belong to version {}",
        e.tags,
        e.version
    );
    Ok(())
}

async fn concurrent_writers(cx: Cx) -> CaseOutcome {
    let shared = cx.key("shared")?;
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let cx = cx.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let v = t * 1000 + i;
                let e = cx
                    .entry(payload_for(v))
                    .with_version(v)
                    .with_tags([format!("w{t}")]);
                cx.set(&shared, &e).await?;
                cx.set(&cx.key(&format!("w{t}/{i}"))?, &e).await?;
                if let Some(got) = cx.get(&shared).await? {
                    check_untorn(&got)?;
                }
            }
            Ok::<(), String>(())
        }));
    }
    let mut errors = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(m)) => errors.push(format!("writer {t}: {m}")),
            Err(j) => errors.push(format!("writer {t} panicked or was cancelled: {j}")),
        }
    }
    ensure!(errors.is_empty(), "{}", errors.join("; "));
    match cx.get(&shared).await? {
        Some(e) => check_untorn(&e)?,
        None => return Err("the shared key is missing after all writers finished".into()),
    }
    for t in 0..WRITERS {
        for i in 0..WRITES {
            let v = t * 1000 + i;
            let k = cx.key(&format!("w{t}/{i}"))?;
            match cx.get(&k).await? {
                Some(e) if e.version == v => check_untorn(&e)?,
                other => {
                    return Err(format!(
                        "distinct key {k:?}: expected version {v}, got {other:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Recompute the trailing xxh3 checksum of an envelope after editing it.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= 8 {
        let end = b.len() - 8;
        let sum = xxhash_rust::xxh3::xxh3_64(&b[..end]);
        b[end..].copy_from_slice(&sum.to_le_bytes());
    }
    b
}

async fn corrupt_bytes_are_healed_misses(cx: Cx) -> CaseOutcome {
    let Some(raw) = cx.raw.clone() else {
        return Err("with_raw was not given (see the configuration case)".into());
    };
    let k = cx.key("k")?;
    let good = cx
        .entry(&b"a valid value"[..])
        .with_tags(["t"])
        .with_version(9);
    let valid = envelope::encode(&k, &good).map_err(|e| format!("encode: {e}"))?;
    // Sanity: RawStore writes where the backend reads, else the checks below prove nothing.
    raw.put_raw(&k, valid.clone())
        .await
        .map_err(|e| format!("put_raw returned an error: {e}"))?;
    cx.expect(
        &k,
        Some(&good),
        "a valid envelope planted with put_raw (does RawStore encode keys like the backend?)",
    )
    .await?;
    let other = envelope::encode(&cx.key("other")?, &good).map_err(|e| format!("encode: {e}"))?;
    let mut random = vec![0u8; 64];
    rand::rng().fill(&mut random[..]);
    let mut future = valid.clone();
    future[4] = FORMAT_VERSION.wrapping_add(1);
    let mut flags = valid.clone();
    flags[5] = 0x80;
    let mut flipped = valid.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x01;
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random),
        ("empty bytes", Vec::new()),
        ("magic only", b"LYRC".to_vec()),
        (
            "a truncated valid envelope",
            valid[..valid.len() / 2].to_vec(),
        ),
        ("another key's valid envelope", other),
        ("a future format version", reseal(future)),
        ("unknown flags", reseal(flags)),
        ("a flipped payload bit (bad checksum)", flipped),
    ];
    for (what, bytes) in variants {
        let before = cx.backend.corrupt_reads();
        raw.put_raw(&k, bytes)
            .await
            .map_err(|e| format!("{what}: put_raw returned an error: {e}"))?;
        match cx.backend.get(&k).await {
            Ok(None) => {}
            Ok(Some(e)) => return Err(format!("{what}: returned {e:?} instead of a miss")),
            Err(e) => return Err(format!("{what}: returned an error instead of a miss: {e}")),
        }
        let exists = raw
            .raw_exists(&k)
            .await
            .map_err(|e| format!("{what}: raw_exists returned an error: {e}"))?;
        ensure!(
            !exists,
            "{what}: the bad copy was not removed after the read"
        );
        let after = cx.backend.corrupt_reads();
        ensure!(
            after > before,
            "{what}: corrupt_reads did not increase ({before} -> {after})"
        );
    }
    // The bulk path heals too.
    let k2 = cx.key("k2")?;
    let e2 = cx.entry(&b"fine"[..]);
    cx.set(&k2, &e2).await?;
    raw.put_raw(&k, b"garbage".to_vec())
        .await
        .map_err(|e| format!("put_raw returned an error: {e}"))?;
    let before = cx.backend.corrupt_reads();
    let many = cx
        .backend
        .get_many(&[k.clone(), k2.clone()])
        .await
        .map_err(|e| format!("get_many over a corrupt copy returned an error: {e}"))?;
    ensure!(
        many.len() == 2 && many[0].is_none() && many[1].as_ref() == Some(&e2),
        "get_many over [corrupt, valid]: expected [None, Some], got {many:?}"
    );
    let exists = raw
        .raw_exists(&k)
        .await
        .map_err(|e| format!("raw_exists returned an error: {e}"))?;
    ensure!(!exists, "get_many did not remove the bad copy");
    ensure!(
        cx.backend.corrupt_reads() > before,
        "get_many over a corrupt copy did not count it in corrupt_reads"
    );
    Ok(())
}

async fn health(cx: Cx) -> CaseOutcome {
    cx.backend
        .health()
        .await
        .map_err(|e| format!("health returned an error: {e}"))
}
