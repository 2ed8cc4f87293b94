//! Allocation from the user's pool to main agents and bots, and tiers.

#[allow(unused_imports)]
use super::*;

both!(
    allocation_from_pool_to_main_agents_and_bots,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let me = w.mine().await;
        assert_eq!(me["tier"], "developer");
        assert_eq!(n(&me["monthly_allocation"]), 10_000);
        assert_eq!(n(&me["pool"]), 10_000);
        assert_eq!(me["period"], delta_control::db::utc_month(now_ms()));

        let main = w.agent("main", None, 3_000).await;
        let bot = w.agent("bot", Some(&main), 500).await;
        let me = w.mine().await;
        assert_eq!(n(&me["pool"]), 7_000);
        assert_eq!(n(&me["allocated"]), 3_000);
        assert_eq!(me["main_agents"].as_array().map(Vec::len), Some(1));
        assert_eq!(n(&me["main_agents"][0]["allocated"]), 2_500);
        let b = w.budget(&bot).await;
        assert_eq!(
            (n(&b["allocated"]), n(&b["available"]), n(&b["grant"])),
            (500, 500, 500)
        );
        assert_eq!(b["kind"], "bot");
        assert_eq!(s(&b["parent_agent_id"]), main);
        assert_eq!(s(&b["user_id"]), w.alice.user_id);

        // More than the parent holds: refused, and nothing is stored.
        let (status, body) = w
            .try_agent(&w.alice.access, "greedy-bot", Some(&main), 2_501)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        assert_eq!(n(&body["details"]["available"]), 2_500);
        let (status, body) = w
            .try_agent(&w.alice.access, "greedy-main", None, 7_001)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(n(&body["details"]["available"]), 7_000);
        let (_, agents) = w.call(Method::GET, "/v1/agents", None).await;
        assert_eq!(
            agents["items"].as_array().map(Vec::len),
            Some(2),
            "{agents}"
        );
        // The pool can be taken exactly.
        let all = w.agent("all-of-it", None, 7_000).await;
        assert_eq!(n(&w.mine().await["pool"]), 0);
        let (status, body) = w.set(&all, json!({ "allocated": 7_001 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        let (status, _) = w.set(&all, json!({ "allocated": 1_000 })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(n(&w.mine().await["pool"]), 6_000);

        // Moving tokens between a bot and its main agent.
        let (status, body) = w.set(&bot, json!({ "allocated": 1_500 })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(n(&body["allocated"]), 1_500);
        assert_eq!(n(&body["grant"]), 1_500);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 1_500);
        let (status, body) = w.set(&bot, json!({ "allocated": 3_001 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(n(&body["details"]["available"]), 1_500);
        // Growing a main agent takes from the pool, shrinking gives back.
        let (status, body) = w.set(&main, json!({ "allocated": 2_000 })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(n(&body["grant"]), 3_500);
        assert_eq!(n(&w.mine().await["pool"]), 5_500);

        // Not below what is spent and leased.
        let (status, lease) = w.lease(&bot, 1_000, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{lease}");
        let (status, body) = w.set(&bot, json!({ "allocated": 999 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        assert_eq!(n(&body["details"]["minimum"]), 1_000);
        let (status, _) = w.set(&bot, json!({ "allocated": 1_000 })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 2_500);

        // Limits are a main agent's; bad values are refused.
        let (status, body) = w.set(&bot, json!({ "max_request": 5 })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = w.set(&main, json!({ "allocated": u64::MAX })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = w
            .set(
                &main,
                json!({ "auto_approve_limit": 10, "max_request": 20 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (n(&body["auto_approve_limit"]), n(&body["max_request"])),
            (10, 20)
        );

        // A member may read but not change budgets.
        let bob = w.member("bob", "member").await;
        let (status, _) = w
            .ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{main}/budget"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = w
            .ctl
            .call(
                Method::PUT,
                &format!("/v1/agents/{main}/budget"),
                Some(&bob.access),
                Some(json!({ "allocated": 1 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Deleting the bot gives its unspent tokens back to its main agent;
        // what it spent stays spent until the period ends.
        let lease_id = s(&lease["lease_id"]);
        let (status, back) = w.give_back(&lease_id, 300).await;
        assert_eq!(status, StatusCode::OK, "{back}");
        let (status, _) = w
            .call(Method::DELETE, &format!("/v1/agents/{bot}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 2_500 + 700);
        let me = w.mine().await;
        assert_eq!(n(&me["retired"]), 300);
        // And a main agent's go back to the pool.
        let (status, _) = w
            .call(Method::DELETE, &format!("/v1/agents/{all}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(n(&w.mine().await["pool"]), 6_500);
        let actions: Vec<String> = audit_actions(&w)
            .await
            .iter()
            .map(|e| s(&e["action"]))
            .collect();
        assert!(
            actions.iter().any(|a| a == "agent_budget_changed"),
            "{actions:?}"
        );
        check_conservation(&w.ctl).await;
    }
);

both!(
    tiers_change_the_pool_but_not_below_what_is_allocated,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let me = &w.alice.user_id;
        w.agent("main", None, 3_000).await;
        // Tiers are the platform operator's; the tenant's owner may not
        // change their own (see control/tests/api/security.rs for the attack itself).
        let op = w.ctl.operator().await;
        let tenant = w.alice.tenant_id.clone();
        let as_operator = |path: String, tier: &'static str| {
            let (ctl, token, tenant) = (&w.ctl, op.access.clone(), tenant.clone());
            async move {
                ctl.call(
                    Method::PUT,
                    &path,
                    Some(&token),
                    Some(json!({ "tier": tier, "tenant_id": tenant })),
                )
                .await
            }
        };
        let (status, body) = as_operator(format!("/v1/budget/users/{me}"), "team").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["tier"], "team");
        assert_eq!(n(&body["monthly_allocation"]), 100_000);
        assert_eq!(n(&body["pool"]), 97_000);
        let (status, body) = as_operator(format!("/v1/budget/users/{me}"), "free").await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "below_allocated");
        assert_eq!(n(&body["details"]["allocated"]), 3_000);
        let (status, body) = as_operator(format!("/v1/budget/users/{me}"), "platinum").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(n(&w.mine().await["pool"]), 97_000);

        // Another member: their own budget appears on first use; an admin sees
        // and changes it; they may not.
        let bob = w.member("bob", "member").await;
        let (status, his) = w
            .ctl
            .call(Method::GET, "/v1/budget", Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{his}");
        assert_eq!(
            (s(&his["user_id"]), n(&his["pool"])),
            (bob.user_id.clone(), 10_000)
        );
        let path = format!("/v1/budget/users/{}", bob.user_id);
        let (status, _) = w
            .ctl
            .call(
                Method::PUT,
                &path,
                Some(&bob.access),
                Some(json!({ "tier": "team" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = w
            .ctl
            .call(Method::GET, &path, Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = as_operator(path.clone(), "free").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(n(&body["pool"]), 1_000);
        let (status, body) = w.call(Method::GET, &path, None).await;
        assert_eq!(
            (status, body["tier"].clone()),
            (StatusCode::OK, json!("free"))
        );
        // Someone who is not a member of the tenant.
        let carol = w.ctl.register("carol").await;
        let (status, _) = w
            .call(
                Method::GET,
                &format!("/v1/budget/users/{}", carol.user_id),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let actions: Vec<String> = audit_actions(&w)
            .await
            .iter()
            .map(|e| s(&e["action"]))
            .collect();
        assert_eq!(
            actions
                .iter()
                .filter(|a| *a == "budget_tier_changed")
                .count(),
            2,
            "{actions:?}"
        );
        check_conservation(&w.ctl).await;
    }
);
