//! Messages between agents (`delta:agent/agents`) from a real guest
//! (`examples/agent-relay`) on an in-process node: a message starts one run
//! of the receiver, with the message and its sender as input; the grant,
//! the tenant, the size and the chain's depth are enforced; a sender run
//! delivered again starts nothing new; a receiver no node takes is
//! dead-lettered like any queued run.

use std::time::Duration;

use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{finished_run, runs_of, s};
use crate::common::{Control, Session, create_agent, eventually, start_node_in_process};
use crate::{both, both_with};

fn relay() -> Vec<u8> {
    std::fs::read(guests::AGENT_RELAY).expect("agent-relay guest")
}

/// Run `agent` with `input` to its end: the run (asserted completed) and
/// its output.
async fn run_to_end(ctl: &Control, who: &Session, agent: &str, input: Value) -> (Value, Value) {
    let (status, run) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{agent}/runs?wait=true"),
            Some(&who.access),
            Some(json!({ "input": input })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"]["status"], "completed", "{run}");
    let output = serde_json::from_str(run["outcome"]["output"].as_str().expect("output"))
        .expect("output JSON");
    (run, output)
}

/// The page of `who`'s agent messages matching `query`.
async fn messages(ctl: &Control, who: &Session, query: &str) -> Vec<Value> {
    let (status, page) = ctl
        .call(
            Method::GET,
            &format!("/v1/agent-messages{query}"),
            Some(&who.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

both!(
    a_message_starts_one_run_of_its_receiver_and_only_granted_agents_of_the_tenant_are_reached,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "relay-node", "").await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let bobs = create_agent(&ctl, &bob.access, "receiver", &relay(), json!({})).await;
        let bobs = s(&bobs["id"]);
        let receiver = create_agent(&ctl, &alice.access, "receiver", &relay(), json!({})).await;
        let receiver = s(&receiver["id"]);
        // The grant names the receiver, a name that is no agent, and bob's
        // agent (by its id: it is not in alice's tenant).
        let sender = create_agent(
            &ctl,
            &alice.access,
            "sender",
            &relay(),
            json!({ "agents": ["receiver", "ghost", &bobs] }),
        )
        .await;
        let sender = s(&sender["id"]);
        let (run, out) = run_to_end(
            &ctl,
            &alice,
            &sender,
            json!({ "send": [
                { "to": "receiver", "message": { "hello": 1 } },
                { "to": "stranger", "message": {} },
                { "to": "ghost", "message": {} },
                { "to": &bobs, "message": {} },
                { "to": &sender, "message": {} },
            ] }),
        )
        .await;
        let sent = out["sent"].as_array().expect("sent");
        assert!(sent[0]["message_id"].is_string(), "{out}");
        assert_eq!(sent[1], json!({ "error": "not-allowed" }));
        assert_eq!(sent[2], json!({ "error": "unknown-agent" }));
        assert_eq!(
            sent[3],
            json!({ "error": "unknown-agent" }),
            "another tenant's agent"
        );
        assert_eq!(
            sent[4],
            json!({ "error": "not-allowed" }),
            "not granted itself"
        );
        assert_eq!(
            run["usage"]["agent_messages"],
            json!({ "sent": 1, "refused": 4, "bytes": 11 }),
            "{run}"
        );

        let received = finished_run(&ctl, &alice, &s(&sent[0]["run_id"])).await;
        assert_eq!(received["agent_id"], receiver.as_str());
        assert_eq!(
            received["trigger"],
            json!({ "kind": "agent", "id": sent[0]["message_id"] })
        );
        let answer: Value =
            serde_json::from_str(received["outcome"]["output"].as_str().expect("output"))
                .expect("JSON");
        assert_eq!(
            answer,
            json!({ "received": { "hello": 1 }, "message_id": sent[0]["message_id"],
                    "from": "sender", "forwarded": null })
        );
        let listed = messages(&ctl, &alice, &format!("?to_agent_id={receiver}")).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["from_run_id"], run["id"]);
        assert_eq!(listed[0]["depth"], 1);
        // Bob sees none of it, and his agent never ran.
        assert!(messages(&ctl, &bob, "").await.is_empty());
        assert_eq!(runs_of(&ctl, &bobs).await, 0);
        // Both filters: the messages from one agent to the other.
        let sender = listed[0]["from_agent_id"].as_str().expect("from_agent_id");
        let between = messages(
            &ctl,
            &alice,
            &format!("?from_agent_id={sender}&to_agent_id={receiver}"),
        )
        .await;
        assert_eq!(between.len(), 1, "{between:?}");
        let reversed = messages(
            &ctl,
            &alice,
            &format!("?from_agent_id={receiver}&to_agent_id={sender}"),
        )
        .await;
        assert!(reversed.is_empty(), "{reversed:?}");
    }
);

both!(
    a_sender_run_delivered_again_starts_nothing_new_and_other_nodes_cannot_speak_for_it,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "relay-node", "").await;
        let alice = ctl.register("alice").await;
        let receiver = create_agent(&ctl, &alice.access, "receiver", &relay(), json!({})).await;
        let receiver = s(&receiver["id"]);
        let sender = create_agent(
            &ctl,
            &alice.access,
            "sender",
            &relay(),
            json!({ "agents": ["receiver"] }),
        )
        .await;
        let sender = s(&sender["id"]);
        let (run, out) = run_to_end(
            &ctl,
            &alice,
            &sender,
            json!({ "send": [{ "to": "receiver", "message": { "n": 1 } }] }),
        )
        .await;
        let first = &out["sent"][0];
        finished_run(&ctl, &alice, &s(&first["run_id"])).await;
        // What the node sends when the same run is delivered again: the
        // same run id and position.
        let again = json!({ "agent_id": &sender, "run_id": run["id"], "seq": 0,
                            "to": "receiver", "message": "{\"n\": 1}" });
        let node = ctl.node_credential("relay-node").await;
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/nodes/messages",
                Some(&node),
                Some(again.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["message_id"], first["message_id"]);
        assert_eq!(answer["run_id"], first["run_id"]);
        assert_eq!(runs_of(&ctl, &receiver).await, 1, "one run per message");
        // Another node's credential cannot send as an agent it does not host.
        let other = ctl.node_credential("other-node").await;
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/nodes/messages",
                Some(&other),
                Some(again),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "agent_not_here");
        // Nor may a node pass off another agent's run as this sender's.
        let theirs = json!({ "agent_id": &sender, "run_id": first["run_id"], "seq": 0,
                             "to": "receiver", "message": "{}" });
        let (status, answer) = ctl
            .call(
                Method::POST,
                "/v1/nodes/messages",
                Some(&node),
                Some(theirs),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "run_not_of_agent");
        // Bad messages are refused as such, and start nothing.
        for (message, code, want) in [
            (
                "not json",
                "invalid_message",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                &*format!("\"{}\"", "x".repeat(70_000)),
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ] {
            let body = json!({ "agent_id": &sender, "run_id": run["id"], "seq": 1,
                               "to": "receiver", "message": message });
            let (status, answer) = ctl
                .call(Method::POST, "/v1/nodes/messages", Some(&node), Some(body))
                .await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (want, Some(code)),
                "{answer}"
            );
        }
        let body = json!({ "agent_id": &sender, "run_id": run["id"], "seq": 100,
                           "to": "receiver", "message": "{}" });
        let (status, answer) = ctl
            .call(Method::POST, "/v1/nodes/messages", Some(&node), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["code"], "too_many");
        assert_eq!(runs_of(&ctl, &receiver).await, 1);
    }
);

both_with!(
    a_chain_of_messages_stops_at_its_depth_limit,
    |c: &mut delta_control::config::ControlConfig| c.agent_messages.max_depth = 3,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "relay-node", "").await;
        let alice = ctl.register("alice").await;
        // An agent that forwards every message to itself.
        let echo = create_agent(
            &ctl,
            &alice.access,
            "echo",
            &relay(),
            json!({ "agents": ["echo"] }),
        )
        .await;
        let echo = s(&echo["id"]);
        let (_, out) = run_to_end(
            &ctl,
            &alice,
            &echo,
            json!({ "send": [{ "to": "echo", "message": { "forward_to": "echo" } }] }),
        )
        .await;
        // Depth 1 (sent above), 2 and 3 are delivered; the run of depth 3
        // may not send on.
        let mut run_id = s(&out["sent"][0]["run_id"]);
        for depth in 1..=3 {
            let run = finished_run(&ctl, &alice, &run_id).await;
            let answer: Value =
                serde_json::from_str(run["outcome"]["output"].as_str().expect("output"))
                    .expect("JSON");
            if depth < 3 {
                run_id = s(&answer["forwarded"]["run_id"]);
            } else {
                assert_eq!(
                    answer["forwarded"],
                    json!({ "error": "too-deep" }),
                    "{answer}"
                );
            }
        }
        let chain = messages(&ctl, &alice, "").await;
        let depths: Vec<i64> = chain.iter().filter_map(|m| m["depth"].as_i64()).collect();
        assert_eq!(depths, vec![1, 2, 3]);
        assert_eq!(
            runs_of(&ctl, &echo).await,
            4,
            "the first run and three messages"
        );
    }
);

both_with!(
    a_message_to_a_paused_agent_is_retried_then_dead_lettered,
    |c: &mut delta_control::config::ControlConfig| {
        c.runs.max_deliveries = 2;
        c.runs.retry_base_ms = 50;
        c.runs.retry_max_ms = 100;
        c.runs.poll_ms = 50;
    },
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "relay-node", "").await;
        let alice = ctl.register("alice").await;
        let receiver = create_agent(&ctl, &alice.access, "receiver", &relay(), json!({})).await;
        let receiver = s(&receiver["id"]);
        let (status, paused) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{receiver}/pause"),
                Some(&alice.access),
                None,
            )
            .await;
        assert!(status.is_success(), "{status} {paused}");
        let sender = create_agent(
            &ctl,
            &alice.access,
            "sender",
            &relay(),
            json!({ "agents": [&receiver] }),
        )
        .await;
        let (_, out) = run_to_end(
            &ctl,
            &alice,
            &s(&sender["id"]),
            json!({ "send": [{ "to": &receiver, "message": [1, 2] }] }),
        )
        .await;
        let run_id = s(&out["sent"][0]["run_id"]);
        let dead = eventually(
            "the message's run to be dead",
            Duration::from_secs(30),
            || async {
                let (_, run) = ctl
                    .call(
                        Method::GET,
                        &format!("/v1/runs/{run_id}"),
                        Some(&alice.access),
                        None,
                    )
                    .await;
                (run["status"] == "dead").then_some(run)
            },
        )
        .await;
        assert_eq!(dead["deliveries"], 2, "{dead}");
        // Resumed and retried, it runs with the message it carried.
        let (status, _) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{receiver}/resume"),
                Some(&alice.access),
                None,
            )
            .await;
        assert!(status.is_success(), "{status}");
        let (status, retried) = ctl
            .call(
                Method::POST,
                &format!("/v1/runs/{run_id}/retry"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
        let run = finished_run(&ctl, &alice, &run_id).await;
        let answer: Value =
            serde_json::from_str(run["outcome"]["output"].as_str().expect("output")).expect("JSON");
        assert_eq!(answer["received"], json!([1, 2]));
    }
);
