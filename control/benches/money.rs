//! Ledger transfers per second through `delta_control::money::apply_transfers`
//! (what every bounty operation and top-up calls), in batches of 1, 100 and
//! 1,000 transfers per database transaction, on SQLite (WAL, as `delta up`
//! opens it) and, when `DELTA_TEST_POSTGRES_URL` is set, on a fresh
//! PostgreSQL database.
//!
//! 64 tenant accounts start with a large balance from `external`; each
//! transfer moves 1 minor unit between two of them (TigerBeetle's design
//! batches thousands of transfers per request: the batch shares one lock
//! pass, one read of existing ids and one write per touched account). After
//! each configuration the conservation check runs: the sum over all
//! accounts is 0 and nothing is pending. Criterion reports transfers/s as
//! elements/s. Targets (issue 17): >= 50,000/s on SQLite, >= 20,000/s on
//! PostgreSQL.
//!
//! Run: `cargo bench -p delta-control --bench money` (a release build of
//! the control plane only: no Wasmtime); figures go to benches/README.md.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use delta_control::db::Db;
use delta_control::money::{AccountKind, Write, apply_transfers, ensure_account};
use delta_money::{Transfer, TransferKind};

const ACCOUNTS: usize = 64;
const BATCHES: [u64; 3] = [1, 100, 1_000];
const CUR: &str = "EUR";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

async fn setup(url: &str) -> (Db, Vec<String>) {
    let db = Db::connect(url).await.expect("database");
    let mut w = Write::begin(&db).await.expect("begin");
    let external = ensure_account(w.conn(), AccountKind::External, None, CUR, 0)
        .await
        .expect("external");
    let mut ids = Vec::new();
    let mut fill = Vec::new();
    for i in 0..ACCOUNTS {
        let tenant = format!("t{i}");
        let id = ensure_account(w.conn(), AccountKind::Tenant, Some(&tenant), CUR, 0)
            .await
            .expect("account");
        fill.push(Transfer {
            id: format!("fill:{i}"),
            debit_account_id: external.clone(),
            credit_account_id: id.clone(),
            amount: 1 << 40,
            ledger: CUR.into(),
            kind: TransferKind::SinglePhase,
        });
        ids.push(id);
    }
    apply_transfers(w.conn(), &fill, 0).await.expect("fill");
    w.commit().await.expect("commit");
    (db, ids)
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// `iters` transfers in batches of `batch`, one transaction per batch.
async fn run(db: &Db, ids: &[String], batch: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch);
        left -= n;
        let transfers: Vec<Transfer> = (0..n)
            .map(|_| {
                let k = NEXT.fetch_add(1, Ordering::Relaxed);
                let from = usize::try_from(k).unwrap_or(0) % ACCOUNTS;
                let to =
                    (from + 1 + usize::try_from(k / 7).unwrap_or(0) % (ACCOUNTS - 1)) % ACCOUNTS;
                Transfer {
                    id: format!("bench:{k}"),
                    debit_account_id: ids[from].clone(),
                    credit_account_id: ids[to].clone(),
                    amount: 1,
                    ledger: CUR.into(),
                    kind: TransferKind::SinglePhase,
                }
            })
            .collect();
        let mut w = Write::begin(db).await.expect("begin");
        apply_transfers(w.conn(), &transfers, 1)
            .await
            .expect("apply");
        w.commit().await.expect("commit");
    }
    start.elapsed()
}

fn bench_backend(c: &mut Criterion, name: &str, mut url: impl FnMut() -> String) {
    let rt = runtime();
    let mut group = c.benchmark_group(format!("money/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(2));
    for &batch in &BATCHES {
        let (db, ids) = rt.block_on(setup(&url()));
        group.bench_function(BenchmarkId::new("batch", batch), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| run(&db, &ids, batch, iters));
        });
        let (posted, pending) = rt
            .block_on(delta_control::money::store::totals(&db, CUR))
            .expect("totals");
        assert_eq!(
            (posted, pending),
            (0, 0),
            "conservation after batch {batch}"
        );
    }
    group.finish();
}

fn money(c: &mut Criterion) {
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

/// A fresh database on the server `admin` names (dropped by hand: see
/// benches/README.md).
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

criterion_group!(benches, money);
criterion_main!(benches);
