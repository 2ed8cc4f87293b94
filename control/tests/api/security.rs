//! The security suite (issue 18), over real HTTP, each test on SQLite and
//! on PostgreSQL: each attack of the outside review tried as the attacker
//! would (a tenant admin, a stranger who just registered, a node) and shown
//! refused with the right status and nothing changed.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode as AxumStatus;
use common::{Control, Session};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// The caller's budget in the tenant their token is for.
async fn my_budget(ctl: &Control, token: &str) -> Value {
    let (status, body) = ctl.call(Method::GET, "/v1/budget", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Log `who` in to `tenant`: the access token.
async fn login_to(ctl: &Control, who: &Session, tenant: &str) -> String {
    let (status, login) = ctl
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": who.email, "password": who.password, "tenant_id": tenant })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// `both!` with a control plane capping tenants at 3 per user.
macro_rules! capped {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let ctl =
                    Control::start_with(common::Dialect::Sqlite, |c| c.max_tenants_per_user = 3)
                        .await;
                super::$name(ctl).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let ctl =
                    Control::start_with(common::Dialect::Postgres, |c| c.max_tenants_per_user = 3)
                        .await;
                super::$name(ctl).await;
            }
        }
    };
}

// ---- budget escalation -------------------------------------------------------

both!(
    a_tenant_owner_cannot_change_tiers_not_even_their_own,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let before = my_budget(&ctl, &alice.access).await;
        assert_eq!(n(&before["monthly_allocation"]), 10_000);
        let path = format!("/v1/budget/users/{}", alice.user_id);
        // As a session, and as an API key with every scope.
        let (status, key) = ctl
            .call(
                Method::POST,
                "/v1/api-keys",
                Some(&alice.access),
                Some(json!({ "name": "all scopes" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key = key["key"].as_str().expect("key").to_owned();
        for token in [alice.access.as_str(), key.as_str()] {
            for body in [
                json!({ "tier": "team" }),
                json!({ "tier": "team", "tenant_id": alice.tenant_id }),
            ] {
                let (status, answer) = ctl.call(Method::PUT, &path, Some(token), Some(body)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
                assert_eq!(answer["code"], "operator_only", "{answer}");
            }
        }
        let after = my_budget(&ctl, &alice.access).await;
        assert_eq!(after["tier"], "developer");
        assert_eq!(n(&after["monthly_allocation"]), 10_000);

        // The operator can, in the tenant they name; a user who is not a
        // member there, or a tenant that does not exist, is 404.
        let op = ctl.operator().await;
        let (status, changed) = ctl
            .call(
                Method::PUT,
                &path,
                Some(&op.access),
                Some(json!({ "tier": "team", "tenant_id": alice.tenant_id })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(n(&changed["monthly_allocation"]), 100_000);
        for tenant in [op.tenant_id.as_str(), "ten_nope"] {
            let (status, answer) = ctl
                .call(
                    Method::PUT,
                    &path,
                    Some(&op.access),
                    Some(json!({ "tier": "free", "tenant_id": tenant })),
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        }
        assert_eq!(
            n(&my_budget(&ctl, &alice.access).await["monthly_allocation"]),
            100_000
        );
        let (_, me) = ctl
            .call(Method::GET, "/v1/me", Some(&op.access), None)
            .await;
        assert_eq!(me["operator"], true, "{me}");
        let (_, me) = ctl
            .call(Method::GET, "/v1/me", Some(&alice.access), None)
            .await;
        assert_eq!(me["operator"], false, "{me}");
    }
);

capped!(new_tenants_draw_on_the_users_one_tier_and_are_capped);

async fn new_tenants_draw_on_the_users_one_tier_and_are_capped(ctl: Control) {
    {
        let alice = ctl.register("alice").await;
        assert_eq!(
            n(&my_budget(&ctl, &alice.access).await["monthly_allocation"]),
            10_000
        );
        // Each new tenant used to come with a fresh allocation.
        let mut tenants = vec![alice.tenant_id.clone()];
        for i in 1..3 {
            let (status, t) = ctl
                .call(
                    Method::POST,
                    "/v1/tenants",
                    Some(&alice.access),
                    Some(json!({ "name": format!("extra {i}") })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{t}");
            let id = t["id"].as_str().expect("id").to_owned();
            let token = login_to(&ctl, &alice, &id).await;
            let b = my_budget(&ctl, &token).await;
            assert_eq!(b["tier"], "developer");
            assert_eq!((n(&b["monthly_allocation"]), n(&b["pool"])), (0, 0), "{b}");
            tenants.push(id);
        }
        // The cap (3 here): the fourth is refused and nothing is made.
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/tenants",
                Some(&alice.access),
                Some(json!({ "name": "one too many" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "tenant_limit", "{answer}");
        let (_, page) = ctl
            .call(Method::GET, "/v1/tenants", Some(&alice.access), None)
            .await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(3), "{page}");
        let owned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE user_id = $1 AND role = 'owner'",
        )
        .bind(&alice.user_id)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count");
        assert_eq!(owned, 3);
        // Across all of her tenants, one tier's worth.
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(SUM(monthly_allocation) AS BIGINT) FROM budget_users WHERE user_id = $1",
        )
        .bind(&alice.user_id)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("sum");
        assert_eq!(total, 10_000);
        // Operators are not capped.
        let op = ctl.operator().await;
        for i in 0..3 {
            let (status, t) = ctl
                .call(
                    Method::POST,
                    "/v1/tenants",
                    Some(&op.access),
                    Some(json!({ "name": format!("ops {i}") })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{t}");
        }
    }
}

both!(the_default_cap_is_five_tenants, |ctl: Control| async move {
    let bob = ctl.register("bob").await;
    for i in 1..=5 {
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/tenants",
                Some(&bob.access),
                Some(json!({ "name": format!("t{i}") })),
            )
            .await;
        // Registration made the first.
        let expected = if i < 5 {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "tenant {i}: {answer}");
    }
});

// ---- the fleet -----------------------------------------------------------------

both!(the_fleet_is_for_operators_only, |ctl: Control| async move {
    let beat = json!({ "node_id": "n-1", "url": "http://127.0.0.1:9", "capacity": 4, "load": 0 });
    let cred = ctl.node_credential("n-1").await;
    let (status, _) = ctl
        .call(Method::POST, "/v1/nodes/heartbeat", Some(&cred), Some(beat))
        .await;
    assert_eq!(status, StatusCode::OK);
    let stranger = ctl.register("stranger").await;
    let (status, answer) = ctl
        .call(Method::GET, "/v1/nodes", Some(&stranger.access), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "operator_only");
    assert!(answer.get("items").is_none());
    let op = ctl.operator().await;
    let (status, page) = ctl
        .call(Method::GET, "/v1/nodes", Some(&op.access), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["id"], "n-1");
});

// ---- invitations ----------------------------------------------------------------

both!(
    adding_a_member_is_an_invitation_that_does_not_tell_known_emails_apart,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let carol = ctl.register("carol").await;
        let invite = |email: &str| {
            let (ctl, token) = (&ctl, alice.access.clone());
            let body = json!({ "email": email, "role": "member" });
            async move {
                ctl.call(
                    Method::POST,
                    "/v1/tenants/current/members",
                    Some(&token),
                    Some(body),
                )
                .await
            }
        };
        // Known and unknown: the same status and the same fields.
        let (known, to_bob) = invite(&bob.email).await;
        let (unknown, to_ghost) = invite("ghost@example.com").await;
        assert_eq!(
            (known, unknown),
            (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
        );
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&to_bob), keys(&to_ghost));
        assert_eq!(to_bob["status"], to_ghost["status"]);
        // Not a member until Bob accepts.
        let members = || {
            let (ctl, token) = (&ctl, alice.access.clone());
            async move {
                let (_, page) = ctl
                    .call(
                        Method::GET,
                        "/v1/tenants/current/members",
                        Some(&token),
                        None,
                    )
                    .await;
                page["items"].as_array().expect("items").len()
            }
        };
        assert_eq!(members().await, 1);
        let (_, mine) = ctl
            .call(Method::GET, "/v1/invitations", Some(&bob.access), None)
            .await;
        let id = mine["items"][0]["id"]
            .as_str()
            .expect("invitation")
            .to_owned();
        assert_eq!(mine["items"][0]["tenant_id"], alice.tenant_id.as_str());
        // Carol cannot see, accept or decline it.
        let (_, hers) = ctl
            .call(Method::GET, "/v1/invitations", Some(&carol.access), None)
            .await;
        assert_eq!(hers["items"].as_array().expect("items").len(), 0);
        for action in ["accept", "decline"] {
            let (status, _) = ctl
                .call(
                    Method::POST,
                    &format!("/v1/invitations/{id}/{action}"),
                    Some(&carol.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
        }
        assert_eq!(members().await, 1);
        // Declined, it cannot be accepted; a new invitation can.
        let (status, _) = ctl
            .call(
                Method::POST,
                &format!("/v1/invitations/{id}/decline"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = ctl
            .call(
                Method::POST,
                &format!("/v1/invitations/{id}/accept"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, joined) = ctl.invite_and_accept(&alice.access, &bob, "member").await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        assert_eq!(members().await, 2);
        // The unknown address registers later and finds its invitation.
        let ghost = ctl.register("ghost").await;
        let (_, waiting) = ctl
            .call(Method::GET, "/v1/invitations", Some(&ghost.access), None)
            .await;
        assert_eq!(waiting["items"][0]["tenant_id"], alice.tenant_id.as_str());
    }
);

// ---- registration ----------------------------------------------------------------

both!(
    registration_is_closed_by_default_and_operators_are_never_registered,
    |ctl: Control| async move {
        // The test configuration opens registration; an operator's address
        // still cannot be claimed through it.
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({ "email": " Operator@Example.com", "password": "long enough pass" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "registration_closed");
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("count");
        assert_eq!(users, 0);

        // A control plane on the default configuration: closed.
        let closed = Control::start_with(ctl.dialect(), |c| {
            c.allow_registration =
                delta_control::config::ControlConfig::default().allow_registration
        })
        .await;
        let (status, answer) = closed
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({ "email": "stranger@example.com", "password": "long enough pass" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "registration_closed");
        // Accounts are made on the host instead.
        let made = delta_control::identity::create_account(
            &closed.state,
            "someone@example.com",
            "long enough pass".to_owned(),
            None,
            None,
        )
        .await
        .expect("create_account");
        assert_eq!(made.user.email, "someone@example.com");
    }
);

// ---- calls to nodes ----------------------------------------------------------------

both!(
    the_control_plane_follows_no_redirect_from_a_node,
    |ctl: Control| async move {
        // A trap that counts what reaches it, and a "node" that sends
        // every request there.
        let hits = Arc::new(AtomicUsize::new(0));
        let trap = {
            let hits = Arc::clone(&hits);
            axum::Router::new().fallback(move || {
                let hits = Arc::clone(&hits);
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    AxumStatus::OK
                }
            })
        };
        let trap_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let trap_url = format!("http://{}", trap_listener.local_addr().expect("addr"));
        let trap_server = tokio::spawn(async move {
            let _ = axum::serve(trap_listener, trap).await;
        });
        let node = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let to = format!("{trap_url}{uri}");
            async move { (AxumStatus::TEMPORARY_REDIRECT, [("location", to)]) }
        });
        let node_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let node_url = format!("http://{}", node_listener.local_addr().expect("addr"));
        let node_server = tokio::spawn(async move {
            let _ = axum::serve(node_listener, node).await;
        });
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/nodes/heartbeat",
                Some(&ctl.node_credential("redirector").await),
                Some(json!({ "node_id": "redirector", "url": node_url, "capacity": 4, "load": 0 })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        let alice = ctl.register("alice").await;
        let resp = ctl
            .client
            .post(ctl.url("/v1/components"))
            .bearer_auth(&alice.access)
            .header("content-type", "application/wasm")
            .body(common::fake_component("redirect"))
            .send()
            .await
            .expect("upload");
        let uploaded: Value = resp.json().await.expect("json");
        let sha = uploaded["sha256"].as_str().expect("sha").to_owned();
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/agents",
                Some(&alice.access),
                Some(json!({ "name": "a", "kind": "main", "component": sha })),
            )
            .await;
        assert!(!status.is_success(), "{status} {answer}");
        assert_eq!(hits.load(Ordering::SeqCst), 0, "a redirect was followed");
        trap_server.abort();
        node_server.abort();
    }
);

// ---- replayed credentials ------------------------------------------------------------

/// POST `path` with `Idempotency-Key: key`: status, whether it was a
/// replay, body.
async fn post_with_key(
    ctl: &Control,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, bool, Value) {
    let resp = ctl
        .client
        .post(ctl.url(path))
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let replayed = resp
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, resp.json().await.unwrap_or(Value::Null))
}

both!(
    a_replayed_refresh_with_its_key_is_reuse_and_logins_are_never_stored,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let rows = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM idempotency_keys")
                .fetch_one(ctl.state.db.pool())
                .await
                .expect("count")
        };
        // Login: the same request and key twice are two logins.
        let creds = json!({ "email": alice.email, "password": alice.password });
        let (s1, r1, first) = post_with_key(&ctl, "/v1/auth/login", "k-login", creds.clone()).await;
        let (s2, r2, second) = post_with_key(&ctl, "/v1/auth/login", "k-login", creds).await;
        assert_eq!(
            (s1, s2),
            (StatusCode::OK, StatusCode::OK),
            "{first} {second}"
        );
        assert!(!r1 && !r2, "a login was replayed");
        assert_ne!(first["refresh_token"], second["refresh_token"]);
        // Refresh, then the captured request again with its key: the
        // rotated token is reuse, and the family (the new pair too) is gone.
        let captured = json!({ "refresh_token": first["refresh_token"] });
        let (status, replayed, rotated) =
            post_with_key(&ctl, "/v1/auth/refresh", "k-refresh", captured.clone()).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        assert!(!replayed);
        let (status, replayed, answer) =
            post_with_key(&ctl, "/v1/auth/refresh", "k-refresh", captured).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert!(!replayed, "the new pair was replayed: {answer}");
        assert!(answer.get("refresh_token").is_none());
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/auth/refresh",
                None,
                Some(json!({ "refresh_token": rotated["refresh_token"] })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the family survived: {answer}"
        );
        assert_eq!(rows().await, 0, "a credential answer was stored");
    }
);

// ---- anonymous routes ------------------------------------------------------------------

/// `both!` on a control plane whose anonymous routes are guarded by `limits`.
macro_rules! guarded {
    ($name:ident, $limits:expr) => {
        mod $name {
            use super::*;

            async fn start(dialect: common::Dialect) -> Control {
                Control::start_with(dialect, |c| c.auth_limits = $limits).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(start(common::Dialect::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(start(common::Dialect::Postgres).await).await;
            }
        }
    };
}

guarded!(
    accounts_lock_after_failed_logins_before_any_password_check,
    delta_control::config::AuthLimitsConfig {
        per_ip_per_min: 0,
        per_ip_burst: 0,
        lockout_after: 3,
        lockout_base_secs: 1,
        lockout_max_secs: 2,
    }
);

async fn accounts_lock_after_failed_logins_before_any_password_check(ctl: Control) {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let login = |email: String, password: String| {
        let ctl = &ctl;
        async move {
            let resp = ctl
                .client
                .post(ctl.url("/v1/auth/login"))
                .json(&json!({ "email": email, "password": password }))
                .send()
                .await
                .expect("login");
            let status = resp.status();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, retry, body)
        }
    };
    for who in [alice.email.clone(), "nobody@example.com".to_owned()] {
        for _ in 0..3 {
            let (status, _, body) = login(who.clone(), "wrong password!".to_owned()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        }
        // Locked: even the right password is not checked; an unknown
        // address answers the same.
        let (status, retry, body) = login(who.clone(), alice.password.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["code"], "too_many_attempts");
        assert_eq!(retry, Some(1));
    }
    // Another account is not affected.
    let (status, _, body) = login(bob.email.clone(), bob.password.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // After the lockout the right password works, and clears the count.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, body) = login(alice.email.clone(), alice.password.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = login(alice.email.clone(), "wrong password!".to_owned()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

guarded!(
    anonymous_routes_are_limited_per_address,
    delta_control::config::AuthLimitsConfig {
        per_ip_per_min: 1,
        per_ip_burst: 3,
        lockout_after: 0,
        lockout_base_secs: 1,
        lockout_max_secs: 1,
    }
);

async fn anonymous_routes_are_limited_per_address(ctl: Control) {
    // register + login spend two of the burst of 3.
    let alice = ctl.register("alice").await;
    let (status, body) = ctl
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": alice.refresh })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (path, body) in [
        (
            "/v1/auth/login",
            json!({ "email": alice.email, "password": alice.password }),
        ),
        (
            "/v1/auth/refresh",
            json!({ "refresh_token": body["refresh_token"] }),
        ),
        (
            "/v1/auth/register",
            json!({ "email": "eve@example.com", "password": "long enough pass" }),
        ),
    ] {
        let (status, answer) = ctl.call(Method::POST, path, None, Some(body)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {answer}");
        assert_eq!(answer["code"], "rate_limited");
        assert_eq!(answer["details"]["limit"], "ip");
    }
    // Nothing was made.
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count");
    assert_eq!(users, 1);
}

// ---- sessions -----------------------------------------------------------------------------

both!(
    a_session_ends_at_its_absolute_lifetime_however_often_refreshed,
    |ctl: Control| async move {
        let short = Control::start_with(ctl.dialect(), |c| c.session_max_secs = 4).await;
        let alice = short.register("alice").await;
        let refresh = |token: Value| {
            let short = &short;
            async move {
                short
                    .call(
                        Method::POST,
                        "/v1/auth/refresh",
                        None,
                        Some(json!({ "refresh_token": token })),
                    )
                    .await
            }
        };
        let (status, pair) = refresh(json!(alice.refresh)).await;
        assert_eq!(status, StatusCode::OK, "{pair}");
        tokio::time::sleep(std::time::Duration::from_millis(4300)).await;
        // The newest token of the family, used in time, is still refused.
        let (status, answer) = refresh(pair["refresh_token"].clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at_ms IS NULL AND user_id = $1",
        )
        .bind(&alice.user_id)
        .fetch_one(short.state.db.pool())
        .await
        .expect("count");
        assert_eq!(open, 0, "the family was not revoked");
        // A new login is a new session.
        let token = login_to(&short, &alice, &alice.tenant_id).await;
        assert!(!token.is_empty());
    }
);

// ---- node URLs ------------------------------------------------------------------------------

both!(
    a_node_s_url_moves_only_through_the_operator_and_nodes_off_loopback_need_https,
    |ctl: Control| async move {
        let beat = |id: &str, url: &str| {
            let body = json!({ "node_id": id, "url": url, "capacity": 4, "load": 0 });
            let (ctl, id) = (&ctl, id.to_owned());
            async move {
                let cred = ctl.node_credential(&id).await;
                ctl.call(Method::POST, "/v1/nodes/heartbeat", Some(&cred), Some(body))
                    .await
            }
        };
        let url_of = |id: &'static str| {
            let ctl = &ctl;
            async move {
                sqlx::query_scalar::<_, String>("SELECT url FROM nodes WHERE id = $1")
                    .bind(id)
                    .fetch_one(ctl.state.db.pool())
                    .await
                    .expect("url")
            }
        };
        assert_eq!(beat("n-1", "http://127.0.0.1:9").await.0, StatusCode::OK);
        // Someone with n-1's credential points it at themselves.
        let (status, answer) = beat("n-1", "http://127.0.0.1:10").await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["code"], "node_url_conflict");
        assert_eq!(url_of("n-1").await, "http://127.0.0.1:9");
        // Nor once the node is down (a thief waits for a restart): still
        // refused, and the node stays down.
        sqlx::query("UPDATE nodes SET status = 'down' WHERE id = 'n-1'")
            .execute(ctl.state.db.pool())
            .await
            .expect("down");
        let (status, answer) = beat("n-1", "http://127.0.0.1:10").await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["code"], "node_url_conflict");
        assert_eq!(url_of("n-1").await, "http://127.0.0.1:9");
        let status_of: String = sqlx::query_scalar("SELECT status FROM nodes WHERE id = 'n-1'")
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("status");
        assert_eq!(status_of, "down");
        // The operator moves it; a tenant admin cannot.
        let patch = |token: String, url: &'static str| {
            let ctl = &ctl;
            async move {
                ctl.call(
                    Method::PATCH,
                    "/v1/operator/nodes/n-1",
                    Some(&token),
                    Some(json!({ "url": url })),
                )
                .await
            }
        };
        let alice = ctl.register("alice").await;
        let (status, answer) = patch(alice.access.clone(), "http://127.0.0.1:11").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "operator_only");
        let operator = ctl.operator_token().await;
        let (status, answer) = patch(operator.clone(), "http://10.0.0.5:7421").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let (status, answer) = patch(operator.clone(), "http://127.0.0.1:10/").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["url"], "http://127.0.0.1:10");
        assert_eq!(url_of("n-1").await, "http://127.0.0.1:10");
        assert_eq!(beat("n-1", "http://127.0.0.1:10").await.0, StatusCode::OK);
        let (status, _) = ctl
            .call(
                Method::PATCH,
                "/v1/operator/nodes/ghost",
                Some(&operator),
                Some(json!({ "url": "http://127.0.0.1:12" })),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Plain http off loopback would carry the node API token in clear.
        for url in ["http://10.0.0.5:7421", "http://node.example.com"] {
            let (status, answer) = beat("n-2", url).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
        }
        assert_eq!(
            beat("n-2", "https://node.example.com").await.0,
            StatusCode::OK
        );
        let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes")
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("count");
        assert_eq!(nodes, 2);
    }
);

both!(
    ending_a_session_ends_its_access_tokens_too,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let other = login_to(&ctl, &alice, &alice.tenant_id).await;
        let me = |token: String| {
            let ctl = &ctl;
            async move { ctl.call(Method::GET, "/v1/me", Some(&token), None).await.0 }
        };
        assert_eq!(me(alice.access.clone()).await, StatusCode::OK);
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/auth/logout",
                None,
                Some(json!({ "refresh_token": alice.refresh })),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // The captured access token of the ended session is refused; her
        // other session is not.
        assert_eq!(me(alice.access.clone()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(me(other.clone()).await, StatusCode::OK);

        // Reuse of a rotated refresh token ends the thief's new pair too.
        let (_, first) = ctl
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": alice.email, "password": alice.password })),
            )
            .await;
        let refresh = |token: Value| {
            let ctl = &ctl;
            async move {
                ctl.call(
                    Method::POST,
                    "/v1/auth/refresh",
                    None,
                    Some(json!({ "refresh_token": token })),
                )
                .await
            }
        };
        let (status, second) = refresh(first["refresh_token"].clone()).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        let new_access = second["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(me(new_access.clone()).await, StatusCode::OK);
        let (status, _) = refresh(first["refresh_token"].clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(me(new_access).await, StatusCode::UNAUTHORIZED);

        // The sweep forgets ended sessions once their tokens have expired.
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM revoked_sessions")
                .fetch_one(ctl.state.db.pool())
                .await
                .expect("count")
        };
        assert_eq!(count().await, 2);
        let later = delta_control::db::now_ms() + 31 * 60 * 1000;
        delta_control::sweep::sweep_once(&ctl.state, later)
            .await
            .expect("sweep");
        assert_eq!(count().await, 0);
    }
);

// ---- a node's credential ----------------------------------------------------------------

both!(
    a_node_whose_credential_is_refused_fails_at_start_naming_the_setting,
    |ctl: Control| async move {
        let dir = ctl.dir.path().join("refused-node");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("token"), "a-node-token-of-its-own-0123456789").expect("token");
        std::fs::write(dir.join("wrong"), "not-the-fleet-token-0123456789").expect("token");
        let config: delta_node::config::NodeConfig = toml::from_str(&format!(
            r#"
node_id = "refused"
listen = "127.0.0.1:0"
state_dir = "{state}"
token_file = "{token}"
[control_plane]
url = "{url}"
token_file = "{wrong}"
heartbeat_secs = 1
"#,
            state = dir.join("state").display(),
            token = dir.join("token").display(),
            wrong = dir.join("wrong").display(),
            url = ctl.url,
        ))
        .expect("node config");
        let options = delta_node::server::ServeOptions {
            compile: None,
            config_path: None,
            overrides: Default::default(),
        };
        let err = delta_node::server::start(config, &options)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("refused this node's credential"), "{err}");
        assert!(err.contains("[control_plane] token_file"), "{err}");
        let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes")
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("count");
        assert_eq!(nodes, 0);
    }
);
