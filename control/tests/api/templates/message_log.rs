//! The message log: records, filters, and attempts arriving with usage
//! batches.

use super::*;

both!(message_log_records_and_filters, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let records = [
        usage(
            "run_1",
            "agt_a",
            &alice.tenant_id,
            vec![
                attempt("welcome", "email", "sent", None, 1_000),
                attempt(
                    "welcome",
                    "email",
                    "refused",
                    Some("recipient-not-allowed"),
                    2_000,
                ),
                attempt("otp", "sms", "failed", Some("delivery-failed"), 3_000),
            ],
        ),
        usage(
            "run_2",
            "agt_b",
            &alice.tenant_id,
            vec![attempt(
                "draft",
                "email",
                "refused",
                Some("template-not-approved"),
                2_000,
            )],
        ),
        usage(
            "run_3",
            "agt_c",
            &bob.tenant_id,
            vec![attempt("bobs", "sms", "sent", None, 1_500)],
        ),
        usage("run_4", "agt_a", &alice.tenant_id, Vec::new()),
    ];
    let refs: Vec<&RunUsage> = records.iter().collect();
    for _ in 0..2 {
        // Twice: a repeat adds nothing.
        let mut tx = ctl.state.db.pool().begin().await.expect("tx");
        delta_control::messages::record_attempts(&mut tx, "node-1", &refs, 9_999)
            .await
            .expect("record");
        tx.commit().await.expect("commit");
    }

    let all = messages(&ctl, &alice.access, "").await;
    let ids: Vec<String> = all.iter().map(|m| s(&m["id"])).collect();
    assert_eq!(
        ids,
        ["run_1:2", "run_2:0", "run_1:1", "run_1:0"],
        "newest first"
    );
    assert_eq!(
        all[3],
        json!({ "id": "run_1:0", "agent_id": "agt_a", "run_id": "run_1", "node_id": "node-1",
                "channel": "email", "template_id": "welcome", "recipient": "ada@example.com",
                "status": "sent", "reason": null, "tokens": 10, "provider_id": "p-1000",
                "at_ms": 1000 })
    );
    let ids_of = |items: Vec<Value>| items.iter().map(|m| s(&m["id"])).collect::<Vec<_>>();
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?agent_id=agt_b").await),
        ["run_2:0"]
    );
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?channel=sms").await),
        ["run_1:2"]
    );
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?status=refused").await),
        ["run_2:0", "run_1:1"]
    );
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?since_ms=2000&until_ms=3000").await),
        ["run_2:0", "run_1:1"]
    );
    assert_eq!(
        ids_of(
            messages(
                &ctl,
                &alice.access,
                "?agent_id=agt_a&channel=email&status=sent"
            )
            .await
        ),
        ["run_1:0"]
    );
    assert!(
        messages(&ctl, &alice.access, "?until_ms=1000")
            .await
            .is_empty()
    );
    for bad in ["?channel=fax", "?status=lost"] {
        let (status, _) = call(
            &ctl,
            Method::GET,
            &format!("/v1/messages{bad}"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // Bob sees his own only, whatever he asks for.
    assert_eq!(ids_of(messages(&ctl, &bob.access, "").await), ["run_3:0"]);
    assert!(
        messages(&ctl, &bob.access, "?agent_id=agt_a")
            .await
            .is_empty()
    );

    // Readers: templates:read or agents:read; neither is a 403.
    for (scopes, expected) in [
        (&["templates:read"][..], StatusCode::OK),
        (&["agents:read"][..], StatusCode::OK),
        (&["runs:read"][..], StatusCode::FORBIDDEN),
    ] {
        let key = api_key(&ctl, &alice, scopes).await;
        let (status, _) = call(&ctl, Method::GET, "/v1/messages", &key, None).await;
        assert_eq!(status, expected, "{scopes:?}");
    }
});

both!(
    message_log_arrives_with_usage_batches,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "z", Some("node-x")).await;
        let cred = ctl.node_credential("node-x").await;
        let log = vec![
            attempt("welcome", "email", "sent", None, 5_000),
            attempt("welcome", "email", "refused", Some("rate-limited"), 6_000),
        ];
        let batch = json!({
            "batch_id": "batch-1",
            "node_id": "node-x",
            "records": [usage("run_9", &agent, &alice.tenant_id, log)],
        });
        for _ in 0..2 {
            let resp = ctl
                .client
                .post(ctl.url("/v1/nodes/usage"))
                .bearer_auth(&cred)
                .header("Idempotency-Key", "batch-1")
                .json(&batch)
                .send()
                .await
                .expect("usage");
            assert!(
                resp.status().is_success(),
                "{}",
                resp.text().await.unwrap_or_default()
            );
        }
        let all = messages(&ctl, &alice.access, "").await;
        let ids: Vec<String> = all.iter().map(|m| s(&m["id"])).collect();
        assert_eq!(ids, ["run_9:1", "run_9:0"], "stored once, newest first");
        assert_eq!(all[0]["node_id"], "node-x");
        assert_eq!(all[0]["reason"], "rate-limited");
    }
);

// ---- isolation ---------------------------------------------------------------------
