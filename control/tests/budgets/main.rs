//! Token budgets with the control plane as the authority (issue 7), over
//! real HTTP, each test on SQLite and on PostgreSQL: allocation from the
//! user's pool to main agents and bots, tiers, node leases (grant, partial,
//! refusal, return, overspend, expiry, late return), token requests and
//! their decisions, roll-over, tenant isolation, node authentication, and
//! a concurrency test that checks conservation afterwards.
//!
//! Agents are created through the real API; their node is a small fake
//! (in this file) that accepts deployments, so no runtime is needed.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode as AxumStatus;
use axum::routing::{get, post, put};
use common::{Control, Session};
use delta_control::budgets;
use delta_control::db::now_ms;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

// ---- a fake node -------------------------------------------------------------

type Deployments = Arc<Mutex<HashMap<String, Value>>>;

/// A node that accepts every deployment (the control plane's side of the
/// protocol only), heartbeating while it lives.
struct FakeNode {
    server: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.server.abort();
        self.heartbeat.abort();
    }
}

async fn put_agent(
    State(deployed): State<Deployments>,
    Path(id): Path<String>,
    Json(spec): Json<Value>,
) -> Json<Value> {
    let mut record = spec;
    record["id"] = json!(id);
    record["paused"] = json!(false);
    record["created_at_ms"] = json!(now_ms());
    record["updated_at_ms"] = json!(now_ms());
    deployed
        .lock()
        .expect("deployments")
        .insert(id, record.clone());
    Json(record)
}

async fn list_agents(State(deployed): State<Deployments>) -> Json<Value> {
    let items: Vec<Value> = deployed
        .lock()
        .expect("deployments")
        .values()
        .cloned()
        .collect();
    Json(json!({ "items": items }))
}

async fn delete_agent(State(deployed): State<Deployments>, Path(id): Path<String>) -> AxumStatus {
    deployed.lock().expect("deployments").remove(&id);
    AxumStatus::NO_CONTENT
}

async fn pause(State(deployed): State<Deployments>, Path(id): Path<String>) -> Json<Value> {
    Json(
        deployed
            .lock()
            .expect("deployments")
            .get(&id)
            .cloned()
            .unwrap_or_default(),
    )
}

/// A broken or hostile node: a valid answer to a run, followed by 48 MiB of
/// whitespace (which JSON allows), over the control plane's 32 MiB cap.
async fn endless_run() -> (AxumStatus, axum::body::Body) {
    let answer = bytes::Bytes::from_static(br#"{"id":"run-1","status":"queued"}"#);
    let padding = (0..48).map(|_| bytes::Bytes::from(vec![b' '; 1 << 20]));
    let chunks = std::iter::once(answer)
        .chain(padding)
        .map(Ok::<_, std::io::Error>);
    (
        AxumStatus::ACCEPTED,
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
    )
}

async fn put_component(Path(sha): Path<String>) -> Json<Value> {
    Json(json!({ "sha256": sha, "size": 8, "world": "agent", "created_at_ms": now_ms() }))
}

/// The fake node's id.
const FAKE_NODE: &str = "n1";

async fn start_node(ctl: &Control) -> FakeNode {
    let deployed: Deployments = Arc::default();
    let app = axum::Router::new()
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", put(put_agent).delete(delete_agent))
        .route("/v1/agents/{id}/pause", post(pause))
        .route("/v1/agents/{id}/resume", post(pause))
        .route("/v1/agents/{id}/runs", post(endless_run))
        .route("/v1/components/{sha}", put(put_component))
        .with_state(deployed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // The node the tests' leases and token requests name (`n1`): agents
    // are placed on it, the only node up.
    let id = FAKE_NODE;
    let credential = ctl.node_credential(id).await;
    let beat = {
        let (client, hb) = (ctl.client.clone(), ctl.url("/v1/nodes/heartbeat"));
        let body = json!({ "node_id": id, "url": url, "capacity": 64, "load": 0 });
        move || {
            client
                .post(hb.clone())
                .bearer_auth(&credential)
                .json(&body)
                .send()
        }
    };
    let first = beat().await.expect("heartbeat");
    assert_eq!(first.status(), StatusCode::OK);
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = beat().await;
        }
    });
    FakeNode { server, heartbeat }
}

// ---- helpers -----------------------------------------------------------------

/// A tenant (its owner's session) with a component uploaded and a node.
struct World {
    ctl: Control,
    alice: Session,
    component: String,
    _node: FakeNode,
}

/// Bytes that pass the control plane's upload checks; the fake node
/// accepts anything.
fn component_bytes(tag: &str) -> Vec<u8> {
    common::fake_component(tag)
}

async fn upload(ctl: &Control, token: &str, tag: &str) -> String {
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(component_bytes(tag))
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "{status} {body}");
    body["sha256"].as_str().expect("sha").to_owned()
}

async fn world(ctl: Control) -> World {
    let alice = ctl.register("alice").await;
    let component = upload(&ctl, &alice.access, "alice").await;
    let node = start_node(&ctl).await;
    World {
        ctl,
        alice,
        component,
        _node: node,
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl World {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.ctl
            .call(method, path, Some(&self.alice.access), body)
            .await
    }

    async fn node(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.node_as(FAKE_NODE, method, path, body).await
    }

    /// A node call with `node_id`'s credential (enrolled on first use).
    async fn node_as(
        &self,
        node_id: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let credential = self.ctl.node_credential(node_id).await;
        self.ctl.call(method, path, Some(&credential), body).await
    }

    /// Create an agent as `token`; answers the status and body.
    async fn try_agent(
        &self,
        token: &str,
        name: &str,
        parent: Option<&str>,
        budget: u64,
    ) -> (StatusCode, Value) {
        let mut body = json!({
            "name": name,
            "kind": if parent.is_some() { "bot" } else { "main" },
            "component": self.component,
            "budget": budget,
        });
        if let Some(p) = parent {
            body["parent_agent_id"] = json!(p);
        }
        self.ctl
            .call(Method::POST, "/v1/agents", Some(token), Some(body))
            .await
    }

    async fn agent(&self, name: &str, parent: Option<&str>, budget: u64) -> String {
        let (status, body) = self
            .try_agent(&self.alice.access, name, parent, budget)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        s(&body["id"])
    }

    async fn budget(&self, agent: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, &format!("/v1/agents/{agent}/budget"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn mine(&self) -> Value {
        let (status, body) = self.call(Method::GET, "/v1/budget", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn set(&self, agent: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            &format!("/v1/agents/{agent}/budget"),
            Some(body),
        )
        .await
    }

    async fn lease(&self, agent: &str, amount: u64, min: u64) -> (StatusCode, Value) {
        self.node(
            Method::POST,
            "/v1/nodes/leases",
            Some(
                json!({ "node_id": "n1", "agent_id": agent, "amount": amount,
                         "min_amount": min }),
            ),
        )
        .await
    }

    async fn give_back(&self, lease: &str, spent: u64) -> (StatusCode, Value) {
        self.node(
            Method::POST,
            &format!("/v1/nodes/leases/{lease}/return"),
            Some(json!({ "node_id": "n1", "spent": spent })),
        )
        .await
    }

    async fn ask(&self, bot: &str, amount: u64) -> (StatusCode, Value) {
        self.node(
            Method::POST,
            "/v1/nodes/token-requests",
            Some(json!({ "node_id": "n1", "agent_id": bot, "amount": amount,
                         "reason": "more work" })),
        )
        .await
    }

    /// Add `name` to alice's tenant with `role`; their session there.
    async fn member(&self, name: &str, role: &str) -> Session {
        let mut other = self.ctl.register(name).await;
        let (status, body) = self
            .ctl
            .invite_and_accept(&self.alice.access, &other, role)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, login) = self
            .ctl
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": other.email, "password": other.password,
                             "tenant_id": self.alice.tenant_id })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        other.access = s(&login["access_token"]);
        other.tenant_id = self.alice.tenant_id.clone();
        other
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The whole database's budgets are consistent: no available balance or
/// pool below zero; per user, pool + Σ allocations + retired = monthly
/// allocation; every account's and user's entries sum to its balance; an
/// agent's active leases sum to its `leased`.
async fn check_conservation(ctl: &Control) {
    let pool = ctl.state.db.pool();
    let users = sqlx::query(
        "SELECT tenant_id, user_id, monthly_allocation, carved, retired FROM budget_users",
    )
    .fetch_all(pool)
    .await
    .expect("users");
    assert!(!users.is_empty());
    for u in &users {
        let (tenant, user): (String, String) = (u.get("tenant_id"), u.get("user_id"));
        let monthly: i64 = u.get("monthly_allocation");
        let carved: i64 = u.get("carved");
        let retired: i64 = u.get("retired");
        assert!(monthly - carved >= 0, "{user}: negative pool");
        let allocated: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(allocated), 0) AS BIGINT) FROM budget_accounts \
             WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(&tenant)
        .bind(&user)
        .fetch_one(pool)
        .await
        .expect("sum");
        assert_eq!(
            (monthly - carved) + allocated + retired,
            monthly,
            "{user}: pool + allocations + retired != monthly allocation"
        );
        let sums = sqlx::query(
            "SELECT CAST(COALESCE(SUM(d_monthly), 0) AS BIGINT) AS m, \
                    CAST(COALESCE(SUM(d_carved), 0) AS BIGINT) AS c, \
                    CAST(COALESCE(SUM(d_retired), 0) AS BIGINT) AS r \
             FROM budget_entries WHERE tenant_id = $1 AND user_id = $2 AND agent_id IS NULL",
        )
        .bind(&tenant)
        .bind(&user)
        .fetch_one(pool)
        .await
        .expect("user entries");
        assert_eq!(
            (
                sums.get::<i64, _>("m"),
                sums.get::<i64, _>("c"),
                sums.get::<i64, _>("r")
            ),
            (monthly, carved, retired),
            "{user}: entries do not sum to the user's balance"
        );
    }
    let accounts =
        sqlx::query("SELECT agent_id, grant_amount, allocated, spent, leased FROM budget_accounts")
            .fetch_all(pool)
            .await
            .expect("accounts");
    for a in &accounts {
        let agent: String = a.get("agent_id");
        let (allocated, spent, leased): (i64, i64, i64) =
            (a.get("allocated"), a.get("spent"), a.get("leased"));
        assert!(
            allocated - spent - leased >= 0 && spent >= 0 && leased >= 0,
            "{agent}: {allocated} - {spent} - {leased} < 0"
        );
        let sums = sqlx::query(
            "SELECT CAST(COALESCE(SUM(d_allocated), 0) AS BIGINT) AS a, \
                    CAST(COALESCE(SUM(d_spent), 0) AS BIGINT) AS s, \
                    CAST(COALESCE(SUM(d_leased), 0) AS BIGINT) AS l, \
                    CAST(COALESCE(SUM(d_grant), 0) AS BIGINT) AS g \
             FROM budget_entries WHERE agent_id = $1",
        )
        .bind(&agent)
        .fetch_one(pool)
        .await
        .expect("entries");
        assert_eq!(
            (
                sums.get::<i64, _>("a"),
                sums.get::<i64, _>("s"),
                sums.get::<i64, _>("l"),
                sums.get::<i64, _>("g")
            ),
            (allocated, spent, leased, a.get::<i64, _>("grant_amount")),
            "{agent}: entries do not sum to the balance"
        );
        let active: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(granted), 0) AS BIGINT) FROM budget_leases \
             WHERE agent_id = $1 AND status = 'active'",
        )
        .bind(&agent)
        .fetch_one(pool)
        .await
        .expect("leases");
        assert_eq!(active, leased, "{agent}: active leases != leased");
    }
}

async fn audit_actions(w: &World) -> Vec<Value> {
    let (status, page) = w.call(Method::GET, "/v1/audit?limit=200", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

mod allocation;
mod concurrency;
mod isolation;
mod leases;
mod requests;
mod rollover;
