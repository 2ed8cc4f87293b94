//! The control plane driving a fleet: an in-process control plane (the
//! shared harness of `control/tests/common`) and real `delta node` processes that register by heartbeat and report
//! usage, over real HTTP. Components, agents and bots, placement, runs
//! through the control plane, log streaming, pagination, tenant isolation,
//! pause/resume/delete kept in step with the nodes, usage deduplication,
//! and the loss (`kill -9`) and return of a node. Each scenario runs on
//! SQLite and on PostgreSQL (`DELTA_TEST_POSTGRES_URL`, see
//! `control/tests/common`).

use crate::common;
use crate::support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::{Control, Dialect, eventually, node_api_token};
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---- the control plane -------------------------------------------------------

/// `scenario!(name)`: the async fn `name(dialect)` as a test on each database.
macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Dialect::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Dialect::Postgres).await;
            }
        }
    };
}

/// The shared harness's control plane, marking nodes down after
/// `timeout_secs` of silence (generous where a test does not lose nodes on
/// purpose, so that a loaded machine does not fail it).
async fn control(dialect: Dialect, timeout_secs: u64) -> Control {
    Control::start_with(dialect, |c| c.node_heartbeat_timeout_secs = timeout_secs).await
}

/// What these scenarios ask of the control plane, over its API.
trait FleetCalls {
    async fn upload(&self, token: &str, bytes: Vec<u8>) -> (StatusCode, Value);
    async fn create_agent(&self, token: &str, body: Value) -> Value;
    async fn agent(&self, token: &str, id: &str) -> Value;
    async fn run(&self, token: &str, agent: &str, input: Value, wait: bool) -> (StatusCode, Value);
    /// Every item of a paginated list, walking `limit`-sized pages.
    async fn walk(&self, token: &str, path: &str, limit: u32) -> Vec<Value>;
    /// The fleet as the platform operator sees it: node id -> status.
    async fn nodes(&self) -> HashMap<String, String>;
}

impl FleetCalls for Control {
    async fn upload(&self, token: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url("/v1/components"))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            // An oversized upload is answered before its body is read; a
            // pooled connection would then fail the next request.
            .header("connection", "close")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = resp.status();
        (status, resp.json().await.expect("json"))
    }

    async fn create_agent(&self, token: &str, body: Value) -> Value {
        let (status, agent) = self
            .call(Method::POST, "/v1/agents", Some(token), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {body}: {agent}");
        agent
    }

    async fn agent(&self, token: &str, id: &str) -> Value {
        let (status, agent) = self
            .call(Method::GET, &format!("/v1/agents/{id}"), Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{agent}");
        agent
    }

    async fn run(&self, token: &str, agent: &str, input: Value, wait: bool) -> (StatusCode, Value) {
        let path = format!(
            "/v1/agents/{agent}/runs{}",
            if wait { "?wait=true" } else { "" }
        );
        self.call(
            Method::POST,
            &path,
            Some(token),
            Some(json!({ "input": input })),
        )
        .await
    }

    async fn walk(&self, token: &str, path: &str, limit: u32) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.call(Method::GET, &url, Some(token), None).await;
            assert_eq!(status, StatusCode::OK, "{url}: {page}");
            let batch = page["items"].as_array().expect("items").clone();
            assert!(batch.len() <= limit as usize);
            items.extend(batch);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
        panic!("pagination of {path} never ended");
    }

    async fn nodes(&self) -> HashMap<String, String> {
        let operator = self.operator_token().await;
        let (status, page) = self
            .call(Method::GET, "/v1/nodes", Some(&operator), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap_or_default().to_owned(),
                    n["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

// ---- nodes ---------------------------------------------------------------------

/// A `delta node` process registered with the control plane.
struct NodeProcess {
    process: support::NodeProcess,
    client: reqwest::Client,
    /// What the control plane presents to this node.
    token: String,
}

impl NodeProcess {
    /// Start node `id` with `credential` (from its enrolment).
    fn start(dir: &Path, id: &str, control_url: &str, credential: &str) -> Self {
        Self::start_with(dir, id, control_url, credential, "")
    }

    /// `extra`: more of `node.toml` (tables only).
    fn start_with(dir: &Path, id: &str, control_url: &str, credential: &str, extra: &str) -> Self {
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        let token = node_api_token(id);
        common::write_secret(&dir.join("token"), &token);
        common::write_secret(&dir.join("credential"), credential);
        let config = format!(
            "node_id = \"{id}\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{state}\"\n\
             token_file = \"{token}\"\ndrain_grace_secs = 1\n\n\
             [control_plane]\nurl = \"{control_url}\"\ntoken_file = \"{credential}\"\nheartbeat_secs = 1\n\n{extra}\n",
            state = dir.join("state").display(),
            token = dir.join("token").display(),
            credential = dir.join("credential").display(),
        );
        std::fs::write(dir.join("node.toml"), config).expect("config");
        Self {
            process: support::NodeProcess::spawn(dir, "node"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            token,
        }
    }

    /// `kill -9`: no drain, no goodbye.
    fn kill(&mut self) {
        self.process.kill();
    }

    /// Start again on the same state directory (a new port).
    fn restart(&mut self) {
        self.process.restart();
    }

    /// Ask the node itself (with the node API token, as the control plane).
    async fn call(&self, method: Method, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.process.addr))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("node request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn agent_ids(&self) -> HashSet<String> {
        let (status, body) = self.call(Method::GET, "/v1/agents").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("guest")
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// A control plane, a tenant admin and two nodes that registered.
async fn fleet(
    dir: &Path,
    db: Dialect,
    timeout_secs: u64,
) -> (Control, String, NodeProcess, NodeProcess) {
    let ctl = control(db, timeout_secs).await;
    let admin = ctl.register("alice").await.access;
    let a = NodeProcess::start(
        &dir.join("node-a"),
        "node-a",
        &ctl.url,
        &ctl.node_credential("node-a").await,
    );
    let b = NodeProcess::start(
        &dir.join("node-b"),
        "node-b",
        &ctl.url,
        &ctl.node_credential("node-b").await,
    );
    eventually("both nodes up", Duration::from_secs(30), || async {
        let nodes = ctl.nodes().await;
        (nodes.get("node-a").map(String::as_str) == Some("up")
            && nodes.get("node-b").map(String::as_str) == Some("up"))
        .then_some(())
    })
    .await;
    (ctl, admin, a, b)
}

// ---- tests -----------------------------------------------------------------------

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

scenario!(node_refusals_pass_through_and_uploads_are_bounded);

async fn node_refusals_pass_through_and_uploads_are_bounded(db: Dialect) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hello_size = wasm(guests::HELLO_AGENT).len() as u64;
    let slow_size = wasm(guests::SLOW_LOGGER).len() as u64;
    let ctl = Control::start_with(db, |c| {
        c.node_heartbeat_timeout_secs = 15;
        c.max_component_bytes = slow_size.max(hello_size);
    })
    .await;
    let alice = ctl.register("alice").await.access;
    // One slot and a queue of one: the third run is refused.
    let _node = NodeProcess::start_with(
        &dir.path().join("node"),
        "node-q",
        &ctl.url,
        &ctl.node_credential("node-q").await,
        "[scheduler]\nconcurrency = 1\nper_tenant_concurrency = 1\nqueue_per_tenant = 1\nqueue_total = 8\n",
    );
    eventually("the node up", Duration::from_secs(30), || async {
        (ctl.nodes().await.get("node-q").map(String::as_str) == Some("up")).then_some(())
    })
    .await;

    // Uploads over max_component_bytes: 413, from Content-Length and
    // without it (chunked).
    let mut big = wasm(guests::SLOW_LOGGER);
    big.resize(big.len() + 1_000_000, 0);
    let (status, err) = ctl.upload(&alice, big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["code"], "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let sent = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&alice)
        .header("connection", "close")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // The server answers 413 as soon as the limit is passed and stops
    // reading: the client sees the answer, or the connection cut while it
    // was still sending.
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(ctl.walk(&alice, "/v1/components", 10).await.is_empty());

    let (status, slow) = ctl.upload(&alice, wasm(guests::SLOW_LOGGER)).await;
    assert_eq!(status, StatusCode::CREATED, "{slow}");
    let agent = ctl
        .create_agent(
            &alice,
            json!({ "name": "slow", "kind": "main", "component": slow["sha256"],
                    "limits": { "timeout_ms": 20000 } }),
        )
        .await;
    let id = s(&agent["id"]);
    let input = json!({ "lines": 10, "interval_ms": 100 });
    let (status, first) = ctl.run(&alice, &id, input.clone(), false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    // The first holds the slot before the second queues behind it.
    eventually(
        "the first run executing",
        Duration::from_secs(30),
        || async {
            let (_, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/runs/{}", s(&first["id"])),
                    Some(&alice),
                    None,
                )
                .await;
            (run["status"] != "queued").then_some(())
        },
    )
    .await;
    let (status, second) = ctl.run(&alice, &id, input.clone(), false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let resp = ctl
        .client
        .post(ctl.url(&format!("/v1/agents/{id}/runs")))
        .bearer_auth(&alice)
        .json(&json!({ "input": input }))
        .send()
        .await
        .expect("third run");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["code"], "queue_full", "{err}");
    // The refused run is not listed; the two accepted ones are.
    let runs_of_agent = format!("/v1/runs?agent_id={id}");
    let listed = ctl.walk(&alice, &runs_of_agent, 10).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    // A waiting run waits in the queue behind the second, then runs.
    eventually(
        "the second run executing",
        Duration::from_secs(30),
        || async {
            let (_, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/runs/{}", s(&second["id"])),
                    Some(&alice),
                    None,
                )
                .await;
            (run["status"] != "queued").then_some(())
        },
    )
    .await;
    // A run with ?wait=true is listed while the caller still waits (it is
    // named and stored before the node is called), so one that outlives the
    // wait is not lost from the list.
    let answered = std::sync::atomic::AtomicBool::new(false);
    let waited = async {
        let answer = ctl
            .run(&alice, &id, json!({ "lines": 1, "interval_ms": 1 }), true)
            .await;
        answered.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let watched = async {
        eventually("the waited run listed", Duration::from_secs(30), || async {
            let unanswered = !answered.load(std::sync::atomic::Ordering::SeqCst);
            let listed = ctl.walk(&alice, &runs_of_agent, 10).await;
            (listed.len() == 3).then(|| (listed[2].clone(), unanswered))
        })
        .await
    };
    let ((status, done), (listed, unanswered)) = tokio::join!(waited, watched);
    assert!(
        unanswered,
        "the run was listed only once answered: {listed}"
    );
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["outcome"]["status"], "completed", "{done}");
    assert_eq!(listed["id"], done["id"], "{listed} vs {done}");
    let (status, stored) = ctl
        .call(
            Method::GET,
            &format!("/v1/runs/{}", s(&done["id"])),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["status"], "finished", "{stored}");
}
