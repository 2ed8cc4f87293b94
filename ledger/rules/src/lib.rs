//! The token-budget rules, once: the arithmetic every budget holder applies,
//! with no I/O, no SQL and no async.
//!
//! Three places hold token budgets, and all of them decide with these
//! functions:
//! - the SQLite ledger (`delta-ledger`'s in-memory book), for a node or
//!   `delta run` without a control plane;
//! - the control plane's budget authority (`delta-control`'s `budgets`
//!   module), over SQLite or PostgreSQL;
//! - a node's lease client (`delta-node`'s `leases` module), which spends
//!   against leases from the control plane.
//!
//! Where a store must check and change a row in one statement (a
//! conditional `UPDATE ... WHERE allocated - spent - leased >= $n`, so that
//! concurrent writers queue and re-check), the SQL states the same rule and
//! names the function here it mirrors; everything computed in Rust calls
//! these functions.
//!
//! This is a crate of its own, with no dependencies, rather than a module of
//! `delta-ledger`: the ledger implements `delta-host-api`'s traits, which
//! link Wasmtime, and the control plane must not (`delta-ledger` re-exports
//! this crate as `delta_ledger::rules`).
//!
//! # Terms
//! An account has `allocated`, `spent` and `held` tokens (`held`: reserved
//! by operations in flight in the ledger, leased to nodes in the control
//! plane, held by open reservations in a node's lease);
//! `available = allocated - spent - held`. Stored amounts are `i64` (SQL's
//! `BIGINT`) and never negative; amounts from callers are `u64`. Every
//! function is overflow-safe: sums saturate, and a `u64` that does not fit
//! an `i64` is refused or clamped as each function says.

/// What an amount asked for and what was there, when it cannot be covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// Tokens asked for (at least).
    pub needed: u64,
    /// Tokens available.
    pub available: u64,
}

/// A stored amount for show: stored amounts are never negative (`CHECK`
/// constraints), so a negative one is clamped to 0 rather than wrapped.
pub fn shown(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A caller's amount as stored, if it fits.
pub fn stored(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

/// `allocated - spent - held` (saturating).
pub fn available(allocated: i64, spent: i64, held: i64) -> i64 {
    allocated.saturating_sub(spent).saturating_sub(held)
}

/// Whether `available` tokens cover `amount`.
pub fn covers(available: i64, amount: i64) -> bool {
    amount <= available
}

// ---- carving ---------------------------------------------------------------

/// Carve `amount` out of `pool`: a user's pool (`monthly_allocation -
/// carved`) for a main agent's budget, a main agent's available tokens for a
/// bot's. The whole amount or nothing.
pub fn carve(pool: i64, amount: i64) -> Result<(), Shortfall> {
    if covers(pool, amount) {
        Ok(())
    } else {
        Err(Shortfall {
            needed: shown(amount),
            available: shown(pool),
        })
    }
}

// ---- holds: reserve, settle, release ---------------------------------------

/// Hold `amount` of `available` tokens for an operation in flight: the
/// amount to add to `held`, or the shortfall (also for an amount too large
/// to store).
pub fn hold(available: i64, amount: u64) -> Result<i64, Shortfall> {
    stored(amount)
        .filter(|a| covers(available, *a))
        .ok_or(Shortfall {
            needed: amount,
            available: shown(available),
        })
}

/// What settling a hold charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// Tokens charged (added to `spent`).
    pub charged: u64,
    /// Tokens used beyond what the budget could cover: recorded, never
    /// charged, so that no balance goes negative.
    pub uncovered: u64,
}

/// Settle a hold: the hold (`held`, which goes back) and the account's
/// `available` tokens (computed with the hold still counted) cover `used`
/// as far as they go; the rest is `uncovered`. Releasing a hold is settling
/// it with `used = 0`. A hold that no longer holds anything (its tokens
/// already went back: a roll-over, an expired lease) passes `held = 0`.
pub fn settle(available: i64, held: i64, used: u64) -> Settled {
    settle_within(shown(available.saturating_add(held)), used)
}

/// [`settle`] given what covers the usage directly (for a node's lease:
/// its room once the hold is given back).
pub fn settle_within(cover: u64, used: u64) -> Settled {
    let charged = used.min(cover);
    Settled {
        charged,
        uncovered: used - charged,
    }
}

// ---- leases ----------------------------------------------------------------

/// Why a lease request is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLeaseAsk {
    /// `amount` was 0.
    ZeroAmount,
    /// `min_amount` was above `amount`.
    MinAboveAmount,
}

impl std::fmt::Display for BadLeaseAsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ZeroAmount => "amount must be at least 1",
            Self::MinAboveAmount => "min_amount must not exceed amount",
        })
    }
}

impl std::error::Error for BadLeaseAsk {}

/// Check a lease request of `amount` tokens, at least `min_amount`:
/// answers the effective minimum (at least 1).
pub fn lease_minimum(amount: u64, min_amount: u64) -> Result<u64, BadLeaseAsk> {
    if amount == 0 {
        return Err(BadLeaseAsk::ZeroAmount);
    }
    let min = min_amount.max(1);
    if min > amount {
        return Err(BadLeaseAsk::MinAboveAmount);
    }
    Ok(min)
}

/// What a node asks the control plane for when a reservation of `amount`
/// finds no lease with room: `(amount, min_amount)` = `(max(amount,
/// chunk), amount)`, so that one lease serves many small reservations and a
/// large one still gets all it needs or a refusal.
pub fn lease_ask(amount: u64, chunk: u64) -> (u64, u64) {
    (amount.max(chunk), amount)
}

/// Grant a lease: up to `amount` of `available` tokens, at least `min`, or
/// the shortfall. The granted tokens are added to the account's `held`
/// (`leased`).
pub fn grant_lease(available: i64, amount: i64, min: i64) -> Result<i64, Shortfall> {
    if available < min {
        return Err(Shortfall {
            needed: shown(min),
            available: shown(available),
        });
    }
    Ok(amount.min(available))
}

/// What returning a lease does to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseReturned {
    /// Added to `spent`.
    pub charged: i64,
    /// Tokens of the lease that went back unspent now: `held - min(spent,
    /// held)`.
    pub returned: i64,
    /// Spent beyond what the lease and the budget could cover.
    pub uncovered: i64,
}

/// Return a lease that still holds `held` tokens (its grant while active; 0
/// once expired, its tokens having gone back then) with `spent` tokens spent
/// on it, against an account with `available` tokens (`held` still
/// counted): [`settle`], the lease's tokens going back (`leased -= held`).
pub fn return_lease(available: i64, held: i64, spent: i64) -> LeaseReturned {
    let s = settle(available, held, shown(spent));
    // charged <= spent <= i64::MAX.
    let charged = stored(s.charged).unwrap_or(i64::MAX);
    lease_returned(held, spent, charged)
}

/// The rest of a lease return once `charged` is known (PostgreSQL charges
/// in the statement that claims the lease: `LEAST(available + held, spent)`,
/// [`return_lease`]'s rule in SQL).
pub fn lease_returned(held: i64, spent: i64, charged: i64) -> LeaseReturned {
    let spent = spent.max(0);
    LeaseReturned {
        charged,
        returned: held.saturating_sub(spent.min(held)).max(0),
        uncovered: spent.saturating_sub(charged).max(0),
    }
}

// ---- crash: conservative expiry and its correction -------------------------

/// What expiring a lease nobody returned does to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseExpired {
    /// Added to `spent` (provisionally): the whole unreturned grant.
    pub charged: i64,
    /// Added to `held` (`leased`): minus the grant.
    pub d_held: i64,
}

/// Expire a lease still holding `held` tokens that its node never returned
/// (it may have been killed): the whole remainder counts as spent, so the
/// budget never shows tokens available that the node may already have
/// served. `available` does not change; the charge is provisional until
/// the node reports ([`correct_provisional`]).
pub fn expire_lease(held: i64) -> LeaseExpired {
    let held = held.max(0);
    LeaseExpired {
        charged: held,
        d_held: -held,
    }
}

/// A late return of a lease that expired provisionally charged
/// `provisional` tokens, reporting `spent`, against an account with
/// `account_spent` spent and `available` tokens: the difference is
/// corrected once. Less spent than charged: the rest is credited back
/// (`charged` negative, `returned` the credit), never below zero spent (a
/// roll-over in between reset it). More: the extra is charged as far as
/// `available` allows, the rest `uncovered`.
pub fn correct_provisional(
    available: i64,
    account_spent: i64,
    provisional: i64,
    spent: i64,
) -> LeaseReturned {
    let (provisional, spent) = (provisional.max(0), spent.max(0));
    if spent <= provisional {
        let credit = (provisional - spent).min(account_spent.max(0));
        LeaseReturned {
            charged: -credit,
            returned: credit,
            uncovered: 0,
        }
    } else {
        let extra = spent - provisional;
        let charged = extra.min(available.max(0));
        LeaseReturned {
            charged,
            returned: 0,
            uncovered: extra - charged,
        }
    }
}

/// An agent's balance as the control plane reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Tokens granted for the period.
    pub allocated: u64,
    /// Tokens spent.
    pub spent: u64,
    /// Tokens held (leased, reserved).
    pub reserved: u64,
    /// `allocated - spent - reserved`.
    pub available: u64,
}

/// A node's view of an agent's balance: the control plane's
/// (`allocated`, `spent`, `available`; it counts this node's leases as
/// held), with what the node spent on its live leases counted as spent and
/// their free room as available, never past the allocation.
pub fn fold_leases(
    allocated: u64,
    spent: u64,
    available: u64,
    lease_spent: u64,
    lease_room: u64,
) -> Balance {
    let spent = spent.saturating_add(lease_spent).min(allocated);
    let available = available.saturating_add(lease_room).min(allocated - spent);
    Balance {
        allocated,
        spent,
        reserved: allocated - spent - available,
        available,
    }
}

// ---- token requests --------------------------------------------------------

/// A token request of 0, or above the parent's `max_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidAmount {
    /// The parent's `max_request`.
    pub limit: u64,
}

/// What happens to a valid token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Approved at once: the tokens move parent -> bot.
    Approved,
    /// Waits for a decision (or expiry).
    Pending,
}

/// Check a bot's request for `amount` tokens against its parent's
/// `max_request`: 1 to `max_request` (a `max_request` of 0 forbids
/// requests). Answers the amount as stored.
pub fn request_amount(amount: u64, max_request: i64) -> Result<i64, InvalidAmount> {
    let limit = shown(max_request);
    if amount == 0 || amount > limit {
        return Err(InvalidAmount { limit });
    }
    // amount <= max_request <= i64::MAX.
    stored(amount).ok_or(InvalidAmount { limit })
}

/// Whether a valid request is small enough to approve without a decision
/// (if the parent can also cover it: [`covers`]).
pub fn within_auto_approve(amount: i64, auto_approve_limit: i64) -> bool {
    amount <= auto_approve_limit
}

/// The token-request decision: [`request_amount`], then approved at once
/// when [`within_auto_approve`] and the parent's `available` tokens cover
/// it, otherwise pending. (The control plane checks the cover in the
/// `UPDATE` that moves the tokens, where it is atomic.)
pub fn request_outcome(
    amount: u64,
    max_request: i64,
    auto_approve_limit: i64,
    parent_available: i64,
) -> Result<(i64, RequestOutcome), InvalidAmount> {
    let a = request_amount(amount, max_request)?;
    let outcome = if within_auto_approve(a, auto_approve_limit) && covers(parent_available, a) {
        RequestOutcome::Approved
    } else {
        RequestOutcome::Pending
    };
    Ok((a, outcome))
}

// ---- roll-over -------------------------------------------------------------

/// A period that is not `YYYY-MM` with a month 01 to 12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPeriod(pub String);

impl std::fmt::Display for InvalidPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "period {:?} is not YYYY-MM", self.0)
    }
}

impl std::error::Error for InvalidPeriod {}

/// `YYYY-MM` with a month between 01 and 12.
pub fn check_period(p: &str) -> Result<(), InvalidPeriod> {
    let b = p.as_bytes();
    let ok = b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit)
        && matches!(
            &p[5..],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        );
    if ok {
        Ok(())
    } else {
        Err(InvalidPeriod(p.to_owned()))
    }
}

/// Whether an account in period `current` rolls over into `next` (periods
/// are `YYYY-MM`, so they order as strings).
pub fn rolls_over(current: &str, next: &str) -> bool {
    current < next
}

/// A bot's allocation in the new period: its grant back, or what stays held
/// across the roll-over if that is more (the control plane's leases stay
/// counted; the ledger's holds go back, so it passes 0). Spent goes to 0.
pub fn rollover_bot(grant: i64, still_held: i64) -> i64 {
    grant.max(still_held)
}

/// A main agent whose bots' new allocations exceed its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdrawn {
    /// The main agent's grant.
    pub grant: i64,
    /// Its bots' new allocations.
    pub bots: i64,
}

/// A main agent's allocation in the new period: its grant (which counts its
/// bots' grants) minus its bots' new allocations ([`rollover_bot`]), so
/// tokens moved to bots by approved requests come back to it. Spent goes
/// to 0.
pub fn rollover_main(grant: i64, bots: i64) -> Result<i64, Overdrawn> {
    grant
        .checked_sub(bots)
        .filter(|a| *a >= 0)
        .ok_or(Overdrawn { grant, bots })
}

#[cfg(test)]
mod tests;
