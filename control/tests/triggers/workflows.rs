//! Workflows (issue 14) over real HTTP, on an in-process node running a
//! JavaScript agent: a diamond passes data from step to step and its events
//! stream to the end; a flaky step is retried, a failing one fails the run
//! and cancels what waits on it; bad definitions, other tenants and
//! cancellation are handled; a token budget stops a run and a slow step
//! times out.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{finished_run, runs_of, s};
use std::sync::{Arc, Mutex};

use crate::common::bounties::post_agent;
use crate::common::webhooks::{Hit, hits, receiver, signed};
use crate::common::{Control, Session, eventually, start_node_in_process, upload_script};
use crate::{both, both_with};
use delta_test_servers::llm::{Reply, ScriptedLlm};

/// Adds, echoes, fails, or fails on its first try (counted in kv).
const WORKER_JS: &str = r#"
import { kv, DeltaError } from "delta";

export function run(task) {
  const i = task.input;
  switch (i.op) {
    case "sum":
      return { sum: i.values.reduce((a, b) => a + Number(b ?? 0), 0) };
    case "fail":
      throw new DeltaError("boom", "this step always fails");
    case "spin":
      for (;;) {}
    case "flaky": {
      const n = Number(kv.update("tries", (old) => String(Number(old ?? "0") + 1)).value);
      if (n < 2) throw new DeltaError("flaky", "fails on the first try", { retryable: true });
      return { tries: n };
    }
    default:
      return i;
  }
}
"#;

fn loopback_webhooks(c: &mut delta_control::config::ControlConfig) {
    c.allow_private_webhook_urls = true;
}

/// A loopback receiver subscribed to the workflow events: its URL, what it
/// got, the signing secret.
async fn workflow_hooks(ctl: &Control, who: &Session) -> (String, Arc<Mutex<Vec<Hit>>>, String) {
    let (url, hits) = receiver(0).await;
    let (status, endpoint) = ctl
        .call(
            Method::POST,
            "/v1/webhook-endpoints",
            Some(&who.access),
            Some(json!({ "url": url, "event_types":
                ["workflow.completed", "workflow.failed", "workflow.cancelled"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    (url, hits, s(&endpoint["secret"]))
}

/// The receiver's first `n` requests, once it has them (and no more a
/// moment later).
async fn ended_hooks(got: &Arc<Mutex<Vec<Hit>>>, n: usize) -> Vec<Hit> {
    eventually("the result webhooks", Duration::from_secs(30), || async {
        (hits(got).len() >= n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = hits(got);
    assert_eq!(all.len(), n, "one event per workflow run");
    all
}

async fn worker(ctl: &Control, who: &Session, name: &str) -> String {
    let (status, component) = upload_script(ctl, &who.access, WORKER_JS).await;
    assert!(status.is_success(), "{status} {component}");
    let agent = post_agent(
        ctl,
        who,
        json!({ "name": name, "kind": "main", "component": component["sha256"],
                "grants": { "kv": true } }),
    )
    .await;
    s(&agent["id"])
}

async fn create(
    ctl: &Control,
    who: &Session,
    name: &str,
    definition: Value,
) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        "/v1/workflows",
        Some(&who.access),
        Some(json!({ "name": name, "definition": definition })),
    )
    .await
}

async fn start(ctl: &Control, who: &Session, workflow: &str, input: Value) -> Value {
    let (status, run) = ctl
        .call(
            Method::POST,
            &format!("/v1/workflows/{workflow}/runs"),
            Some(&who.access),
            Some(json!({ "input": input })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    run
}

/// The workflow run once it is no longer `running`.
async fn ended(ctl: &Control, who: &Session, id: &str) -> Value {
    eventually(
        "the workflow run to end",
        Duration::from_secs(60),
        || async {
            let (status, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/workflow-runs/{id}"),
                    Some(&who.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{run}");
            (run["status"] != "running").then_some(run)
        },
    )
    .await
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}

/// The event stream's `(type, data)` pairs, read to its end.
async fn events(ctl: &Control, who: &Session, id: &str, after: i64) -> Vec<(String, Value)> {
    let text = ctl
        .client
        .get(ctl.url(&format!("/v1/workflow-runs/{id}/events?after={after}")))
        .bearer_auth(&who.access)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("the stream ends with the run");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            let v: Value = serde_json::from_str(d).expect("event JSON");
            (s(&v["type"]), v)
        })
        .collect()
}

both_with!(
    a_diamond_passes_outputs_along_and_its_events_stream_to_the_end,
    loopback_webhooks,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "wf-node", "").await;
        let alice = ctl.register("alice").await;
        let agent = worker(&ctl, &alice, "worker").await;
        let (hook_url, hook_hits, secret) = workflow_hooks(&ctl, &alice).await;
        let (status, wf) = create(
            &ctl,
            &alice,
            "diamond",
            json!({
                "steps": [
                    { "id": "a", "agent": "worker", "input": { "n": { "$from": "/input/n" } } },
                    { "id": "b", "agent": "worker", "after": ["a"],
                      "input": { "op": "sum", "values": [{ "$from": "/steps/a/n" }, 10] } },
                    { "id": "c", "agent": &agent, "after": ["a"],
                      "input": { "op": "sum", "values": [{ "$from": "/steps/a/n" }, 100] } },
                    { "id": "d", "agent": "worker", "after": ["b", "c"],
                      "input": { "op": "sum",
                                 "values": [{ "$from": "/steps/b/sum" }, { "$from": "/steps/c/sum" }] } },
                ],
                "output": { "total": { "$from": "/steps/d/sum" } },
            }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{wf}");
        assert_eq!(
            wf["definition"]["steps"][0]["agent"],
            agent.as_str(),
            "stored as the id"
        );
        let started = start(&ctl, &alice, &s(&wf["id"]), json!({ "n": 2 })).await;
        assert_eq!(step(&started, "a")["status"], "running", "{started}");
        assert_eq!(step(&started, "d")["status"], "waiting");

        let run = ended(&ctl, &alice, &s(&started["id"])).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["output"], json!({ "total": 114 }));
        for (id, output) in [
            ("a", json!({ "n": 2 })),
            ("b", json!({ "sum": 12 })),
            ("c", json!({ "sum": 102 })),
            ("d", json!({ "sum": 114 })),
        ] {
            assert_eq!(step(&run, id)["output"], output, "{run}");
            assert_eq!(step(&run, id)["attempts"], 1);
        }
        assert_eq!(runs_of(&ctl, &agent).await, 4, "one run per step");
        let (_, one) = ctl
            .call(
                Method::GET,
                &format!("/v1/runs/{}", s(&step(&run, "d")["run_id"])),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(
            one["trigger"],
            json!({ "kind": "workflow", "id": run["id"] })
        );

        let all = events(&ctl, &alice, &s(&run["id"]), 0).await;
        let kinds: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"workflow.started"));
        assert_eq!(kinds.last(), Some(&"workflow.completed"));
        assert_eq!(kinds.iter().filter(|k| **k == "step.started").count(), 4);
        assert_eq!(kinds.iter().filter(|k| **k == "step.completed").count(), 4);
        // Resumed after an event: only what came after it.
        let later = events(&ctl, &alice, &s(&run["id"]), 2).await;
        assert_eq!(later.len(), all.len() - 2);
        assert_eq!(later[0].1["seq"], 3);

        // The result webhook: one signed workflow.completed with the output.
        let hooks = ended_hooks(&hook_hits, 1).await;
        assert!(
            signed(&secret, &hooks[0].headers, &hooks[0].body),
            "{hook_url}"
        );
        let body = hooks[0].json();
        assert_eq!(body["type"], "workflow.completed", "{body}");
        assert_eq!(
            (
                &body["data"]["workflow_run_id"],
                &body["data"]["workflow_id"]
            ),
            (&run["id"], &wf["id"])
        );
        assert_eq!(body["data"]["output"], json!({ "total": 114 }));
    }
);

both!(
    a_flaky_step_is_retried_and_a_failing_one_fails_the_run,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "wf-node", "").await;
        let alice = ctl.register("alice").await;
        worker(&ctl, &alice, "worker").await;
        let (status, wf) = create(
            &ctl,
            &alice,
            "flaky-then-fail",
            json!({ "steps": [
                { "id": "flaky", "agent": "worker", "input": { "op": "flaky" }, "retries": 1 },
                { "id": "fail", "agent": "worker", "after": ["flaky"], "input": { "op": "fail" },
                  "retries": 1 },
                { "id": "never", "agent": "worker", "after": ["fail"] },
            ] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{wf}");
        let started = start(&ctl, &alice, &s(&wf["id"]), json!({})).await;
        let run = ended(&ctl, &alice, &s(&started["id"])).await;
        assert_eq!(run["status"], "failed", "{run}");
        let error = run["error"].as_str().expect("error");
        assert!(
            error.starts_with("step fail failed") && error.contains("boom"),
            "{error}"
        );
        assert_eq!(
            (
                &step(&run, "flaky")["status"],
                &step(&run, "flaky")["attempts"]
            ),
            (&json!("completed"), &json!(2)),
            "{run}"
        );
        assert_eq!(step(&run, "flaky")["output"], json!({ "tries": 2 }));
        assert_eq!(
            (
                &step(&run, "fail")["status"],
                &step(&run, "fail")["attempts"]
            ),
            (&json!("failed"), &json!(2))
        );
        assert_eq!(step(&run, "never")["status"], "cancelled");
        assert!(step(&run, "never")["run_id"].is_null(), "never started");
        let kinds: Vec<String> = events(&ctl, &alice, &s(&run["id"]), 0)
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kinds.iter().filter(|k| *k == "step.retrying").count(), 2);
        assert_eq!(kinds.last().map(String::as_str), Some("workflow.failed"));
    }
);

both!(
    bad_definitions_other_tenants_and_cancellation,
    |ctl: Control| async move {
        // Fuel for a spinning step to outlast the test: only a cancel stops it.
        let _node = start_node_in_process(
            &ctl,
            "wf-node",
            "[limits]\nmax_fuel = 1000000000000\ndefault_fuel = 1000000000000\n",
        )
        .await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let agent = worker(&ctl, &alice, "worker").await;
        let bobs = worker(&ctl, &bob, "bobs-worker").await;
        // The same document as YAML; YAML that does not parse, or has
        // another shape, is bad input.
        let yaml = |body: &'static str| {
            ctl.client
                .post(ctl.url("/v1/workflows"))
                .bearer_auth(&alice.access)
                .header("content-type", "application/yaml")
                .body(body)
                .send()
        };
        let answer = yaml(
            "name: from-yaml\ndefinition:\n  steps:\n    - id: a\n      agent: worker\n      \
             input: {n: {$from: /input/n}}\n    - {id: b, agent: worker, after: [a]}\n",
        )
        .await
        .expect("post yaml");
        assert_eq!(answer.status(), StatusCode::CREATED);
        let stored: Value = answer.json().await.expect("json");
        assert_eq!(stored["definition"]["steps"][0]["agent"], agent.as_str());
        assert_eq!(
            stored["definition"]["steps"][0]["input"],
            json!({ "n": { "$from": "/input/n" } })
        );
        assert_eq!(stored["definition"]["steps"][1]["after"], json!(["a"]));
        for (body, status, code) in [
            (
                "name: x\ndefinition: {steps: [",
                StatusCode::BAD_REQUEST,
                "invalid_yaml",
            ),
            (
                "name: x\ndefinition: {stepz: []}\n",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
            ),
        ] {
            let answer = yaml(body).await.expect("post yaml");
            assert_eq!(answer.status(), status, "{body}");
            let error: Value = answer.json().await.expect("json");
            assert_eq!(error["code"], code, "{error}");
        }
        for (definition, code) in [
            (json!({ "steps": [] }), "invalid"),
            (
                json!({ "steps": [{ "id": "a", "agent": "worker", "after": ["a"] }] }),
                "invalid",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "nobody" }] }),
                "unknown_agent",
            ),
            // Another tenant's agent, by its id: not found in this tenant.
            (
                json!({ "steps": [{ "id": "a", "agent": &bobs }] }),
                "unknown_agent",
            ),
        ] {
            let (status, body) = create(&ctl, &alice, "bad", definition.clone()).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
                "{definition}: {body}"
            );
        }
        let one_step = json!({ "steps": [{ "id": "only", "agent": "worker" }] });
        let (status, wf) = create(&ctl, &alice, "single", one_step.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{wf}");
        let (status, _) = create(&ctl, &alice, "single", one_step).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let id = s(&wf["id"]);
        for (method, path) in [
            (Method::GET, format!("/v1/workflows/{id}")),
            (Method::POST, format!("/v1/workflows/{id}/runs")),
            (Method::DELETE, format!("/v1/workflows/{id}")),
        ] {
            let (status, _) = ctl
                .call(method.clone(), &path, Some(&bob.access), Some(json!({})))
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }

        // A run whose agent is paused waits on the queue; cancelled, it
        // ends and its step's run is never delivered.
        let (status, _) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{agent}/pause"),
                Some(&alice.access),
                None,
            )
            .await;
        assert!(status.is_success());
        let started = start(&ctl, &alice, &id, json!({})).await;
        let run_id = s(&started["id"]);
        let (status, _) = ctl
            .call(
                Method::GET,
                &format!("/v1/workflow-runs/{run_id}"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "bob cannot read it");
        let (status, _) = ctl
            .call(
                Method::POST,
                &format!("/v1/workflow-runs/{run_id}/cancel"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "bob cannot cancel it");
        let (status, cancelled) = ctl
            .call(
                Method::POST,
                &format!("/v1/workflow-runs/{run_id}/cancel"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{cancelled}");
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(step(&cancelled, "only")["status"], "cancelled");
        let (status, again) = ctl
            .call(
                Method::POST,
                &format!("/v1/workflow-runs/{run_id}/cancel"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(
            (status, again["code"].as_str()),
            (StatusCode::CONFLICT, Some("not_running"))
        );
        let (_, listed) = ctl
            .call(Method::GET, "/v1/workflow-runs", Some(&bob.access), None)
            .await;
        assert_eq!(listed["items"], json!([]), "bob lists none of alice's runs");

        // A step running on its node: cancelling the workflow run stops its
        // run there too.
        let (status, _) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{agent}/resume"),
                Some(&alice.access),
                None,
            )
            .await;
        assert!(status.is_success());
        let spin =
            json!({ "steps": [{ "id": "only", "agent": "worker", "input": { "op": "spin" } }] });
        let (status, spinner) = create(&ctl, &alice, "spinner", spin).await;
        assert_eq!(status, StatusCode::CREATED, "{spinner}");
        let spinning = start(&ctl, &alice, &s(&spinner["id"]), json!({})).await;
        let spinning = s(&spinning["id"]);
        let step_run = eventually("the step to run", Duration::from_secs(30), || async {
            let (_, now) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/workflow-runs/{spinning}"),
                    Some(&alice.access),
                    None,
                )
                .await;
            let run_id = step(&now, "only")["run_id"].as_str()?.to_owned();
            let (_, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/runs/{run_id}"),
                    Some(&alice.access),
                    None,
                )
                .await;
            (run["status"] == "running").then_some(run_id)
        })
        .await;
        let (status, cancelled) = ctl
            .call(
                Method::POST,
                &format!("/v1/workflow-runs/{spinning}/cancel"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{cancelled}");
        let ended = finished_run(&ctl, &alice, &step_run).await;
        assert_eq!(ended["outcome"]["status"], "cancelled", "{ended}");
    }
);

/// Asks the LLM once and returns what it cost.
const ASKER_JS: &str = r#"
import { llm } from "delta";

export function run(task) {
  const c = llm.complete({ model: "default", maxTokens: 100,
                           messages: [{ role: "user", content: "step " + task.input.n }] });
  return { n: task.input.n, tokens: c.usage.inputTokens + c.usage.outputTokens };
}
"#;

both_with!(
    a_workflow_stops_at_its_token_budget_and_a_slow_step_times_out,
    loopback_webhooks,
    |ctl: Control| async move {
        let llm = ScriptedLlm::start().await.expect("llm");
        llm.set_fallback(Reply::ok("an answer", 100, 50));
        let key = ctl.dir.path().join("llm-key");
        std::fs::write(&key, "sk-workflows").expect("llm key");
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
max_retries = 0
"#,
            base = llm.base_url(),
            key = key.display(),
        );
        let _node = start_node_in_process(&ctl, "wf-llm-node", &extra).await;
        let alice = ctl.register("alice").await;
        let (_, hook_hits, _) = workflow_hooks(&ctl, &alice).await;
        let (status, component) = upload_script(&ctl, &alice.access, ASKER_JS).await;
        assert!(status.is_success(), "{status} {component}");
        post_agent(
            &ctl,
            &alice,
            json!({ "name": "asker", "kind": "main", "component": component["sha256"],
                    "grants": { "models": ["default"] }, "budget": 5000 }),
        )
        .await;

        // 150 tokens a step: the first stays within 200, the second passes
        // it, so the third never starts.
        let (status, wf) = create(
            &ctl,
            &alice,
            "budgeted",
            json!({ "steps": [
                { "id": "one", "agent": "asker", "input": { "n": 1 } },
                { "id": "two", "agent": "asker", "after": ["one"], "input": { "n": 2 } },
                { "id": "three", "agent": "asker", "after": ["two"], "input": { "n": 3 } },
            ], "token_budget": 200 }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{wf}");
        let started = start(&ctl, &alice, &s(&wf["id"]), json!({})).await;
        let run = ended(&ctl, &alice, &s(&started["id"])).await;
        assert_eq!(
            (&run["status"], &run["error"]),
            (&json!("failed"), &json!("token_budget_exceeded")),
            "{run}"
        );
        assert_eq!(run["tokens_used"], 300, "{run}");
        assert_eq!(
            step(&run, "two")["output"],
            json!({ "n": 2, "tokens": 150 })
        );
        assert_eq!(step(&run, "three")["status"], "cancelled", "{run}");
        assert!(
            step(&run, "three")["run_id"].is_null(),
            "three never started"
        );
        assert_eq!(llm.request_count(), 2, "two LLM calls, no third");

        // A step whose LLM answers after 8 s fails at its 1 s timeout,
        // retried once (two attempts); had a run ended first, the step
        // would have completed.
        llm.push_all([
            Reply::slow(Duration::from_secs(8), Reply::ok("late", 1, 1)),
            Reply::slow(Duration::from_secs(8), Reply::ok("late", 1, 1)),
        ]);
        let (status, wf) = create(
            &ctl,
            &alice,
            "impatient",
            json!({ "steps": [
                { "id": "slow", "agent": "asker", "input": { "n": 4 }, "timeout_ms": 1000,
                  "retries": 1 },
            ] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{wf}");
        let started = start(&ctl, &alice, &s(&wf["id"]), json!({})).await;
        let run = ended(&ctl, &alice, &s(&started["id"])).await;
        assert_eq!(run["status"], "failed", "{run}");
        let error = run["error"].as_str().expect("error");
        assert!(
            error.starts_with("step slow failed") && error.contains("timeout"),
            "{error}"
        );
        assert_eq!(step(&run, "slow")["attempts"], 2, "{run}");
        // The timed-out attempt was stopped on its node, not left to run on
        // until its LLM answered (8 s on, which would have completed it).
        let last = s(&step(&run, "slow")["run_id"]);
        let stopped = finished_run(&ctl, &alice, &last).await;
        assert_eq!(stopped["outcome"]["status"], "cancelled", "{stopped}");

        // Two result webhooks, workflow.failed, with the runs' errors.
        let hooks = ended_hooks(&hook_hits, 2).await;
        let errors: Vec<(Value, Value)> = hooks
            .iter()
            .map(|h| {
                let b = h.json();
                (b["type"].clone(), b["data"]["error"].clone())
            })
            .collect();
        assert_eq!(
            errors[0],
            (json!("workflow.failed"), json!("token_budget_exceeded"))
        );
        assert_eq!(errors[1].0, "workflow.failed");
        assert_eq!(errors[1].1, run["error"]);
    }
);

/// On PostgreSQL `step_ended` first reads which step waits for the run,
/// then locks the workflow: a commit in between that moved the step on
/// (its attempt timed out and the next started; here a trigger on the
/// lock's statement makes that change) must leave the step to its new
/// attempt, not complete it with the stale attempt's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ending_after_its_step_moved_on_changes_nothing() {
    use delta_control::webhooks::RunEnd;
    use delta_control::workflows::engine::step_ended;
    let ctl = Control::start(crate::common::Dialect::Postgres).await;
    let db = &ctl.state.db;
    let now = delta_control::db::now_ms();
    for (sql, what) in [
        (
            "INSERT INTO workflow_runs (id, tenant_id, workflow_id, definition, input, status, \
             created_at_ms) VALUES ('wfr_race', 'ten_race', 'wf_race', \
             '{\"steps\":[{\"id\":\"s\",\"agent\":\"x\",\"retries\":1}]}', '{}', 'running', 1)",
            "workflow run",
        ),
        (
            "INSERT INTO workflow_steps (workflow_run_id, step_id, tenant_id, status, attempts, \
             run_id, started_at_ms) VALUES ('wfr_race', 's', 'ten_race', 'running', 1, \
             'run_first', 1)",
            "step",
        ),
        (
            "CREATE FUNCTION race_step_moved() RETURNS trigger AS $$ BEGIN \
             UPDATE workflow_steps SET run_id = 'run_second', attempts = 2 \
             WHERE workflow_run_id = 'wfr_race' AND run_id = 'run_first'; RETURN NULL; END $$ \
             LANGUAGE plpgsql",
            "function",
        ),
        (
            "CREATE TRIGGER race_step_moved AFTER UPDATE ON workflow_runs \
             FOR EACH STATEMENT EXECUTE FUNCTION race_step_moved()",
            "trigger",
        ),
    ] {
        sqlx::query(sql).execute(db.pool()).await.expect(what);
    }
    let outcome = json!({ "status": "completed", "output": "{\"stale\":true}" });
    let mut tx = db.begin().await.expect("begin");
    step_ended(
        &mut tx,
        "ten_race",
        "run_first",
        &RunEnd::Finished(Some(&outcome)),
        now,
    )
    .await
    .expect("step_ended");
    tx.commit().await.expect("commit");
    let (status, run_id, attempts, output): (String, String, i64, Option<String>) = sqlx::query_as(
        "SELECT status, run_id, attempts, output FROM workflow_steps \
             WHERE workflow_run_id = 'wfr_race' AND step_id = 's'",
    )
    .fetch_one(db.pool())
    .await
    .expect("step");
    assert_eq!(
        (status.as_str(), run_id.as_str(), attempts, output),
        ("running", "run_second", 2, None),
        "the step waits for its second attempt"
    );
    let wf: String = sqlx::query_scalar("SELECT status FROM workflow_runs WHERE id = 'wfr_race'")
        .fetch_one(db.pool())
        .await
        .expect("workflow run");
    assert_eq!(wf, "running");
}
