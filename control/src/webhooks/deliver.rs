//! The address check and the delivery worker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::http::StatusCode;
use delta_http::ApiError;
use sqlx::Row as _;

use crate::db::now_ms;
use crate::state::AppState;

use super::crypto;
use super::model::parse_url;

/// Tries per delivery (and per replay) before it is dead.
pub const MAX_ATTEMPTS: i64 = 5;
/// How often each replica's worker looks for due deliveries.
const TICK: Duration = Duration::from_millis(250);
/// One try's bound (connect, send, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A claim's lease: longer than a try, so a live worker never loses its
/// claim mid-try; a replica that dies holding one frees it after this.
const LEASE_MS: i64 = 30_000;
/// Deliveries claimed per pass (tried concurrently).
const BATCH: i64 = 16;
/// A name that does not resolve within this is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The wait after the `attempts_made`-th failed try: `base`, 2 × `base`,
/// 4 × `base`, 8 × `base` (1, 2, 4, 8 s by default).
pub fn retry_delay_ms(base_ms: u64, attempts_made: i64) -> i64 {
    let doublings = u32::try_from(attempts_made.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    i64::try_from(base_ms.saturating_mul(1u64 << doublings)).unwrap_or(i64::MAX)
}

/// Whether `ip` is a public unicast address (the only kind a webhook may
/// reach unless `allow_private_webhook_urls`).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(a),
        },
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    !(a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o0 == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (o0 == 100 && (o1 & 0xc0) == 64)
        // IETF protocol assignments, 192.0.0.0/24; benchmarking, 198.18.0.0/15.
        || (o0 == 192 && o1 == 0 && o2 == 0)
        || (o0 == 198 && (o1 & 0xfe) == 18)
        // Reserved, 240.0.0.0/4.
        || o0 >= 240)
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    !(a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        // Documentation 2001:db8::/32.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // IPv4-compatible ::/96 and NAT64 64:ff9b::/96 reach IPv4
        // addresses this check would have to judge again: refused.
        || s[..6] == [0; 6]
        || (s[0] == 0x64 && s[1] == 0xff9b))
}

/// Resolve `host` and check every address; the addresses to connect to.
/// 422 `unresolvable_url` or `private_webhook_url`.
pub(super) async fn check_host(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ApiError> {
    let unresolvable = |why: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unresolvable_url",
            format!("the url's host {host} does not resolve: {why}"),
        )
    };
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| unresolvable("the lookup timed out".into()))?
            .map_err(|e| unresolvable(e.to_string()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(unresolvable("no addresses".into()));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "private_webhook_url",
            format!(
                "the url's host {host} resolves to {}, a loopback, private, link-local or \
                 reserved address (the operator's allow_private_webhook_urls allows those)",
                bad.ip()
            ),
        ));
    }
    Ok(addrs)
}

/// How often the worker deletes rows past their retention.
const RETENTION_EVERY_MS: i64 = 60_000;
/// Most rows deleted from one table in one pass: a backlog never makes one
/// long transaction.
const RETENTION_CHUNK: i64 = 5_000;

/// Passes of [`deliver_due`] one replica runs at once: a slow endpoint
/// holds up only the pass it is in, not every delivery behind it.
const CONCURRENT_PASSES: usize = 4;

/// Start this replica's worker: every [`TICK`], a pass of [`deliver_due`]
/// (up to [`CONCURRENT_PASSES`] at once); every minute, [`delete_expired`]
/// with `record_retention_secs`.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let passes = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_PASSES));
        let mut last_retention = 0;
        loop {
            let now = now_ms();
            if let Ok(permit) = std::sync::Arc::clone(&passes).try_acquire_owned() {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = deliver_due(&state, now).await {
                        tracing::warn!(error = %e, "webhook deliveries");
                    }
                    drop(permit);
                });
            }
            if now - last_retention >= RETENTION_EVERY_MS {
                last_retention = now;
                let keep_ms = i64::try_from(state.config.record_retention_secs)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000);
                if let Err(e) = delete_expired(&state.db, now.saturating_sub(keep_ms)).await {
                    tracing::warn!(error = %e, "webhook retention");
                }
            }
            tokio::time::sleep(TICK).await;
        }
    })
}

/// Delete deliveries that finished (delivered or dead) before `cutoff_ms`,
/// then messages older than it that no delivery refers to, at most
/// [`RETENTION_CHUNK`] of each; how many rows. A dead letter can be
/// replayed until then. Safe on every replica at once (plain deletes).
pub async fn delete_expired(db: &crate::db::Db, cutoff_ms: i64) -> Result<u64, sqlx::Error> {
    let deliveries = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
         WHERE status IN ('delivered', 'dead') AND updated_at_ms < $1 LIMIT $2)",
    )
    .bind(cutoff_ms)
    .bind(RETENTION_CHUNK)
    .execute(db.pool())
    .await?
    .rows_affected();
    let messages = sqlx::query(
        "DELETE FROM webhook_messages WHERE id IN (SELECT m.id FROM webhook_messages m \
         WHERE m.created_at_ms < $1 AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id) LIMIT $2)",
    )
    .bind(cutoff_ms)
    .bind(RETENTION_CHUNK)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(deliveries + messages)
}

/// Claim up to [`BATCH`] due deliveries (a conditional `UPDATE` that takes a
/// lease: a delivery another replica holds is skipped) and try them
/// concurrently; how many were tried.
pub async fn deliver_due(state: &AppState, now: i64) -> Result<usize, sqlx::Error> {
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at_ms <= $1 \
         AND lease_until_ms <= $1 ORDER BY next_attempt_at_ms LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(state.db.pool())
    .await?;
    let lease = now + LEASE_MS;
    let mut claimed = Vec::new();
    for id in due {
        let got = sqlx::query(
            "UPDATE webhook_deliveries SET lease_until_ms = $2 WHERE id = $1 \
             AND status = 'pending' AND next_attempt_at_ms <= $3 AND lease_until_ms <= $3",
        )
        .bind(&id)
        .bind(lease)
        .bind(now)
        .execute(state.db.pool())
        .await?
        .rows_affected();
        if got == 1 {
            claimed.push(id);
        }
    }
    let n = claimed.len();
    let results =
        futures_util::future::join_all(claimed.iter().map(|id| attempt(state, id, lease))).await;
    for (id, r) in claimed.iter().zip(results) {
        if let Err(e) = r {
            tracing::warn!(delivery = %id, error = %e, "recording a webhook attempt");
        }
    }
    Ok(n)
}

/// What one try came to.
struct Outcome {
    delivered: bool,
    status: Option<i64>,
    error: Option<String>,
}

/// Try delivery `id` (claimed with `lease`) once and record the outcome.
async fn attempt(state: &AppState, id: &str, lease: i64) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "SELECT d.attempts, d.message_id, m.payload, e.id AS endpoint_id, e.url, e.secret_sealed \
         FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
         JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await?;
    // Its endpoint was deleted (with its deliveries) meanwhile.
    let Some(row) = row else { return Ok(()) };
    let attempts: i64 = row.try_get("attempts")?;
    let message_id: String = row.try_get("message_id")?;
    let payload: String = row.try_get("payload")?;
    let endpoint_id: String = row.try_get("endpoint_id")?;
    let url: String = row.try_get("url")?;
    let sealed: String = row.try_get("secret_sealed")?;
    let outcome = send(state, &url, &endpoint_id, &sealed, &message_id, payload).await;
    let now = now_ms();
    let made = attempts + 1;
    let (status, next) = if outcome.delivered {
        ("delivered", now)
    } else if made >= MAX_ATTEMPTS {
        ("dead", now)
    } else {
        (
            "pending",
            now.saturating_add(retry_delay_ms(state.config.webhook_retry_base_ms, made)),
        )
    };
    if !outcome.delivered {
        tracing::info!(delivery = %id, attempts = made, status, error = ?outcome.error, "webhook try failed");
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, attempts = $4, next_attempt_at_ms = $5, \
         lease_until_ms = 0, last_status = $6, last_error = $7, updated_at_ms = $8 \
         WHERE id = $1 AND lease_until_ms = $2",
    )
    .bind(id)
    .bind(lease)
    .bind(status)
    .bind(made)
    .bind(next)
    .bind(outcome.status)
    .bind(outcome.error)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    Ok(())
}

/// POST `payload`, signed with endpoint `endpoint_id`'s secret (`sealed`),
/// to `url`, connecting only to the addresses the check allowed.
async fn send(
    state: &AppState,
    url: &str,
    endpoint_id: &str,
    sealed: &str,
    msg_id: &str,
    payload: String,
) -> Outcome {
    let failed = |error: String| Outcome {
        delivered: false,
        status: None,
        error: Some(error),
    };
    let (url, host, port) = match parse_url(url) {
        Ok(parsed) => parsed,
        Err(e) => return failed(e.message),
    };
    let addrs = match check_host(&host, port, state.config.allow_private_webhook_urls).await {
        Ok(a) => a,
        Err(e) => return failed(e.message),
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        // The addresses just checked, not a second lookup.
        .resolve_to_addrs(&host, &addrs)
        .build()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("building the client: {e}")),
    };
    let Some(secret) = crypto::open(&state.keys, endpoint_id, sealed) else {
        return failed(
            "the endpoint's secret does not open (was the access-token secret replaced?)".into(),
        );
    };
    let timestamp = now_ms() / 1000;
    let Some(signature) = crypto::signature_header(&secret, msg_id, timestamp, payload.as_bytes())
    else {
        return failed("the endpoint's secret is malformed".into());
    };
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "delta-webhooks/1")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(payload)
        .send()
        .await;
    match answer {
        Ok(r) => {
            let status = i64::from(r.status().as_u16());
            if r.status().is_success() {
                Outcome {
                    delivered: true,
                    status: Some(status),
                    error: None,
                }
            } else {
                Outcome {
                    delivered: false,
                    status: Some(status),
                    error: Some(format!("answered {}", r.status())),
                }
            }
        }
        Err(e) => failed(if e.is_timeout() {
            format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())
        } else {
            format!("request failed: {e}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_1_2_4_8_times_the_base() {
        let gaps: Vec<i64> = (1..MAX_ATTEMPTS)
            .map(|n| retry_delay_ms(1_000, n))
            .collect();
        assert_eq!(gaps, [1_000, 2_000, 4_000, 8_000]);
    }

    #[test]
    fn only_public_unicast_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = private.parse().expect("ip");
            assert!(!is_public(ip), "{private} must be refused");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = public.parse().expect("ip");
            assert!(is_public(ip), "{public} must pass");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let e = check_host("127.0.0.1", 80, false)
            .await
            .expect_err("refused");
        assert_eq!(e.code, "private_webhook_url");
        assert!(check_host("127.0.0.1", 80, true).await.is_ok());
        let e = check_host("localhost", 80, false)
            .await
            .expect_err("refused");
        assert_eq!(e.code, "private_webhook_url");
    }
}
