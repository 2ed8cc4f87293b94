//! `delta node` end to end: the real binary, over real HTTP and TLS, with a
//! real client; signals and `kill -9` included.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delta_guest_artifacts as guests;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

const TOKEN: &str = "test-node-token-0123456789";

/// A node process with its state directory.
struct NodeProcess {
    process: support::NodeProcess,
    url: String,
    client: reqwest::Client,
}

/// Signals, exit and log are the process's.
impl Deref for NodeProcess {
    type Target = support::NodeProcess;

    fn deref(&self) -> &support::NodeProcess {
        &self.process
    }
}

impl DerefMut for NodeProcess {
    fn deref_mut(&mut self) -> &mut support::NodeProcess {
        &mut self.process
    }
}

/// What a test changes in `node.toml` (appended to the base config).
#[derive(Default)]
struct Setup {
    extra: String,
    tls: bool,
}

impl NodeProcess {
    fn start(dir: &Path, setup: &Setup) -> Self {
        std::fs::create_dir_all(dir).expect("state dir");
        std::fs::write(dir.join("token"), TOKEN).expect("token");
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\ntoken_file = \"{}\"\ndrain_grace_secs = 2\n",
            dir.join("state").display(),
            dir.join("token").display(),
        );
        if setup.tls {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
                .expect("self-signed certificate");
            std::fs::write(dir.join("cert.pem"), cert.cert.pem()).expect("cert");
            std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
            config.push_str(&format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display()
            ));
        }
        // Top-level keys must come before any table.
        let config = if setup.extra.trim_start().starts_with('[') || setup.extra.is_empty() {
            format!("{config}{}\n", setup.extra)
        } else {
            format!("{}\n{config}", setup.extra)
        };
        std::fs::write(dir.join("node.toml"), config).expect("config");
        Self::spawn(dir, setup.tls)
    }

    fn spawn(dir: &Path, tls: bool) -> Self {
        let process = support::NodeProcess::spawn(dir, "node");
        let url = process.addr.as_str();
        let (url, client) = if tls {
            // Connect by name so the certificate verifies; `resolve` maps
            // the name to the loopback port.
            let port: u16 = url
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port");
            let cert = std::fs::read(dir.join("cert.pem")).expect("cert");
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .add_root_certificate(reqwest::Certificate::from_pem(&cert).expect("root"))
                .resolve("localhost", ([127, 0, 0, 1], port).into())
                .build()
                .expect("client");
            (format!("https://localhost:{port}"), client)
        } else {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client");
            (url.to_owned(), client)
        };
        Self {
            process,
            url,
            client,
        }
    }

    /// Start again on the same state directory and config.
    fn restart(dir: &Path) -> Self {
        Self::spawn(dir, dir.join("cert.pem").exists())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The Prometheus text of `/metrics`.
    async fn metrics(&self) -> String {
        self.req(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.req(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn upload(&self, wasm: &str) -> String {
        let bytes = std::fs::read(wasm).expect("guest");
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let resp = self
            .req(reqwest::Method::PUT, &format!("/v1/components/{sha}"))
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert!(
            resp.status().is_success(),
            "upload {wasm}: {}",
            resp.text().await.unwrap_or_default()
        );
        sha
    }

    async fn deploy(&self, id: &str, tenant: &str, sha: &str, limits: Value) {
        let (status, body) = self
            .json(
                reqwest::Method::PUT,
                &format!("/v1/agents/{id}"),
                Some(json!({ "tenant_id": tenant, "component": sha, "limits": limits })),
            )
            .await;
        assert!(status.is_success(), "deploy {id}: {status} {body}");
    }

    async fn run(&self, agent: &str, input: Value, wait: bool) -> (StatusCode, Value) {
        let path = format!(
            "/v1/agents/{agent}/runs{}",
            if wait { "?wait=true" } else { "" }
        );
        self.json(
            reqwest::Method::POST,
            &path,
            Some(json!({ "input": input })),
        )
        .await
    }

    async fn wait_finished(&self, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self
                .json(reqwest::Method::GET, &format!("/v1/runs/{run_id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] == "finished" {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} never finished: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn outcome(run: &Value) -> &str {
    run["outcome"]["status"].as_str().unwrap_or("")
}

#[tokio::test]
async fn tls_auth_and_error_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &Setup {
            tls: true,
            ..Setup::default()
        },
    );
    assert!(node.url.starts_with("https://"), "{}", node.url);
    // Health needs no token.
    let resp = node
        .client
        .get(node.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("x-request-id"));
    let resp = node
        .client
        .get(node.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(resp.status(), StatusCode::OK);
    // Everything else does, and failures say nothing more than 401.
    for token in [None, Some("wrong"), Some("")] {
        let mut req = node.client.get(node.url("/v1/agents"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .header("x-request-id", "abc-123")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["x-request-id"], "abc-123");
        let body: Value = resp.json().await.expect("json error");
        assert_eq!(body["code"], "unauthorized");
        assert_eq!(body["request_id"], "abc-123");
    }
    let resp = node
        .client
        .get(node.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Plain HTTP to the TLS port gets no answer.
    let plain = node.url.replace("https://localhost", "http://127.0.0.1");
    let result = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        result.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not be served on the TLS port"
    );
    let (status, body) = node.json(reqwest::Method::GET, "/v1/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    let text = node.metrics().await;
    assert!(text.contains("delta_auth_failures_total 4"), "{text}");
    assert!(
        text.contains("delta_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn components_agents_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &Setup {
            extra: "[limits]\nmax_component_bytes = 4000000\nmax_input_bytes = 4096\n".into(),
            ..Setup::default()
        },
    );
    // Upload: the hash must match, the bytes must be a component.
    let bytes = std::fs::read(guests::HELLO_AGENT).expect("guest");
    let wrong = "0".repeat(64);
    let resp = node
        .req(reqwest::Method::PUT, &format!("/v1/components/{wrong}"))
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let garbage = b"\0asm not really".to_vec();
    let sha = hex::encode(sha2::Sha256::digest(&garbage));
    let resp = node
        .req(reqwest::Method::PUT, &format!("/v1/components/{sha}"))
        .body(garbage)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_component", "{body}");
    // Over the limit: refused from the Content-Length, before the body.
    let (status, body) = raw_request(
        &node.url,
        &format!(
            "PUT /v1/components/{wrong} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 5000000\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(body["code"], "payload_too_large", "{body}");

    let hello = node.upload(guests::HELLO_AGENT).await;
    let (status, list) = node
        .json(reqwest::Method::GET, "/v1/components", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["sha256"], hello.as_str());
    assert_eq!(list["items"][0]["world"], "agent");

    // Agents.
    let (status, body) = node
        .json(
            reqwest::Method::PUT,
            "/v1/agents/hello",
            Some(json!({ "tenant_id": "t1", "component": "f".repeat(64) })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    node.deploy("hello", "t1", &hello, json!({ "fuel": 50_000_000 }))
        .await;
    let (status, agent) = node
        .json(reqwest::Method::GET, "/v1/agents/hello", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent["tenant_id"], "t1");
    assert_eq!(agent["paused"], false);
    let (status, body) = node
        .json(
            reqwest::Method::PUT,
            "/v1/agents/hello",
            Some(json!({ "tenant_id": "t2", "component": hello })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an agent cannot change tenant: {body}"
    );
    let (status, body) = node
        .json(reqwest::Method::GET, "/v1/agents/nobody", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["request_id"].is_string());

    // Runs: synchronous, asynchronous, bad input.
    let (status, run) = node.run("hello", json!({ "name": "Node" }), true).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(outcome(&run), "completed", "{run}");
    assert_eq!(run["outcome"]["output"], r#"{"greeting":"Hello, Node!"}"#);
    assert!(run["usage"]["fuel_used"].as_u64().expect("fuel") > 0);
    assert_eq!(run["logs"][0]["message"], "greeting Node");
    let (status, queued) = node.run("hello", json!({ "name": "Later" }), false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let id = queued["id"].as_str().expect("run id").to_owned();
    let done = node.wait_finished(&id).await;
    assert_eq!(done["outcome"]["output"], r#"{"greeting":"Hello, Later!"}"#);
    let (created, started) = (
        done["created_at_ms"].as_i64().expect("created"),
        done["started_at_ms"]
            .as_i64()
            .expect("a run that ran has a start"),
    );
    assert!(started >= created, "{done}");
    let (status, _) = node
        .json(reqwest::Method::GET, "/v1/runs/run_nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = node.run("nobody", json!({}), true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = node
        .req(reqwest::Method::POST, "/v1/agents/hello/runs")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "invalid_json");
    let resp = node
        .req(reqwest::Method::POST, "/v1/agents/hello/runs")
        // Answered 413 before the body is read: do not pool the connection.
        .header("connection", "close")
        .json(&json!({ "input": "x".repeat(10_000) }))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "payload_too_large", "{body}");
    // The guest's own verdict on bad input is an outcome, not an HTTP error.
    let (status, run) = node.run("hello", json!({ "nom": 1 }), true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&run), "agent-error", "{run}");

    // A component in use cannot be deleted; after the agent goes, it can.
    let (status, _) = node
        .json(
            reqwest::Method::DELETE,
            &format!("/v1/components/{hello}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = node
        .json(reqwest::Method::DELETE, "/v1/agents/hello", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = node
        .json(
            reqwest::Method::DELETE,
            &format!("/v1/components/{hello}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let metrics = node.metrics().await;
    for needle in [
        r#"delta_runs_total{outcome="completed",tenant="t1"} 2"#,
        "delta_run_duration_seconds_bucket",
        "delta_fuel_used_total{tenant=\"t1\"}",
        "delta_run_peak_memory_bytes_bucket",
        "delta_instances_live 0",
        "delta_usage_report_backlog",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
}

/// `POST /v1/verifications` runs a `verifier` component once, with the
/// limits asked (clamped), and answers the runtime's outcome; an agent
/// component, an unknown one or a document that is not JSON is refused.
#[tokio::test]
async fn verifications_run_verifier_components_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &Setup::default());
    let verifier = node.upload(guests::JSON_VERIFIER).await;
    let agent = node.upload(guests::HELLO_AGENT).await;
    let ask = |component: &str, submission: &str, limits: Value| {
        json!({ "tenant_id": "t1", "component": component,
                "spec": r#"{"expected": {"answer": 42}}"#, "submission": submission,
                "limits": limits })
    };
    let (status, pass) = node
        .json(
            reqwest::Method::POST,
            "/v1/verifications",
            Some(ask(&verifier, r#"{"answer": 42}"#, json!({}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pass}");
    assert_eq!(pass["outcome"]["status"], "completed", "{pass}");
    let verdict: Value =
        serde_json::from_str(pass["outcome"]["output"].as_str().expect("output")).expect("json");
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert!(pass["fuel_used"].as_u64() > Some(0), "{pass}");
    let (_, fail) = node
        .json(
            reqwest::Method::POST,
            "/v1/verifications",
            Some(ask(&verifier, r#"{"answer": 41}"#, json!({}))),
        )
        .await;
    assert!(
        fail["outcome"]["output"]
            .as_str()
            .is_some_and(|o| o.contains("\"passed\":false")),
        "{fail}"
    );
    let (_, starved) = node
        .json(
            reqwest::Method::POST,
            "/v1/verifications",
            Some(ask(&verifier, r#"{"answer": 42}"#, json!({ "fuel": 1 }))),
        )
        .await;
    assert_eq!(starved["outcome"]["status"], "out-of-fuel", "{starved}");
    for (body, code) in [
        (ask(&agent, "{}", json!({})), "invalid_component"),
        (ask(&"0".repeat(64), "{}", json!({})), "invalid"),
        (ask(&verifier, "not json", json!({})), "invalid"),
    ] {
        let (status, answer) = node
            .json(reqwest::Method::POST, "/v1/verifications", Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["code"], code, "{answer}");
    }
    let resp = node
        .client
        .post(node.url("/v1/verifications"))
        .json(&ask(&verifier, "{}", json!({})))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deployments_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(dir.path(), &Setup::default());
    let hello = node.upload(guests::HELLO_AGENT).await;
    node.deploy("hello", "t1", &hello, json!({})).await;
    let (_, first) = node.run("hello", json!({ "name": "One" }), true).await;
    node.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(node.wait_exit(Duration::from_secs(30)).success());
    drop(node);
    let node = NodeProcess::restart(dir.path());
    let (status, run) = node
        .json(
            reqwest::Method::GET,
            &format!("/v1/runs/{}", first["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&run), "completed");
    let (status, run) = node.run("hello", json!({ "name": "Two" }), true).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"]["output"], r#"{"greeting":"Hello, Two!"}"#);
}

/// A node with one execution slot, `queue` places per tenant, fuel enough
/// that a looping run ends by its deadline or a cancel (never by fuel, which
/// a slow machine could reach first), and hostile-loop and hello-agent
/// uploaded.
struct SingleSlot {
    node: NodeProcess,
    looping: String,
    hello: String,
}

impl std::ops::Deref for SingleSlot {
    type Target = NodeProcess;

    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

async fn single_slot_node(dir: &Path, queue: usize) -> SingleSlot {
    let node = NodeProcess::start(
        dir,
        &Setup {
            extra: format!(
                "[scheduler]\nconcurrency = 1\nper_tenant_concurrency = 1\n\
                 queue_per_tenant = {queue}\nqueue_total = 100\n\
                 [limits]\nmax_fuel = 1000000000000\ndefault_fuel = 1000000000000\n"
            ),
            ..Setup::default()
        },
    );
    let looping = node.upload(guests::HOSTILE_LOOP).await;
    let hello = node.upload(guests::HELLO_AGENT).await;
    SingleSlot {
        node,
        looping,
        hello,
    }
}

#[tokio::test]
async fn pause_resume_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = single_slot_node(dir.path(), 16).await;
    node.deploy("loop", "t1", &node.looping, json!({ "timeout_ms": 30_000 }))
        .await;
    node.deploy("hello", "t1", &node.hello, json!({})).await;

    // The loop holds the only slot; a hello run queues behind it.
    let (_, busy) = node.run("loop", json!({}), false).await;
    let busy = busy["id"].as_str().expect("id").to_owned();
    let (_, waiting) = node.run("hello", json!({ "name": "Q" }), false).await;
    let waiting = waiting["id"].as_str().expect("id").to_owned();
    let (status, paused) = node
        .json(reqwest::Method::POST, "/v1/agents/hello/pause", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["paused"], true);
    // Paused: no new runs.
    let (status, body) = node.run("hello", json!({ "name": "X" }), false).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "agent_paused");
    // Deleting the loop agent cancels its running run.
    let (status, _) = node
        .json(reqwest::Method::DELETE, "/v1/agents/loop", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cancelled = node.wait_finished(&busy).await;
    assert_eq!(outcome(&cancelled), "cancelled", "{cancelled}");
    // The slot is free, but the paused agent's queued run waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, still) = node
        .json(reqwest::Method::GET, &format!("/v1/runs/{waiting}"), None)
        .await;
    assert_eq!(still["status"], "queued", "{still}");
    let (status, _) = node
        .json(reqwest::Method::POST, "/v1/agents/hello/resume", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = node.wait_finished(&waiting).await;
    assert_eq!(outcome(&done), "completed", "{done}");
    let (status, _) = node
        .json(reqwest::Method::POST, "/v1/agents/loop/pause", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_run_is_cancelled_running_or_queued_and_others_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = single_slot_node(dir.path(), 16).await;
    node.deploy("loop", "t1", &node.looping, json!({ "timeout_ms": 30_000 }))
        .await;
    node.deploy("hello", "t1", &node.hello, json!({})).await;
    // The loop holds the only slot; two hello runs queue behind it.
    let (_, busy) = node.run("loop", json!({}), false).await;
    let busy = busy["id"].as_str().expect("id").to_owned();
    let (_, first) = node.run("hello", json!({ "name": "A" }), false).await;
    let first = first["id"].as_str().expect("id").to_owned();
    let (_, second) = node.run("hello", json!({ "name": "B" }), false).await;
    let second = second["id"].as_str().expect("id").to_owned();

    // A queued run leaves the queue without running.
    let (status, body) = node
        .json(
            reqwest::Method::POST,
            &format!("/v1/runs/{first}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cancelled = node.wait_finished(&first).await;
    assert_eq!(outcome(&cancelled), "cancelled", "{cancelled}");
    assert!(cancelled["started_at_ms"].is_null(), "{cancelled}");
    // The running loop is interrupted; the slot goes to the next run.
    let (status, body) = node
        .json(
            reqwest::Method::POST,
            &format!("/v1/runs/{busy}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    let stopped = node.wait_finished(&busy).await;
    assert_eq!(outcome(&stopped), "cancelled", "{stopped}");
    let done = node.wait_finished(&second).await;
    assert_eq!(outcome(&done), "completed", "{done}");
    // Cancelling a finished run changes nothing; an unknown one is 404.
    let (status, again) = node
        .json(
            reqwest::Method::POST,
            &format!("/v1/runs/{second}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(outcome(&again), "completed", "{again}");
    let (status, _) = node
        .json(reqwest::Method::POST, "/v1/runs/run_nope/cancel", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_flooding_tenant_does_not_starve_another_and_full_queues_answer_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = single_slot_node(dir.path(), 30).await;
    // Each of A's runs burns its 150 ms deadline.
    node.deploy(
        "a-loop",
        "tenant-a",
        &node.looping,
        json!({ "timeout_ms": 150 }),
    )
    .await;
    node.deploy("b-hello", "tenant-b", &node.hello, json!({}))
        .await;
    // A fills its queue (30 waiting, one running) and is then refused.
    let mut a_runs = Vec::new();
    let refused = loop {
        let resp = node
            .req(reqwest::Method::POST, "/v1/agents/a-loop/runs")
            .json(&json!({ "input": {} }))
            .send()
            .await
            .expect("post");
        if resp.status() != StatusCode::ACCEPTED {
            break resp;
        }
        let body: Value = resp.json().await.expect("json");
        a_runs.push(body["id"].as_str().expect("id").to_owned());
        // 30 waiting plus the running one, and a few more if runs ended
        // while the queue filled on a slow machine.
        assert!(a_runs.len() <= 35, "the tenant queue never filled");
    };
    assert!(a_runs.len() >= 30, "refused after {} runs", a_runs.len());
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "queue_full");

    // B's run is served next in the round robin, long before A's queue drains.
    let (status, run) = node.run("b-hello", json!({ "name": "B" }), true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&run), "completed");
    let (_, first) = node
        .json(
            reqwest::Method::GET,
            &format!("/v1/runs/{}", a_runs[0]),
            None,
        )
        .await;
    eprintln!("DEBUG first A run: {first}");
    let mut unfinished = 0;
    for id in &a_runs {
        let (_, r) = node
            .json(reqwest::Method::GET, &format!("/v1/runs/{id}"), None)
            .await;
        if r["status"] != "finished" {
            unfinished += 1;
        }
    }
    assert!(
        unfinished >= 20,
        "B waited for A's flood: only {unfinished} of A's 30 runs left"
    );
}

/// Read server-sent events until `end`, returning (event, data) pairs.
async fn read_events(
    resp: reqwest::Response,
    on_first_log: impl FnOnce(),
) -> Vec<(String, String)> {
    use futures_util::StreamExt;
    let mut events = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    let mut first = Some(on_first_log);
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if event == "log"
                && let Some(f) = first.take()
            {
                f();
            }
            let done = event == "end";
            if !event.is_empty() {
                events.push((event, data));
            }
            if done {
                return events;
            }
        }
    }
    events
}

#[tokio::test]
async fn logs_stream_live_as_server_sent_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &Setup::default());
    let slow = node.upload(guests::SLOW_LOGGER).await;
    node.deploy("slow", "t1", &slow, json!({})).await;
    let (_, run) = node
        .run("slow", json!({ "lines": 5, "interval_ms": 150 }), false)
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    let resp = node
        .req(reqwest::Method::GET, &format!("/v1/runs/{id}/logs"))
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let seen_live = Arc::new(Mutex::new(None));
    let events = {
        let seen_live = Arc::clone(&seen_live);
        let node_url = node.url(&format!("/v1/runs/{id}"));
        let client = node.client.clone();
        read_events(resp, move || {
            // At the first line the run must still be going: the stream is
            // live, not a replay.
            let status = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rt");
                rt.block_on(async {
                    let r: Value = client
                        .get(node_url)
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .expect("get")
                        .json()
                        .await
                        .expect("json");
                    r["status"].as_str().unwrap_or("").to_owned()
                })
            })
            .join()
            .expect("thread");
            *seen_live.lock().expect("lock") = Some(status);
        })
        .await
    };
    let logs: Vec<_> = events.iter().filter(|(e, _)| e == "log").collect();
    assert_eq!(logs.len(), 5, "{events:?}");
    let first: Value = serde_json::from_str(&logs[0].1).expect("json line");
    assert_eq!(first["message"], "line 0");
    let (event, data) = events.last().expect("end");
    assert_eq!(event, "end");
    let end: Value = serde_json::from_str(data).expect("json");
    assert_eq!(end["outcome"]["status"], "completed", "{end}");
    assert_ne!(
        seen_live.lock().expect("lock").as_deref(),
        Some("finished"),
        "the first line arrived only after the run ended"
    );
    // A finished run's stream replays its lines and ends.
    let resp = node
        .req(reqwest::Method::GET, &format!("/v1/runs/{id}/logs"))
        .send()
        .await
        .expect("logs");
    let replay = read_events(resp, || {}).await;
    assert_eq!(replay.iter().filter(|(e, _)| e == "log").count(), 5);
}

#[tokio::test]
async fn expired_runs_are_hard_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &Setup {
            extra: "[runs]\nretention_secs = 1\nsweep_interval_secs = 1\n".into(),
            ..Setup::default()
        },
    );
    let hello = node.upload(guests::HELLO_AGENT).await;
    node.deploy("hello", "t1", &hello, json!({})).await;
    let (_, run) = node.run("hello", json!({ "name": "Gone" }), true).await;
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    let (status, _) = node.json(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = node.json(reqwest::Method::GET, &path, None).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run not deleted after its expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Gone from the files too, not just hidden: deleted content is
    // overwritten (secure_delete) and the sweep checkpoints the WAL, which
    // held the page the run was written to.
    let db = std::fs::read(dir.path().join("state/node.db")).expect("db");
    let wal = std::fs::read(dir.path().join("state/node.db-wal")).unwrap_or_default();
    let needle = b"Hello, Gone!";
    let present = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!present(&db), "the output is still in the database file");
    assert!(!present(&wal), "the output is still in the write-ahead log");
}

#[tokio::test]
async fn sigterm_drains_finishes_short_runs_and_cancels_long_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(
        dir.path(),
        &Setup {
            extra: "[limits]\nmax_fuel = 1000000000000\n\
                    [scheduler]\nconcurrency = 2\nper_tenant_concurrency = 2\n"
                .into(),
            ..Setup::default()
        },
    );
    let slow = node.upload(guests::SLOW_LOGGER).await;
    let looping = node.upload(guests::HOSTILE_LOOP).await;
    node.deploy("slow", "t1", &slow, json!({})).await;
    node.deploy(
        "loop",
        "t1",
        &looping,
        json!({ "fuel": 100_000_000_000u64, "timeout_ms": 30_000 }),
    )
    .await;
    // Finishes within the 2 s grace.
    let short = {
        let req = node
            .req(reqwest::Method::POST, "/v1/agents/slow/runs?wait=true")
            .json(&json!({ "input": { "lines": 4, "interval_ms": 200 } }));
        tokio::spawn(async move { req.send().await })
    };
    // Would outlive the grace.
    let (_, long) = node.run("loop", json!({}), false).await;
    let long = long["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.signal(nix::sys::signal::Signal::SIGTERM);
    let resp = short
        .await
        .expect("join")
        .expect("the waiting client is answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(outcome(&body), "completed", "{body}");
    let status = node.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}\n{}", node.log());
    drop(node);
    let node = NodeProcess::restart(dir.path());
    let (_, run) = node
        .json(reqwest::Method::GET, &format!("/v1/runs/{long}"), None)
        .await;
    assert_eq!(run["status"], "finished", "{run}");
    assert_eq!(outcome(&run), "cancelled", "{run}");
    assert!(
        run["usage"]["fuel_used"].as_u64().expect("fuel") > 0,
        "{run}"
    );
}

/// A control plane's usage endpoint: records every batch, dedups by run id.
#[derive(Default)]
struct UsageSink {
    batches: Vec<(String, Vec<String>)>,
    fail_first: usize,
}

async fn usage_sink(sink: Arc<Mutex<UsageSink>>) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/nodes/usage",
        post(
            move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    assert_eq!(
                        headers.get("authorization").and_then(|v| v.to_str().ok()),
                        Some("Bearer control-token")
                    );
                    let mut sink = sink.lock().expect("lock");
                    if sink.fail_first > 0 {
                        sink.fail_first -= 1;
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    assert_eq!(key, body["batch_id"].as_str().unwrap_or("-"));
                    let ids = body["records"]
                        .as_array()
                        .expect("records")
                        .iter()
                        .map(|r| r["run_id"].as_str().expect("run_id").to_owned())
                        .collect();
                    sink.batches.push((key, ids));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_usage_and_reports_each_run_once() {
    let sink = Arc::new(Mutex::new(UsageSink {
        fail_first: 2,
        ..UsageSink::default()
    }));
    let cp = usage_sink(Arc::clone(&sink)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("control-token"), "control-token").expect("token");
    let mut node = NodeProcess::start(
        dir.path(),
        &Setup {
            extra: format!(
                "[control_plane]\nurl = \"{cp}\"\ntoken_file = \"{}\"\nbatch_size = 7\n",
                dir.path().join("control-token").display()
            ),
            ..Setup::default()
        },
    );
    let hello = node.upload(guests::HELLO_AGENT).await;
    node.deploy("hello", "t1", &hello, json!({})).await;

    // Eight clients fire runs until the node dies under them.
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let client = node.client.clone();
        let url = node.url("/v1/agents/hello/runs?wait=true");
        let acknowledged = Arc::clone(&acknowledged);
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let resp = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({ "input": { "name": format!("c{c}-{i}") } }))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if resp.status() != StatusCode::OK {
                    break;
                }
                let Ok(body) = resp.json::<Value>().await else {
                    break;
                };
                acknowledged
                    .lock()
                    .expect("lock")
                    .insert(body["id"].as_str().expect("id").to_owned());
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().expect("lock").len() < 150 {
        assert!(Instant::now() < deadline, "runs too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.signal(nix::sys::signal::Signal::SIGKILL);
    node.wait_exit(Duration::from_secs(10));
    for c in clients {
        let _ = c.await;
    }
    drop(node);
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 150);

    let node = NodeProcess::restart(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reported: HashSet<String> = sink
            .lock()
            .expect("lock")
            .batches
            .iter()
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        if acknowledged.is_subset(&reported) {
            let (count, _) = backlog(&node).await;
            if count == 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged runs missing from the reports: {}",
            acknowledged.difference(&reported).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The control plane dedups by run id; resends are still bounded: only
    // the batch in flight when the node died can be sent twice.
    let sink = sink.lock().expect("lock");
    let mut batches_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (batch, ids) in &sink.batches {
        for id in ids {
            batches_of.entry(id).or_default().insert(batch);
        }
    }
    let resent = batches_of.values().filter(|b| b.len() > 1).count();
    assert!(resent <= 7, "{resent} runs reported in more than one batch");
}

/// One request written by hand (for what a well-behaved client will not
/// send); returns the status and body.
async fn raw_request(base: &str, head: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the headers and the announced body are in.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the server answered")
            .expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length || n == 0 {
                let status = text[9..12].parse().expect("status");
                return (status, text[end + 4..].to_owned());
            }
        }
        assert!(n > 0, "connection closed before an answer");
    }
}

async fn backlog(node: &NodeProcess) -> (u64, String) {
    let text = node.metrics().await;
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("delta_usage_report_backlog "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX);
    (count, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_tokens_and_messages_land_in_the_run_usage_and_metrics() {
    use delta_test_servers::llm::{Reply, ScriptedLlm};
    let llm = ScriptedLlm::start().await.expect("llm");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("llm-key"), "sk-node-secret\n").expect("key");
    let extra = format!(
        r#"
[llm]
aliases = {{ default = "test-model" }}
[[llm.providers]]
name = "local"
kind = "openai"
base_url = "{base}"
api_key_file = "{key}"
models = ["test-model"]

[messaging]
[messaging.email]
from = "Delta <noreply@delta.test>"
cost_tokens = 10
backend = {{ kind = "outbox", dir = "{outbox}" }}
[[messaging.templates]]
id = "welcome"
channel = "email"
subject = "Welcome, {{{{ name }}}}"
body = "Hello {{{{ name }}}}."
variables = ["name"]
approved = true

[budget]
database = "{ledger}"
[[budget.users]]
id = "dev"
tier = "developer"
monthly_allocation = 10000
[[budget.agents]]
id = "main"
user = "dev"
budget = 3000
[[budget.agents]]
id = "bot"
parent = "main"
budget = 100
[[budget.agents]]
id = "mailer"
parent = "main"
budget = 100
"#,
        base = llm.base_url(),
        key = dir.path().join("llm-key").display(),
        outbox = dir.path().join("outbox").display(),
        ledger = dir.path().join("ledger.db").display(),
    );
    let node = NodeProcess::start(
        dir.path(),
        &Setup {
            extra,
            ..Setup::default()
        },
    );
    let bot = node.upload(guests::LLM_TASK_BOT).await;
    let mailer = node.upload(guests::EMAIL_BOT).await;
    let (status, body) = node
        .json(
            reqwest::Method::PUT,
            "/v1/agents/bot",
            Some(
                json!({ "tenant_id": "t1", "component": bot, "grants": { "models": ["default"] } }),
            ),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = node
        .json(
            reqwest::Method::PUT,
            "/v1/agents/mailer",
            Some(json!({
                "tenant_id": "t1",
                "component": mailer,
                "grants": {
                    "channels": ["email"],
                    "templates": ["welcome"],
                    "recipients": ["*@example.com"],
                },
            })),
        )
        .await;
    assert!(status.is_success(), "{body}");

    llm.push(Reply::ok("Forty-two.", 20, 5));
    let (status, run) = node
        .run(
            "bot",
            json!({ "task": "What is the answer?", "max_tokens": 40 }),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&run), "completed", "{run}");
    assert_eq!(
        run["usage"]["llm"]["test-model"],
        json!({ "calls": 1, "input_tokens": 20, "output_tokens": 5 }),
        "{run}"
    );
    assert_eq!(
        llm.requests()[0].header("authorization"),
        Some("Bearer sk-node-secret")
    );

    let (_, sent) = node
        .run(
            "mailer",
            json!({ "to": "ada@example.com", "name": "Ada" }),
            true,
        )
        .await;
    assert_eq!(outcome(&sent), "completed", "{sent}");
    assert_eq!(
        sent["usage"]["messages"]["email"],
        json!({ "sent": 1, "refused": 0, "tokens": 10 }),
        "{sent}"
    );
    let (_, refused) = node
        .run(
            "mailer",
            json!({ "to": "eve@evil.test", "name": "Eve" }),
            true,
        )
        .await;
    assert_eq!(outcome(&refused), "agent-error", "{refused}");
    assert_eq!(
        refused["usage"]["messages"]["email"]["refused"], 1,
        "{refused}"
    );
    let files = std::fs::read_dir(dir.path().join("outbox"))
        .expect("outbox")
        .count();
    assert_eq!(files, 1, "one message delivered to the file outbox");

    let (_, text) = backlog(&node).await;
    for needle in [
        r#"delta_llm_tokens_total{kind="input",model="test-model"} 20"#,
        r#"delta_llm_tokens_total{kind="output",model="test-model"} 5"#,
        r#"delta_llm_calls_total{outcome="ok"} 1"#,
        r#"delta_messages_total{channel="email",outcome="sent"} 1"#,
        r#"delta_messages_total{channel="email",outcome="recipient-not-allowed"} 1"#,
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
}

#[tokio::test]
async fn sighup_reloads_the_token_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &Setup::default());
    let hello = node.upload(guests::HELLO_AGENT).await;
    node.deploy("hello", "t1", &hello, json!({ "fuel": 50_000_000 }))
        .await;
    // Rotate the token and lower the node's fuel maximum below hello's need.
    std::fs::write(dir.path().join("token"), "rotated-token-abcdef").expect("token");
    let config = std::fs::read_to_string(dir.path().join("node.toml")).expect("config");
    std::fs::write(
        dir.path().join("node.toml"),
        format!("{config}\n[limits]\nmax_fuel = 1000\n"),
    )
    .expect("config");
    node.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = node.json(reqwest::Method::GET, "/v1/agents", None).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "the old token still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = node
        .client
        .post(node.url("/v1/agents/hello/runs?wait=true"))
        .bearer_auth("rotated-token-abcdef")
        .json(&json!({ "input": { "name": "H" } }))
        .send()
        .await
        .expect("run");
    assert_eq!(resp.status(), StatusCode::OK);
    let run: Value = resp.json().await.expect("json");
    assert_eq!(
        outcome(&run),
        "out-of-fuel",
        "the reloaded maximum applies: {run}"
    );
}

/// The control plane names runs itself: a run takes the caller's id (waited
/// on or not); an id the node already has, live or stored, is answered with
/// that run (a repeated delivery) and runs nothing, unless it is another
/// agent's (409 `run_exists`); an id that is not a plain token is 422.
#[tokio::test]
async fn runs_can_be_named_by_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &Setup::default());
    let hello = node.upload(guests::HELLO_AGENT).await;
    node.deploy("hello", "t1", &hello, json!({})).await;
    let create = |id: &str, wait: bool| {
        let path = format!(
            "/v1/agents/hello/runs{}",
            if wait { "?wait=true" } else { "" }
        );
        let body = json!({ "input": { "name": "Ada" }, "id": id });
        let node = &node;
        async move { node.json(reqwest::Method::POST, &path, Some(body)).await }
    };
    let (status, body) = create("run_named-1", false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["id"], "run_named-1");
    let finished = node.wait_finished("run_named-1").await;
    assert_eq!(outcome(&finished), "completed", "{finished}");

    let (status, run) = create("run_named-2", true).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["id"], "run_named-2");

    // Delivered again (a retry of the control plane's dispatcher): the
    // run held is answered as if accepted, and nothing runs twice.
    for taken in ["run_named-1", "run_named-2"] {
        let (status, body) = create(taken, false).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["id"], taken, "{body}");
        let (status, body) = create(taken, true).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["id"], taken, "{body}");
        assert_eq!(outcome(&body), "completed", "{body}");
    }
    // The same id for another agent is refused.
    node.deploy("hello-2", "t1", &hello, json!({})).await;
    let (status, body) = node
        .json(
            reqwest::Method::POST,
            "/v1/agents/hello-2/runs",
            Some(json!({ "input": {}, "id": "run_named-1" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "run_exists", "{body}");
    let (status, body) = create("no spaces/or slashes", false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Nothing ran for the refused ones: two runs in all.
    let metrics = node.metrics().await;
    let needle = r#"delta_runs_total{outcome="completed",tenant="t1"} 2"#;
    assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
}
