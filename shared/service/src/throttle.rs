//! Sign-in's bound: token buckets kept by the instance, per identity and
//! for the whole instance, so that a stranger replaying a valid ID token
//! (or many) costs at most a few database reads, never one per request.
//! Nothing is written: a cold instance starts with full buckets, which is
//! the bound's only slack (see docs/API.md, "Sign-ins are bounded", for the numbers).

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

/// One bucket: `capacity` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub capacity: f64,
    pub per_second: f64,
}

/// Sign-ins one identity may start: 5 at once, then one each 12 s (5 a
/// minute).
pub const PER_IDENTITY: Rate = Rate {
    capacity: 5.0,
    per_second: 1.0 / 12.0,
};
/// Sign-ins one instance starts, whoever asks: 20 at once, then 10 a second.
pub const PER_INSTANCE: Rate = Rate {
    capacity: 20.0,
    per_second: 10.0,
};
/// Identities an instance remembers; past it, full buckets are forgotten
/// (a forgotten identity starts full again: what it already was).
const IDENTITIES_KEPT: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
}

impl Bucket {
    fn full(rate: Rate, now: OffsetDateTime) -> Self {
        Self {
            tokens: rate.capacity,
            at: now,
        }
    }

    /// The bucket refilled to `now`. A clock that stepped back refills
    /// nothing for the step and counts on from `now` (never a bucket held
    /// empty until the clock catches up with an earlier reading).
    fn at(self, rate: Rate, now: OffsetDateTime) -> Self {
        let nanos = now
            .unix_timestamp_nanos()
            .saturating_sub(self.at.unix_timestamp_nanos());
        let elapsed = (nanos as f64 / 1e9).max(0.0);
        Self {
            tokens: (self.tokens + elapsed * rate.per_second).min(rate.capacity),
            at: now,
        }
    }

    /// Seconds until one token is there (0 when one is).
    fn wait(self, rate: Rate) -> u64 {
        if self.tokens >= 1.0 {
            return 0;
        }
        let seconds = ((1.0 - self.tokens) / rate.per_second).ceil();
        // A whole number of seconds, at least 1.
        time::Duration::checked_seconds_f64(seconds)
            .and_then(|d| u64::try_from(d.whole_seconds()).ok())
            .map_or(1, |s| s.max(1))
    }
}

/// The instance's sign-in buckets.
#[derive(Default)]
pub struct SignInThrottle {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    instance: Option<Bucket>,
    identities: HashMap<String, Bucket>,
}

impl SignInThrottle {
    /// Takes a token for `identity` (and one of the instance's) at `now`,
    /// or answers in how many seconds to try again (nothing taken).
    pub fn admit(&self, identity: &str, now: OffsetDateTime) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let instance = state
            .instance
            .unwrap_or_else(|| Bucket::full(PER_INSTANCE, now))
            .at(PER_INSTANCE, now);
        let own = state
            .identities
            .get(identity)
            .copied()
            .unwrap_or_else(|| Bucket::full(PER_IDENTITY, now))
            .at(PER_IDENTITY, now);
        let wait = own.wait(PER_IDENTITY).max(instance.wait(PER_INSTANCE));
        // Either way the buckets are kept as refilled to now (nothing taken
        // on a refusal).
        let (instance, own) = if wait > 0 {
            (instance, own)
        } else {
            (
                Bucket {
                    tokens: instance.tokens - 1.0,
                    ..instance
                },
                Bucket {
                    tokens: own.tokens - 1.0,
                    ..own
                },
            )
        };
        state.instance = Some(instance);
        if state.identities.len() >= IDENTITIES_KEPT {
            state
                .identities
                .retain(|_, b| b.at(PER_IDENTITY, now).tokens < PER_IDENTITY.capacity);
            if state.identities.len() >= IDENTITIES_KEPT {
                state.identities.clear();
            }
        }
        state.identities.insert(identity.to_string(), own);
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_signs_in_five_times_then_once_each_twelve_seconds() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let throttle = SignInThrottle::default();
        for _ in 0..5 {
            assert_eq!(throttle.admit("ann", t0), Ok(()));
        }
        assert_eq!(throttle.admit("ann", t0), Err(12));
        // Another identity is not held back by her.
        assert_eq!(throttle.admit("bob", t0), Ok(()));
        let later = t0 + time::Duration::seconds(12);
        assert_eq!(throttle.admit("ann", later), Ok(()));
        assert_eq!(throttle.admit("ann", later), Err(12));
    }

    #[test]
    fn a_clock_that_steps_back_holds_no_bucket_empty() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let throttle = SignInThrottle::default();
        for _ in 0..5 {
            assert_eq!(throttle.admit("ann", t0), Ok(()));
        }
        let back = t0 - time::Duration::hours(1);
        assert_eq!(throttle.admit("ann", back), Err(12));
        // Twelve seconds after the step, as Retry-After said.
        assert_eq!(
            throttle.admit("ann", back + time::Duration::seconds(12)),
            Ok(())
        );
        // A step forward, then back: the instance's bucket is not frozen.
        let throttle = SignInThrottle::default();
        assert_eq!(throttle.admit("x", t0 + time::Duration::days(1)), Ok(()));
        for i in 0..19 {
            assert_eq!(throttle.admit(&format!("p{i}"), t0), Ok(()), "{i}");
        }
        assert_eq!(throttle.admit("p19", t0), Err(1));
        assert_eq!(
            throttle.admit("p19", t0 + time::Duration::seconds(1)),
            Ok(())
        );
    }

    #[test]
    fn an_instance_starts_twenty_then_ten_a_second_whoever_asks() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let throttle = SignInThrottle::default();
        for i in 0..20 {
            assert_eq!(throttle.admit(&format!("p{i}"), t0), Ok(()), "{i}");
        }
        assert_eq!(throttle.admit("p20", t0), Err(1));
        let later = t0 + time::Duration::seconds(1);
        for i in 0..10 {
            assert_eq!(throttle.admit(&format!("q{i}"), later), Ok(()), "{i}");
        }
        assert_eq!(throttle.admit("q10", later), Err(1));
    }
}
