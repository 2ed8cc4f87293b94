//! Helpers shared by the ledger tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use delta_host_api::CallContext;
use delta_ledger::{RequestLimits, SqliteLedger};
use sqlx::{Connection, SqliteConnection};

pub fn ctx(agent: &str) -> CallContext {
    CallContext {
        tenant_id: Arc::from("tenant"),
        agent_id: Arc::from(agent),
        run_id: Arc::from("run-1"),
    }
}

pub fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("ledger.db")
}

/// user `u` (10,000 tokens, Developer), main agent `main` with 6,000 and
/// limits auto 500 / max 2,000, bots `bot-a` and `bot-b` with 1,000 each.
pub async fn family(path: &Path) -> SqliteLedger {
    let l = SqliteLedger::open(path).await.unwrap();
    l.create_user("u", "developer", 10_000, "2025-01")
        .await
        .unwrap();
    l.create_main_agent(
        "main",
        "u",
        6_000,
        RequestLimits {
            auto_approve_limit: 500,
            max_request: 2_000,
        },
    )
    .await
    .unwrap();
    l.create_bot("bot-a", "main", 1_000).await.unwrap();
    l.create_bot("bot-b", "main", 1_000).await.unwrap();
    l
}

pub async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

/// Every invariant the schema and the ledger promise, checked on the file.
pub async fn check_invariants(path: &Path) {
    let mut c = raw(path).await;
    // Summing each account's entries reproduces its balance.
    let rows: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT a.agent_id, a.allocated, a.spent, a.reserved, \
                COALESCE(SUM(e.d_allocated), 0), COALESCE(SUM(e.d_spent), 0), COALESCE(SUM(e.d_reserved), 0) \
         FROM accounts a LEFT JOIN ledger_entries e ON e.agent_id = a.agent_id GROUP BY a.agent_id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    for (agent, al, sp, re, dal, dsp, dre) in rows {
        assert_eq!(
            (al, sp, re),
            (dal, dsp, dre),
            "entries do not reconcile for {agent}"
        );
        assert!(
            al >= 0 && sp >= 0 && re >= 0 && sp + re <= al,
            "{agent}: {al} {sp} {re}"
        );
    }
    // Reserved equals the open holds of the current period.
    let bad: Vec<(String,)> = sqlx::query_as(
        "SELECT a.agent_id FROM accounts a WHERE a.reserved != \
         (SELECT COALESCE(SUM(r.amount), 0) FROM reservations r WHERE r.agent_id = a.agent_id AND r.period = a.period)",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(bad.is_empty(), "reserved != open holds for {bad:?}");
    // A user's carved tokens are its main agents' grants; a family's
    // allocations add up to the main agent's grant (before spending).
    let bad: Vec<(String,)> = sqlx::query_as(
        "SELECT u.user_id FROM users u WHERE u.carved != \
         (SELECT COALESCE(SUM(grant_amount), 0) FROM accounts WHERE user_id = u.user_id AND kind = 'main')",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(bad.is_empty(), "carved mismatch for {bad:?}");
    let bad: Vec<(String,)> = sqlx::query_as(
        "SELECT m.agent_id FROM accounts m WHERE m.kind = 'main' AND m.grant_amount != \
         m.allocated + (SELECT COALESCE(SUM(allocated), 0) FROM accounts b WHERE b.parent_id = m.agent_id)",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(
        bad.is_empty(),
        "family allocation not conserved for {bad:?}"
    );
    c.close().await.unwrap();
}
