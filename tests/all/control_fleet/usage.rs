//! Heartbeats and usage reports need a node credential; usage counts once.

use super::*;

scenario!(heartbeats_and_usage_need_a_node_credential_and_usage_counts_once);

async fn heartbeats_and_usage_need_a_node_credential_and_usage_counts_once(db: Dialect) {
    let ctl = control(db, 2).await;
    let admin = ctl.register("ops").await.access;
    let fake = ctl.node_credential("fake-1").await;
    let beat =
        json!({ "node_id": "fake-1", "url": "http://127.0.0.1:9", "capacity": 4, "load": 1 });
    for token in [None, Some("wrong"), Some(admin.as_str())] {
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/nodes/heartbeat",
                token,
                Some(beat.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, ack) = ctl
        .call(
            Method::POST,
            "/v1/nodes/heartbeat",
            Some(&fake),
            Some(beat.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let (status, _) = ctl
        .call(
            Method::POST,
            "/v1/nodes/heartbeat",
            Some(&fake),
            Some(json!({ "node_id": "bad/id", "url": "http://x", "capacity": 1, "load": 0 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, page) = ctl
        .call(
            Method::GET,
            "/v1/nodes",
            Some(&ctl.operator_token().await),
            None,
        )
        .await;
    let node = &page["items"][0];
    assert_eq!(node["id"], "fake-1");
    assert_eq!(node["status"], "up");
    assert_eq!(node["capacity"], 4);
    assert_eq!(node["load"], 1);
    assert!(node.get("url").is_none(), "node URLs are not shown: {node}");
    // Silent for longer than the timeout: down.
    eventually(
        "the silent node marked down",
        Duration::from_secs(30),
        || async {
            (ctl.nodes().await.get("fake-1").map(String::as_str) == Some("down")).then_some(())
        },
    )
    .await;
    // With nobody up, an agent cannot be created, and nothing is stored.
    let (_, hello) = ctl.upload(&admin, wasm(guests::HELLO_AGENT)).await;
    let (status, err) = ctl
        .call(
            Method::POST,
            "/v1/agents",
            Some(&admin),
            Some(json!({ "name": "a", "kind": "main", "component": hello["sha256"] })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["code"], "no_nodes");
    assert!(ctl.walk(&admin, "/v1/agents", 10).await.is_empty());

    // Usage: a batch, the same batch again (replayed under its key, counted
    // as duplicates without one), then an overlapping batch sent eight times
    // at once. Every run counts once.
    // The records' agent is placed on fake-1 (a node reports usage for its
    // own agents only).
    let (_, me) = ctl.call(Method::GET, "/v1/me", Some(&admin), None).await;
    let (tenant, user) = (
        me["tenant_id"].as_str().expect("tenant").to_owned(),
        me["user"]["id"].as_str().expect("user").to_owned(),
    );
    let agent = common::insert_agent_row(&ctl.state.db, &tenant, &user, "x", Some("fake-1")).await;
    let record = |run: &str| {
        json!({
            "run_id": run, "agent_id": agent, "tenant_id": tenant, "outcome": "completed",
            "fuel_used": 10, "wall_time_us": 5, "peak_memory_bytes": 65536,
            "llm": {}, "messages": {}, "finished_at_ms": 1,
        })
    };
    // (status, replayed, accepted, duplicates)
    let post = |batch: Value, key: Option<String>| {
        let (ctl, fake) = (&ctl, &fake);
        async move {
            let mut req = ctl
                .client
                .post(ctl.url("/v1/nodes/usage"))
                .bearer_auth(fake)
                .json(&batch);
            if let Some(key) = key {
                req = req.header("idempotency-key", key);
            }
            let resp = req.send().await.expect("usage");
            let status = resp.status();
            let replayed = resp.headers().contains_key("idempotency-replayed");
            let ack: Value = resp.json().await.expect("json");
            (
                status,
                replayed,
                ack["accepted"].as_u64().unwrap_or(0),
                ack["duplicates"].as_u64().unwrap_or(0),
            )
        }
    };
    let first = json!({ "batch_id": "b1", "node_id": "fake-1",
                        "records": [record("r1"), record("r2"), record("r3")] });
    let key = Some("b1".to_owned());
    assert_eq!(
        post(first.clone(), key.clone()).await,
        (StatusCode::OK, false, 3, 0)
    );
    assert_eq!(post(first.clone(), key).await, (StatusCode::OK, true, 3, 0));
    assert_eq!(post(first, None).await, (StatusCode::OK, false, 0, 3));
    let second = json!({ "batch_id": "b2", "node_id": "fake-1",
                         "records": [record("r3"), record("r4"), record("r5"), record("r6")] });
    // Under eight different keys: the handler runs eight times.
    let results = futures_util::future::join_all(
        (0..8).map(|i| post(second.clone(), Some(format!("b2-{i}")))),
    )
    .await;
    assert!(results.iter().all(|r| r.0 == StatusCode::OK), "{results:?}");
    let accepted: u64 = results.iter().map(|r| r.2).sum();
    let duplicates: u64 = results.iter().map(|r| r.3).sum();
    assert_eq!(accepted, 3, "{results:?}");
    assert_eq!(duplicates, 8 * 4 - 3);
    // Under one key: it runs once; the others are replays or told it is in
    // flight, never counted again.
    let third = json!({ "batch_id": "b3", "node_id": "fake-1",
                        "records": [record("r6"), record("r7")] });
    let results =
        futures_util::future::join_all((0..8).map(|_| post(third.clone(), Some("b3".to_owned()))))
            .await;
    let executed: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::OK && !r.1)
        .collect();
    assert_eq!(executed.len(), 1, "{results:?}");
    assert_eq!((executed[0].2, executed[0].3), (1, 1), "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.0 == StatusCode::OK || r.0 == StatusCode::CONFLICT),
        "{results:?}"
    );
    let (status, _) = ctl
        .call(
            Method::POST,
            "/v1/nodes/usage",
            Some(&admin),
            Some(json!({ "batch_id": "b3", "node_id": "x", "records": [] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
