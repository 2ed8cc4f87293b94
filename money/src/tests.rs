//! Unit tests of the rules, and a property test: random operation
//! sequences (a seeded generator, no extra dependency) against [`Ledger`],
//! checking conservation, no overdraft and exactly-once settlement after
//! every step.

use super::*;

fn ledger() -> Ledger {
    let mut l = Ledger::new();
    l.open(Account::new("external", "EUR", AccountFlags::NONE));
    l.open(Account::new("alice", "EUR", AccountFlags::NO_OVERDRAFT));
    l.open(Account::new("escrow", "EUR", AccountFlags::NO_OVERDRAFT));
    l.open(Account::new("bob", "EUR", AccountFlags::NO_OVERDRAFT));
    l.open(Account::new("usd", "USD", AccountFlags::NONE));
    l
}

fn t(id: &str, debit: &str, credit: &str, amount: u64, kind: TransferKind) -> Transfer {
    Transfer {
        id: id.to_owned(),
        debit_account_id: debit.to_owned(),
        credit_account_id: credit.to_owned(),
        amount,
        ledger: "EUR".to_owned(),
        kind,
    }
}

fn post(id: &str, pending: &str, debit: &str, credit: &str, amount: u64) -> Transfer {
    t(
        id,
        debit,
        credit,
        amount,
        TransferKind::PostPending {
            pending_id: pending.to_owned(),
        },
    )
}

fn void(id: &str, pending: &str, debit: &str, credit: &str, amount: u64) -> Transfer {
    t(
        id,
        debit,
        credit,
        amount,
        TransferKind::VoidPending {
            pending_id: pending.to_owned(),
        },
    )
}

fn bal(l: &Ledger, id: &str) -> i128 {
    l.account(id).map(Account::balance).unwrap_or_default()
}

#[test]
fn top_up_then_spend_and_the_sum_stays_zero() {
    let mut l = ledger();
    let top = t("top", "external", "alice", 1_000, TransferKind::SinglePhase);
    assert_eq!(l.transfer(&top), Ok(Applied::Created));
    assert_eq!(bal(&l, "alice"), 1_000);
    assert_eq!(bal(&l, "external"), -1_000);
    let pay = t("pay", "alice", "bob", 400, TransferKind::SinglePhase);
    assert_eq!(l.transfer(&pay), Ok(Applied::Created));
    assert_eq!((bal(&l, "alice"), bal(&l, "bob")), (600, 400));
    assert_eq!(l.accounts().map(Account::balance).sum::<i128>(), 0);
}

#[test]
fn an_overdraft_is_refused_and_changes_nothing() {
    let mut l = ledger();
    l.transfer(&t(
        "top",
        "external",
        "alice",
        100,
        TransferKind::SinglePhase,
    ))
    .expect("top-up");
    let before = l.clone().accounts().cloned().collect::<Vec<_>>();
    let err = l.transfer(&t("big", "alice", "bob", 101, TransferKind::SinglePhase));
    assert_eq!(
        err,
        Err(TransferError::ExceedsCredits {
            account: "alice".to_owned()
        })
    );
    assert_eq!(err.map_err(|e| e.code()), Err("insufficient_funds"));
    assert_eq!(l.accounts().cloned().collect::<Vec<_>>(), before);
    // Reservations count: 60 pending leaves 40 to spend.
    l.transfer(&t("hold", "alice", "escrow", 60, TransferKind::Pending))
        .expect("hold");
    assert_eq!(l.account("alice").map(Account::available), Some(40));
    assert!(matches!(
        l.transfer(&t("more", "alice", "bob", 41, TransferKind::SinglePhase)),
        Err(TransferError::ExceedsCredits { .. })
    ));
    // The refused id stays free.
    assert_eq!(
        l.transfer(&t("more", "alice", "bob", 40, TransferKind::SinglePhase)),
        Ok(Applied::Created)
    );
}

#[test]
fn same_id_same_fields_is_a_retry_different_fields_an_error() {
    let mut l = ledger();
    let top = t("top", "external", "alice", 100, TransferKind::SinglePhase);
    assert_eq!(l.transfer(&top), Ok(Applied::Created));
    assert_eq!(l.transfer(&top), Ok(Applied::Existing));
    assert_eq!(bal(&l, "alice"), 100, "a retry moves nothing");
    let other = t("top", "external", "alice", 101, TransferKind::SinglePhase);
    assert_eq!(
        l.transfer(&other),
        Err(TransferError::ExistsWithDifferentFields("top".to_owned()))
    );
}

#[test]
fn a_pending_transfer_is_posted_or_voided_exactly_once() {
    let mut l = ledger();
    l.transfer(&t(
        "top",
        "external",
        "alice",
        100,
        TransferKind::SinglePhase,
    ))
    .expect("top-up");
    l.transfer(&t("hold", "alice", "escrow", 80, TransferKind::Pending))
        .expect("hold");
    assert_eq!(bal(&l, "escrow"), 0, "reserved, not moved");
    // A post for more than was reserved is refused.
    assert_eq!(
        l.transfer(&post("p0", "hold", "alice", "escrow", 81)),
        Err(TransferError::PendingAmountMismatch {
            amount: 81,
            pending: 80
        })
    );
    // Other accounts than the pending transfer's are refused.
    assert_eq!(
        l.transfer(&post("p1", "hold", "alice", "bob", 80)),
        Err(TransferError::PendingAccountsMismatch)
    );
    // A partial post releases the rest.
    assert_eq!(
        l.transfer(&post("p2", "hold", "alice", "escrow", 70)),
        Ok(Applied::Created)
    );
    assert_eq!((bal(&l, "alice"), bal(&l, "escrow")), (30, 70));
    assert_eq!(l.account("alice").map(|a| a.debits_pending), Some(0));
    assert_eq!(l.pending_state("hold"), Some(PendingState::Posted));
    // The same post again is a retry; another post or a void is refused.
    assert_eq!(
        l.transfer(&post("p2", "hold", "alice", "escrow", 70)),
        Ok(Applied::Existing)
    );
    assert_eq!(
        l.transfer(&post("p3", "hold", "alice", "escrow", 10)),
        Err(TransferError::PendingAlreadyPosted("hold".to_owned()))
    );
    assert_eq!(
        l.transfer(&void("v1", "hold", "alice", "escrow", 80)),
        Err(TransferError::PendingAlreadyPosted("hold".to_owned()))
    );
    // Void first: then a post is refused.
    l.transfer(&t("hold2", "alice", "escrow", 30, TransferKind::Pending))
        .expect("hold2");
    assert_eq!(
        l.transfer(&void("v2", "hold2", "alice", "escrow", 30)),
        Ok(Applied::Created)
    );
    assert_eq!(bal(&l, "alice"), 30, "voided: nothing moved");
    assert_eq!(
        l.transfer(&post("p4", "hold2", "alice", "escrow", 30)),
        Err(TransferError::PendingAlreadyVoided("hold2".to_owned()))
    );
    assert_eq!(
        l.transfer(&post("p5", "nope", "alice", "escrow", 1)),
        Err(TransferError::PendingNotFound("nope".to_owned()))
    );
    // A single-phase transfer cannot be posted.
    assert_eq!(
        l.transfer(&post("p6", "top", "external", "alice", 1)),
        Err(TransferError::PendingNotFound("top".to_owned()))
    );
}

#[test]
fn malformed_transfers_are_refused() {
    let mut l = ledger();
    assert_eq!(
        l.transfer(&t("z", "external", "alice", 0, TransferKind::SinglePhase)),
        Err(TransferError::ZeroAmount)
    );
    assert_eq!(
        l.transfer(&t("s", "alice", "alice", 1, TransferKind::SinglePhase)),
        Err(TransferError::SameAccount)
    );
    assert_eq!(
        l.transfer(&t("", "external", "alice", 1, TransferKind::SinglePhase)),
        Err(TransferError::InvalidId)
    );
    assert_eq!(
        l.transfer(&t("m", "external", "nobody", 1, TransferKind::SinglePhase)),
        Err(TransferError::AccountNotFound("nobody".to_owned()))
    );
    assert!(matches!(
        l.transfer(&t("x", "usd", "alice", 1, TransferKind::SinglePhase)),
        Err(TransferError::LedgerMismatch { .. })
    ));
    assert_eq!(
        l.transfer(&t(
            "o",
            "external",
            "alice",
            MAX_STORED + 1,
            TransferKind::SinglePhase
        )),
        Err(TransferError::Overflow)
    );
    l.transfer(&t(
        "a",
        "external",
        "alice",
        MAX_STORED,
        TransferKind::SinglePhase,
    ))
    .expect("the largest amount");
    assert_eq!(
        l.transfer(&t("b", "external", "alice", 1, TransferKind::SinglePhase)),
        Err(TransferError::Overflow)
    );
}

#[test]
fn fees_round_down_and_flags_round_trip() {
    assert_eq!(fee_split(10_000, 1_500), (8_500, 1_500));
    assert_eq!(fee_split(99, 1_500), (85, 14));
    assert_eq!(fee_split(1, 1_500), (1, 0));
    assert_eq!(fee_split(u64::MAX, 10_000), (0, u64::MAX));
    assert_eq!(fee_split(500, 20_000), (0, 500));
    for f in [AccountFlags::NONE, AccountFlags::NO_OVERDRAFT] {
        assert_eq!(AccountFlags::from_bits(f.bits()), Some(f));
    }
    assert_eq!(AccountFlags::from_bits(4), None);
    assert!(valid_currency("EUR") && !valid_currency("eur") && !valid_currency("EURO"));
    for k in [
        TransferKind::SinglePhase,
        TransferKind::Pending,
        TransferKind::PostPending {
            pending_id: "p".into(),
        },
        TransferKind::VoidPending {
            pending_id: "p".into(),
        },
    ] {
        assert_eq!(
            TransferKind::parse(k.as_str(), k.pending_id().map(str::to_owned)),
            Some(k)
        );
    }
}

#[test]
fn credits_must_not_exceed_debits_is_enforced() {
    let mut l = ledger();
    let limited = AccountFlags {
        debits_must_not_exceed_credits: false,
        credits_must_not_exceed_debits: true,
    };
    l.open(Account::new("loan", "EUR", limited));
    assert!(matches!(
        l.transfer(&t("c", "external", "loan", 1, TransferKind::SinglePhase)),
        Err(TransferError::ExceedsDebits { .. })
    ));
    l.transfer(&t("d", "loan", "external", 5, TransferKind::SinglePhase))
        .expect("debit first");
    l.transfer(&t("c", "external", "loan", 5, TransferKind::SinglePhase))
        .expect("then credit up to it");
}

// ---- property test ---------------------------------------------------------

/// SplitMix64: small, seeded, good enough to drive operation sequences.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Random sequences of top-ups, payments, holds, posts, voids, retries and
/// conflicting retries: after every step the sum of balances (posted and
/// pending) is zero, no flagged account is overdrawn, and a pending transfer
/// is settled at most once (a later settlement is always refused). A refused
/// transfer changes no account.
#[test]
fn random_operation_sequences_keep_the_invariants() {
    let names = ["external", "a", "b", "c", "escrow", "fees"];
    for seed in 0..300_u64 {
        let mut rng = Rng(seed);
        let mut l = Ledger::new();
        l.open(Account::new("external", "EUR", AccountFlags::NONE));
        for n in &names[1..] {
            l.open(Account::new(*n, "EUR", AccountFlags::NO_OVERDRAFT));
        }
        let mut issued: Vec<Transfer> = Vec::new();
        let mut pendings: Vec<Transfer> = Vec::new();
        let mut settled: BTreeMap<String, PendingState> = BTreeMap::new();
        for step in 0..200 {
            let choice = rng.below(10);
            let span = if rng.below(4) == 0 { 10_000 } else { 200 };
            let amount = 1 + rng.below(span);
            let id = format!("t{step}");
            let transfer = match choice {
                0 | 1 => {
                    let to = *rng.pick(&names[1..]);
                    t(&id, "external", to, amount, TransferKind::SinglePhase)
                }
                2 | 3 => {
                    let d = *rng.pick(&names);
                    let c = *rng.pick(&names);
                    t(&id, d, c, amount, TransferKind::SinglePhase)
                }
                4 | 5 => {
                    let d = *rng.pick(&names[1..]);
                    t(&id, d, "escrow", amount, TransferKind::Pending)
                }
                6 | 7 if !pendings.is_empty() => {
                    let p = rng.pick(&pendings).clone();
                    let amt = if choice == 6 {
                        1 + rng.below(p.amount + 2) // sometimes too much
                    } else {
                        p.amount
                    };
                    let kind = if choice == 6 {
                        TransferKind::PostPending {
                            pending_id: p.id.clone(),
                        }
                    } else {
                        TransferKind::VoidPending {
                            pending_id: p.id.clone(),
                        }
                    };
                    t(&id, &p.debit_account_id, &p.credit_account_id, amt, kind)
                }
                8 if !issued.is_empty() => rng.pick(&issued).clone(),
                9 if !issued.is_empty() => {
                    let mut x = rng.pick(&issued).clone();
                    x.amount += 1;
                    x
                }
                _ => t(&id, "external", "a", amount, TransferKind::SinglePhase),
            };
            let before: Vec<Account> = l.accounts().cloned().collect();
            let known = issued.iter().any(|x| x.id == transfer.id);
            let result = l.transfer(&transfer);
            match &result {
                Ok(Applied::Created) => {
                    assert!(!known, "seed {seed} step {step}: an id applied twice");
                    if let Some(p) = transfer.kind.pending_id() {
                        let state = l.pending_state(p).expect("settled");
                        assert!(
                            settled.insert(p.to_owned(), state).is_none(),
                            "seed {seed} step {step}: {p} settled twice"
                        );
                    }
                    if transfer.kind == TransferKind::Pending {
                        pendings.push(transfer.clone());
                    }
                    issued.push(transfer.clone());
                }
                Ok(Applied::Existing) => {
                    assert!(
                        known,
                        "seed {seed} step {step}: unknown id answered as existing"
                    );
                    assert_eq!(l.accounts().cloned().collect::<Vec<_>>(), before);
                }
                Err(e) => {
                    assert_eq!(
                        l.accounts().cloned().collect::<Vec<_>>(),
                        before,
                        "seed {seed} step {step}: refused ({e}) but changed"
                    );
                    if let Some(p) = transfer.kind.pending_id()
                        && settled.contains_key(p)
                        && !known
                    {
                        assert!(
                            matches!(
                                e,
                                TransferError::PendingAlreadyPosted(_)
                                    | TransferError::PendingAlreadyVoided(_)
                            ),
                            "seed {seed} step {step}: {e}"
                        );
                    }
                }
            }
            let posted: i128 = l.accounts().map(Account::balance).sum();
            let pending: i128 = l
                .accounts()
                .map(|a| i128::from(a.credits_pending) - i128::from(a.debits_pending))
                .sum();
            assert_eq!(
                (posted, pending),
                (0, 0),
                "seed {seed} step {step}: not conserved"
            );
            for a in l.accounts() {
                if a.flags.debits_must_not_exceed_credits {
                    assert!(
                        u128::from(a.debits_pending) + u128::from(a.debits_posted)
                            <= u128::from(a.credits_posted),
                        "seed {seed} step {step}: {} overdrawn",
                        a.id
                    );
                }
            }
            // What is still pending is exactly what the accounts reserve.
            let reserved: u64 = pendings
                .iter()
                .filter(|p| l.pending_state(&p.id) == Some(PendingState::Pending))
                .map(|p| p.amount)
                .sum();
            let escrow_pending = l.account("escrow").map(|a| a.credits_pending);
            assert_eq!(escrow_pending, Some(reserved), "seed {seed} step {step}");
        }
    }
}
