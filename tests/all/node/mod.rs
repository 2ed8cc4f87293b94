//! `delta node` end to end: the real binary, over real HTTP and TLS, with a
//! real client; signals and `kill -9` included. This file holds the harness
//! (a node process, its setup, shared requests); the tests are by concern:
//! `api` (routes, TLS, logs, expiry, run ids), `scheduling` (slots, queues,
//! pause, cancel) and `lifecycle` (signals, kill -9, usage reporting, LLM
//! and message usage).

mod api;
mod lifecycle;
mod scheduling;

use crate::support;

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

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

    /// `POST`, `GET` and `DELETE` of `path` with no body.
    async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.json(reqwest::Method::POST, path, None).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.json(reqwest::Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.json(reqwest::Method::DELETE, path, None).await
    }

    /// Submit a run of `agent` without waiting: its id.
    async fn start_run(&self, agent: &str, input: Value) -> String {
        let (status, body) = self.run(agent, input, false).await;
        assert!(status.is_success(), "run of {agent}: {status} {body}");
        body["id"].as_str().expect("run id").to_owned()
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
