//! Per-thread shards for state that every request writes (the request
//! logger's queue, request metrics): with one shared copy, its cache lines
//! move between the cores of the threads serving requests on every write
//! (~0.1 µs each, measured in bench/overhead); each thread writes its own
//! shard, and only the rare reader (a batch writer, a scrape) visits all.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

/// Shards per [`Sharded`] value: enough for every core's worker thread to
/// have its own on the machines we run on (more threads share them in turn).
pub const SHARDS: usize = 16;

thread_local! {
    /// This thread's shard, picked on first use.
    static MINE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Hands shards to threads in turn.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The shard (below [`SHARDS`]) of the calling thread.
fn this_thread() -> usize {
    MINE.with(|s| match s.get() {
        Some(i) => i,
        None => {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(i));
            i
        }
    })
}

/// A shard on cache lines of its own (two: adjacent-line prefetching).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(Mutex<T>);

/// [`SHARDS`] values of `T`, each behind its own lock on its own cache
/// lines; a thread always gets the same one first.
#[derive(Default)]
pub struct Sharded<T>([Padded<T>; SHARDS]);

impl<T> Sharded<T> {
    /// Shards made by `make`.
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        Sharded(std::array::from_fn(|_| Padded(Mutex::new(make()))))
    }

    /// The calling thread's shard, locked.
    pub fn mine(&self) -> MutexGuard<'_, T> {
        self.0[this_thread()].0.lock()
    }

    /// Every shard, in a fixed order.
    pub fn all(&self) -> impl Iterator<Item = &Mutex<T>> {
        self.0.iter().map(|p| &p.0)
    }
}
