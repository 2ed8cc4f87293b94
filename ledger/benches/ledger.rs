//! Throughput of durable reserve+settle pairs through the group-committing
//! writer, from many concurrent tasks (as many runs calling an LLM at once).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use delta_host_api::{BudgetLedger, CallContext};
use delta_ledger::{RequestLimits, SqliteLedger};

/// Concurrent callers: each waits for its own commit, so throughput grows
/// with how many operations share one fsync (a node runs many agent runs at
/// once, each with at most one LLM call in flight).
const TASKS: [u64; 2] = [256, 1024];
const BOTS: usize = 8;

fn ctx(agent: &str) -> CallContext {
    CallContext {
        tenant_id: Arc::from("t"),
        agent_id: Arc::from(agent),
        run_id: Arc::from("bench"),
    }
}

fn pairs(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = rt.block_on(async {
        let l = SqliteLedger::open(dir.path().join("bench.db"))
            .await
            .unwrap();
        let big = 1u64 << 60;
        l.create_user("u", "bench", big, "2025-01").await.unwrap();
        l.create_main_agent("main", "u", big, RequestLimits::default())
            .await
            .unwrap();
        for i in 0..BOTS {
            l.create_bot(&format!("bot-{i}"), "main", big / 16)
                .await
                .unwrap();
        }
        Arc::new(l)
    });
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for n_tasks in TASKS {
        g.bench_function(format!("reserve_settle_pair_{n_tasks}_tasks"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let ledger = ledger.clone();
                async move {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for t in 0..n_tasks {
                        let n = iters / n_tasks + u64::from(t < iters % n_tasks);
                        let ledger = ledger.clone();
                        tasks.push(tokio::spawn(async move {
                            let c = ctx(&format!("bot-{}", t as usize % BOTS));
                            for _ in 0..n {
                                let r = ledger.reserve(&c, 100, "llm:bench").await.unwrap();
                                ledger.settle(&r, 60).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, pairs);
criterion_main!(benches);
