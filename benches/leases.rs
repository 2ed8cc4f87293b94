//! Lease grant + return pairs per second through the budget authority's
//! functions (`delta_control::budgets::{grant_lease, return_lease}`, the
//! ones the node endpoints call), with concurrent callers, on SQLite (the
//! embedded default: WAL, `synchronous=NORMAL`, as `delta up` opens it) and,
//! when `DELTA_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL database.
//!
//! Each caller works on its own agent (many bots on a node), or all on one
//! agent (the hot-account worst case). A pair = grant 10 tokens, return the
//! lease having spent 3; criterion reports pairs/s as elements/s.
//! Target (issue 7): >= 5,000 pairs/s.
//!
//! Run: `cargo bench --bench leases`; figures are recorded in
//! `benches/README.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use delta_control::agents::{Agent, AgentGrants, Kind, Limits};
use delta_control::budgets;
use delta_control::config::ControlConfig;
use delta_control::db::{Db, now_ms};

/// Concurrent callers.
const CALLERS: [usize; 3] = [1, 16, 64];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

/// A database with one tenant, one user on a tier large enough never to
/// run out, and `agents` main agents.
async fn setup(url: &str, agents: usize) -> (Db, Vec<String>) {
    let db = Db::connect(url).await.expect("database");
    let mut config = ControlConfig::default();
    config.tiers.insert("bench".into(), 1 << 60);
    config.default_tier = "bench".into();
    sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ('t', 'bench', 0)")
        .execute(db.pool())
        .await
        .expect("tenant");
    let mut ids = Vec::new();
    for i in 0..agents {
        let agent = Agent {
            id: format!("agt_bench{i}"),
            tenant_id: "t".into(),
            name: format!("bench-{i}"),
            kind: Kind::Main,
            parent_agent_id: None,
            component: String::new(),
            limits: Limits::default(),
            grants: AgentGrants::default(),
            paused: false,
            node_loss: Default::default(),
            node_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let mut tx = db.pool().begin().await.expect("begin");
        budgets::open_account(&mut tx, &config, &agent, "user", 1 << 50)
            .await
            .map_err(|e| e.message)
            .expect("account");
        tx.commit().await.expect("commit");
        ids.push(agent.id);
    }
    (db, ids)
}

/// `iters` pairs spread over `callers` tasks, each on `agents[task % len]`.
async fn pairs(db: Arc<Db>, agents: Arc<Vec<String>>, callers: usize, iters: u64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(callers);
    for c in 0..callers {
        let (db, agents) = (Arc::clone(&db), Arc::clone(&agents));
        let share = iters / callers as u64 + u64::from((c as u64) < iters % callers as u64);
        tasks.push(tokio::spawn(async move {
            let agent = &agents[c % agents.len()];
            for _ in 0..share {
                let lease = budgets::grant_lease(&db, "bench-node", agent, 10, 1, 60_000, now_ms())
                    .await
                    .expect("grant");
                budgets::return_lease(&db, &lease.lease_id, 3, now_ms())
                    .await
                    .expect("return");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    start.elapsed()
}

fn bench_backend(c: &mut Criterion, name: &str, mut url: impl FnMut() -> String) {
    let rt = runtime();
    let mut group = c.benchmark_group(format!("leases/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(2));
    for &callers in &CALLERS {
        for (shape, agents) in [("agent_per_caller", callers), ("one_agent", 1)] {
            if callers == 1 && shape == "one_agent" {
                continue;
            }
            let (db, ids) = rt.block_on(setup(&url(), agents));
            let (db, ids) = (Arc::new(db), Arc::new(ids));
            group.bench_function(BenchmarkId::new(shape, callers), |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| pairs(Arc::clone(&db), Arc::clone(&ids), callers, iters));
            });
        }
    }
    group.finish();
}

fn leases(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    bench_backend(c, "sqlite", || {
        n += 1;
        format!("sqlite://{}/bench-{n}.db?mode=rwc", dir.path().display())
    });
    if let Ok(admin) = std::env::var("DELTA_TEST_POSTGRES_URL") {
        let rt = runtime();
        bench_backend(c, "postgres", || rt.block_on(fresh_postgres(&admin)));
    }
}

/// A fresh database on the server `admin` names.
async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let name = format!("delta_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("connecting to DELTA_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("a URL with a path");
    format!("{base}/{name}")
}

criterion_group!(benches, leases);
criterion_main!(benches);
