//! `X-App-ID` (seed 004): the tenant a request acts in.

#[allow(unused_imports)]
use super::*;

/// A request with a bearer token and an `X-App-ID`.
async fn as_app(
    ctl: &Control,
    method: Method,
    path: &str,
    token: &str,
    app: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = ctl
        .client
        .request(method, ctl.url(path))
        .bearer_auth(token)
        .header("X-App-ID", app);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

on_both!(
    a_session_acts_in_the_tenant_x_app_id_names_and_only_in_its_own,
    |dialect| async move {
        let ctl = Control::start(dialect).await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let carol = ctl.register("carol").await;
        // Bob joins Alice's tenant as an admin; his session is still his own.
        let (status, body) = ctl.invite_and_accept(&alice.access, &bob, "admin").await;
        assert!(status.is_success(), "{body}");

        // Without the header: his login's tenant.
        let (status, me) = ctl
            .call(Method::GET, "/v1/me", Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["tenant_id"], bob.tenant_id.as_str());
        // With it: Alice's, with his role there, for reads and writes.
        let (status, me) = as_app(
            &ctl,
            Method::GET,
            "/v1/me",
            &bob.access,
            &alice.tenant_id,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["tenant_id"], alice.tenant_id.as_str());
        assert_eq!(me["role"], "admin");
        let (status, key) = as_app(
            &ctl,
            Method::POST,
            "/v1/api-keys",
            &bob.access,
            &alice.tenant_id,
            Some(json!({ "name": "made-in-alices" })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let (_, keys) = ctl
            .call(Method::GET, "/v1/api-keys", Some(&alice.access), None)
            .await;
        assert!(
            keys["items"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["name"] == "made-in-alices")),
            "{keys}"
        );
        // The audit entry is in Alice's tenant.
        let (_, audit) = ctl
            .call(Method::GET, "/v1/audit", Some(&alice.access), None)
            .await;
        assert!(
            audit["items"]
                .as_array()
                .is_some_and(|entries| entries.iter().any(|e| {
                    e["user_id"] == bob.user_id.as_str()
                        && e["action"].as_str().is_some_and(|a| a.contains("api_key"))
                })),
            "{audit}"
        );

        // Carol's tenant (exists, Bob is no member) and a tenant that does
        // not exist answer alike: nothing learnt about either.
        let (status, foreign) = as_app(
            &ctl,
            Method::GET,
            "/v1/agents",
            &bob.access,
            &carol.tenant_id,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{foreign}");
        assert_eq!(foreign["code"], "app_not_allowed");
        let (status, unknown) = as_app(
            &ctl,
            Method::GET,
            "/v1/agents",
            &bob.access,
            "ten_nosuchtenant",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{unknown}");
        assert_eq!(unknown["code"], foreign["code"]);
        assert_eq!(unknown["message"], foreign["message"]);
        // Malformed: 400 before anything.
        for bad in ["", "ten x", "ten/../x"] {
            let (status, body) =
                as_app(&ctl, Method::GET, "/v1/agents", &bob.access, bad, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
            assert_eq!(body["code"], "invalid_app_id");
        }
        // Carol's own tenant never saw a thing.
        let (_, carol_keys) = ctl
            .call(Method::GET, "/v1/api-keys", Some(&carol.access), None)
            .await;
        assert_eq!(
            carol_keys["items"].as_array().map(Vec::len),
            Some(0),
            "{carol_keys}"
        );
    }
);

on_both!(
    an_api_key_acts_only_in_its_own_tenant,
    |dialect| async move {
        let ctl = Control::start(dialect).await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let (status, body) = ctl.invite_and_accept(&alice.access, &bob, "admin").await;
        assert!(status.is_success(), "{body}");
        let (status, key) = ctl
            .call(
                Method::POST,
                "/v1/api-keys",
                Some(&bob.access),
                Some(json!({ "name": "bobs" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key = key["key"].as_str().expect("key").to_owned();
        let (status, me) = as_app(&ctl, Method::GET, "/v1/me", &key, &bob.tenant_id, None).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        // Bob may act in Alice's tenant with a session, but this key is his
        // personal tenant's.
        let (status, body) =
            as_app(&ctl, Method::GET, "/v1/me", &key, &alice.tenant_id, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "app_not_allowed");
    }
);
