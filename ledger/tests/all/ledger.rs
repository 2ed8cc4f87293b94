//! Behaviour of `SqliteLedger` over a real SQLite file.
#![allow(missing_docs, clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{check_invariants, ctx, db, family};
use delta_host_api::budget::{BudgetError, RequestStatus};
use delta_host_api::{BudgetLedger, LedgerError, Reservation};
use delta_ledger::{AccountKind, Decision, Error, RequestLimits};

#[tokio::test]
async fn hierarchy_carves_from_user_pool_and_parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;

    let u = l.user("u").await.unwrap();
    assert_eq!(
        (u.monthly_allocation, u.carved, u.reserve_pool),
        (10_000, 6_000, 4_000)
    );
    assert_eq!(u.tier, "developer");
    assert_eq!(u.period, "2025-01");

    let m = l.balance("main").await.unwrap();
    assert_eq!(m.kind, AccountKind::Main);
    assert_eq!((m.grant, m.allocated, m.available), (6_000, 4_000, 4_000));
    assert_eq!((m.auto_approve_limit, m.max_request), (500, 2_000));
    let b = l.balance("bot-a").await.unwrap();
    assert_eq!(b.kind, AccountKind::Bot);
    assert_eq!(b.parent_id.as_deref(), Some("main"));
    assert_eq!((b.grant, b.allocated, b.available), (1_000, 1_000, 1_000));

    // Main agents come out of the reserve pool, and only as far as it goes.
    assert_eq!(
        l.create_main_agent("main2", "u", 4_001, RequestLimits::default())
            .await,
        Err(Error::InsufficientReserve {
            needed: 4_001,
            available: 4_000
        })
    );
    l.create_main_agent("main2", "u", 4_000, RequestLimits::default())
        .await
        .unwrap();
    assert_eq!(l.user("u").await.unwrap().reserve_pool, 0);

    // Bots come out of the parent's available tokens.
    assert_eq!(
        l.create_bot("bot-c", "main", 4_001).await,
        Err(Error::Insufficient {
            needed: 4_001,
            available: 4_000
        })
    );
    let c = l.create_bot("bot-c", "main", 4_000).await.unwrap();
    assert_eq!(c.allocated, 4_000);
    assert_eq!(l.balance("main").await.unwrap().available, 0);

    // Bad parents and ids.
    assert_eq!(
        l.create_bot("x", "bot-a", 1).await,
        Err(Error::NotAMainAgent("bot-a".into()))
    );
    assert_eq!(
        l.create_bot("x", "nobody", 1).await,
        Err(Error::UnknownAccount("nobody".into()))
    );
    assert_eq!(
        l.create_bot("bot-a", "main", 0).await,
        Err(Error::AlreadyExists("bot-a".into()))
    );
    assert_eq!(
        l.create_main_agent("m", "nobody", 1, RequestLimits::default())
            .await,
        Err(Error::UnknownUser("nobody".into()))
    );
    assert_eq!(
        l.create_user("u", "pro", 1, "2025-01").await,
        Err(Error::AlreadyExists("u".into()))
    );
    assert_eq!(
        l.create_user("v", "pro", 1, "2025-13").await,
        Err(Error::InvalidPeriod("2025-13".into()))
    );
    assert_eq!(
        l.create_user("v", "pro", u64::MAX, "2025-01").await,
        Err(Error::AmountTooLarge(u64::MAX))
    );
    assert_eq!(
        l.balance("nobody").await,
        Err(Error::UnknownAccount("nobody".into()))
    );
    assert_eq!(
        l.user("nobody").await,
        Err(Error::UnknownUser("nobody".into()))
    );

    // A user's allocation can grow, but not below what main agents hold.
    assert_eq!(
        l.update_user("u", "developer", 9_999).await,
        Err(Error::AllocationBelowCarved {
            allocation: 9_999,
            carved: 10_000
        })
    );
    l.update_user("u", "team", 15_000).await.unwrap();
    let u = l.user("u").await.unwrap();
    assert_eq!((u.tier.as_str(), u.reserve_pool), ("team", 5_000));
    assert_eq!(
        l.update_user("nobody", "x", 1).await,
        Err(Error::UnknownUser("nobody".into()))
    );

    // Audit trail of the parent: allocate, then carves out.
    let kinds: Vec<String> = l
        .ledger_entries("main")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["allocate", "carve_out", "carve_out", "carve_out"]);
    let e = &l.ledger_entries("bot-c").await.unwrap()[0];
    assert_eq!(
        (e.kind.as_str(), e.d_allocated, e.counterparty.as_deref()),
        ("carve_in", 4_000, Some("main"))
    );

    l.close().await.unwrap();
    check_invariants(&path).await;
}

#[tokio::test]
async fn reserve_settle_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    let a = ctx("bot-a");

    let r = l.reserve(&a, 300, "llm:test").await.unwrap();
    assert_eq!((r.agent_id.as_str(), r.amount), ("bot-a", 300));
    let bal = l.remaining(&a).await.unwrap();
    assert_eq!(
        (bal.allocated, bal.spent, bal.reserved, bal.available),
        (1_000, 0, 300, 700)
    );

    // Settle charges what was used and returns the rest.
    let s = l.settle(&r, 120).await.unwrap();
    assert_eq!((s.charged, s.uncovered), (120, 0));
    let bal = l.remaining(&a).await.unwrap();
    assert_eq!((bal.spent, bal.reserved, bal.available), (120, 0, 880));

    // A reservation ends once.
    assert_eq!(
        l.settle(&r, 1).await,
        Err(LedgerError::UnknownReservation(r.id.clone()))
    );
    assert_eq!(
        l.release(&r).await,
        Err(LedgerError::UnknownReservation(r.id.clone()))
    );

    // Release returns everything.
    let r2 = l.reserve(&a, 880, "message:email").await.unwrap();
    assert_eq!(
        l.reserve(&a, 1, "x").await,
        Err(LedgerError::Insufficient {
            needed: 1,
            available: 0
        })
    );
    l.release(&r2).await.unwrap();
    assert_eq!(l.remaining(&a).await.unwrap().available, 880);

    // Too much, and u64 amounts beyond what SQLite stores.
    assert_eq!(
        l.reserve(&a, 881, "x").await,
        Err(LedgerError::Insufficient {
            needed: 881,
            available: 880
        })
    );
    assert_eq!(
        l.reserve(&a, u64::MAX, "x").await,
        Err(LedgerError::Insufficient {
            needed: u64::MAX,
            available: 880
        })
    );
    assert_eq!(
        l.reserve(&ctx("ghost"), 1, "x").await,
        Err(LedgerError::UnknownAccount("ghost".into()))
    );

    // Use beyond the hold: charged as far as the budget allows, rest uncovered.
    let r3 = l.reserve(&a, 100, "llm:test").await.unwrap();
    let s = l.settle(&r3, 1_000).await.unwrap();
    assert_eq!((s.charged, s.uncovered), (880, 120));
    let bal = l.remaining(&a).await.unwrap();
    assert_eq!((bal.spent, bal.reserved, bal.available), (1_000, 0, 0));
    // Huge reported usage never overflows.
    let r4 = l.reserve(&ctx("bot-b"), 10, "x").await.unwrap();
    let s = l.settle(&r4, u64::MAX).await.unwrap();
    assert_eq!((s.charged, s.uncovered), (1_000, u64::MAX - 1_000));

    // Another agent's reservation, forged or garbage ids.
    let r5 = l.reserve(&ctx("main"), 10, "x").await.unwrap();
    let forged = Reservation {
        agent_id: "bot-a".into(),
        ..r5.clone()
    };
    assert_eq!(
        l.settle(&forged, 1).await,
        Err(LedgerError::UnknownReservation(r5.id.clone()))
    );
    assert_eq!(
        l.release(&forged).await,
        Err(LedgerError::UnknownReservation(r5.id.clone()))
    );
    let junk = Reservation {
        id: "nope".into(),
        agent_id: "main".into(),
        amount: 1,
    };
    assert_eq!(
        l.settle(&junk, 1).await,
        Err(LedgerError::UnknownReservation("nope".into()))
    );
    l.release(&r5).await.unwrap();

    assert_eq!(
        l.remaining(&ctx("ghost")).await,
        Err(BudgetError::NotConfigured)
    );

    let kinds: Vec<String> = l
        .ledger_entries("bot-a")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "carve_in",
            "reserve",
            "settle",
            "reserve",
            "release",
            "reserve",
            "settle",
            "uncovered"
        ]
    );
    l.close().await.unwrap();
    check_invariants(&path).await;
}

#[tokio::test]
async fn requests_auto_pending_decide_expire() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    let a = ctx("bot-a");

    // Only bots have a parent to ask; amounts are bounded by the parent.
    assert_eq!(
        l.request(&ctx("main"), 10, "x".into()).await,
        Err(BudgetError::NoParent)
    );
    assert_eq!(
        l.request(&a, 0, "x".into()).await,
        Err(BudgetError::InvalidAmount(2_000))
    );
    assert_eq!(
        l.request(&a, 2_001, "x".into()).await,
        Err(BudgetError::InvalidAmount(2_000))
    );
    assert_eq!(
        l.request(&ctx("ghost"), 1, "x".into()).await,
        Err(BudgetError::NotConfigured)
    );

    // Within the auto-approve limit: approved at once, tokens moved.
    let t = l.request(&a, 500, "more context".into()).await.unwrap();
    assert_eq!(
        (t.amount, t.status, t.reason.as_str()),
        (500, RequestStatus::Approved, "more context")
    );
    assert_eq!(l.balance("bot-a").await.unwrap().allocated, 1_500);
    assert_eq!(l.balance("main").await.unwrap().allocated, 3_500);
    assert_eq!(l.poll_request(&a, t.id.clone()).await.unwrap(), t);
    let rec = l.token_request(&t.id).await.unwrap();
    assert_eq!(rec.decided_by.as_deref(), Some("auto"));

    // Above the limit: pending, nothing moves.
    let p = l.request(&a, 501, "big job".into()).await.unwrap();
    assert_eq!(p.status, RequestStatus::Pending);
    assert_eq!(l.balance("bot-a").await.unwrap().allocated, 1_500);

    // Another agent cannot see it; garbage ids are unknown too.
    assert_eq!(
        l.poll_request(&ctx("bot-b"), p.id.clone()).await,
        Err(BudgetError::UnknownRequest)
    );
    assert_eq!(
        l.poll_request(&ctx("main"), p.id.clone()).await,
        Err(BudgetError::UnknownRequest)
    );
    assert_eq!(
        l.poll_request(&a, "req-999".into()).await,
        Err(BudgetError::UnknownRequest)
    );
    assert_eq!(
        l.poll_request(&a, "x".into()).await,
        Err(BudgetError::UnknownRequest)
    );

    // Approval moves the tokens.
    let d = l
        .decide_request(&p.id, Decision::Approve, "owner@example")
        .await
        .unwrap();
    assert_eq!(
        (d.status, d.decided_by.as_deref()),
        (RequestStatus::Approved, Some("owner@example"))
    );
    assert!(d.decided_at_ms.is_some());
    assert_eq!(
        l.poll_request(&a, p.id.clone()).await.unwrap().status,
        RequestStatus::Approved
    );
    assert_eq!(l.balance("bot-a").await.unwrap().allocated, 2_001);
    assert_eq!(l.balance("main").await.unwrap().allocated, 2_999);
    assert_eq!(
        l.decide_request(&p.id, Decision::Deny, "owner").await,
        Err(Error::NotPending(p.id.clone()))
    );
    assert_eq!(
        l.decide_request("junk", Decision::Deny, "o").await,
        Err(Error::NotPending("junk".into()))
    );

    // Denial changes no balance.
    let q = l.request(&ctx("bot-b"), 700, "y".into()).await.unwrap();
    assert_eq!(q.status, RequestStatus::Pending);
    let d = l
        .decide_request(&q.id, Decision::Deny, "owner")
        .await
        .unwrap();
    assert_eq!(d.status, RequestStatus::Denied);
    assert_eq!(l.balance("bot-b").await.unwrap().allocated, 1_000);

    // Within the auto limit but the parent cannot cover it: pending; and an
    // approval the parent cannot cover is refused and stays pending.
    let hold = l.reserve(&ctx("main"), 2_999, "x").await.unwrap();
    let w = l.request(&a, 100, "z".into()).await.unwrap();
    assert_eq!(w.status, RequestStatus::Pending);
    assert_eq!(
        l.decide_request(&w.id, Decision::Approve, "owner").await,
        Err(Error::Insufficient {
            needed: 100,
            available: 0
        })
    );
    assert_eq!(
        l.poll_request(&a, w.id.clone()).await.unwrap().status,
        RequestStatus::Pending
    );
    l.release(&hold).await.unwrap();

    // Expiry: nothing is old enough for an hour; everything is for zero.
    assert_eq!(
        l.expire_requests(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(l.expire_requests(Duration::ZERO).await.unwrap(), 1);
    let rec = l.token_request(&w.id).await.unwrap();
    assert_eq!(
        (rec.status, rec.decided_by.as_deref()),
        (RequestStatus::Expired, Some("expiry"))
    );
    assert_eq!(
        l.decide_request(&w.id, Decision::Approve, "owner").await,
        Err(Error::NotPending(w.id.clone()))
    );

    // Limits can be changed; max 0 forbids requests.
    l.set_request_limits(
        "main",
        RequestLimits {
            auto_approve_limit: 0,
            max_request: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        l.request(&a, 1, "x".into()).await,
        Err(BudgetError::InvalidAmount(0))
    );
    assert_eq!(
        l.set_request_limits("bot-a", RequestLimits::default())
            .await,
        Err(Error::NotAMainAgent("bot-a".into()))
    );

    let kinds: Vec<String> = l
        .ledger_entries("bot-a")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "carve_in",
            "request_in",
            "request_pending",
            "request_in",
            "request_pending",
            "request_expired"
        ]
    );
    l.close().await.unwrap();
    check_invariants(&path).await;
}

#[tokio::test]
async fn roll_over_resets_period() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = family(&path).await;
    let a = ctx("bot-a");

    // Spend some, move tokens by request, leave a hold and a request open.
    let r = l.reserve(&a, 200, "x").await.unwrap();
    l.settle(&r, 200).await.unwrap();
    l.request(&a, 300, "x".into()).await.unwrap(); // auto-approved
    let open = l.reserve(&a, 400, "in flight").await.unwrap();
    let pend = l.request(&ctx("bot-b"), 1_500, "x".into()).await.unwrap();
    let r = l.reserve(&ctx("main"), 1_000, "x").await.unwrap();
    l.settle(&r, 1_000).await.unwrap();

    assert_eq!(
        l.roll_over("2025-01").await,
        Err(Error::PeriodNotAfter {
            current: "2025-01".into(),
            requested: "2025-01".into()
        })
    );
    assert_eq!(
        l.roll_over("25-02").await,
        Err(Error::InvalidPeriod("25-02".into()))
    );
    let rep = l.roll_over("2025-02").await.unwrap();
    assert_eq!(
        (
            rep.users,
            rep.accounts,
            rep.detached_reservations,
            rep.expired_requests
        ),
        (1, 3, 1, 1)
    );

    let b = l.balance("bot-a").await.unwrap();
    assert_eq!(
        (b.allocated, b.spent, b.reserved, b.period.as_str()),
        (1_000, 0, 0, "2025-02")
    );
    let m = l.balance("main").await.unwrap();
    assert_eq!((m.allocated, m.spent, m.reserved), (4_000, 0, 0));
    assert_eq!(l.user("u").await.unwrap().period, "2025-02");
    assert_eq!(
        l.poll_request(&ctx("bot-b"), pend.id).await.unwrap().status,
        RequestStatus::Expired
    );

    // The old hold still settles, against the new period.
    let s = l.settle(&open, 150).await.unwrap();
    assert_eq!((s.charged, s.uncovered), (150, 0));
    let b = l.balance("bot-a").await.unwrap();
    assert_eq!((b.spent, b.reserved, b.available), (150, 0, 850));

    l.close().await.unwrap();
    check_invariants(&path).await;
}

/// 50 tasks reserve, settle, release and request at random against a parent
/// and its bots; balances stay within bounds throughout and everything
/// reconciles at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_keep_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let l = Arc::new(family(&path).await);
    l.create_bot("bot-c", "main", 500).await.unwrap();
    let agents = ["main", "bot-a", "bot-b", "bot-c"];
    let charged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // An owner deciding pending requests while the bots work.
    let (pending_tx, mut pending_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let owner = {
        let l = l.clone();
        tokio::spawn(async move {
            let mut decided = 0u32;
            let mut n = 0u32;
            while let Some(id) = pending_rx.recv().await {
                n += 1;
                let d = if n.is_multiple_of(2) {
                    Decision::Approve
                } else {
                    Decision::Deny
                };
                match l.decide_request(&id, d, "owner").await {
                    Ok(_) => decided += 1,
                    // The parent may lack the tokens right now.
                    Err(Error::Insufficient { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                if n.is_multiple_of(5) {
                    l.expire_requests(Duration::from_secs(3600)).await.unwrap();
                }
            }
            decided
        })
    };

    let mut tasks = Vec::new();
    for t in 0..50u64 {
        let l = l.clone();
        let charged = charged.clone();
        let pending_tx = pending_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut rnd = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            for _ in 0..60 {
                let agent = agents[rnd(4) as usize];
                let c = ctx(agent);
                match rnd(10) {
                    0 => {
                        // Bots ask for more (main gets NoParent).
                        let r = l.request(&c, 1 + rnd(800), "more".into()).await;
                        if agent == "main" {
                            assert_eq!(r, Err(BudgetError::NoParent));
                        } else {
                            let r = r.unwrap();
                            if r.status == RequestStatus::Pending {
                                pending_tx.send(r.id).unwrap();
                            }
                        }
                    }
                    _ => match l.reserve(&c, 1 + rnd(300), "llm").await {
                        Ok(res) => {
                            tokio::task::yield_now().await;
                            if rnd(4) == 0 {
                                l.release(&res).await.unwrap();
                            } else {
                                // Sometimes use more than held.
                                let used = rnd(res.amount * 2);
                                let s = l.settle(&res, used).await.unwrap();
                                assert_eq!(s.charged + s.uncovered, used);
                                charged.fetch_add(s.charged, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Err(LedgerError::Insufficient { needed, available }) => {
                            assert!(needed > available);
                        }
                        Err(e) => panic!("{e}"),
                    },
                }
                let b = l.remaining(&c).await.unwrap();
                assert_eq!(b.allocated, b.spent + b.reserved + b.available);
            }
        }));
    }
    drop(pending_tx);
    for t in tasks {
        t.await.unwrap();
    }
    let decided = owner.await.unwrap();
    assert!(decided > 0, "no request was decided concurrently");

    let total_spent: u64 = {
        let mut s = 0;
        for a in agents {
            s += l.balance(a).await.unwrap().spent;
        }
        s
    };
    assert_eq!(
        total_spent,
        charged.load(std::sync::atomic::Ordering::Relaxed)
    );
    let family_alloc: u64 = {
        let mut s = 0;
        for a in agents {
            s += l.balance(a).await.unwrap().allocated;
        }
        s
    };
    assert_eq!(
        family_alloc, 6_000,
        "tokens created or destroyed inside the family"
    );
    for a in agents {
        assert_eq!(l.balance(a).await.unwrap().reserved, 0);
    }
    Arc::try_unwrap(l).unwrap().close().await.unwrap();
    check_invariants(&path).await;
}
