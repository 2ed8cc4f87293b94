//! The control plane driving a fleet: an in-process control plane (the
//! shared harness of `control/tests/common`) and real `delta node` processes that register by heartbeat and report
//! usage, over real HTTP. Components, agents and bots, placement, runs
//! through the control plane, log streaming, pagination, tenant isolation,
//! pause/resume/delete kept in step with the nodes, usage deduplication,
//! and the loss (`kill -9`) and return of a node. Each scenario runs on
//! SQLite and on PostgreSQL (`DELTA_TEST_POSTGRES_URL`, see
//! `control/tests/common`).
//!
//! This file is the harness; the scenarios are by concern: `runs`,
//! `node_loss`, `usage` and `refusals`.

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

mod node_loss;
mod refusals;
mod runs;
mod usage;
