//! The cases for conditional fills and tombstones (`fill`, `fill_many`, `delete_with`,
//! `invalidate_with`).
//!
//! Every backend call here is bounded by [`OP_TIMEOUT`] and every loop by a fixed count or a
//! deadline, so a backend that hangs fails the case in seconds, not at the case timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use layercake_core::{Clock as _, Entry, FillOutcome, Key, Selector, SystemClock, Tombstone};

use super::{CaseOutcome, Cx, same};

/// Longest a single backend call of these cases may take.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A tombstone living long enough to outlast any case.
fn tomb(version: u64) -> Tombstone {
    Tombstone::new(version, Duration::from_secs(60))
}

/// `fut` within [`OP_TIMEOUT`], its error described as `what`.
async fn within<T>(
    what: &str,
    fut: impl Future<Output = layercake_core::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what} returned an error: {e}")),
        Err(_) => Err(format!("{what} did not finish within {OP_TIMEOUT:?}")),
    }
}

impl Cx {
    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome, String> {
        within(
            &format!("fill {key:?} (version {})", entry.version),
            self.backend.fill(key, entry),
        )
        .await
    }

    async fn fill_expect(
        &self,
        key: &Key,
        entry: &Entry,
        want: FillOutcome,
        what: &str,
    ) -> CaseOutcome {
        let got = self.fill(key, entry).await?;
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "{what}: fill {key:?} of version {} returned {got:?}, expected {want:?}",
                entry.version
            ))
        }
    }

    async fn delete_with(&self, key: &Key, t: Tombstone) -> CaseOutcome {
        within(
            &format!("delete_with {key:?} (tombstone version {})", t.version),
            self.backend.delete_with(key, t),
        )
        .await
    }

    async fn invalidate_with(&self, selector: &Selector, t: Tombstone) -> CaseOutcome {
        within(
            &format!(
                "invalidate_with {selector:?} (tombstone version {})",
                t.version
            ),
            self.backend.invalidate_with(selector, t),
        )
        .await
    }

    /// An entry stamped now with `version`, `value` and tags.
    fn versioned(&self, value: &str, version: u64, tags: &[&str]) -> Entry {
        self.entry(value.as_bytes().to_vec())
            .with_version(version)
            .with_tags(tags.iter().map(|t| (*t).to_owned()))
    }
}

pub(super) async fn fill_writes_when_empty(cx: Cx) -> CaseOutcome {
    let k = cx.key("k")?;
    let e = cx.versioned("filled", 3, &["t"]);
    cx.fill_expect(&k, &e, FillOutcome::Stored, "a key never written")
        .await?;
    cx.expect(&k, Some(&e), "after a fill into an empty key")
        .await?;
    // Version 0 (an entry that never had one) fills an empty key too.
    let z = cx.key("zero")?;
    let ez = cx.versioned("zero", 0, &[]);
    cx.fill_expect(&z, &ez, FillOutcome::Stored, "version 0 into an empty key")
        .await?;
    cx.expect(&z, Some(&ez), "after a version-0 fill").await?;
    // fill_many: one outcome per item, in order, as a loop of fill would give.
    let (a, b) = (cx.key("many-a")?, cx.key("many-b")?);
    let ea = cx.versioned("a", 1, &[]);
    let eb = cx.versioned("b", 2, &[]);
    let older = cx.versioned("k older", 2, &[]);
    let got = within(
        "fill_many",
        cx.backend.fill_many(&[
            (a.clone(), ea.clone()),
            (k.clone(), older),
            (b.clone(), eb.clone()),
        ]),
    )
    .await?;
    ensure!(
        got == [
            FillOutcome::Stored,
            FillOutcome::KeptNewer,
            FillOutcome::Stored
        ],
        "fill_many of [empty, older than stored, empty] returned {got:?}, expected [Stored, \
         KeptNewer, Stored]"
    );
    cx.expect(&a, Some(&ea), "fill_many item 0").await?;
    cx.expect(&b, Some(&eb), "fill_many item 2").await?;
    cx.expect(&k, Some(&e), "fill_many item 1 (refused)")
        .await?;
    let none = within("fill_many of nothing", cx.backend.fill_many(&[])).await?;
    ensure!(none.is_empty(), "fill_many of nothing returned {none:?}");
    if let Some(clock) = &cx.clock {
        // A stored entry that has expired does not refuse a fill, whatever its version.
        let x = cx.key("expired")?;
        let short =
            Entry::new(&b"short"[..], clock.now(), Duration::from_secs(10)).with_version(50);
        cx.set(&x, &short).await?;
        clock.advance(Duration::from_secs(10));
        let e = cx.versioned("after expiry", 1, &[]);
        cx.fill_expect(
            &x,
            &e,
            FillOutcome::Stored,
            "over an expired entry of a higher version",
        )
        .await?;
        cx.expect(&x, Some(&e), "after a fill over an expired entry")
            .await?;
    }
    if cx.cap.conditional_fill {
        // An entry already past retain_until is refused and removes nothing.
        let past = layercake_core::Timestamp(cx.now().0.saturating_sub(120_000));
        let dead = Entry::new(&b"dead"[..], past, Duration::from_secs(60)).with_version(99);
        cx.fill_expect(
            &k,
            &dead,
            FillOutcome::Expired,
            "an expired entry over a stored one",
        )
        .await?;
        cx.expect(&k, Some(&e), "after an expired fill (nothing removed)")
            .await?;
        let fresh = cx.key("never")?;
        cx.fill_expect(
            &fresh,
            &dead,
            FillOutcome::Expired,
            "an expired entry into an empty key",
        )
        .await?;
        cx.expect(&fresh, None, "after an expired fill into an empty key")
            .await?;
    }
    Ok(())
}

pub(super) async fn fill_never_replaces_newer(cx: Cx) -> CaseOutcome {
    let k = cx.key("k")?;
    let stored = cx.versioned("stored v5", 5, &["s"]);
    cx.set(&k, &stored).await?;
    cx.fill_expect(
        &k,
        &cx.versioned("older v3", 3, &[]),
        FillOutcome::KeptNewer,
        "older",
    )
    .await?;
    cx.expect(&k, Some(&stored), "after refusing an older fill")
        .await?;
    cx.fill_expect(
        &k,
        &cx.versioned("same v5", 5, &[]),
        FillOutcome::KeptNewer,
        "same version",
    )
    .await?;
    cx.expect(&k, Some(&stored), "after refusing a same-version fill")
        .await?;
    let newer = cx.versioned("newer v7", 7, &["n"]);
    cx.fill_expect(&k, &newer, FillOutcome::Stored, "newer")
        .await?;
    cx.expect(&k, Some(&newer), "after a newer fill").await?;
    // The largest versions compare as unsigned 64-bit numbers.
    let big = cx.key("big")?;
    let top = cx.versioned("top", u64::MAX - 1, &[]);
    cx.set(&big, &top).await?;
    cx.fill_expect(
        &big,
        &cx.versioned("below", u64::MAX - 2, &[]),
        FillOutcome::KeptNewer,
        "u64::MAX - 2 under u64::MAX - 1",
    )
    .await?;
    cx.fill_expect(
        &big,
        &cx.versioned("low", 1 << 63, &[]),
        FillOutcome::KeptNewer,
        "2^63 under u64::MAX - 1",
    )
    .await?;
    let max = cx.versioned("max", u64::MAX, &[]);
    cx.fill_expect(
        &big,
        &max,
        FillOutcome::Stored,
        "u64::MAX over u64::MAX - 1",
    )
    .await?;
    cx.expect(&big, Some(&max), "after a u64::MAX fill").await?;
    // Across the 32-bit boundary.
    let edge = cx.key("edge")?;
    cx.set(&edge, &cx.versioned("2^32", 1 << 32, &[])).await?;
    cx.fill_expect(
        &edge,
        &cx.versioned("below", (1 << 32) - 1, &[]),
        FillOutcome::KeptNewer,
        "2^32 - 1 under 2^32",
    )
    .await?;
    cx.fill_expect(
        &edge,
        &cx.versioned("above", (1 << 32) + 1, &[]),
        FillOutcome::Stored,
        "2^32 + 1 over 2^32",
    )
    .await?;
    // An authoritative set is never conditional.
    let back = cx.versioned("set v1", 1, &[]);
    cx.set(&k, &back).await?;
    cx.expect(
        &k,
        Some(&back),
        "a set of a lower version replaces a newer entry",
    )
    .await
}

pub(super) async fn delete_with_refuses_older_fills(cx: Cx) -> CaseOutcome {
    let k = cx.key("k")?;
    let neighbour = cx.key("k2")?;
    cx.set(&k, &cx.versioned("v5", 5, &[])).await?;
    cx.set(&neighbour, &cx.versioned("n", 5, &[])).await?;
    cx.delete_with(&k, tomb(10)).await?;
    cx.expect(&k, None, "after delete_with").await?;
    for v in [1, 9, 10] {
        cx.fill_expect(
            &k,
            &cx.versioned("old", v, &[]),
            FillOutcome::Tombstoned,
            "under the tombstone",
        )
        .await?;
        cx.expect(&k, None, "after a refused fill").await?;
    }
    let n2 = cx.versioned("n2", 6, &[]);
    cx.fill_expect(
        &neighbour,
        &n2,
        FillOutcome::Stored,
        "a neighbour key (k2) of the tombstoned k",
    )
    .await?;
    cx.expect(&neighbour, Some(&n2), "the neighbour").await?;
    let above = cx.versioned("v11", 11, &[]);
    cx.fill_expect(&k, &above, FillOutcome::Stored, "above the tombstone")
        .await?;
    cx.expect(&k, Some(&above), "after a fill above the tombstone")
        .await?;
    // A key that held nothing gets its tombstone too.
    let never = cx.key("never")?;
    cx.delete_with(&never, tomb(10)).await?;
    cx.fill_expect(
        &never,
        &cx.versioned("x", 3, &[]),
        FillOutcome::Tombstoned,
        "a key deleted while empty",
    )
    .await?;
    // A set is never refused, even below the tombstone.
    let set = cx.versioned("set v2", 2, &[]);
    cx.set(&never, &set).await?;
    cx.expect(&never, Some(&set), "a set below the tombstone")
        .await?;
    // A second delete_with with a lower version does not lower the tombstone.
    let twice = cx.key("twice")?;
    cx.delete_with(&twice, tomb(20)).await?;
    cx.delete_with(&twice, tomb(5)).await?;
    cx.fill_expect(
        &twice,
        &cx.versioned("x", 15, &[]),
        FillOutcome::Tombstoned,
        "between two tombstones (20, then 5)",
    )
    .await?;
    // A zero ttl leaves no tombstone.
    let zero = cx.key("zero-ttl")?;
    cx.delete_with(&zero, Tombstone::new(10, Duration::ZERO))
        .await?;
    cx.fill_expect(
        &zero,
        &cx.versioned("x", 3, &[]),
        FillOutcome::Stored,
        "after a delete_with with a zero ttl",
    )
    .await
}

pub(super) async fn invalidate_with_refuses_older_fills(cx: Cx) -> CaseOutcome {
    if cx.cap.prefix_invalidation {
        let (pa, pb, q) = (cx.key("p/a")?, cx.key("p/b")?, cx.key("q/a")?);
        let literal = cx.key("p*x")?;
        let eq = cx.versioned("q", 1, &[]);
        for k in [&pa, &pb] {
            cx.set(k, &cx.versioned("p", 1, &[])).await?;
        }
        cx.set(&q, &eq).await?;
        cx.invalidate_with(&Selector::Prefix(cx.text("p/")), tomb(10))
            .await?;
        cx.expect(&pa, None, "a key under the invalidated prefix")
            .await?;
        cx.expect(&pb, None, "a key under the invalidated prefix")
            .await?;
        cx.expect(&q, Some(&eq), "a key outside the prefix").await?;
        cx.fill_expect(
            &pa,
            &cx.versioned("old", 9, &[]),
            FillOutcome::Tombstoned,
            "a removed key under the prefix",
        )
        .await?;
        cx.fill_expect(
            &cx.key("p/new")?,
            &cx.versioned("old", 10, &[]),
            FillOutcome::Tombstoned,
            "a new key under the prefix",
        )
        .await?;
        let qb = cx.versioned("qb", 5, &[]);
        cx.fill_expect(
            &cx.key("q/b")?,
            &qb,
            FillOutcome::Stored,
            "a key outside the prefix",
        )
        .await?;
        cx.fill_expect(
            &literal,
            &cx.versioned("lit", 5, &[]),
            FillOutcome::Stored,
            "a key matching only as a glob (p*x vs prefix p/)",
        )
        .await?;
        let above = cx.versioned("above", 11, &[]);
        cx.fill_expect(
            &pa,
            &above,
            FillOutcome::Stored,
            "above the prefix tombstone",
        )
        .await?;
        cx.expect(&pa, Some(&above), "after a fill above the prefix tombstone")
            .await?;
        cx.expect(&cx.key("p/new")?, None, "the refused new key")
            .await?;
    }
    if cx.cap.tag_invalidation {
        let t = cx.text("T");
        let other = cx.text("T2");
        let tx = cx.text("Tx");
        let (a, b, c) = (cx.key("tag/a")?, cx.key("tag/b")?, cx.key("tag/c")?);
        cx.set(&a, &cx.versioned("a", 1, &[&t])).await?;
        cx.invalidate_with(&Selector::Tag(t.clone()), tomb(10))
            .await?;
        cx.expect(&a, None, "an entry carrying the invalidated tag")
            .await?;
        cx.fill_expect(
            &a,
            &cx.versioned("a", 9, &[&t]),
            FillOutcome::Tombstoned,
            "an entry carrying the tag",
        )
        .await?;
        cx.fill_expect(
            &b,
            &cx.versioned("b", 9, &[&other, &t]),
            FillOutcome::Tombstoned,
            "an entry carrying the tag among others",
        )
        .await?;
        let untagged = cx.versioned("a untagged", 9, &[&other, &tx]);
        cx.fill_expect(
            &a,
            &untagged,
            FillOutcome::Stored,
            "the same key without the tag (T2, Tx)",
        )
        .await?;
        cx.expect(&a, Some(&untagged), "the untagged fill").await?;
        let above = cx.versioned("c", 11, &[&t]);
        cx.fill_expect(&c, &above, FillOutcome::Stored, "above the tag tombstone")
            .await?;
        cx.expect(&c, Some(&above), "after a fill above the tag tombstone")
            .await?;
        cx.expect(&b, None, "the refused tagged fill").await?;
    }
    Ok(())
}

pub(super) async fn tombstones_are_invisible(cx: Cx) -> CaseOutcome {
    let (a, b, live) = (cx.key("l/a")?, cx.key("l/b")?, cx.key("l/live")?);
    let e_live = cx.versioned("live", 1, &[]);
    cx.set(&a, &cx.versioned("a", 1, &["x"])).await?;
    cx.set(&live, &e_live).await?;
    cx.delete_with(&a, tomb(10)).await?;
    cx.delete_with(&b, tomb(10)).await?;
    if cx.cap.prefix_invalidation {
        cx.invalidate_with(&Selector::Prefix(cx.text("l/gone/")), tomb(10))
            .await?;
    }
    if cx.cap.tag_invalidation {
        cx.invalidate_with(&Selector::Tag(cx.text("nobody")), tomb(10))
            .await?;
    }
    cx.expect(&a, None, "a key deleted with a tombstone")
        .await?;
    cx.expect(&b, None, "a never-written key deleted with a tombstone")
        .await?;
    let many = within(
        "get_many",
        cx.backend.get_many(&[a.clone(), live.clone(), b.clone()]),
    )
    .await?;
    ensure!(
        many.len() == 3 && many[0].is_none() && many[2].is_none(),
        "get_many over tombstoned keys returned {many:?}"
    );
    same(
        many[1].as_ref(),
        Some(&e_live),
        "get_many slot 1 (a live key)",
    )?;
    if cx.cap.list_keys {
        let listed = within(
            "keys_with_prefix",
            cx.backend.keys_with_prefix(&cx.text("l/"), 100),
        )
        .await?;
        ensure!(
            listed == [live.clone()],
            "keys_with_prefix listed {listed:?}; expected only the live key {live:?}, not the \
             tombstoned ones"
        );
    }
    // Removals over tombstones succeed and leave nothing visible.
    cx.delete(&a).await?;
    within(
        "delete_many",
        cx.backend.delete_many(std::slice::from_ref(&b)),
    )
    .await?;
    if cx.cap.tag_invalidation {
        within(
            "invalidate(Tag)",
            cx.backend.invalidate(&Selector::Tag("x".into())),
        )
        .await?;
    }
    cx.expect(&a, None, "a tombstoned key after delete").await?;
    // A set over a tombstone is visible at once.
    let again = cx.versioned("again", 2, &[]);
    cx.set(&b, &again).await?;
    cx.expect(&b, Some(&again), "a set over a tombstone")
        .await?;
    Ok(())
}

/// The `clear` case's part for backends with tombstones: `clear` removes them too.
pub(super) async fn clear_removes_tombstones(cx: &Cx) -> CaseOutcome {
    let k = cx.key("tombstoned")?;
    cx.delete_with(&k, tomb(10)).await?;
    within("clear", cx.backend.clear()).await?;
    cx.fill_expect(
        &k,
        &cx.versioned("after clear", 3, &[]),
        FillOutcome::Stored,
        "after clear (which removes tombstones)",
    )
    .await
}

pub(super) async fn tombstones_expire(cx: Cx) -> CaseOutcome {
    let k = cx.key("k")?;
    let p = cx.key("p/k")?;
    let t = cx.key("t")?;
    let tag = cx.text("tag");
    let prefix = cx.cap.prefix_invalidation;
    let tagged = cx.cap.tag_invalidation;
    match &cx.clock {
        Some(clock) => {
            let ttl = Duration::from_secs(10);
            cx.delete_with(&k, Tombstone::new(10, ttl)).await?;
            if prefix {
                cx.invalidate_with(&Selector::Prefix(cx.text("p/")), Tombstone::new(10, ttl))
                    .await?;
            }
            if tagged {
                cx.invalidate_with(&Selector::Tag(tag.clone()), Tombstone::new(10, ttl))
                    .await?;
            }
            clock.advance(Duration::from_millis(9_999));
            let hint = "(is the backend using the clock given to with_manual_clock?)";
            cx.fill_expect(
                &k,
                &cx.versioned("k", 5, &[]),
                FillOutcome::Tombstoned,
                &format!("1 ms before the key tombstone expires {hint}"),
            )
            .await?;
            if prefix {
                cx.fill_expect(
                    &p,
                    &cx.versioned("p", 5, &[]),
                    FillOutcome::Tombstoned,
                    "1 ms before the prefix tombstone expires",
                )
                .await?;
            }
            if tagged {
                cx.fill_expect(
                    &t,
                    &cx.versioned("t", 5, &[&tag]),
                    FillOutcome::Tombstoned,
                    "1 ms before the tag tombstone expires",
                )
                .await?;
            }
            clock.advance(Duration::from_millis(1));
            let e = cx.versioned("k", 5, &[]);
            cx.fill_expect(
                &k,
                &e,
                FillOutcome::Stored,
                &format!("when the key tombstone expires {hint}"),
            )
            .await?;
            cx.expect(&k, Some(&e), "a fill after the tombstone expired")
                .await?;
            if prefix {
                cx.fill_expect(
                    &p,
                    &cx.versioned("p", 5, &[]),
                    FillOutcome::Stored,
                    "when the prefix tombstone expires",
                )
                .await?;
            }
            if tagged {
                cx.fill_expect(
                    &t,
                    &cx.versioned("t", 5, &[&tag]),
                    FillOutcome::Stored,
                    "when the tag tombstone expires",
                )
                .await?;
            }
            Ok(())
        }
        None => {
            // Real time (the server expires tombstones by its own clock): a short ttl, a
            // refusal checked only when it is clearly early, then a bounded poll.
            let ttl = Duration::from_millis(400);
            let start = Instant::now();
            cx.delete_with(&k, Tombstone::new(10, ttl)).await?;
            if prefix {
                cx.invalidate_with(&Selector::Prefix(cx.text("p/")), Tombstone::new(10, ttl))
                    .await?;
            }
            if tagged {
                cx.invalidate_with(&Selector::Tag(tag.clone()), Tombstone::new(10, ttl))
                    .await?;
            }
            let mut pending: Vec<(&str, Key, Vec<&str>)> = vec![("key", k.clone(), vec![])];
            if prefix {
                pending.push(("prefix", p.clone(), vec![]));
            }
            if tagged {
                pending.push(("tag", t.clone(), vec![tag.as_str()]));
            }
            for (what, key, tags) in &pending {
                let early = start.elapsed() < ttl / 2;
                let got = cx.fill(key, &stamped(what, 5, tags)).await?;
                if early && got != FillOutcome::Tombstoned {
                    return Err(format!(
                        "a fill under a live {what} tombstone (ttl {ttl:?}) returned {got:?}, \
                         expected Tombstoned"
                    ));
                }
                if got.is_stored() {
                    // Late (a slow machine): the tombstone had expired; that is the end state.
                    continue;
                }
            }
            let deadline = start + ttl + Duration::from_millis(2_500);
            tokio::time::sleep_until((start + ttl + Duration::from_millis(20)).into()).await;
            for (what, key, tags) in &pending {
                loop {
                    let e = stamped(what, 5, tags);
                    match cx.fill(key, &e).await? {
                        FillOutcome::Stored | FillOutcome::KeptNewer => break,
                        _ if Instant::now() >= deadline => {
                            return Err(format!(
                                "a {what} tombstone with a ttl of {ttl:?} still refused a fill \
                                 {:?} after it was written",
                                start.elapsed()
                            ));
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                ensure!(
                    cx.get(key).await?.is_some_and(|e| e.version == 5),
                    "after the {what} tombstone expired, the filled entry is not readable"
                );
            }
            Ok(())
        }
    }
}

/// An entry stamped by the system clock (real-time cases).
fn stamped(value: &str, version: u64, tags: &[&str]) -> Entry {
    Entry::new(
        value.as_bytes().to_vec(),
        SystemClock.now(),
        Duration::from_secs(60),
    )
    .with_version(version)
    .with_tags(tags.iter().map(|t| (*t).to_owned()))
}

/// Rounds of the race case; each races one fill against one removal of its key.
const RACE_ROUNDS: usize = 24;

pub(super) async fn fill_races_delete_with(cx: Cx) -> CaseOutcome {
    let mut failures = Vec::new();
    for round in 0..RACE_ROUNDS {
        let k = cx.key(&format!("r{round}/k"))?;
        let tag = cx.text(&format!("r{round}/tag"));
        // 0: delete_with, 1: invalidate_with(Prefix), 2: invalidate_with(Tag); the fill is
        // spawned first in even rounds.
        let removal = match round % 3 {
            1 if cx.cap.prefix_invalidation => {
                Some(Selector::Prefix(cx.text(&format!("r{round}/"))))
            }
            2 if cx.cap.tag_invalidation => Some(Selector::Tag(tag.clone())),
            _ => None,
        };
        cx.set(&k, &cx.versioned("old", 1, &[&tag])).await?;
        let filled = cx.versioned("fill", 5, &[&tag]);
        let t = tomb(10);
        let fill = {
            let (cx, k, e) = (cx.clone(), k.clone(), filled.clone());
            move || tokio::spawn(async move { cx.fill(&k, &e).await.map(|_| ()) })
        };
        let remove = {
            let (cx, k, removal) = (cx.clone(), k.clone(), removal.clone());
            move || {
                tokio::spawn(async move {
                    match &removal {
                        None => cx.delete_with(&k, t).await,
                        Some(s) => cx.invalidate_with(s, t).await,
                    }
                })
            }
        };
        let (first, second) = if round % 2 == 0 {
            (fill(), remove())
        } else {
            let r = remove();
            (fill(), r)
        };
        for task in [first, second] {
            match tokio::time::timeout(OP_TIMEOUT * 2, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(m))) => return Err(format!("round {round}: {m}")),
                Ok(Err(j)) => return Err(format!("round {round}: a task failed: {j}")),
                Err(_) => return Err(format!("round {round}: a task did not finish")),
            }
        }
        let what = match &removal {
            None => "delete_with".to_owned(),
            Some(s) => format!("invalidate_with({s:?})"),
        };
        if let Some(e) = cx.get(&k).await?
            && e.version <= t.version
        {
            failures.push(format!(
                "round {round}: after a fill (version 5) raced {what} (tombstone version 10), \
                 the key holds version {}",
                e.version
            ));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}
