//! The kv routes: a tenant's admins read and change an agent's state, other
//! tenants see a 404; nodes reach only the state of agents placed on them
//! that have the grant.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both;
use crate::common::{Control, Session, insert_agent};

/// An agent row of `s`'s tenant on `node`, with the `kv` grant or not.
async fn kv_agent(ctl: &Control, s: &Session, name: &str, node: &str, granted: bool) -> String {
    let id = insert_agent(ctl, s, name, Some(node)).await;
    let grants = if granted { r#"{"kv":true}"# } else { "{}" };
    sqlx::query("UPDATE agents SET grants = $1 WHERE id = $2")
        .bind(grants)
        .bind(&id)
        .execute(ctl.state.db.pool())
        .await
        .expect("grants");
    id
}

async fn put(
    ctl: &Control,
    token: &str,
    agent: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    ctl.call(
        Method::PUT,
        &format!("/v1/agents/{agent}/kv/{key}"),
        Some(token),
        Some(body),
    )
    .await
}

both!(
    admins_read_and_change_an_agent_s_state,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let eve = ctl.register("eve").await;
        let agent = kv_agent(&ctl, &alice, "keeper", "node-a", true).await;
        let token = alice.access.as_str();

        let (status, written) =
            put(&ctl, token, &agent, "greeting", json!({ "value": "hello" })).await;
        assert_eq!(status, StatusCode::OK, "{written}");
        let v1 = written["version"].as_u64().expect("version");
        // A key with a slash travels percent-encoded.
        let (status, _) = put(
            &ctl,
            token,
            &agent,
            "dir%2Fa",
            json!({ "value_base64": "/w==" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        for key in ["dir%2Fb", "dir%2Fc", "other"] {
            let (status, _) = put(&ctl, token, &agent, key, json!({ "value": "x" })).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, got) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/kv/greeting"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["value"], "hello");
        assert_eq!(got["value_base64"], "aGVsbG8=");
        assert_eq!(got["version"], v1);
        let (_, bytes) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/kv/dir%2Fa"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(bytes["value"], Value::Null, "not UTF-8: base64 only");
        assert_eq!(bytes["value_base64"], "/w==");

        // Pages of a prefix, in byte order, with an opaque cursor.
        let (status, page) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/kv?prefix=dir/&limit=2"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let keys: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|k| k["key"].as_str())
            .collect();
        assert_eq!(keys, ["dir/a", "dir/b"]);
        let cursor = page["next_cursor"].as_str().expect("a next page");
        let (_, page) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/kv?prefix=dir/&limit=2&cursor={cursor}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(page["items"][0]["key"], "dir/c");
        assert!(page.get("next_cursor").is_none(), "{page}");
        let (status, _) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/kv?cursor=zz"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Compare-and-swap through the API.
        let (status, err) = put(
            &ctl,
            token,
            &agent,
            "greeting",
            json!({ "value": "late", "expected_version": v1 + 100 }),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_eq!(err["code"], "version_conflict");
        assert_eq!(err["details"]["current_version"], v1);
        let (status, _) = put(
            &ctl,
            token,
            &agent,
            "greeting",
            json!({ "value": "hi", "expected_version": v1 }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        // Bounds: control characters, both or neither value, too large.
        let (status, err) = put(&ctl, token, &agent, "bad%01key", json!({ "value": "x" })).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_key"))
        );
        let (status, _) = put(
            &ctl,
            token,
            &agent,
            "k",
            json!({ "value": "x", "value_base64": "eA==" }),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, err) = put(
            &ctl,
            token,
            &agent,
            "big",
            json!({ "value": "x".repeat(64 * 1024 + 1) }),
        )
        .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")),
            "{err}"
        );

        // Idempotency-Key: a replayed PUT does not write again.
        let send = || {
            ctl.client
                .put(ctl.url(&format!("/v1/agents/{agent}/kv/once")))
                .bearer_auth(token)
                .header("Idempotency-Key", "kv-once-1")
                .json(&json!({ "value": "1" }))
                .send()
        };
        let first: Value = send().await.expect("put").json().await.expect("json");
        let again = send().await.expect("put again");
        assert_eq!(
            again
                .headers()
                .get("idempotency-replayed")
                .map(|v| v.as_bytes()),
            Some(&b"true"[..])
        );
        let again: Value = again.json().await.expect("json");
        assert_eq!(first["version"], again["version"]);

        // Another tenant: the agent does not exist for them.
        for (method, path) in [
            (Method::GET, format!("/v1/agents/{agent}/kv")),
            (Method::GET, format!("/v1/agents/{agent}/kv/greeting")),
            (Method::DELETE, format!("/v1/agents/{agent}/kv/greeting")),
        ] {
            let (status, _) = ctl
                .call(method.clone(), &path, Some(&eve.access), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }
        let (status, _) = put(
            &ctl,
            &eve.access,
            &agent,
            "greeting",
            json!({ "value": "evil" }),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, _) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/agents/{agent}/kv/greeting"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/agents/{agent}/kv/greeting"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/kv/greeting"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Deleting the agent deletes its state.
        sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(&agent)
            .execute(ctl.state.db.pool())
            .await
            .expect("delete agent");
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kv_entries WHERE agent_id = $1")
            .bind(&agent)
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("count");
        assert_eq!(left, 0);
    }
);

both!(
    a_node_reaches_only_its_granted_agents_state,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let here = kv_agent(&ctl, &alice, "here", "node-a", true).await;
        let elsewhere = kv_agent(&ctl, &alice, "elsewhere", "node-b", true).await;
        let ungranted = kv_agent(&ctl, &alice, "ungranted", "node-a", false).await;
        let node_a = ctl.node_credential("node-a").await;
        let call = |path: &'static str, body: Value| {
            let node_a = node_a.clone();
            let ctl = &ctl;
            async move {
                ctl.call(Method::POST, path, Some(&node_a), Some(body))
                    .await
            }
        };
        let (status, set) = call(
            "/v1/nodes/kv/set",
            json!({ "agent_id": here, "key": "n", "value_base64": "MQ==" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{set}");
        let version = set["version"].as_u64().expect("version");
        let (status, got) = call("/v1/nodes/kv/get", json!({ "agent_id": here, "key": "n" })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["entry"]["value_base64"], "MQ==");
        assert_eq!(got["entry"]["version"], version);
        let (status, err) = call(
            "/v1/nodes/kv/set",
            json!({ "agent_id": here, "key": "n", "value_base64": "Mg==", "expected_version": 0 }),
        )
        .await;
        assert_eq!(
            (status, err["details"]["current_version"].as_u64()),
            (StatusCode::CONFLICT, Some(version))
        );
        let (status, page) = call("/v1/nodes/kv/list", json!({ "agent_id": here })).await;
        assert_eq!(
            (status, page["keys"].clone()),
            (StatusCode::OK, json!(["n"]))
        );
        let (_, gone) = call(
            "/v1/nodes/kv/delete",
            json!({ "agent_id": here, "key": "n" }),
        )
        .await;
        assert_eq!(gone["existed"], true);

        for (agent, code) in [
            (&elsewhere, "agent_not_here"),
            (&ungranted, "kv_not_granted"),
        ] {
            for path in ["/v1/nodes/kv/get", "/v1/nodes/kv/delete"] {
                let (status, err) = call(path, json!({ "agent_id": agent, "key": "n" })).await;
                assert_eq!(
                    (status, err["code"].as_str()),
                    (StatusCode::FORBIDDEN, Some(code)),
                    "{path}"
                );
            }
            let (status, _) = call(
                "/v1/nodes/kv/set",
                json!({ "agent_id": agent, "key": "n", "value_base64": "MQ==" }),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        let (status, _) = call(
            "/v1/nodes/kv/get",
            json!({ "agent_id": "agt_nobody", "key": "n" }),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A person's token is not a node credential.
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/nodes/kv/get",
                Some(&alice.access),
                Some(json!({ "agent_id": here, "key": "n" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Nothing was written for the refused agents.
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kv_entries WHERE agent_id <> $1")
            .bind(&here)
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("count");
        assert_eq!(rows, 0);
    }
);
