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

// ---- allocation --------------------------------------------------------------

both!(
    allocation_from_pool_to_main_agents_and_bots,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let me = w.mine().await;
        assert_eq!(me["tier"], "developer");
        assert_eq!(n(&me["monthly_allocation"]), 10_000);
        assert_eq!(n(&me["pool"]), 10_000);
        assert_eq!(me["period"], delta_control::db::utc_month(now_ms()));

        let main = w.agent("main", None, 3_000).await;
        let bot = w.agent("bot", Some(&main), 500).await;
        let me = w.mine().await;
        assert_eq!(n(&me["pool"]), 7_000);
        assert_eq!(n(&me["allocated"]), 3_000);
        assert_eq!(me["main_agents"].as_array().map(Vec::len), Some(1));
        assert_eq!(n(&me["main_agents"][0]["allocated"]), 2_500);
        let b = w.budget(&bot).await;
        assert_eq!(
            (n(&b["allocated"]), n(&b["available"]), n(&b["grant"])),
            (500, 500, 500)
        );
        assert_eq!(b["kind"], "bot");
        assert_eq!(s(&b["parent_agent_id"]), main);
        assert_eq!(s(&b["user_id"]), w.alice.user_id);

        // More than the parent holds: refused, and nothing is stored.
        let (status, body) = w
            .try_agent(&w.alice.access, "greedy-bot", Some(&main), 2_501)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        assert_eq!(n(&body["details"]["available"]), 2_500);
        let (status, body) = w
            .try_agent(&w.alice.access, "greedy-main", None, 7_001)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(n(&body["details"]["available"]), 7_000);
        let (_, agents) = w.call(Method::GET, "/v1/agents", None).await;
        assert_eq!(
            agents["items"].as_array().map(Vec::len),
            Some(2),
            "{agents}"
        );
        // The pool can be taken exactly.
        let all = w.agent("all-of-it", None, 7_000).await;
        assert_eq!(n(&w.mine().await["pool"]), 0);
        let (status, body) = w.set(&all, json!({ "allocated": 7_001 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        let (status, _) = w.set(&all, json!({ "allocated": 1_000 })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(n(&w.mine().await["pool"]), 6_000);

        // Moving tokens between a bot and its main agent.
        let (status, body) = w.set(&bot, json!({ "allocated": 1_500 })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(n(&body["allocated"]), 1_500);
        assert_eq!(n(&body["grant"]), 1_500);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 1_500);
        let (status, body) = w.set(&bot, json!({ "allocated": 3_001 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(n(&body["details"]["available"]), 1_500);
        // Growing a main agent takes from the pool, shrinking gives back.
        let (status, body) = w.set(&main, json!({ "allocated": 2_000 })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(n(&body["grant"]), 3_500);
        assert_eq!(n(&w.mine().await["pool"]), 5_500);

        // Not below what is spent and leased.
        let (status, lease) = w.lease(&bot, 1_000, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{lease}");
        let (status, body) = w.set(&bot, json!({ "allocated": 999 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        assert_eq!(n(&body["details"]["minimum"]), 1_000);
        let (status, _) = w.set(&bot, json!({ "allocated": 1_000 })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 2_500);

        // Limits are a main agent's; bad values are refused.
        let (status, body) = w.set(&bot, json!({ "max_request": 5 })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = w.set(&main, json!({ "allocated": u64::MAX })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = w
            .set(
                &main,
                json!({ "auto_approve_limit": 10, "max_request": 20 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (n(&body["auto_approve_limit"]), n(&body["max_request"])),
            (10, 20)
        );

        // A member may read but not change budgets.
        let bob = w.member("bob", "member").await;
        let (status, _) = w
            .ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{main}/budget"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = w
            .ctl
            .call(
                Method::PUT,
                &format!("/v1/agents/{main}/budget"),
                Some(&bob.access),
                Some(json!({ "allocated": 1 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Deleting the bot gives its unspent tokens back to its main agent;
        // what it spent stays spent until the period ends.
        let lease_id = s(&lease["lease_id"]);
        let (status, back) = w.give_back(&lease_id, 300).await;
        assert_eq!(status, StatusCode::OK, "{back}");
        let (status, _) = w
            .call(Method::DELETE, &format!("/v1/agents/{bot}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 2_500 + 700);
        let me = w.mine().await;
        assert_eq!(n(&me["retired"]), 300);
        // And a main agent's go back to the pool.
        let (status, _) = w
            .call(Method::DELETE, &format!("/v1/agents/{all}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(n(&w.mine().await["pool"]), 6_500);
        let actions: Vec<String> = audit_actions(&w)
            .await
            .iter()
            .map(|e| s(&e["action"]))
            .collect();
        assert!(
            actions.iter().any(|a| a == "agent_budget_changed"),
            "{actions:?}"
        );
        check_conservation(&w.ctl).await;
    }
);

both!(
    tiers_change_the_pool_but_not_below_what_is_allocated,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let me = &w.alice.user_id;
        w.agent("main", None, 3_000).await;
        // Tiers are the platform operator's; the tenant's owner may not
        // change their own (see tests/security.rs for the attack itself).
        let op = w.ctl.operator().await;
        let tenant = w.alice.tenant_id.clone();
        let as_operator = |path: String, tier: &'static str| {
            let (ctl, token, tenant) = (&w.ctl, op.access.clone(), tenant.clone());
            async move {
                ctl.call(
                    Method::PUT,
                    &path,
                    Some(&token),
                    Some(json!({ "tier": tier, "tenant_id": tenant })),
                )
                .await
            }
        };
        let (status, body) = as_operator(format!("/v1/budget/users/{me}"), "team").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["tier"], "team");
        assert_eq!(n(&body["monthly_allocation"]), 100_000);
        assert_eq!(n(&body["pool"]), 97_000);
        let (status, body) = as_operator(format!("/v1/budget/users/{me}"), "free").await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "below_allocated");
        assert_eq!(n(&body["details"]["allocated"]), 3_000);
        let (status, body) = as_operator(format!("/v1/budget/users/{me}"), "platinum").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(n(&w.mine().await["pool"]), 97_000);

        // Another member: their own budget appears on first use; an admin sees
        // and changes it; they may not.
        let bob = w.member("bob", "member").await;
        let (status, his) = w
            .ctl
            .call(Method::GET, "/v1/budget", Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{his}");
        assert_eq!(
            (s(&his["user_id"]), n(&his["pool"])),
            (bob.user_id.clone(), 10_000)
        );
        let path = format!("/v1/budget/users/{}", bob.user_id);
        let (status, _) = w
            .ctl
            .call(
                Method::PUT,
                &path,
                Some(&bob.access),
                Some(json!({ "tier": "team" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = w
            .ctl
            .call(Method::GET, &path, Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = as_operator(path.clone(), "free").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(n(&body["pool"]), 1_000);
        let (status, body) = w.call(Method::GET, &path, None).await;
        assert_eq!(
            (status, body["tier"].clone()),
            (StatusCode::OK, json!("free"))
        );
        // Someone who is not a member of the tenant.
        let carol = w.ctl.register("carol").await;
        let (status, _) = w
            .call(
                Method::GET,
                &format!("/v1/budget/users/{}", carol.user_id),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let actions: Vec<String> = audit_actions(&w)
            .await
            .iter()
            .map(|e| s(&e["action"]))
            .collect();
        assert_eq!(
            actions
                .iter()
                .filter(|a| *a == "budget_tier_changed")
                .count(),
            2,
            "{actions:?}"
        );
        check_conservation(&w.ctl).await;
    }
);

// ---- leases ------------------------------------------------------------------

both!(
    leases_are_granted_partly_refused_and_returned_once,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let (status, a) = w.lease(&main, 600, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{a}");
        assert_eq!(n(&a["granted"]), 600);
        assert!(s(&a["lease_id"]).starts_with("lse_"));
        assert_eq!(s(&a["agent_id"]), main);
        let ttl = a["expires_at_ms"].as_i64().expect("expiry") - now_ms();
        assert!((100_000..=121_000).contains(&ttl), "{ttl}");
        // Partial: only 400 left.
        let (status, b) = w.lease(&main, 600, 100).await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
        assert_eq!(n(&b["granted"]), 400);
        // Nothing left.
        let (status, refused) = w.lease(&main, 10, 1).await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert_eq!(refused["code"], "budget_exhausted");
        assert_eq!(n(&refused["details"]["available"]), 0);
        let (status, body) = w
            .node(Method::GET, &format!("/v1/nodes/budgets/{main}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (
                n(&body["allocated"]),
                n(&body["spent"]),
                n(&body["reserved"]),
                n(&body["available"])
            ),
            (1_000, 0, 1_000, 0)
        );
        assert_eq!(body["period"], delta_control::db::utc_month(now_ms()));

        // Another node cannot return it: naming itself, the lease is not
        // its own; naming the holder, the credential is not the holder's.
        let (status, body) = w
            .node_as(
                "n2",
                Method::POST,
                &format!("/v1/nodes/leases/{}/return", s(&a["lease_id"])),
                Some(json!({ "node_id": "n1", "spent": 0 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "wrong_node");
        let (status, body) = w
            .node_as(
                "n2",
                Method::POST,
                &format!("/v1/nodes/leases/{}/return", s(&a["lease_id"])),
                Some(json!({ "node_id": "n2", "spent": 0 })),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // Return 250 of 600: 350 back, 250 charged.
        let (status, back) = w.give_back(&s(&a["lease_id"]), 250).await;
        assert_eq!(status, StatusCode::OK, "{back}");
        assert_eq!(
            (
                n(&back["charged"]),
                n(&back["returned"]),
                n(&back["uncovered"])
            ),
            (250, 350, 0)
        );
        assert_eq!(back["status"], "returned");
        // Again, even with another figure: the first result, changing nothing.
        let (status, again) = w.give_back(&s(&a["lease_id"]), 599).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again, back);
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (250, 400, 350)
        );
        // min_amount above what is left.
        let (status, refused) = w.lease(&main, 1_000, 351).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(n(&refused["details"]["available"]), 350);

        // Overspend: 400 granted, 900 spent; 350 more is available, so 750 is
        // charged and 150 is uncovered; nothing goes negative.
        let (status, over) = w.give_back(&s(&b["lease_id"]), 900).await;
        assert_eq!(status, StatusCode::OK, "{over}");
        assert_eq!(
            (
                n(&over["charged"]),
                n(&over["returned"]),
                n(&over["uncovered"])
            ),
            (750, 0, 150)
        );
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (1_000, 0, 0)
        );

        // Malformed and unknown.
        for (body, want) in [
            (
                json!({ "node_id": "n1", "agent_id": main, "amount": 0 }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "node_id": "n1", "agent_id": main, "amount": 5, "min_amount": 6 }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "node_id": "", "agent_id": main, "amount": 5 }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "node_id": "n1", "agent_id": "agt_nope", "amount": 5 }),
                StatusCode::NOT_FOUND,
            ),
        ] {
            let (status, answer) = w.node(Method::POST, "/v1/nodes/leases", Some(body)).await;
            assert_eq!(status, want, "{answer}");
        }
        let (status, _) = w.give_back("lse_nope", 1).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = w
            .node(Method::GET, "/v1/nodes/budgets/agt_nope", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        check_conservation(&w.ctl).await;
    }
);

both!(
    expired_leases_count_as_spent_until_a_late_return_corrects_them_once,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let (_, a) = w.lease(&main, 700, 1).await;
        let (_, b) = w.lease(&main, 200, 1).await;
        let a_id = s(&a["lease_id"]);
        let expiry = a["expires_at_ms"].as_i64().expect("expiry");
        let db = &w.ctl.state.db;
        // Not yet due.
        assert_eq!(
            budgets::expire_leases(db, expiry - 1).await.expect("sweep"),
            0
        );
        assert_eq!(n(&w.budget(&main).await["leased"]), 900);
        // Return b before the sweep: only a expires.
        let (status, _) = w.give_back(&s(&b["lease_id"]), 50).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            budgets::expire_leases(db, expiry + 60_000)
                .await
                .expect("sweep"),
            1
        );
        assert_eq!(
            budgets::expire_leases(db, expiry + 60_000)
                .await
                .expect("sweep"),
            0
        );
        // Its node may have died having served all of it: the whole grant
        // counts as spent, provisionally, so nothing can be overspent.
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (750, 0, 250)
        );
        let provisional = |agent: String| {
            let w = &w;
            async move {
                let (status, page) = w
                    .call(
                        Method::GET,
                        &format!("/v1/agents/{agent}/budget/leases?provisional=true"),
                        None,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{page}");
                page["items"].as_array().expect("items").clone()
            }
        };
        let listed = provisional(main.clone()).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(s(&listed[0]["lease_id"]), a_id);
        assert_eq!(listed[0]["provisional"], true);
        assert_eq!(n(&listed[0]["provisional_spent"]), 700);
        assert_eq!(listed[0]["status"], "expired");
        // The tenant-wide view (admins, operators) shows it too.
        let (status, all) = w
            .call(Method::GET, "/v1/budget/leases?provisional=true", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
        check_conservation(&w.ctl).await;
        // Someone takes the rest meanwhile.
        let (_, c) = w.lease(&main, 900, 1).await;
        assert_eq!(n(&c["granted"]), 250);
        // The node, started again, finds what it has not returned.
        let unreturned = || async {
            let (status, page) = w
                .node(
                    Method::GET,
                    &format!("/v1/nodes/leases?node_id={FAKE_NODE}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|l| s(&l["lease_id"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(unreturned().await, vec![a_id.clone(), s(&c["lease_id"])]);
        // The node comes back and reports 120 spent on a: the other 580
        // come back, once.
        let (status, late) = w.give_back(&a_id, 120).await;
        assert_eq!(status, StatusCode::OK, "{late}");
        assert_eq!(late["status"], "expired");
        assert_eq!(
            (
                n(&late["charged"]),
                n(&late["returned"]),
                n(&late["uncovered"])
            ),
            (0, 580, 0)
        );
        let (_, again) = w.give_back(&a_id, 120).await;
        assert_eq!(again, late, "a second report changes nothing");
        let (_, other) = w.give_back(&a_id, 700).await;
        assert_eq!(other, late, "nor does a different one");
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (170, 250, 580)
        );
        assert!(provisional(main.clone()).await.is_empty());
        assert_eq!(unreturned().await, vec![s(&c["lease_id"])]);
        check_conservation(&w.ctl).await;

        // A lease reported beyond its grant after expiring: the extra is
        // charged as far as the budget allows, the rest uncovered.
        let (_, d) = w.lease(&main, 580, 1).await;
        let d_id = s(&d["lease_id"]);
        let expiry = d["expires_at_ms"].as_i64().expect("expiry");
        assert_eq!(
            budgets::expire_leases(db, expiry + 60_000)
                .await
                .expect("sweep"),
            2,
            "c and d"
        );
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (1_000, 0, 0)
        );
        let (status, late) = w.give_back(&d_id, 600).await;
        assert_eq!(status, StatusCode::OK, "{late}");
        assert_eq!(
            (
                n(&late["charged"]),
                n(&late["returned"]),
                n(&late["uncovered"])
            ),
            (0, 0, 20)
        );
        // c's node reports nothing spent: all 250 come back.
        let (_, late_c) = w.give_back(&s(&c["lease_id"]), 0).await;
        assert_eq!(n(&late_c["returned"]), 250, "{late_c}");
        let bal = w.budget(&main).await;
        assert_eq!(
            (n(&bal["spent"]), n(&bal["leased"]), n(&bal["available"])),
            (750, 0, 250)
        );
        check_conservation(&w.ctl).await;
    }
);

// ---- token requests ----------------------------------------------------------

both!(
    token_requests_auto_approve_pend_and_are_decided,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 2_000).await;
        let bot = w.agent("bot", Some(&main), 100).await;
        // Limits default to 0: nothing may be asked yet.
        let (status, body) = w.ask(&bot, 1).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "invalid_amount");
        assert_eq!(n(&body["details"]["limit"]), 0);
        let (status, _) = w
            .set(
                &main,
                json!({ "auto_approve_limit": 100, "max_request": 1_000 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // Within the auto-approve limit: approved at once, tokens moved.
        let (status, auto) = w.ask(&bot, 80).await;
        assert_eq!(status, StatusCode::CREATED, "{auto}");
        assert_eq!(auto["status"], "approved");
        assert_eq!(n(&auto["amount"]), 80);
        assert_eq!(auto["reason"], "more work");
        assert!(s(&auto["id"]).starts_with("tkr_"));
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 180);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 1_820);
        // Above it: pending, nothing moved.
        let (status, pending) = w.ask(&bot, 500).await;
        assert_eq!(status, StatusCode::CREATED, "{pending}");
        assert_eq!(pending["status"], "pending");
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 180);
        // The guest polls it.
        let pid = s(&pending["id"]);
        let (status, polled) = w
            .node(
                Method::GET,
                &format!("/v1/nodes/token-requests/{pid}?agent_id={bot}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{polled}");
        assert_eq!(polled, pending);
        let (status, _) = w
            .node(
                Method::GET,
                &format!("/v1/nodes/token-requests/{pid}?agent_id={main}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Out of bounds, and a main agent asking.
        for amount in [0, 1_001] {
            let (status, body) = w.ask(&bot, amount).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["code"], "invalid_amount");
            assert_eq!(n(&body["details"]["limit"]), 1_000);
        }
        let (status, body) = w.ask(&main, 10).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "no_parent");
        let (status, _) = w.ask("agt_nope", 10).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Approve: tokens move; a second decision is refused.
        let (status, approved) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{pid}/approve"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        assert_eq!(approved["status"], "approved");
        assert_eq!(s(&approved["decided_by"]), w.alice.user_id);
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 680);
        assert_eq!(n(&w.budget(&main).await["allocated"]), 1_320);
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{pid}/deny"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "not_pending");

        // Through the API, same rules; then denied.
        let (status, via_api) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{bot}/token-requests"),
                Some(json!({ "amount": 900, "reason": "batch job" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{via_api}");
        assert_eq!(via_api["status"], "pending");
        assert_eq!(s(&via_api["parent_agent_id"]), main);
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{main}/token-requests"),
                Some(json!({ "amount": 5 })),
            )
            .await;
        assert_eq!(
            (status, s(&body["code"])),
            (StatusCode::CONFLICT, "no_parent".into())
        );
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{bot}/token-requests"),
                Some(json!({ "amount": 0 })),
            )
            .await;
        assert_eq!(
            (status, s(&body["code"])),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount".into())
        );
        let denied_id = s(&via_api["id"]);
        let (status, denied) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{denied_id}/deny"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{denied}");
        assert_eq!(denied["status"], "denied");
        assert_eq!(n(&w.budget(&bot).await["allocated"]), 680);

        // Approval when the main agent can no longer cover it: 409, still
        // pending.
        let (_, big) = w.ask(&bot, 1_000).await;
        assert_eq!(big["status"], "pending");
        let (status, lease) = w.lease(&main, 1_000, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{lease}");
        let big_id = s(&big["id"]);
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{big_id}/approve"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "budget_exhausted");
        assert_eq!(n(&body["details"]["available"]), 320);
        let (status, body) = w
            .call(Method::GET, &format!("/v1/token-requests/{big_id}"), None)
            .await;
        assert_eq!(
            (status, s(&body["status"])),
            (StatusCode::OK, "pending".into())
        );
        // An auto-approvable amount the main agent cannot cover waits too.
        let (status, lease2) = w.lease(&main, 320, 1).await;
        assert_eq!(status, StatusCode::CREATED, "{lease2}");
        let (_, waits) = w.ask(&bot, 50).await;
        assert_eq!(waits["status"], "pending");

        // Listing, filtered and paginated.
        let (status, all) = w
            .call(Method::GET, "/v1/token-requests?limit=2", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
        let cursor = s(&all["next_cursor"]);
        let (_, rest) = w
            .call(
                Method::GET,
                &format!("/v1/token-requests?limit=50&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(rest["items"].as_array().map(Vec::len), Some(3), "{rest}");
        let (_, pending_list) = w
            .call(
                Method::GET,
                &format!("/v1/token-requests?status=pending&agent_id={main}"),
                None,
            )
            .await;
        let ids: Vec<String> = pending_list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| s(&r["id"]))
            .collect();
        assert_eq!(ids, vec![big_id.clone(), s(&waits["id"])]);
        let (status, _) = w
            .call(Method::GET, "/v1/token-requests?status=maybe", None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        // Pending requests expire after the TTL.
        let db = &w.ctl.state.db;
        let ttl = 7 * 24 * 3_600 * 1_000;
        assert_eq!(
            budgets::expire_requests(db, now_ms(), ttl)
                .await
                .expect("sweep"),
            0
        );
        assert_eq!(
            budgets::expire_requests(db, now_ms() + ttl, ttl)
                .await
                .expect("sweep"),
            2
        );
        let (_, body) = w
            .call(Method::GET, &format!("/v1/token-requests/{big_id}"), None)
            .await;
        assert_eq!(
            (s(&body["status"]), s(&body["decided_by"])),
            ("expired".into(), "expiry".into())
        );

        // Every decision is audited.
        let entries = audit_actions(&w).await;
        let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
        assert_eq!(count("token_request_approved"), 2, "auto and manual");
        assert_eq!(count("token_request_denied"), 1);
        assert_eq!(count("token_request_expired"), 2);
        assert_eq!(count("token_request_created"), 5);
        let manual = entries
            .iter()
            .find(|e| {
                e["action"] == "token_request_approved" && e["detail"]["decided_by"] != "auto"
            })
            .expect("manual approval");
        assert_eq!(s(&manual["user_id"]), w.alice.user_id);
        check_conservation(&w.ctl).await;
    }
);

both!(
    the_main_agents_owner_decides_other_members_may_not,
    |ctl: Control| async move {
        let w = world(ctl).await;
        // Bob creates a main agent and a bot as an admin, then becomes a
        // member: he still owns them.
        let bob = w.member("bob", "admin").await;
        let (status, main) = w.try_agent(&bob.access, "bobs-main", None, 1_000).await;
        assert_eq!(status, StatusCode::CREATED, "{main}");
        let main = s(&main["id"]);
        let (status, bot) = w.try_agent(&bob.access, "bobs-bot", Some(&main), 0).await;
        assert_eq!(status, StatusCode::CREATED, "{bot}");
        let bot = s(&bot["id"]);
        let (status, _) = w
            .call(
                Method::PATCH,
                &format!("/v1/tenants/current/members/{}", bob.user_id),
                Some(json!({ "role": "member" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Bob's budget carried the main agent, not alice's.
        let (_, his) = w
            .ctl
            .call(Method::GET, "/v1/budget", Some(&bob.access), None)
            .await;
        assert_eq!(n(&his["pool"]), 9_000, "{his}");
        assert_eq!(n(&w.mine().await["pool"]), 10_000);
        let (status, _) = w
            .set(
                &main,
                json!({ "auto_approve_limit": 0, "max_request": 500 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let carol = w.member("carol", "member").await;
        let path = format!("/v1/agents/{bot}/token-requests");
        let (status, _) = w
            .ctl
            .call(
                Method::POST,
                &path,
                Some(&carol.access),
                Some(json!({ "amount": 10 })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, req) = w
            .ctl
            .call(
                Method::POST,
                &path,
                Some(&bob.access),
                Some(json!({ "amount": 10 })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        let approve = format!("/v1/token-requests/{}/approve", s(&req["id"]));
        let (status, _) = w
            .ctl
            .call(Method::POST, &approve, Some(&carol.access), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = w
            .ctl
            .call(Method::POST, &approve, Some(&bob.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(s(&body["decided_by"]), bob.user_id);
        // Carol may read it.
        let (status, _) = w
            .ctl
            .call(
                Method::GET,
                &format!("/v1/token-requests/{}", s(&req["id"])),
                Some(&carol.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        check_conservation(&w.ctl).await;
    }
);

// ---- roll-over ---------------------------------------------------------------

both!(
    roll_over_restores_grants_and_keeps_leases_counted,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 3_000).await;
        let bot = w.agent("bot", Some(&main), 500).await;
        let gone = w.agent("gone", Some(&main), 200).await;
        w.set(
            &main,
            json!({ "auto_approve_limit": 1_000, "max_request": 1_000 }),
        )
        .await;
        // The bot gets 700 more through a request and spends 900 of its 1,200.
        let (_, req) = w.ask(&bot, 700).await;
        assert_eq!(req["status"], "approved");
        let (_, spend) = w.lease(&bot, 900, 1).await;
        w.give_back(&s(&spend["lease_id"]), 900).await;
        // It holds 250 on a lease across the roll-over (less than its grant).
        // The main agent spends 100 and holds 50.
        let (_, held) = w.lease(&bot, 250, 1).await;
        assert_eq!(n(&held["granted"]), 250);
        let (_, m) = w.lease(&main, 100, 1).await;
        w.give_back(&s(&m["lease_id"]), 100).await;
        let (_, mheld) = w.lease(&main, 50, 1).await;
        // A bot that spent 150 and was deleted.
        let (_, g) = w.lease(&gone, 150, 1).await;
        w.give_back(&s(&g["lease_id"]), 150).await;
        let (status, _) = w
            .call(Method::DELETE, &format!("/v1/agents/{gone}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // A pending request.
        w.set(&main, json!({ "auto_approve_limit": 0 })).await;
        let (_, pending) = w.ask(&bot, 10).await;
        assert_eq!(pending["status"], "pending");
        let me = w.mine().await;
        assert_eq!((n(&me["pool"]), n(&me["retired"])), (7_000, 150));
        check_conservation(&w.ctl).await;

        let db = &w.ctl.state.db;
        let now = now_ms();
        assert_eq!(budgets::roll_over_due(db, now).await.expect("roll"), 0);
        // 40 days on is another month.
        let later = now + 40 * 24 * 3_600 * 1_000;
        let next = delta_control::db::utc_month(later);
        assert_eq!(budgets::roll_over_due(db, later).await.expect("roll"), 1);
        assert_eq!(budgets::roll_over_due(db, later).await.expect("roll"), 0);
        let me = w.mine().await;
        assert_eq!(me["period"], next.as_str());
        assert_eq!((n(&me["pool"]), n(&me["retired"])), (7_000, 0));
        let b = w.budget(&bot).await;
        // Back to its grant (500, the 700 from the request return to the main
        // agent); its lease of 250 stays counted.
        assert_eq!(
            (
                n(&b["allocated"]),
                n(&b["spent"]),
                n(&b["leased"]),
                n(&b["available"])
            ),
            (500, 0, 250, 250)
        );
        assert_eq!(b["period"], next.as_str());
        let mb = w.budget(&main).await;
        assert_eq!(
            (n(&mb["allocated"]), n(&mb["spent"]), n(&mb["leased"])),
            (2_500, 0, 50)
        );
        let (_, body) = w
            .call(
                Method::GET,
                &format!("/v1/token-requests/{}", s(&pending["id"])),
                None,
            )
            .await;
        assert_eq!(
            (s(&body["status"]), s(&body["decided_by"])),
            ("expired".into(), "roll-over".into())
        );
        check_conservation(&w.ctl).await;
        // The outstanding leases return into the new period.
        let (_, back) = w.give_back(&s(&held["lease_id"]), 100).await;
        assert_eq!((n(&back["charged"]), n(&back["returned"])), (100, 150));
        w.give_back(&s(&mheld["lease_id"]), 0).await;
        assert_eq!(n(&w.budget(&bot).await["available"]), 400);

        // A bot whose leases hold more than its grant keeps them; its main
        // agent gets that much less.
        let (_, top) = w.ask(&bot, 200).await;
        assert_eq!(top["status"], "pending");
        let (status, _) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{}/approve", s(&top["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // 700 allocated, 100 spent: a lease of 600, above its grant of 500.
        let (status, big) = w.lease(&bot, 600, 600).await;
        assert_eq!(status, StatusCode::CREATED, "{big}");
        let after = later + 40 * 24 * 3_600 * 1_000;
        assert_eq!(budgets::roll_over_due(db, after).await.expect("roll"), 1);
        let b = w.budget(&bot).await;
        assert_eq!(
            (
                n(&b["allocated"]),
                n(&b["spent"]),
                n(&b["leased"]),
                n(&b["available"])
            ),
            (600, 0, 600, 0),
            "{b}"
        );
        assert_eq!(n(&w.budget(&main).await["allocated"]), 2_400);
        check_conservation(&w.ctl).await;
    }
);

// ---- isolation and authentication --------------------------------------------

both!(
    another_tenants_ids_answer_404_everywhere,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let bot = w.agent("bot", Some(&main), 100).await;
        w.set(
            &main,
            json!({ "auto_approve_limit": 0, "max_request": 100 }),
        )
        .await;
        let (_, req) = w.ask(&bot, 10).await;
        let req = s(&req["id"]);
        let mallory = w.ctl.register("mallory").await;
        let m = Some(mallory.access.as_str());
        for (method, path, body) in [
            (Method::GET, format!("/v1/agents/{main}/budget"), None),
            (
                Method::PUT,
                format!("/v1/agents/{main}/budget"),
                Some(json!({ "allocated": 0 })),
            ),
            (
                Method::POST,
                format!("/v1/agents/{bot}/token-requests"),
                Some(json!({ "amount": 1 })),
            ),
            (Method::GET, format!("/v1/token-requests/{req}"), None),
            (
                Method::POST,
                format!("/v1/token-requests/{req}/approve"),
                None,
            ),
            (Method::POST, format!("/v1/token-requests/{req}/deny"), None),
            (
                Method::GET,
                format!("/v1/budget/users/{}", w.alice.user_id),
                None,
            ),
            // (PUT /v1/budget/users/{id} is for operators only: 403 before
            // any lookup, see tiers_change_the_pool_but_not_below_what_is_allocated.)
        ] {
            let (status, answer) = w.ctl.call(method.clone(), &path, m, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        }
        let (status, list) = w
            .ctl
            .call(
                Method::GET,
                &format!("/v1/token-requests?agent_id={bot}"),
                m,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"], json!([]));
        let (_, theirs) = w.ctl.call(Method::GET, "/v1/budget", m, None).await;
        assert_eq!(theirs["main_agents"], json!([]));
        // Nothing changed.
        assert_eq!(n(&w.budget(&main).await["allocated"]), 900);
        let (_, body) = w
            .call(Method::GET, &format!("/v1/token-requests/{req}"), None)
            .await;
        assert_eq!(body["status"], "pending");
    }
);

both!(
    node_routes_need_a_node_credential,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 1_000).await;
        let (_, lease) = w.lease(&main, 10, 1).await;
        let lease = s(&lease["lease_id"]);
        let routes = [
            (
                Method::POST,
                "/v1/nodes/leases".to_owned(),
                Some(json!({ "node_id": "n1", "agent_id": main, "amount": 5 })),
            ),
            (
                Method::POST,
                format!("/v1/nodes/leases/{lease}/return"),
                Some(json!({ "node_id": "n1", "spent": 5 })),
            ),
            (Method::GET, format!("/v1/nodes/budgets/{main}"), None),
            (
                Method::POST,
                "/v1/nodes/token-requests".to_owned(),
                Some(json!({ "node_id": "n1", "agent_id": main, "amount": 5, "reason": "" })),
            ),
            (
                Method::GET,
                format!("/v1/nodes/token-requests/tkr_x?agent_id={main}"),
                None,
            ),
        ];
        for (method, path, body) in routes {
            for token in [
                None,
                Some("ncr_0123456789abcdef.not-the-secret"),
                Some(w.alice.access.as_str()),
            ] {
                let (status, answer) = w.ctl.call(method.clone(), &path, token, body.clone()).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {token:?}: {answer}"
                );
            }
        }
        // Nothing was returned or leased.
        let bal = w.budget(&main).await;
        assert_eq!((n(&bal["leased"]), n(&bal["spent"])), (10, 0));
    }
);

both!(entries_are_append_only, |ctl: Control| async move {
    let w = world(ctl).await;
    let main = w.agent("main", None, 100).await;
    let pool = w.ctl.state.db.pool();
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM budget_entries")
        .fetch_one(pool)
        .await
        .expect("count");
    assert!(before >= 3);
    assert!(
        sqlx::query("UPDATE budget_entries SET amount = amount + 1")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM budget_entries WHERE agent_id = $1")
            .bind(&main)
            .execute(pool)
            .await
            .is_err()
    );
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM budget_entries")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(before, after);
    check_conservation(&w.ctl).await;
});

mod concurrency;
