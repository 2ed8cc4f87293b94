//! The sweep: expired data is hard-deleted, and on PostgreSQL only one
//! replica sweeps at a time (advisory lock).

use crate::common;

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

const DAY_MS: i64 = 86_400_000;

async fn exec(ctl: &Control, sql: &str, at: i64) {
    sqlx::query(sql)
        .bind(at)
        .execute(ctl.state.db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn ids(ctl: &Control, table: &str, key: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>(&format!("SELECT {key} FROM {table} ORDER BY {key}"))
        .fetch_all(ctl.state.db.pool())
        .await
        .expect("ids")
        .into_iter()
        .map(|(k,)| k)
        .collect()
}

/// Rows of every table with a retention, `tag`ged, at `at`.
async fn aged_rows(ctl: &Control, tag: &str, at: i64) {
    exec(
        ctl,
        &format!(
            "INSERT INTO budget_leases (id, tenant_id, user_id, agent_id, node_id, granted, \
                 spent, status, created_at_ms, expires_at_ms, returned_at_ms) \
             VALUES ('{tag}-returned', 't', 'u', 'a', 'n', 10, 3, 'returned', $1, $1, $1), \
                    ('{tag}-expired', 't', 'u', 'a', 'n', 10, NULL, 'expired', $1, $1, NULL)"
        ),
        at,
    )
    .await;
    exec(
        ctl,
        &format!(
            "INSERT INTO token_requests (id, tenant_id, user_id, bot_agent_id, \
                 parent_agent_id, amount, reason, status, decided_by, decided_at_ms, \
                 created_at_ms) \
             VALUES ('{tag}-denied', 't', 'u', 'b', 'a', 5, 'r', 'denied', 'u', $1, $1)"
        ),
        at,
    )
    .await;
    exec(
        ctl,
        &format!(
            "INSERT INTO usage_records (run_id, node_id, tenant_id, agent_id, payload, \
                 received_at_ms) VALUES ('{tag}-run', 'n', 't', 'a', '{{}}', $1)"
        ),
        at,
    )
    .await;
    exec(
        ctl,
        &format!(
            "INSERT INTO usage_batches (batch_id, node_id, records, accepted, received_at_ms) \
             VALUES ('{tag}-batch', 'n', 1, 1, $1)"
        ),
        at,
    )
    .await;
    exec(
        ctl,
        &format!(
            "INSERT INTO message_log (id, tenant_id, agent_id, run_id, node_id, channel, \
                 template_id, recipient, status, reason, tokens, provider_id, at_ms, \
                 received_at_ms) \
             VALUES ('{tag}-msg', 't', 'a', 'r', 'n', 'email', 'w', 'ada@example.com', \
                 'sent', NULL, 1, NULL, $1, $1)"
        ),
        at,
    )
    .await;
}

/// Finished leases, decided token requests, usage records and batches go
/// after the record retention, message attempts after the audit retention;
/// an active lease stays whatever its age; a backlog drains a chunk per
/// pass. The sweeps here run at future instants over rows the server's own
/// sweep (at the real now) leaves alone.
/// One sweep pass as if at `at`, waiting for the control plane's own pass
/// (which holds the sweep lock for a moment each second) to let go.
async fn sweep_at(ctl: &Control, at: i64) -> delta_control::sweep::SweepReport {
    for _ in 0..100 {
        if let Some(report) = sweep_once(&ctl.state, at).await.expect("sweep") {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the sweep lock was never free");
}

async fn retention_deletes_what_aged_out(dialect: Dialect) {
    let ctl = Control::start_with(dialect, |c| {
        c.record_retention_secs = 90 * 24 * 3600;
        c.audit_retention_secs = 365 * 24 * 3600;
    })
    .await;
    let now = now_ms();
    let (first, second) = (now + 100 * DAY_MS, now + 370 * DAY_MS);
    aged_rows(&ctl, "old", now - 10 * DAY_MS).await;
    aged_rows(&ctl, "new", now + 20 * DAY_MS).await;
    exec(
        &ctl,
        "INSERT INTO budget_leases (id, tenant_id, user_id, agent_id, node_id, granted, \
             spent, status, created_at_ms, expires_at_ms, returned_at_ms) \
         VALUES ('active', 't', 'u', 'a', 'n', 10, NULL, 'active', 0, $1, NULL)",
        second + DAY_MS,
    )
    .await;
    // A backlog larger than one pass may delete.
    let backlog = delta_control::sweep::RETENTION_CHUNK + 10;
    exec(
        &ctl,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {backlog}) \
             INSERT INTO usage_batches (batch_id, node_id, records, accepted, received_at_ms) \
             SELECT 'backlog-' || CAST(i AS TEXT), 'n', 1, 1, $1 FROM n"
        ),
        now - 10 * DAY_MS,
    )
    .await;

    let report = sweep_at(&ctl, first).await;
    // Two old leases, a request and a usage record, plus one chunk of the
    // old batches (the backlog and old-batch).
    assert_eq!(
        report.retention_deleted,
        4 + delta_control::sweep::RETENTION_CHUNK as u64,
        "{report:?}"
    );
    assert_eq!(
        ids(&ctl, "budget_leases", "id").await,
        ["active", "new-expired", "new-returned"]
    );
    assert_eq!(ids(&ctl, "token_requests", "id").await, ["new-denied"]);
    assert_eq!(ids(&ctl, "usage_records", "run_id").await, ["new-run"]);
    assert_eq!(ids(&ctl, "usage_batches", "batch_id").await.len(), 11 + 1);
    assert_eq!(
        ids(&ctl, "message_log", "id").await,
        ["new-msg", "old-msg"],
        "attempts are kept for the audit retention"
    );

    let report = sweep_at(&ctl, first).await;
    assert_eq!(report.retention_deleted, 11, "the rest of the backlog");
    assert_eq!(ids(&ctl, "usage_batches", "batch_id").await, ["new-batch"]);

    sweep_at(&ctl, second).await;
    assert_eq!(ids(&ctl, "message_log", "id").await, ["new-msg"]);
    assert_eq!(ids(&ctl, "budget_leases", "id").await, ["active"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_what_aged_out_sqlite() {
    retention_deletes_what_aged_out(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_what_aged_out_postgres() {
    retention_deletes_what_aged_out(Dialect::Postgres).await;
}

/// A usage record older than the record retention is refused at ingestion
/// (its run id may already be swept, so a resend would count twice); a
/// current one in the same batch is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_retention_are_refused() {
    let ctl = Control::start_with(Dialect::Sqlite, |c| {
        c.record_retention_secs = 90 * 24 * 3600;
    })
    .await;
    let alice = ctl.register("alice").await;
    let agent = common::insert_agent(&ctl, &alice, "x", Some("node-a")).await;
    let cred = ctl.node_credential("node-a").await;
    let now = now_ms();
    let record = |run: &str, at: i64| {
        serde_json::json!({
            "run_id": run, "agent_id": agent, "tenant_id": alice.tenant_id, "outcome": "completed",
            "fuel_used": 1, "wall_time_us": 1, "peak_memory_bytes": 0,
            "llm": {}, "messages": {}, "finished_at_ms": at,
        })
    };
    let resp = ctl
        .client
        .post(ctl.url("/v1/nodes/usage"))
        .bearer_auth(&cred)
        .json(&serde_json::json!({
            "batch_id": "b1", "node_id": "node-a",
            "records": [record("stale", now - 91 * DAY_MS), record("current", now)],
        }))
        .send()
        .await
        .expect("usage");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let ack: serde_json::Value = resp.json().await.expect("ack");
    assert_eq!(
        (ack["accepted"].as_u64(), ack["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{ack}"
    );
    assert_eq!(ids(&ctl, "usage_records", "run_id").await, ["current"]);
}
