//! Time source, injectable so tests can move past an expiry to the second.

use std::sync::Mutex;
use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until told to move.
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Is `at` less than `limit` before `now`? Not when the clock stepped back
/// past `at` (`now` before it): an age measured across a step back cannot
/// be trusted, so what was fetched or tried then counts as old, and is
/// fetched or tried again (once: that new time is after the step).
pub fn within(now: OffsetDateTime, at: OffsetDateTime, limit: std::time::Duration) -> bool {
    let nanos = now
        .unix_timestamp_nanos()
        .saturating_sub(at.unix_timestamp_nanos());
    nanos >= 0 && u128::try_from(nanos).is_ok_and(|n| n < limit.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::within;
    use std::time::Duration;
    use time::macros::datetime;

    #[test]
    fn within_a_limit_only_forward_and_never_overflowing() {
        let t = datetime!(2026-12-05 12:00 UTC);
        let five = Duration::from_secs(5);
        assert!(within(t, t, five));
        assert!(within(t + time::Duration::milliseconds(4999), t, five));
        assert!(!within(t + time::Duration::seconds(5), t, five));
        // A clock stepped back: not within, however short the step.
        assert!(!within(t - time::Duration::nanoseconds(1), t, five));
        assert!(!within(t - time::Duration::hours(1), t, Duration::MAX));
        let (max, min) = (
            time::PrimitiveDateTime::MAX.assume_utc(),
            time::PrimitiveDateTime::MIN.assume_utc(),
        );
        assert!(within(max, min, Duration::MAX));
        assert!(!within(max, min, five));
        assert!(!within(min, max, Duration::MAX));
    }
}
