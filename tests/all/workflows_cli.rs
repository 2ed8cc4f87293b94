//! A workflow survives `kill -9` of the control-plane replica its node
//! reports to, again and again in the middle of its steps: a `delta
//! control` process (restarted on the same port each time) beside the test
//! harness's replica, on one database. The workflow finishes with the
//! right output and each step ran once: the end of a step's run, the
//! step's end and the next step's queueing are one transaction, the node
//! keeps its usage until a replica takes it, and a run a dead replica
//! claimed but never delivered is delivered again.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::bounties_cli::replicas::replica_config;
use crate::common::{Control, Dialect, eventually, start_node_reporting_to, upload_script};
use crate::support::ControlProcess;

/// Adds its values.
const SUM_JS: &str =
    "export function run(task) { return { sum: task.input.values.reduce((a, b) => a + b, 0) }; }\n";

/// Steps in the chain.
const STEPS: usize = 5;

async fn spawn(dir: &std::path::Path) -> ControlProcess {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || ControlProcess::spawn(&dir))
        .await
        .expect("join")
}

async fn workflow_survives_kill_9_of_its_control_plane(dialect: Dialect) {
    let ctl = Control::start(dialect).await;
    let alice = ctl.register("alice").await;
    let dir = ctl.dir.path().join("replica-b");
    std::fs::create_dir_all(&dir).expect("replica dir");
    replica_config(&ctl, &dir);
    let mut replica = spawn(&dir).await;
    // Restarted where it was: the node knows one control-plane URL.
    let port = replica.url.rsplit(':').next().expect("port").to_owned();
    let config = std::fs::read_to_string(dir.join("control.toml")).expect("config");
    std::fs::write(
        dir.join("control.toml"),
        config.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .expect("config");
    let _node = start_node_reporting_to(&ctl, "node", "wf-node", &replica.url, "").await;

    let (status, component) = upload_script(&ctl, &alice.access, SUM_JS).await;
    assert!(status.is_success(), "{component}");
    let body = json!({ "name": "adder", "kind": "main", "component": component["sha256"] });
    eventually(
        "the node to take the agent",
        Duration::from_secs(30),
        || async {
            let (status, _) = ctl
                .call(
                    Method::POST,
                    "/v1/agents",
                    Some(&alice.access),
                    Some(body.clone()),
                )
                .await;
            (status == StatusCode::CREATED).then_some(())
        },
    )
    .await;
    // s0 adds 1 to the input, each next step adds 1 to the one before.
    let steps: Vec<Value> = (0..STEPS)
        .map(|i| {
            let from = if i == 0 {
                "/input/n".to_owned()
            } else {
                format!("/steps/s{}/sum", i - 1)
            };
            let after: Vec<String> = (i > 0).then(|| format!("s{}", i - 1)).into_iter().collect();
            json!({ "id": format!("s{i}"), "agent": "adder", "after": after,
                    "input": { "values": [{ "$from": from }, 1] } })
        })
        .collect();
    let definition = json!({ "steps": steps,
                             "output": { "n": { "$from": format!("/steps/s{}/sum", STEPS - 1) } } });
    let (status, wf) = ctl
        .call(
            Method::POST,
            "/v1/workflows",
            Some(&alice.access),
            Some(json!({ "name": "chain", "definition": definition })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wf}");
    let client = reqwest::Client::new();
    let started: Value = client
        .post(format!(
            "{}/v1/workflows/{}/runs",
            replica.url,
            wf["id"].as_str().expect("id")
        ))
        .bearer_auth(&alice.access)
        .json(&json!({ "input": { "n": 10 } }))
        .send()
        .await
        .expect("start on the replica")
        .json()
        .await
        .expect("json");
    let id = started["id"].as_str().expect("workflow run id").to_owned();

    // Killed as each step is seen running, and started again.
    let read = |id: String| {
        let ctl = &ctl;
        let token = alice.access.clone();
        async move {
            let (status, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/workflow-runs/{id}"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{run}");
            run
        }
    };
    let mut kills = 0;
    for i in 0..STEPS {
        let step = format!("s{i}");
        // Polled by hand rather than with `eventually`, to report what the
        // replica logged if the step never starts (seen once under CI's load).
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let seen = loop {
            let run = read(id.clone()).await;
            let state = run["steps"][i]["status"].clone();
            if state != "waiting" || run["status"] != "running" {
                break state;
            }
            if std::time::Instant::now() > deadline {
                let log = replica.log();
                let mut tail: Vec<&str> = log.lines().rev().take(40).collect();
                tail.reverse();
                panic!(
                    "{step} did not start within 90 s, after {kills} kills: {run}\n\
                     the replica's last 40 log lines:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if seen == "running" {
            replica.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            replica = spawn(&dir).await;
        }
    }
    assert!(kills > 0, "the workflow ended before any kill");
    let run = eventually("the workflow to end", Duration::from_secs(120), || async {
        let run = read(id.clone()).await;
        (run["status"] != "running").then_some(run)
    })
    .await;
    assert_eq!(run["status"], "completed", "{run}\n{}", replica.log());
    assert_eq!(run["output"], json!({ "n": 10 + STEPS as i64 }), "{run}");
    for step in run["steps"].as_array().expect("steps") {
        assert_eq!(step["attempts"], 1, "{run}");
    }
    let runs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE trigger_kind = 'workflow' AND trigger_id = $1",
    )
    .bind(&id)
    .fetch_one(ctl.state.db.pool())
    .await
    .expect("count");
    assert_eq!(runs, STEPS as i64, "one run per step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_survives_kill_9_of_its_control_plane_sqlite() {
    workflow_survives_kill_9_of_its_control_plane(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_survives_kill_9_of_its_control_plane_postgres() {
    workflow_survives_kill_9_of_its_control_plane(Dialect::Postgres).await;
}
