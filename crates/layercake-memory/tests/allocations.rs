//! The read path allocates nothing: counted with a global allocator in this test binary.
#![allow(
    unsafe_code,
    reason = "a counting GlobalAlloc needs `unsafe impl`; it only forwards to System"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Clock, Entry, Key, ManualClock};
use layercake_memory::{MemoryBackend, MemoryConfig};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn get_sync_does_not_allocate_not_even_on_the_first_read() {
    let clock = ManualClock::new();
    let b =
        MemoryBackend::new(MemoryConfig::new(8 << 20).with_clock(Arc::new(clock.clone()))).unwrap();
    let keys: Vec<Key> = (0..100)
        .map(|i| Key::new(format!("k{i}")).unwrap())
        .collect();
    let decoded: Arc<dyn Any + Send + Sync> = Arc::new(vec![1u64, 2, 3]);
    for k in &keys {
        // A Vec-backed (promotable) Bytes, as a codec produces.
        let e = Entry::new(vec![7u8; 300], clock.now(), Duration::from_secs(60))
            .with_tags(["a", "b"])
            .with_decoded(decoded.clone());
        b.set_sync(k, &e).unwrap();
    }
    let missing = Key::new("missing").unwrap();
    let before = allocations();
    let mut hits = 0;
    for _ in 0..10 {
        for k in &keys {
            hits += usize::from(b.get_sync(k).is_some());
        }
        assert!(b.get_sync(&missing).is_none());
    }
    let after = allocations();
    assert_eq!(hits, 1000);
    assert_eq!(
        after - before,
        0,
        "get_sync allocated {} times",
        after - before
    );
    // The counter works: a boxed value is one allocation.
    let x = std::hint::black_box(Box::new(1u8));
    assert_eq!(allocations() - after, 1);
    drop(x);
}
