//! Tenant isolation and bad input: every refusal is a 4xx with a code, and
//! changes nothing.

use super::*;

both!(
    other_tenants_see_no_drafts_or_submissions_and_cannot_approve,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let carol = m.ctl.register("carol").await;
        let draft = s(&m.draft(100, 60_000, json!({})).await["id"]);
        for who in [&m.bob, &carol] {
            let (status, _) = m
                .call(who, Method::GET, &format!("/v1/bounties/{draft}"), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (_, list) = m.call(who, Method::GET, "/v1/bounties", None).await;
            assert_eq!(list["items"], json!([]), "{list}");
            let (status, _) = m
                .call(
                    who,
                    Method::POST,
                    &format!("/v1/bounties/{draft}/fund"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (status, _) = m
                .call(
                    who,
                    Method::POST,
                    &format!("/v1/bounties/{draft}/cancel"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        let (status, _) = m.submit(&draft, json!({ "answer": 42 })).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a draft takes no submissions"
        );

        let id = m.open(1_000, 60_000, json!({})).await;
        let (_, sub) = m.submit(&id, json!({ "answer": 42 })).await;
        let sub_id = s(&sub["id"]);
        // Carol sees the open bounty but not bob's submission.
        let (status, _) = m
            .call(&carol, Method::GET, &format!("/v1/bounties/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, subs) = m
            .call(
                &carol,
                Method::GET,
                &format!("/v1/bounties/{id}/submissions"),
                None,
            )
            .await;
        assert_eq!(subs["items"], json!([]), "{subs}");
        for path in [format!("/v1/submissions/{sub_id}")] {
            let (status, _) = m.call(&carol, Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        for verb in ["approve", "reject"] {
            let (status, _) = m
                .call(
                    &carol,
                    Method::POST,
                    &format!("/v1/submissions/{sub_id}/{verb}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "carol {verb}");
            // The submitter sees his submission but cannot decide on it.
            let (status, body) = m
                .call(
                    &m.bob,
                    Method::POST,
                    &format!("/v1/submissions/{sub_id}/{verb}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "bob {verb}: {body}");
        }
        // Carol's own account is empty, and nobody but the operator tops up.
        let (_, accounts) = m
            .call(&carol, Method::GET, "/v1/ledger/accounts", None)
            .await;
        assert_eq!(accounts["items"], json!([]));
        let (status, body) = m
            .call(
                &m.alice,
                Method::POST,
                "/v1/operator/ledger/topups",
                Some(json!({ "tenant_id": m.alice.tenant_id, "amount_minor": 5, "currency": EUR })),
            )
            .await;
        assert_eq!(
            (status, s(&body["code"])),
            (StatusCode::FORBIDDEN, "operator_only".into())
        );
        let (status, _) = m
            .call(
                &m.alice,
                Method::GET,
                "/v1/operator/ledger/totals?currency=EUR",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A rejection keeps the bounty open.
        let (status, rejected) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{sub_id}/reject"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{rejected}");
        assert_eq!(rejected["status"], "rejected");
        assert_eq!(m.bounty(&id).await["status"], "open");
        m.conserved("the denials").await;
    }
);

both!(bad_input_is_refused_with_codes, |ctl: Control| async move {
    let m = market(ctl).await;
    let base = json!({
        "title": "t", "spec": { "expected": 1 }, "reward_minor": 100, "currency": EUR,
        "deadline_ms": now_ms() + 60_000, "verifier": m.verifier,
    });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let hello = upload(
        &m.ctl,
        &m.alice,
        &std::fs::read(guests::HELLO_AGENT).expect("guest"),
    )
    .await;
    for (body, status, code) in [
        (
            with("verifier", json!("ab".repeat(32))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_verifier",
        ),
        (
            with("verifier", json!(hello)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_verifier",
        ),
        (
            with("verifier", json!("nope")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_verifier",
        ),
        (
            with("reward_minor", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reward",
        ),
        (
            with("reward_minor", json!(-5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reward",
        ),
        (
            with("currency", json!("euro")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_currency",
        ),
        (
            with("deadline_ms", json!(1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_deadline",
        ),
        (
            with("title", json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_title",
        ),
        (
            with("policy", json!("sometimes")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
        ),
    ] {
        let (got, answer) = m
            .call(&m.alice, Method::POST, "/v1/bounties", Some(body.clone()))
            .await;
        assert_eq!(
            (got, s(&answer["code"])),
            (status, code.to_owned()),
            "{body}: {answer}"
        );
    }
    // Another tenant's verifier is not this tenant's upload.
    let (status, answer) = m
        .call(&m.bob, Method::POST, "/v1/bounties", Some(base.clone()))
        .await;
    assert_eq!(
        (status, s(&answer["code"])),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_verifier".into())
    );

    // Insufficient funds: nothing changes.
    let big = m.draft(FUNDS + 1, 60_000, json!({})).await;
    let big_id = s(&big["id"]);
    let (status, answer) = m
        .call(
            &m.alice,
            Method::POST,
            &format!("/v1/bounties/{big_id}/fund"),
            None,
        )
        .await;
    assert_eq!(
        (status, s(&answer["code"])),
        (StatusCode::CONFLICT, "insufficient_funds".into()),
        "{answer}"
    );
    assert_eq!(m.bounty(&big_id).await["status"], "draft");
    assert_eq!(
        account(&m.ctl, &m.alice, "tenant", EUR).await,
        (FUNDS, FUNDS, 0)
    );
    m.conserved("a refused funding").await;

    // Submissions: too large, own bounty, someone else's agent.
    let id = m.open(100, 60_000, json!({})).await;
    let (status, answer) = m.submit(&id, json!("x".repeat(70_000))).await;
    assert_eq!(
        (status, s(&answer["code"])),
        (StatusCode::PAYLOAD_TOO_LARGE, "submission_too_large".into()),
        "{answer}"
    );
    let (status, answer) = m
        .call(
            &m.alice,
            Method::POST,
            &format!("/v1/bounties/{id}/submissions"),
            Some(json!({ "agent_id": m.agent, "payload": 1 })),
        )
        .await;
    assert_eq!(
        (status, s(&answer["code"])),
        (StatusCode::FORBIDDEN, "own_bounty".into())
    );
    let carol = m.ctl.register("carol").await;
    let (status, answer) = m
        .call(
            &carol,
            Method::POST,
            &format!("/v1/bounties/{id}/submissions"),
            Some(json!({ "agent_id": m.agent, "payload": 1 })),
        )
        .await;
    assert_eq!(
        (status, s(&answer["code"])),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_agent".into())
    );
    // Top-ups: bad amounts and currencies, and a reused transfer id.
    for (body, code) in [
        (
            json!({ "tenant_id": m.bob.tenant_id, "amount_minor": 0, "currency": EUR }),
            "invalid",
        ),
        (
            json!({ "tenant_id": m.bob.tenant_id, "amount_minor": 5, "currency": "eu" }),
            "invalid",
        ),
        (
            json!({ "tenant_id": "nobody", "amount_minor": 5, "currency": EUR }),
            "not_found",
        ),
    ] {
        let (_, answer) = m
            .call(
                &m.op,
                Method::POST,
                "/v1/operator/ledger/topups",
                Some(body),
            )
            .await;
        assert_eq!(s(&answer["code"]), code, "{answer}");
    }
    let once = json!({ "tenant_id": m.bob.tenant_id, "amount_minor": 5, "currency": EUR,
                       "transfer_id": "ext-42" });
    let (status, _) = m
        .call(
            &m.op,
            Method::POST,
            "/v1/operator/ledger/topups",
            Some(once.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = m
        .call(
            &m.op,
            Method::POST,
            "/v1/operator/ledger/topups",
            Some(once.clone()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a retry is answered, not applied again"
    );
    assert_eq!(account(&m.ctl, &m.bob, "tenant", EUR).await.0, 5);
    let mut other = once.clone();
    other["amount_minor"] = json!(6);
    let (status, answer) = m
        .call(
            &m.op,
            Method::POST,
            "/v1/operator/ledger/topups",
            Some(other),
        )
        .await;
    assert_eq!(
        (status, s(&answer["code"])),
        (StatusCode::CONFLICT, "exists_with_different_fields".into())
    );
    m.conserved("the refusals").await;
});

both!(
    lists_page_and_mutations_replay_with_an_idempotency_key,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let mut ids = Vec::new();
        for reward in [100, 200, 300] {
            ids.push(s(&m.draft(reward, 60_000, json!({})).await["id"]));
        }
        // Pages of one, in creation order.
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = if cursor.is_empty() {
                "/v1/bounties?limit=1".to_owned()
            } else {
                format!("/v1/bounties?limit=1&cursor={cursor}")
            };
            let (status, page) = m.call(&m.alice, Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(
                page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|b| s(&b["id"])),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        let (status, _) = m
            .call(&m.alice, Method::GET, "/v1/bounties?status=funded", None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (_, drafts) = m
            .call(
                &m.alice,
                Method::GET,
                "/v1/bounties?status=draft&min_reward=200",
                None,
            )
            .await;
        assert_eq!(
            drafts["items"].as_array().map(Vec::len),
            Some(2),
            "{drafts}"
        );

        // A funding retried with its Idempotency-Key is replayed, not refused
        // (and not escrowed twice).
        let fund = |key: &'static str| {
            m.ctl
                .client
                .post(m.ctl.url(&format!("/v1/bounties/{}/fund", ids[2])))
                .bearer_auth(&m.alice.access)
                .header("idempotency-key", key)
                .send()
        };
        let first = fund("fund-once").await.expect("fund");
        assert_eq!(first.status(), StatusCode::OK);
        let again = fund("fund-once").await.expect("fund again");
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(
            again
                .headers()
                .get("idempotency-replayed")
                .and_then(|v| v.to_str().ok()),
            Some("true")
        );
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await,
            (FUNDS, FUNDS - 300, 300)
        );
        let other = fund("another-key").await.expect("fund with another key");
        assert_eq!(other.status(), StatusCode::CONFLICT);
        m.conserved("replayed fundings").await;
    }
);
