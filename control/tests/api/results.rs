//! Result webhooks (issue 14) over real HTTP, on SQLite and PostgreSQL,
//! with real in-process nodes: a receiver on loopback gets a signed
//! `run.completed` (with the output) for a run that returns and a
//! `run.failed` (with the error) for one that traps; an endpoint's
//! `agent_ids` and `trigger_ids` keep other runs' events away; another
//! tenant cannot name your agents or triggers in its filter; a run
//! re-queued after its node was lost, and finished on another, is one
//! event; a run no node takes fails as `dead`, and its retry's end is an
//! event of its own.

use crate::common;

use std::time::Duration;

use common::bounties::create_agent;
use common::webhooks::{Hit, hits, receiver, signed};
use common::{Control, Session, eventually, start_node_in, start_node_in_process, upload_script};
use delta_control::config::ControlConfig;
use delta_control::db::now_ms;
use delta_control::triggers::signature::sign;
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Answers its input and the run id it was handed.
const ECHO_JS: &str =
    "export function run(task) { return { input: task.input, runId: task.runId }; }\n";

/// A node with one execution slot: a slow run keeps the others queued.
const ONE_SLOT: &str = "[scheduler]\nconcurrency = 1\nper_tenant_concurrency = 1\n";

fn loopback(c: &mut ControlConfig) {
    c.allow_private_webhook_urls = true;
    c.webhook_retry_base_ms = 300;
}

/// Loopback receivers, and a node declared lost in seconds with quick
/// re-deliveries, `max_deliveries` of them.
fn loopback_and_fast_requeue(max_deliveries: u32) -> impl FnOnce(&mut ControlConfig) {
    move |c: &mut ControlConfig| {
        loopback(c);
        c.node_heartbeat_timeout_secs = 3;
        c.runs.max_deliveries = max_deliveries;
        c.runs.retry_base_ms = 100;
        c.runs.retry_max_ms = 1_000;
        c.runs.poll_ms = 100;
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

async fn call(
    ctl: &Control,
    who: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    ctl.call(method, path, Some(&who.access), body).await
}

/// Register an endpoint for the run events: (status, answer).
async fn endpoint(ctl: &Control, who: &Session, url: &str, filter: Value) -> (StatusCode, Value) {
    let mut body = json!({ "url": url, "event_types": ["run.completed", "run.failed"] });
    if let (Some(b), Some(f)) = (body.as_object_mut(), filter.as_object()) {
        b.extend(f.clone());
    }
    call(ctl, who, Method::POST, "/v1/webhook-endpoints", Some(body)).await
}

/// Submit a run (202): its id.
async fn submit(ctl: &Control, who: &Session, agent: &str, input: Value) -> String {
    let (status, body) = call(
        ctl,
        who,
        Method::POST,
        &format!("/v1/agents/{agent}/runs"),
        Some(json!({ "input": input })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    s(&body["id"])
}

/// The run once it is `finished`.
async fn finished(ctl: &Control, who: &Session, id: &str) -> Value {
    eventually(
        &format!("run {id} to finish"),
        Duration::from_secs(60),
        || async {
            let (_, run) = call(ctl, who, Method::GET, &format!("/v1/runs/{id}"), None).await;
            (run["status"] == "finished").then_some(run)
        },
    )
    .await
}

/// The events `hits` holds about run `id`.
fn about(received: &[Hit], id: &str) -> Vec<Value> {
    received
        .iter()
        .map(Hit::json)
        .filter(|b| b["data"]["run_id"] == id)
        .collect()
}

/// The tenant's deliveries (all statuses).
async fn deliveries(ctl: &Control, who: &Session) -> Vec<Value> {
    let (status, page) = call(
        ctl,
        who,
        Method::GET,
        "/v1/webhook-deliveries?limit=200",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Upload a guest artifact and create an agent of it.
async fn wasm_agent(ctl: &Control, who: &Session, name: &str, path: &str) -> String {
    let sha = common::bounties::upload(ctl, who, &std::fs::read(path).expect("guest")).await;
    create_agent(ctl, who, name, &sha).await
}

async fn js_agent(ctl: &Control, who: &Session, name: &str) -> String {
    let (status, script) = upload_script(ctl, &who.access, ECHO_JS).await;
    // 200 when the same script was uploaded before.
    assert!(status.is_success(), "{status} {script}");
    create_agent(ctl, who, name, &s(&script["sha256"])).await
}

both_with!(
    a_run_that_returns_and_one_that_traps_arrive_signed,
    loopback,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "results-node", "").await;
        let alice = ctl.register("alice").await;
        let echo = js_agent(&ctl, &alice, "echo").await;
        let panics = wasm_agent(&ctl, &alice, "panics", guests::HOSTILE_PANIC).await;
        let (url, got) = receiver(0).await;
        let (status, ep) = endpoint(&ctl, &alice, &url, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{ep}");
        assert_eq!(ep["agent_ids"], json!([]), "{ep}");
        let secret = s(&ep["secret"]);

        let ok = submit(&ctl, &alice, &echo, json!({ "answer": 42 })).await;
        let bad = submit(&ctl, &alice, &panics, json!({})).await;
        let received = eventually("two result events", Duration::from_secs(60), || async {
            let h = hits(&got);
            (!about(&h, &ok).is_empty() && !about(&h, &bad).is_empty()).then_some(h)
        })
        .await;
        for hit in &received {
            assert!(signed(&secret, &hit.headers, &hit.body), "a bad signature");
        }

        let completed = about(&received, &ok);
        assert_eq!(completed.len(), 1, "{completed:?}");
        let c = &completed[0];
        assert_eq!(c["type"], "run.completed", "{c}");
        let d = &c["data"];
        assert_eq!(d["agent_id"], echo.as_str(), "{c}");
        assert_eq!(d["status"], "finished", "{c}");
        assert_eq!(d["outcome"], "completed", "{c}");
        assert_eq!(
            d["output"],
            json!({ "input": { "answer": 42 }, "runId": ok }),
            "{c}"
        );
        assert!(d.get("error").is_none(), "{c}");
        assert_eq!(d["trigger"], json!({ "kind": "api", "id": null }), "{c}");
        assert!(
            d["usage"]["fuel_used"].as_u64().is_some_and(|f| f > 0),
            "{c}"
        );
        assert!(d["usage"].get("message_log").is_none(), "{c}");
        assert!(d["created_at_ms"].as_i64().is_some(), "{c}");
        assert!(d["finished_at_ms"].as_i64().is_some(), "{c}");
        // One message per run, named after it: a receiver deduplicates by it.
        let hit = received
            .iter()
            .find(|h| h.json()["data"]["run_id"] == ok.as_str())
            .expect("hit");
        assert_eq!(
            hit.headers["webhook-id"].to_str().ok(),
            Some(format!("msg_{ok}").as_str())
        );

        let failed = about(&received, &bad);
        assert_eq!(failed.len(), 1, "{failed:?}");
        let f = &failed[0];
        assert_eq!(f["type"], "run.failed", "{f}");
        assert_eq!(f["data"]["agent_id"], panics.as_str(), "{f}");
        assert_ne!(f["data"]["outcome"], "completed", "{f}");
        assert_eq!(f["data"]["error"]["code"], f["data"]["outcome"], "{f}");
        assert!(f["data"].get("output").is_none(), "{f}");

        // The stored run keeps no output (the usage it shows has no result).
        let run = finished(&ctl, &alice, &ok).await;
        assert!(run["usage"].get("result").is_none(), "{run}");
        assert_eq!(run["trigger"]["kind"], "api", "{run}");
    }
);

both_with!(
    filters_keep_other_agents_and_triggers_runs_away,
    loopback,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "results-node", "").await;
        let alice = ctl.register("alice").await;
        let mine = js_agent(&ctl, &alice, "mine").await;
        let other = js_agent(&ctl, &alice, "other").await;
        let (hook_status, hook) = call(
            &ctl,
            &alice,
            Method::POST,
            &format!("/v1/agents/{mine}/webhooks"),
            None,
        )
        .await;
        assert_eq!(hook_status, StatusCode::CREATED, "{hook}");
        let (hook_id, hook_secret) = (s(&hook["id"]), s(&hook["secret"]));

        let (by_agent_url, by_agent) = receiver(0).await;
        let (status, ep) = endpoint(
            &ctl,
            &alice,
            &by_agent_url,
            json!({ "agent_ids": [mine, mine] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{ep}");
        // Named twice, kept once; the listing shows the filter.
        assert_eq!(ep["agent_ids"], json!([mine]), "{ep}");
        let (_, list) = call(&ctl, &alice, Method::GET, "/v1/webhook-endpoints", None).await;
        assert_eq!(list["items"][0]["agent_ids"], json!([mine]), "{list}");
        let (by_trigger_url, by_trigger) = receiver(0).await;
        let (status, ep) = endpoint(
            &ctl,
            &alice,
            &by_trigger_url,
            json!({ "trigger_ids": [hook_id] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{ep}");

        // The other agent's run first, finished before the others start.
        let theirs = submit(&ctl, &alice, &other, json!({})).await;
        finished(&ctl, &alice, &theirs).await;
        let by_api = submit(&ctl, &alice, &mine, json!({ "via": "api" })).await;
        // A signed delivery to the inbound webhook starts a run of `mine`.
        let body = br#"{"via":"hook"}"#;
        let t = now_ms() / 1000;
        let resp = ctl
            .client
            .post(ctl.url(&format!("/v1/hooks/{hook_id}")))
            .header("content-type", "application/json")
            .header(
                "x-delta-signature",
                format!("t={t},v1={}", sign(&hook_secret, t, body)),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("deliver");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let accepted: Value = resp.json().await.expect("json");
        let by_hook = s(&accepted["run_id"]);
        assert!(by_hook.starts_with("run_"), "{accepted}");

        let agent_hits = eventually("mine's two events", Duration::from_secs(60), || async {
            let h = hits(&by_agent);
            (!about(&h, &by_api).is_empty() && !about(&h, &by_hook).is_empty()).then_some(h)
        })
        .await;
        let trigger_hits = eventually("the hook run's event", Duration::from_secs(60), || async {
            let h = hits(&by_trigger);
            (!about(&h, &by_hook).is_empty()).then_some(h)
        })
        .await;
        let hook_event = &about(&trigger_hits, &by_hook)[0];
        assert_eq!(
            hook_event["data"]["trigger"],
            json!({ "kind": "webhook", "id": hook_id }),
            "{hook_event}"
        );
        assert_eq!(
            hook_event["data"]["output"]["input"]["webhook"]["body"],
            json!({ "via": "hook" }),
            "{hook_event}"
        );
        // Every delivery row is written with the run's end: the other
        // agent's finished run has none, for either endpoint, and the API
        // run none for the trigger's endpoint.
        let rows = eventually(
            "mine's deliveries recorded",
            Duration::from_secs(30),
            || async {
                let d = deliveries(&ctl, &alice).await;
                (d.len() >= 3).then_some(d)
            },
        )
        .await;
        let messages: Vec<String> = rows.iter().map(|d| s(&d["message_id"])).collect();
        assert!(!messages.contains(&format!("msg_{theirs}")), "{rows:?}");
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(about(&agent_hits, &theirs).is_empty());
        assert!(about(&trigger_hits, &theirs).is_empty());
        assert!(about(&trigger_hits, &by_api).is_empty());
    }
);

both_with!(
    another_tenant_cannot_name_your_agents_or_triggers,
    loopback,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "results-node", "").await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let agent = js_agent(&ctl, &alice, "echo").await;
        let (_, hook) = call(
            &ctl,
            &alice,
            Method::POST,
            &format!("/v1/agents/{agent}/webhooks"),
            None,
        )
        .await;
        let hook_id = s(&hook["id"]);
        let (url, _) = receiver(0).await;

        // Alice's ids and ids that exist nowhere are answered alike.
        for (filter, code) in [
            (json!({ "agent_ids": [agent] }), "unknown_agent"),
            (json!({ "agent_ids": ["agt_nothing"] }), "unknown_agent"),
            (json!({ "trigger_ids": [hook_id] }), "unknown_trigger"),
            (json!({ "trigger_ids": ["sch_nothing"] }), "unknown_trigger"),
            (json!({ "agent_ids": [""] }), "invalid_filter"),
        ] {
            let (status, body) = endpoint(&ctl, &bob, &url, filter.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{filter}: {body}");
            assert_eq!(body["code"], code, "{filter}: {body}");
        }
        let (_, list) = call(&ctl, &bob, Method::GET, "/v1/webhook-endpoints", None).await;
        assert_eq!(list["items"], json!([]), "{list}");

        // Bob's own endpoint with no filter never sees Alice's runs.
        let (bob_url, bob_got) = receiver(0).await;
        let (status, _) = endpoint(&ctl, &bob, &bob_url, json!({})).await;
        assert_eq!(status, StatusCode::CREATED);
        let run = submit(&ctl, &alice, &agent, json!({})).await;
        finished(&ctl, &alice, &run).await;
        assert!(deliveries(&ctl, &bob).await.is_empty());
        assert!(hits(&bob_got).is_empty());
    }
);

both_with!(
    a_run_requeued_after_its_node_was_lost_is_one_event,
    loopback_and_fast_requeue(10),
    |ctl: Control| async move {
        let a = start_node_in(&ctl, "node-a", "node-a", ONE_SLOT).await;
        let alice = ctl.register("alice").await;
        let echo = js_agent(&ctl, &alice, "echo").await;
        let slow = wasm_agent(&ctl, &alice, "slow", guests::SLOW_LOGGER).await;
        let _b = start_node_in(&ctl, "node-b", "node-b", "").await;
        let (url, got) = receiver(0).await;
        let (status, _) = endpoint(&ctl, &alice, &url, json!({})).await;
        assert_eq!(status, StatusCode::CREATED);

        // The slow run takes node A's only slot; the echo run waits behind
        // it. A is lost; both finish on B.
        let running = submit(
            &ctl,
            &alice,
            &slow,
            json!({ "lines": 20, "interval_ms": 100 }),
        )
        .await;
        eventually("the slow run to start", Duration::from_secs(30), || async {
            let (_, run) = call(
                &ctl,
                &alice,
                Method::GET,
                &format!("/v1/runs/{running}"),
                None,
            )
            .await;
            (run["status"] == "running").then_some(())
        })
        .await;
        let queued = submit(&ctl, &alice, &echo, json!({})).await;
        common::held_by(&a, &[&queued]).await;
        a.kill().await;

        for id in [&queued, &running] {
            // Polled meanwhile: the node's answer and its usage report race
            // to finish the run; one of them does.
            let run = finished(&ctl, &alice, id).await;
            assert_eq!(run["node_id"], "node-b", "{run}");
        }
        let received = eventually("both runs' events", Duration::from_secs(60), || async {
            let h = hits(&got);
            (!about(&h, &queued).is_empty() && !about(&h, &running).is_empty()).then_some(h)
        })
        .await;
        // Time for a second event, were one queued.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let received = if hits(&got).len() > received.len() {
            hits(&got)
        } else {
            received
        };
        for id in [&queued, &running] {
            let events = about(&received, id);
            assert_eq!(events.len(), 1, "{id}: {events:?}");
            assert_eq!(events[0]["type"], "run.completed", "{events:?}");
            assert_eq!(events[0]["data"]["node_id"], "node-b", "{events:?}");
            assert!(
                events[0]["data"]["deliveries"]
                    .as_i64()
                    .is_some_and(|n| n >= 2),
                "{events:?}"
            );
        }
        let rows = deliveries(&ctl, &alice).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
    }
);

both_with!(
    a_dead_run_fails_and_its_retry_completes,
    loopback_and_fast_requeue(3),
    |ctl: Control| async move {
        let a = start_node_in(&ctl, "node-a", "node-a", ONE_SLOT).await;
        let alice = ctl.register("alice").await;
        let slow = wasm_agent(&ctl, &alice, "slow", guests::SLOW_LOGGER).await;
        let (url, got) = receiver(0).await;
        let (status, _) = endpoint(&ctl, &alice, &url, json!({ "agent_ids": [slow] })).await;
        assert_eq!(status, StatusCode::CREATED);
        let _first = submit(
            &ctl,
            &alice,
            &slow,
            json!({ "lines": 40, "interval_ms": 100 }),
        )
        .await;
        let second = submit(
            &ctl,
            &alice,
            &slow,
            json!({ "lines": 2, "interval_ms": 50 }),
        )
        .await;
        a.kill().await;

        // No node is up: delivered 3 times, then dead, and told so.
        let dead = eventually("the dead run's event", Duration::from_secs(60), || async {
            let events = about(&hits(&got), &second);
            (!events.is_empty()).then_some(events)
        })
        .await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        let d = &dead[0];
        assert_eq!(d["type"], "run.failed", "{d}");
        assert_eq!(d["data"]["status"], "dead", "{d}");
        assert_eq!(d["data"]["outcome"], "dead", "{d}");
        assert_eq!(d["data"]["error"]["code"], "undeliverable", "{d}");
        assert!(
            s(&d["data"]["error"]["message"]).starts_with("node_unavailable"),
            "{d}"
        );
        assert_eq!(d["data"]["deliveries"], 3, "{d}");
        let (_, run) = call(
            &ctl,
            &alice,
            Method::GET,
            &format!("/v1/runs/{second}"),
            None,
        )
        .await;
        assert_eq!(run["status"], "dead", "{run}");

        // A node comes back; the retried run finishes: a second end, a
        // second event (with its own webhook-id).
        let b = start_node_in(&ctl, "node-b", "node-b", "").await;
        eventually("the agent to move", Duration::from_secs(30), || async {
            let (_, agent) = call(
                &ctl,
                &alice,
                Method::GET,
                &format!("/v1/agents/{slow}"),
                None,
            )
            .await;
            (agent["node_id"] == "node-b").then_some(())
        })
        .await;
        let (status, body) = call(
            &ctl,
            &alice,
            Method::POST,
            &format!("/v1/runs/{second}/retry"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let received = eventually("the retry's event", Duration::from_secs(60), || async {
            let h = hits(&got);
            (about(&h, &second).len() >= 2).then_some(h)
        })
        .await;
        let ids: Vec<String> = received
            .iter()
            .filter(|h| h.json()["data"]["run_id"] == second.as_str())
            .map(|h| {
                h.headers["webhook-id"]
                    .to_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert!(
            ids[0].starts_with(&format!("msg_{second}_dead_")),
            "{ids:?}"
        );
        assert_eq!(ids[1], format!("msg_{second}"), "{ids:?}");
        let events = about(&received, &second);
        assert_eq!(events[1]["type"], "run.completed", "{events:?}");
        assert_eq!(events[1]["data"]["node_id"], "node-b", "{events:?}");
        b.shutdown().await;
    }
);

/// Answers an output of about 20 KiB, over what a usage record carries.
const BIG_JS: &str = "export function run(task) { return { big: \"x\".repeat(20000) }; }\n";

both_with!(
    an_output_over_16_kib_is_left_out_of_the_event,
    loopback,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "results-node", "").await;
        let alice = ctl.register("alice").await;
        let (status, script) = upload_script(&ctl, &alice.access, BIG_JS).await;
        assert!(status.is_success(), "{status} {script}");
        let big = create_agent(&ctl, &alice, "big", &s(&script["sha256"])).await;
        let (url, got) = receiver(0).await;
        let (status, _) = endpoint(&ctl, &alice, &url, json!({})).await;
        assert_eq!(status, StatusCode::CREATED);

        // Not polled: the usage report is what finishes it.
        let id = submit(&ctl, &alice, &big, json!({})).await;
        let events = eventually("the run's event", Duration::from_secs(60), || async {
            let events = about(&hits(&got), &id);
            (!events.is_empty()).then_some(events)
        })
        .await;
        let d = &events[0]["data"];
        assert_eq!(events[0]["type"], "run.completed", "{d}");
        assert_eq!(d["outcome"], "completed", "{d}");
        assert_eq!(d["output_omitted"], true, "{d}");
        assert!(d.get("output").is_none(), "{d}");
        // The run has it, from its node.
        let run = finished(&ctl, &alice, &id).await;
        assert!(
            s(&run["outcome"]["output"]).len() > 16 * 1024,
            "{}",
            run["outcome"]
        );
    }
);
