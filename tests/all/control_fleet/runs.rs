//! Components, agents and bots, placement, runs through the control plane, log
//! streaming, pagination, tenant isolation, pause/resume/delete kept in step
//! with the nodes.

use super::*;

scenario!(agents_and_runs_through_the_control_plane);

async fn agents_and_runs_through_the_control_plane(db: Dialect) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctl, alice, node_a, node_b) = fleet(dir.path(), db, 15).await;
    let nodes: HashMap<&str, &NodeProcess> = [("node-a", &node_a), ("node-b", &node_b)].into();
    let bob = ctl.register("bob").await.access;

    // Components: content-addressed, per tenant; the cheap check refuses
    // what is not a component.
    let (status, hello) = ctl.upload(&alice, wasm(guests::HELLO_AGENT)).await;
    assert_eq!(status, StatusCode::CREATED, "{hello}");
    let (status, again) = ctl.upload(&alice, wasm(guests::HELLO_AGENT)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["sha256"], hello["sha256"]);
    let hello_sha = s(&hello["sha256"]);
    assert_eq!(hello_sha.len(), 64);
    let (status, err) = ctl.upload(&alice, b"not wasm at all".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["code"], "invalid_component", "{err}");
    // What needs no compiling is checked before anything is stored: an
    // import no node provides, far too many exports.
    let foreign = wat::parse_str(
        r#"(component (import "acme:files/read@1.0.0" (instance))
             (type $run (func)) (export "run" (type $run)))"#,
    )
    .expect("wat");
    let (status, err) = ctl.upload(&alice, foreign).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["code"], "invalid_component", "{err}");
    assert!(
        s(&err["message"]).contains("acme:files/read@1.0.0"),
        "{err}"
    );
    let exports: String = (0..20_000)
        .map(|i| format!(r#"(func (export "f{i}"))"#))
        .collect();
    let wide = wat::parse_str(format!(
        r#"(component (core module {exports}) (type $run (func)) (export "run" (type $run)))"#
    ))
    .expect("wat");
    let (status, err) = ctl.upload(&alice, wide).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(s(&err["message"]).contains("export count"), "{err}");
    let (status, slow) = ctl.upload(&alice, wasm(guests::SLOW_LOGGER)).await;
    assert_eq!(status, StatusCode::CREATED, "{slow}");
    let components = ctl.walk(&alice, "/v1/components", 1).await;
    assert_eq!(components.len(), 2);
    // A verifier is a component, but not an agent: the node says so at
    // deployment, and nothing is stored.
    let (_, verifier) = ctl.upload(&alice, wasm(guests::JSON_VERIFIER)).await;
    let (status, err) = ctl
        .call(
            Method::POST,
            "/v1/agents",
            Some(&alice),
            Some(json!({ "name": "v", "kind": "main", "component": verifier["sha256"] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["code"], "invalid_component", "{err}");

    // A main agent, then the bot rules.
    let main = ctl
        .create_agent(
            &alice,
            json!({ "name": "main", "kind": "main", "component": hello_sha,
                    "limits": { "timeout_ms": 5000 } }),
        )
        .await;
    let main_id = s(&main["id"]);
    assert_eq!(main["kind"], "main");
    assert_eq!(main["paused"], false);
    assert!(main["parent_agent_id"].is_null());
    for (body, code) in [
        (
            json!({ "name": "orphan", "kind": "bot", "component": hello_sha }),
            "invalid_parent",
        ),
        (
            json!({ "name": "m2", "kind": "main", "parent_agent_id": main_id, "component": hello_sha }),
            "invalid_parent",
        ),
        (
            json!({ "name": "b0", "kind": "bot", "parent_agent_id": main_id, "component": "ab".repeat(32) }),
            "unknown_component",
        ),
    ] {
        let (status, err) = ctl
            .call(Method::POST, "/v1/agents", Some(&alice), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["code"], code, "{err}");
    }
    let (status, err) = ctl
        .call(
            Method::POST,
            "/v1/agents",
            Some(&alice),
            Some(json!({ "name": "main", "kind": "main", "component": hello_sha })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "name_taken");
    let bot = ctl
        .create_agent(
            &alice,
            json!({ "name": "bot-1", "kind": "bot", "parent_agent_id": main_id,
                    "component": hello_sha, "grants": { "channels": ["email"] } }),
        )
        .await;
    let bot_id = s(&bot["id"]);
    assert_eq!(bot["parent_agent_id"], main_id.as_str());
    assert_eq!(bot["grants"]["channels"], json!(["email"]));
    // A bot's parent must be a main agent: not a bot.
    let (status, err) = ctl
        .call(
            Method::POST,
            "/v1/agents",
            Some(&alice),
            Some(json!({ "name": "b2", "kind": "bot", "parent_agent_id": bot_id, "component": hello_sha })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let logger = ctl
        .create_agent(
            &alice,
            json!({ "name": "logger", "kind": "main", "component": s(&slow["sha256"]) }),
        )
        .await;
    let logger_id = s(&logger["id"]);
    let extra = ctl
        .create_agent(
            &alice,
            json!({ "name": "extra", "kind": "main", "component": hello_sha }),
        )
        .await;

    // Placement spread the four agents over both nodes, and each node
    // holds what the control plane says it holds.
    let placed: Vec<String> = [&main, &bot, &logger, &extra]
        .iter()
        .map(|a| s(&a["node_id"]))
        .collect();
    assert!(
        placed.iter().any(|n| n == "node-a") && placed.iter().any(|n| n == "node-b"),
        "{placed:?}"
    );
    for agent in [&main, &bot, &logger, &extra] {
        let node = nodes[s(&agent["node_id"]).as_str()];
        let (status, deployed) = node
            .call(Method::GET, &format!("/v1/agents/{}", s(&agent["id"])))
            .await;
        assert_eq!(status, StatusCode::OK, "{deployed}");
        assert_eq!(deployed["component"], agent["component"]);
    }
    let listed = ctl.walk(&alice, "/v1/agents?kind=bot", 10).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], bot_id.as_str());
    assert_eq!(ctl.walk(&alice, "/v1/agents", 1).await.len(), 4);
    // Components are validated by nodes now.
    let components = ctl.walk(&alice, "/v1/components", 10).await;
    assert!(
        components
            .iter()
            .any(|c| c["sha256"] == hello_sha.as_str() && c["world"] == "agent"),
        "{components:?}"
    );

    // A run that waits, and one that does not.
    let (status, run) = ctl
        .run(&alice, &main_id, json!({ "name": "fleet" }), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "finished");
    assert_eq!(run["outcome"]["status"], "completed", "{run}");
    assert_eq!(run["outcome"]["output"], r#"{"greeting":"Hello, fleet!"}"#);
    assert_eq!(run["node_id"], main["node_id"]);
    assert!(
        run["logs"].as_array().is_some_and(|l| !l.is_empty()),
        "{run}"
    );
    let sync_id = s(&run["id"]);
    let (status, accepted) = ctl
        .run(&alice, &bot_id, json!({ "name": "later" }), false)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let async_id = s(&accepted["id"]);
    let finished = eventually(
        "the async run to finish",
        Duration::from_secs(60),
        || async {
            let (status, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/runs/{async_id}"),
                    Some(&alice),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{run}");
            (run["status"] == "finished").then_some(run)
        },
    )
    .await;
    assert_eq!(
        finished["outcome"]["output"],
        r#"{"greeting":"Hello, later!"}"#
    );
    assert_eq!(finished["agent_id"], bot_id.as_str());

    // The log stream, relayed live from the node.
    let (status, accepted) = ctl
        .run(
            &alice,
            &logger_id,
            json!({ "lines": 3, "interval_ms": 150 }),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let resp = ctl
        .client
        .get(ctl.url(&format!("/v1/runs/{}/logs", s(&accepted["id"]))))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        resp.headers()
    );
    let events = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the stream ends with the run")
        .expect("stream");
    for needle in ["event: log", "line 0", "line 2", "event: end", "completed"] {
        assert!(events.contains(needle), "{needle:?} missing in {events}");
    }

    // Pagination over more runs than a page: every run once.
    let mut created = vec![sync_id.clone(), async_id.clone()];
    for i in 0..7 {
        let (status, accepted) = ctl
            .run(&alice, &main_id, json!({ "name": format!("p{i}") }), false)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        created.push(s(&accepted["id"]));
    }
    let all = ctl.walk(&alice, "/v1/runs", 200).await;
    let paged = ctl.walk(&alice, "/v1/runs", 3).await;
    let ids: Vec<String> = paged.iter().map(|r| s(&r["id"])).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates across pages: {ids:?}");
    assert_eq!(ids.len(), all.len());
    for id in &created {
        assert!(unique.contains(id), "run {id} missing from the pages");
    }
    let of_main = ctl
        .walk(&alice, &format!("/v1/runs?agent_id={main_id}"), 2)
        .await;
    assert_eq!(of_main.len(), 8);
    assert!(of_main.iter().all(|r| r["agent_id"] == main_id.as_str()));
    // Usage reports finish the listed runs without anyone asking the node.
    eventually(
        "usage to finish every run",
        Duration::from_secs(60),
        || async {
            let runs = ctl.walk(&alice, "/v1/runs", 200).await;
            runs.iter()
                .all(|r| r["status"] == "finished" && r["usage"]["fuel_used"].as_u64().is_some())
                .then_some(())
        },
    )
    .await;

    // Another tenant sees none of it: 404 for every id.
    for (method, path) in [
        (Method::GET, format!("/v1/agents/{main_id}")),
        (Method::PATCH, format!("/v1/agents/{main_id}")),
        (Method::DELETE, format!("/v1/agents/{bot_id}")),
        (Method::POST, format!("/v1/agents/{main_id}/pause")),
        (Method::POST, format!("/v1/agents/{main_id}/runs")),
        (Method::GET, format!("/v1/runs/{sync_id}")),
        (Method::GET, format!("/v1/runs/{async_id}/logs")),
    ] {
        let body = (method == Method::PATCH || method == Method::POST).then(|| json!({}));
        let (status, err) = ctl.call(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
    }
    assert!(ctl.walk(&bob, "/v1/runs", 10).await.is_empty());
    assert!(ctl.walk(&bob, "/v1/agents", 10).await.is_empty());
    assert!(ctl.walk(&bob, "/v1/components", 10).await.is_empty());
    // Nor may it build on another tenant's agents or components.
    let (status, _) = ctl
        .call(
            Method::POST,
            "/v1/agents",
            Some(&bob),
            Some(json!({ "name": "b", "kind": "bot", "parent_agent_id": main_id, "component": hello_sha })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, err) = ctl
        .call(
            Method::POST,
            "/v1/agents",
            Some(&bob),
            Some(json!({ "name": "m", "kind": "main", "component": hello_sha })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["code"], "unknown_component");

    // Pause and resume, in step with the node.
    let main_node = nodes[s(&main["node_id"]).as_str()];
    let (status, paused) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{main_id}/pause"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);
    let (_, on_node) = main_node
        .call(Method::GET, &format!("/v1/agents/{main_id}"))
        .await;
    assert_eq!(on_node["paused"], true, "{on_node}");
    let (status, err) = ctl
        .run(&alice, &main_id, json!({ "name": "x" }), true)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "agent_paused");
    let (status, resumed) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{main_id}/resume"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["paused"], false);
    let (_, on_node) = main_node
        .call(Method::GET, &format!("/v1/agents/{main_id}"))
        .await;
    assert_eq!(on_node["paused"], false);
    let (status, _) = ctl
        .run(&alice, &main_id, json!({ "name": "x" }), true)
        .await;
    assert_eq!(status, StatusCode::OK);

    // PATCH redeploys on the node.
    let (status, patched) = ctl
        .call(
            Method::PATCH,
            &format!("/v1/agents/{main_id}"),
            Some(&alice),
            Some(json!({ "limits": { "fuel": 123456789, "timeout_ms": 4000 } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["limits"]["fuel"], 123456789);
    let (_, on_node) = main_node
        .call(Method::GET, &format!("/v1/agents/{main_id}"))
        .await;
    assert_eq!(on_node["limits"]["fuel"], 123456789, "{on_node}");
    assert_eq!(
        ctl.agent(&alice, &main_id).await["limits"]["timeout_ms"],
        4000
    );

    // Delete: not while bots hang off it; a deleted agent leaves its node.
    let (status, err) = ctl
        .call(
            Method::DELETE,
            &format!("/v1/agents/{main_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "has_bots");
    let bot_node = nodes[s(&bot["node_id"]).as_str()];
    let (status, _) = ctl
        .call(
            Method::DELETE,
            &format!("/v1/agents/{bot_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = bot_node
        .call(Method::GET, &format!("/v1/agents/{bot_id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ctl
        .call(
            Method::DELETE,
            &format!("/v1/agents/{main_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = main_node
        .call(Method::GET, &format!("/v1/agents/{main_id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ctl
        .call(
            Method::GET,
            &format!("/v1/agents/{main_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its runs stay on record.
    let (status, run) = ctl
        .call(
            Method::GET,
            &format!("/v1/runs/{sync_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "finished");

    // Every change is in the tenant's audit log.
    let audit = ctl.walk(&alice, "/v1/audit", 200).await;
    let actions: HashSet<&str> = audit.iter().filter_map(|e| e["action"].as_str()).collect();
    for action in [
        "component_uploaded",
        "agent_created",
        "agent_updated",
        "agent_paused",
        "agent_resumed",
        "agent_deleted",
    ] {
        assert!(
            actions.contains(action),
            "{action} not audited: {actions:?}"
        );
    }

    // Node calls are counted.
    let metrics = ctl
        .client
        .get(ctl.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("delta_control_node_calls_total{op=\"create_run\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("delta_control_nodes_up 2"), "{metrics}");
}
