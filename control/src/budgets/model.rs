//! The budget authority's types: errors, leases, token requests, views.

use axum::http::StatusCode;
use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

// ---- errors ----------------------------------------------------------------

/// Why a budget operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// No such agent, lease, request or member (in this tenant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The budget (an agent's available tokens, or the user's pool) cannot
    /// cover the amount.
    #[error("the budget cannot cover {needed} tokens ({available} available)")]
    Exhausted {
        /// Tokens asked for (at least).
        needed: u64,
        /// Tokens available.
        available: u64,
    },
    /// An allocation may not go below what is already spent or leased.
    #[error("the allocation cannot go below {minimum} tokens (spent + leased)")]
    BelowUsed {
        /// spent + leased.
        minimum: u64,
    },
    /// A tier's allocation may not go below what the user's agents hold.
    #[error("the tier's allocation ({allocation}) is below what is allocated ({allocated})")]
    BelowAllocated {
        /// The new tier's monthly allocation.
        allocation: u64,
        /// What the user's agents hold (and deleted agents spent).
        allocated: u64,
    },
    /// A main agent asked for tokens: it has no parent to ask.
    #[error("a main agent has no parent to request tokens from")]
    NoParent,
    /// A token request of 0 or more than the parent's `max_request`.
    #[error("a request must be for 1 to {limit} tokens")]
    InvalidAmount {
        /// The parent's `max_request`.
        limit: u64,
    },
    /// The request was already decided.
    #[error("the request is {0}, not pending")]
    NotPending(String),
    /// A malformed value.
    #[error("{0}")]
    Invalid(String),
    /// The configuration cannot serve this (e.g. default_tier not a tier).
    #[error("configuration: {0}")]
    Config(String),
    /// Something that should not happen did (logged; 500 to the client).
    #[error("{0}")]
    Internal(&'static str),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        let message = e.to_string();
        match e {
            BudgetError::NotFound(what) => ApiError::not_found(what),
            BudgetError::Exhausted { needed, available } => {
                ApiError::conflict("budget_exhausted", message)
                    .details(json!({ "available": available, "needed": needed }))
            }
            BudgetError::BelowUsed { minimum } => ApiError::conflict("budget_exhausted", message)
                .details(json!({ "minimum": minimum })),
            BudgetError::BelowAllocated { allocated, .. } => {
                ApiError::conflict("below_allocated", message)
                    .details(json!({ "allocated": allocated }))
            }
            BudgetError::NoParent => ApiError::conflict("no_parent", message),
            BudgetError::InvalidAmount { limit } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", message)
                    .details(json!({ "limit": limit }))
            }
            BudgetError::NotPending(status) => {
                ApiError::conflict("not_pending", message).details(json!({ "status": status }))
            }
            BudgetError::Invalid(m) => ApiError::invalid(m),
            BudgetError::Config(m) => ApiError::internal(m),
            BudgetError::Internal(m) => ApiError::internal(m),
            BudgetError::Db(e) => ApiError::internal(e),
        }
    }
}

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, BudgetError> {
    i64::try_from(v).map_err(|_| BudgetError::Invalid(format!("{what} is too large")))
}

/// Stored amounts are never negative (CHECK constraints); clamp for show.
pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

// ---- leases ----------------------------------------------------------------

/// A lease granted to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// `lse_...`.
    pub lease_id: String,
    /// The agent whose budget it holds.
    pub agent_id: String,
    /// Tokens reserved: min(amount, available).
    pub granted: u64,
    /// When its tokens go back to the budget if it is not returned.
    pub expires_at_ms: i64,
}

/// What returning a lease did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseReturn {
    /// The lease.
    pub lease_id: String,
    /// Tokens charged to the budget.
    pub charged: u64,
    /// Tokens of the lease that went back to the budget now (0 for an
    /// expired lease: its tokens went back when it expired).
    pub returned: u64,
    /// Tokens spent that the budget could not cover.
    pub uncovered: u64,
    /// `returned`, or `expired` when it was returned after expiring.
    pub status: String,
}

// ---- token requests --------------------------------------------------------

/// A bot's token request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `tkr_...`.
    pub id: String,
    /// The bot that asked.
    pub agent_id: String,
    /// Its main agent, which gives the tokens.
    pub parent_agent_id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    /// `auto`, the deciding user's id, `expiry`, `roll-over` or
    /// `agent_deleted`.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at_ms: Option<i64>,
    /// When it was made.
    pub created_at_ms: i64,
}

/// Who asks for tokens: an API caller (scoped to their tenant) or a node
/// on behalf of a guest.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The caller's tenant; `None` for a node (fleet-wide).
    pub tenant: Option<&'a str>,
    /// The acting user, for the audit log.
    pub user: Option<&'a str>,
    /// The HTTP request id, for the audit log.
    pub request_id: Option<&'a str>,
}

// ---- views -----------------------------------------------------------------

/// An agent's budget account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentBudget {
    /// The agent.
    pub agent_id: String,
    /// `main` or `bot`.
    pub kind: String,
    /// A bot's main agent.
    pub parent_agent_id: Option<String>,
    /// The user whose budget it draws on.
    pub user_id: String,
    /// What it gets back at each roll-over (a main agent's includes what
    /// its bots get).
    pub grant: u64,
    /// Tokens it holds this period.
    pub allocated: u64,
    /// Tokens charged this period.
    pub spent: u64,
    /// Tokens out on nodes' leases.
    pub leased: u64,
    /// allocated - spent - leased.
    pub available: u64,
    /// A main agent's bots' requests up to this are approved at once.
    pub auto_approve_limit: u64,
    /// A main agent's bots may ask for at most this much at a time.
    pub max_request: u64,
    /// `YYYY-MM` (UTC).
    pub period: String,
}

/// A user's budget.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserBudget {
    /// The user.
    pub user_id: String,
    /// Their tier (a key of the configuration's `[tiers]`).
    pub tier: String,
    /// The tier's monthly allocation.
    pub monthly_allocation: u64,
    /// What the user's agents hold, plus what deleted agents spent this
    /// period.
    pub allocated: u64,
    /// Unallocated: monthly_allocation - allocated.
    pub pool: u64,
    /// Spent this period by agents since deleted (back at the roll-over).
    pub retired: u64,
    /// `YYYY-MM` (UTC).
    pub period: String,
    /// The user's main agents' balances.
    pub main_agents: Vec<AgentBudget>,
}

/// What a node sees of an agent's budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeBudget {
    /// Tokens the agent holds this period.
    pub allocated: u64,
    /// Tokens charged.
    pub spent: u64,
    /// Tokens out on leases.
    pub reserved: u64,
    /// allocated - spent - reserved.
    pub available: u64,
    /// `YYYY-MM` (UTC).
    pub period: String,
}

/// Longest token request reason, bytes.
pub(super) const MAX_REASON: usize = 1_000;
/// Longest node id, bytes (as in heartbeats).
pub(super) const MAX_NODE_ID: usize = 128;
/// Expired leases handled per [`expire_leases`] call.
pub(super) const EXPIRY_BATCH: i64 = 1_000;
