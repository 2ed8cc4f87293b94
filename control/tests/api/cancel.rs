//! `POST /v1/runs/{id}/cancel`, over real HTTP with a real in-process node,
//! on SQLite and PostgreSQL: a run running on its node is interrupted and
//! reported `cancelled` with its usage so far; a run still in the run queue
//! ends at once without reaching a node; one being handed to its node is
//! 409 `being_delivered`, one on a node that does not answer 503; an ended
//! run is 409 and another tenant's run 404.

use crate::common;

use std::time::Duration;

use common::bounties::{post_agent, upload};
use common::{Control, Session, eventually, queue_run, start_node_in_process};
use delta_control::db::now_ms;
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Fuel enough for the loop to outlast the test: only the cancel stops it.
const ENDLESS: &str = "[limits]\nmax_fuel = 1000000000000\ndefault_fuel = 1000000000000\n";

async fn call(ctl: &Control, who: &Session, method: Method, path: &str) -> (StatusCode, Value) {
    ctl.call(method, path, Some(&who.access), None).await
}

/// `POST /v1/runs/{run}/cancel` as `who`.
async fn cancel(ctl: &Control, who: &Session, run: &str) -> (StatusCode, Value) {
    call(ctl, who, Method::POST, &format!("/v1/runs/{run}/cancel")).await
}

both!(
    a_run_is_cancelled_on_its_node_or_in_the_queue,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "cancel-node", ENDLESS).await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let looping = upload(
            &ctl,
            &alice,
            &std::fs::read(guests::HOSTILE_LOOP).expect("guest"),
        )
        .await;
        let agent = post_agent(
            &ctl,
            &alice,
            json!({ "name": "spinner", "kind": "main", "component": looping,
                    "limits": { "timeout_ms": 60_000 } }),
        )
        .await;
        let agent = agent["id"].as_str().expect("id").to_owned();

        // Running on its node: interrupted there.
        let (status, accepted) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{agent}/runs"),
                Some(&alice.access),
                Some(json!({ "input": {} })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let run = accepted["id"].as_str().expect("run id").to_owned();
        eventually("the run to start", Duration::from_secs(10), || async {
            let (_, now) = call(&ctl, &alice, Method::GET, &format!("/v1/runs/{run}")).await;
            (now["status"] == "running").then_some(())
        })
        .await;
        // Another tenant cannot touch it.
        let (status, _) = cancel(&ctl, &bob, &run).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, stopping) = cancel(&ctl, &alice, &run).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{stopping}");
        let ended = eventually("the cancelled end", Duration::from_secs(10), || async {
            let (_, now) = call(&ctl, &alice, Method::GET, &format!("/v1/runs/{run}")).await;
            (now["status"] == "finished").then_some(now)
        })
        .await;
        assert_eq!(ended["outcome"]["status"], "cancelled", "{ended}");
        // What it burned until then is charged.
        assert!(
            ended["usage"]["fuel_used"].as_u64().is_some_and(|f| f > 0),
            "{ended}"
        );
        let (status, again) = cancel(&ctl, &alice, &run).await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
        assert_eq!(again["code"], "not_running");

        // Still in the run queue (due in an hour): it ends here and no node
        // ever sees it.
        let queued = "run_0000000000000000000000000000cafe";
        let later = now_ms() + 3_600_000;
        queue_run(&ctl, &alice, &agent, queued, "", "pending", later).await;
        let (status, _) = cancel(&ctl, &bob, queued).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, cancelled) = cancel(&ctl, &alice, queued).await;
        assert_eq!(status, StatusCode::OK, "{cancelled}");
        assert_eq!(cancelled["status"], "finished", "{cancelled}");
        assert_eq!(cancelled["outcome"]["status"], "cancelled", "{cancelled}");
        let state: String = sqlx::query_scalar("SELECT state FROM run_queue WHERE run_id = $1")
            .bind(queued)
            .fetch_one(ctl.state.db.pool())
            .await
            .expect("queue row");
        assert_eq!(state, "finished");

        // Claimed by a dispatcher but not yet on its node: try again.
        let handing = "run_0000000000000000000000000000beef";
        queue_run(
            &ctl,
            &alice,
            &agent,
            handing,
            "cancel-node",
            "dispatched",
            later,
        )
        .await;
        let (status, body) = cancel(&ctl, &alice, handing).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], "being_delivered", "{body}");
        // Out on a node that is up but does not answer: 503, nothing
        // changed. (Up, heart-beating a moment ago: a node that is down
        // would have its runs re-queued by the dispatcher meanwhile.)
        sqlx::query(
            "INSERT INTO nodes (id, url, capacity, load, status, registered_at_ms, \
             last_heartbeat_ms) VALUES ('mute-node', 'http://127.0.0.1:9', 0, 0, 'up', $1, $1)",
        )
        .bind(now_ms())
        .execute(ctl.state.db.pool())
        .await
        .expect("a mute node");
        let stranded = "run_0000000000000000000000000000dead";
        queue_run(
            &ctl,
            &alice,
            &agent,
            stranded,
            "mute-node",
            "dispatched",
            later,
        )
        .await;
        let (status, body) = cancel(&ctl, &alice, stranded).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "node_unavailable", "{body}");
        let (_, run) = call(&ctl, &alice, Method::GET, &format!("/v1/runs/{stranded}")).await;
        assert_eq!(run["status"], "queued", "{run}");
    }
);
