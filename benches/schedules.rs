//! Schedule fire lag at 10,000 schedules (issue 14): how long after its
//! tick each schedule's run is asked for, when 10,000 schedules share one
//! minute.
//!
//! A control plane and a node run in this process (the test harness of
//! `control/tests/common`); the schedules (`* * * * *`, UTC, no jitter) are
//! created through the API, all on one hello-agent, and their next tick put
//! on one minute (in the database: creating them may cross a minute). The
//! bench waits for that tick's 10,000 fires and
//! prints the lag (`schedule_fires.created_at_ms - tick_ms`: when the fire
//! queued the run) at p50, p99 and max, then the same for the runs'
//! end (`runs.finished_at_ms`: delivered by the dispatcher, run by the
//! node, usage reported). One control-plane replica, so
//! this is one fire loop's rate. SQLite, and PostgreSQL too when
//! `DELTA_TEST_POSTGRES_URL` is set.
//!
//! Run: `cargo bench --workspace --bench schedules --profile dev`
//! (`DELTA_BENCH_SCHEDULES=N` for another count); figures are recorded in
//! `benches/README.md`. Not criterion: one tick is one sample of 10,000.

#[path = "../control/tests/common/mod.rs"]
#[allow(missing_docs, unused_imports)]
mod common;

use std::time::{Duration, Instant};

use common::bounties::{create_agent, upload};
use common::{Control, Dialect};
use delta_control::db::now_ms;
use delta_guest_artifacts as guests;
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn percentile(sorted: &[i64], q: f64) -> i64 {
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn one(dialect: Dialect, name: &str, count: usize) {
    let ctl = Control::start(dialect).await;
    let _node = common::start_node_in_process(&ctl, "bench-node", "").await;
    let alice = ctl.register("alice").await;
    let hello = upload(
        &ctl,
        &alice,
        &std::fs::read(guests::HELLO_AGENT).expect("guest"),
    )
    .await;
    let agent = create_agent(&ctl, &alice, "ticker", &hello).await;
    let made = Instant::now();
    let path = format!("/v1/agents/{agent}/schedules");
    let created: Vec<StatusCode> = futures_util::stream::iter(0..count)
        .map(|i| {
            let (ctl, access, path) = (&ctl, &alice.access, &path);
            async move {
                let (status, body) = ctl
                    .call(
                        Method::POST,
                        path,
                        Some(access),
                        Some(json!({ "cron": "* * * * *", "time_zone": "UTC",
                                     "input": { "name": format!("s{i}") } })),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                status
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    eprintln!(
        "{name}: {} schedules created in {:.1} s",
        created.len(),
        made.elapsed().as_secs_f64()
    );
    // Creation may have crossed a minute: every schedule's next tick is
    // put on the first minute at least 5 s away (a tick of their cron).
    let tick = (now_ms() + 5_000).div_euclid(60_000) * 60_000 + 60_000;
    sqlx::query("UPDATE schedules SET next_tick_ms = $1, next_fire_at_ms = $1")
        .bind(tick)
        .execute(ctl.state.db.pool())
        .await
        .expect("set the tick");
    eprintln!(
        "{name}: waiting {:.0} s for the tick",
        (tick - now_ms()) as f64 / 1000.0
    );
    let deadline = Instant::now()
        + Duration::from_millis(u64::try_from(tick - now_ms()).unwrap_or(0))
        + Duration::from_secs(55);
    let lags: Vec<i64> = loop {
        let lags: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at_ms - tick_ms FROM schedule_fires WHERE tick_ms = $1 \
             ORDER BY 1",
        )
        .bind(tick)
        .fetch_all(ctl.state.db.pool())
        .await
        .expect("fires");
        if lags.len() >= count {
            break lags;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} fired before the next tick",
            lags.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let refused: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM schedule_fires WHERE tick_ms = $1 AND error IS NOT NULL",
    )
    .bind(tick)
    .fetch_one(ctl.state.db.pool())
    .await
    .expect("errors");
    println!(
        "{name}: {} fires of one tick: lag p50 {} ms, p99 {} ms, max {} ms; {refused} refused",
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
    );
    // No next tick's storm: disabled, not deleted (their fires stay).
    sqlx::query("UPDATE schedules SET enabled = 0")
        .execute(ctl.state.db.pool())
        .await
        .expect("disable");
    // The runs those fires queued, delivered by the dispatcher and run by
    // the node: how long after the tick each one had finished.
    let deadline = Instant::now() + Duration::from_secs(300);
    let done: Vec<i64> = loop {
        let done: Vec<i64> = sqlx::query_scalar(
            "SELECT r.finished_at_ms - f.tick_ms FROM schedule_fires f \
             JOIN runs r ON r.id = f.run_id \
             WHERE f.tick_ms = $1 AND r.finished_at_ms IS NOT NULL ORDER BY 1",
        )
        .bind(tick)
        .fetch_all(ctl.state.db.pool())
        .await
        .expect("runs");
        if done.len() >= lags.len() - usize::try_from(refused).unwrap_or(0) {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} runs finished within 5 minutes",
            done.len(),
            lags.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "{name}: their {} runs finished: after the tick p50 {} ms, p99 {} ms, max {} ms",
        done.len(),
        percentile(&done, 0.50),
        percentile(&done, 0.99),
        percentile(&done, 1.0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any filter argument is ignored.
    let count: usize = std::env::var("DELTA_BENCH_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(one(Dialect::Sqlite, "sqlite", count));
    if std::env::var_os("DELTA_TEST_POSTGRES_URL").is_some() {
        rt.block_on(one(Dialect::Postgres, "postgres", count));
    }
}
