//! `kv` from a real guest (`examples/kv-counter`) on in-process nodes: the
//! state lives in the control plane, so it survives the agent's move to
//! another node; compare-and-swap loses no update under concurrent runs;
//! quotas, value bounds and the grant are enforced.

use std::time::Duration;

use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_with;
use crate::common::{Control, create_agent, eventually, start_node_in};

/// More slots than the defaults, so that runs of one agent really overlap.
const WIDE: &str = "[scheduler]\nconcurrency = 8\nper_tenant_concurrency = 8\n";

fn counter() -> Vec<u8> {
    std::fs::read(guests::KV_COUNTER).expect("kv-counter guest")
}

/// Run `agent` to the end: the status and the run.
async fn run(ctl: &Control, token: &str, agent: &str, input: Value) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        &format!("/v1/agents/{agent}/runs?wait=true"),
        Some(token),
        Some(json!({ "input": input })),
    )
    .await
}

/// The run's output, parsed (panics with the run if it did not complete).
fn output(run: &Value) -> Value {
    let out = run["outcome"]["output"]
        .as_str()
        .unwrap_or_else(|| panic!("the run did not complete: {run}"));
    serde_json::from_str(out).expect("output JSON")
}

both_with!(
    a_counter_in_kv_survives_the_agent_s_move_to_another_node,
    |c: &mut delta_control::config::ControlConfig| c.node_heartbeat_timeout_secs = 3,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let node_a = start_node_in(&ctl, "node-a", "node-a", "").await;
        let agent = create_agent(
            &ctl,
            &alice.access,
            "counter",
            &counter(),
            json!({ "kv": true }),
        )
        .await;
        let id = agent["id"].as_str().expect("id").to_owned();
        assert_eq!(agent["node_id"], "node-a");
        for n in 1..=2 {
            let (status, run) = run(&ctl, &alice.access, &id, json!({})).await;
            assert_eq!(status, StatusCode::OK, "{run}");
            assert_eq!(output(&run), json!({ "runs": n }));
            assert_eq!(run["node_id"], "node-a");
        }
        let node_b = start_node_in(&ctl, "node-b", "node-b", "").await;
        node_a.shutdown().await;
        eventually(
            "the agent moved to node-b",
            Duration::from_secs(60),
            || async {
                let (_, agent) = ctl
                    .call(
                        Method::GET,
                        &format!("/v1/agents/{id}"),
                        Some(&alice.access),
                        None,
                    )
                    .await;
                (agent["node_id"] == "node-b").then_some(())
            },
        )
        .await;
        let run3 = eventually("a run on node-b", Duration::from_secs(30), || async {
            let (status, run) = run(&ctl, &alice.access, &id, json!({})).await;
            (status == StatusCode::OK).then_some(run)
        })
        .await;
        assert_eq!(run3["node_id"], "node-b");
        assert_eq!(
            output(&run3),
            json!({ "runs": 3 }),
            "node-b read node-a's writes"
        );
        let (status, value) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{id}/kv/runs"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{value}");
        assert_eq!(value["value"], "3");
        // The run's usage counts its kv calls (one read and one write,
        // without a conflict: nothing ran beside it).
        let usage = &run3["usage"]["kv"];
        assert_eq!(
            (usage["reads"].as_u64(), usage["writes"].as_u64()),
            (Some(1), Some(1)),
            "{run3}"
        );
        drop(node_b);
    }
);

both_with!(
    compare_and_swap_under_concurrent_runs_loses_no_increment,
    |_c: &mut delta_control::config::ControlConfig| {},
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let node = start_node_in(&ctl, "node", "node-a", WIDE).await;
        let agent = create_agent(
            &ctl,
            &alice.access,
            "counter",
            &counter(),
            json!({ "kv": true }),
        )
        .await;
        let id = agent["id"].as_str().expect("id").to_owned();
        const RUNS: u64 = 24;
        let mut tasks = Vec::new();
        let ctl = std::sync::Arc::new(ctl);
        for _ in 0..RUNS {
            let (ctl, token, id) = (
                std::sync::Arc::clone(&ctl),
                alice.access.clone(),
                id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                run(&ctl, &token, &id, json!({})).await
            }));
        }
        let mut seen = Vec::new();
        for t in tasks {
            let (status, run) = t.await.expect("task");
            assert_eq!(status, StatusCode::OK, "{run}");
            seen.push(output(&run)["runs"].as_u64().expect("runs"));
        }
        seen.sort_unstable();
        // Every run got its own number: no two read the same count and
        // both stored it.
        assert_eq!(seen, (1..=RUNS).collect::<Vec<_>>());
        let (_, value) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{id}/kv/runs"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(value["value"], RUNS.to_string());
        drop(node);
    }
);

both_with!(
    quotas_value_bounds_and_the_grant_are_enforced,
    |c: &mut delta_control::config::ControlConfig| {
        c.kv.max_keys = 5;
        c.kv.max_total_bytes = 4_000;
        c.kv.max_value_bytes = 1_000;
    },
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let node = start_node_in(&ctl, "node", "node-a", "").await;
        let bytes = counter();
        let granted =
            create_agent(&ctl, &alice.access, "filler", &bytes, json!({ "kv": true })).await;
        let id = granted["id"].as_str().expect("id").to_owned();
        let fill = |keys: u32, size: usize| json!({ "op": "fill", "keys": keys, "bytes": size });
        let (_, r) = run(&ctl, &alice.access, &id, fill(1, 1_001)).await;
        assert_eq!(output(&r), json!({ "stored": 0, "error": "too-large" }));
        let (_, r) = run(&ctl, &alice.access, &id, fill(10, 10)).await;
        assert_eq!(
            output(&r),
            json!({ "stored": 5, "error": "quota-exceeded" }),
            "5 keys at most"
        );
        // Bytes: 5 keys of 6 bytes plus 900-byte values would be 4,530.
        let (_, r) = run(&ctl, &alice.access, &id, fill(5, 900)).await;
        assert_eq!(
            output(&r),
            json!({ "stored": 4, "error": "quota-exceeded" }),
            "4,000 bytes at most"
        );
        let (_, r) = run(
            &ctl,
            &alice.access,
            &id,
            json!({ "op": "list", "prefix": "fill/" }),
        )
        .await;
        assert_eq!(output(&r)["keys"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            r["usage"]["kv"]["reads"].as_u64(),
            Some(3),
            "3 pages of 2: {r}"
        );

        // Without the grant: a typed error the guest sees, not a trap.
        let denied = create_agent(&ctl, &alice.access, "denied", &bytes, json!({})).await;
        let (status, r) = run(
            &ctl,
            &alice.access,
            denied["id"].as_str().expect("id"),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["outcome"]["status"], "agent-error", "{r}");
        assert_eq!(r["outcome"]["code"], "kv-not-allowed", "{r}");
        drop(node);
    }
);
