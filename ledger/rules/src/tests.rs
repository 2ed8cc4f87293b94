use super::*;

#[test]
fn shown_and_stored_clamp_and_refuse() {
    assert_eq!(shown(-5), 0);
    assert_eq!(shown(0), 0);
    assert_eq!(shown(i64::MAX), i64::MAX as u64);
    assert_eq!(stored(u64::MAX), None);
    assert_eq!(stored(i64::MAX as u64), Some(i64::MAX));
}

#[test]
fn available_saturates() {
    assert_eq!(available(100, 30, 20), 50);
    assert_eq!(available(0, 0, 0), 0);
    assert_eq!(available(i64::MIN, i64::MAX, i64::MAX), i64::MIN);
    assert_eq!(available(i64::MAX, -1, 0), i64::MAX);
}

#[test]
fn carving_takes_all_or_nothing() {
    assert_eq!(carve(100, 100), Ok(()), "exact cover");
    assert_eq!(carve(100, 0), Ok(()));
    assert_eq!(carve(0, 0), Ok(()));
    assert_eq!(
        carve(99, 100),
        Err(Shortfall {
            needed: 100,
            available: 99
        })
    );
    // A negative pool (never stored) shows as 0.
    assert_eq!(
        carve(-3, 1),
        Err(Shortfall {
            needed: 1,
            available: 0
        })
    );
}

#[test]
fn holds_need_full_cover_and_a_storable_amount() {
    assert_eq!(hold(10, 10), Ok(10));
    assert_eq!(hold(10, 0), Ok(0));
    assert_eq!(
        hold(10, 11),
        Err(Shortfall {
            needed: 11,
            available: 10
        })
    );
    assert_eq!(
        hold(i64::MAX, u64::MAX),
        Err(Shortfall {
            needed: u64::MAX,
            available: i64::MAX as u64
        })
    );
}

#[test]
fn settling_charges_within_hold_plus_available_and_the_rest_is_uncovered() {
    // Used less than the hold: all charged, the rest of the hold goes back.
    assert_eq!(
        settle(50, 10, 4),
        Settled {
            charged: 4,
            uncovered: 0
        }
    );
    // Exact cover of hold + available.
    assert_eq!(
        settle(50, 10, 60),
        Settled {
            charged: 60,
            uncovered: 0
        }
    );
    // Beyond it: uncovered, never a negative balance.
    assert_eq!(
        settle(50, 10, 61),
        Settled {
            charged: 60,
            uncovered: 1
        }
    );
    // Release = settle with nothing used.
    assert_eq!(settle(50, 10, 0), Settled::default());
    // A hold from an earlier period holds nothing.
    assert_eq!(
        settle(0, 0, 7),
        Settled {
            charged: 0,
            uncovered: 7
        }
    );
    // Overflow-safe at the edges.
    assert_eq!(
        settle(i64::MAX, i64::MAX, u64::MAX),
        Settled {
            charged: i64::MAX as u64,
            uncovered: u64::MAX - i64::MAX as u64
        }
    );
    assert_eq!(
        settle(-10, 5, 3),
        Settled {
            charged: 0,
            uncovered: 3
        }
    );
    assert_eq!(
        settle_within(u64::MAX, u64::MAX),
        Settled {
            charged: u64::MAX,
            uncovered: 0
        }
    );
}

#[test]
fn lease_requests_are_checked() {
    assert_eq!(lease_minimum(0, 0), Err(BadLeaseAsk::ZeroAmount));
    assert_eq!(lease_minimum(10, 0), Ok(1));
    assert_eq!(lease_minimum(10, 10), Ok(10), "exact");
    assert_eq!(lease_minimum(10, 11), Err(BadLeaseAsk::MinAboveAmount));
    assert_eq!(lease_ask(5, 1_000), (1_000, 5));
    assert_eq!(lease_ask(5_000, 1_000), (5_000, 5_000));
    assert_eq!(lease_ask(0, 1_000), (1_000, 0));
}

#[test]
fn a_grant_is_up_to_amount_at_least_min() {
    assert_eq!(grant_lease(100, 10, 1), Ok(10));
    assert_eq!(grant_lease(7, 10, 1), Ok(7), "partial");
    assert_eq!(grant_lease(7, 10, 7), Ok(7), "exactly the minimum");
    assert_eq!(
        grant_lease(6, 10, 7),
        Err(Shortfall {
            needed: 7,
            available: 6
        })
    );
    assert_eq!(
        grant_lease(0, 1, 1),
        Err(Shortfall {
            needed: 1,
            available: 0
        })
    );
    assert_eq!(grant_lease(i64::MAX, i64::MAX, 1), Ok(i64::MAX));
}

#[test]
fn a_lease_return_charges_spent_and_gives_back_the_rest() {
    // Spent 3 of a 10-token lease: 7 go back.
    assert_eq!(
        return_lease(0, 10, 3),
        LeaseReturned {
            charged: 3,
            returned: 7,
            uncovered: 0
        }
    );
    // Spent exactly the lease.
    assert_eq!(
        return_lease(0, 10, 10),
        LeaseReturned {
            charged: 10,
            returned: 0,
            uncovered: 0
        }
    );
    // Overspent: the budget's available tokens cover part of the rest.
    assert_eq!(
        return_lease(4, 10, 20),
        LeaseReturned {
            charged: 14,
            returned: 0,
            uncovered: 6
        }
    );
    // Expired lease (holds nothing now): charged from what is available.
    assert_eq!(
        return_lease(5, 0, 8),
        LeaseReturned {
            charged: 5,
            returned: 0,
            uncovered: 3
        }
    );
    // Nothing spent.
    assert_eq!(
        return_lease(0, 10, 0),
        LeaseReturned {
            charged: 0,
            returned: 10,
            uncovered: 0
        }
    );
    assert_eq!(
        return_lease(i64::MAX, i64::MAX, i64::MAX),
        LeaseReturned {
            charged: i64::MAX,
            returned: 0,
            uncovered: 0
        }
    );
}

#[test]
fn lease_returned_agrees_with_return_lease() {
    for available in [0, 1, 5, 100] {
        for held in [0, 1, 10] {
            for spent in [0, 1, 9, 10, 11, 200] {
                let r = return_lease(available, held, spent);
                assert_eq!(lease_returned(held, spent, r.charged), r);
            }
        }
    }
}

#[test]
fn a_node_folds_its_leases_into_the_remote_balance() {
    // 100 allocated, 20 spent remotely, 30 leased (to this node), 50 free.
    let b = fold_leases(100, 20, 50, 10, 15);
    assert_eq!(
        b,
        Balance {
            allocated: 100,
            spent: 30,
            reserved: 5,
            available: 65
        }
    );
    // Never past the allocation.
    let b = fold_leases(100, 90, 10, 50, 50);
    assert_eq!(b.spent, 100);
    assert_eq!(b.available, 0);
    assert_eq!(b.reserved, 0);
    assert_eq!(fold_leases(0, 0, 0, 0, 0), Balance::default());
    let b = fold_leases(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX);
    assert_eq!((b.spent, b.available, b.reserved), (u64::MAX, 0, 0));
}

#[test]
fn token_requests_are_bounded_by_max_request() {
    assert_eq!(request_amount(0, 100), Err(InvalidAmount { limit: 100 }));
    assert_eq!(request_amount(101, 100), Err(InvalidAmount { limit: 100 }));
    assert_eq!(request_amount(100, 100), Ok(100), "exactly max_request");
    assert_eq!(request_amount(1, 0), Err(InvalidAmount { limit: 0 }));
    assert_eq!(
        request_amount(u64::MAX, i64::MAX),
        Err(InvalidAmount {
            limit: i64::MAX as u64
        })
    );
    assert_eq!(request_amount(i64::MAX as u64, i64::MAX), Ok(i64::MAX));
}

#[test]
fn small_covered_requests_are_approved_at_once() {
    use RequestOutcome::{Approved, Pending};
    assert_eq!(request_outcome(50, 100, 50, 50), Ok((50, Approved)));
    assert_eq!(request_outcome(51, 100, 50, 500), Ok((51, Pending)));
    assert_eq!(
        request_outcome(50, 100, 50, 49),
        Ok((50, Pending)),
        "the parent cannot cover it"
    );
    assert_eq!(request_outcome(1, 100, 0, 500), Ok((1, Pending)));
    assert_eq!(
        request_outcome(0, 100, 50, 500),
        Err(InvalidAmount { limit: 100 })
    );
    assert!(within_auto_approve(10, 10));
    assert!(!within_auto_approve(11, 10));
}

#[test]
fn periods() {
    assert!(check_period("2026-01").is_ok());
    assert!(check_period("2026-12").is_ok());
    for bad in [
        "2026-13", "2026-00", "2026-1", "26-01", "2026_01", "", "2026-011", "abcd-01",
    ] {
        assert_eq!(
            check_period(bad),
            Err(InvalidPeriod(bad.to_owned())),
            "{bad}"
        );
    }
    assert!(rolls_over("2026-01", "2026-02"));
    assert!(rolls_over("2025-12", "2026-01"));
    assert!(!rolls_over("2026-02", "2026-02"));
    assert!(!rolls_over("2026-03", "2026-02"));
}

#[test]
fn roll_over_gives_grants_back() {
    assert_eq!(rollover_bot(100, 0), 100);
    assert_eq!(rollover_bot(100, 100), 100);
    assert_eq!(rollover_bot(100, 150), 150, "leases held over stay counted");
    assert_eq!(rollover_main(1_000, 300), Ok(700));
    assert_eq!(rollover_main(1_000, 1_000), Ok(0), "exact");
    assert_eq!(rollover_main(0, 0), Ok(0));
    assert_eq!(
        rollover_main(1_000, 1_001),
        Err(Overdrawn {
            grant: 1_000,
            bots: 1_001
        })
    );
    assert_eq!(
        rollover_main(i64::MIN, 1),
        Err(Overdrawn {
            grant: i64::MIN,
            bots: 1
        }),
        "overflow is refused, not wrapped"
    );
}

#[test]
fn expiry_counts_the_whole_grant_and_a_late_return_corrects_it() {
    assert_eq!(
        expire_lease(70),
        LeaseExpired {
            charged: 70,
            d_held: -70
        }
    );
    assert_eq!(expire_lease(-1), LeaseExpired::default(), "never negative");
    // Spent less: the difference comes back.
    assert_eq!(
        correct_provisional(0, 100, 70, 20),
        LeaseReturned {
            charged: -50,
            returned: 50,
            uncovered: 0
        }
    );
    // Exactly what was charged: nothing moves.
    assert_eq!(
        correct_provisional(0, 100, 70, 70),
        LeaseReturned::default()
    );
    // Spent more (usage past the lease): charged as far as available goes.
    assert_eq!(
        correct_provisional(5, 100, 70, 80),
        LeaseReturned {
            charged: 5,
            returned: 0,
            uncovered: 5
        }
    );
    // A roll-over reset spent meanwhile: the credit stops at zero.
    assert_eq!(
        correct_provisional(0, 10, 70, 0),
        LeaseReturned {
            charged: -10,
            returned: 10,
            uncovered: 0
        }
    );
}

/// A deterministic xorshift generator: the property test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A lease in the model: what the control plane knows and what the node
/// really served on it.
struct ModelLease {
    granted: i64,
    served: i64,
    /// Expired and charged provisionally (the grant).
    provisional: Option<i64>,
    done: bool,
}

/// Property: over random grants, spends, returns, crash expiries and late
/// reports, `allocated = spent + held + available` with every term >= 0 at
/// each step (nothing is overspent); while leases are expired and
/// unreported, spent is at least what was served; once every lease is
/// reported, spent equals exactly what was served (each correction applied
/// once).
#[test]
fn property_conservative_settlement_conserves_totals() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let allocated: i64 = 1 + rng.below(5_000) as i64;
        let (mut spent, mut held) = (0i64, 0i64);
        let mut leases: Vec<ModelLease> = Vec::new();
        for _ in 0..200 {
            let avail = available(allocated, spent, held);
            match rng.below(5) {
                0 => {
                    let amount = 1 + rng.below(500) as i64;
                    if let Ok(g) = grant_lease(avail, amount, 1) {
                        held += g;
                        leases.push(ModelLease {
                            granted: g,
                            served: 0,
                            provisional: None,
                            done: false,
                        });
                    }
                }
                1 => {
                    // The node serves within the room of a live lease.
                    if let Some(l) = leases
                        .iter_mut()
                        .filter(|l| !l.done && l.provisional.is_none())
                        .nth(rng.below(4) as usize)
                    {
                        let room = l.granted - l.served;
                        l.served += rng.below(room as u64 + 1) as i64;
                    }
                }
                2 => {
                    // A normal return.
                    if let Some(l) = leases
                        .iter_mut()
                        .find(|l| !l.done && l.provisional.is_none())
                    {
                        let r = return_lease(avail, l.granted, l.served);
                        assert_eq!(r.uncovered, 0, "seed {seed}");
                        spent += r.charged;
                        held -= l.granted;
                        l.done = true;
                    }
                }
                3 => {
                    // The node died: the lease expires unreturned.
                    if let Some(l) = leases
                        .iter_mut()
                        .find(|l| !l.done && l.provisional.is_none())
                    {
                        let e = expire_lease(l.granted);
                        spent += e.charged;
                        held += e.d_held;
                        l.provisional = Some(e.charged);
                    }
                }
                _ => {
                    // The node came back and reported.
                    if let Some(l) = leases
                        .iter_mut()
                        .find(|l| !l.done && l.provisional.is_some())
                    {
                        let p = l.provisional.unwrap_or(0);
                        let r = correct_provisional(avail, spent, p, l.served);
                        assert_eq!(r.uncovered, 0, "seed {seed}");
                        spent += r.charged;
                        l.done = true;
                    }
                }
            }
            let avail = available(allocated, spent, held);
            assert!(spent >= 0 && held >= 0 && avail >= 0, "seed {seed}");
            assert_eq!(allocated, spent + held + avail, "seed {seed}");
            let reported: i64 = leases
                .iter()
                .filter(|l| l.done || l.provisional.is_some())
                .map(|l| l.served)
                .sum();
            assert!(
                spent >= reported,
                "seed {seed}: spent below what was served"
            );
        }
        // Everything reported at last: spent is exactly what was served.
        for l in leases.iter_mut().filter(|l| !l.done) {
            let avail = available(allocated, spent, held);
            let r = match l.provisional {
                Some(p) => correct_provisional(avail, spent, p, l.served),
                None => {
                    held -= l.granted;
                    return_lease(avail, l.granted, l.served)
                }
            };
            spent += r.charged;
            l.done = true;
        }
        let served: i64 = leases.iter().map(|l| l.served).sum();
        assert_eq!(spent, served, "seed {seed}");
        assert_eq!(held, 0, "seed {seed}");
    }
}
