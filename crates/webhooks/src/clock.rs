//! The time the delivery worker schedules by: when attempts are due, when
//! retries fall, when a rotated secret stops signing, how long an endpoint
//! has been failing. Tests inject a [`ManualClock`] to walk a 24-hour retry
//! schedule without waiting for it.
//!
//! The `webhook-timestamp` header is not taken from here: it is the wall
//! clock, which receivers compare with theirs.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use switchyard_domain::timefmt;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        timefmt::now_ms()
    }
}

/// The wall clock plus an offset that only grows: time still passes, and a
/// test can jump ahead. Never behind the wall clock, so anything the API
/// schedules "now" is due for the worker too.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves the clock to at least `at_ms` (never back).
    pub fn advance_to(&self, at_ms: i64) {
        let ahead = at_ms - self.now_ms();
        if ahead > 0 {
            self.offset_ms.fetch_add(ahead, Ordering::SeqCst);
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        timefmt::now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_jumps_ahead_and_never_back() {
        let clock = ManualClock::new();
        let start = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() >= start + 3_600_000);
        let later = clock.now_ms() + 5_000;
        clock.advance_to(later);
        assert!(clock.now_ms() >= later);
        clock.advance_to(start);
        assert!(clock.now_ms() >= later, "never back");
    }
}
