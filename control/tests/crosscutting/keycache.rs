//! The verified-key cache (issue 15, `delta_control::keycache`): a key
//! answered from one replica's cache is refused there, and on every other
//! replica, once it is revoked, its user removed, or answered with the new
//! role once the role changes, on the same database.

use super::*;
use delta_control::keycache::CHECK_EVERY_MS;

/// Longer than a replica may go without reading the auth generation.
async fn past_the_check_period() {
    tokio::time::sleep(Duration::from_millis(CHECK_EVERY_MS as u64 + 150)).await;
}

/// `GET /v1/tenants/current` with `key` (and `X-App-ID`, if any).
async fn current(ctl: &Control, key: &str) -> (StatusCode, Value) {
    let response = ctl
        .client
        .get(ctl.url("/v1/tenants/current"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A new key of `s` in `tenant`: its id and the key.
async fn key_in(ctl: &Control, s: &Session, tenant: &str) -> (String, String) {
    let response = ctl
        .client
        .post(ctl.url("/v1/api-keys"))
        .bearer_auth(&s.access)
        .header("x-app-id", tenant)
        .json(&json!({ "name": "cached" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["key"].as_str().expect("key").to_owned(),
    )
}

both!(
    a_revoked_key_is_refused_by_every_replica,
    |a: Control| async move {
        let b = a.replica().await;
        let alice = a.register("alice").await;
        let (id, key) = key_in(&a, &alice, &alice.tenant_id).await;
        for replica in [&a, &b, &b] {
            let (status, body) = current(replica, &key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, body) = a
            .call(
                Method::DELETE,
                &format!("/v1/api-keys/{id}"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        // The replica that revoked it refuses it on the very next request.
        let (status, body) = current(&a, &key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        past_the_check_period().await;
        for replica in [&b, &a] {
            let (status, body) = current(replica, &key).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        }
    }
);

both!(
    a_role_change_and_a_removal_reach_every_replica,
    |a: Control| async move {
        let b = a.replica().await;
        let alice = a.register("alice").await;
        let bob = a.register("bob").await;
        let (status, body) = a.invite_and_accept(&alice.access, &bob, "member").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, key) = key_in(&a, &bob, &alice.tenant_id).await;
        for replica in [&a, &b, &a, &b] {
            let (status, body) = current(replica, &key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["role"], "member");
        }
        let member = format!("/v1/tenants/current/members/{}", bob.user_id);
        let (status, body) = a
            .call(
                Method::PATCH,
                &member,
                Some(&alice.access),
                Some(json!({ "role": "admin" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = current(&a, &key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "admin", "the replica that changed it");
        past_the_check_period().await;
        let (status, body) = current(&b, &key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "admin", "the replica answered a stale role");
        let (status, body) = a
            .call(Method::DELETE, &member, Some(&alice.access), None)
            .await;
        assert!(status.is_success(), "{status} {body}");
        past_the_check_period().await;
        let (status, body) = current(&b, &key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
);

both!(
    a_change_made_outside_the_api_is_seen_too,
    |a: Control| async move {
        // Triggers bump the generation, so even a change no handler made
        // (an operator's SQL) drops the cached key.
        let b = a.replica().await;
        let alice = a.register("alice").await;
        let (id, key) = key_in(&a, &alice, &alice.tenant_id).await;
        for _ in 0..2 {
            let (status, body) = current(&b, &key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(&id)
            .execute(a.state.db.pool())
            .await
            .expect("delete");
        past_the_check_period().await;
        let (status, body) = current(&b, &key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
);
