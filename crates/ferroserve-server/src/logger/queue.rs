//! The bounded queue between the request path and the delivery side.
//!
//! HTTP sinks take events from a tokio channel (their sender tasks wait on
//! it). The file sink's writer thread takes them in batches from a
//! [`BatchQueue`]: mutex-guarded vectors it swaps for empty ones, so a push
//! costs an uncontended lock and a `Vec::push`, and the request path wakes
//! the writer only when it sleeps for want of events (one flag read
//! otherwise). A tokio channel costs a semaphore permit and a linked block
//! list per event, which the writer, taking everything at once, never needs.
//!
//! The vectors are sharded by thread ([`crate::shard`]): each thread pushes
//! to its own, and only the writer, once a batch, touches them all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;

use tokio::sync::mpsc;

use super::event::Event;
use crate::shard::{Sharded, SHARDS};

/// The queue had no room (or was closed): the event was dropped.
#[derive(Debug)]
pub(crate) struct Full;

/// Where [`super::Logger::log`] puts events.
pub(crate) enum Queue {
    /// Taken by an HTTP sink's sender tasks.
    Channel {
        /// The sending side.
        tx: mpsc::Sender<Event>,
        /// Its capacity.
        capacity: usize,
    },
    /// Taken in batches by the file writer thread.
    Batch(std::sync::Arc<BatchQueue>),
}

impl Queue {
    /// Queues `ev`; drops it when the queue is full (or closed).
    pub(crate) fn push(&self, ev: Event) -> Result<(), Full> {
        match self {
            Queue::Channel { tx, .. } => tx.try_send(ev).map_err(|_| Full),
            Queue::Batch(q) => q.push(ev),
        }
    }

    /// Events waiting now.
    pub(crate) fn len(&self) -> usize {
        match self {
            Queue::Channel { tx, capacity } => capacity.saturating_sub(tx.capacity()),
            Queue::Batch(q) => q.len(),
        }
    }
}

/// A bounded queue of events taken all at once by one thread (see the
/// module documentation). Events are taken in the order of their time.
pub(crate) struct BatchQueue {
    shards: Sharded<Vec<Event>>,
    /// Most events in one shard; a full shard spills into the others.
    per_shard: usize,
    /// Set by the taker before it parks for want of events.
    parked: AtomicBool,
    closed: AtomicBool,
    taker: OnceLock<Thread>,
}

impl BatchQueue {
    /// An empty queue holding at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        BatchQueue {
            shards: Sharded::new(Vec::new),
            per_shard: capacity.max(1).div_ceil(SHARDS),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            taker: OnceLock::new(),
        }
    }

    /// Queues `ev` in the calling thread's shard (another one when that is
    /// full), waking the taker if it sleeps; drops `ev` when every shard is
    /// full or the queue is closed.
    pub(crate) fn push(&self, ev: Event) -> Result<(), Full> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Full);
        }
        let mut ev = Some(ev);
        for shard in self.shards.mine_then_others() {
            let mut q = shard.lock();
            if q.len() < self.per_shard {
                q.extend(ev.take());
                break;
            }
        }
        if ev.is_some() {
            return Err(Full);
        }
        // SeqCst pairs with `wait`: either the taker sees this event when it
        // looks after raising the flag, or this load sees the flag.
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.taker.get() {
                t.unpark();
            }
        }
        Ok(())
    }

    /// Events waiting now.
    pub(crate) fn len(&self) -> usize {
        self.shards.all().map(|s| s.lock().len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards.all().all(|s| s.lock().is_empty())
    }

    /// Moves every queued event into `batch` (which should be empty), in
    /// the order of their time.
    pub(crate) fn take(&self, batch: &mut Vec<Event>) {
        let mut shards = 0;
        for s in self.shards.all() {
            let mut q = s.lock();
            if !q.is_empty() {
                shards += 1;
                if batch.is_empty() {
                    // Swap: the shard keeps the allocation `batch` had.
                    std::mem::swap(&mut *q, batch);
                } else {
                    batch.append(&mut q);
                }
            }
        }
        if shards > 1 {
            // Each shard is in order already: a stable sort merges runs.
            batch.sort_by_key(|ev| ev.time);
        }
    }

    /// Called by the one thread that takes events: parks it until the
    /// queue holds events (true) or is closed and empty (false).
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use axum::http::HeaderValue;
    use bytes::Bytes;

    use super::*;
    use crate::logger::{Correlation, EventKind};

    fn ev(id: &str) -> Event {
        Event {
            kind: EventKind::Request,
            corr: Correlation::with_id(id),
            time: SystemTime::now(),
            content_type: HeaderValue::from_static("application/json"),
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn bounded_and_taken_in_order() {
        let q = BatchQueue::new(2 * SHARDS);
        for i in 0..2 * SHARDS {
            assert!(q.push(ev(if i == 0 { "a" } else { "b" })).is_ok());
        }
        assert!(q.push(ev("c")).is_err(), "every shard is full");
        let mut batch = Vec::new();
        q.take(&mut batch);
        let ids: Vec<String> = batch.iter().map(|e| e.corr.id()).collect();
        assert_eq!(ids.len(), 2 * SHARDS);
        assert_eq!(ids[0], "a");
        assert!(ids[1..].iter().all(|id| id == "b"));
        assert!(q.push(ev("d")).is_ok(), "taking frees the room");
    }

    #[test]
    fn events_of_several_threads_are_taken_in_time_order() {
        let q = Arc::new(BatchQueue::new(4096));
        let start = SystemTime::now();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        let mut e = ev(&format!("{t}-{i}"));
                        // Interleaved times: thread t's i-th event at 4i + t µs.
                        e.time = start + Duration::from_micros(4 * i + t);
                        q.push(e).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut batch = Vec::new();
        q.take(&mut batch);
        assert_eq!(batch.len(), 400);
        assert!(batch.windows(2).all(|w| w[0].time <= w[1].time));
        assert!(q.is_empty());
    }

    #[test]
    fn an_idle_taker_is_woken_and_close_ends_it_after_draining() {
        let q = Arc::new(BatchQueue::new(1024));
        let taker = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut batch = Vec::new();
                while q.wait() {
                    q.take(&mut batch);
                    got.extend(batch.drain(..).map(|e| e.corr.id()));
                }
                got
            })
        };
        // Let the taker park, then push: it must wake (a lost wake-up would
        // leave the event unseen until close).
        for i in 0..50 {
            std::thread::sleep(Duration::from_millis(2));
            q.push(ev(&format!("e{i}"))).unwrap();
            let t = Instant::now();
            while !q.is_empty() {
                assert!(t.elapsed() < Duration::from_secs(5), "event {i} not taken");
                std::thread::yield_now();
            }
        }
        q.push(ev("last")).unwrap();
        q.close();
        assert!(q.push(ev("late")).is_err(), "a closed queue refuses events");
        let got = taker.join().unwrap();
        assert_eq!(got.len(), 51);
        assert_eq!(got.last().map(String::as_str), Some("last"));
    }
}
