//! The money ledger's rules, once: double-entry accounts and transfers in
//! integer minor units, modelled on TigerBeetle's, with no I/O, no SQL and
//! no async.
//!
//! # Terms
//! An [`Account`] holds four counters, `debits_pending`, `debits_posted`,
//! `credits_pending`, `credits_posted`, in one currency (its `ledger`) and
//! never changes otherwise. Its *balance* is `credits_posted -
//! debits_posted`; pending amounts are reserved, not moved. A [`Transfer`]
//! moves `amount` from its debit account to its credit account:
//! - [`TransferKind::SinglePhase`] posts at once;
//! - [`TransferKind::Pending`] reserves (both accounts' `*_pending` grow);
//! - [`TransferKind::PostPending`] settles a pending transfer with up to its
//!   amount (the rest is released), [`TransferKind::VoidPending`] releases
//!   all of it. A pending transfer is posted *or* voided, exactly once:
//!   whichever comes first wins and the other is refused
//!   ([`TransferError::PendingAlreadyPosted`] /
//!   [`TransferError::PendingAlreadyVoided`]).
//!
//! Transfers are immutable and their ids chosen by the client, so a retry is
//! idempotent: the same id with the same fields answers the existing
//! transfer ([`Applied::Existing`]); the same id with different fields is
//! [`TransferError::ExistsWithDifferentFields`].
//!
//! # Invariants
//! - Every transfer debits and credits the same amount, so over all accounts
//!   of a ledger `Σ credits_posted = Σ debits_posted` and `Σ credits_pending
//!   = Σ debits_pending`: money is conserved (the `external` account that
//!   funds top-ups goes negative for it).
//! - An account flagged [`AccountFlags::debits_must_not_exceed_credits`]
//!   never has `debits_pending + debits_posted > credits_posted` (it cannot
//!   be overdrawn, not even by reservations); symmetrically for
//!   `credits_must_not_exceed_debits`.
//! - A refused transfer changes nothing.
//!
//! A store (the control plane's, over SQLite or PostgreSQL) loads the rows
//! under its write lock, calls [`check_existing`] and [`apply`], and writes
//! the accounts back in the same database transaction; [`Ledger`] is the
//! same in memory, for tests and as the reference.

use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

/// What an account refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountFlags {
    /// `debits_pending + debits_posted` may not exceed `credits_posted`:
    /// a balance that cannot go below zero (tenants, escrow, fees).
    pub debits_must_not_exceed_credits: bool,
    /// `credits_pending + credits_posted` may not exceed `debits_posted`.
    pub credits_must_not_exceed_debits: bool,
}

impl AccountFlags {
    /// Cannot be overdrawn.
    pub const NO_OVERDRAFT: Self = Self {
        debits_must_not_exceed_credits: true,
        credits_must_not_exceed_debits: false,
    };
    /// No constraint (the `external` account, which goes negative for top-ups).
    pub const NONE: Self = Self {
        debits_must_not_exceed_credits: false,
        credits_must_not_exceed_debits: false,
    };

    /// As a bit set for storage: 1 debits-limited, 2 credits-limited.
    pub fn bits(self) -> i64 {
        i64::from(self.debits_must_not_exceed_credits)
            | (i64::from(self.credits_must_not_exceed_debits) << 1)
    }

    /// From [`AccountFlags::bits`]; unknown bits are refused.
    pub fn from_bits(bits: i64) -> Option<Self> {
        if bits & !3 != 0 {
            return None;
        }
        Some(Self {
            debits_must_not_exceed_credits: bits & 1 != 0,
            credits_must_not_exceed_debits: bits & 2 != 0,
        })
    }
}

/// An account: its constraints and four counters, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Chosen by the store (e.g. `tenant:<id>:EUR`).
    pub id: String,
    /// The currency (ISO 4217 code); transfers stay within one.
    pub ledger: String,
    /// What it refuses.
    pub flags: AccountFlags,
    /// Reserved by pending transfers debiting it.
    pub debits_pending: u64,
    /// Posted debits.
    pub debits_posted: u64,
    /// Reserved by pending transfers crediting it.
    pub credits_pending: u64,
    /// Posted credits.
    pub credits_posted: u64,
}

impl Account {
    /// A new, empty account.
    pub fn new(id: impl Into<String>, ledger: impl Into<String>, flags: AccountFlags) -> Self {
        Self {
            id: id.into(),
            ledger: ledger.into(),
            flags,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
        }
    }

    /// `credits_posted - debits_posted` (what the holder owns; negative for
    /// the `external` account).
    pub fn balance(&self) -> i128 {
        i128::from(self.credits_posted) - i128::from(self.debits_posted)
    }

    /// What can still be debited without breaking
    /// `debits_must_not_exceed_credits`: `credits_posted - debits_posted -
    /// debits_pending` (0 when none).
    pub fn available(&self) -> u64 {
        self.credits_posted
            .saturating_sub(self.debits_posted)
            .saturating_sub(self.debits_pending)
    }

    fn within_limits(&self) -> Result<(), TransferError> {
        let debits = self.debits_pending.checked_add(self.debits_posted);
        let credits = self.credits_pending.checked_add(self.credits_posted);
        let (Some(debits), Some(credits)) = (debits, credits) else {
            return Err(TransferError::Overflow);
        };
        if self.flags.debits_must_not_exceed_credits && debits > self.credits_posted {
            return Err(TransferError::ExceedsCredits {
                account: self.id.clone(),
            });
        }
        if self.flags.credits_must_not_exceed_debits && credits > self.debits_posted {
            return Err(TransferError::ExceedsDebits {
                account: self.id.clone(),
            });
        }
        Ok(())
    }
}

/// What a transfer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferKind {
    /// Posts `amount` at once.
    SinglePhase,
    /// Reserves `amount`, to be posted or voided later.
    Pending,
    /// Posts the pending transfer `pending_id` with `amount` (at most its
    /// amount; the rest is released). Same accounts as the pending one.
    PostPending {
        /// The pending transfer's id.
        pending_id: String,
    },
    /// Releases the pending transfer `pending_id`. Same accounts and amount
    /// as the pending one.
    VoidPending {
        /// The pending transfer's id.
        pending_id: String,
    },
}

impl TransferKind {
    /// The stored spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::SinglePhase => "single_phase",
            Self::Pending => "pending",
            Self::PostPending { .. } => "post_pending",
            Self::VoidPending { .. } => "void_pending",
        }
    }

    /// The pending transfer it settles, if any.
    pub fn pending_id(&self) -> Option<&str> {
        match self {
            Self::PostPending { pending_id } | Self::VoidPending { pending_id } => Some(pending_id),
            Self::SinglePhase | Self::Pending => None,
        }
    }

    /// From the stored spelling and pending id.
    pub fn parse(kind: &str, pending_id: Option<String>) -> Option<Self> {
        match (kind, pending_id) {
            ("single_phase", None) => Some(Self::SinglePhase),
            ("pending", None) => Some(Self::Pending),
            ("post_pending", Some(pending_id)) => Some(Self::PostPending { pending_id }),
            ("void_pending", Some(pending_id)) => Some(Self::VoidPending { pending_id }),
            _ => None,
        }
    }
}

/// A transfer, as asked for and as stored (immutable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Chosen by the client: the idempotency key.
    pub id: String,
    /// The account debited.
    pub debit_account_id: String,
    /// The account credited.
    pub credit_account_id: String,
    /// Minor units, > 0.
    pub amount: u64,
    /// The currency; both accounts' ledger.
    pub ledger: String,
    /// What it does.
    pub kind: TransferKind,
}

/// Where a pending transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingState {
    /// Reserved; may be posted or voided.
    Pending,
    /// Posted (by the transfer that did it).
    Posted,
    /// Voided.
    Voided,
}

impl PendingState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Posted => "posted",
            Self::Voided => "voided",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "posted" => Some(Self::Posted),
            "voided" => Some(Self::Voided),
            _ => None,
        }
    }
}

/// Why a transfer was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The id is empty or too long.
    #[error("a transfer id must be 1 to {MAX_ID_LEN} characters")]
    InvalidId,
    /// Amount 0 (a post of 0 is a void: use one).
    #[error("the amount must be greater than zero")]
    ZeroAmount,
    /// Debit and credit are the same account.
    #[error("a transfer must debit and credit two different accounts")]
    SameAccount,
    /// An account does not exist.
    #[error("no account {0}")]
    AccountNotFound(String),
    /// An account is in another currency than the transfer.
    #[error("account {account} is in {account_ledger}, the transfer in {ledger}")]
    LedgerMismatch {
        /// The account.
        account: String,
        /// Its currency.
        account_ledger: String,
        /// The transfer's.
        ledger: String,
    },
    /// The id is taken by a transfer with other fields.
    #[error("transfer {0} exists with different fields")]
    ExistsWithDifferentFields(String),
    /// The pending transfer to post or void does not exist (or is not a
    /// pending transfer).
    #[error("no pending transfer {0}")]
    PendingNotFound(String),
    /// A post or void names other accounts than its pending transfer.
    #[error("a post or void must name the pending transfer's accounts")]
    PendingAccountsMismatch,
    /// A post for more than was reserved, or a void for another amount.
    #[error("the amount {amount} does not fit the pending transfer's {pending}")]
    PendingAmountMismatch {
        /// Asked.
        amount: u64,
        /// Reserved.
        pending: u64,
    },
    /// The pending transfer was posted already.
    #[error("pending transfer {0} was posted already")]
    PendingAlreadyPosted(String),
    /// The pending transfer was voided already.
    #[error("pending transfer {0} was voided already")]
    PendingAlreadyVoided(String),
    /// The debit would exceed the account's credits.
    #[error("insufficient funds in {account}")]
    ExceedsCredits {
        /// The account.
        account: String,
    },
    /// The credit would exceed the account's debits.
    #[error("account {account} may not be credited beyond its debits")]
    ExceedsDebits {
        /// The account.
        account: String,
    },
    /// A counter would overflow (or not fit the store's `i64`).
    #[error("an account's counter would overflow")]
    Overflow,
}

impl TransferError {
    /// A short, stable code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId => "invalid_id",
            Self::ZeroAmount => "zero_amount",
            Self::SameAccount => "same_account",
            Self::AccountNotFound(_) => "account_not_found",
            Self::LedgerMismatch { .. } => "ledger_mismatch",
            Self::ExistsWithDifferentFields(_) => "exists_with_different_fields",
            Self::PendingNotFound(_) => "pending_not_found",
            Self::PendingAccountsMismatch => "pending_accounts_mismatch",
            Self::PendingAmountMismatch { .. } => "pending_amount_mismatch",
            Self::PendingAlreadyPosted(_) => "pending_already_posted",
            Self::PendingAlreadyVoided(_) => "pending_already_voided",
            Self::ExceedsCredits { .. } => "insufficient_funds",
            Self::ExceedsDebits { .. } => "exceeds_debits",
            Self::Overflow => "overflow",
        }
    }
}

/// Longest transfer id.
pub const MAX_ID_LEN: usize = 128;

/// Largest counter a store keeps (SQL `BIGINT`): amounts and counters above
/// it are refused as [`TransferError::Overflow`].
pub const MAX_STORED: u64 = i64::MAX as u64;

/// Whether a transfer was new or a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now.
    Created,
    /// The same transfer existed: nothing changed.
    Existing,
}

/// A retry of `existing` (same fields) is [`Applied::Existing`]; anything
/// else under its id is refused.
pub fn check_existing(existing: &Transfer, asked: &Transfer) -> Result<Applied, TransferError> {
    if existing == asked {
        Ok(Applied::Existing)
    } else {
        Err(TransferError::ExistsWithDifferentFields(asked.id.clone()))
    }
}

/// The pending transfer a post or void settles, with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRef<'a> {
    /// The pending transfer.
    pub transfer: &'a Transfer,
    /// Where it stands.
    pub state: PendingState,
}

/// What [`apply`] changed besides the accounts: the new state of the pending
/// transfer settled, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// `Some` for a post or void: the pending transfer's new state.
    pub pending_state: Option<PendingState>,
}

/// Apply a new transfer `t` to its `debit` and `credit` accounts (whose ids
/// it names), given the pending transfer it settles (`pending`, for a post
/// or void; `None` when there is none by that id). On error nothing changed.
pub fn apply(
    debit: &mut Account,
    credit: &mut Account,
    t: &Transfer,
    pending: Option<PendingRef<'_>>,
) -> Result<Effect, TransferError> {
    if t.id.is_empty() || t.id.len() > MAX_ID_LEN {
        return Err(TransferError::InvalidId);
    }
    if t.amount == 0 {
        return Err(TransferError::ZeroAmount);
    }
    if t.amount > MAX_STORED {
        return Err(TransferError::Overflow);
    }
    if t.debit_account_id == t.credit_account_id {
        return Err(TransferError::SameAccount);
    }
    for a in [&*debit, &*credit] {
        if a.ledger != t.ledger {
            return Err(TransferError::LedgerMismatch {
                account: a.id.clone(),
                account_ledger: a.ledger.clone(),
                ledger: t.ledger.clone(),
            });
        }
    }
    debug_assert_eq!(debit.id, t.debit_account_id);
    debug_assert_eq!(credit.id, t.credit_account_id);
    // Work on copies: a refusal leaves the caller's accounts as they were.
    let mut d = debit.clone();
    let mut c = credit.clone();
    let add = |v: u64, a: u64| v.checked_add(a).filter(|s| *s <= MAX_STORED);
    let overflow = || TransferError::Overflow;
    let pending_state = match &t.kind {
        TransferKind::SinglePhase => {
            d.debits_posted = add(d.debits_posted, t.amount).ok_or_else(overflow)?;
            c.credits_posted = add(c.credits_posted, t.amount).ok_or_else(overflow)?;
            None
        }
        TransferKind::Pending => {
            d.debits_pending = add(d.debits_pending, t.amount).ok_or_else(overflow)?;
            c.credits_pending = add(c.credits_pending, t.amount).ok_or_else(overflow)?;
            None
        }
        TransferKind::PostPending { pending_id } | TransferKind::VoidPending { pending_id } => {
            let p = pending
                .filter(|p| {
                    p.transfer.kind == TransferKind::Pending && &p.transfer.id == pending_id
                })
                .ok_or_else(|| TransferError::PendingNotFound(pending_id.clone()))?;
            match p.state {
                PendingState::Pending => {}
                PendingState::Posted => {
                    return Err(TransferError::PendingAlreadyPosted(pending_id.clone()));
                }
                PendingState::Voided => {
                    return Err(TransferError::PendingAlreadyVoided(pending_id.clone()));
                }
            }
            if p.transfer.debit_account_id != t.debit_account_id
                || p.transfer.credit_account_id != t.credit_account_id
                || p.transfer.ledger != t.ledger
            {
                return Err(TransferError::PendingAccountsMismatch);
            }
            let posting = matches!(t.kind, TransferKind::PostPending { .. });
            let fits = if posting {
                t.amount <= p.transfer.amount
            } else {
                t.amount == p.transfer.amount
            };
            if !fits {
                return Err(TransferError::PendingAmountMismatch {
                    amount: t.amount,
                    pending: p.transfer.amount,
                });
            }
            let reserved = p.transfer.amount;
            d.debits_pending = d
                .debits_pending
                .checked_sub(reserved)
                .ok_or_else(overflow)?;
            c.credits_pending = c
                .credits_pending
                .checked_sub(reserved)
                .ok_or_else(overflow)?;
            if posting {
                d.debits_posted = add(d.debits_posted, t.amount).ok_or_else(overflow)?;
                c.credits_posted = add(c.credits_posted, t.amount).ok_or_else(overflow)?;
                Some(PendingState::Posted)
            } else {
                Some(PendingState::Voided)
            }
        }
    };
    d.within_limits()?;
    c.within_limits()?;
    *debit = d;
    *credit = c;
    Ok(Effect { pending_state })
}

/// Split a payout into what the payee gets and the platform's fee, `bps`
/// basis points of `amount` rounded down (the payee never gets less than
/// their share because of rounding); `bps` above 10,000 counts as 10,000.
pub fn fee_split(amount: u64, bps: u32) -> (u64, u64) {
    let bps = u128::from(bps.min(10_000));
    // Fits: u64 * 10_000 < u128::MAX, and the quotient is at most `amount`.
    let fee = u64::try_from(u128::from(amount) * bps / 10_000).unwrap_or(amount);
    (amount - fee, fee)
}

/// Whether `code` is a currency code the ledger accepts: three ASCII
/// upper-case letters (ISO 4217's shape).
pub fn valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// The ledger in memory: the reference the stores follow, and what the
/// property tests drive.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    accounts: BTreeMap<String, Account>,
    transfers: BTreeMap<String, Transfer>,
    pending: BTreeMap<String, PendingState>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an account (replacing none: an existing id is left as it is).
    pub fn open(&mut self, account: Account) {
        self.accounts.entry(account.id.clone()).or_insert(account);
    }

    /// An account.
    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// All accounts.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// A pending transfer's state.
    pub fn pending_state(&self, id: &str) -> Option<PendingState> {
        self.pending.get(id).copied()
    }

    /// Apply `t` (or answer its earlier application).
    pub fn transfer(&mut self, t: &Transfer) -> Result<Applied, TransferError> {
        if let Some(existing) = self.transfers.get(&t.id) {
            return check_existing(existing, t);
        }
        if t.debit_account_id == t.credit_account_id {
            return Err(TransferError::SameAccount);
        }
        let mut debit = self
            .accounts
            .get(&t.debit_account_id)
            .cloned()
            .ok_or_else(|| TransferError::AccountNotFound(t.debit_account_id.clone()))?;
        let mut credit = self
            .accounts
            .get(&t.credit_account_id)
            .cloned()
            .ok_or_else(|| TransferError::AccountNotFound(t.credit_account_id.clone()))?;
        let pending = t.kind.pending_id().and_then(|id| {
            Some(PendingRef {
                transfer: self.transfers.get(id)?,
                state: *self.pending.get(id)?,
            })
        });
        let effect = apply(&mut debit, &mut credit, t, pending)?;
        if let (Some(id), Some(state)) = (t.kind.pending_id(), effect.pending_state) {
            self.pending.insert(id.to_owned(), state);
        }
        if t.kind == TransferKind::Pending {
            self.pending.insert(t.id.clone(), PendingState::Pending);
        }
        self.accounts.insert(debit.id.clone(), debit);
        self.accounts.insert(credit.id.clone(), credit);
        self.transfers.insert(t.id.clone(), t.clone());
        Ok(Applied::Created)
    }
}
