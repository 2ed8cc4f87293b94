//! Another tenant's ids answer 404 on every route.

use super::*;

both!(another_tenant_s_ids_answer_404, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let t = create_template(&ctl, &alice.access, welcome("welcome")).await;
    let id = s(&t["id"]);
    // An agent row of Alice's (no node is needed to prove isolation).
    sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, kind, parent_agent_id, component, limits, \
         grants, paused, node_id, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, 'a', 'main', NULL, $3, '{}', $4, 0, NULL, 1, 1)",
    )
    .bind("agt_alice")
    .bind(&alice.tenant_id)
    .bind("ab".repeat(32))
    .bind(json!({ "recipients": ["ada@example.com"] }).to_string())
    .execute(ctl.state.db.pool())
    .await
    .expect("agent row");

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/templates/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/templates/{id}"),
            Some(json!({ "body": "mine" })),
        ),
        (Method::DELETE, format!("/v1/templates/{id}"), None),
        (Method::POST, format!("/v1/templates/{id}/approve"), None),
        (
            Method::POST,
            format!("/v1/templates/{id}/reject"),
            Some(json!({ "reason": "r" })),
        ),
        (Method::GET, "/v1/agents/agt_alice/recipients".into(), None),
        (
            Method::PUT,
            "/v1/agents/agt_alice/recipients".into(),
            Some(json!({ "recipients": ["eve@evil.test"] })),
        ),
        (
            Method::PUT,
            "/v1/agents/agt_alice/recipients".into(),
            Some(json!({ "recipients": ["bad"] })),
        ),
        (
            Method::DELETE,
            "/v1/agents/agt_alice/recipients/ada@example.com".into(),
            None,
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = call(&ctl, method.clone(), &path, &bob.access, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(!answer.to_string().contains("Welcome"), "{answer}");
    }
    let (_, list) = call(&ctl, Method::GET, "/v1/templates", &bob.access, None).await;
    assert_eq!(list["items"], json!([]));
    // Nothing changed for Alice.
    let (_, mine) = call(
        &ctl,
        Method::GET,
        &format!("/v1/templates/{id}"),
        &alice.access,
        None,
    )
    .await;
    assert_eq!(mine, t);
    let (_, recipients) = call(
        &ctl,
        Method::GET,
        "/v1/agents/agt_alice/recipients",
        &alice.access,
        None,
    )
    .await;
    assert_eq!(recipients["recipients"], json!(["ada@example.com"]));
});

// ---- recipients and the node ---------------------------------------------------------
