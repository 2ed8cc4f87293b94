//! Usage ingestion throughput (issue 7: >= 100,000 records/s in batches of
//! 1,000 on the project's machine).
//!
//! `usage/ingest_fn_sqlite`: `delta_control::usage::ingest` of a fresh batch
//! of 1,000 records (new run ids every iteration, ten agents, one model and
//! one channel each) on SQLite. `usage/http_sqlite`: the same batch posted to
//! `POST /v1/nodes/usage` of a control plane on loopback (JSON encoding on
//! the client and decoding on the server included). With
//! `DELTA_TEST_POSTGRES_URL` set, `usage/ingest_fn_postgres` runs on a fresh
//! PostgreSQL database too.
//!
//! `cargo bench --bench usage`; criterion reports elements (records) per
//! second.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use delta_control::app::AppState;
use delta_control::config::ControlConfig;
use delta_control::db::{Db, now_ms};
use delta_node::model::{LlmTokens, MessageCounts, RunUsage};

const BATCH: usize = 1_000;
const AGENTS: usize = 10;
/// The reporting node (the agents are placed on it).
const NODE: &str = "node-bench";

static NEXT: AtomicU64 = AtomicU64::new(0);

fn batch() -> (String, Vec<RunUsage>) {
    let first = NEXT.fetch_add(BATCH as u64, Ordering::Relaxed);
    let now = now_ms();
    let records = (0..BATCH as u64)
        .map(|i| {
            let n = first + i;
            let mut r = RunUsage {
                run_id: format!("run_{n:016}"),
                agent_id: format!("agt_bench_{}", n % AGENTS as u64),
                tenant_id: "ten_bench".into(),
                outcome: "completed".into(),
                fuel_used: 6_000 + n % 100,
                wall_time_us: 40,
                peak_memory_bytes: 1 << 20,
                finished_at_ms: now,
                ..RunUsage::default()
            };
            r.llm.insert(
                "model-a".into(),
                LlmTokens {
                    calls: 1,
                    input_tokens: 120,
                    output_tokens: 80,
                },
            );
            r.messages.insert(
                "email".into(),
                MessageCounts {
                    sent: 1,
                    refused: 0,
                    tokens: 1,
                },
            );
            r
        })
        .collect();
    (format!("batch_{first}"), records)
}

async fn seed(db: &Db) {
    sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ('ten_bench', 'b', 0)")
        .execute(db.pool())
        .await
        .expect("tenant");
    for i in 0..AGENTS {
        sqlx::query(
            "INSERT INTO agents (id, tenant_id, name, kind, parent_agent_id, component, limits, \
                 grants, paused, node_id, created_at_ms, updated_at_ms, owner_user_id) \
             VALUES ($1, 'ten_bench', $2, 'main', NULL, 'c', '{}', '{}', 0, $3, 0, 0, 'usr_b')",
        )
        .bind(format!("agt_bench_{i}"))
        .bind(format!("a{i}"))
        .bind(NODE)
        .execute(db.pool())
        .await
        .expect("agent");
    }
}

async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let name = format!("delta_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

fn ingestion(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("usage");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);

    let db = rt.block_on(async {
        let db = Db::connect(&format!("sqlite://{}/fn.db?mode=rwc", dir.path().display()))
            .await
            .expect("sqlite");
        seed(&db).await;
        db
    });
    // Records are made outside the measurement (iter_batched).
    group.bench_function("ingest_fn_sqlite", |b| {
        b.to_async(&rt).iter_batched(
            batch,
            |(id, mut records)| {
                let db = &db;
                async move {
                    let done = delta_control::usage::ingest(db, NODE, &id, &mut records, 0)
                        .await
                        .expect("ingest");
                    assert_eq!(done.accepted, BATCH as u64);
                }
            },
            BatchSize::SmallInput,
        )
    });

    if let Ok(admin) = std::env::var("DELTA_TEST_POSTGRES_URL") {
        let db = rt.block_on(async {
            let db = Db::connect(&fresh_postgres(&admin).await)
                .await
                .expect("postgres");
            seed(&db).await;
            db
        });
        group.bench_function("ingest_fn_postgres", |b| {
            b.to_async(&rt).iter_batched(
                batch,
                |(id, mut records)| {
                    let db = &db;
                    async move {
                        let done = delta_control::usage::ingest(db, NODE, &id, &mut records, 0)
                            .await
                            .expect("ingest");
                        assert_eq!(done.accepted, BATCH as u64);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }

    // Over HTTP, on a control plane of its own.
    let (url, credential) = rt.block_on(async {
        let config = ControlConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            state_dir: dir.path().join("http"),
            ..ControlConfig::default()
        };
        let state = AppState::open(config.clone()).await.expect("state");
        seed(&state.db).await;
        // The node's credential, issued in process (enrolment is an
        // operator's API call; what is measured here is ingestion).
        let mut conn = state.db.pool().acquire().await.expect("connection");
        let (_, credential) = delta_control::nodeauth::insert_credential(&mut conn, NODE, 0)
            .await
            .expect("credential");
        drop(conn);
        let (listener, addr) = delta_control::app::bind(config.listen).await.expect("bind");
        tokio::spawn(delta_control::app::serve(
            state,
            listener,
            std::future::pending(),
        ));
        (format!("http://{addr}/v1/nodes/usage"), credential)
    });
    let client = reqwest::Client::new();
    // The body is encoded outside the measurement; sending it, the
    // server's decoding and the ingestion are measured.
    group.bench_function("http_sqlite", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let (id, records) = batch();
                let body =
                    serde_json::json!({ "batch_id": id, "node_id": NODE, "records": records });
                serde_json::to_vec(&body).expect("json")
            },
            |body| {
                let (client, url, credential) = (&client, &url, &credential);
                async move {
                    let resp = client
                        .post(url)
                        .bearer_auth(credential)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("post");
                    assert!(resp.status().is_success(), "{}", resp.status());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, ingestion);
criterion_main!(benches);
