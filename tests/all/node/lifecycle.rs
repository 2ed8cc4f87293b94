//! A node's life: SIGTERM drain, kill -9 under load, usage reporting,
//! LLM and message usage, SIGHUP reload.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delta_guest_artifacts as guests;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

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
    let long = node.start_run("loop", json!({})).await;
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
    let (_, run) = node.get(&format!("/v1/runs/{long}")).await;
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
        let (status, _) = node.get("/v1/agents").await;
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
