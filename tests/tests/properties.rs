//! Property tests of the key strategies and the backplane message decoder, beyond those in
//! `layercake-core` (which covers envelope round trips and arbitrary/mutated envelope bytes,
//! arbitrary message bytes and text, and map-order independence of digest keys).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::collections::HashSet;

use layercake::core::backplane::{InstanceId, MAX_MESSAGE_BYTES, Message, Target};
use layercake::core::envelope;
use layercake::{
    Entry, ErrorKind, HashedKeys, Key, KeyStrategy, KeyStrategyExt, Namespace, PlainKeys, Timestamp,
};
use layercake_core::Bytes;
use proptest::prelude::*;

/// Any text, including control characters, unicode and long runs.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-z0-9:/._ *?\\[\\]-]{0,40}",
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}a]{1,8}",
        (0usize..1100).prop_map(|n| "x".repeat(n)),
    ]
}

fn namespace() -> impl Strategy<Value = Namespace> {
    ("[A-Za-z0-9_.-]{1,64}", any::<u32>()).prop_map(|(n, v)| Namespace::new(n, v).unwrap())
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        ".{1,60}".prop_map(Target::Key),
        ".{0,60}".prop_map(Target::Prefix),
        ".{1,60}".prop_map(Target::Tag),
        Just(Target::All),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (target(), any::<u64>(), any::<[u8; 16]>()).prop_map(|(target, version, origin)| Message {
        target,
        version,
        origin: InstanceId(origin),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Plain keys are exactly `"{ns}:v{version}:{text}"` or an `InvalidKey` error: never
    /// truncated or altered; accepted exactly when the text and the whole key are valid.
    #[test]
    fn plain_keys_are_exact_or_rejected(ns in namespace(), text in any_text()) {
        let s = PlainKeys::new(ns.clone());
        let full = format!("{}{text}", ns.prefix());
        let valid = layercake::core::key::validate(&text, 1024).is_ok()
            && layercake::core::key::validate(&full, 1024).is_ok();
        match s.key_for_text(&text) {
            Ok(k) => {
                prop_assert!(valid, "accepted an invalid key {text:?}");
                prop_assert_eq!(k.as_str(), full.as_str());
                prop_assert!(k.starts_with(&ns.prefix()));
            }
            Err(e) => {
                prop_assert!(!valid, "rejected a valid key {text:?}: {e}");
                prop_assert_eq!(e.kind(), ErrorKind::InvalidKey);
                prop_assert!(e.to_string().contains("rule"), "the rule is named: {e}");
            }
        }
    }

    /// Digest keys: any non-empty text or request bytes give a key of fixed length, lower-case
    /// hex after the namespace prefix; the same input gives the same key; text and request
    /// domains never collide; the namespace version changes the key.
    #[test]
    fn digest_keys_are_fixed_length_deterministic_and_versioned(
        ns in namespace(),
        text in ".{1,200}",
        bytes in proptest::collection::vec(any::<u8>(), 1..200),
    ) {
        let s = HashedKeys::new(ns.clone());
        let k = s.key_for_text(&text).unwrap();
        prop_assert_eq!(k.len(), ns.prefix().len() + 32);
        let hex = &k.as_str()[ns.prefix().len()..];
        prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(&k, &s.key_for_text(&text).unwrap());
        prop_assert_ne!(&k, &s.key_for_canonical(text.as_bytes()).unwrap());
        let b = s.key_for_canonical(&bytes).unwrap();
        prop_assert_eq!(b.len(), k.len());
        let next = HashedKeys::new(ns.with_version(ns.version().wrapping_add(1)));
        prop_assert_ne!(&k, &next.key_for_text(&text).unwrap());
    }

    /// Distinct inputs give distinct digest keys (no collision among a batch).
    #[test]
    fn digest_keys_do_not_collide(texts in proptest::collection::hash_set(".{1,30}", 1..64)) {
        let s = HashedKeys::new(Namespace::new("p", 1).unwrap());
        let keys: HashSet<Key> = texts.iter().map(|t| s.key_for_text(t).unwrap()).collect();
        prop_assert_eq!(keys.len(), texts.len());
    }

    /// Requests: equal values give equal keys under both strategies, whatever the strategy.
    #[test]
    fn requests_give_stable_keys(model in "[a-z]{1,8}", prompt in ".{0,80}", n in any::<u16>()) {
        #[derive(serde::Serialize)]
        struct Req<'a> { model: &'a str, prompt: &'a str, n: u16 }
        let ns = Namespace::new("req", 2).unwrap();
        let r = Req { model: &model, prompt: &prompt, n };
        let h = HashedKeys::new(ns.clone());
        prop_assert_eq!(h.key_for(&r).unwrap(), h.key_for(&Req { model: &model, prompt: &prompt, n }).unwrap());
        // Plain keys spell the canonical JSON out, or name the rule it breaks.
        match PlainKeys::new(ns.clone()).key_for(&r) {
            Ok(k) => {
                let expected = "req:v2:{\"model\":";
                prop_assert!(k.as_str().starts_with(expected), "{}", k);
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidKey),
        }
    }

    /// Messages round-trip through both encodings, or are rejected with `TooLarge` when
    /// over the limit.
    #[test]
    fn messages_round_trip(m in message()) {
        match m.encode() {
            Ok(b) => {
                prop_assert!(b.len() <= MAX_MESSAGE_BYTES);
                prop_assert_eq!(&Message::decode(&b).unwrap(), &m);
                prop_assert_eq!(&Message::decode_text(&m.encode_text().unwrap()).unwrap(), &m);
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::TooLarge),
        }
    }

    /// A mutated or truncated message either fails with `Corrupt` or decodes to a message
    /// whose encoding is exactly the mutated bytes (the decoder accepts only canonical input,
    /// so no two byte strings mean the same message).
    #[test]
    fn mutated_messages_are_corrupt_or_canonical(
        m in message(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let Ok(mut b) = m.encode() else { return Ok(()) };
        for (at, byte) in edits {
            let n = b.len();
            b[at % n] = byte;
        }
        b.truncate(cut % (b.len() + 1));
        match Message::decode(&b) {
            Ok(d) => prop_assert_eq!(d.encode().unwrap(), b),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Corrupt),
        }
    }

    /// The envelope decoder accepts only canonical input too: a mutated envelope that still
    /// decodes re-encodes to the same bytes.
    #[test]
    fn mutated_envelopes_are_corrupt_or_canonical(
        value in proptest::collection::vec(any::<u8>(), 0..300),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        cut in any::<usize>(),
    ) {
        let key = Key::new("prop:v1:k").unwrap();
        let e = Entry::new(value, Timestamp(1_700_000_000_000), std::time::Duration::from_secs(5)).with_tags(["t"]);
        let mut b = envelope::encode(&key, &e).unwrap();
        for (at, byte) in edits {
            let n = b.len();
            b[at % n] = byte;
        }
        b.truncate(cut % (b.len() + 1));
        match envelope::decode(&key, Bytes::from(b.clone())) {
            Ok(d) => prop_assert_eq!(envelope::encode(&key, &d).unwrap(), b),
            Err(err) => prop_assert_eq!(err.kind(), ErrorKind::Corrupt),
        }
    }
}
