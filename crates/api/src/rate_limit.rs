//! Token-bucket rate limits (governor): per caller on every request, and
//! per organization on call creation; failed logins are limited apart
//! (`login_limit`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::login_limit::{LoginLimitConfig, LoginLimiter};

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    pub per_second: u32,
    pub burst: u32,
}

/// One keyed bucket family with its quota (kept for the headers).
pub struct Bucket {
    limiter: Keyed,
    config: RateLimitConfig,
}

/// What a check found, for `X-RateLimit-*` and `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until a request would pass (when refused).
    pub retry_after_secs: u64,
}

impl Bucket {
    pub fn new(config: RateLimitConfig) -> Self {
        let per_second = NonZeroU32::new(config.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            config,
        }
    }

    pub fn check(&self, key: &str) -> Decision {
        let limit = self.config.burst.max(1);
        let per_token = 1.0 / self.config.per_second.max(1) as f64;
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset_secs: ((limit - remaining.min(limit)) as f64 * per_token).ceil() as u64,
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_secs: (limit as f64 * per_token).ceil() as u64,
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }

    /// Drops buckets that are full again (bounded memory).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// All the limits of the API.
pub struct Limits {
    pub requests: Bucket,
    pub call_creation: Bucket,
    /// Failed logins per account and address (`POST /auth/login`).
    pub login: LoginLimiter,
}

impl Limits {
    pub fn new(requests: RateLimitConfig, call_creation: RateLimitConfig) -> Self {
        Self::with_login(requests, call_creation, LoginLimitConfig::default())
    }

    pub fn with_login(
        requests: RateLimitConfig,
        call_creation: RateLimitConfig,
        login: LoginLimitConfig,
    ) -> Self {
        Self {
            requests: Bucket::new(requests),
            call_creation: Bucket::new(call_creation),
            login: LoginLimiter::new(login),
        }
    }

    pub fn shrink(&self) {
        self.requests.shrink();
        self.call_creation.shrink();
        self.login.shrink();
    }
}
