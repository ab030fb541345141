//! The bounded queue between the request path and the delivery side.
//!
//! HTTP sinks take events from a tokio channel (their sender tasks wait on
//! it). The file sink's writer thread takes them in batches from a
//! [`BatchQueue`]: a mutex-guarded vector it swaps for an empty one, so a
//! push costs an uncontended lock and a `Vec::push`, and the request path
//! wakes the writer only when it sleeps for want of events (one flag read
//! otherwise). A tokio channel costs a semaphore permit and a linked block
//! list per event, which the writer, taking everything at once, never needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::event::Event;

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
            Queue::Batch(q) => q.events.lock().len(),
        }
    }
}

/// A bounded queue of events taken all at once by one thread (see the
/// module documentation).
pub(crate) struct BatchQueue {
    events: Mutex<Vec<Event>>,
    capacity: usize,
    /// Set by the taker before it parks for want of events.
    parked: AtomicBool,
    closed: AtomicBool,
    taker: OnceLock<Thread>,
}

impl BatchQueue {
    /// An empty queue holding at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        BatchQueue {
            events: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            taker: OnceLock::new(),
        }
    }

    /// Queues `ev`, waking the taker if it sleeps; drops `ev` when the
    /// queue is full or closed.
    pub(crate) fn push(&self, ev: Event) -> Result<(), Full> {
        {
            let mut q = self.events.lock();
            if q.len() >= self.capacity || self.closed.load(Ordering::Relaxed) {
                return Err(Full);
            }
            q.push(ev);
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

    /// Moves every queued event into `batch` (which should be empty; its
    /// allocation becomes the queue's).
    pub(crate) fn take(&self, batch: &mut Vec<Event>) {
        std::mem::swap(&mut *self.events.lock(), batch);
    }

    /// Called by the one thread that takes events: parks it until the
    /// queue holds events (true) or is closed and empty (false).
    pub(crate) fn wait(&self) -> bool {
        let _ = self.taker.set(std::thread::current());
        loop {
            if !self.events.lock().is_empty() {
                return true;
            }
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            self.parked.store(true, Ordering::SeqCst);
            if self.events.lock().is_empty() && !self.closed.load(Ordering::SeqCst) {
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
        let q = BatchQueue::new(2);
        assert!(q.push(ev("a")).is_ok());
        assert!(q.push(ev("b")).is_ok());
        assert!(q.push(ev("c")).is_err());
        let mut batch = Vec::new();
        q.take(&mut batch);
        let ids: Vec<String> = batch.iter().map(|e| e.corr.id()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(q.push(ev("d")).is_ok(), "taking frees the room");
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
            while !q.events.lock().is_empty() {
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
