//! The spend journal under the lease client: durable before the caller
//! sees a result, and read back by the next process after a crash.

use super::*;
use crate::journal::{Journal, JournalJob};
use crate::store::Store;

/// A journal writing into `store` the way the node's recorder does (one
/// transaction per group of queued writes).
fn journal_into(store: &Store) -> Journal {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<JournalJob>(64);
    let store = store.clone();
    tokio::spawn(async move {
        let mut jobs = Vec::new();
        while rx.recv_many(&mut jobs, 64).await > 0 {
            let ops: Vec<JournalOp> = jobs.iter().map(|j| j.op.clone()).collect();
            let result = store.journal_write(&ops).await.map_err(|e| e.to_string());
            for j in jobs.drain(..) {
                if let Some(done) = j.done {
                    let _ = done.send(result.clone());
                }
            }
        }
    });
    Journal::new(tx)
}

async fn journaled(store: &Store) -> Vec<(String, u64, u64)> {
    store
        .journal_unreturned()
        .await
        .expect("journal")
        .into_iter()
        .map(|l| (l.lease_id, l.granted, l.spent))
        .collect()
}

async fn journal_becomes(store: &Store, want: Vec<(String, u64, u64)>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = journaled(store).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "journal {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn spend_is_journaled_before_the_caller_sees_it_and_reported_after_a_crash() {
    let cp = Mock::start(60_000, &[("bot", 10_000, Some("main"))]).await;
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("node.db"))
        .await
        .expect("store");

    let first = cp.ledger(patient());
    first.attach_journal(journal_into(&store), Vec::new()).await;
    let r = first
        .reserve(&ctx("bot"), 100, "llm:m")
        .await
        .expect("reserve");
    // The lease and the hold (whole) are on disk before the call proceeds.
    assert_eq!(journaled(&store).await, vec![("lse_0".into(), 1_000, 100)]);
    first.settle(&r, 60).await.expect("settle");
    // What was used replaced the hold before settle answered.
    assert_eq!(journaled(&store).await, vec![("lse_0".into(), 1_000, 60)]);
    let r = first
        .reserve(&ctx("bot"), 100, "llm:m")
        .await
        .expect("reserve");
    first.settle(&r, 70).await.expect("settle");
    let released = first
        .reserve(&ctx("bot"), 50, "llm:m")
        .await
        .expect("reserve");
    first.release(&released).await.expect("release");
    // In flight when the process dies: counted whole.
    let _in_flight = first
        .reserve(&ctx("bot"), 100, "llm:m")
        .await
        .expect("reserve");
    // `kill -9`: nothing is returned.
    drop(first);
    // The release is queued without waiting: 60 + 70 + 100 in flight.
    journal_becomes(&store, vec![("lse_0".into(), 1_000, 230)]).await;
    assert!(cp.books().returns.is_empty());

    // The next process finds the lease and reports its journaled spend.
    let second = cp.ledger(patient());
    let unreturned = store.journal_unreturned().await.expect("journal");
    second
        .attach_journal(journal_into(&store), unreturned)
        .await;
    until("the lease is returned", || !cp.books().returns.is_empty()).await;
    assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 230)]);
    let acc = cp.account("bot");
    assert_eq!((acc.spent, acc.reserved), (230, 0));
    // Confirmed: its journal rows are gone.
    journal_becomes(&store, Vec::new()).await;
    assert_eq!(second.pending_returns(), 0);
    assert!(cp.books().violations.is_empty());
}
