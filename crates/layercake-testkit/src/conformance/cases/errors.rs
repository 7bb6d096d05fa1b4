//! The case for "an error is never reported as a miss", run against an instance of the backend
//! that cannot reach its storage ([`Conformance::with_unreachable`](crate::conformance::Conformance::with_unreachable)).

use std::fmt::Debug;

use layercake_core::{Backend, Result};

use super::{CaseOutcome, Cx};

/// What a call on the unreachable instance returned, when it was not an error.
fn not_err<T: Debug>(what: &str, r: Result<T>, meaning: &str) -> Option<String> {
    match r {
        Err(_) => None,
        Ok(v) => Some(format!("{what} returned Ok({v:?}){meaning}")),
    }
}

pub(super) async fn errors_are_not_misses(cx: Cx) -> CaseOutcome {
    let Some(down) = cx.unreachable.clone() else {
        return Err("suite bug: the case ran without an unreachable instance".to_owned());
    };
    ensure!(
        down.kind() == cx.backend.kind(),
        "the unreachable instance is a `{}` backend, not a `{}` one: give an instance of the \
         backend under test that cannot reach its storage",
        down.kind(),
        cx.backend.kind()
    );
    let k = cx.key("k")?;
    let e = cx.entry(&b"v"[..]);
    let b: &dyn Backend = down.as_ref();
    let miss = " on a backend that cannot reach its storage: an error reported as a miss";
    let ok = " on a backend that cannot reach its storage: a failure reported as success";
    let mut wrong = vec![
        not_err("get", b.get(&k).await, miss),
        not_err(
            "get_many",
            b.get_many(&[k.clone(), cx.key("k2")?]).await,
            miss,
        ),
        not_err("fill", b.fill(&k, &e).await, ok),
        not_err("set", b.set(&k, &e).await, ok),
        not_err("delete", b.delete(&k).await, ok),
        not_err("health", b.health().await, ok),
    ];
    if cx.cap.list_keys {
        wrong.push(not_err(
            "keys_with_prefix",
            b.keys_with_prefix(&cx.prefix, 10).await,
            miss,
        ));
    }
    let wrong: Vec<String> = wrong.into_iter().flatten().collect();
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}
