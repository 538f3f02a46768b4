//! Rate limits at the edge (GCRA, the generic cell rate algorithm): login attempts per login
//! identifier (normalised, capped and hashed), per client address and in all, and
//! money-moving requests per user or merchant. A refused request gets 429
//! `rate_limit_error` with `Retry-After`. With Redis the limit is one Lua script on Redis
//! (shared by every node, on Redis's clock); without Redis, or while Redis is unreachable, the
//! same algorithm runs in-process (per node).

use super::error::{ApiError, ErrorType};
pub use crate::config::Quota;
use actix_web::http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; beyond it, keys whose allowance is fully restored are forgotten, and
/// then the least recently used ones (an eighth of them at a time).
const TRACKED_KEYS_MAX: usize = 100_000;

/// Characters of a login kept for its rate-limit key (an email has at most 320).
pub const LOGIN_KEY_LENGTH_MAX: usize = 320;

pub struct RateLimiter {
    /// Key → theoretical arrival time of the next request.
    arrivals: Mutex<HashMap<String, Instant>>,
    /// Keys tracked at most.
    keys_max: usize,
    /// Shared limits on Redis, when configured.
    redis: Option<fred::clients::Client>,
}

impl Default for RateLimiter {
    fn default() -> RateLimiter {
        RateLimiter {
            arrivals: Mutex::default(),
            keys_max: TRACKED_KEYS_MAX,
            redis: None,
        }
    }
}

/// The rate-limit key of a login identifier: normalised (an email lowercased, a phone in
/// E.164, anything else trimmed, cut to `LOGIN_KEY_LENGTH_MAX` characters and lowercased),
/// then hashed, so a key is short whatever a client sends and spelling a login differently
/// does not buy more attempts.
pub fn login_key(scope: &str, login: &str) -> String {
    use crate::domain::{Email, PhoneNumber};
    let normalised = if let Ok(phone) = PhoneNumber::parse(login) {
        phone.as_str().to_owned()
    } else if let Ok(email) = Email::parse(login) {
        email.as_str().to_owned()
    } else {
        login
            .trim()
            .chars()
            .take(LOGIN_KEY_LENGTH_MAX)
            .collect::<String>()
            .to_lowercase()
    };
    format!("{scope}:{}", super::auth::sha256_hex(normalised.as_bytes()))
}

/// The rate-limit key of a client address: an IPv4 address, or an IPv6 address's /64 (what
/// one subscriber usually holds).
pub fn address_key(scope: &str, address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => format!("{scope}:address:{v4}"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{scope}:address:{v4}"),
            None => {
                let segments = v6.segments();
                format!(
                    "{scope}:address:{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        },
    }
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
        if arrivals.len() >= self.keys_max && !arrivals.contains_key(key) {
            arrivals.retain(|_, arrival| *arrival > now);
            if arrivals.len() >= self.keys_max {
                forget_least_recent(&mut arrivals);
            }
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
            redis: Some(client),
            ..RateLimiter::default()
        }
    }

    /// One login attempt (`scope`: `login` or `merchant_login`): admitted under the quota of
    /// the login identifier, then of the client's address, then of everyone's attempts.
    pub async fn admit_login(
        &self,
        scope: &str,
        login: &str,
        client: Option<std::net::IpAddr>,
        limits: &crate::config::Limits,
    ) -> Result<(), ApiError> {
        self.admit(&login_key(scope, login), limits.login_quota)
            .await?;
        if let Some(address) = client {
            self.admit(&address_key(scope, address), limits.login_address_quota)
                .await?;
        }
        self.admit(&format!("{scope}:everyone"), limits.login_global_quota)
            .await
    }

    /// One sign-up (`scope`: `signup` or `merchant_signup`) from the client's address (an IPv6
    /// client by its /64), under `signup_address_quota`, before any password work.
    pub async fn admit_signup(
        &self,
        scope: &str,
        client: Option<std::net::IpAddr>,
        limits: &crate::config::Limits,
    ) -> Result<(), ApiError> {
        match client {
            Some(address) => {
                self.admit(&address_key(scope, address), limits.signup_address_quota)
                    .await
            }
            None => Ok(()),
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

/// Forgets the eighth of the keys with the earliest arrival times: the least recently used.
fn forget_least_recent(arrivals: &mut HashMap<String, Instant>) {
    let mut times: Vec<Instant> = arrivals.values().copied().collect();
    if times.is_empty() {
        return;
    }
    let forget = (times.len() / 8).max(1);
    let (_, cutoff, _) = times.select_nth_unstable(forget - 1);
    let cutoff = *cutoff;
    arrivals.retain(|_, arrival| *arrival > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracked_keys_stay_within_their_bound_even_when_all_are_limited() {
        let limiter = RateLimiter {
            keys_max: 64,
            ..RateLimiter::default()
        };
        let quota = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 1,
        };
        let start = Instant::now();
        for index in 0..1000_u64 {
            let now = start + Duration::from_millis(index);
            assert!(limiter.check(&format!("k{index}"), quota, now).is_ok());
            let tracked = limiter
                .arrivals
                .lock()
                .map(|arrivals| arrivals.len())
                .unwrap_or(0);
            assert!(tracked <= 64, "{tracked}");
        }
        let recent = start + Duration::from_millis(999);
        assert!(
            limiter.check("k999", quota, recent).is_err(),
            "the most recent key is still limited"
        );
    }

    #[test]
    fn a_login_key_is_short_hashed_and_the_same_however_the_login_is_spelled() {
        let key = login_key("login", "Ada@Example.com ");
        assert_eq!(key, login_key("login", "ada@example.com"));
        assert!(!key.contains("ada"), "no login in clear");
        assert_eq!(
            login_key("login", " +14155550100"),
            login_key("login", "+14155550100")
        );
        let huge = "x".repeat(1 << 16);
        assert_eq!(login_key("login", &huge).len(), "login:".len() + 64);
        assert_eq!(
            login_key("login", &huge),
            login_key("login", &format!("{huge}y")),
            "capped"
        );
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64() {
        let one: std::net::IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let other: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let elsewhere: std::net::IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key("login", one), address_key("login", other));
        assert_ne!(address_key("login", one), address_key("login", elsewhere));
        let mapped: std::net::IpAddr = "::ffff:203.0.113.7".parse().expect("ip");
        let v4: std::net::IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(address_key("login", mapped), address_key("login", v4));
    }

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
