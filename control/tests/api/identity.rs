//! Identity, sessions, API keys, tenants, roles and the audit log, over real
//! HTTP, each test on SQLite and on PostgreSQL.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Control, Dialect, Session};
use delta_control::db::now_ms;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

async fn login(
    ctl: &Control,
    email: &str,
    password: &str,
    tenant: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({ "email": email, "password": password });
    if let Some(t) = tenant {
        body["tenant_id"] = json!(t);
    }
    ctl.call(Method::POST, "/v1/auth/login", None, Some(body))
        .await
}

/// An access token for `s`'s user in `tenant`.
async fn access_in(ctl: &Control, s: &Session, tenant: &str) -> String {
    let (status, body) = login(ctl, &s.email, &s.password, Some(tenant)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("access").to_owned()
}

async fn refresh(ctl: &Control, token: &str) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": token })),
    )
    .await
}

/// Every audit entry the caller may see (all pages), newest first.
async fn audit(ctl: &Control, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = "/v1/audit?limit=2".to_owned();
    loop {
        let (status, page) = ctl.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit?limit=2&cursor={c}"),
            None => return items,
        }
    }
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect()
}

/// Invite `email` to `token`'s tenant (the invitee has to accept).
async fn invite(ctl: &Control, token: &str, email: &str, role: &str) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        "/v1/tenants/current/members",
        Some(token),
        Some(json!({ "email": email, "role": role })),
    )
    .await
}

/// `who` joins `token`'s tenant: invited, then accepting.
async fn add_member(ctl: &Control, token: &str, who: &Session, role: &str) -> (StatusCode, Value) {
    ctl.invite_and_accept(token, who, role).await
}

async fn set_role(ctl: &Control, token: &str, user: &str, role: &str) -> (StatusCode, Value) {
    ctl.call(
        Method::PATCH,
        &format!("/v1/tenants/current/members/{user}"),
        Some(token),
        Some(json!({ "role": role })),
    )
    .await
}

async fn remove(ctl: &Control, token: &str, user: &str) -> (StatusCode, Value) {
    ctl.call(
        Method::DELETE,
        &format!("/v1/tenants/current/members/{user}"),
        Some(token),
        None,
    )
    .await
}

async fn create_key(ctl: &Control, token: &str, body: Value) -> (StatusCode, Value) {
    ctl.call(Method::POST, "/v1/api-keys", Some(token), Some(body))
        .await
}

fn dialect(ctl: &Control) -> Dialect {
    ctl.dialect()
}

both!(register_login_and_me, |ctl: Control| async move {
    let (status, reg) = ctl
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({
                "email": "  Alice@Example.COM ",
                "password": "correct horse battery",
                "tenant_name": " Alice Corp ",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!(reg["user"]["email"], "alice@example.com");
    assert_eq!(reg["tenant"]["name"], "Alice Corp");
    let user_id = reg["user"]["id"].as_str().expect("id").to_owned();
    let tenant_id = reg["tenant"]["id"].as_str().expect("id").to_owned();
    assert!(reg["user"]["created_at_ms"].as_i64().expect("created") > 0);
    assert!(reg["user"].get("password_hash").is_none());

    // The email matches whatever its case and spacing.
    let (status, tokens) = login(&ctl, "ALICE@example.com ", "correct horse battery", None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 1800);
    assert_eq!(tokens["tenant_id"], tenant_id.as_str());
    let access = tokens["access_token"].as_str().expect("access");
    assert!(tokens["refresh_token"].as_str().expect("refresh").len() >= 32);

    let (status, me) = ctl.call(Method::GET, "/v1/me", Some(access), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["id"], user_id.as_str());
    assert_eq!(me["user"]["email"], "alice@example.com");
    assert_eq!(me["tenant_id"], tenant_id.as_str());
    assert_eq!(me["role"], "owner");
    assert_eq!(me["via"], "session");

    let (status, current) = ctl
        .call(Method::GET, "/v1/tenants/current", Some(access), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert_eq!(
        (&current["id"], &current["name"], &current["role"]),
        (&json!(tenant_id), &json!("Alice Corp"), &json!("owner"))
    );

    // No credential, or garbage: 401 with the usual error shape.
    for token in [None, Some("garbage"), Some("dk_nope_nope")] {
        let (status, body) = ctl.call(Method::GET, "/v1/me", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(body["code"], "unauthorized");
    }

    // The OpenAPI document describes the routes, with bearer security on
    // the authenticated ones.
    let (status, doc) = ctl.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for (path, method) in [
        ("/v1/auth/register", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/me", "get"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys/{id}", "delete"),
        ("/v1/tenants", "post"),
        ("/v1/tenants", "get"),
        ("/v1/tenants/current", "get"),
        ("/v1/tenants/current/members", "get"),
        ("/v1/tenants/current/members", "post"),
        ("/v1/tenants/current/members/{user_id}", "patch"),
        ("/v1/tenants/current/members/{user_id}", "delete"),
        ("/v1/audit", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(doc["paths"]["/v1/me"]["get"]["security"].is_array());
    assert!(doc["paths"]["/v1/auth/login"]["post"]["security"].is_null());
});

both!(registration_is_validated, |ctl: Control| async move {
    let register = |email: &str, password: &str| {
        let body = json!({ "email": email, "password": password });
        let ctl = &ctl;
        async move {
            ctl.call(Method::POST, "/v1/auth/register", None, Some(body))
                .await
        }
    };
    let (status, body) = register("bob@example.com", "twelve chars").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = register(" BOB@example.com", "another password").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "email_taken");
    let (status, body) = register("carol@example.com", "eleven char").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for email in [
        "no-at-sign",
        "a@b",
        "@example.com",
        "a b@example.com",
        "a@@example.com",
        "",
    ] {
        let (status, body) = register(email, "long enough password").await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email:?}: {body}"
        );
    }
    let (status, _) = ctl
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(
                json!({ "email": "dan@example.com", "password": "long enough password",
                         "tenant_name": "   " }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The user was not created by the refused attempts.
    let (status, _) = login(&ctl, "carol@example.com", "eleven char", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A control plane that does not allow registration.
    let closed = Control::start_with(dialect(&ctl), |c| c.allow_registration = false).await;
    let (status, body) = closed
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({ "email": "eve@example.com", "password": "long enough password" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "registration_closed");
});

both!(
    failed_logins_look_alike_and_are_audited,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let (wrong_status, wrong) = login(&ctl, &alice.email, "not her password", None).await;
        let (unknown_status, unknown) =
            login(&ctl, "nobody@example.com", "whatever pw", None).await;
        assert_eq!(wrong_status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert_eq!(unknown_status, StatusCode::UNAUTHORIZED, "{unknown}");
        assert_eq!(wrong["code"], "invalid_credentials");
        assert_eq!(
            (&wrong["code"], &wrong["message"]),
            (&unknown["code"], &unknown["message"])
        );

        // Alice's tenant sees the attempt on her account (and her login).
        let entries = audit(&ctl, &alice.access).await;
        let failed: Vec<&Value> = entries
            .iter()
            .filter(|e| e["action"] == "login_failed")
            .collect();
        assert_eq!(failed.len(), 1, "{entries:?}");
        assert_eq!(failed[0]["user_id"], alice.user_id.as_str());
        assert_eq!(failed[0]["detail"]["reason"], "bad_password");
        assert!(
            failed[0]["request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        assert!(actions(&entries).contains(&"login"));
        // Bob's does not; the unknown email is in no tenant's log.
        let bobs = audit(&ctl, &bob.access).await;
        assert!(!actions(&bobs).contains(&"login_failed"), "{bobs:?}");
        let tenantless: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'login_failed' AND tenant_id IS NULL",
    )
    .fetch_one(ctl.state.db.pool())
    .await
    .expect("count")
    .get("n");
        assert_eq!(tenantless, 1);
    }
);

both!(refresh_rotates_tokens, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let (status, second) = login(&ctl, &alice.email, &alice.password, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, t2) = refresh(&ctl, &alice.refresh).await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    assert_eq!(t2["tenant_id"], alice.tenant_id.as_str());
    assert_eq!(t2["token_type"], "Bearer");
    let r2 = t2["refresh_token"].as_str().expect("refresh");
    let a2 = t2["access_token"].as_str().expect("access");
    assert_ne!(r2, alice.refresh);
    assert_ne!(a2, alice.access);
    let (status, me) = ctl.call(Method::GET, "/v1/me", Some(a2), None).await;
    assert_eq!(
        (status, &me["user"]["id"]),
        (StatusCode::OK, &json!(alice.user_id))
    );
    // A chain of rotations keeps going, each token once.
    let (status, t3) = refresh(&ctl, r2).await;
    assert_eq!(status, StatusCode::OK, "{t3}");
    // The rotated token no longer works.
    let (status, body) = refresh(&ctl, &alice.refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Only the hash is stored.
    let stored: i64 = sqlx::query("SELECT COUNT(*) AS n FROM refresh_tokens WHERE token_hash = $1")
        .bind(r2)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
        .get("n");
    assert_eq!(stored, 0);

    // Unknown and expired tokens are refused.
    let (status, _) = refresh(&ctl, "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = second["refresh_token"].as_str().expect("refresh");
    sqlx::query("UPDATE refresh_tokens SET expires_at_ms = $1 WHERE token_hash = $2")
        .bind(now_ms() - 1)
        .bind(delta_control::auth::sha256_hex(other))
        .execute(ctl.state.db.pool())
        .await
        .expect("expire");
    let (status, _) = refresh(&ctl, other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
});

both!(
    refresh_token_reuse_revokes_the_family,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        // A second session: another family, which must survive.
        let (_, other) = login(&ctl, &alice.email, &alice.password, None).await;
        let other = other["refresh_token"].as_str().expect("refresh").to_owned();

        let (status, t2) = refresh(&ctl, &alice.refresh).await;
        assert_eq!(status, StatusCode::OK);
        let r2 = t2["refresh_token"].as_str().expect("refresh");
        // The stolen, already rotated token is presented again...
        let (status, body) = refresh(&ctl, &alice.refresh).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        // ...so the newest token of its family is dead too.
        let (status, body) = refresh(&ctl, r2).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        // The other session is untouched.
        let (status, body) = refresh(&ctl, &other).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The ended family's access token is refused too (issue 18); the
        // other session reads the audit.
        let (status, _) = ctl
            .call(Method::GET, "/v1/me", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let entries = audit(&ctl, body["access_token"].as_str().expect("access")).await;
        let reuse: Vec<&Value> = entries
            .iter()
            .filter(|e| e["action"] == "refresh_token_reuse")
            .collect();
        assert_eq!(reuse.len(), 1, "{entries:?}");
        // Both tokens of the family: the reused one and its successor.
        assert_eq!(reuse[0]["detail"]["tokens_revoked"], 2);
    }
);

both!(logout_revokes_the_family, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let (status, t2) = refresh(&ctl, &alice.refresh).await;
    assert_eq!(status, StatusCode::OK);
    let r2 = t2["refresh_token"].as_str().expect("refresh");
    let (status, body) = ctl
        .call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({ "refresh_token": r2 })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = refresh(&ctl, r2).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let live: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM refresh_tokens WHERE user_id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(&alice.user_id)
    .fetch_one(ctl.state.db.pool())
    .await
    .expect("count")
    .get("n");
    assert_eq!(live, 0);
    // An unknown token answers the same.
    let (status, _) = ctl
        .call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({ "refresh_token": "nope" })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The session's access tokens end with it (issue 18).
    let (status, _) = ctl
        .call(Method::GET, "/v1/me", Some(&alice.access), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, again) = login(&ctl, &alice.email, &alice.password, None).await;
    let access = again["access_token"].as_str().expect("access");
    assert!(actions(&audit(&ctl, access).await).contains(&"logout"));
});

both!(
    forged_access_tokens_are_refused,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let secret = std::fs::read(ctl.state_dir().join("jwt-secret")).expect("secret");
        let now = now_ms() / 1000;
        let claims = |tid: &str, aud: &str, iss: &str, exp: i64| {
            json!({ "sub": alice.user_id, "tid": tid, "aud": aud, "iss": iss, "exp": exp,
                "iat": now, "jti": "t" })
        };
        let sign = |alg: Algorithm, claims: &Value| {
            jsonwebtoken::encode(
                &Header::new(alg),
                claims,
                &EncodingKey::from_secret(&secret),
            )
            .expect("encode")
        };
        let me = |token: String| {
            let ctl = &ctl;
            async move { ctl.call(Method::GET, "/v1/me", Some(&token), None).await.0 }
        };
        let good = claims(&alice.tenant_id, "delta-control", "delta", now + 600);
        // The crafting is right: a token made like the server's is accepted.
        assert_eq!(me(sign(Algorithm::HS256, &good)).await, StatusCode::OK);

        let expired = claims(&alice.tenant_id, "delta-control", "delta", now - 3600);
        assert_eq!(
            me(sign(Algorithm::HS256, &expired)).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            me(sign(Algorithm::HS512, &good)).await,
            StatusCode::UNAUTHORIZED
        );
        let wrong_aud = claims(&alice.tenant_id, "someone-else", "delta", now + 600);
        assert_eq!(
            me(sign(Algorithm::HS256, &wrong_aud)).await,
            StatusCode::UNAUTHORIZED
        );
        let wrong_iss = claims(&alice.tenant_id, "delta-control", "mallory", now + 600);
        assert_eq!(
            me(sign(Algorithm::HS256, &wrong_iss)).await,
            StatusCode::UNAUTHORIZED
        );
        // Well signed, but for a tenant Alice is not a member of.
        let foreign = claims(&bob.tenant_id, "delta-control", "delta", now + 600);
        assert_eq!(
            me(sign(Algorithm::HS256, &foreign)).await,
            StatusCode::UNAUTHORIZED
        );
        // alg: none, with and without a signature part.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(good.to_string());
        assert_eq!(
            me(format!("{header}.{payload}.")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            me(format!("{header}.{payload}")).await,
            StatusCode::UNAUTHORIZED
        );
        // A tampered signature (a character in its middle, so the bytes
        // change) and a tampered payload.
        let parts: Vec<&str> = alice.access.split('.').collect();
        let mut sig: Vec<char> = parts[2].chars().collect();
        let mid = sig.len() / 2;
        sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
        let sig: String = sig.into_iter().collect();
        assert_eq!(
            me(format!("{}.{}.{sig}", parts[0], parts[1])).await,
            StatusCode::UNAUTHORIZED
        );
        let forged_payload = URL_SAFE_NO_PAD
            .encode(claims(&bob.tenant_id, "delta-control", "delta", now + 600).to_string());
        assert_eq!(
            me(format!("{}.{forged_payload}.{}", parts[0], parts[2])).await,
            StatusCode::UNAUTHORIZED
        );
        // The genuine token still works.
        assert_eq!(me(alice.access.clone()).await, StatusCode::OK);
    }
);

both!(
    api_keys_are_shown_once_scoped_and_revocable,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let (status, reader) = create_key(
            &ctl,
            &alice.access,
            json!({ "name": "ci", "scopes": ["agents:read"] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{reader}");
        let reader_key = reader["key"].as_str().expect("key").to_owned();
        let prefix = reader["prefix"].as_str().expect("prefix");
        assert!(reader_key.starts_with(&format!("dk_{prefix}_")));
        assert_eq!(reader["scopes"], json!(["agents:read"]));
        assert!(reader["expires_at_ms"].is_null());

        // The key works, as Alice, with its scopes.
        let (status, me) = ctl
            .call(Method::GET, "/v1/me", Some(&reader_key), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["via"], "api_key");
        assert_eq!(me["user"]["id"], alice.user_id.as_str());
        assert_eq!(me["scopes"], json!(["agents:read"]));
        // Its use is recorded (off the request's path, so poll).
        let key_id = reader["id"].as_str().expect("key id").to_owned();
        let mut last_used = Value::Null;
        for _ in 0..50 {
            let (status, page) = ctl
                .call(Method::GET, "/v1/api-keys", Some(&alice.access), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            last_used = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .find(|k| k["id"] == key_id.as_str())
                .map(|k| k["last_used_at_ms"].clone())
                .unwrap_or(Value::Null);
            if !last_used.is_null() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let used = last_used.as_i64().expect("last_used_at_ms recorded");
        assert!((now_ms() - 60_000..=now_ms()).contains(&used), "{used}");
        // Without tenant:admin it manages nothing.
        let (status, body) = create_key(&ctl, &reader_key, json!({ "name": "x" })).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = invite(&ctl, &reader_key, "x@example.com", "member").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = ctl
            .call(Method::GET, "/v1/audit", Some(&reader_key), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A key with tenant:admin makes keys, but none stronger than itself.
        let (status, admin) = create_key(
            &ctl,
            &alice.access,
            json!({ "name": "admin", "scopes": ["tenant:admin"] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let admin_key = admin["key"].as_str().expect("key").to_owned();
        let (status, _) = create_key(
            &ctl,
            &admin_key,
            json!({ "name": "more", "scopes": ["tenant:admin", "agents:write"] }),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = create_key(
            &ctl,
            &admin_key,
            json!({ "name": "same", "scopes": ["tenant:admin"] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        // Default: every scope.
        let (status, all) = create_key(&ctl, &alice.access, json!({ "name": "all" })).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            all["scopes"],
            json!([
                "agents:read",
                "agents:write",
                "runs:read",
                "runs:write",
                "budgets:read",
                "budgets:write",
                "templates:read",
                "templates:write",
                "usage:read",
                "bounties:read",
                "bounties:write",
                "tenant:admin"
            ])
        );
        // Bad requests.
        for body in [
            json!({ "name": "x", "scopes": ["root"] }),
            json!({ "name": "x", "scopes": [] }),
            json!({ "name": "x", "expires_in_days": 0 }),
            json!({ "name": "x", "expires_in_days": 100_000 }),
            json!({ "name": "" }),
        ] {
            let (status, resp) = create_key(&ctl, &alice.access, body.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {resp}");
        }

        // Listing never shows a secret or a hash.
        let (status, list) = ctl
            .call(Method::GET, "/v1/api-keys", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), 4, "{list}");
        let hashes: Vec<String> = sqlx::query("SELECT secret_hash FROM api_keys")
            .fetch_all(ctl.state.db.pool())
            .await
            .expect("hashes")
            .iter()
            .map(|r| r.get("secret_hash"))
            .collect();
        let text = list.to_string();
        for secret in [&reader_key, &admin_key] {
            // `dk_<hex prefix>_<secret>`; the secret itself may contain '_'.
            let secret_part = secret["dk_".len()..].split_once('_').expect("secret").1;
            assert!(!text.contains(secret_part));
        }
        for hash in &hashes {
            assert!(!text.contains(hash.as_str()));
        }
        for item in items {
            assert!(item.get("key").is_none() && item.get("secret_hash").is_none());
        }

        // A wrong secret under a real prefix is refused.
        let (status, _) = ctl
            .call(
                Method::GET,
                "/v1/me",
                Some(&format!("dk_{prefix}_wrong")),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Revoked: 401, listed as revoked; revoking again is a no-op.
        let reader_id = reader["id"].as_str().expect("id");
        let path = format!("/v1/api-keys/{reader_id}");
        let (status, _) = ctl
            .call(Method::DELETE, &path, Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = ctl
            .call(Method::GET, "/v1/me", Some(&reader_key), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = ctl
            .call(Method::DELETE, &path, Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, list) = ctl
            .call(Method::GET, "/v1/api-keys", Some(&alice.access), None)
            .await;
        let listed = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|k| k["id"] == reader_id)
            .expect("listed");
        assert!(listed["revoked_at_ms"].as_i64().is_some());

        // Expired: made with a lifetime, then moved into the past.
        let (status, short) = create_key(
            &ctl,
            &alice.access,
            json!({ "name": "short", "expires_in_days": 1 }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let short_key = short["key"].as_str().expect("key");
        let expires = short["expires_at_ms"].as_i64().expect("expiry");
        assert!((expires - now_ms() - 86_400_000).abs() < 60_000);
        let (status, _) = ctl.call(Method::GET, "/v1/me", Some(short_key), None).await;
        assert_eq!(status, StatusCode::OK);
        sqlx::query("UPDATE api_keys SET expires_at_ms = $1 WHERE id = $2")
            .bind(now_ms() - 1)
            .bind(short["id"].as_str().expect("id"))
            .execute(ctl.state.db.pool())
            .await
            .expect("expire");
        // SQL outside the API: the key cache sees it at its next check
        // (at most 100 ms later; crosscutting/keycache.rs), asked for now.
        ctl.state.key_cache.check_next();
        let (status, _) = ctl.call(Method::GET, "/v1/me", Some(short_key), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let entries = actions(&audit(&ctl, &alice.access).await)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert_eq!(
            entries.iter().filter(|a| *a == "api_key_created").count(),
            5
        );
        assert_eq!(
            entries.iter().filter(|a| *a == "api_key_revoked").count(),
            1
        );
    }
);

both!(
    members_see_their_own_keys_and_admins_all,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let (status, _) = add_member(&ctl, &alice.access, &bob, "member").await;
        assert_eq!(status, StatusCode::OK);
        let bob_in_a = access_in(&ctl, &bob, &alice.tenant_id).await;
        let (_, alices) = create_key(&ctl, &alice.access, json!({ "name": "alice's" })).await;
        let (status, bobs) = create_key(&ctl, &bob_in_a, json!({ "name": "bob's" })).await;
        assert_eq!(status, StatusCode::CREATED, "{bobs}");
        let ids = |page: &Value| -> Vec<String> {
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|k| k["id"].as_str().expect("id").to_owned())
                .collect()
        };
        let (_, list) = ctl
            .call(Method::GET, "/v1/api-keys", Some(&bob_in_a), None)
            .await;
        assert_eq!(ids(&list), vec![bobs["id"].as_str().expect("id")]);
        let (_, list) = ctl
            .call(Method::GET, "/v1/api-keys", Some(&alice.access), None)
            .await;
        assert_eq!(ids(&list).len(), 2);
        // Bob cannot revoke Alice's key (he cannot see it); Alice can revoke his.
        let (status, _) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/api-keys/{}", alices["id"].as_str().expect("id")),
                Some(&bob_in_a),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = ctl
            .call(Method::GET, "/v1/me", alices["key"].as_str(), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/api-keys/{}", bobs["id"].as_str().expect("id")),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = ctl
            .call(Method::GET, "/v1/me", bobs["key"].as_str(), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
);

both!(roles_are_enforced, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let carol = ctl.register("carol").await;
    let dave = ctl.register("dave").await;
    let (status, added) = add_member(&ctl, &alice.access, &bob, "member").await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(
        (&added["user_id"], &added["role"]),
        (&json!(bob.user_id), &json!("member"))
    );
    let bob_in_a = access_in(&ctl, &bob, &alice.tenant_id).await;

    // A member reads the member list but changes nothing.
    let (status, list) = ctl
        .call(
            Method::GET,
            "/v1/tenants/current/members",
            Some(&bob_in_a),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().expect("items").len(), 2);
    let (status, body) = invite(&ctl, &bob_in_a, &carol.email, "member").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = set_role(&ctl, &bob_in_a, &bob.user_id, "admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = remove(&ctl, &bob_in_a, &alice.user_id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = ctl
        .call(Method::GET, "/v1/audit", Some(&bob_in_a), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Promoted, Bob's same token carries the new role at once.
    let (status, body) = set_role(&ctl, &alice.access, &bob.user_id, "admin").await;
    assert_eq!((status, &body["role"]), (StatusCode::OK, &json!("admin")));
    let (status, _) = add_member(&ctl, &bob_in_a, &carol, "member").await;
    assert_eq!(status, StatusCode::OK);
    // An admin grants neither owner nor admin and does not touch owners.
    let (status, _) = invite(&ctl, &bob_in_a, &dave.email, "owner").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = invite(&ctl, &bob_in_a, &dave.email, "admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = set_role(&ctl, &bob_in_a, &carol.user_id, "owner").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = set_role(&ctl, &bob_in_a, &alice.user_id, "member").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = remove(&ctl, &bob_in_a, &alice.user_id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Promoting is granting admin: owners only. Demoting an admin is not.
    let (status, _) = set_role(&ctl, &bob_in_a, &carol.user_id, "admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = set_role(&ctl, &alice.access, &carol.user_id, "admin").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = set_role(&ctl, &bob_in_a, &carol.user_id, "member").await;
    assert_eq!(status, StatusCode::OK);

    // Adding twice, unknown emails, unknown roles.
    let (status, body) = invite(&ctl, &alice.access, &bob.email, "member").await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("already_member"))
    );
    // An email without an account is invited like any other.
    let (status, _) = invite(&ctl, &alice.access, "ghost@example.com", "member").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = set_role(&ctl, &alice.access, &bob.user_id, "god").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The last owner stays.
    let (status, body) = set_role(&ctl, &alice.access, &alice.user_id, "admin").await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("last_owner"))
    );
    let (status, body) = remove(&ctl, &alice.access, &alice.user_id).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("last_owner"))
    );
    // With a second owner, the first may step down; then the second is last.
    let (status, _) = set_role(&ctl, &alice.access, &bob.user_id, "owner").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = set_role(&ctl, &alice.access, &alice.user_id, "admin").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = remove(&ctl, &bob_in_a, &bob.user_id).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("last_owner"))
    );
    let (status, _) = set_role(&ctl, &alice.access, &bob.user_id, "member").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an admin now, Alice cannot demote an owner"
    );

    // Any member may leave; their session in the tenant ends.
    let carol_in_a = access_in(&ctl, &carol, &alice.tenant_id).await;
    let (status, _) = remove(&ctl, &carol_in_a, &carol.user_id).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = ctl
        .call(Method::GET, "/v1/me", Some(&carol_in_a), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = remove(&ctl, &alice.access, &carol.user_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let entries = audit(&ctl, &bob_in_a).await;
    let seen = actions(&entries);
    for action in ["member_added", "role_changed", "member_removed"] {
        assert!(seen.contains(&action), "{action}: {seen:?}");
    }
    let promoted = entries
        .iter()
        .find(|e| e["action"] == "role_changed" && e["detail"]["to"] == "owner")
        .expect("owner grant audited");
    assert_eq!(promoted["user_id"], alice.user_id.as_str());
    assert_eq!(promoted["detail"]["member"], bob.user_id.as_str());
    assert_eq!(promoted["detail"]["from"], "admin");
});

both!(tenants_are_isolated, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let (_, key) = create_key(&ctl, &alice.access, json!({ "name": "alice's" })).await;
    let key_id = key["id"].as_str().expect("id");

    // Alice's member, key and tenant are not Bob's to see or touch.
    let (status, _) = set_role(&ctl, &bob.access, &alice.user_id, "member").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = remove(&ctl, &bob.access, &alice.user_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ctl
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{key_id}"),
            Some(&bob.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ctl
        .call(Method::GET, "/v1/me", key["key"].as_str(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "Alice's key survives");
    let (_, keys) = ctl
        .call(Method::GET, "/v1/api-keys", Some(&bob.access), None)
        .await;
    assert_eq!(keys["items"], json!([]));
    let (_, members) = ctl
        .call(
            Method::GET,
            "/v1/tenants/current/members",
            Some(&bob.access),
            None,
        )
        .await;
    let members = members["items"].as_array().expect("items");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["user_id"], bob.user_id.as_str());
    let (_, tenants) = ctl
        .call(Method::GET, "/v1/tenants", Some(&bob.access), None)
        .await;
    assert_eq!(tenants["items"].as_array().expect("items").len(), 1);
    assert_eq!(tenants["items"][0]["id"], bob.tenant_id.as_str());

    // Bob cannot open a session in Alice's tenant (or a made-up one).
    for tenant in [alice.tenant_id.as_str(), "ten_nope"] {
        let (status, body) = login(&ctl, &bob.email, &bob.password, Some(tenant)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.get("access_token").is_none());
    }

    // Bob's audit log holds his tenant's rows, all of them, and no others.
    let entries = audit(&ctl, &bob.access).await;
    assert!(!entries.is_empty());
    for entry in &entries {
        let tenant: Option<String> = sqlx::query("SELECT tenant_id FROM audit_log WHERE id = $1")
            .bind(entry["id"].as_str().expect("id"))
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("row")
            .get("tenant_id");
        assert_eq!(tenant.as_deref(), Some(bob.tenant_id.as_str()));
        assert_ne!(entry["user_id"], alice.user_id.as_str());
    }
    let in_tenant: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE tenant_id = $1")
        .bind(&bob.tenant_id)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
        .get("n");
    assert_eq!(entries.len() as i64, in_tenant);
    // Newest first.
    let times: Vec<i64> = entries
        .iter()
        .map(|e| e["at_ms"].as_i64().expect("at"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
});

both!(tenants_and_lists_paginate, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let mut made = Vec::new();
    for name in ["Two", "Three"] {
        let (status, t) = ctl
            .call(
                Method::POST,
                "/v1/tenants",
                Some(&alice.access),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{t}");
        assert_eq!((&t["name"], &t["role"]), (&json!(name), &json!("owner")));
        made.push(t["id"].as_str().expect("id").to_owned());
    }
    let (status, page1) = ctl
        .call(
            Method::GET,
            "/v1/tenants?limit=2",
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page1}");
    let cursor = page1["next_cursor"].as_str().expect("a next page");
    let (_, page2) = ctl
        .call(
            Method::GET,
            &format!("/v1/tenants?limit=2&cursor={cursor}"),
            Some(&alice.access),
            None,
        )
        .await;
    assert!(page2.get("next_cursor").is_none(), "{page2}");
    let ids: Vec<&str> = page1["items"]
        .as_array()
        .expect("items")
        .iter()
        .chain(page2["items"].as_array().expect("items"))
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![alice.tenant_id.as_str(), &made[0], &made[1]]);
    let (status, _) = ctl
        .call(
            Method::GET,
            "/v1/tenants?cursor=!!",
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Log in to a chosen tenant; the default stays the oldest.
    let in_two = access_in(&ctl, &alice, &made[0]).await;
    let (_, current) = ctl
        .call(Method::GET, "/v1/tenants/current", Some(&in_two), None)
        .await;
    assert_eq!(current["id"], made[0].as_str());
    let (_, default) = login(&ctl, &alice.email, &alice.password, None).await;
    assert_eq!(default["tenant_id"], alice.tenant_id.as_str());
    // Refreshing stays in the session's tenant.
    let (_, two) = login(&ctl, &alice.email, &alice.password, Some(&made[0])).await;
    let (_, rotated) = refresh(&ctl, two["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(rotated["tenant_id"], made[0].as_str());

    // A key sees only its own tenant.
    let (_, key) = create_key(&ctl, &in_two, json!({ "name": "k" })).await;
    let (_, listed) = ctl
        .call(Method::GET, "/v1/tenants", key["key"].as_str(), None)
        .await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);
    assert_eq!(listed["items"][0]["id"], made[0].as_str());

    // Members page too.
    for name in ["m1", "m2"] {
        let s = ctl.register(name).await;
        let (status, _) = add_member(&ctl, &alice.access, &s, "member").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, first) = ctl
        .call(
            Method::GET,
            "/v1/tenants/current/members?limit=2",
            Some(&alice.access),
            None,
        )
        .await;
    let cursor = first["next_cursor"].as_str().expect("next page");
    let (_, rest) = ctl
        .call(
            Method::GET,
            &format!("/v1/tenants/current/members?limit=2&cursor={cursor}"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(first["items"].as_array().expect("items").len(), 2);
    assert_eq!(rest["items"].as_array().expect("items").len(), 1);
    assert_eq!(first["items"][0]["user_id"], alice.user_id.as_str());
    assert_eq!(rest["items"][0]["email"], "m2@example.com");

    // The audit log pages without losing or repeating rows.
    let all = audit(&ctl, &alice.access).await;
    let (_, one_page) = ctl
        .call(
            Method::GET,
            "/v1/audit?limit=200",
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(one_page["items"].as_array().expect("items"), &all);
    assert!(all.len() >= 4, "{all:?}");
});

both!(
    concurrent_refreshes_rotate_once,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        // The same token presented eight times at once: exactly one rotation
        // wins; every other presentation is a reuse, which revokes the family,
        // the winner's new token included.
        let attempts = (0..8).map(|_| refresh(&ctl, &alice.refresh));
        let results = futures_util::future::join_all(attempts).await;
        let winners: Vec<&Value> = results
            .iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, body)| body)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert!(
            results
                .iter()
                .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
            "{results:?}"
        );
        let newest = winners[0]["refresh_token"].as_str().expect("refresh");
        let (status, _) = refresh(&ctl, newest).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
);

both!(
    owners_demoting_each_other_at_once_keep_one,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let (status, _) = add_member(&ctl, &alice.access, &bob, "owner").await;
        assert_eq!(status, StatusCode::OK);
        let bob_in_a = access_in(&ctl, &bob, &alice.tenant_id).await;
        let (a, b) = tokio::join!(
            set_role(&ctl, &alice.access, &bob.user_id, "member"),
            set_role(&ctl, &bob_in_a, &alice.user_id, "member"),
        );
        let ok = [&a, &b]
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .count();
        assert_eq!(ok, 1, "{a:?} {b:?}");
        let owners: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM memberships WHERE tenant_id = $1 AND role = 'owner'",
        )
        .bind(&alice.tenant_id)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
        .get("n");
        assert_eq!(owners, 1);
    }
);
