//! Rate limits per API key and per tenant, in process and shared through a
//! real `redis-server` started by the test.

#[allow(unused_imports)]
use super::*;
use common::redis::RedisServer;

/// `GET /v1/me` with `token` until the first 429 (at most `max` tries):
/// how many succeeded before it, and the refusal.
async fn until_limited(ctl: &Control, token: &str, max: usize) -> (usize, Answer) {
    for n in 0..max {
        let a = send(ctl, Method::GET, "/v1/me", Some(token), None, None).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            return (n, a);
        }
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    }
    panic!("no 429 within {max} requests");
}

fn assert_limited(a: &Answer, limit: &str) -> u64 {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text);
    let body = a.json();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(body["details"]["limit"], limit, "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    let secs = a.retry_after().expect("a Retry-After in whole seconds");
    assert!(secs >= 1, "{secs}");
    secs
}

/// Whole seconds since `t`, rounded up: how many requests a 1/s limit may
/// have regained meanwhile.
fn refill_since(t: Instant) -> usize {
    usize::try_from(t.elapsed().as_secs()).unwrap_or(usize::MAX) + 1
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

on_both!(
    per_key_limits_refuse_with_retry_after_and_recover,
    |dialect| async move {
        let ctl = Control::start_with(dialect, |c| {
            c.rate_limit.per_key_per_sec = 1;
            c.rate_limit.per_key_burst = 3;
            c.rate_limit.per_tenant_per_sec = 0;
        })
        .await;
        let alice = ctl.register("alice").await;
        let a = new_api_key(&ctl, &alice, "a").await;
        let b = new_api_key(&ctl, &alice, "b").await;
        let started = Instant::now();
        let (ok, refused) = until_limited(&ctl, &a, 20).await;
        assert!(
            ok >= 3 && ok <= 3 + refill_since(started),
            "{ok} before the 429"
        );
        let wait = assert_limited(&refused, "key");
        assert_eq!(refused.json()["details"]["burst"], 3);
        // Another key of the same tenant has its own budget.
        let (status, body) = ctl.call(Method::GET, "/v1/me", Some(&b), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Refused requests do not push the wait further out (nothing spent).
        let again = send(&ctl, Method::GET, "/v1/me", Some(&a), None, None).await;
        assert!(assert_limited(&again, "key") <= wait);
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let (status, body) = ctl.call(Method::GET, "/v1/me", Some(&a), None).await;
        assert_eq!(status, StatusCode::OK, "after Retry-After: {body}");
        // Mutating requests are limited the same way, and a refusal is not
        // stored under its Idempotency-Key.
        let (_, refused) = until_limited(&ctl, &a, 20).await;
        assert_limited(&refused, "key");
        let limited = send(
            &ctl,
            Method::POST,
            "/v1/tenants",
            Some(&a),
            Some("when-allowed"),
            Some(json!({ "name": "later" })),
        )
        .await;
        let wait = assert_limited(&limited, "key");
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let later = send(
            &ctl,
            Method::POST,
            "/v1/tenants",
            Some(&a),
            Some("when-allowed"),
            Some(json!({ "name": "later" })),
        )
        .await;
        assert_eq!(later.status, StatusCode::CREATED, "{}", later.text);
        assert!(!later.replayed());
        let (_, metrics) = ctl.call(Method::GET, "/metrics", None, None).await;
        let text = metrics.as_str().expect("text");
        assert!(
            metric(text, "delta_control_rate_limited_total{limit=\"key\"}") >= 3.0,
            "{text}"
        );
    }
);

on_both!(
    limits_apply_before_a_key_is_claimed_or_replayed_and_count_once,
    |dialect| async move {
        let ctl = Control::start_with(dialect, |c| {
            c.rate_limit.per_key_per_sec = 1;
            c.rate_limit.per_key_burst = 3;
            c.rate_limit.per_tenant_per_sec = 0;
        })
        .await;
        count_claims(&ctl).await;
        let alice = ctl.register("alice").await;
        let a = new_api_key(&ctl, &alice, "a").await;
        let started = Instant::now();
        // Keyed requests count once each (the middleware authenticates and
        // the handler reuses it): the burst of 3 allows three.
        let mut ok = 0usize;
        let refused = loop {
            let r = send(
                &ctl,
                Method::POST,
                "/v1/tenants",
                Some(&a),
                Some(&format!("t-{ok}")),
                Some(json!({ "name": format!("t{ok}") })),
            )
            .await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            ok += 1;
            assert!(ok <= 20, "no 429");
        };
        assert!(
            ok >= 3 && ok <= 3 + refill_since(started),
            "{ok} before the 429"
        );
        assert_limited(&refused, "key");
        // The refusal came before any claim (one per executed request), and
        // a stored answer is not replayed past the limit either.
        let claims = claims_written(&ctl).await;
        assert_eq!(claims, i64::try_from(ok).expect("count"));
        let replay = send(
            &ctl,
            Method::POST,
            "/v1/tenants",
            Some(&a),
            Some("t-0"),
            Some(json!({ "name": "t0" })),
        )
        .await;
        assert_limited(&replay, "key");
        assert!(!replay.replayed());
        assert_eq!(claims_written(&ctl).await, claims);
    }
);

on_both!(
    per_tenant_limits_span_keys_and_sessions,
    |dialect| async move {
        let ctl = Control::start_with(dialect, |c| {
            c.rate_limit.per_key_per_sec = 0;
            c.rate_limit.per_tenant_per_sec = 1;
            c.rate_limit.per_tenant_burst = 6;
        })
        .await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let started = Instant::now();
        let a = new_api_key(&ctl, &alice, "a").await;
        let b = new_api_key(&ctl, &alice, "b").await;
        // Two keys of one tenant, alternating, share the tenant's budget (two
        // of its 6 went on creating the keys).
        let mut ok = 0usize;
        let refused = loop {
            let token = if ok.is_multiple_of(2) { &a } else { &b };
            let r = send(&ctl, Method::GET, "/v1/me", Some(token), None, None).await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            ok += 1;
            assert!(ok <= 20, "no 429");
        };
        assert!(
            ok + 2 >= 6 && ok + 2 <= 6 + refill_since(started),
            "{ok} before the 429"
        );
        let wait = assert_limited(&refused, "tenant");
        // The whole tenant is refused, sessions included; Bob's tenant is not.
        let other = send(&ctl, Method::GET, "/v1/me", Some(&b), None, None).await;
        assert_limited(&other, "tenant");
        let session = send(&ctl, Method::GET, "/v1/me", Some(&alice.access), None, None).await;
        assert_limited(&session, "tenant");
        let (status, body) = ctl
            .call(Method::GET, "/v1/me", Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Anonymous routes are not limited per tenant.
        let (status, body) = ctl
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": alice.email, "password": alice.password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let (status, body) = ctl.call(Method::GET, "/v1/me", Some(&a), None).await;
        assert_eq!(status, StatusCode::OK, "after Retry-After: {body}");
    }
);

on_both!(
    redis_shares_limits_across_replicas_and_fails_open,
    |dialect| async move {
        let mut redis = RedisServer::start().await;
        let burst = 6;
        let limits = |c: &mut delta_control::config::ControlConfig| {
            c.rate_limit.per_key_per_sec = 1;
            c.rate_limit.per_key_burst = burst;
            c.rate_limit.per_tenant_per_sec = 0;
        };
        let url = redis.url.clone();
        let one = Control::start_with(dialect, |c| {
            limits(c);
            c.redis_url = Some(url.clone());
        })
        .await;
        // A second replica: same database and secrets, same Redis.
        let (state_dir, database) = (one.state_dir(), one.state.config.database_url());
        let two = Control::start_with(dialect, |c| {
            limits(c);
            c.redis_url = Some(url.clone());
            c.state_dir = state_dir;
            c.database_url = Some(database);
        })
        .await;
        let alice = one.register("alice").await;
        let key = new_api_key(&one, &alice, "shared").await;
        // Alternating replicas, the key gets one burst in all, not one each.
        let started = Instant::now();
        let mut ok = 0usize;
        let refused = loop {
            let ctl = if ok.is_multiple_of(2) { &one } else { &two };
            let r = send(ctl, Method::GET, "/v1/me", Some(&key), None, None).await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                break r;
            }
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            ok += 1;
            assert!(
                ok <= 2 * burst as usize,
                "no shared limit: {ok} requests passed"
            );
        };
        let burst = burst as usize;
        assert!(
            ok >= burst && ok <= burst + refill_since(started),
            "{ok} before the 429"
        );
        assert_limited(&refused, "key");
        // Both replicas now refuse the key.
        for ctl in [&one, &two] {
            let r = send(ctl, Method::GET, "/v1/me", Some(&key), None, None).await;
            assert_limited(&r, "key");
        }
        assert!(
            redis
                .keys("delta:ratelimit:*")
                .await
                .iter()
                .any(|k| k.starts_with("delta:ratelimit:key:")),
            "the buckets live in Redis"
        );

        // Redis goes away: requests are not refused because of it (fail open
        // to each replica's in-process limits), and answer promptly.
        redis.stop();
        let t = Instant::now();
        let r = send(&one, Method::GET, "/v1/me", Some(&key), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "fails open: {}", r.text);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let r = send(&two, Method::GET, "/v1/me", Some(&key), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "fails open: {}", r.text);
        let (_, metrics) = one.call(Method::GET, "/metrics", None, None).await;
        let text = metrics.as_str().expect("text");
        assert!(
            metric(text, "delta_control_rate_limit_errors_total") >= 1.0,
            "{text}"
        );
        // Each replica still applies the limits alone meanwhile.
        let (more, refused) = until_limited(&one, &key, 4 * burst).await;
        assert!(more + 1 >= burst && more < 2 * burst, "{more}");
        assert_limited(&refused, "key");
    }
);
