//! The bounded queue between the request path and the delivery side.
//!
//! HTTP sinks take events from a tokio channel (their sender tasks wait on
//! it). The file sink's writer thread takes them in batches from a
//! [`BatchQueue`]: each thread copies its events' bodies into its own shard
//! ([`crate::shard`]), a [`Batch`] behind an uncontended lock, and the
//! writer swaps the batches for empty ones. The request path wakes the
//! writer only when it sleeps for want of events (one flag read otherwise).
//!
//! Nothing is allocated per event, and nothing the request path allocates
//! is freed by the writer: on machines where memory moves slowly between
//! cores (a virtual machine, a many-core mesh), a body allocated on one
//! core and freed on another made each allocation after it a cache miss,
//! and cost more than logging itself. A tokio channel would also cost a
//! semaphore permit and a linked block list per event, which the writer,
//! taking everything at once, never needs.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use tokio::sync::mpsc;

use super::event::{Entry, Event};
use super::{Correlation, EventKind};
use crate::shard::Sharded;

/// The queue had no room (or was closed): the event was dropped.
#[derive(Debug)]
pub(crate) struct Full;

/// Where [`super::Logger`] puts events.
pub(crate) enum Queue {
    /// Taken by an HTTP sink's sender tasks.
    Channel {
        /// The sending side.
        tx: mpsc::Sender<Event>,
        /// Its capacity.
        capacity: usize,
    },
    /// Taken in batches by the file sink's writer thread.
    File(std::sync::Arc<BatchQueue>),
}

impl Queue {
    /// Events waiting now.
    pub(crate) fn len(&self) -> usize {
        match self {
            Queue::Channel { tx, capacity } => capacity.saturating_sub(tx.capacity()),
            Queue::File(q) => q.len(),
        }
    }
}

/// One queued event, its body in its batch's `bodies`.
struct Queued {
    kind: EventKind,
    corr: Correlation,
    time: SystemTime,
    content_type: HeaderValue,
    body: Range<usize>,
}

/// Events and their bodies (one after another in one buffer).
#[derive(Default)]
pub(crate) struct Batch {
    events: Vec<Queued>,
    bodies: Vec<u8>,
    /// What the events count against the queue's bounds (packed as
    /// [`BatchQueue::used`]).
    reserved: u64,
}

impl Batch {
    /// Appends `entry` of `corr` (copying its body).
    fn push(&mut self, corr: &Correlation, entry: &Entry<'_>) {
        let start = self.bodies.len();
        self.bodies.extend_from_slice(entry.body);
        self.events.push(Queued {
            kind: entry.kind,
            corr: corr.clone(),
            time: entry.time,
            content_type: entry.content_type.clone(),
            body: start..self.bodies.len(),
        });
    }

    /// Number of events.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Empties it, keeping its memory.
    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.bodies.clear();
        self.reserved = 0;
    }

    /// Memory it holds (bytes).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.bodies.capacity() + self.events.capacity() * std::mem::size_of::<Queued>()
    }

    /// Event `i`: its correlation and what its line is rendered from.
    pub(crate) fn event(&self, i: usize) -> (&Correlation, Entry<'_, [u8]>) {
        let q = &self.events[i];
        let entry = Entry {
            kind: q.kind,
            time: q.time,
            content_type: &q.content_type,
            body: &self.bodies[q.body.clone()],
        };
        (&q.corr, entry)
    }
}

/// A bounded queue of events taken all at once by one thread (see the
/// module documentation).
pub(crate) struct BatchQueue {
    shards: Sharded<Batch>,
    /// Events (high bits) and body bytes (low [`BYTE_BITS`] bits) waiting
    /// or being written: one atomic add per push keeps both bounds exact.
    used: AtomicU64,
    capacity: u64,
    max_bytes: u64,
    /// Set by the taker before it parks for want of events.
    parked: AtomicBool,
    closed: AtomicBool,
    taker: OnceLock<Thread>,
}

/// Bits of [`BatchQueue::used`] counting bytes (1 TiB).
const BYTE_BITS: u32 = 40;

/// `events` and `bytes` packed as in [`BatchQueue::used`].
fn pack(events: usize, bytes: usize) -> u64 {
    ((events as u64) << BYTE_BITS) | (bytes as u64).min((1 << BYTE_BITS) - 1)
}

impl BatchQueue {
    /// An empty queue holding at most `capacity` events (up to 2^23) and
    /// `max_bytes` body bytes (up to 2^39).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        BatchQueue {
            shards: Sharded::new(Batch::default),
            used: AtomicU64::new(0),
            capacity: (capacity as u64).clamp(1, 1 << 23),
            max_bytes: (max_bytes as u64).min(1 << (BYTE_BITS - 1)),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            taker: OnceLock::new(),
        }
    }

    /// Queues `entries` of `corr` (all or none) in the calling thread's
    /// shard, waking the taker if it sleeps. Refuses them when they would
    /// pass either bound or the queue is closed.
    pub(crate) fn push(&self, corr: &Correlation, entries: &[Entry<'_>]) -> Result<(), Full> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Full);
        }
        let bytes = entries.iter().map(|e| e.body.len()).sum();
        let add = pack(entries.len(), bytes);
        let after = self.used.fetch_add(add, Ordering::AcqRel) + add;
        if after >> BYTE_BITS > self.capacity || after & ((1 << BYTE_BITS) - 1) > self.max_bytes {
            self.used.fetch_sub(add, Ordering::AcqRel);
            return Err(Full);
        }
        {
            let mut mine = self.shards.mine();
            for e in entries {
                mine.push(corr, e);
            }
            mine.reserved += add;
        }
        // SeqCst pairs with `wait`: either the taker sees these events when
        // it looks after raising the flag, or this load sees the flag.
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.taker.get() {
                t.unpark();
            }
        }
        Ok(())
    }

    /// Gives back the room the taken `batches` held (once written).
    pub(crate) fn release(&self, batches: &[Batch]) {
        let add: u64 = batches.iter().map(|b| b.reserved).sum();
        self.used.fetch_sub(add, Ordering::AcqRel);
    }

    /// Events waiting or being written now.
    pub(crate) fn len(&self) -> usize {
        (self.used.load(Ordering::Relaxed) >> BYTE_BITS) as usize
    }

    /// Body bytes waiting or being written now.
    pub(crate) fn bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed) & ((1 << BYTE_BITS) - 1)
    }

    fn is_empty(&self) -> bool {
        self.shards.all().all(|s| s.lock().events.is_empty())
    }

    /// Moves every shard holding events into `taken`, leaving a batch from
    /// `spare` (emptied) or a new one in its place.
    pub(crate) fn take(&self, taken: &mut Vec<Batch>, spare: &mut Vec<Batch>) {
        for s in self.shards.all() {
            let mut q = s.lock();
            if !q.events.is_empty() {
                let mut fresh = spare.pop().unwrap_or_default();
                fresh.clear();
                taken.push(std::mem::replace(&mut *q, fresh));
            }
        }
    }

    /// Called by the one thread that takes events: parks it until the
    /// queue holds some (true) or is closed and empty (false).
    pub(crate) fn wait(&self) -> bool {
        let _ = self.taker.set(std::thread::current());
        loop {
            if !self.is_empty() {
                return true;
            }
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            self.parked.store(true, Ordering::SeqCst);
            if self.is_empty() && !self.closed.load(Ordering::SeqCst) {
                // Spurious wake-ups only cost another look.
                std::thread::park();
            }
            self.parked.store(false, Ordering::SeqCst);
        }
    }

    /// Refuses further events and wakes the taker (which drains what is
    /// queued, then ends).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(t) = self.taker.get() {
            t.unpark();
        }
    }
}

/// The events of a set of taken batches in the order of their time (each
/// batch is in order already, or nearly: a request is queued with its
/// answer); events of the same time keep the order they were queued in.
#[derive(Default)]
pub(crate) struct TimeOrder {
    /// Per event: nanoseconds since the epoch (high 64 bits), batch
    /// (32 bits), event in the batch (low 32 bits); sorting these plain
    /// integers is the stable sort by time, without looking the times up
    /// in the batches for each comparison.
    keys: Vec<u128>,
}

impl TimeOrder {
    /// Orders the events of `taken`.
    pub(crate) fn sort(&mut self, taken: &[Batch]) {
        self.keys.clear();
        for (b, batch) in taken.iter().enumerate() {
            self.keys
                .extend(batch.events.iter().enumerate().map(|(i, q)| {
                    let nanos = q
                        .time
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                    (u128::from(nanos) << 64) | ((b as u128) << 32) | i as u128
                }));
        }
        self.keys.sort_unstable();
    }

    /// `(batch, event)` indices, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.keys
            .iter()
            .map(|&k| ((k >> 32) as u32 as usize, k as u32 as usize))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use axum::http::HeaderValue;
    use bytes::Bytes;

    use super::*;

    static CT: HeaderValue = HeaderValue::from_static("application/json");

    /// Queues one event with body `body`, at `time`, of correlation `id`.
    fn push_at(
        q: &BatchQueue,
        id: &str,
        body: &'static [u8],
        time: SystemTime,
    ) -> Result<(), Full> {
        let body = Bytes::from_static(body);
        let entry = Entry {
            kind: EventKind::Request,
            time,
            content_type: &CT,
            body: &body,
        };
        q.push(&Correlation::with_id(id), &[entry])
    }

    fn push(q: &BatchQueue, id: &str) -> Result<(), Full> {
        push_at(q, id, b"{}", SystemTime::now())
    }

    /// The ids of `taken`'s events in time order.
    fn ids(taken: &[Batch]) -> Vec<String> {
        let mut order = TimeOrder::default();
        order.sort(taken);
        order
            .iter()
            .map(|(b, i)| taken[b].event(i).0.id())
            .collect()
    }

    #[test]
    fn events_and_bytes_are_bounded_until_released() {
        let q = BatchQueue::new(3, 1 << 20);
        for id in ["a", "b", "c"] {
            assert!(push(&q, id).is_ok());
        }
        assert!(push(&q, "d").is_err(), "three events at most");
        assert_eq!((q.len(), q.bytes()), (3, 6));
        let (mut taken, mut spare) = (Vec::new(), Vec::new());
        q.take(&mut taken, &mut spare);
        assert_eq!(ids(&taken), ["a", "b", "c"]);
        assert!(
            push(&q, "e").is_err(),
            "taken but not yet written: still counted"
        );
        q.release(&taken);
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert!(push(&q, "e").is_ok());

        let q = BatchQueue::new(100, 10);
        assert!(push_at(&q, "x", b"123456", SystemTime::now()).is_ok());
        assert!(
            push_at(&q, "y", b"12345", SystemTime::now()).is_err(),
            "11 bytes > 10"
        );
        assert!(push_at(&q, "z", b"1234", SystemTime::now()).is_ok());
        let (mut taken, mut spare) = (Vec::new(), Vec::new());
        q.take(&mut taken, &mut spare);
        let (_, line) = taken[0].event(1);
        assert_eq!(line.body, b"1234");
    }

    #[test]
    fn the_events_of_one_push_are_all_or_none() {
        let q = BatchQueue::new(3, 1 << 20);
        assert!(push(&q, "a").is_ok());
        let body = Bytes::from_static(b"{}");
        let e = |kind| Entry {
            kind,
            time: SystemTime::now(),
            content_type: &CT,
            body: &body,
        };
        let pair = [e(EventKind::Request), e(EventKind::Response)];
        assert!(q.push(&Correlation::with_id("p"), &pair).is_ok());
        assert!(q.push(&Correlation::with_id("p"), &pair).is_err());
        assert_eq!(q.len(), 3, "a refused pair leaves nothing behind");
    }

    #[test]
    fn events_of_several_threads_are_taken_in_time_order() {
        let q = Arc::new(BatchQueue::new(4096, 1 << 20));
        let start = SystemTime::now();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        // Interleaved times: thread t's i-th event at 4i + t µs.
                        let time = start + Duration::from_micros(4 * i + t);
                        push_at(&q, &format!("{}", 4 * i + t), b"{}", time).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (mut taken, mut spare) = (Vec::new(), Vec::new());
        q.take(&mut taken, &mut spare);
        let got = ids(&taken);
        let want: Vec<String> = (0..400).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
        assert!(q.is_empty());
    }

    #[test]
    fn events_of_the_same_time_keep_their_order() {
        let q = BatchQueue::new(64, 1 << 20);
        let (early, late) = (
            SystemTime::now(),
            SystemTime::now() + Duration::from_secs(1),
        );
        for (id, time) in [("b1", late), ("a1", early), ("b2", late), ("a2", early)] {
            push_at(&q, id, b"{}", time).unwrap();
        }
        let (mut taken, mut spare) = (Vec::new(), Vec::new());
        q.take(&mut taken, &mut spare);
        assert_eq!(ids(&taken), ["a1", "a2", "b1", "b2"]);
    }

    #[test]
    fn an_idle_taker_is_woken_and_close_ends_it_after_draining() {
        let q = Arc::new(BatchQueue::new(1024, 1 << 20));
        let taker = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let (mut taken, mut spare) = (Vec::new(), Vec::new());
                while q.wait() {
                    q.take(&mut taken, &mut spare);
                    got.extend(ids(&taken));
                    q.release(&taken);
                    spare.append(&mut taken);
                }
                got
            })
        };
        // Let the taker park, then push: it must wake (a lost wake-up would
        // leave the event unseen until close).
        for i in 0..50 {
            std::thread::sleep(Duration::from_millis(2));
            push(&q, &format!("e{i}")).unwrap();
            let t = Instant::now();
            while !q.is_empty() {
                assert!(t.elapsed() < Duration::from_secs(5), "event {i} not taken");
                std::thread::yield_now();
            }
        }
        push(&q, "last").unwrap();
        q.close();
        assert!(push(&q, "late").is_err(), "a closed queue refuses events");
        let got = taker.join().unwrap();
        assert_eq!(got.len(), 51);
        assert_eq!(got.last().map(String::as_str), Some("last"));
    }
}
