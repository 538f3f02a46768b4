//! Rate limits at the edge (GCRA, the generic cell rate algorithm): login attempts per login
//! identifier and money-moving requests per user or merchant. A refused request gets 429
//! `rate_limit_error` with `Retry-After`. With Redis the limit is one Lua script on Redis
//! (shared by every node, on Redis's clock); without Redis, or while Redis is unreachable, the
//! same algorithm runs in-process (per node).

use super::error::{ApiError, ErrorType};
pub use crate::config::Quota;
use actix_web::http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; beyond it, keys whose allowance is fully restored are forgotten.
const TRACKED_KEYS_MAX: usize = 100_000;

#[derive(Default)]
pub struct RateLimiter {
    /// Key → theoretical arrival time of the next request.
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Shared limits on Redis, when configured.
    redis: Option<fred::clients::Client>,
}

/// Keys on Redis are namespaced.
const REDIS_KEY_PREFIX: &str = "walleti:ratelimit:";

impl RateLimiter {
    /// Admits one request for `key` under `quota`, or says how long to wait.
    pub fn check(&self, key: &str, quota: Quota, now: Instant) -> Result<(), Duration> {
        let mut arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if arrivals.len() >= TRACKED_KEYS_MAX {
            arrivals.retain(|_, arrival| *arrival > now);
        }
        let arrival = arrivals.get(key).copied().unwrap_or(now).max(now);
        let earliest = arrival.checked_sub(quota.tolerance()).unwrap_or(now);
        if now < earliest {
            return Err(earliest - now);
        }
        arrivals.insert(key.to_owned(), arrival + quota.emission_interval());
        Ok(())
    }

    /// Limits shared through Redis (falling back to in-process ones while Redis is away).
    pub fn with_redis(client: fred::clients::Client) -> RateLimiter {
        RateLimiter {
            arrivals: Mutex::default(),
            redis: Some(client),
        }
    }

    /// Whether limits are currently shared through Redis (configured and connected). Until the
    /// client has connected, and while Redis is away, limits are per node.
    pub fn redis_connected(&self) -> bool {
        use fred::interfaces::ClientLike;
        self.redis
            .as_ref()
            .is_some_and(|client| client.is_connected())
    }

    /// Admits one request for `key` under `quota`, or answers the API's 429.
    pub async fn admit(&self, key: &str, quota: Quota) -> Result<(), ApiError> {
        use fred::interfaces::ClientLike;
        let decision = match &self.redis {
            Some(client) if client.is_connected() => {
                let shared = crate::bus::redis::gcra(
                    client,
                    &format!("{REDIS_KEY_PREFIX}{key}"),
                    quota.emission_interval(),
                    quota.tolerance(),
                )
                .await;
                match shared {
                    Ok(None) => Ok(()),
                    Ok(Some(wait)) => Err(wait),
                    Err(error) => {
                        tracing::warn!(%error, "redis rate limit unavailable; limiting in-process");
                        self.check(key, quota, Instant::now())
                    }
                }
            }
            _ => self.check(key, quota, Instant::now()),
        };
        decision.map_err(|wait| {
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::RateLimitError,
                "rate_limited",
                "Too many requests; retry after the time in the Retry-After header.",
            );
            error.retry_after_seconds = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let limiter = RateLimiter::default();
        let quota = Quota {
            requests: 10,
            period: Duration::from_secs(10),
            burst: 3,
        };
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("k", quota, start).is_ok());
        }
        let wait = limiter.check("k", quota, start).expect_err("burst spent");
        assert_eq!(wait, Duration::from_secs(1));
        assert!(
            limiter
                .check("k", quota, start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            limiter.check("other", quota, start).is_ok(),
            "keys are independent"
        );
    }
}
