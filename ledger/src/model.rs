//! Public records and the crate's error type.

use delta_host_api::budget::RequestStatus;

/// Whether an account belongs to a main agent or to a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A main agent: budget carved from its user's monthly allocation.
    Main,
    /// A bot: budget carved from its parent main agent's budget.
    Bot,
}

impl AccountKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Bot => "bot",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "main" => Ok(Self::Main),
            "bot" => Ok(Self::Bot),
            other => Err(Error::Storage(format!("unknown account kind {other:?}"))),
        }
    }
}

/// Limits a main agent applies to its bots' token requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestLimits {
    /// Requests of at most this many tokens are approved at once (when the
    /// main agent has them available); larger ones wait for a decision.
    pub auto_approve_limit: u64,
    /// Largest amount a single request may ask for; 0 forbids requests.
    pub max_request: u64,
}

/// A user: tier, monthly allocation and how much of it main agents hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user's id.
    pub user_id: String,
    /// Tier name (e.g. `developer`); informational, the allocation is what counts.
    pub tier: String,
    /// Tokens per period granted by the tier.
    pub monthly_allocation: u64,
    /// Sum of the grants of the user's main agents.
    pub carved: u64,
    /// `monthly_allocation - carved`: what new main agents can still get.
    pub reserve_pool: u64,
    /// Current period, `YYYY-MM`.
    pub period: String,
}

/// One agent's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBalance {
    /// The agent.
    pub agent_id: String,
    /// Main agent or bot.
    pub kind: AccountKind,
    /// The parent main agent (bots only).
    pub parent_id: Option<String>,
    /// The user the agent's tokens come from.
    pub user_id: String,
    /// What the agent is re-granted at every roll-over (for a main agent
    /// this includes the grants of its bots).
    pub grant: u64,
    /// Tokens granted for the current period (after carving and approved
    /// requests).
    pub allocated: u64,
    /// Tokens spent this period.
    pub spent: u64,
    /// Tokens held by operations in flight.
    pub reserved: u64,
    /// `allocated - spent - reserved`.
    pub available: u64,
    /// Auto-approve limit for the bots' requests (main agents).
    pub auto_approve_limit: u64,
    /// Per-request maximum for the bots' requests (main agents).
    pub max_request: u64,
    /// Current period, `YYYY-MM`.
    pub period: String,
}

/// How an owner decides a pending token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Move the tokens from the parent to the bot.
    Approve,
    /// Refuse the request.
    Deny,
}

/// A token request with everything the ledger knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestRecord {
    /// Id handed to the bot (`req-<n>`).
    pub id: String,
    /// The requesting bot.
    pub bot_id: String,
    /// Its parent main agent, which pays.
    pub parent_id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// The bot's reason, as given.
    pub reason: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// When it was made (Unix milliseconds).
    pub created_at_ms: i64,
    /// When it was decided (Unix milliseconds).
    pub decided_at_ms: Option<i64>,
    /// Who decided: `auto`, `expiry`, `roll-over` or the admin's name.
    pub decided_by: Option<String>,
}

/// One row of the append-only ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Position in the ledger (increasing).
    pub seq: i64,
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// Period the movement belongs to.
    pub period: String,
    /// The user concerned.
    pub user_id: String,
    /// The account concerned (`None` for user-level entries).
    pub agent_id: Option<String>,
    /// What happened: `user_allocation`, `allocate`, `carve_out`, `carve_in`,
    /// `reserve`, `settle`, `release`, `uncovered`, `request_out`,
    /// `request_in`, `request_pending`, `request_denied`, `request_expired`,
    /// `rollover`.
    pub kind: String,
    /// The amount the movement is about (always non-negative).
    pub amount: u64,
    /// Signed change to the account's `allocated`.
    pub d_allocated: i64,
    /// Signed change to the account's `spent`.
    pub d_spent: i64,
    /// Signed change to the account's `reserved`.
    pub d_reserved: i64,
    /// The reservation concerned (`res-<n>`).
    pub reservation_id: Option<String>,
    /// The token request concerned (`req-<n>`).
    pub request_id: Option<String>,
    /// The other account of a transfer, or the decider.
    pub counterparty: Option<String>,
    /// Free text (purpose of a reservation, reason of a request, ...).
    pub note: String,
}

/// What a month roll-over did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollOverReport {
    /// Users moved to the new period.
    pub users: u64,
    /// Accounts reset.
    pub accounts: u64,
    /// Open reservations from the old period whose held tokens were returned
    /// (they stay open; a later settle charges the new period as far as it
    /// allows).
    pub detached_reservations: u64,
    /// Pending requests expired by the roll-over.
    pub expired_requests: u64,
}

/// Why an administrative ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No such user.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// No such agent account.
    #[error("unknown agent account {0}")]
    UnknownAccount(String),
    /// A user or account with this id already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The named parent is a bot; bots can only be carved from main agents.
    #[error("{0} is not a main agent")]
    NotAMainAgent(String),
    /// The user's reserve pool cannot cover a new main agent's budget.
    #[error("user reserve pool too small: needed {needed}, available {available}")]
    InsufficientReserve {
        /// Tokens asked for.
        needed: u64,
        /// Tokens left in the pool.
        available: u64,
    },
    /// The parent's available budget cannot cover a carve or an approval.
    #[error("not enough tokens: needed {needed}, available {available}")]
    Insufficient {
        /// Tokens asked for.
        needed: u64,
        /// Tokens available.
        available: u64,
    },
    /// A user's allocation cannot drop below what main agents already hold.
    #[error("monthly allocation {allocation} is below the {carved} tokens carved for main agents")]
    AllocationBelowCarved {
        /// The refused allocation.
        allocation: u64,
        /// Tokens held by main agents.
        carved: u64,
    },
    /// Amounts are stored as signed 64-bit integers.
    #[error("amount {0} is too large")]
    AmountTooLarge(u64),
    /// A period must be `YYYY-MM`.
    #[error("invalid period {0:?} (expected YYYY-MM)")]
    InvalidPeriod(String),
    /// A roll-over must move forward.
    #[error("period {requested} is not after the current period {current}")]
    PeriodNotAfter {
        /// Latest current period among users.
        current: String,
        /// The refused period.
        requested: String,
    },
    /// No pending request with this id (unknown, or already decided).
    #[error("no pending token request {0}")]
    NotPending(String),
    /// The database failed (the operation was not applied).
    #[error("ledger storage: {0}")]
    Storage(String),
    /// The ledger's writer has stopped.
    #[error("the ledger is closed")]
    Closed,
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Storage(format!("migration: {e}"))
    }
}

/// Checked conversion of a caller's amount to the stored representation.
pub(crate) fn to_i64(amount: u64) -> Result<i64, Error> {
    i64::try_from(amount).map_err(|_| Error::AmountTooLarge(amount))
}

/// Stored amounts are never negative (CHECK constraints); clamp defensively.
pub(crate) fn to_u64(v: i64) -> u64 {
    delta_budget_rules::shown(v)
}

/// `YYYY-MM` with a month between 01 and 12 ([`delta_budget_rules::check_period`]).
pub(crate) fn check_period(p: &str) -> Result<(), Error> {
    delta_budget_rules::check_period(p).map_err(|e| Error::InvalidPeriod(e.0))
}

pub(crate) fn status_str(s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::Pending => "pending",
        RequestStatus::Approved => "approved",
        RequestStatus::Denied => "denied",
        RequestStatus::Expired => "expired",
    }
}

pub(crate) fn parse_status(s: &str) -> Result<RequestStatus, Error> {
    Ok(match s {
        "pending" => RequestStatus::Pending,
        "approved" => RequestStatus::Approved,
        "denied" => RequestStatus::Denied,
        "expired" => RequestStatus::Expired,
        other => return Err(Error::Storage(format!("unknown request status {other:?}"))),
    })
}

pub(crate) fn res_id(n: i64) -> String {
    format!("res-{n}")
}

pub(crate) fn req_id(n: i64) -> String {
    format!("req-{n}")
}

pub(crate) fn parse_res_id(s: &str) -> Option<i64> {
    s.strip_prefix("res-")?.parse().ok()
}

pub(crate) fn parse_req_id(s: &str) -> Option<i64> {
    s.strip_prefix("req-")?.parse().ok()
}
