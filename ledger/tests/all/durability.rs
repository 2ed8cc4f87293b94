//! Durability and tamper-resistance of the ledger file.
#![allow(missing_docs, clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{check_invariants, ctx, db, family, raw};
use delta_host_api::BudgetLedger;
use delta_ledger::SqliteLedger;

const CHILD_ENV: &str = "DELTA_LEDGER_CRASH_CHILD_DB";

#[tokio::test]
async fn acknowledged_operations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    let r = l.reserve(&ctx("bot-a"), 100, "x").await.unwrap();
    l.settle(&r, 60).await.unwrap();
    let open = l.reserve(&ctx("bot-b"), 70, "x").await.unwrap();
    l.close().await.unwrap();

    let l = SqliteLedger::open(&path).await.unwrap();
    assert_eq!(l.balance("bot-a").await.unwrap().spent, 60);
    assert_eq!(l.balance("bot-b").await.unwrap().reserved, 70);
    // The open hold was reloaded and can be finished; ids are not reused.
    l.release(&open).await.unwrap();
    let r2 = l.reserve(&ctx("bot-a"), 1, "x").await.unwrap();
    assert_ne!(r2.id, r.id);
    assert_ne!(r2.id, open.id);
    l.settle(&r2, 1).await.unwrap();
    l.close().await.unwrap();
    check_invariants(&path).await;
}

/// Not a test on its own: the body of the crashing child process that
/// `acknowledged_operations_survive_a_crash` runs.
#[tokio::test]
async fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let l = family(std::path::Path::new(&path)).await;
    let mut out = std::io::stdout();
    for i in 0..200u64 {
        let r = l.reserve(&ctx("bot-a"), 3, "x").await.unwrap();
        l.settle(&r, 2).await.unwrap();
        use std::io::Write;
        // Printed only after the settle was acknowledged.
        writeln!(out, "ACK {}", i + 1).unwrap();
        out.flush().unwrap();
    }
    // Die without closing anything: no destructor, no checkpoint.
    std::process::abort();
}

#[tokio::test]
async fn acknowledged_operations_survive_a_crash() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "durability::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    let mut child = child;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("ACK ") {
            acked = n.parse().unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child should have aborted");
    assert_eq!(acked, 200);

    let l = SqliteLedger::open(&path).await.unwrap();
    let b = l.balance("bot-a").await.unwrap();
    assert_eq!((b.spent, b.reserved), (2 * acked, 0));
    l.close().await.unwrap();
    check_invariants(&path).await;
}

#[tokio::test]
async fn ledger_entries_are_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    l.close().await.unwrap();
    let mut c = raw(&path).await;
    let upd = sqlx::query("UPDATE ledger_entries SET amount = 0")
        .execute(&mut c)
        .await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM ledger_entries")
        .execute(&mut c)
        .await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(n > 0);
}

#[tokio::test]
async fn schema_refuses_impossible_balances() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    l.close().await.unwrap();
    let mut c = raw(&path).await;
    for sql in [
        "UPDATE accounts SET spent = allocated + 1 WHERE agent_id = 'bot-a'",
        "UPDATE accounts SET reserved = allocated - spent + 1 WHERE agent_id = 'bot-a'",
        "UPDATE accounts SET allocated = -1 WHERE agent_id = 'bot-a'",
        "UPDATE accounts SET spent = -1 WHERE agent_id = 'bot-a'",
        "UPDATE accounts SET parent_id = NULL WHERE agent_id = 'bot-a'",
        "UPDATE users SET carved = monthly_allocation + 1",
        "INSERT INTO token_requests (bot_id, parent_id, amount, reason, status, created_at) \
         VALUES ('bot-a', 'main', 0, '', 'pending', 0)",
    ] {
        assert!(
            sqlx::query(sql).execute(&mut c).await.is_err(),
            "accepted: {sql}"
        );
    }
}

#[tokio::test]
async fn failed_batch_changes_nothing_and_ledger_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    // Make the database refuse one particular write, as a full disk would.
    let mut c = raw(&path).await;
    sqlx::query(
        "CREATE TRIGGER boom BEFORE INSERT ON reservations WHEN NEW.purpose = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'boom'); END",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let err = l.reserve(&ctx("bot-a"), 100, "boom").await.unwrap_err();
    assert!(
        matches!(err, delta_host_api::LedgerError::Storage(ref s) if s.contains("boom")),
        "{err:?}"
    );
    let b = l.balance("bot-a").await.unwrap();
    assert_eq!((b.reserved, b.available), (0, 1_000));
    // The writer reloaded its state and carries on.
    let r = l.reserve(&ctx("bot-a"), 100, "fine").await.unwrap();
    l.settle(&r, 100).await.unwrap();
    assert_eq!(l.balance("bot-a").await.unwrap().spent, 100);
    l.close().await.unwrap();
    check_invariants(&path).await;
}
