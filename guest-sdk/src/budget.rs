//! The agent's token budget (`delta:agent/budget`).
//!
//! Budgets flow from a user to a main agent to its bots. An agent can read
//! its balance; a bot (an agent with a parent) can ask its parent for more
//! tokens and poll the request.
//!
//! ```no_run
//! use delta_sdk::budget::{self, RequestStatus};
//!
//! # fn main() -> Result<(), delta_sdk::AgentError> {
//! let balance = budget::remaining()?;
//! if balance.available < 1_000 {
//!     let request = budget::request(5_000, "summarising a long thread")?;
//!     if request.status == RequestStatus::Pending {
//!         let later = budget::poll_request(&request.id)?;
//!         delta_sdk::info!("request {} is {:?}", later.id, later.status);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Outside WebAssembly (unit tests on the host) every call fails with
//! [`BudgetError::NotConfigured`].

use core::fmt;

use crate::AgentError;

/// A snapshot of the agent's budget, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Balance {
    /// Tokens granted to the agent in the current period.
    pub allocated: u64,
    /// Tokens already spent.
    pub spent: u64,
    /// Tokens held by calls in flight.
    pub reserved: u64,
    /// `allocated - spent - reserved`: what the next call may reserve.
    pub available: u64,
}

/// Where a request for more tokens stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Waiting for the parent agent's owner to decide.
    Pending,
    /// Granted; the tokens are in the budget.
    Approved,
    /// Refused by the owner.
    Denied,
    /// Not decided in time.
    Expired,
}

/// A request for more tokens addressed to the parent main agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Host-assigned id, for [`poll_request`].
    pub id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why, as given by the agent.
    pub reason: String,
    /// Where the request stands.
    pub status: RequestStatus,
}

/// Why a budget operation failed.
///
/// Converts into [`AgentError`] with `?`: the code is `budget-` followed by
/// [`BudgetError::code`] (for example `budget-no-parent`), the message is the
/// `Display` text; retryable only for [`BudgetError::Unavailable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetError {
    /// No budget ledger is configured on this node.
    NotConfigured,
    /// Only bots (agents with a parent) can request tokens.
    NoParent,
    /// The amount is zero or over the per-request limit.
    InvalidAmount {
        /// The per-request limit.
        limit: u64,
    },
    /// No request with this id belongs to this agent.
    UnknownRequest,
    /// The budget authority could not answer; retrying later may succeed.
    Unavailable(String),
}

impl BudgetError {
    /// The WIT variant name in kebab case (`"not-configured"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            BudgetError::NotConfigured => "not-configured",
            BudgetError::NoParent => "no-parent",
            BudgetError::InvalidAmount { .. } => "invalid-amount",
            BudgetError::UnknownRequest => "unknown-request",
            BudgetError::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::NotConfigured => {
                f.write_str("no budget ledger is configured on this node")
            }
            BudgetError::NoParent => {
                f.write_str("only bots (agents with a parent) can request tokens")
            }
            BudgetError::InvalidAmount { limit } => {
                write!(f, "amount is zero or over the per-request limit of {limit}")
            }
            BudgetError::UnknownRequest => f.write_str("unknown token request"),
            BudgetError::Unavailable(reason) => {
                write!(f, "the budget authority is unavailable: {reason}")
            }
        }
    }
}

impl std::error::Error for BudgetError {}

impl From<BudgetError> for AgentError {
    fn from(error: BudgetError) -> Self {
        AgentError {
            code: format!("budget-{}", error.code()),
            retryable: matches!(error, BudgetError::Unavailable(_)),
            message: error.to_string(),
        }
    }
}

/// The agent's current balance.
pub fn remaining() -> Result<Balance, BudgetError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::remaining()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Err(BudgetError::NotConfigured)
    }
}

/// Ask the parent main agent for `amount` more tokens. Approved at once when
/// within the parent's auto-approve limit, otherwise pending.
pub fn request(amount: u64, reason: &str) -> Result<TokenRequest, BudgetError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::request(amount, reason)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (amount, reason);
        Err(BudgetError::NotConfigured)
    }
}

/// Poll a request made earlier by this agent (WIT `poll-request`).
pub fn poll_request(id: &str) -> Result<TokenRequest, BudgetError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::poll_request(id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = id;
        Err(BudgetError::NotConfigured)
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::agent::delta::agent::budget as raw;

    pub(super) fn remaining() -> Result<Balance, BudgetError> {
        raw::remaining()
            .map(|b| Balance {
                allocated: b.allocated,
                spent: b.spent,
                reserved: b.reserved,
                available: b.available,
            })
            .map_err(error)
    }

    pub(super) fn request(amount: u64, reason: &str) -> Result<TokenRequest, BudgetError> {
        raw::request(amount, reason)
            .map(token_request)
            .map_err(error)
    }

    pub(super) fn poll_request(id: &str) -> Result<TokenRequest, BudgetError> {
        raw::poll_request(id).map(token_request).map_err(error)
    }

    fn token_request(r: raw::TokenRequest) -> TokenRequest {
        TokenRequest {
            id: r.id,
            amount: r.amount,
            reason: r.reason,
            status: match r.status {
                raw::RequestStatus::Pending => RequestStatus::Pending,
                raw::RequestStatus::Approved => RequestStatus::Approved,
                raw::RequestStatus::Denied => RequestStatus::Denied,
                raw::RequestStatus::Expired => RequestStatus::Expired,
            },
        }
    }

    fn error(e: raw::BudgetError) -> BudgetError {
        match e {
            raw::BudgetError::NotConfigured => BudgetError::NotConfigured,
            raw::BudgetError::NoParent => BudgetError::NoParent,
            raw::BudgetError::InvalidAmount(limit) => BudgetError::InvalidAmount { limit },
            raw::BudgetError::UnknownRequest => BudgetError::UnknownRequest,
            raw::BudgetError::Unavailable(reason) => BudgetError::Unavailable(reason),
        }
    }
}
