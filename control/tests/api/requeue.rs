//! The durable run queue (issue 13), over real HTTP with real in-process
//! nodes, on SQLite and PostgreSQL: a node lost (killed: no drain, no more
//! heartbeats or usage reports) gives its runs back to the queue and they
//! finish on the agent's new node under the same run id, which the guest
//! sees; runs no node takes go `dead` after `max_deliveries` and come back
//! with `POST /v1/runs/{id}/retry`; two replicas never claim one row twice;
//! an agent whose `node_loss` is `fail` has its lost runs die instead;
//! a run a dead replica claimed but never delivered is delivered again;
//! with Redis the same happens through its stream, and without it again.

use crate::common;

use std::time::Duration;

use common::bounties::create_agent;
use common::{Control, Dialect, Session, eventually, held_by, start_node_in, upload_script};
use delta_control::config::ControlConfig;
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Answers the run id the guest was handed (`task.run-id`).
const RUN_ID_JS: &str = "export function run(task) { return { runId: task.runId }; }\n";

/// A node with one execution slot: a slow run keeps the others queued.
const ONE_SLOT: &str = "[scheduler]\nconcurrency = 1\nper_tenant_concurrency = 1\n";

/// Short timeouts so that a node is declared lost in seconds, and quick
/// retries.
fn fast(max_deliveries: u32) -> impl FnOnce(&mut ControlConfig) {
    move |c: &mut ControlConfig| {
        c.node_heartbeat_timeout_secs = 3;
        c.runs.max_deliveries = max_deliveries;
        c.runs.retry_base_ms = 100;
        c.runs.retry_max_ms = 1_000;
        c.runs.poll_ms = 100;
    }
}

async fn get(ctl: &Control, who: &Session, path: &str) -> (StatusCode, Value) {
    ctl.call(Method::GET, path, Some(&who.access), None).await
}

async fn post(ctl: &Control, who: &Session, path: &str, body: Value) -> (StatusCode, Value) {
    ctl.call(Method::POST, path, Some(&who.access), Some(body))
        .await
}

/// Submit a run (202): its id.
async fn submit(ctl: &Control, who: &Session, agent: &str, input: Value) -> String {
    let (status, body) = post(
        ctl,
        who,
        &format!("/v1/agents/{agent}/runs"),
        json!({ "input": input }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().expect("run id").to_owned()
}

/// The run `id` once its status is `status`.
async fn run_in(ctl: &Control, who: &Session, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, run) = get(ctl, who, &format!("/v1/runs/{id}")).await;
        assert_eq!(code, StatusCode::OK, "{run}");
        if run["status"] == status {
            return run;
        }
        if std::time::Instant::now() > deadline {
            // What the queue and the fleet say, for a failure seen once
            // under the full suite's load and never alone.
            let queue: Option<(String, Option<String>, i64)> = sqlx::query_as(
                "SELECT state, last_error, deliveries FROM run_queue WHERE run_id = $1",
            )
            .bind(id)
            .fetch_optional(ctl.state.db.pool())
            .await
            .expect("queue row");
            let nodes: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT id, status, last_heartbeat_ms FROM nodes ORDER BY id")
                    .fetch_all(ctl.state.db.pool())
                    .await
                    .expect("nodes");
            panic!(
                "run {id} is not {status} after 60 s: {run}; queue row {queue:?}; \
                 nodes {nodes:?}; now {}",
                delta_control::db::now_ms()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Upload [`RUN_ID_JS`] and create an agent of it named `echo`: its id.
async fn echo_agent(ctl: &Control, who: &Session) -> String {
    let (status, script) = upload_script(ctl, &who.access, RUN_ID_JS).await;
    assert_eq!(status, StatusCode::CREATED, "{script}");
    create_agent(ctl, who, "echo", script["sha256"].as_str().expect("sha")).await
}

/// Upload a component from a guest artifact: its sha256.
async fn upload_wasm(ctl: &Control, who: &Session, path: &str) -> String {
    common::bounties::upload(ctl, who, &std::fs::read(path).expect("guest")).await
}

/// The agent's node, as the control plane has it.
async fn agent_node(ctl: &Control, who: &Session, agent: &str) -> Value {
    let (status, body) = get(ctl, who, &format!("/v1/agents/{agent}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["node_id"].clone()
}

both_with!(
    runs_of_a_lost_node_finish_on_the_new_one_under_the_same_id,
    fast(10),
    |ctl: Control| async move {
        let a = start_node_in(&ctl, "node-a", "node-a", ONE_SLOT).await;
        let alice = ctl.register("alice").await;
        let echo = echo_agent(&ctl, &alice).await;
        let slow_sha = upload_wasm(&ctl, &alice, guests::SLOW_LOGGER).await;
        let slow = create_agent(&ctl, &alice, "slow", &slow_sha).await;
        assert_eq!(agent_node(&ctl, &alice, &echo).await, "node-a");
        let b = start_node_in(&ctl, "node-b", "node-b", "").await;

        // The slow run takes node A's only slot; the others queue behind.
        let running = submit(
            &ctl,
            &alice,
            &slow,
            json!({ "lines": 40, "interval_ms": 100 }),
        )
        .await;
        eventually("the slow run to start", Duration::from_secs(30), || async {
            let (_, run) = get(&ctl, &alice, &format!("/v1/runs/{running}")).await;
            (run["status"] == "running").then_some(())
        })
        .await;
        let mut queued = Vec::new();
        for _ in 0..3 {
            queued.push(submit(&ctl, &alice, &echo, json!({})).await);
        }
        held_by(&a, &queued.iter().collect::<Vec<_>>()).await;
        a.kill().await;

        // Both agents move to B; every run ends there, delivered twice,
        // under its id: the guest saw the same id.
        for id in &queued {
            let run = run_in(&ctl, &alice, id, "finished").await;
            assert_eq!(run["node_id"], "node-b", "{run}");
            assert_eq!(run["outcome"]["status"], "completed", "{run}");
            let output = &run["outcome"]["output"];
            let output: Value = match output.as_str() {
                Some(text) => serde_json::from_str(text).expect("json output"),
                None => output.clone(),
            };
            assert_eq!(output["runId"], id.as_str(), "{run}");
            // Re-queued (`node_lost`), then tried until the agent had
            // moved (`node_unavailable` meanwhile).
            assert!(run["deliveries"].as_i64().is_some_and(|n| n >= 2), "{run}");
            assert!(run["last_error"].is_string(), "{run}");
        }
        let run = run_in(&ctl, &alice, &running, "finished").await;
        assert_eq!(run["node_id"], "node-b", "{run}");
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        assert!(run["deliveries"].as_i64().is_some_and(|n| n >= 2), "{run}");
        assert_eq!(agent_node(&ctl, &alice, &echo).await, "node-b");
        // Each run ran once on B (a node answers a run id it holds with
        // that run): four runs completed there.
        let metrics = b.node().metrics().render();
        let completed: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("delta_runs_total{") && l.contains("completed"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(completed, 4.0, "{metrics}");
        b.shutdown().await;
    }
);

both_with!(
    runs_no_node_takes_go_dead_and_come_back_with_retry,
    fast(3),
    |ctl: Control| async move {
        let a = start_node_in(&ctl, "node-a", "node-a", ONE_SLOT).await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let slow_sha = upload_wasm(&ctl, &alice, guests::SLOW_LOGGER).await;
        let slow = create_agent(&ctl, &alice, "slow", &slow_sha).await;
        let input = json!({ "lines": 2, "interval_ms": 50 });
        let first = submit(
            &ctl,
            &alice,
            &slow,
            json!({ "lines": 40, "interval_ms": 100 }),
        )
        .await;
        let second = submit(&ctl, &alice, &slow, input.clone()).await;
        a.kill().await;

        // No node is up: each is delivered 3 times in all, then dead.
        for id in [&first, &second] {
            let run = run_in(&ctl, &alice, id, "dead").await;
            assert_eq!(run["deliveries"], 3, "{run}");
            let error = run["last_error"].as_str().unwrap_or_default();
            assert!(error.starts_with("node_unavailable"), "{run}");
        }
        let (status, page) = get(&ctl, &alice, "/v1/runs?status=dead").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut dead: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        dead.sort_unstable();
        let mut expected = vec![first.as_str(), second.as_str()];
        expected.sort_unstable();
        assert_eq!(dead, expected, "{page}");
        let (status, page) = get(
            &ctl,
            &alice,
            &format!("/v1/runs?status=dead&agent_id={slow}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
        let (status, page) = get(&ctl, &alice, "/v1/runs?status=finished").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(0), "{page}");
        let (status, err) = get(&ctl, &alice, "/v1/runs?status=lost").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        // Nobody else sees them, or retries them.
        let (status, page) = get(&ctl, &bob, "/v1/runs?status=dead").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(0), "{page}");
        for path in [
            format!("/v1/runs/{first}/retry"),
            "/v1/runs/run_nosuchrun/retry".to_owned(),
        ] {
            let (status, err) = post(&ctl, &bob, &path, json!({})).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        }
        let (status, err) = post(&ctl, &alice, "/v1/runs/run_nosuchrun/retry", json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");

        // A node comes back: the agent moves there, and a retried run
        // finishes there under its id.
        let b = start_node_in(&ctl, "node-b", "node-b", "").await;
        eventually("the agent to move", Duration::from_secs(30), || async {
            (agent_node(&ctl, &alice, &slow).await == "node-b").then_some(())
        })
        .await;
        let (status, body) =
            post(&ctl, &alice, &format!("/v1/runs/{second}/retry"), json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["id"], second.as_str(), "{body}");
        let run = run_in(&ctl, &alice, &second, "finished").await;
        assert_eq!(run["node_id"], "node-b", "{run}");
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        assert_eq!(run["deliveries"], 1, "{run}");
        // Only a dead run is retried.
        let (status, err) =
            post(&ctl, &alice, &format!("/v1/runs/{second}/retry"), json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_eq!(err["code"], "not_dead", "{err}");
        // The other stays dead until retried.
        let (_, run) = get(&ctl, &alice, &format!("/v1/runs/{first}")).await;
        assert_eq!(run["status"], "dead", "{run}");
        b.shutdown().await;
    }
);

both_with!(
    two_replicas_never_deliver_one_row_twice,
    fast(5),
    |ctl: Control| async move {
        let node = start_node_in(&ctl, "node", "node-r", "").await;
        let alice = ctl.register("alice").await;
        let sha = upload_wasm(&ctl, &alice, guests::HELLO_AGENT).await;
        let agent = create_agent(&ctl, &alice, "hello", &sha).await;
        let replica = ctl.replica().await;
        // Runs accepted and due, as a re-queue leaves them: both replicas'
        // dispatchers race for them.
        const RUNS: usize = 40;
        let now = delta_control::db::now_ms();
        let ids: Vec<String> = (0..RUNS).map(|i| format!("run_race{i:03}")).collect();
        let mut tx = ctl.state.db.pool().begin().await.expect("tx");
        for id in &ids {
            sqlx::query(
                "INSERT INTO runs (id, tenant_id, agent_id, node_id, status, outcome, usage, \
                 created_at_ms, finished_at_ms) \
                 VALUES ($1, $2, $3, 'node-r', 'queued', NULL, NULL, $4, NULL)",
            )
            .bind(id)
            .bind(&alice.tenant_id)
            .bind(&agent)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("run");
            sqlx::query(
                "INSERT INTO run_queue (run_id, tenant_id, agent_id, input, deliveries, state, \
                 not_before_ms, last_error, updated_at_ms) \
                 VALUES ($1, $2, $3, '{\"name\":\"Ada\"}', 0, 'pending', $4, NULL, $4)",
            )
            .bind(id)
            .bind(&alice.tenant_id)
            .bind(&agent)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("queue row");
        }
        tx.commit().await.expect("commit");
        for id in &ids {
            let run = run_in(&ctl, &alice, id, "finished").await;
            assert_eq!(run["outcome"]["status"], "completed", "{run}");
            // Claimed once: a second claim would have counted.
            assert_eq!(run["deliveries"], 1, "{run}");
        }
        let metrics = node.node().metrics().render();
        let needle = format!(
            "delta_runs_total{{outcome=\"completed\",tenant=\"{}\"}} {RUNS}",
            alice.tenant_id
        );
        assert!(metrics.contains(&needle), "{needle} missing:\n{metrics}");
        drop(replica);
        node.shutdown().await;
    }
);

both_with!(
    a_fail_policy_agent_s_runs_die_with_node_lost_and_others_move,
    fast(10),
    |ctl: Control| async move {
        let a = start_node_in(&ctl, "node-a", "node-a", ONE_SLOT).await;
        let alice = ctl.register("alice").await;
        let echo = echo_agent(&ctl, &alice).await;
        let slow_sha = upload_wasm(&ctl, &alice, guests::SLOW_LOGGER).await;
        let slow = create_agent(&ctl, &alice, "slow", &slow_sha).await;
        let path = format!("/v1/agents/{slow}");
        // A policy that does not exist is a body error; `fail` is kept.
        let (status, err) = ctl
            .call(
                Method::PATCH,
                &path,
                Some(&alice.access),
                Some(json!({ "node_loss": "sometimes" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        let (status, agent) = ctl
            .call(
                Method::PATCH,
                &path,
                Some(&alice.access),
                Some(json!({ "node_loss": "fail" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{agent}");
        assert_eq!(agent["node_loss"], "fail", "{agent}");
        let (_, agent) = get(&ctl, &alice, &path).await;
        assert_eq!(agent["node_loss"], "fail", "{agent}");
        let (_, agent) = get(&ctl, &alice, &format!("/v1/agents/{echo}")).await;
        assert_eq!(agent["node_loss"], "requeue", "{agent}");
        let b = start_node_in(&ctl, "node-b", "node-b", "").await;

        // One slow run holds node A's only slot; another of the same agent
        // and one of the echo agent queue behind it.
        let lines = json!({ "lines": 40, "interval_ms": 100 });
        let running = submit(&ctl, &alice, &slow, lines.clone()).await;
        eventually("the slow run to start", Duration::from_secs(30), || async {
            let (_, run) = get(&ctl, &alice, &format!("/v1/runs/{running}")).await;
            (run["status"] == "running").then_some(())
        })
        .await;
        let waiting = submit(&ctl, &alice, &slow, json!({ "lines": 1, "interval_ms": 1 })).await;
        let moved = submit(&ctl, &alice, &echo, json!({})).await;
        // Both out on A: a run still in the queue when A dies was never
        // delivered, and goes to B whatever the policy.
        held_by(&a, &[&waiting, &moved]).await;
        a.kill().await;

        // The `fail` agent's runs, started or not, die with `node_lost`
        // after their one delivery; the echo run finishes on B.
        for id in [&running, &waiting] {
            let run = run_in(&ctl, &alice, id, "dead").await;
            assert_eq!(run["last_error"], "node_lost", "{run}");
            assert_eq!(run["deliveries"], 1, "{run}");
            assert_eq!(run["node_id"], "node-a", "{run}");
        }
        let run = run_in(&ctl, &alice, &moved, "finished").await;
        assert_eq!(run["node_id"], "node-b", "{run}");
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        // Both agents moved; a dead run runs again only when asked.
        eventually(
            "the slow agent to move",
            Duration::from_secs(30),
            || async { (agent_node(&ctl, &alice, &slow).await == "node-b").then_some(()) },
        )
        .await;
        let (_, run) = get(&ctl, &alice, &format!("/v1/runs/{waiting}")).await;
        assert_eq!(run["status"], "dead", "{run}");
        let (status, body) = post(
            &ctl,
            &alice,
            &format!("/v1/runs/{waiting}/retry"),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let run = run_in(&ctl, &alice, &waiting, "finished").await;
        assert_eq!(run["node_id"], "node-b", "{run}");
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        b.shutdown().await;
    }
);

both_with!(
    a_run_claimed_by_a_replica_that_died_before_delivering_it_is_delivered_again,
    fast(5),
    |ctl: Control| async move {
        let _node = start_node_in(&ctl, "node", "node-s", "").await;
        let alice = ctl.register("alice").await;
        let sha = upload_wasm(&ctl, &alice, guests::HELLO_AGENT).await;
        let agent = create_agent(&ctl, &alice, "hello", &sha).await;
        // What a replica killed between claiming a row and calling the
        // node leaves: `dispatched`, on a live node that never saw the run,
        // and (here) long enough ago to be looked at.
        let then = delta_control::db::now_ms()
            - delta_control::dispatch::requeue::STRANDED_AFTER_MS
            - 1_000;
        for (id, state) in [("run_stranded", "dispatched"), ("run_fresh", "dispatched")] {
            let at = if id == "run_fresh" {
                delta_control::db::now_ms()
            } else {
                then
            };
            sqlx::query(
                "INSERT INTO runs (id, tenant_id, agent_id, node_id, status, created_at_ms) \
                 VALUES ($1, $2, $3, 'node-s', 'queued', $4)",
            )
            .bind(id)
            .bind(&alice.tenant_id)
            .bind(&agent)
            .bind(at)
            .execute(ctl.state.db.pool())
            .await
            .expect("run");
            sqlx::query(
                "INSERT INTO run_queue (run_id, tenant_id, agent_id, input, deliveries, state, \
                 not_before_ms, last_error, updated_at_ms) \
                 VALUES ($1, $2, $3, '{\"name\":\"Ada\"}', 1, $4, $5, NULL, $5)",
            )
            .bind(id)
            .bind(&alice.tenant_id)
            .bind(&agent)
            .bind(state)
            .bind(at)
            .execute(ctl.state.db.pool())
            .await
            .expect("queue row");
        }
        let run = run_in(&ctl, &alice, "run_stranded", "finished").await;
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        assert_eq!(run["deliveries"], 2, "{run}");
        // A recent claim is left alone: its replica may still be calling.
        let fresh: String =
            sqlx::query_scalar("SELECT state FROM run_queue WHERE run_id = 'run_fresh'")
                .fetch_one(ctl.state.db.pool())
                .await
                .expect("fresh row");
        assert_eq!(fresh, "dispatched");
    }
);

/// Kill `node` (one slot, hosting `echo` and `slow`) while it runs a slow
/// run and holds three echo runs; start node `to` first. The echo runs
/// finish on `to` under their ids: the node that takes the agents next.
async fn lose_node(
    ctl: &Control,
    alice: &Session,
    (echo, slow): (&str, &str),
    node: delta_node::server::RunningNode,
    to: &str,
) -> delta_node::server::RunningNode {
    let target = start_node_in(ctl, to, to, ONE_SLOT).await;
    let running = submit(ctl, alice, slow, json!({ "lines": 40, "interval_ms": 100 })).await;
    eventually("the slow run to start", Duration::from_secs(30), || async {
        let (_, run) = get(ctl, alice, &format!("/v1/runs/{running}")).await;
        (run["status"] == "running").then_some(())
    })
    .await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(submit(ctl, alice, echo, json!({})).await);
    }
    held_by(&node, &queued.iter().collect::<Vec<_>>()).await;
    node.kill().await;
    for id in &queued {
        let run = run_in(ctl, alice, id, "finished").await;
        assert_eq!(run["node_id"], to, "{run}");
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        assert!(run["deliveries"].as_i64().is_some_and(|n| n >= 2), "{run}");
    }
    // The slow run too (its agent moved with the others).
    let run = run_in(ctl, alice, &running, "finished").await;
    assert_eq!(run["node_id"], to, "{run}");
    target
}

/// With `redis_url`, re-queued runs are signalled on the Redis stream and
/// read through its consumer group; with Redis gone, the table sweep
/// still delivers every run (nothing is lost with Redis).
async fn runs_move_through_redis_streams_and_survive_redis_loss(dialect: Dialect) {
    let mut redis = common::redis::RedisServer::start().await;
    let url = redis.url.clone();
    let ctl = Control::start_with(dialect, move |c| {
        fast(10)(c);
        c.redis_url = Some(url);
    })
    .await;
    let a = start_node_in(&ctl, "node-a", "node-a", ONE_SLOT).await;
    let alice = ctl.register("alice").await;
    let echo = echo_agent(&ctl, &alice).await;
    let slow_sha = upload_wasm(&ctl, &alice, guests::SLOW_LOGGER).await;
    let slow = create_agent(&ctl, &alice, "slow", &slow_sha).await;
    assert_eq!(agent_node(&ctl, &alice, &echo).await, "node-a");
    assert_eq!(agent_node(&ctl, &alice, &slow).await, "node-a");

    // Redis up: the re-queued runs came through the stream's group.
    let b = lose_node(&ctl, &alice, (&echo, &slow), a, "node-b").await;
    let mut conn = redis.connection().await;
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("delta:runs")
        .query_async(&mut conn)
        .await
        .expect("the run stream and its group exist");
    let read = groups
        .iter()
        .find(|g| g.get("name") == Some(&redis::Value::BulkString(b"dispatchers".to_vec())))
        .and_then(|g| match g.get("entries-read") {
            Some(redis::Value::Int(n)) => Some(*n),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the dispatchers group: {groups:?}"));
    assert!(read >= 4, "{groups:?}");
    let waiting: i64 = redis::cmd("ZCARD")
        .arg("delta:runs:delayed")
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(waiting, 0, "no signal left behind");

    // Redis gone: the same loss is recovered from the table.
    redis.stop();
    let c = lose_node(&ctl, &alice, (&echo, &slow), b, "node-c").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_move_through_redis_streams_and_survive_redis_loss_sqlite() {
    runs_move_through_redis_streams_and_survive_redis_loss(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_move_through_redis_streams_and_survive_redis_loss_postgres() {
    runs_move_through_redis_streams_and_survive_redis_loss(Dialect::Postgres).await;
}

both_with!(
    a_delivery_whose_caller_went_away_still_runs,
    fast(10),
    |ctl: Control| async move {
        // A replica that dies while delivering a run drops its request
        // mid-way. The node must still record and run it: a repeated
        // delivery of the same id is answered with that run, so a run
        // accepted but never started would stay `queued` for good.
        let a = start_node_in(&ctl, "node-a", "node-a", "").await;
        let alice = ctl.register("alice").await;
        let echo = echo_agent(&ctl, &alice).await;
        let node = a.node();
        for i in 0..5 {
            let id = format!("run_dropped{i}");
            let mut delivery = Box::pin(node.submit(&echo, "{}".into(), false, Some(id.clone())));
            // Polled until the node knows the run, then dropped, as a
            // request whose connection closed is.
            let mut answered = false;
            for _ in 0..10_000 {
                let poll = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(delivery.as_mut().poll(cx).is_ready())
                })
                .await;
                if poll {
                    answered = true;
                    break;
                }
                if node.get_run(&id).await.is_ok() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            drop(delivery);
            let run = eventually(
                &format!("{id}, whose delivery was dropped (answered: {answered}), to finish"),
                Duration::from_secs(30),
                || async {
                    let run = node.get_run(&id).await.ok()?;
                    (run.status == delta_node_api::RunStatus::Finished).then_some(run)
                },
            )
            .await;
            let outcome = serde_json::to_value(&run.outcome).expect("outcome");
            assert_eq!(outcome["status"], "completed", "{outcome}");
        }
    }
);

/// On PostgreSQL each statement of `requeue_lost`'s transaction reads
/// anew: a node marked down between its two statements (here by a trigger
/// that fires after the first, as the monitor may concurrently) must not
/// get a `fail` agent's run re-queued by the second. The next pass fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_mid_pass_never_requeues_a_fail_agent_s_run() {
    use delta_control::dispatch::requeue::requeue_lost;
    let ctl = Control::start(Dialect::Postgres).await;
    let alice = ctl.register("alice").await;
    let db = &ctl.state.db;
    let now = delta_control::db::now_ms();
    sqlx::query(
        "INSERT INTO nodes (id, url, capacity, load, status, registered_at_ms, \
         last_heartbeat_ms) VALUES ('race-node', 'http://127.0.0.1:9', 1, 0, 'up', $1, $1)",
    )
    .bind(now)
    .execute(db.pool())
    .await
    .expect("node");
    let agent = common::insert_agent(&ctl, &alice, "failing", Some("race-node")).await;
    sqlx::query("UPDATE agents SET node_loss = 'fail' WHERE id = $1")
        .bind(&agent)
        .execute(db.pool())
        .await
        .expect("policy");
    let run = "run_0000000000000000000000000000race";
    common::queue_run(&ctl, &alice, &agent, run, "race-node", "dispatched", now).await;
    // After the pass's first statement (which changes no row: the node is
    // still up for it), the node goes down.
    for statement in [
        "CREATE FUNCTION race_node_down() RETURNS trigger AS $$ BEGIN \
         UPDATE nodes SET status = 'down' WHERE id = 'race-node'; RETURN NULL; END $$ \
         LANGUAGE plpgsql",
        "CREATE TRIGGER race_node_down AFTER UPDATE ON run_queue \
         FOR EACH STATEMENT EXECUTE FUNCTION race_node_down()",
    ] {
        sqlx::query(statement)
            .execute(db.pool())
            .await
            .expect("trigger");
    }
    let first = requeue_lost(db, now).await.expect("pass");
    assert!(
        first.requeued.is_empty() && first.failed.is_empty(),
        "{first:?}"
    );
    sqlx::query("DROP TRIGGER race_node_down ON run_queue")
        .execute(db.pool())
        .await
        .expect("drop trigger");
    let state: String = sqlx::query_scalar("SELECT state FROM run_queue WHERE run_id = $1")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .expect("state");
    assert_eq!(state, "dispatched");
    // The next pass sees the node down from its first statement.
    let next = requeue_lost(db, now + 1).await.expect("pass");
    assert_eq!(next.failed, vec![run.to_owned()], "{next:?}");
    assert!(next.requeued.is_empty(), "{next:?}");
}
