//! Rate limits on top of `governor` (GCRA): one for a whole sender (a Telegram bot's ~30
//! messages a second) and one per recipient or client (a Telegram chat's ~1 a second, a
//! patient's or an IP's inbound messages).

use std::{hash::Hash, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock,
    clock::DefaultClock,
};

/// `per_second` events a second with bursts of `burst`; zero means 1.
pub fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// `count` events per `period` (e.g. 20 a minute), bursts of up to `count`.
pub fn quota_per(count: u32, period: Duration) -> Quota {
    let count = NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN);
    let each = period / count.get();
    Quota::with_period(each.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(count)
}

/// A limiter for one sender as a whole. Cheap to clone.
#[derive(Clone)]
pub struct Limiter(Arc<DefaultDirectRateLimiter>);

impl Limiter {
    pub fn new(quota: Quota) -> Limiter {
        Limiter(Arc::new(RateLimiter::direct(quota)))
    }

    /// Waits until one more event is allowed.
    pub async fn ready(&self) {
        self.0.until_ready().await;
    }
}

/// A limiter per key (chat, patient, IP). Cheap to clone.
pub struct KeyedLimiter<K: Hash + Eq + Clone>(Arc<DefaultKeyedRateLimiter<K>>);

impl<K: Hash + Eq + Clone> Clone for KeyedLimiter<K> {
    fn clone(&self) -> Self {
        KeyedLimiter(Arc::clone(&self.0))
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota: Quota) -> KeyedLimiter<K> {
        KeyedLimiter(Arc::new(RateLimiter::keyed(quota)))
    }

    /// Waits until one more event for `key` is allowed.
    pub async fn ready(&self, key: &K) {
        self.0.until_key_ready(key).await;
    }

    /// Takes one event for `key` if allowed now; otherwise how long until it would be.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.0
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys that are back to full capacity (call now and then to bound memory).
    pub fn shrink(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}
