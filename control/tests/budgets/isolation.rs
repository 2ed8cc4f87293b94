//! Tenant isolation and node authentication.

#[allow(unused_imports)]
use super::*;

both!(
    another_tenants_ids_answer_404_everywhere,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let bot = w.agent("bot", Some(&main), 100).await;
        w.set(
            &main,
            json!({ "auto_approve_limit": 0, "max_request": 100 }),
        )
        .await;
        let (_, req) = w.ask(&bot, 10).await;
        let req = s(&req["id"]);
        let mallory = w.ctl.register("mallory").await;
        let m = Some(mallory.access.as_str());
        for (method, path, body) in [
            (Method::GET, format!("/v1/agents/{main}/budget"), None),
            (
                Method::PUT,
                format!("/v1/agents/{main}/budget"),
                Some(json!({ "allocated": 0 })),
            ),
            (
                Method::POST,
                format!("/v1/agents/{bot}/token-requests"),
                Some(json!({ "amount": 1 })),
            ),
            (Method::GET, format!("/v1/token-requests/{req}"), None),
            (
                Method::POST,
                format!("/v1/token-requests/{req}/approve"),
                None,
            ),
            (Method::POST, format!("/v1/token-requests/{req}/deny"), None),
            (
                Method::GET,
                format!("/v1/budget/users/{}", w.alice.user_id),
                None,
            ),
            // (PUT /v1/budget/users/{id} is for operators only: 403 before
            // any lookup, see tiers_change_the_pool_but_not_below_what_is_allocated.)
        ] {
            let (status, answer) = w.ctl.call(method.clone(), &path, m, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        }
        let (status, list) = w
            .ctl
            .call(
                Method::GET,
                &format!("/v1/token-requests?agent_id={bot}"),
                m,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"], json!([]));
        let (_, theirs) = w.ctl.call(Method::GET, "/v1/budget", m, None).await;
        assert_eq!(theirs["main_agents"], json!([]));
        // Nothing changed.
        assert_eq!(n(&w.budget(&main).await["allocated"]), 900);
        let (_, body) = w
            .call(Method::GET, &format!("/v1/token-requests/{req}"), None)
            .await;
        assert_eq!(body["status"], "pending");
    }
);

both!(
    node_routes_need_a_node_credential,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let (_, lease) = w.lease(&main, 10, 1).await;
        let lease = s(&lease["lease_id"]);
        let routes = [
            (
                Method::POST,
                "/v1/nodes/leases".to_owned(),
                Some(json!({ "node_id": "n1", "agent_id": main, "amount": 5 })),
            ),
            (
                Method::POST,
                format!("/v1/nodes/leases/{lease}/return"),
                Some(json!({ "node_id": "n1", "spent": 5 })),
            ),
            (Method::GET, format!("/v1/nodes/budgets/{main}"), None),
            (
                Method::POST,
                "/v1/nodes/token-requests".to_owned(),
                Some(json!({ "node_id": "n1", "agent_id": main, "amount": 5, "reason": "" })),
            ),
            (
                Method::GET,
                format!("/v1/nodes/token-requests/tkr_x?agent_id={main}"),
                None,
            ),
        ];
        for (method, path, body) in routes {
            for token in [
                None,
                Some("ncr_0123456789abcdef.not-the-secret"),
                Some(w.alice.access.as_str()),
            ] {
                let (status, answer) = w.ctl.call(method.clone(), &path, token, body.clone()).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {token:?}: {answer}"
                );
            }
        }
        // Nothing was returned or leased.
        let bal = w.budget(&main).await;
        assert_eq!((n(&bal["leased"]), n(&bal["spent"])), (10, 0));
    }
);

both!(entries_are_append_only, |ctl: Control| async move {
    let w = world(ctl).await;
    let main = w.agent("main", None, 100).await;
    let pool = w.ctl.state.db.pool();
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM budget_entries")
        .fetch_one(pool)
        .await
        .expect("count");
    assert!(before >= 3);
    assert!(
        sqlx::query("UPDATE budget_entries SET amount = amount + 1")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM budget_entries WHERE agent_id = $1")
            .bind(&main)
            .execute(pool)
            .await
            .is_err()
    );
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM budget_entries")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(before, after);
    check_conservation(&w.ctl).await;
});
