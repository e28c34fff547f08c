//! SQLite's one writer, queued in this process.
//!
//! SQLite lets one connection write at a time. Every write of ours takes
//! [`SqliteWriter`] first, in FIFO order, instead of racing on SQLite's
//! busy handler (whose sleeps make long latency tails). Because every write
//! queues here, this is also where a stall shows: each turn records how
//! long it queued and how long it held the lock
//! (`switchyard_sqlite_writer_wait_seconds`,
//! `switchyard_sqlite_writer_hold_seconds`), and a turn held longer than
//! [`SLOW_HOLD`] is logged with the code that took it.

use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};

/// A turn held this long delays every write behind it noticeably.
pub(crate) const SLOW_HOLD: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(crate) struct SqliteWriter {
    lock: Mutex<()>,
}

/// One turn at writing; ends (and is measured) when dropped.
pub(crate) struct WriterTurn<'a> {
    _guard: MutexGuard<'a, ()>,
    since: Instant,
    site: &'static str,
}

impl SqliteWriter {
    /// Waits for this process's turn to write; `site` names the caller in logs.
    pub(crate) async fn turn(&self, site: &'static str) -> WriterTurn<'_> {
        let queued = Instant::now();
        let guard = self.lock.lock().await;
        let since = Instant::now();
        metrics::histogram!("switchyard_sqlite_writer_wait_seconds")
            .record(since.duration_since(queued).as_secs_f64());
        WriterTurn {
            _guard: guard,
            since,
            site,
        }
    }
}

impl Drop for WriterTurn<'_> {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        metrics::histogram!("switchyard_sqlite_writer_hold_seconds").record(held.as_secs_f64());
        if held >= SLOW_HOLD {
            tracing::warn!(
                site = self.site,
                held_ms = held.as_millis() as u64,
                "a SQLite write held the writer lock for long; every write behind it waited"
            );
        }
    }
}
