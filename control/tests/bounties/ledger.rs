//! `money::apply_transfers` on lists (the batch path): a list applies in
//! order (a pending transfer posted later in the same list, a repeat
//! answered as existing), a refusal anywhere writes nothing, and random
//! lists give exactly the accounts that applying the same transfers one by
//! one gives — on SQLite and PostgreSQL.

use delta_control::db::Db;
use delta_control::money::{AccountKind, Write, apply_transfers, ensure_account};
use delta_money::{Applied, Transfer, TransferKind};
use rand::{Rng, SeedableRng};

use super::common::Control;
use crate::both;

const CUR: &str = "EUR";

fn t(id: &str, from: &str, to: &str, amount: u64, kind: TransferKind) -> Transfer {
    Transfer {
        id: id.into(),
        debit_account_id: from.into(),
        credit_account_id: to.into(),
        amount,
        ledger: CUR.into(),
        kind,
    }
}

/// The external account and `n` tenant accounts.
async fn accounts(db: &Db, n: usize) -> (String, Vec<String>) {
    let mut w = Write::begin(db).await.expect("begin");
    let ext = ensure_account(w.conn(), AccountKind::External, None, CUR, 0)
        .await
        .expect("external");
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            ensure_account(
                w.conn(),
                AccountKind::Tenant,
                Some(&format!("t{i}")),
                CUR,
                0,
            )
            .await
            .expect("account"),
        );
    }
    w.commit().await.expect("commit");
    (ext, ids)
}

async fn apply(db: &Db, list: &[Transfer]) -> Result<Vec<Applied>, String> {
    let mut w = Write::begin(db).await.expect("begin");
    match apply_transfers(w.conn(), list, 7).await {
        Ok(r) => {
            w.commit().await.expect("commit");
            Ok(r)
        }
        Err(e) => {
            w.abandon().await;
            Err(e.to_string())
        }
    }
}

/// Every account as (id, debits pending, debits posted, credits pending,
/// credits posted), and every transfer id with its pending state.
async fn snapshot(
    db: &Db,
) -> (
    Vec<(String, i64, i64, i64, i64)>,
    Vec<(String, Option<String>)>,
) {
    let accounts = sqlx::query_as(
        "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted \
         FROM money_accounts ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .expect("accounts");
    let transfers = sqlx::query_as(
        "SELECT t.id, p.state FROM money_transfers t \
         LEFT JOIN money_pending p ON p.transfer_id = t.id ORDER BY t.id",
    )
    .fetch_all(db.pool())
    .await
    .expect("transfers");
    (accounts, transfers)
}

both!(
    a_list_applies_in_order_or_not_at_all,
    |ctl: Control| async move {
        let db = &ctl.state.db;
        let (ext, ids) = accounts(db, 2).await;
        let (a, b) = (&ids[0], &ids[1]);
        let list = [
            t("fill", &ext, a, 100, TransferKind::SinglePhase),
            t("hold", a, b, 60, TransferKind::Pending),
            t(
                "post",
                a,
                b,
                60,
                TransferKind::PostPending {
                    pending_id: "hold".into(),
                },
            ),
            // A repeat within the list is the same transfer.
            t("fill", &ext, a, 100, TransferKind::SinglePhase),
        ];
        let applied = apply(db, &list).await.expect("applies");
        assert_eq!(
            applied,
            [
                Applied::Created,
                Applied::Created,
                Applied::Created,
                Applied::Existing
            ]
        );
        let (accts, transfers) = snapshot(db).await;
        let of = |id: &str| accts.iter().find(|r| r.0 == id).cloned().expect("account");
        assert_eq!(of(a), (a.clone(), 0, 60, 0, 100));
        assert_eq!(of(b), (b.clone(), 0, 0, 0, 60));
        assert!(transfers.contains(&("hold".into(), Some("posted".into()))));

        // Posting the same pending transfer twice in one list, or overdrawing
        // at its end: refused, and nothing of the list stays.
        let before = snapshot(db).await;
        let twice = [
            t("x1", &ext, b, 5, TransferKind::SinglePhase),
            t("hold2", b, a, 10, TransferKind::Pending),
            t(
                "p1",
                b,
                a,
                10,
                TransferKind::PostPending {
                    pending_id: "hold2".into(),
                },
            ),
            t(
                "p2",
                b,
                a,
                10,
                TransferKind::VoidPending {
                    pending_id: "hold2".into(),
                },
            ),
        ];
        assert!(apply(db, &twice).await.is_err());
        let overdraw = [
            t("x2", &ext, b, 5, TransferKind::SinglePhase),
            t("x3", b, a, 1_000, TransferKind::SinglePhase),
        ];
        assert!(apply(db, &overdraw).await.is_err());
        assert_eq!(snapshot(db).await, before);
    }
);

both!(random_lists_equal_one_by_one, |ctl: Control| async move {
    // The same transfers into a second database one at a time.
    let other = Control::start(ctl.dialect()).await;
    let (batched, single) = (&ctl.state.db, &other.state.db);
    let (ext, ids) = accounts(batched, 6).await;
    accounts(single, 6).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let fill: Vec<Transfer> = ids
        .iter()
        .enumerate()
        .map(|(i, a)| {
            t(
                &format!("fill{i}"),
                &ext,
                a,
                1_000_000,
                TransferKind::SinglePhase,
            )
        })
        .collect();
    for db in [batched, single] {
        apply(db, &fill).await.expect("fill");
    }
    let mut pendings: Vec<(String, String, String, u64)> = Vec::new();
    let mut earlier: Vec<Transfer> = Vec::new();
    let mut n = 0;
    let mut applied_rounds = 0;
    for round in 0..30 {
        let (pendings_before, earlier_before) = (pendings.clone(), earlier.len());
        let len = rng.random_range(1..60);
        let mut list = Vec::new();
        for _ in 0..len {
            n += 1;
            let id = format!("r{n}");
            let i = rng.random_range(0..ids.len());
            let from = &ids[i];
            let to = &ids[(i + rng.random_range(1..ids.len())) % ids.len()];
            let amount = rng.random_range(1..50);
            let tr = match rng.random_range(0..300) {
                0..30 => {
                    pendings.push((id.clone(), from.clone(), to.clone(), amount));
                    t(&id, from, to, amount, TransferKind::Pending)
                }
                // Settle one (perhaps of this very list; rarely one that
                // is settled already, which refuses the list).
                30..60 if !pendings.is_empty() => {
                    let k = rng.random_range(0..pendings.len());
                    let (p, pf, pt, pa) = if rng.random_range(0..10) == 0 {
                        pendings[k].clone()
                    } else {
                        pendings.swap_remove(k)
                    };
                    let kind = if rng.random_bool(0.5) {
                        TransferKind::VoidPending { pending_id: p }
                    } else {
                        TransferKind::PostPending { pending_id: p }
                    };
                    t(&id, &pf, &pt, pa, kind)
                }
                // A retry of an earlier transfer: answered as stored.
                60..75 if !earlier.is_empty() => {
                    earlier[rng.random_range(0..earlier.len())].clone()
                }
                // Rarely, an overdraft.
                75 => t(&id, from, to, 10_000_000, TransferKind::SinglePhase),
                _ => t(&id, from, to, amount, TransferKind::SinglePhase),
            };
            earlier.push(tr.clone());
            list.push(tr);
        }
        let whole = apply(batched, &list).await;
        // One by one, inside one transaction too, so that a refusal undoes
        // the round in both.
        let mut w = Write::begin(single).await.expect("begin");
        let mut one_by_one = Ok(Vec::new());
        for tr in &list {
            match apply_transfers(w.conn(), std::slice::from_ref(tr), 7).await {
                Ok(mut r) => {
                    if let Ok(v) = one_by_one.as_mut() {
                        v.append(&mut r);
                    }
                }
                Err(e) => {
                    one_by_one = Err(e.to_string());
                    break;
                }
            }
        }
        if one_by_one.is_ok() {
            w.commit().await.expect("commit");
        } else {
            w.abandon().await;
        }
        assert_eq!(whole, one_by_one, "round {round}");
        applied_rounds += usize::from(whole.is_ok());
        if whole.is_err() {
            // Nothing of the round exists: forget its pending transfers
            // and bring back the ones it settled.
            pendings = pendings_before;
            earlier.truncate(earlier_before);
        }
        assert_eq!(
            snapshot(batched).await,
            snapshot(single).await,
            "round {round}"
        );
    }
    let (posted, pending) = delta_control::money::store::totals(batched, CUR)
        .await
        .expect("totals");
    assert_eq!((posted, pending), (0, 0));
    // Both outcomes were exercised.
    assert!(
        (10..30).contains(&applied_rounds),
        "{applied_rounds} of 30 rounds applied"
    );
});
