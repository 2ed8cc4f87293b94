//! The API-side cost of one bounty's whole life, as a ratio to the one
//! thing in it that is the verifier's own work (issue 17).
//!
//! - `bounty/verifier_run`: one `POST /v1/verifications` on the node (the
//!   json-verifier example, already compiled there, on a spec and a
//!   passing submission): the call the control plane makes for each
//!   submission, measured straight at the node.
//! - `bounty/lifecycle`: create → fund → submit (verified on that node
//!   inside the request) → approve, four calls to the control plane's API
//!   over HTTP, each its own database transaction, the ledger's transfers
//!   and the events with them.
//!
//! `lifecycle / verifier_run` is the figure; `lifecycle - verifier_run` is
//! what the API, the database and the ledger add. Both run against a
//! control plane and a node in this process (the test harness of
//! `control/tests/common`), on SQLite, and on PostgreSQL too when
//! `DELTA_TEST_POSTGRES_URL` is set.
//!
//! Run: `cargo bench --workspace --bench bounty` (add `--profile dev` for
//! the dev profile); figures are recorded in `benches/README.md`.

#[path = "../control/tests/common/mod.rs"]
#[allow(missing_docs, unused_imports)]
mod common;

use std::time::{Duration, Instant};

use common::bounties::{create_agent, top_up, upload};
use common::{Control, Dialect, Session, node_api_token, start_node_in_process};
use criterion::{Criterion, criterion_group, criterion_main};
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NODE: &str = "bench-node";

/// A control plane with a node, a business with money and a verifier, and
/// an agent owner with an agent.
struct Bench {
    ctl: Control,
    _node: delta_node::server::RunningNode,
    alice: Session,
    bob: Session,
    verifier: String,
    agent: String,
    node_url: String,
}

async fn setup(dialect: Dialect) -> Bench {
    let ctl = Control::start(dialect).await;
    let node = start_node_in_process(&ctl, NODE, "").await;
    let node_url = node.url().to_owned();
    let op = ctl.operator().await;
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let verifier = upload(
        &ctl,
        &alice,
        &std::fs::read(guests::JSON_VERIFIER).expect("guest"),
    )
    .await;
    let hello = upload(
        &ctl,
        &bob,
        &std::fs::read(guests::HELLO_AGENT).expect("guest"),
    )
    .await;
    let agent = create_agent(&ctl, &bob, "solver", &hello).await;
    top_up(&ctl, &op, &alice.tenant_id, 1 << 50, "EUR").await;
    let bench = Bench {
        ctl,
        _node: node,
        alice,
        bob,
        verifier,
        agent,
        node_url,
    };
    // The first lifecycle uploads and compiles the verifier on the node;
    // neither figure includes a compile.
    bench.lifecycle().await;
    bench
}

impl Bench {
    async fn call(&self, who: &Session, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self
            .ctl
            .call(Method::POST, path, Some(&who.access), body)
            .await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// Create, fund, submit (verified), approve.
    async fn lifecycle(&self) {
        self.lifecycle_steps().await;
    }

    /// [`Self::lifecycle`], answering how long each of its four calls took.
    async fn lifecycle_steps(&self) -> [Duration; 4] {
        let mut took = [Duration::ZERO; 4];
        let mut lap = Instant::now();
        let mut step = |i: usize| {
            took[i] = lap.elapsed();
            lap = Instant::now();
        };
        let deadline = delta_control::db::now_ms() + 3_600_000;
        let b = self
            .call(
                &self.alice,
                "/v1/bounties",
                Some(
                    json!({ "title": "bench", "spec": { "expected": { "answer": 42 } },
                             "reward_minor": 1_000, "currency": "EUR",
                             "deadline_ms": deadline, "verifier": self.verifier }),
                ),
            )
            .await;
        step(0);
        let id = b["id"].as_str().expect("id");
        self.call(&self.alice, &format!("/v1/bounties/{id}/fund"), None)
            .await;
        step(1);
        let sub = self
            .call(
                &self.bob,
                &format!("/v1/bounties/{id}/submissions"),
                Some(json!({ "agent_id": self.agent, "payload": { "answer": 42 } })),
            )
            .await;
        assert_eq!(sub["passed"], true, "{sub}");
        step(2);
        let done = self
            .call(
                &self.alice,
                &format!(
                    "/v1/submissions/{}/approve",
                    sub["id"].as_str().expect("id")
                ),
                None,
            )
            .await;
        assert_eq!(done["status"], "completed", "{done}");
        step(3);
        took
    }

    /// One verification, straight at the node.
    async fn verifier_run(&self) {
        let resp = self
            .ctl
            .client
            .post(format!("{}/v1/verifications", self.node_url))
            .bearer_auth(node_api_token(NODE))
            .json(&json!({
                "tenant_id": self.alice.tenant_id, "component": self.verifier,
                "spec": r#"{"expected":{"answer":42}}"#, "submission": r#"{"answer":42}"#,
            }))
            .send()
            .await
            .expect("verification");
        let status = resp.status();
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["outcome"]["status"], "completed", "{answer}");
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
        let mut group = c.benchmark_group(format!("bounty_{name}"));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(10));
        group.bench_function("verifier_run", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        b.verifier_run().await;
                    }
                    start.elapsed()
                })
            });
        });
        group.bench_function("lifecycle", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        b.lifecycle().await;
                    }
                    start.elapsed()
                })
            });
        });
        group.finish();
        // Where a lifecycle's time goes, call by call (means of 50).
        let sums = rt.block_on(async {
            let mut sums = [Duration::ZERO; 4];
            for _ in 0..50 {
                for (sum, t) in sums.iter_mut().zip(b.lifecycle_steps().await) {
                    *sum += t;
                }
            }
            sums
        });
        let [create, fund, submit, approve] = sums.map(|d| d / 50);
        eprintln!(
            "bounty_{name}: mean of 50 lifecycles: create {create:?}, fund {fund:?}, \
             submit+verify {submit:?}, approve {approve:?}"
        );
        rt.block_on(async move { drop(b) });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
