//! The sweep: expired data is hard-deleted, and on PostgreSQL only one
//! replica sweeps at a time (advisory lock).

mod common;

use common::{Control, Dialect};
use delta_control::db::now_ms;
use delta_control::sweep::{SWEEP_LOCK_KEY, sweep_once};
use sqlx::Connection as _;

/// An idempotency row created `age_ms` ago whose stored answer holds
/// `marker` in clear (real rows are sealed; a clear marker lets the test
/// look for it in the database files).
async fn stored_answer(ctl: &Control, key: &str, age_ms: i64, marker: &str) {
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, lock_token, \
             locked_until_ms, status, response, created_at_ms, completed_at_ms) \
         VALUES ('scope', $1, 'h', 'complete', 't', 0, 200, $2, $3, $3)",
    )
    .bind(key)
    .bind(marker)
    .bind(now_ms() - age_ms)
    .execute(ctl.state.db.pool())
    .await
    .expect("row");
}

async fn keys(ctl: &Control) -> Vec<String> {
    sqlx::query_as::<_, (String,)>("SELECT idem_key FROM idempotency_keys ORDER BY idem_key")
        .fetch_all(ctl.state.db.pool())
        .await
        .expect("keys")
        .into_iter()
        .map(|(k,)| k)
        .collect()
}

/// Stored answers go after the run-output retention when it is shorter
/// than the idempotency window (they may hold run outputs), and on SQLite
/// nothing of them is left in the database files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_answers_expire_with_run_outputs_and_leave_no_trace() {
    let ctl = Control::start_with(Dialect::Sqlite, |c| {
        c.idempotency_ttl_secs = 24 * 3600;
        c.run_output_ttl_secs = 3600;
    })
    .await;
    let marker = "run-output-marker-7f3a9c";
    stored_answer(&ctl, "old", 2 * 3600 * 1000, marker).await;
    stored_answer(&ctl, "new", 60 * 1000, "fresh-answer").await;
    // The server's own sweep may get there first; either way the result is
    // the same.
    let report = sweep_once(&ctl.state, now_ms()).await.expect("sweep");
    assert!(report.is_some());
    assert_eq!(keys(&ctl).await, vec!["new".to_owned()]);
    for file in ["control.db", "control.db-wal"] {
        let path = ctl.state_dir().join(file);
        let bytes = std::fs::read(&path).unwrap_or_default();
        let found = bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
        assert!(!found, "{} still holds the deleted answer", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_sweeps_at_a_time_on_postgres() {
    let ctl = Control::start(Dialect::Postgres).await;
    // A second "replica": its own connection holding the sweep's lock.
    let url = ctl.state.config.database_url();
    let mut other = sqlx::PgConnection::connect(&url).await.expect("connect");
    // This control plane's own sweep takes the lock for a moment every
    // second: try until this connection has it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(SWEEP_LOCK_KEY)
            .fetch_one(&mut other)
            .await
            .expect("lock");
        if got {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep lock is never free"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stored_answer(&ctl, "old", 3 * 24 * 3600 * 1000, "x").await;

    for _ in 0..3 {
        let skipped = sweep_once(&ctl.state, now_ms()).await.expect("sweep");
        assert_eq!(skipped, None, "the lock is held elsewhere");
    }
    assert_eq!(
        keys(&ctl).await,
        vec!["old".to_owned()],
        "nothing swept meanwhile"
    );

    let (released,): (bool,) = sqlx::query_as("SELECT pg_advisory_unlock($1)")
        .bind(SWEEP_LOCK_KEY)
        .fetch_one(&mut other)
        .await
        .expect("unlock");
    assert!(released);
    // Now this replica (or its background task) sweeps.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = sweep_once(&ctl.state, now_ms()).await.expect("sweep");
        if keys(&ctl).await.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never swept: {report:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // And the lock is released after each pass: the other replica gets it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (again,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(SWEEP_LOCK_KEY)
            .fetch_one(&mut other)
            .await
            .expect("lock");
        if again {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper kept the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
