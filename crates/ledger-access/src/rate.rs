//! Keyed rate limits: each key (a token now; a payment provider for webhook endpoints) has its
//! own budget, refilled at a steady rate up to a burst. The limiter is `governor`'s GCRA
//! (generic cell rate algorithm), which keeps one timestamp per key.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// A budget: `requests_per_second` sustained, up to `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// Why rate-limit settings cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error(
        "a rate limit of {requests_per_second} requests per second needs a burst of at least 1"
    )]
    NoBurst { requests_per_second: u32 },
}

impl RateLimit {
    /// The limit of the settings `requests_per_second` and `burst`; `requests_per_second` 0
    /// turns limiting off (`None`).
    pub fn from_settings(
        requests_per_second: u32,
        burst: u32,
    ) -> Result<Option<RateLimit>, RateLimitError> {
        let Some(requests_per_second) = NonZeroU32::new(requests_per_second) else {
            return Ok(None);
        };
        let burst = NonZeroU32::new(burst).ok_or(RateLimitError::NoBurst {
            requests_per_second: requests_per_second.get(),
        })?;
        Ok(Some(RateLimit {
            requests_per_second,
            burst,
        }))
    }
}

/// A request over its key's limit (HTTP 429): retry after `retry_after_seconds`, the wait
/// until the key has budget again rounded up to whole seconds (the unit of `Retry-After`,
/// RFC 9110 section 10.2.3), at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests for this token: retry after {retry_after_seconds} s")]
pub struct RateLimited {
    pub retry_after_seconds: u64,
}

/// Per-key budgets of one [`RateLimit`], shared by its clones. Memory grows with the keys
/// seen, so keys must come from a bounded set (configured tokens, known providers), never
/// from unauthenticated input.
#[derive(Clone)]
pub struct RateLimiter<K: Hash + Eq + Clone> {
    limiter: Option<Arc<DefaultKeyedRateLimiter<K>>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter giving each key `limit` (`None`: every request passes).
    pub fn new(limit: Option<RateLimit>) -> RateLimiter<K> {
        RateLimiter {
            limiter: limit.map(|limit| {
                let quota = Quota::per_second(limit.requests_per_second).allow_burst(limit.burst);
                Arc::new(DefaultKeyedRateLimiter::keyed(quota))
            }),
        }
    }

    /// Takes one request from `key`'s budget, or says how long to wait (taking nothing).
    pub fn check(&self, key: &K) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| RateLimited {
            retry_after_seconds: whole_seconds_up(
                not_until.wait_time_from(DefaultClock::default().now()),
            ),
        })
    }
}

/// `wait` in whole seconds, rounded up, at least 1.
fn whole_seconds_up(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests_per_second: u32, burst: u32) -> Option<RateLimit> {
        RateLimit::from_settings(requests_per_second, burst).unwrap()
    }

    #[test]
    fn settings_zero_turns_limiting_off_and_a_burst_is_required() {
        assert_eq!(RateLimit::from_settings(0, 0), Ok(None));
        assert_eq!(
            RateLimit::from_settings(5, 0),
            Err(RateLimitError::NoBurst {
                requests_per_second: 5
            })
        );
        let unlimited = RateLimiter::<u8>::new(None);
        for _ in 0..10_000 {
            assert_eq!(unlimited.check(&1), Ok(()));
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_not_affected() {
        let limiter = RateLimiter::new(limit(1, 3));
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a"), Ok(()));
        }
        assert_eq!(
            limiter.check(&"a"),
            Err(RateLimited {
                retry_after_seconds: 1
            })
        );
        assert_eq!(limiter.check(&"b"), Ok(()));
        // A clone shares the budgets (every HTTP worker holds one).
        assert!(limiter.clone().check(&"a").is_err());
    }

    #[test]
    fn budget_comes_back_at_the_sustained_rate() {
        let limiter = RateLimiter::new(limit(20, 1));
        assert_eq!(limiter.check(&"a"), Ok(()));
        assert!(limiter.check(&"a").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limiter.check(&"a"), Ok(()));
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(50)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(2_001)), 3);
    }
}
