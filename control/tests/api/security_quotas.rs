//! Per-tenant quotas (issue 18), over real HTTP on SQLite and PostgreSQL:
//! component storage (with the sweep collecting unused components), agents,
//! and messages per day as a node asks for them; an operator raises each
//! per tenant, a tenant admin cannot.

use crate::common;

use common::{Control, Session, fake_component, insert_agent, place_agent};
use delta_control::db::now_ms;
use delta_control::sweep::sweep_once;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn upload(ctl: &Control, s: &Session, bytes: Vec<u8>) -> (StatusCode, Value) {
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&s.access)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn set_quotas(ctl: &Control, token: &str, tenant: &str, body: Value) -> (StatusCode, Value) {
    ctl.call(
        Method::PUT,
        &format!("/v1/operator/tenants/{tenant}/quotas"),
        Some(token),
        Some(body),
    )
    .await
}

async fn component_rows(ctl: &Control, tenant: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM components WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count")
}

fn assert_exceeded(answer: &Value, quota: &str, limit: u64, used: u64) {
    assert_eq!(answer["code"], "quota_exceeded", "{answer}");
    assert_eq!(answer["details"]["quota"], quota, "{answer}");
    assert_eq!(answer["details"]["limit"], limit, "{answer}");
    assert_eq!(answer["details"]["used"], used, "{answer}");
}

both_with!(
    component_storage_is_capped_per_tenant_and_an_operator_raises_it,
    |c: &mut delta_control::config::ControlConfig| c.quotas.component_bytes = 100,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let first = fake_component("one");
        let size = first.len() as u64;
        assert!(
            size <= 100 && 2 * size > 100,
            "the fixture's size ({size}) fits the test"
        );
        let (status, answer) = upload(&ctl, &alice, first.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        // The same bytes again cost nothing.
        assert_eq!(upload(&ctl, &alice, first).await.0, StatusCode::OK);
        let second = fake_component("two");
        let sha_second = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&second));
        let (status, answer) = upload(&ctl, &alice, second.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_exceeded(&answer, "component_bytes", 100, size);
        assert_eq!(component_rows(&ctl, &alice.tenant_id).await, 1);
        // Nothing of it was kept on disk either.
        let file = ctl.state.components_dir.join(format!("{sha_second}.wasm"));
        assert!(!file.exists(), "a refused upload left its file");
        // Another tenant has its own room.
        assert_eq!(
            upload(&ctl, &bob, second.clone()).await.0,
            StatusCode::CREATED
        );

        // A tenant admin cannot raise their own quota; an operator can.
        let (status, answer) = set_quotas(
            &ctl,
            &alice.access,
            &alice.tenant_id,
            json!({ "component_bytes": 1_000_000 }),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "operator_only");
        let operator = ctl.operator_token().await;
        let (status, answer) = set_quotas(
            &ctl,
            &operator,
            &alice.tenant_id,
            json!({ "component_bytes": 1_000_000 }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["limits"]["component_bytes"], 1_000_000);
        assert_eq!(answer["overridden"], json!(["component_bytes"]));
        assert_eq!(answer["used"]["component_bytes"], size);
        assert_eq!(upload(&ctl, &alice, second).await.0, StatusCode::CREATED);
        // Back to the default: nothing is deleted, the next upload is refused.
        let (status, answer) = set_quotas(
            &ctl,
            &operator,
            &alice.tenant_id,
            json!({ "component_bytes": null }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["limits"]["component_bytes"], 100);
        assert_eq!(answer["overridden"], json!([]));
        let (status, answer) = upload(&ctl, &alice, fake_component("six")).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_exceeded(&answer, "component_bytes", 100, 2 * size);
        assert_eq!(
            set_quotas(&ctl, &operator, "no-such-tenant", json!({ "agents": 1 }))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
    }
);

both!(
    unused_components_are_collected_after_the_grace_period_and_used_ones_kept,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let sha = |v: &Value| v["sha256"].as_str().expect("sha").to_owned();
        let used = sha(&upload(&ctl, &alice, fake_component("used")).await.1);
        let unused = sha(&upload(&ctl, &alice, fake_component("unused")).await.1);
        let shared = fake_component("shared");
        let shared_sha = sha(&upload(&ctl, &alice, shared.clone()).await.1);
        // Bob keeps the same bytes (and an agent on them): his row and the
        // file stay when alice's row goes.
        assert_eq!(upload(&ctl, &bob, shared).await.0, StatusCode::CREATED);
        let agent = insert_agent(&ctl, &alice, "keeper", None).await;
        let bob_agent = insert_agent(&ctl, &bob, "bobs", None).await;
        for (id, component) in [(&agent, &used), (&bob_agent, &shared_sha)] {
            sqlx::query("UPDATE agents SET component = $1 WHERE id = $2")
                .bind(component)
                .bind(id)
                .execute(ctl.state.db.pool())
                .await
                .expect("agent component");
        }
        let file = |sha: &str| ctl.state.components_dir.join(format!("{sha}.wasm"));
        let has_row = |tenant: String, sha: String| {
            let ctl = &ctl;
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM components WHERE tenant_id = $1 AND sha256 = $2",
                )
                .bind(tenant)
                .bind(sha)
                .fetch_one(ctl.state.db.pool())
                .await
                .expect("count")
                    == 1
            }
        };
        // Within the grace period nothing goes.
        let report = sweep_once(&ctl.state, now_ms())
            .await
            .expect("sweep")
            .expect("ran");
        assert_eq!(report.components_collected, 0);
        assert!(has_row(alice.tenant_id.clone(), unused.clone()).await);

        let grace_ms = ctl.state.config.quotas.component_gc_grace_secs as i64 * 1000;
        let later = now_ms() + grace_ms + 60_000;
        let report = sweep_once(&ctl.state, later)
            .await
            .expect("sweep")
            .expect("ran");
        assert_eq!(report.components_collected, 2, "{report:?}");
        assert!(!has_row(alice.tenant_id.clone(), unused.clone()).await);
        assert!(!file(&unused).exists(), "the unused blob is still there");
        assert!(has_row(alice.tenant_id.clone(), used.clone()).await);
        assert!(file(&used).exists(), "a used component's blob was deleted");
        assert!(!has_row(alice.tenant_id.clone(), shared_sha.clone()).await);
        assert!(has_row(bob.tenant_id.clone(), shared_sha.clone()).await);
        assert!(file(&shared_sha).exists(), "bob's component lost its blob");
        // Listed no more for alice: re-uploading brings it back.
        let (status, page) = ctl
            .call(Method::GET, "/v1/components", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
        // A component whose agent was deleted is unused from then on.
        sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(&agent)
            .execute(ctl.state.db.pool())
            .await
            .expect("delete agent");
        let report = sweep_once(&ctl.state, later)
            .await
            .expect("sweep")
            .expect("ran");
        assert_eq!(report.components_collected, 1);
        assert!(!file(&used).exists());
    }
);

both_with!(
    agents_are_capped_per_tenant_and_an_operator_raises_it,
    |c: &mut delta_control::config::ControlConfig| c.quotas.agents = 2,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let sha = upload(&ctl, &alice, fake_component("agents")).await.1["sha256"]
            .as_str()
            .expect("sha")
            .to_owned();
        insert_agent(&ctl, &alice, "one", None).await;
        insert_agent(&ctl, &alice, "two", None).await;
        let create = |name: &'static str| {
            let (ctl, token, sha) = (&ctl, alice.access.clone(), sha.clone());
            async move {
                ctl.call(
                    Method::POST,
                    "/v1/agents",
                    Some(&token),
                    Some(json!({ "name": name, "kind": "main", "component": sha })),
                )
                .await
            }
        };
        let (status, answer) = create("three").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_exceeded(&answer, "agents", 2, 2);
        let operator = ctl.operator_token().await;
        let (status, answer) =
            set_quotas(&ctl, &operator, &alice.tenant_id, json!({ "agents": 3 })).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["used"]["agents"], 2);
        // Past the quota now; no node is up, so placement is what refuses.
        let (status, answer) = create("three").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    }
);

both_with!(
    messages_per_day_are_counted_before_sending_and_refused_past_the_quota,
    |c: &mut delta_control::config::ControlConfig| c.quotas.messages_per_day = 2,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let node = ctl.node_credential("node-a").await;
        let other = ctl.node_credential("node-b").await;
        let agent = insert_agent(&ctl, &alice, "sender", None).await;
        let bobs = insert_agent(&ctl, &bob, "sender", None).await;
        place_agent(&ctl, &agent, "node-a").await;
        place_agent(&ctl, &bobs, "node-a").await;
        let admit = |credential: String, agent: String, channel: &'static str| {
            let ctl = &ctl;
            async move {
                ctl.call(
                    Method::POST,
                    "/v1/nodes/messages/admit",
                    Some(&credential),
                    Some(json!({ "agent_id": agent, "channel": channel })),
                )
                .await
            }
        };
        for channel in ["email", "sms"] {
            let (status, answer) = admit(node.clone(), agent.clone(), channel).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
        let (status, answer) = admit(node.clone(), agent.clone(), "email").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
        assert_exceeded(&answer, "messages_per_day", 2, 2);
        let wait = answer["details"]["retry_after_ms"].as_u64().expect("wait");
        assert!(wait > 0 && wait <= 24 * 3600 * 1000, "{wait}");
        // The refusal was not counted; bob's tenant has its own count.
        let (status, answer) = admit(node.clone(), bobs.clone(), "email").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        // Only the node the agent is on may ask, for a real channel.
        let (status, answer) = admit(other.clone(), bobs.clone(), "email").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "agent_not_here");
        let (status, _) = admit(node.clone(), bobs.clone(), "pigeon").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        // An operator raises alice's quota: one more goes.
        let operator = ctl.operator_token().await;
        let (status, answer) = set_quotas(
            &ctl,
            &operator,
            &alice.tenant_id,
            json!({ "messages_per_day": 3 }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["used"]["messages_per_day"], 2);
        assert_eq!(
            admit(node.clone(), agent.clone(), "email").await.0,
            StatusCode::OK
        );
        assert_eq!(
            admit(node, agent, "email").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let (status, answer) = ctl
            .call(
                Method::GET,
                &format!("/v1/operator/tenants/{}/quotas", alice.tenant_id),
                Some(&operator),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["used"]["messages_per_day"], 3);
    }
);
