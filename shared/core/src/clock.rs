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

/// How long after `earlier` it is at `now`: zero when the clock stepped
/// back (an age is never negative), the longest duration past ~584 years.
pub fn age(now: OffsetDateTime, earlier: OffsetDateTime) -> std::time::Duration {
    let nanos = now
        .unix_timestamp_nanos()
        .saturating_sub(earlier.unix_timestamp_nanos());
    if nanos <= 0 {
        return std::time::Duration::ZERO;
    }
    u64::try_from(nanos).map_or(std::time::Duration::MAX, std::time::Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::age;
    use std::time::Duration;
    use time::macros::datetime;

    #[test]
    fn an_age_is_never_negative_and_never_overflows() {
        let t = datetime!(2026-12-05 12:00 UTC);
        assert_eq!(
            age(t + time::Duration::seconds(5), t),
            Duration::from_secs(5)
        );
        assert_eq!(age(t, t), Duration::ZERO);
        assert_eq!(age(t - time::Duration::hours(1), t), Duration::ZERO);
        assert_eq!(
            age(
                time::PrimitiveDateTime::MAX.assume_utc(),
                time::PrimitiveDateTime::MIN.assume_utc()
            ),
            Duration::MAX
        );
    }
}
