//! Token requests from bots to their parents and their decisions.

#[allow(unused_imports)]
use super::*;

both!(
    token_requests_auto_approve_pend_and_are_decided,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 2_000).await;
        let bot = w.agent("bot", Some(&main), 100).await;
        // Limits default to 0: nothing may be asked yet.
        let (status, body) = w.ask(&bot, 1).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "invalid_amount");
        assert_eq!(n(&body["details"]["limit"]), 0);
        let (status, _) = w
            .set(
                &main,
                json!({ "auto_approve_limit": 100, "max_request": 1_000 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // Within the auto-approve limit: approved at once, tokens moved.
        let (status, auto) = w.ask(&bot, 80).await;
        assert_eq!(status, StatusCode::CREATED, "{auto}");
        assert_eq!(auto["status"], "approved");
        assert_eq!(n(&auto["amount"]), 80);
        assert_eq!(auto["reason"], "more work");
        assert!(s(&auto["id"]).starts_with("tkr_"));
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 180);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 1_820);
        // Above it: pending, nothing moved.
        let (status, pending) = w.ask(&bot, 500).await;
        assert_eq!(status, StatusCode::CREATED, "{pending}");
        assert_eq!(pending["status"], "pending");
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 180);
        // The guest polls it.
        let pid = s(&pending["id"]);
        let (status, polled) = w
            .node(
                Method::GET,
                &format!("/v1/nodes/token-requests/{pid}?agent_id={bot}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{polled}");
        assert_eq!(polled, pending);
        let (status, _) = w
            .node(
                Method::GET,
                &format!("/v1/nodes/token-requests/{pid}?agent_id={main}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Out of bounds, and a main agent asking.
        for amount in [0, 1_001] {
            let (status, body) = w.ask(&bot, amount).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["code"], "invalid_amount");
            assert_eq!(n(&body["details"]["limit"]), 1_000);
        }
        let (status, body) = w.ask(&main, 10).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "no_parent");
        let (status, _) = w.ask("agt_nope", 10).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Approve: tokens move; a second decision is refused.
        let (status, approved) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{pid}/approve"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!(approved["status"], "approved");
        assert_eq!(s(&approved["decided_by"]), w.alice.user_id);
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 680);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 1_320);
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{pid}/deny"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "not_pending");

        // Through the API, same rules; then denied.
        let (status, via_api) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{bot}/token-requests"),
                Some(json!({ "amount": 900, "reason": "batch job" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{via_api}");
        assert_eq!(via_api["status"], "pending");
        assert_eq!(s(&via_api["parent_agent_id"]), main);
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{main}/token-requests"),
                Some(json!({ "amount": 5 })),
            )
            .await;
        assert_eq!(
            (status, s(&body["code"])),
            (StatusCode::CONFLICT, "no_parent".into())
        );
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{bot}/token-requests"),
                Some(json!({ "amount": 0 })),
            )
            .await;
        assert_eq!(
            (status, s(&body["code"])),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount".into())
        );
        let denied_id = s(&via_api["id"]);
        let (status, denied) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{denied_id}/deny"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{denied}");
        assert_eq!(denied["status"], "denied");
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 680);

        // Approval when the main agent can no longer cover it: 409, still
        // pending.
        let (_, big) = w.ask(&bot, 1_000).await;
        assert_eq!(big["status"], "pending");
        let (status, lease) = w.lease(&main, 1_000, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{lease}");
        let big_id = s(&big["id"]);
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{big_id}/approve"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        assert_eq!(n(&body["details"]["available"]), 320);
        let (status, body) = w
            .call(Method::GET, &format!("/v1/token-requests/{big_id}"), None)
            .await;
        assert_eq!(
            (status, s(&body["status"])),
            (StatusCode::OK, "pending".into())
        );
        // An auto-approvable amount the main agent cannot cover waits too.
        let (status, lease2) = w.lease(&main, 320, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{lease2}");
        let (_, waits) = w.ask(&bot, 50).await;
        assert_eq!(waits["status"], "pending");

        // Listing, filtered and paginated.
        let (status, all) = w
            .call(Method::GET, "/v1/token-requests?limit=2", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
        let cursor = s(&all["next_cursor"]);
        let (_, rest) = w
            .call(
                Method::GET,
                &format!("/v1/token-requests?limit=50&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(rest["items"].as_array().map(Vec::len), Some(3), "{rest}");
        let (_, pending_list) = w
            .call(
                Method::GET,
                &format!("/v1/token-requests?status=pending&agent_id={main}"),
                None,
            )
            .await;
        let ids: Vec<String> = pending_list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| s(&r["id"]))
            .collect();
        assert_eq!(ids, vec![big_id.clone(), s(&waits["id"])]);
        let (status, _) = w
            .call(Method::GET, "/v1/token-requests?status=maybe", None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        // Pending requests expire after the TTL.
        let db = &w.ctl.state.db;
        let ttl = 7 * 24 * 3_600 * 1_000;
        assert_eq!(
            budgets::expire_requests(db, now_ms(), ttl)
                .await
                .expect("sweep"),
            0
        );
        assert_eq!(
            budgets::expire_requests(db, now_ms() + ttl, ttl)
                .await
                .expect("sweep"),
            2
        );
        let (_, body) = w
            .call(Method::GET, &format!("/v1/token-requests/{big_id}"), None)
            .await;
        assert_eq!(
            (s(&body["status"]), s(&body["decided_by"])),
            ("expired".into(), "expiry".into())
        );

        // Every decision is audited.
        let entries = audit_actions(&w).await;
        let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
        assert_eq!(count("token_request_approved"), 2, "auto and manual");
        assert_eq!(count("token_request_denied"), 1);
        assert_eq!(count("token_request_expired"), 2);
        assert_eq!(count("token_request_created"), 5);
        let manual = entries
            .iter()
            .find(|e| {
                e["action"] == "token_request_approved" && e["detail"]["decided_by"] != "auto"
            })
            .expect("manual approval");
        assert_eq!(s(&manual["user_id"]), w.alice.user_id);
        check_conservation(&w.ctl).await;
    }
);

both!(
    the_main_agents_owner_decides_other_members_may_not,
    |ctl: Control| async move {
        let w = world(ctl).await;
        // Bob creates a main agent and a bot as an admin, then becomes a
        // member: he still owns them.
        let bob = w.member("bob", "admin").await;
        let (status, main) = w.try_agent(&bob.access, "bobs-main", None, 1_000).await;
        assert_eq!(status, StatusCode::CREATED, "{main}");
        let main = s(&main["id"]);
        let (status, bot) = w.try_agent(&bob.access, "bobs-bot", Some(&main), 0).await;
        assert_eq!(status, StatusCode::CREATED, "{bot}");
        let bot = s(&bot["id"]);
        let (status, _) = w
            .call(
                Method::PATCH,
                &format!("/v1/tenants/current/members/{}", bob.user_id),
                Some(json!({ "role": "member" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Bob's budget carried the main agent, not alice's.
        let (_, his) = w
            .ctl
            .call(Method::GET, "/v1/budget", Some(&bob.access), None)
            .await;
        assert_eq!(n(&his["pool"]), 9_000, "{his}");
        assert_eq!(n(&w.mine().await["pool"]), 10_000);
        let (status, _) = w
            .set(
                &main,
                json!({ "auto_approve_limit": 0, "max_request": 500 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let carol = w.member("carol", "member").await;
        let path = format!("/v1/agents/{bot}/token-requests");
        let (status, _) = w
            .ctl
            .call(
                Method::POST,
                &path,
                Some(&carol.access),
                Some(json!({ "amount": 10 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, req) = w
            .ctl
            .call(
                Method::POST,
                &path,
                Some(&bob.access),
                Some(json!({ "amount": 10 })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let approve = format!("/v1/token-requests/{}/approve", s(&req["id"]));
        let (status, _) = w
            .ctl
            .call(Method::POST, &approve, Some(&carol.access), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = w
            .ctl
            .call(Method::POST, &approve, Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(s(&body["decided_by"]), bob.user_id);
        // Carol may read it.
        let (status, _) = w
            .ctl
            .call(
                Method::GET,
                &format!("/v1/token-requests/{}", s(&req["id"])),
                Some(&carol.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        check_conservation(&w.ctl).await;
    }
);
