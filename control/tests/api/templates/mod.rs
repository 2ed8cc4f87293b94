//! Templates, per-agent recipients and the message log, over real HTTP,
//! each test on SQLite and on PostgreSQL: CRUD and validation, the approval
//! flow (an edit returns a template to draft; only admins review), tenant
//! isolation on every route, recipient checks, and the way changes reach a
//! real node (in this process) whose messenger then sends only what was
//! approved and granted, with every attempt in the message log.
//!
//! This file holds the shared helpers; the tests are in `crud`,
//! `message_log`, `isolation` and `nodes`.

use crate::common;

use std::time::Duration;

use common::{
    Control, Dialect, Session, create_agent, eventually, node_api_token, start_node_in_process,
};
use delta_guest_artifacts as guests;
use delta_node::model::{MessageAttempt, RunUsage};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---- helpers -------------------------------------------------------------------

async fn call(
    ctl: &Control,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    ctl.call(method, path, Some(token), body).await
}

fn welcome(name: &str) -> Value {
    json!({
        "name": name,
        "channel": "email",
        "subject": "Welcome, {{ name }}",
        "body": "Hello {{ name | title }}!",
        "variables": { "name": 32 },
    })
}

async fn create_template(ctl: &Control, token: &str, body: Value) -> Value {
    let (status, t) = call(
        ctl,
        Method::POST,
        "/v1/templates",
        token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}: {t}");
    t
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `who` joins `owner`'s tenant with `role`; answers their token there.
async fn join(ctl: &Control, owner: &Session, who: &Session, role: &str) -> String {
    let (status, body) = ctl.invite_and_accept(&owner.access, who, role).await;
    assert!(status.is_success(), "{body}");
    let (status, login) = ctl
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": who.email, "password": who.password,
                          "tenant_id": owner.tenant_id })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    s(&login["access_token"])
}

/// An API key of `session` with `scopes`.
async fn api_key(ctl: &Control, session: &Session, scopes: &[&str]) -> String {
    let (status, key) = call(
        ctl,
        Method::POST,
        "/v1/api-keys",
        &session.access,
        Some(json!({ "name": "k", "scopes": scopes })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    s(&key["key"])
}

/// Every item of a list, walking pages of `limit`.
async fn walk(ctl: &Control, token: &str, path: &str, limit: u32) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut url = format!("{path}{sep}limit={limit}");
    for _ in 0..1000 {
        let (status, page) = call(ctl, Method::GET, &url, token, None).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        let batch = page["items"].as_array().expect("items");
        assert!(batch.len() <= limit as usize);
        items.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{path}{sep}limit={limit}&cursor={c}"),
            None => return items,
        }
    }
    panic!("pagination of {path} never ended");
}

/// Actions of the tenant's audit log, oldest first.
async fn audit_actions(ctl: &Control, token: &str) -> Vec<Value> {
    let mut entries = walk(ctl, token, "/v1/audit", 100).await;
    entries.reverse();
    entries
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

/// A node in this process registered with `ctl`, sending email into a file
/// outbox (free of charge, so no budget is involved).
async fn start_node(ctl: &Control) -> delta_node::server::RunningNode {
    let outbox = ctl.dir.path().join("node").join("outbox");
    let extra = format!(
        r#"[messaging]
[messaging.email]
from = "Delta <noreply@delta.test>"
cost_tokens = 0
rate_limit = {{ per_minute = 600, burst = 100 }}
backend = {{ kind = "outbox", dir = "{outbox}" }}
# The node's own template: never used for control-plane agents.
[[messaging.templates]]
id = "welcome"
channel = "email"
subject = "node.toml's"
body = "node.toml's {{{{ name }}}}"
variables = ["name"]
approved = true
"#,
        outbox = outbox.display(),
    );
    start_node_in_process(ctl, NODE_ID, &extra).await
}

/// The id of this suite's node.
const NODE_ID: &str = "templates-node";

/// The deployment as the node holds it.
async fn deployment(ctl: &Control, node: &delta_node::server::RunningNode, agent: &str) -> Value {
    let resp = ctl
        .client
        .get(format!("{}/v1/agents/{agent}", node.url()))
        .bearer_auth(node_api_token(NODE_ID))
        .send()
        .await
        .expect("node");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

fn outbox_files(ctl: &Control) -> usize {
    std::fs::read_dir(ctl.dir.path().join("node").join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---- CRUD and validation ---------------------------------------------------------

fn attempt(
    template: &str,
    channel: &str,
    status: &str,
    reason: Option<&str>,
    at_ms: i64,
) -> MessageAttempt {
    MessageAttempt {
        channel: channel.into(),
        template_id: template.into(),
        recipient: if channel == "sms" {
            "+14155550100".into()
        } else {
            "ada@example.com".into()
        },
        status: status.into(),
        reason: reason.map(str::to_owned),
        tokens: if status == "sent" { 10 } else { 0 },
        provider_id: (status == "sent").then(|| format!("p-{at_ms}")),
        at_ms,
    }
}

fn usage(run: &str, agent: &str, tenant: &str, log: Vec<MessageAttempt>) -> RunUsage {
    RunUsage {
        run_id: run.into(),
        agent_id: agent.into(),
        tenant_id: tenant.into(),
        outcome: "completed".into(),
        finished_at_ms: 1_000,
        message_log: log,
        ..RunUsage::default()
    }
}

async fn messages(ctl: &Control, token: &str, query: &str) -> Vec<Value> {
    walk(ctl, token, &format!("/v1/messages{query}"), 2).await
}

mod crud;
mod isolation;
mod message_log;
mod nodes;
