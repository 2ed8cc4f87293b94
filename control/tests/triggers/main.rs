//! Triggers (issue 14) over real HTTP, on SQLite and PostgreSQL, with a
//! real in-process node running a JavaScript agent that answers its input:
//! `schedules` (once per tick with two replicas, catch-up after downtime,
//! bad input, tenant isolation), `webhooks` (signed deliveries become
//! runs; bad, stale, replayed and oversized ones start nothing),
//! `agent_messages` (one agent's message starts another's run) and
//! `workflows` (DAGs of runs).

#[path = "../common/mod.rs"]
mod common;

mod agent_messages;
mod limits;
mod schedules;
mod webhooks;
mod workflows;

use std::time::Duration;

use common::bounties::create_agent;
use common::{Control, Session, eventually, start_node_in_process, upload_script};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An agent whose output is its input.
const ECHO_JS: &str = "export function run(task) { return task.input; }\n";

/// A control plane with a node, alice and her echo agent.
struct Echo {
    ctl: Control,
    _node: delta_node::server::RunningNode,
    alice: Session,
    agent: String,
}

async fn echo(ctl: Control) -> Echo {
    let node = start_node_in_process(&ctl, "trigger-node", "").await;
    let alice = ctl.register("alice").await;
    let (status, component) = upload_script(&ctl, &alice.access, ECHO_JS).await;
    assert!(status.is_success(), "{status} {component}");
    let sha = component["sha256"].as_str().expect("sha256").to_owned();
    let agent = create_agent(&ctl, &alice, "echo", &sha).await;
    Echo {
        ctl,
        _node: node,
        alice,
        agent,
    }
}

/// The finished run `id` as `who` sees it (waits for it to finish).
async fn finished_run(ctl: &Control, who: &Session, id: &str) -> Value {
    eventually("the run to finish", Duration::from_secs(30), || async {
        let (status, run) = ctl
            .call(
                Method::GET,
                &format!("/v1/runs/{id}"),
                Some(&who.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        (run["status"] == "finished").then_some(run)
    })
    .await
}

/// The JSON an echo run answered (JavaScript outputs are JSON text).
fn echoed(run: &Value) -> Value {
    assert_eq!(run["outcome"]["status"], "completed", "{run}");
    let text = run["outcome"]["output"].as_str().expect("output text");
    serde_json::from_str(text).expect("output is JSON")
}

/// Runs of `agent` the control plane recorded.
async fn runs_of(ctl: &Control, agent: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE agent_id = $1")
        .bind(agent)
        .fetch_one(ctl.state.db.pool())
        .await
        .expect("count runs")
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}
