//! Tenant isolation, route by route: every operation of the OpenAPI
//! document is called with another tenant's credentials and the first
//! tenant's ids. Each must answer 404 (or a body error), never 403, never
//! 2xx, and never echo the other tenant's data. Runs on SQLite and
//! PostgreSQL, with a real node in the same process.

use crate::common;

use std::collections::HashMap;

use common::{Control, Dialect, start_node_in_process};
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn create(ctl: &Control, token: &str, path: &str, body: Value) -> Value {
    let (status, value) = ctl.call(Method::POST, path, Some(token), Some(body)).await;
    assert!(status.is_success(), "POST {path}: {status} {value}");
    value
}

async fn isolation(ctl: Control) {
    let node = start_node_in_process(&ctl, "isolation-node", "").await;
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let carol = ctl.register("carol").await;

    // Alice's tenant gets one of everything.
    let bytes = std::fs::read(guests::HELLO_AGENT).expect("guest");
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&alice.access)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success());
    let component: Value = resp.json().await.expect("json");
    let sha = component["sha256"].as_str().expect("sha").to_owned();
    // The node registers with its first heartbeat.
    let agent = {
        let mut tries = 0;
        loop {
            let (status, body) = ctl
                .call(
                    Method::POST,
                    "/v1/agents",
                    Some(&alice.access),
                    Some(json!({ "name": "alice-main", "kind": "main", "component": sha })),
                )
                .await;
            if status.is_success() {
                break body;
            }
            tries += 1;
            assert!(
                tries < 100 && status == StatusCode::SERVICE_UNAVAILABLE,
                "{status} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let agent_id = agent["id"].as_str().expect("agent id").to_owned();
    let run = create(
        &ctl,
        &alice.access,
        &format!("/v1/agents/{agent_id}/runs?wait=true"),
        json!({ "input": { "name": "A" } }),
    )
    .await;
    let run_id = run["id"].as_str().expect("run id").to_owned();
    let key = create(&ctl, &alice.access, "/v1/api-keys", json!({ "name": "k" })).await;
    let key_id = key["id"].as_str().expect("key id").to_owned();
    let (status, joined) = ctl.invite_and_accept(&alice.access, &carol, "member").await;
    assert!(status.is_success(), "{joined}");

    let template = create(
        &ctl,
        &alice.access,
        "/v1/templates",
        json!({ "name": "alice-welcome", "channel": "email", "subject": "Hi",
                "body": "Hello {{ name }}", "variables": { "name": 64 } }),
    )
    .await;
    let template_id = template["id"].as_str().expect("template id").to_owned();
    // A bot asking its main agent for tokens: a pending request.
    let (status, body) = ctl
        .call(
            Method::PUT,
            &format!("/v1/agents/{agent_id}/budget"),
            Some(&alice.access),
            Some(json!({ "allocated": 1000, "max_request": 500 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bot = create(
        &ctl,
        &alice.access,
        "/v1/agents",
        json!({ "name": "alice-bot", "kind": "bot", "parent_agent_id": agent_id,
                "component": sha }),
    )
    .await;
    let bot_id = bot["id"].as_str().expect("bot id").to_owned();
    let request = create(
        &ctl,
        &alice.access,
        &format!("/v1/agents/{bot_id}/token-requests"),
        json!({ "amount": 100, "reason": "alice-secret-reason" }),
    )
    .await;
    assert_eq!(request["status"], "pending", "{request}");
    let request_id = request["id"].as_str().expect("request id").to_owned();

    let (status, body) = ctl
        .call(
            Method::PUT,
            "/v1/secrets/ALICE_SECRET_NAME",
            Some(&alice.access),
            Some(json!({ "value": "alice-secret-value" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ids: HashMap<&str, &str> = HashMap::from([
        ("secrets", "ALICE_SECRET_NAME"),
        ("templates", template_id.as_str()),
        ("token-requests", request_id.as_str()),
        ("agents", agent_id.as_str()),
        ("runs", run_id.as_str()),
        ("api-keys", key_id.as_str()),
        ("members", carol.user_id.as_str()),
        ("components", sha.as_str()),
    ]);
    let secrets = [
        agent_id.as_str(),
        run_id.as_str(),
        key_id.as_str(),
        template_id.as_str(),
        "alice-welcome",
        bot_id.as_str(),
        request_id.as_str(),
        "alice-secret-reason",
        "alice-secret-value",
        "ALICE_SECRET_NAME",
        "alice-main",
        alice.tenant_id.as_str(),
        "Hello, A!",
    ];

    let (_, doc) = ctl.call(Method::GET, "/v1/openapi.json", None, None).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        // Node routes take a node's credential, not a tenant's, and
        // operator routes are 403 `operator_only` to any tenant's user
        // (control/tests/security_fleet.rs, tests/control_fleet.rs and
        // control/tests/budgets cover them).
        if !path.contains('{')
            || path.starts_with("/v1/nodes/")
            || path.starts_with("/v1/operator/")
        {
            continue;
        }
        let concrete = substitute(path, &ids);
        for (method, _) in item.as_object().expect("item") {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let (status, answer) = ctl
                .call(method.clone(), &concrete, Some(&bob.access), body)
                .await;
            // `/v1/artifacts/{sha}` takes no bearer token: its signed URL is
            // the credential, so a tenant's token without a signature is
            // `bad_signature` whoever holds it (forged and cross-artifact
            // signatures: control/tests/bounties/artifacts.rs).
            let signed_url_only = path.starts_with("/v1/artifacts/")
                && status == StatusCode::FORBIDDEN
                && answer["code"] == "bad_signature";
            assert!(
                status == StatusCode::NOT_FOUND
                    || status == StatusCode::UNPROCESSABLE_ENTITY
                    || status == StatusCode::BAD_REQUEST
                    || signed_url_only,
                "{method} {concrete} as another tenant answered {status}: {answer}"
            );
            let text = answer.to_string();
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "{method} {concrete} leaked {secret}: {text}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations with ids checked");

    // Lists show nothing of Alice's.
    for list in [
        "/v1/agents",
        "/v1/runs",
        "/v1/api-keys",
        "/v1/components",
        "/v1/templates",
        "/v1/messages",
        "/v1/token-requests",
        "/v1/budget",
        "/v1/usage",
        "/v1/tenants/current/members",
        "/v1/audit",
        "/v1/secrets",
    ] {
        let (status, answer) = ctl.call(Method::GET, list, Some(&bob.access), None).await;
        assert_eq!(status, StatusCode::OK, "{list}: {answer}");
        let text = answer.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "GET {list} leaked {secret}: {text}");
        }
    }
    // Alice's own calls still work (the ids were real).
    let (status, _) = ctl
        .call(
            Method::GET,
            &format!("/v1/runs/{run_id}"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    node.shutdown().await;
}

/// Fill `{param}`s: `{id}` by the collection before it, others by name.
fn substitute(path: &str, ids: &HashMap<&str, &str>) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if seg.starts_with('{') {
            let collection = if *seg == "{user_id}" {
                "members"
            } else if *seg == "{sha256}" {
                "components"
            } else {
                segments.get(i.wrapping_sub(1)).copied().unwrap_or("")
            };
            out.push(ids.get(collection).copied().unwrap_or("x").to_owned());
        } else {
            out.push((*seg).to_owned());
        }
    }
    out.join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_answer_404_on_sqlite() {
    isolation(Control::start_with(Dialect::Sqlite, common::with_vault).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_answer_404_on_postgres() {
    isolation(Control::start_with(Dialect::Postgres, common::with_vault).await).await;
}
