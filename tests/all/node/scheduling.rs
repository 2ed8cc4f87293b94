//! Scheduling: one slot, queues per tenant, pause, resume, delete and
//! cancelling single runs.

use std::path::Path;
use std::time::Duration;

use delta_guest_artifacts as guests;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

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
    let busy = node.start_run("loop", json!({})).await;
    let waiting = node.start_run("hello", json!({ "name": "Q" })).await;
    let (status, paused) = node.post("/v1/agents/hello/pause").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["paused"], true);
    // Paused: no new runs.
    let (status, body) = node.run("hello", json!({ "name": "X" }), false).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "agent_paused");
    // Deleting the loop agent cancels its running run.
    let (status, _) = node.delete("/v1/agents/loop").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cancelled = node.wait_finished(&busy).await;
    assert_eq!(outcome(&cancelled), "cancelled", "{cancelled}");
    // The slot is free, but the paused agent's queued run waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, still) = node.get(&format!("/v1/runs/{waiting}")).await;
    assert_eq!(still["status"], "queued", "{still}");
    let (status, _) = node.post("/v1/agents/hello/resume").await;
    assert_eq!(status, StatusCode::OK);
    let done = node.wait_finished(&waiting).await;
    assert_eq!(outcome(&done), "completed", "{done}");
    let (status, _) = node.post("/v1/agents/loop/pause").await;
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
    let busy = node.start_run("loop", json!({})).await;
    let first = node.start_run("hello", json!({ "name": "A" })).await;
    let second = node.start_run("hello", json!({ "name": "B" })).await;

    // A queued run leaves the queue without running.
    let (status, body) = node.post(&format!("/v1/runs/{first}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cancelled = node.wait_finished(&first).await;
    assert_eq!(outcome(&cancelled), "cancelled", "{cancelled}");
    assert!(cancelled["started_at_ms"].is_null(), "{cancelled}");
    // The running loop is interrupted; the slot goes to the next run.
    let (status, body) = node.post(&format!("/v1/runs/{busy}/cancel")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    let stopped = node.wait_finished(&busy).await;
    assert_eq!(outcome(&stopped), "cancelled", "{stopped}");
    let done = node.wait_finished(&second).await;
    assert_eq!(outcome(&done), "completed", "{done}");
    // Cancelling a finished run changes nothing; an unknown one is 404.
    let (status, again) = node.post(&format!("/v1/runs/{second}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(outcome(&again), "completed", "{again}");
    let (status, _) = node.post("/v1/runs/run_nope/cancel").await;
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
        let (_, r) = node.get(&format!("/v1/runs/{id}")).await;
        if r["status"] != "finished" {
            unfinished += 1;
        }
    }
    assert!(
        unfinished >= 20,
        "B waited for A's flood: only {unfinished} of A's 30 runs left"
    );
}
