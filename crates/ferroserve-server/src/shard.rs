//! Per-thread shards for state that every request writes (the request
//! logger's queue, request metrics): with one shared copy, its cache lines
//! move between the cores of the threads serving requests on every write
//! (~0.1 µs each, measured in bench/overhead); each thread writes its own
//! shard, and only the rare reader (a batch writer, a scrape) visits all.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards per sharded value: enough for every core's worker thread to have
/// its own on the machines we run on (more threads share them in turn).
pub const SHARDS: usize = 16;

/// A value on cache lines of its own (two: adjacent-line prefetching).
#[repr(align(128))]
#[derive(Default)]
pub struct Padded<T>(pub T);

thread_local! {
    /// This thread's shard, picked on first use.
    static MINE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Hands shards to threads in turn.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The shard (below [`SHARDS`]) of the calling thread.
pub fn this_thread() -> usize {
    MINE.with(|s| match s.get() {
        Some(i) => i,
        None => {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(i));
            i
        }
    })
}
