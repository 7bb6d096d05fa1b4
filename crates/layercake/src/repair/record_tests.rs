//! Unit tests of [`RepairRecord`](super::RepairRecord): dedup, selectors, serials,
//! resolution, both overflow behaviours, batches.

use super::*;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn record(max: usize, overflow: Overflow) -> RepairRecord {
    RepairRecord::new(
        &RepairConfig::new()
            .with_max_pending(max)
            .with_overflow(overflow),
    )
}

#[test]
fn notes_dedupe_per_key_and_skip_reads() {
    let r = record(10, Overflow::ClearTier);
    assert!(r.is_empty());
    assert!(!r.skips_key(&key("a")));
    assert_eq!(r.note_key(&key("a"), false, 1), Noted::Recorded);
    assert_eq!(r.note_key(&key("a"), false, 1), Noted::Recorded);
    assert_eq!(r.len(), 1);
    assert!(r.skips_key(&key("a")));
    assert!(!r.skips_key(&key("b")));
    assert!(r.oldest().is_some());
    assert_eq!(r.counters.noted.load(Ordering::Relaxed), 2);
}

#[test]
fn selectors_skip_what_they_match() {
    let r = record(10, Overflow::ClearTier);
    r.note_key(&key("p:1"), false, 1);
    r.note_key(&key("q:1"), false, 1);
    r.note_selector(&Selector::Prefix("p:".into()), 1);
    assert_eq!(r.len(), 2, "the prefix covers p:1");
    assert!(r.skips_key(&key("p:9")));
    assert!(!r.skips_key(&key("r:1")));
    r.note_selector(&Selector::Tag("t".into()), 1);
    assert!(
        !r.skips_key(&key("r:1")),
        "a tag cannot be judged before reading"
    );
    assert!(r.skips_entry(&key("r:1"), &["t".to_string()]));
    assert!(!r.skips_entry(&key("r:1"), &["u".to_string()]));
    // A wider prefix covers the narrower one.
    r.note_selector(&Selector::Prefix("p:x".into()), 1);
    r.note_selector(&Selector::Prefix("p".into()), 1);
    let b = r.batch(10);
    assert!(b.contains(&(Repair::Select(Selector::Prefix("p".into()), 1), 6)));
    assert!(
        !b.iter()
            .any(|(x, _)| *x == Repair::Select(Selector::Prefix("p:x".into()), 1))
    );
    assert!(
        !b.iter()
            .any(|(x, _)| *x == Repair::Select(Selector::Prefix("p:".into()), 1))
    );
}

#[test]
fn applied_drops_only_notes_not_made_again() {
    let r = record(10, Overflow::ClearTier);
    r.note_key(&key("a"), false, 1);
    r.note_key(&key("b"), false, 1);
    let batch = r.batch(10);
    assert_eq!(batch.len(), 2);
    // "a" fails again while the repair runs.
    r.note_key(&key("a"), false, 1);
    r.applied(&batch);
    assert_eq!(r.len(), 1);
    assert!(r.skips_key(&key("a")));
    assert!(!r.skips_key(&key("b")));
    assert_eq!(r.counters.applied.load(Ordering::Relaxed), 2);
    let again = r.batch(10);
    r.applied(&again);
    assert!(r.is_empty());
    assert_eq!(r.oldest(), None);
}

#[test]
fn a_later_success_resolves_certain_notes_only() {
    let r = record(10, Overflow::ClearTier);
    r.note_key(&key("a"), false, 1);
    r.note_key(&key("t"), true, 1);
    r.resolved_key(&key("a"));
    r.resolved_key(&key("t"));
    assert!(!r.skips_key(&key("a")));
    assert!(r.skips_key(&key("t")), "a timed-out write may still land");
    // A certain failure after an uncertain one stays uncertain.
    r.note_key(&key("t"), false, 1);
    r.resolved_key(&key("t"));
    assert!(r.skips_key(&key("t")));
    assert_eq!(r.counters.resolved.load(Ordering::Relaxed), 1);
}

#[test]
fn clear_tier_overflow_turns_into_a_whole_tier_note() {
    let r = record(2, Overflow::ClearTier);
    r.note_key(&key("a"), false, 1);
    r.note_key(&key("b"), false, 1);
    assert_eq!(
        r.note_key(&key("a"), false, 1),
        Noted::Recorded,
        "present: no room needed"
    );
    assert_eq!(r.note_key(&key("c"), false, 1), Noted::Overflowed);
    assert_eq!(r.len(), 1);
    assert!(r.everything_pending());
    assert!(
        r.skips_key(&key("zzz")),
        "every read of the tier is skipped"
    );
    assert_eq!(r.note_key(&key("d"), false, 1), Noted::Overflowed);
    assert_eq!(r.batch(10), vec![(Repair::Everything, 4)]);
    assert_eq!(r.counters.overflowed.load(Ordering::Relaxed), 1);
    let b = r.batch(10);
    r.applied(&b);
    assert!(r.is_empty());
    assert!(!r.skips_key(&key("a")));
}

#[test]
fn refuse_overflow_keeps_the_notes_and_refuses() {
    let r = record(2, Overflow::RefuseWrites);
    r.note_key(&key("a"), false, 1);
    r.note_selector(&Selector::Tag("t".into()), 1);
    assert_eq!(r.note_key(&key("b"), false, 1), Noted::Refused);
    assert_eq!(
        r.note_selector(&Selector::Tag("u".into()), 1),
        Noted::Refused
    );
    assert_eq!(
        r.note_selector(&Selector::Tag("t".into()), 1),
        Noted::Recorded
    );
    assert_eq!(r.len(), 2);
    assert!(!r.everything_pending());
    assert_eq!(r.counters.refused.load(Ordering::Relaxed), 2);
    // A failed clear is always noted: it needs no room.
    r.note_everything();
    assert!(r.everything_pending());
    assert_eq!(r.len(), 1);
}

#[test]
fn a_clear_resolves_the_certain_notes_made_before_it() {
    let r = record(10, Overflow::ClearTier);
    r.note_key(&key("a"), false, 1);
    r.note_key(&key("t"), true, 1);
    let mark = r.mark();
    r.note_key(&key("b"), false, 1);
    r.resolved_upto(mark);
    assert!(!r.skips_key(&key("a")));
    assert!(r.skips_key(&key("t")));
    assert!(r.skips_key(&key("b")), "made after the clear began");
}

#[test]
fn batches_are_bounded_and_selections_come_first() {
    let r = record(100, Overflow::ClearTier);
    for i in 0..20 {
        r.note_key(&key(&format!("k{i}")), false, 1);
    }
    r.note_selector(&Selector::Tag("t".into()), 1);
    let b = r.batch(5);
    assert_eq!(b.len(), 5);
    assert_eq!(b[0].0, Repair::Select(Selector::Tag("t".into()), 1));
}

#[test]
fn the_tombstone_version_is_the_highest_noted() {
    let r = record(10, Overflow::ClearTier);
    r.note_key(&key("p:a"), false, 5);
    r.note_key(&key("p:a"), false, 3);
    assert_eq!(r.batch(10), vec![(Repair::Key(key("p:a"), 5), 2)]);
    r.note_key(&key("p:b"), false, 9);
    r.note_selector(&Selector::Prefix("p:".into()), 7);
    assert_eq!(
        r.batch(10),
        vec![(Repair::Select(Selector::Prefix("p:".into()), 9), 4)],
        "a prefix absorbs the keys under it with their tombstones"
    );
    r.note_selector(&Selector::Prefix("p:".into()), 2);
    assert_eq!(
        r.batch(10),
        vec![(Repair::Select(Selector::Prefix("p:".into()), 9), 5)]
    );
}
