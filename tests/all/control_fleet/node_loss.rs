//! The loss (`kill -9`) of a node and its return.

use super::*;

scenario!(a_lost_node_s_agents_move_and_its_return_leaves_no_copies);

async fn a_lost_node_s_agents_move_and_its_return_leaves_no_copies(db: Dialect) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctl, alice, mut node_a, node_b) = fleet(dir.path(), db, 3).await;
    let (_, hello) = ctl.upload(&alice, wasm(guests::HELLO_AGENT)).await;
    let sha = s(&hello["sha256"]);
    let main = ctl
        .create_agent(
            &alice,
            json!({ "name": "main", "kind": "main", "component": sha }),
        )
        .await;
    let mut agents = vec![main.clone()];
    for i in 0..3 {
        agents.push(
            ctl.create_agent(
                &alice,
                json!({ "name": format!("bot-{i}"), "kind": "bot",
                        "parent_agent_id": main["id"], "component": sha }),
            )
            .await,
        );
    }
    let on_a: Vec<String> = agents
        .iter()
        .filter(|a| a["node_id"] == "node-a")
        .map(|a| s(&a["id"]))
        .collect();
    assert_eq!(
        on_a.len(),
        2,
        "placement should split 4 agents 2/2: {agents:?}"
    );
    // One of them paused: it must stay paused where it lands.
    let paused_id = on_a[0].clone();
    let (status, _) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{paused_id}/pause"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node_a.agent_ids().await.len(), 2);

    node_a.kill();
    // Until it is moved, the agent's runs are refused as unavailable.
    let (status, err) = ctl
        .run(&alice, &on_a[1], json!({ "name": "x" }), true)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["code"], "node_unavailable");
    eventually("node-a marked down", Duration::from_secs(30), || async {
        (ctl.nodes().await.get("node-a").map(String::as_str) == Some("down")).then_some(())
    })
    .await;
    eventually(
        "node-a's agents re-placed",
        Duration::from_secs(30),
        || async {
            let mut all_on_b = true;
            for id in &on_a {
                all_on_b &= ctl.agent(&alice, id).await["node_id"] == "node-b";
            }
            all_on_b.then_some(())
        },
    )
    .await;
    let held = node_b.agent_ids().await;
    assert_eq!(held.len(), 4, "{held:?}");
    let (_, paused) = node_b
        .call(Method::GET, &format!("/v1/agents/{paused_id}"))
        .await;
    assert_eq!(paused["paused"], true, "{paused}");
    let (status, run) = ctl
        .run(&alice, &on_a[1], json!({ "name": "moved" }), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["node_id"], "node-b");
    assert_eq!(run["outcome"]["output"], r#"{"greeting":"Hello, moved!"}"#);
    let (status, err) = ctl
        .run(&alice, &paused_id, json!({ "name": "x" }), true)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    // New agents go to the node that is up.
    let late = ctl
        .create_agent(
            &alice,
            json!({ "name": "late", "kind": "main", "component": sha }),
        )
        .await;
    assert_eq!(late["node_id"], "node-b");

    // node-a comes back (same id, same state, new port): the operator
    // gives the control plane its new URL (a heartbeat cannot move it), it
    // is up again and its copies of the moved agents are removed.
    node_a.restart();
    let (status, answer) = ctl
        .call(
            Method::PATCH,
            "/v1/operator/nodes/node-a",
            Some(&ctl.operator_token().await),
            Some(json!({ "url": node_a.process.addr })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    eventually("node-a up again", Duration::from_secs(30), || async {
        (ctl.nodes().await.get("node-a").map(String::as_str) == Some("up")).then_some(())
    })
    .await;
    eventually(
        "node-a's stale deployments removed",
        Duration::from_secs(30),
        || async { node_a.agent_ids().await.is_empty().then_some(()) },
    )
    .await;
    // Nothing moved back: the agents stay where they were re-placed.
    for id in &on_a {
        assert_eq!(ctl.agent(&alice, id).await["node_id"], "node-b");
    }
    let audit = ctl.walk(&alice, "/v1/audit", 200).await;
    let moves = audit
        .iter()
        .filter(|e| e["action"] == "agent_moved")
        .count();
    assert_eq!(moves, 2, "{audit:?}");
    assert!(!node_a.log().is_empty());
}
