//! Request rate limits (issue 7): GCRA per credential and per tenant.
//!
//! Two limits apply to every authenticated request (checked by the
//! [`crate::auth::Principal`] extractor right after authentication): one per
//! API key (a session counts as its user), one per tenant, each a sustained
//! rate with a burst (`[rate_limit]` in the configuration; a rate of 0 turns
//! that limit off). A refused request answers 429 `rate_limited` with
//! `Retry-After` (whole seconds, at least 1) and `details.limit` naming the
//! limit (`key` or `tenant`). Node calls (node credentials) and anonymous routes
//! (login, registration) are not subject to these limits.
//!
//! # Where the state lives
//! - By default in process (`governor`'s keyed limiters): each replica
//!   counts alone.
//! - With `redis_url`, in Redis, so that several replicas share one budget:
//!   one Lua script ([`GCRA_SCRIPT`]) checks both limits and spends a
//!   request on each atomically (all or nothing), with Redis's clock (the
//!   replicas' clocks may disagree), and keys expire once their bucket is
//!   full again. The script needs Redis 5 or later (effects replication,
//!   for `TIME` before writes); both keys of a request must live on one
//!   server (no Redis Cluster).
//!
//! # When Redis is unreachable: fail open
//! A Redis outage must not become an outage of the control plane, whose
//! callers include the nodes' reporters and people trying to fix things:
//! failing closed would refuse every authenticated request while Redis is
//! down. The limits protect capacity, not money or secrets (budgets are
//! enforced by the database), so failing open is the lesser harm. It is not
//! wide open either: while Redis is down each replica falls back to its
//! in-process limiter, so the total is at most the number of replicas times
//! the configured rate. Each failed Redis call is logged (a warning when
//! Redis goes away, not one per request) and counted in
//! `delta_control_rate_limit_errors_total`; after a failure Redis is not
//! asked again for [`REDIS_RETRY`], so an outage costs one bounded timeout a
//! second rather than one per request.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::json;

use delta_http::ApiError;

use crate::auth::Principal;
use crate::config::RateLimitConfig;
use crate::db::now_ms;

/// The Lua script of the shared limiter. `KEYS[i]` is a limit's bucket,
/// `ARGV[2i-1]` its emission interval (microseconds per request) and
/// `ARGV[2i]` its burst. The stored value is the bucket's theoretical
/// arrival time (TAT, microseconds of Redis's clock). Answers `{0, 0}`
/// after spending one request on every limit, or `{i, wait_us}` for the
/// first limit `i` that refuses, spending nothing.
pub const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - burst * interval - now
  if wait > 0 then
    return {i, wait}
  end
  tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  -- Once the TAT is in the past the bucket is full: the key may go.
  local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', ttl_ms)
end
return {0, 0}
";

/// Prefix of the shared limiter's keys in Redis.
pub const REDIS_PREFIX: &str = "delta:ratelimit:";

/// After a failed Redis call, how long the in-process limiter decides alone
/// before Redis is tried again.
pub const REDIS_RETRY: Duration = Duration::from_secs(1);

/// The longest a rate-limit decision waits for Redis before failing open.
const REDIS_DEADLINE: Duration = Duration::from_millis(500);

/// How often (in checks) idle in-process buckets are dropped.
const RETAIN_EVERY: u64 = 4096;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Per API key (or session user).
    Key,
    /// Per tenant.
    Tenant,
}

impl Limit {
    /// The label in answers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Tenant => "tenant",
        }
    }
}

/// A refused request: which limit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused.
    pub limit: Limit,
    /// How long until a request would be allowed.
    pub retry_after: Duration,
}

/// Why the limiter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// `redis_url` does not parse (the URL itself is not repeated: it may
    /// hold a password).
    #[error("redis_url is not a valid Redis URL: {0}")]
    RedisUrl(String),
    /// The ConnectionManager could not be set up.
    #[error("setting up the Redis connection: {0}")]
    Redis(String),
    /// A metric could not be registered.
    #[error("registering rate-limit metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// One limit's parameters (enabled: rate > 0).
#[derive(Debug, Clone, Copy)]
struct Rule {
    limit: Limit,
    per_sec: NonZeroU32,
    burst: NonZeroU32,
}

impl Rule {
    fn new(limit: Limit, per_sec: u32, burst: u32) -> Option<Self> {
        Some(Self {
            limit,
            per_sec: NonZeroU32::new(per_sec)?,
            // A burst of 0 would refuse everything: at least one request.
            burst: NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN),
        })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_sec).allow_burst(self.burst)
    }

    /// Microseconds between two requests at the sustained rate.
    fn interval_us(self) -> u64 {
        1_000_000u64.div_ceil(u64::from(self.per_sec.get()))
    }
}

struct Local {
    rule: Rule,
    limiter: DefaultKeyedRateLimiter<String>,
}

struct Shared {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    /// Until when (ms) Redis is not asked (after a failure).
    down_until_ms: AtomicI64,
}

/// The limiter: in-process, or shared through Redis with the in-process
/// one as fallback.
pub struct RateLimiter {
    local: Vec<Local>,
    shared: Option<Shared>,
    limited: IntCounterVec,
    errors: IntCounter,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field(
                "limits",
                &self.local.iter().map(|l| l.rule).collect::<Vec<_>>(),
            )
            .field("redis", &self.shared.is_some())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter for `config`, sharing its state through `redis_url` if
    /// given, with its metrics registered in `registry`. Redis is connected
    /// lazily: an unreachable Redis at start is the same as one that goes
    /// away later (fail open, see the module's documentation).
    pub fn new(
        config: &RateLimitConfig,
        redis_url: Option<&str>,
        registry: &Registry,
    ) -> Result<Self, RateLimitError> {
        let limited = IntCounterVec::new(
            Opts::new(
                "delta_control_rate_limited_total",
                "Requests refused with 429 by a rate limit, by limit (key, tenant).",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(limited.clone()))?;
        let errors = IntCounter::new(
            "delta_control_rate_limit_errors_total",
            "Rate-limit decisions Redis could not make (decided in process instead).",
        )?;
        registry.register(Box::new(errors.clone()))?;
        let local = [
            Rule::new(Limit::Key, config.per_key_per_sec, config.per_key_burst),
            Rule::new(
                Limit::Tenant,
                config.per_tenant_per_sec,
                config.per_tenant_burst,
            ),
        ]
        .into_iter()
        .flatten()
        .map(|rule| Local {
            rule,
            limiter: DefaultKeyedRateLimiter::keyed(rule.quota()),
        })
        .collect();
        let shared = match redis_url {
            None => None,
            Some(url) => {
                let client = redis::Client::open(url)
                    .map_err(|e| RateLimitError::RedisUrl(format!("{:?}", e.kind())))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_DEADLINE))
                    .set_response_timeout(Some(REDIS_DEADLINE))
                    .set_number_of_retries(1)
                    .set_max_delay(REDIS_RETRY);
                let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| RateLimitError::Redis(e.to_string()))?;
                Some(Shared {
                    conn,
                    script: redis::Script::new(GCRA_SCRIPT),
                    down_until_ms: AtomicI64::new(0),
                })
            }
        };
        Ok(Self {
            local,
            shared,
            limited,
            errors,
            checks: AtomicU64::new(0),
        })
    }

    /// Check (and spend) one request of `principal`: 429 `rate_limited`
    /// when a limit refuses.
    pub async fn check(&self, principal: &Principal) -> Result<(), ApiError> {
        let key = match &principal.api_key_id {
            Some(id) => format!("key:{id}"),
            None => format!("user:{}", principal.user_id),
        };
        match self.check_ids(&key, &principal.tenant_id).await {
            None => Ok(()),
            Some(refusal) => Err(self.refuse(refusal)),
        }
    }

    /// Check (and spend) one request of the credential `key` in `tenant`;
    /// the refusal, if any.
    pub async fn check_ids(&self, key: &str, tenant: &str) -> Option<Refusal> {
        if self.local.is_empty() {
            return None;
        }
        let ids = |limit: Limit| match limit {
            Limit::Key => key,
            Limit::Tenant => tenant,
        };
        if let Some(shared) = &self.shared {
            match self.check_shared(shared, &ids).await {
                Ok(decision) => return decision,
                Err(e) => self.redis_failed(shared, &e),
            }
        }
        self.check_local(&ids)
    }

    fn check_local<'a>(&self, ids: &impl Fn(Limit) -> &'a str) -> Option<Refusal> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            // Buckets that are full again hold nothing worth keeping.
            for l in &self.local {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
        // The key's limit first: a caller over its own limit does not use
        // up its tenant's. (A request refused by the tenant's limit has
        // spent one of the key's: in process the two checks are not one
        // atomic step; Redis's script is.)
        for l in &self.local {
            if let Err(not_until) = l.limiter.check_key(&ids(l.rule.limit).to_owned()) {
                let wait = not_until.wait_time_from(l.limiter.clock().now());
                return Some(Refusal {
                    limit: l.rule.limit,
                    retry_after: wait,
                });
            }
        }
        None
    }

    async fn check_shared<'a>(
        &self,
        shared: &Shared,
        ids: &impl Fn(Limit) -> &'a str,
    ) -> Result<Option<Refusal>, String> {
        if shared.down_until_ms.load(Ordering::Relaxed) > now_ms() {
            return Err(String::new());
        }
        let mut invocation = shared.script.prepare_invoke();
        for l in &self.local {
            let bucket = match l.rule.limit {
                Limit::Key => format!("{REDIS_PREFIX}{}", ids(Limit::Key)),
                Limit::Tenant => format!("{REDIS_PREFIX}tenant:{}", ids(Limit::Tenant)),
            };
            invocation
                .key(bucket)
                .arg(l.rule.interval_us())
                .arg(l.rule.burst.get());
        }
        let mut conn = shared.conn.clone();
        let answer: (i64, i64) =
            tokio::time::timeout(REDIS_DEADLINE, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| format!("no answer within {REDIS_DEADLINE:?}"))?
                .map_err(|e| e.to_string())?;
        if shared.down_until_ms.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("rate limits: Redis answers again; limits are shared again");
        }
        let (index, wait_us) = answer;
        if index == 0 {
            return Ok(None);
        }
        let rule = usize::try_from(index - 1)
            .ok()
            .and_then(|i| self.local.get(i))
            .ok_or_else(|| format!("the script answered an unknown limit {index}"))?;
        Ok(Some(Refusal {
            limit: rule.rule.limit,
            retry_after: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
        }))
    }

    fn redis_failed(&self, shared: &Shared, error: &str) {
        if error.is_empty() {
            // Skipped: Redis failed recently; counted when it did.
            return;
        }
        self.errors.inc();
        let until = now_ms() + i64::try_from(REDIS_RETRY.as_millis()).unwrap_or(1000);
        if shared.down_until_ms.swap(until, Ordering::Relaxed) == 0 {
            tracing::warn!(
                error = %error,
                "rate limits: Redis is unreachable; failing open to this replica's \
                 in-process limits until it answers"
            );
        } else {
            tracing::debug!(error = %error, "rate limits: Redis still unreachable");
        }
    }

    /// The 429 of `refusal` (counted in the metrics).
    pub fn refuse(&self, refusal: Refusal) -> ApiError {
        let limit = refusal.limit;
        self.limited.with_label_values(&[limit.as_str()]).inc();
        let rule = self
            .local
            .iter()
            .find(|l| l.rule.limit == limit)
            .map(|l| l.rule);
        let message = match limit {
            Limit::Key => "too many requests for this API key (or session user); retry later",
            Limit::Tenant => "too many requests for this tenant; retry later",
        };
        let wait_ms = u64::try_from(refusal.retry_after.as_millis()).unwrap_or(u64::MAX);
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            .details(json!({
                "limit": limit.as_str(),
                "per_sec": rule.map(|r| r.per_sec.get()),
                "burst": rule.map(|r| r.burst.get()),
                "retry_after_ms": wait_ms,
            }))
            .retry_after(refusal.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(config: RateLimitConfig) -> RateLimiter {
        RateLimiter::new(&config, None, &Registry::new()).expect("limiter")
    }

    #[tokio::test]
    async fn a_burst_then_refusals_with_a_wait_key_before_tenant() {
        let l = limiter(RateLimitConfig {
            per_key_per_sec: 1,
            per_key_burst: 2,
            per_tenant_per_sec: 1,
            per_tenant_burst: 3,
        });
        assert_eq!(l.check_ids("k1", "t").await, None);
        assert_eq!(l.check_ids("k1", "t").await, None);
        let refused = l.check_ids("k1", "t").await.expect("refused");
        assert_eq!(refused.limit, Limit::Key);
        assert!(
            refused.retry_after > Duration::from_millis(500),
            "{refused:?}"
        );
        assert!(refused.retry_after <= Duration::from_secs(1), "{refused:?}");
        // Another key of the tenant: one left in the tenant's burst.
        assert_eq!(l.check_ids("k2", "t").await, None);
        assert_eq!(
            l.check_ids("k2", "t").await.map(|r| r.limit),
            Some(Limit::Tenant)
        );
        // Another tenant is not affected.
        assert_eq!(l.check_ids("k3", "u").await, None);
    }

    #[tokio::test]
    async fn a_rate_of_zero_turns_a_limit_off() {
        let l = limiter(RateLimitConfig {
            per_key_per_sec: 0,
            per_key_burst: 1,
            per_tenant_per_sec: 0,
            per_tenant_burst: 1,
        });
        for _ in 0..100 {
            assert_eq!(l.check_ids("k", "t").await, None);
        }
        let only_tenant = limiter(RateLimitConfig {
            per_key_per_sec: 0,
            per_key_burst: 0,
            per_tenant_per_sec: 1,
            per_tenant_burst: 1,
        });
        assert_eq!(only_tenant.check_ids("a", "t").await, None);
        assert_eq!(
            only_tenant.check_ids("b", "t").await.map(|r| r.limit),
            Some(Limit::Tenant)
        );
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_repeating_it() {
        let err = RateLimiter::new(
            &RateLimitConfig::default(),
            Some("http://user:s3cret@example/"),
            &Registry::new(),
        )
        .expect_err("not a Redis URL");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
