//! Guards of the anonymous routes (login, registration, refresh), checked
//! before any argon2 work: a rate limit per client IP on all three, and on
//! login a lockout per account with exponential backoff.
//!
//! - **Per IP** (GCRA, `[auth_limits] per_ip_per_min` / `per_ip_burst`):
//!   429 `rate_limited` with `Retry-After`. The IP is the TCP peer's; behind
//!   a reverse proxy every client is the proxy, so put the limit there too.
//! - **Per account**: after `lockout_after` failed logins in a row for one
//!   address (known or not: an unknown address locks the same way, so the
//!   lockout tells nothing about which exist), every further attempt is
//!   refused for `lockout_base_secs * 2^(failures - lockout_after)` (at most
//!   `lockout_max_secs`) with 429 `too_many_attempts` and `Retry-After`,
//!   *before* the password is checked, the right one included. A success
//!   clears the count. Someone can lock another's account this way (the
//!   price of lockout anywhere); the backoff keeps that short while the
//!   guessing stays slow.
//!
//! State is in process: each control-plane replica counts alone (the
//! account lockout is then at most `replicas` times weaker). Memory is
//! bounded: at most [`MAX_TRACKED`] addresses are tracked; entries that can
//! no longer lock go first, and when that is not enough the oldest half go.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use serde_json::json;

use delta_http::ApiError;

use crate::config::AuthLimitsConfig;

/// Most addresses whose failed logins are remembered.
pub const MAX_TRACKED: usize = 100_000;

/// The client's IP (the TCP peer), when the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// The guards' state.
pub struct AuthGuard {
    config: AuthLimitsConfig,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl std::fmt::Debug for AuthGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn limited(code: &'static str, message: &str, wait: Duration) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message.to_owned());
    e.retry_after = Some(wait.max(Duration::from_secs(1)));
    e
}

impl AuthGuard {
    /// Guards for `config` (a rate of 0 turns the per-IP limit off, a
    /// `lockout_after` of 0 the lockout).
    pub fn new(config: &AuthLimitsConfig) -> Self {
        let per_ip = NonZeroU32::new(config.per_ip_per_min).map(|rate| {
            let burst = NonZeroU32::new(config.per_ip_burst.max(1)).unwrap_or(NonZeroU32::MIN);
            governor::RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            config: config.clone(),
            per_ip,
            failures: Mutex::default(),
        }
    }

    /// 429 `rate_limited` when `ip` is over its limit (spends one request).
    pub fn check_ip(&self, ip: ClientIp) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.per_ip, ip.0) else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
        }
        match limiter.check_key(&ip) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                let mut e = limited(
                    "rate_limited",
                    "too many requests from this address; retry later",
                    wait,
                );
                e.details = Some(json!({ "limit": "ip" }));
                Err(e)
            }
        }
    }

    /// 429 `too_many_attempts` while `account` (a normalised email) is
    /// locked out.
    pub fn check_account(&self, account: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let failures = self.lock();
        match failures.get(account).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(limited(
                "too_many_attempts",
                "too many failed logins for this account; retry later",
                until - now,
            )),
            _ => Ok(()),
        }
    }

    /// Count a failed login of `account`; locks it once over the threshold.
    pub fn failed(&self, account: &str) {
        if self.config.lockout_after == 0 {
            return;
        }
        let now = Instant::now();
        let max = Duration::from_secs(self.config.lockout_max_secs);
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(account) {
            // Entries that cannot lock any more go first; if that is not
            // enough, the older half.
            failures.retain(|_, f| now.duration_since(f.last) < max);
            if failures.len() >= MAX_TRACKED {
                let mut lasts: Vec<Instant> = failures.values().map(|f| f.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                failures.retain(|_, f| f.last > cut);
            }
        }
        let entry = failures.entry(account.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        // A quiet spell longer than the longest lockout starts over.
        if now.duration_since(entry.last) > max {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if entry.count >= self.config.lockout_after {
            let doublings = (entry.count - self.config.lockout_after).min(30);
            let secs = self
                .config
                .lockout_base_secs
                .saturating_mul(1u64 << doublings)
                .min(self.config.lockout_max_secs);
            entry.locked_until = Some(now + Duration::from_secs(secs));
        }
    }

    /// A successful login: the count starts over.
    pub fn succeeded(&self, account: &str) {
        self.lock().remove(account);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(after: u32) -> AuthLimitsConfig {
        AuthLimitsConfig {
            per_ip_per_min: 2,
            per_ip_burst: 2,
            lockout_after: after,
            lockout_base_secs: 10,
            lockout_max_secs: 60,
        }
    }

    #[test]
    fn an_address_over_its_rate_waits() {
        let guard = AuthGuard::new(&config(3));
        let ip = ClientIp(Some(IpAddr::from([10, 0, 0, 1])));
        assert!(guard.check_ip(ip).is_ok());
        assert!(guard.check_ip(ip).is_ok());
        let e = guard.check_ip(ip).expect_err("third in a burst of 2");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        assert!(e.retry_after.is_some_and(|d| d >= Duration::from_secs(1)));
        // Another address, and an unknown one, are not affected.
        assert!(
            guard
                .check_ip(ClientIp(Some(IpAddr::from([10, 0, 0, 2]))))
                .is_ok()
        );
        assert!(guard.check_ip(ClientIp(None)).is_ok());
    }

    #[test]
    fn lockouts_double_up_to_the_cap_and_a_success_clears_them() {
        let guard = AuthGuard::new(&config(3));
        for _ in 0..2 {
            guard.failed("a@x.io");
            assert!(guard.check_account("a@x.io").is_ok());
        }
        let wait = |g: &AuthGuard| {
            g.check_account("a@x.io")
                .expect_err("locked")
                .retry_after
                .unwrap_or_default()
        };
        guard.failed("a@x.io");
        assert!(wait(&guard) <= Duration::from_secs(10) && wait(&guard) > Duration::from_secs(8));
        guard.failed("a@x.io");
        assert!(wait(&guard) > Duration::from_secs(18));
        for _ in 0..10 {
            guard.failed("a@x.io");
        }
        assert!(wait(&guard) <= Duration::from_secs(60));
        assert!(guard.check_account("b@x.io").is_ok());
        guard.succeeded("a@x.io");
        assert!(guard.check_account("a@x.io").is_ok());
        // Off.
        let off = AuthGuard::new(&config(0));
        for _ in 0..10 {
            off.failed("a@x.io");
        }
        assert!(off.check_account("a@x.io").is_ok());
    }
}
