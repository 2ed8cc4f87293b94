//! Node leases: grant, partial, refusal, return, overspend, expiry, late return.

#[allow(unused_imports)]
use super::*;

both!(
    leases_are_granted_partly_refused_and_returned_once,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let (status, a) = w.lease(&main, 600, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{a}");
        assert_eq!(n(&a["granted"]), 600);
        assert!(s(&a["lease_id"]).starts_with("lse_"));
        assert_eq!(s(&a["agent_id"]), main);
        let ttl = a["expires_at_ms"].as_i64().expect("expiry") - now_ms();
        assert!((100_000..=121_000).contains(&ttl), "{ttl}");
        // Partial: only 400 left.
        let (status, b) = w.lease(&main, 600, 100).await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
        assert_eq!(n(&b["granted"]), 400);
        // Nothing left.
        let (status, refused) = w.lease(&main, 10, 1).await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert_eq!(refused["code"], "budget_exhausted");
        assert_eq!(n(&refused["details"]["available"]), 0);
        let (status, body) = w
            .node(Method::GET, &format!("/v1/nodes/budgets/{main}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (
                n(&body["allocated"]),
                n(&body["spent"]),
                n(&body["reserved"]),
                n(&body["available"])
            ),
            (1_000, 0, 1_000, 0)
        );
        assert_eq!(body["period"], delta_control::db::utc_month(now_ms()));

        // Another node cannot return it: naming itself, the lease is not
        // its own; naming the holder, the credential is not the holder's.
        let (status, body) = w
            .node_as(
                "n2",
                Method::POST,
                &format!("/v1/nodes/leases/{}/return", s(&a["lease_id"])),
                Some(json!({ "node_id": "n1", "spent": 0 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "wrong_node");
        let (status, body) = w
            .node_as(
                "n2",
                Method::POST,
                &format!("/v1/nodes/leases/{}/return", s(&a["lease_id"])),
                Some(json!({ "node_id": "n2", "spent": 0 })),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // Return 250 of 600: 350 back, 250 charged.
        let (status, back) = w.give_back(&s(&a["lease_id"]), 250).await;
        assert_eq!(status, StatusCode::OK, "{back}");
        assert_eq!(
            (
                n(&back["charged"]),
                n(&back["returned"]),
                n(&back["uncovered"])
            ),
            (250, 350, 0)
        );
        assert_eq!(back["status"], "returned");
        // Again, even with another figure: the first result, changing nothing.
        let (status, again) = w.give_back(&s(&a["lease_id"]), 599).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again, back);
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (250, 400, 350)
        );
        // min_amount above what is left.
        let (status, refused) = w.lease(&main, 1_000, 351).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(n(&refused["details"]["available"]), 350);

        // Overspend: 400 granted, 900 spent; 350 more is available, so 750 is
        // charged and 150 is uncovered; nothing goes negative.
        let (status, over) = w.give_back(&s(&b["lease_id"]), 900).await;
        assert_eq!(status, StatusCode::OK, "{over}");
        assert_eq!(
            (
                n(&over["charged"]),
                n(&over["returned"]),
                n(&over["uncovered"])
            ),
            (750, 0, 150)
        );
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (1_000, 0, 0)
        );

        // Malformed and unknown.
        for (body, want) in [
            (
                json!({ "node_id": "n1", "agent_id": main, "amount": 0 }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "node_id": "n1", "agent_id": main, "amount": 5, "min_amount": 6 }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "node_id": "", "agent_id": main, "amount": 5 }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "node_id": "n1", "agent_id": "agt_nope", "amount": 5 }),
                StatusCode::NOT_FOUND,
            ),
        ] {
            let (status, answer) = w.node(Method::POST, "/v1/nodes/leases", Some(body)).await;
            assert_eq!(status, want, "{answer}");
        }
        let (status, _) = w.give_back("lse_nope", 1).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = w
            .node(Method::GET, "/v1/nodes/budgets/agt_nope", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        check_conservation(&w.ctl).await;
    }
);

both!(
    expired_leases_count_as_spent_until_a_late_return_corrects_them_once,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let (_, a) = w.lease(&main, 700, 1).await;
        let (_, b) = w.lease(&main, 200, 1).await;
        let a_id = s(&a["lease_id"]);
        let expiry = a["expires_at_ms"].as_i64().expect("expiry");
        let db = &w.ctl.state.db;
        // Not yet due.
        assert_eq!(
            budgets::expire_leases(db, expiry - 1).await.expect("sweep"),
            0
        );
        assert_eq!(n(&w.budget(&main).await["leased"]), 900);
        // Return b before the sweep: only a expires.
        let (status, _) = w.give_back(&s(&b["lease_id"]), 50).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            budgets::expire_leases(db, expiry + 60_000)
                .await
                .expect("sweep"),
            1
        );
        assert_eq!(
            budgets::expire_leases(db, expiry + 60_000)
                .await
                .expect("sweep"),
            0
        );
        // Its node may have died having served all of it: the whole grant
        // counts as spent, provisionally, so nothing can be overspent.
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (750, 0, 250)
        );
        let provisional = |agent: String| {
            let w = &w;
            async move {
                let (status, page) = w
                    .call(
                        Method::GET,
                        &format!("/v1/agents/{agent}/budget/leases?provisional=true"),
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{page}");
                page["items"].as_array().expect("items").clone()
            }
        };
        let listed = provisional(main.clone()).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(s(&listed[0]["lease_id"]), a_id);
        assert_eq!(listed[0]["provisional"], true);
        assert_eq!(n(&listed[0]["provisional_spent"]), 700);
        assert_eq!(listed[0]["status"], "expired");
        // The tenant-wide view (admins, operators) shows it too.
        let (status, all) = w
            .call(Method::GET, "/v1/budget/leases?provisional=true", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
        check_conservation(&w.ctl).await;
        // Someone takes the rest meanwhile.
        let (_, c) = w.lease(&main, 900, 1).await;
        assert_eq!(n(&c["granted"]), 250);
        // The node, started again, finds what it has not returned.
        let unreturned = || async {
            let (status, page) = w
                .node(
                    Method::GET,
                    &format!("/v1/nodes/leases?node_id={FAKE_NODE}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|l| s(&l["lease_id"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(unreturned().await, vec![a_id.clone(), s(&c["lease_id"])]);
        // The node comes back and reports 120 spent on a: the other 580
        // come back, once.
        let (status, late) = w.give_back(&a_id, 120).await;
        assert_eq!(status, StatusCode::OK, "{late}");
        assert_eq!(late["status"], "expired");
        assert_eq!(
            (
                n(&late["charged"]),
                n(&late["returned"]),
                n(&late["uncovered"])
            ),
            (0, 580, 0)
        );
        let (_, again) = w.give_back(&a_id, 120).await;
        assert_eq!(again, late, "a second report changes nothing");
        let (_, other) = w.give_back(&a_id, 700).await;
        assert_eq!(other, late, "nor does a different one");
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (170, 250, 580)
        );
        assert!(provisional(main.clone()).await.is_empty());
        assert_eq!(unreturned().await, vec![s(&c["lease_id"])]);
        check_conservation(&w.ctl).await;

        // A lease reported beyond its grant after expiring: the extra is
        // charged as far as the budget allows, the rest uncovered.
        let (_, d) = w.lease(&main, 580, 1).await;
        let d_id = s(&d["lease_id"]);
        let expiry = d["expires_at_ms"].as_i64().expect("expiry");
        assert_eq!(
            budgets::expire_leases(db, expiry + 60_000)
                .await
                .expect("sweep"),
            2,
            "c and d"
        );
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (1_000, 0, 0)
        );
        let (status, late) = w.give_back(&d_id, 600).await;
        assert_eq!(status, StatusCode::OK, "{late}");
        assert_eq!(
            (
                n(&late["charged"]),
                n(&late["returned"]),
                n(&late["uncovered"])
            ),
            (0, 0, 20)
        );
        // c's node reports nothing spent: all 250 come back.
        let (_, late_c) = w.give_back(&s(&c["lease_id"]), 0).await;
        assert_eq!(n(&late_c["returned"]), 250, "{late_c}");
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (750, 0, 250)
        );
        check_conservation(&w.ctl).await;
    }
);
