//! Always-on agents between each other (issue 14): what a workflow step
//! costs next to a bare run, and how many messages between agents a
//! control plane and a node deliver a second.
//!
//! - `bare_run`: `POST /v1/agents/{id}/runs` of a trivial agent, until the
//!   control plane records the run finished.
//! - `workflow_1_step` / `workflow_4_steps`: `POST /v1/workflows/{id}/runs`
//!   of a one-step workflow and of a chain of four, until the workflow run
//!   ends; every step is a run of the same agent with the same input.
//!   `workflow_1_step / bare_run` is the overhead of a step as a ratio,
//!   and `(workflow_4_steps - workflow_1_step) / 3` what each further step
//!   adds (it waits for its predecessor's end to be recorded).
//! - `messages_100`: one run of a sender that sends 100 messages to a
//!   receiver (`delta:agent/agents`), until the 100 runs they start are
//!   finished; `100 / time` is messages delivered a second, end to end.
//!
//! "Finished" is read from the control plane's database every millisecond
//! (a poll, the same for every figure). All run against a control plane and
//! a node in this process (the test harness of `control/tests/common`), on
//! SQLite, and on PostgreSQL too when `DELTA_TEST_POSTGRES_URL` is set.
//!
//! Run: `cargo bench --workspace --bench workflows` (add `--profile dev`
//! for the dev profile); figures are recorded in `benches/README.md`.

#[path = "../control/tests/common/mod.rs"]
#[allow(missing_docs, unused_imports)]
mod common;

use std::time::{Duration, Instant};

use common::bounties::upload;
use common::{Control, Dialect, Session, eventually, start_node_in_process};
use criterion::{Criterion, criterion_group, criterion_main};
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MESSAGES: usize = 100;

struct Bench {
    ctl: Control,
    _node: delta_node::server::RunningNode,
    alice: Session,
    step: String,
    sender: String,
    receiver: String,
    one: String,
    four: String,
}

/// An agent running agent-relay with `grants`: its id.
async fn agent(ctl: &Control, who: &Session, name: &str, sha: &str, grants: Value) -> String {
    let body = json!({ "name": name, "kind": "main", "component": sha, "grants": grants });
    let agent = eventually(
        "a node to take the agent",
        Duration::from_secs(30),
        || async {
            let (status, agent) = ctl
                .call(
                    Method::POST,
                    "/v1/agents",
                    Some(&who.access),
                    Some(body.clone()),
                )
                .await;
            (status == StatusCode::CREATED).then_some(agent)
        },
    )
    .await;
    agent["id"].as_str().expect("id").to_owned()
}

async fn workflow(ctl: &Control, who: &Session, name: &str, steps: usize) -> String {
    let steps: Vec<Value> = (0..steps)
        .map(|i| {
            let after: Vec<String> = (i > 0).then(|| format!("s{}", i - 1)).into_iter().collect();
            json!({ "id": format!("s{i}"), "agent": "step", "after": after,
                    "input": { "send": [] } })
        })
        .collect();
    let (status, wf) = ctl
        .call(
            Method::POST,
            "/v1/workflows",
            Some(&who.access),
            Some(json!({ "name": name, "definition": { "steps": steps } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wf}");
    wf["id"].as_str().expect("id").to_owned()
}

async fn setup(dialect: Dialect) -> Bench {
    let ctl = Control::start_with(dialect, |c| {
        // The bench sends far more than a minute's default allowance.
        c.agent_messages.per_agent_per_minute = 10_000_000;
    })
    .await;
    let node = start_node_in_process(&ctl, "bench-node", "").await;
    let alice = ctl.register("alice").await;
    let relay = upload(
        &ctl,
        &alice,
        &std::fs::read(guests::AGENT_RELAY).expect("guest"),
    )
    .await;
    let step = agent(&ctl, &alice, "step", &relay, json!({})).await;
    let receiver = agent(&ctl, &alice, "receiver", &relay, json!({})).await;
    let sender = agent(
        &ctl,
        &alice,
        "sender",
        &relay,
        json!({ "agents": ["receiver"] }),
    )
    .await;
    let one = workflow(&ctl, &alice, "one", 1).await;
    let four = workflow(&ctl, &alice, "four", 4).await;
    let bench = Bench {
        ctl,
        _node: node,
        alice,
        step,
        sender,
        receiver,
        one,
        four,
    };
    // Warm: the node has compiled the component, pools are open.
    bench.bare_run().await;
    bench.messages().await;
    bench
}

impl Bench {
    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .ctl
            .call(Method::POST, path, Some(&self.alice.access), Some(body))
            .await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    async fn scalar(&self, sql: &str, bind: &str) -> Value {
        let v: Option<String> = sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_optional(self.ctl.state.db.pool())
            .await
            .expect("query");
        Value::from(v)
    }

    async fn until(&self, what: &str, sql: &str, bind: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.scalar(sql, bind).await;
            if done(&v) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} {bind}: still {v}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn bare_run(&self) {
        let run = self
            .post(
                &format!("/v1/agents/{}/runs", self.step),
                json!({ "input": { "send": [] } }),
            )
            .await;
        let id = run["id"].as_str().expect("run id");
        self.until("run", "SELECT status FROM runs WHERE id = $1", id, |s| {
            s == "finished"
        })
        .await;
    }

    async fn workflow_run(&self, workflow: &str) {
        let run = self
            .post(
                &format!("/v1/workflows/{workflow}/runs"),
                json!({ "input": {} }),
            )
            .await;
        let id = run["id"].as_str().expect("workflow run id");
        self.until(
            "workflow run",
            "SELECT status FROM workflow_runs WHERE id = $1",
            id,
            |s| s != "running",
        )
        .await;
        let status = self
            .scalar("SELECT status FROM workflow_runs WHERE id = $1", id)
            .await;
        assert_eq!(status, "completed");
    }

    async fn finished_of(&self, agent: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE agent_id = $1 AND status = 'finished'")
            .bind(agent)
            .fetch_one(self.ctl.state.db.pool())
            .await
            .expect("count")
    }

    async fn messages(&self) {
        let before = self.finished_of(&self.receiver).await;
        let send: Vec<Value> = (0..MESSAGES)
            .map(|i| json!({ "to": "receiver", "message": { "i": i } }))
            .collect();
        self.post(
            &format!("/v1/agents/{}/runs", self.sender),
            json!({ "input": { "send": send } }),
        )
        .await;
        let want = before + i64::try_from(MESSAGES).expect("small");
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.finished_of(&self.receiver).await < want {
            assert!(Instant::now() < deadline, "messages not all delivered");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let mut dialects = vec![("sqlite", Dialect::Sqlite)];
    if std::env::var_os("DELTA_TEST_POSTGRES_URL").is_some() {
        dialects.push(("postgres", Dialect::Postgres));
    }
    for (name, dialect) in dialects {
        let b = rt.block_on(setup(dialect));
        let mut group = c.benchmark_group(format!("workflows_{name}"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(10));
        group.bench_function("bare_run", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        b.bare_run().await;
                    }
                    start.elapsed()
                })
            });
        });
        for (label, workflow) in [("workflow_1_step", &b.one), ("workflow_4_steps", &b.four)] {
            group.bench_function(label, |bench| {
                bench.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            b.workflow_run(workflow).await;
                        }
                        start.elapsed()
                    })
                });
            });
        }
        group.bench_function("messages_100", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        b.messages().await;
                    }
                    start.elapsed()
                })
            });
        });
        group.finish();
        drop(b);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
