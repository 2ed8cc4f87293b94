//! Node identity (issue 18), over real HTTP on SQLite and PostgreSQL: each
//! node has its own credential, issued by an operator; a node acts as
//! itself only, for the agents placed on it only; revocation and rotation
//! take effect on the next request.

use crate::common;

use common::{Control, Session, insert_agent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A heartbeat body.
fn beat(node_id: &str, url: &str) -> Value {
    json!({ "node_id": node_id, "url": url, "capacity": 4, "load": 0 })
}

async fn heartbeat(ctl: &Control, credential: &str, body: Value) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        "/v1/nodes/heartbeat",
        Some(credential),
        Some(body),
    )
    .await
}

/// (url, last_heartbeat_ms) of a node, if it exists.
async fn node_row(ctl: &Control, id: &str) -> Option<(String, i64)> {
    sqlx::query_as("SELECT url, last_heartbeat_ms FROM nodes WHERE id = $1")
        .bind(id)
        .fetch_optional(ctl.state.db.pool())
        .await
        .expect("node row")
}

async fn count(ctl: &Control, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
}

both!(
    a_node_cannot_heartbeat_as_another,
    |ctl: Control| async move {
        let a = ctl.node_credential("node-a").await;
        let b = ctl.node_credential("node-b").await;
        let (status, ack) = heartbeat(&ctl, &a, beat("node-a", "http://127.0.0.1:7001")).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        let (status, _) = heartbeat(&ctl, &b, beat("node-b", "http://127.0.0.1:7002")).await;
        assert_eq!(status, StatusCode::OK);
        let before = node_row(&ctl, "node-b").await;

        // node-a's credential claims node-b (and would point it at itself).
        let (status, answer) = heartbeat(&ctl, &a, beat("node-b", "http://127.0.0.1:7001")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "wrong_node");
        assert_eq!(node_row(&ctl, "node-b").await, before, "node-b changed");

        // A node id never enrolled: no credential names it, so it cannot beat.
        let (status, answer) = heartbeat(&ctl, &a, beat("ghost", "http://127.0.0.1:7003")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "wrong_node");
        for token in [
            "ncr_0000000000000000.made-up-secret",
            &format!("{}x", a),
            &common::node_api_token("node-a"),
        ] {
            let (status, _) = heartbeat(&ctl, token, beat("ghost", "http://127.0.0.1:7003")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        }
        assert_eq!(node_row(&ctl, "ghost").await, None);
    }
);

both!(
    a_node_acts_only_for_agents_placed_on_it,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let a = ctl.node_credential("node-a").await;
        let b = ctl.node_credential("node-b").await;
        let on_b = insert_agent(&ctl, &alice, "on-b", Some("node-b")).await;
        let balance = format!("/v1/nodes/budgets/{on_b}");
        let (status, before) = ctl.call(Method::GET, &balance, Some(&b), None).await;
        assert_eq!(status, StatusCode::OK, "{before}");

        let refused = [
            (
                Method::POST,
                "/v1/nodes/leases".to_owned(),
                Some(json!({ "node_id": "node-a", "agent_id": on_b, "amount": 5 })),
            ),
            (Method::GET, balance.clone(), None),
            (
                Method::POST,
                "/v1/nodes/token-requests".to_owned(),
                Some(json!({ "node_id": "node-a", "agent_id": on_b, "amount": 5, "reason": "" })),
            ),
            (
                Method::GET,
                format!("/v1/nodes/token-requests/tkr_x?agent_id={on_b}"),
                None,
            ),
            (
                Method::POST,
                "/v1/nodes/usage".to_owned(),
                Some(json!({ "batch_id": "steal", "node_id": "node-a",
                         "records": [usage("run-1", &alice, &on_b)] })),
            ),
        ];
        for (method, path, body) in refused {
            let (status, answer) = ctl.call(method.clone(), &path, Some(&a), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
            assert_eq!(answer["code"], "agent_not_here", "{method} {path}");
        }
        // Naming the node the agent is on does not help: the credential is
        // node-a's.
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/nodes/leases",
                Some(&a),
                Some(json!({ "node_id": "node-b", "agent_id": on_b, "amount": 5 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "wrong_node");
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/nodes/usage",
                Some(&a),
                Some(json!({ "batch_id": "steal-2", "node_id": "node-b",
                         "records": [usage("run-2", &alice, &on_b)] })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "wrong_node");
        // A record naming an agent nobody knows: refused whole, not a 500.
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/nodes/usage",
                Some(&a),
                Some(json!({ "batch_id": "ghost", "node_id": "node-a",
                         "records": [usage("run-3", &alice, "agt_ghost")] })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["code"], "unknown_agent");

        // Nothing moved.
        let (_, after) = ctl.call(Method::GET, &balance, Some(&b), None).await;
        assert_eq!(after, before);
        for table in [
            "budget_leases",
            "token_requests",
            "usage_records",
            "usage_batches",
        ] {
            assert_eq!(count(&ctl, table).await, 0, "{table}");
        }
        // The node the agent is on reports its usage.
        let (status, ack) = ctl
            .call(
                Method::POST,
                "/v1/nodes/usage",
                Some(&b),
                Some(json!({ "batch_id": "mine", "node_id": "node-b",
                         "records": [usage("run-4", &alice, &on_b)] })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack["accepted"], 1, "{ack}");
    }
);

both!(
    a_run_held_by_a_node_stays_reportable_after_its_agent_moved,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let a = ctl.node_credential("node-a").await;
        let agent = insert_agent(&ctl, &alice, "moved", Some("node-b")).await;
        // The control plane recorded run-9 on node-a before the agent moved.
        sqlx::query(
            "INSERT INTO runs (id, tenant_id, agent_id, node_id, status, created_at_ms) \
             VALUES ('run-9', $1, $2, 'node-a', 'running', 1)",
        )
        .bind(&alice.tenant_id)
        .bind(&agent)
        .execute(ctl.state.db.pool())
        .await
        .expect("run row");
        let (status, ack) = ctl
            .call(
                Method::POST,
                "/v1/nodes/usage",
                Some(&a),
                Some(json!({ "batch_id": "late", "node_id": "node-a",
                             "records": [usage("run-9", &alice, &agent)] })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack["accepted"], 1, "{ack}");
    }
);

both!(a_revoked_credential_is_refused, |ctl: Control| async move {
    let op = ctl.operator_token().await;
    let enrolled = ctl.enrol("node-r").await;
    let credential = enrolled["credential"].as_str().expect("credential");
    let id = enrolled["credential_id"].as_str().expect("id");
    let (status, _) = heartbeat(&ctl, credential, beat("node-r", "http://127.0.0.1:7005")).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/v1/operator/nodes/node-r/credentials/{id}");
    let (status, _) = ctl.call(Method::DELETE, &path, Some(&op), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = heartbeat(&ctl, credential, beat("node-r", "http://127.0.0.1:7005")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Again: still revoked, still 204; another node's path: 404.
    let (status, _) = ctl.call(Method::DELETE, &path, Some(&op), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = ctl
        .call(
            Method::DELETE,
            &format!("/v1/operator/nodes/other/credentials/{id}"),
            Some(&op),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = ctl
        .call(
            Method::GET,
            "/v1/operator/nodes/node-r/credentials",
            Some(&op),
            None,
        )
        .await;
    assert_eq!(page["items"][0]["active"], false, "{page}");
    assert!(page["items"][0]["revoked_at_ms"].is_i64(), "{page}");
});

both!(
    a_rotated_credential_works_beside_the_old_until_it_retires,
    |ctl: Control| async move {
        let op = ctl.operator_token().await;
        let old = ctl.node_credential("node-x").await;
        let rotate = |body: Value| {
            let (ctl, op) = (&ctl, &op);
            async move {
                let (status, issued) = ctl
                    .call(
                        Method::POST,
                        "/v1/operator/nodes/node-x/credentials",
                        Some(op),
                        Some(body),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{issued}");
                issued["credential"]
                    .as_str()
                    .expect("credential")
                    .to_owned()
            }
        };
        let hb = beat("node-x", "http://127.0.0.1:7006");
        // Without retirement: old and new both work.
        let second = rotate(json!({})).await;
        for c in [&old, &second] {
            assert_eq!(heartbeat(&ctl, c, hb.clone()).await.0, StatusCode::OK);
        }
        // A third retires the others in two seconds: until then all work.
        let third = rotate(json!({ "retire_others_after_secs": 2 })).await;
        for c in [&old, &second, &third] {
            assert_eq!(heartbeat(&ctl, c, hb.clone()).await.0, StatusCode::OK);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        for c in [&old, &second] {
            assert_eq!(
                heartbeat(&ctl, c, hb.clone()).await.0,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(heartbeat(&ctl, &third, hb).await.0, StatusCode::OK);
        // An unknown node has nothing to rotate.
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/operator/nodes/nobody/credentials",
                Some(&op),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

both!(
    strangers_and_tenant_admins_cannot_enrol_or_see_credentials,
    |ctl: Control| async move {
        // A registrant owns (administers) their own tenant.
        let stranger: Session = ctl.register("stranger").await;
        ctl.node_credential("node-s").await;
        let attempts = [
            (
                Method::POST,
                "/v1/operator/nodes".to_owned(),
                Some(json!({ "node_id": "rogue" })),
            ),
            (
                Method::POST,
                "/v1/operator/nodes/node-s/credentials".to_owned(),
                Some(json!({})),
            ),
            (
                Method::GET,
                "/v1/operator/nodes/node-s/credentials".to_owned(),
                None,
            ),
            (
                Method::DELETE,
                "/v1/operator/nodes/node-s/credentials/ncr_0000000000000000".to_owned(),
                None,
            ),
        ];
        for (method, path, body) in attempts {
            let (status, answer) = ctl
                .call(method.clone(), &path, Some(&stranger.access), body)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
            assert_eq!(answer["code"], "operator_only");
        }
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/operator/nodes",
                None,
                Some(json!({ "node_id": "rogue" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(node_row(&ctl, "rogue").await, None);
        assert_eq!(count(&ctl, "node_credentials").await, 1);
    }
);

both!(
    the_credential_is_shown_once_and_listed_without_its_secret,
    |ctl: Control| async move {
        let op = ctl.operator_token().await;
        let enrolled = ctl.enrol("node-o").await;
        let credential = enrolled["credential"].as_str().expect("credential");
        let id = enrolled["credential_id"].as_str().expect("id");
        let (prefix, secret) = credential.split_once('.').expect("id.secret");
        assert_eq!(prefix, id);
        assert!(id.starts_with("ncr_"), "{id}");
        assert_eq!(secret.len(), 43, "32 bytes of base64url");
        // Stored hashed: the secret is nowhere in the database.
        let stored: String =
            sqlx::query_scalar("SELECT secret_hash FROM node_credentials WHERE id = $1")
                .bind(id)
                .fetch_one(ctl.state.db.pool())
                .await
                .expect("row");
        assert!(!stored.contains(secret));
        // Listed without it.
        let resp = ctl
            .client
            .get(ctl.url("/v1/operator/nodes/node-o/credentials"))
            .bearer_auth(&op)
            .send()
            .await
            .expect("list");
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.expect("text");
        assert!(!text.contains(secret), "{text}");
        let page: Value = serde_json::from_str(&text).expect("json");
        let items = page["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], id);
        assert_eq!(items[0]["active"], true);
        assert!(items[0].get("credential").is_none());
        // Enrolling again is refused (rotate instead), and shows nothing.
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/operator/nodes",
                Some(&op),
                Some(json!({ "node_id": "node-o" })),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["code"], "node_enrolled");
        assert!(answer.get("credential").is_none());
        // Malformed ids and URLs a node could not be called at.
        for body in [
            json!({ "node_id": "bad/id" }),
            json!({ "node_id": "ok", "url": "http://10.0.0.5:7421" }),
            json!({ "node_id": "ok", "url": "file:///etc/passwd" }),
        ] {
            let (status, answer) = ctl
                .call(Method::POST, "/v1/operator/nodes", Some(&op), Some(body))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        }
    }
);

both!(
    enrolment_replays_under_its_idempotency_key,
    |ctl: Control| async move {
        let op = ctl.operator_token().await;
        let enrol = || {
            ctl.client
                .post(ctl.url("/v1/operator/nodes"))
                .bearer_auth(&op)
                .header("Idempotency-Key", "enrol-node-i")
                .json(&json!({ "node_id": "node-i", "url": "https://node-i.example.com" }))
                .send()
        };
        let first = enrol().await.expect("first");
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.expect("json");
        let again = enrol().await.expect("again");
        assert_eq!(again.status(), StatusCode::CREATED);
        assert!(again.headers().contains_key("idempotency-replayed"));
        let again: Value = again.json().await.expect("json");
        assert_eq!(again, first);
        assert_eq!(count(&ctl, "node_credentials").await, 1);
        assert_eq!(
            node_row(&ctl, "node-i").await.map(|(url, _)| url),
            Some("https://node-i.example.com".to_owned())
        );
    }
);

/// A usage record of one run of `agent` in `s`'s tenant.
fn usage(run: &str, s: &Session, agent: &str) -> Value {
    json!({
        "run_id": run, "agent_id": agent, "tenant_id": s.tenant_id, "outcome": "completed",
        "fuel_used": 10, "wall_time_us": 5, "peak_memory_bytes": 0,
        "llm": {}, "messages": {}, "finished_at_ms": delta_control::db::now_ms(),
    })
}

both!(
    each_node_accepts_only_its_own_token_and_the_control_plane_reaches_both,
    |ctl: Control| async move {
        use delta_control::nodeclient::{NodeClient, Target};
        let a = common::start_node_in(&ctl, "node-a", "node-a", "").await;
        let b = common::start_node_in(&ctl, "node-b", "node-b", "").await;
        let ask = |url: String, token: String| {
            let client = ctl.client.clone();
            async move {
                client
                    .get(format!("{url}/v1/agents"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("node")
                    .status()
            }
        };
        // Whoever holds node-a's token (node-a itself, or its thief)
        // cannot call node-b, and the other way round.
        let (token_a, token_b) = (
            common::node_api_token("node-a"),
            common::node_api_token("node-b"),
        );
        assert_ne!(token_a, token_b);
        assert_eq!(
            ask(b.url().to_owned(), token_a.clone()).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ask(a.url().to_owned(), token_b.clone()).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(ask(a.url().to_owned(), token_a).await, StatusCode::OK);
        assert_eq!(ask(b.url().to_owned(), token_b).await, StatusCode::OK);
        // The control plane presents each node its own.
        for (id, node) in [("node-a", &a), ("node-b", &b)] {
            let target = Target {
                id: id.to_owned(),
                url: node.url().to_owned(),
            };
            let held = NodeClient::new(&ctl.state)
                .list_agents(&target)
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(held.is_empty());
            // Addressed as the other node, the call is refused.
            let other = Target {
                id: if id == "node-a" { "node-b" } else { "node-a" }.to_owned(),
                url: node.url().to_owned(),
            };
            let refused = NodeClient::new(&ctl.state).list_agents(&other).await;
            assert!(
                matches!(&refused, Err(delta_control::nodeclient::NodeCallError::Refused { status, .. }) if *status == StatusCode::UNAUTHORIZED),
                "{refused:?}"
            );
        }
        // Enrolment hands the node its token.
        let issued = ctl.enrol("node-c").await;
        assert_eq!(
            issued["node_api_token"],
            common::node_api_token("node-c"),
            "{issued}"
        );
        a.shutdown().await;
        b.shutdown().await;
    }
);
