//! A small token bucket: one per API key (or JWT subject) that has a
//! `rate_limit` in the auth config. No bucket exists, and nothing is counted,
//! for principals without one.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

/// `rate_limit: {requests_per_second, burst}` in the auth config.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second (the sustained rate).
    pub requests_per_second: f64,
    /// Bucket size: most requests accepted at once after a quiet period
    /// (default: one second's worth, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimit {
    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err("rate_limit.requests_per_second must be > 0".into());
        }
        if self.burst == Some(0) {
            return Err("rate_limit.burst must be >= 1".into());
        }
        Ok(())
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn new(limit: RateLimit) -> Self {
        let burst = limit
            .burst
            .map(f64::from)
            .unwrap_or(limit.requests_per_second.ceil())
            .max(1.0);
        TokenBucket {
            rate: limit.requests_per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Result<(), Duration> {
        let mut st = self.state.lock();
        let elapsed = now.saturating_duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + elapsed * self.rate).min(self.burst);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - st.0) / self.rate))
        }
    }

    /// Whether the bucket is full (an idle entry that may be dropped).
    pub fn is_full(&self) -> bool {
        let st = self.state.lock();
        st.0 + st.1.elapsed().as_secs_f64() * self.rate >= self.burst
    }
}

/// Whole seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let b = TokenBucket::new(RateLimit {
            requests_per_second: 2.0,
            burst: Some(3),
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.try_acquire_at(t0).is_ok());
        }
        let wait = b.try_acquire_at(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6);
        assert_eq!(retry_after_secs(wait), 1);
        assert!(b.try_acquire_at(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.try_acquire_at(t0 + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(b.try_acquire_at(later).is_ok());
        }
        assert!(b.try_acquire_at(later).is_err());
    }

    #[test]
    fn validation() {
        assert!(RateLimit {
            requests_per_second: 0.0,
            burst: None
        }
        .validate()
        .is_err());
        assert!(RateLimit {
            requests_per_second: 1.0,
            burst: Some(0)
        }
        .validate()
        .is_err());
        assert!(RateLimit {
            requests_per_second: 0.5,
            burst: None
        }
        .validate()
        .is_ok());
        assert_eq!(
            TokenBucket::new(RateLimit {
                requests_per_second: 0.5,
                burst: None
            })
            .burst,
            1.0
        );
    }
}
