//! The file sink: one CloudEvents JSON object per line, appended to a file
//! by a writer thread.
//!
//! The writer wakes at most once per [`FILE_FLUSH_INTERVAL`] while events
//! keep coming (sooner when they come fast enough to fill a quarter of the
//! queue), renders everything queued, in the order of the events' time, and
//! writes it with one system call: under load the request path never wakes
//! it (it copies its events into its own batch of the queue and reads one
//! flag), so logging costs the server little more than rendering the lines.

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::deliver::{backoff, Shared};
use super::event::{write_rfc3339, ContentTypeMemo};
use super::queue::{Batch, BatchQueue, TimeOrder};

/// Longest the writer lets events gather between writes under load.
pub(crate) const FILE_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// Starts the thread writing the events queued in the returned queue to
/// `file`, rendered with `shared`'s attributes. `capacity` (events) and
/// `max_bytes` (bodies) bound the queue; closing it makes the writer write
/// what is queued, then end.
pub(crate) fn start(
    file: File,
    shared: Arc<Shared>,
    capacity: usize,
    max_bytes: usize,
) -> std::io::Result<Arc<BatchQueue>> {
    let queue = Arc::new(BatchQueue::new(capacity, max_bytes));
    let writer = Writer {
        queue: Arc::clone(&queue),
        file,
        shared,
        capacity,
    };
    std::thread::Builder::new()
        .name("ferroserve-logger".into())
        .spawn(move || writer.run())?;
    Ok(queue)
}

/// The writer thread's state.
struct Writer {
    queue: Arc<BatchQueue>,
    file: File,
    shared: Arc<Shared>,
    capacity: usize,
}

impl Writer {
    /// Writes everything queued, in batches, until the queue is closed and
    /// empty.
    fn run(self) {
        let queue = &self.queue;
        let (mut taken, mut spare) = (Vec::<Batch>::new(), Vec::<Batch>::new());
        let (mut order, mut out) = (TimeOrder::default(), Vec::<u8>::new());
        let mut memo = ContentTypeMemo::default();
        // Wait long enough for a quarter of the queue to fill at the rate
        // events came last time, at most FILE_FLUSH_INTERVAL: few wake-ups,
        // and the queue stays far from full at any rate.
        let quarter = self.capacity.div_ceil(4) as u32;
        // Idle: sleep until an event arrives (the request path wakes us).
        while queue.wait() {
            let mut wait = FILE_FLUSH_INTERVAL;
            // Busy: let events gather, write them, until the queue is dry.
            loop {
                let began = Instant::now();
                std::thread::sleep(wait);
                queue.take(&mut taken, &mut spare);
                let n: usize = taken.iter().map(Batch::len).sum();
                if n == 0 {
                    break;
                }
                let per_event = began.elapsed() / (n as u32);
                wait = per_event.saturating_mul(quarter).min(FILE_FLUSH_INTERVAL);
                self.render(&taken, &mut order, &mut memo, &mut out);
                self.write_with_retries(&out, n as u64);
                queue.release(&taken);
                // Keep the batches for the shards' next turn, but give back
                // memory a burst of large bodies took.
                // (Emptied here rather than under a shard's lock.)
                for mut batch in taken.drain(..) {
                    if batch.capacity_bytes() <= 4 << 20 {
                        batch.clear();
                        spare.push(batch);
                    }
                }
            }
            if out.capacity() > 4 << 20 {
                out = Vec::new();
            }
        }
    }

    /// Renders the events of `taken` into `out`, in the order of their time.
    fn render(
        &self,
        taken: &[Batch],
        order: &mut TimeOrder,
        memo: &mut ContentTypeMemo,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let mut recorded = Vec::with_capacity(32);
        recorded.push(b'"');
        write_rfc3339(&mut recorded, SystemTime::now());
        recorded.push(b'"');
        order.sort(taken);
        for (b, i) in order.iter() {
            let (corr, line) = taken[b].event(i);
            self.shared
                .attrs
                .write_json_line(corr, &line, &recorded, memo, out);
        }
    }

    /// Writes `lines` (`n` events) with one call, retrying with backoff;
    /// counts every event as sent or failed.
    fn write_with_retries(&self, lines: &[u8], n: u64) {
        let shared = &self.shared;
        let mut attempt = 0u32;
        loop {
            match (&self.file).write_all(lines) {
                Ok(()) => {
                    shared.stats.sent.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt >= shared.max_retries => {
                    let total = shared.stats.failed.fetch_add(n, Ordering::Relaxed) + n;
                    shared.warn(|| {
                        tracing::warn!(error = %e, failed_total = total, "request logger: events not written")
                    });
                    return;
                }
                Err(_) => {
                    shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff(shared.retry_backoff, attempt));
                    attempt += 1;
                }
            }
        }
    }
}
