//! The node's API: TLS and auth, components, agents, runs, verifications,
//! restarts, live logs, expiry and caller-named runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delta_guest_artifacts as guests;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::*;

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
    let (status, body) = node.get("/v1/nope").await;
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
    let (status, list) = node.get("/v1/components").await;
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
    let (status, agent) = node.get("/v1/agents/hello").await;
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
    let (status, body) = node.get("/v1/agents/nobody").await;
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
    let (status, _) = node.get("/v1/runs/run_nope").await;
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
    let (status, _) = node.delete(&format!("/v1/components/{hello}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = node.delete("/v1/agents/hello").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = node.delete(&format!("/v1/components/{hello}")).await;
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
