//! The retry schedule: after attempt *k* of a series fails, attempt *k+1*
//! follows after `RETRY_DELAYS[k-1]`, stretched or shrunk by up to ±20 %
//! at random (jitter, so that endpoints recovering from an outage are not
//! hit by every retry at once). Ten retries span 23.7 hours nominally
//! (between 19 and 28.5 with jitter); after the eleventh attempt fails the
//! delivery is DEAD.

use std::time::Duration;

const SECOND: u64 = 1;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// The nominal wait before each retry.
pub const RETRY_DELAYS: [Duration; 10] = [
    Duration::from_secs(5 * SECOND),
    Duration::from_secs(30 * SECOND),
    Duration::from_secs(2 * MINUTE),
    Duration::from_secs(10 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(HOUR),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(4 * HOUR),
    Duration::from_secs(8 * HOUR),
    Duration::from_secs(8 * HOUR),
];

/// Attempts in a series: the first and every retry.
pub const MAX_ATTEMPTS: i64 = RETRY_DELAYS.len() as i64 + 1;

/// How far jitter moves a delay either way.
pub const JITTER: f64 = 0.2;

/// The wait after the `failed`-th attempt of a series (1-based) failed;
/// `None` once the series is over. `unit` in [0, 1) picks the jitter.
pub fn retry_delay(failed: i64, unit: f64) -> Option<Duration> {
    let index = usize::try_from(failed.checked_sub(1)?).ok()?;
    let nominal = RETRY_DELAYS.get(index)?;
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    Some(nominal.mul_f64(factor))
}

/// When the attempt after a failed one is due, for an attempt numbered
/// `attempt` in a series ending at `max_attempts`, failed at `now_ms`.
/// `None`: it was the last.
pub fn next_attempt_at(attempt: i64, max_attempts: i64, now_ms: i64, unit: f64) -> Option<i64> {
    if attempt >= max_attempts {
        return None;
    }
    let series_start = max_attempts - MAX_ATTEMPTS + 1;
    let delay = retry_delay(attempt - series_start + 1, unit)?;
    Some(now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spans_about_a_day_then_stops() {
        let nominal: Duration = RETRY_DELAYS.iter().sum();
        assert_eq!(nominal.as_secs(), 85_355);
        let hours = nominal.as_secs_f64() / 3600.0;
        assert!((23.0..25.0).contains(&hours), "{hours} h");
        assert_eq!(MAX_ATTEMPTS, 11);
        // Exponential: each wait at least as long as the one before.
        assert!(RETRY_DELAYS.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(retry_delay(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(10, 0.5), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(retry_delay(11, 0.5), None);
        assert_eq!(retry_delay(0, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(retry_delay(1, 0.0), Some(Duration::from_secs(4)));
        let top = retry_delay(1, 0.999_999).unwrap();
        assert!(top < Duration::from_secs(6) && top > Duration::from_millis(5_999));
        for i in 0..100 {
            let unit = f64::from(i) / 100.0;
            let d = retry_delay(3, unit).unwrap().as_secs_f64();
            assert!((96.0..144.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn next_attempt_follows_the_series() {
        let now = 1_000_000;
        assert_eq!(next_attempt_at(1, 11, now, 0.5), Some(now + 5_000));
        assert_eq!(next_attempt_at(2, 11, now, 0.5), Some(now + 30_000));
        assert_eq!(next_attempt_at(10, 11, now, 0.5), Some(now + 8 * 3_600_000));
        assert_eq!(next_attempt_at(11, 11, now, 0.5), None);
        // A replay's series: attempts 12..=22, its first retry waits 5 s again.
        assert_eq!(next_attempt_at(12, 22, now, 0.5), Some(now + 5_000));
        assert_eq!(next_attempt_at(22, 22, now, 0.5), None);
    }
}
