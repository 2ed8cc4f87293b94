//! `delta:agent/budget`: the agent's token budget.
//!
//! The [`BudgetLedger`] is the authority the node consults; it scopes every
//! operation to the calling agent, so a guest can neither read nor spend
//! another agent's budget. Without a ledger every call answers
//! `not-configured`.

use async_trait::async_trait;

use crate::bindings::delta::agent::budget::Host;
pub use crate::bindings::delta::agent::budget::{
    Balance, BudgetError, RequestStatus, TokenRequest,
};
use crate::{CallContext, HostState};

/// Tokens held for one operation in flight (an LLM call, a message). Made by
/// [`BudgetLedger::reserve`]; must end in exactly one `settle` or `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Ledger-assigned id.
    pub id: String,
    /// The agent whose budget holds the tokens.
    pub agent_id: String,
    /// Tokens held.
    pub amount: u64,
}

/// What a settlement charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Tokens charged to the budget.
    pub charged: u64,
    /// Tokens used beyond the reservation that the budget could not cover
    /// (recorded in the ledger, never charged into a negative balance).
    pub uncovered: u64,
}

/// Why a ledger operation failed (host side; mapped to the WIT's errors by
/// the capability that called it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The budget cannot cover the amount.
    #[error("not enough tokens: needed {needed}, available {available}")]
    Insufficient {
        /// Tokens asked for.
        needed: u64,
        /// Tokens available.
        available: u64,
    },
    /// No budget account for this agent.
    #[error("no budget account for agent {0}")]
    UnknownAccount(String),
    /// The reservation does not exist or was already settled or released.
    #[error("unknown or finished reservation {0}")]
    UnknownReservation(String),
    /// The ledger's storage failed.
    #[error("ledger storage: {0}")]
    Storage(String),
}

/// Token accounting for agents.
///
/// Every operation is scoped to the agent in the [`CallContext`] (or the
/// reservation it made); implementations must make `reserve` atomic so that
/// no interleaving of concurrent calls overspends a budget.
#[async_trait]
pub trait BudgetLedger: Send + Sync {
    /// Hold `amount` tokens of the agent in `ctx` for an operation described
    /// by `purpose` (e.g. `llm:claude-x`, `message:email`).
    async fn reserve(
        &self,
        ctx: &CallContext,
        amount: u64,
        purpose: &str,
    ) -> Result<Reservation, LedgerError>;

    /// End a reservation, charging `used` tokens and returning the rest. A
    /// `used` above the reservation is charged as far as the budget allows.
    async fn settle(&self, reservation: &Reservation, used: u64)
    -> Result<Settlement, LedgerError>;

    /// End a reservation without charging anything.
    async fn release(&self, reservation: &Reservation) -> Result<(), LedgerError>;

    /// The balance of the agent in `ctx`.
    async fn remaining(&self, ctx: &CallContext) -> Result<Balance, BudgetError>;

    /// Ask the parent of the agent in `ctx` for `amount` more tokens.
    async fn request(
        &self,
        ctx: &CallContext,
        amount: u64,
        reason: String,
    ) -> Result<TokenRequest, BudgetError>;

    /// A request previously made by the agent in `ctx`.
    async fn poll_request(
        &self,
        ctx: &CallContext,
        id: String,
    ) -> Result<TokenRequest, BudgetError>;
}

impl Host for HostState {
    async fn remaining(&mut self) -> wasmtime::Result<Result<Balance, BudgetError>> {
        let Some(ledger) = self.caps.budget.clone() else {
            return Ok(Err(BudgetError::NotConfigured));
        };
        self.guarded(ledger.remaining(&self.ctx)).await
    }

    async fn request(
        &mut self,
        amount: u64,
        reason: String,
    ) -> wasmtime::Result<Result<TokenRequest, BudgetError>> {
        let Some(ledger) = self.caps.budget.clone() else {
            return Ok(Err(BudgetError::NotConfigured));
        };
        self.guarded(ledger.request(&self.ctx, amount, reason))
            .await
    }

    async fn poll_request(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<TokenRequest, BudgetError>> {
        let Some(ledger) = self.caps.budget.clone() else {
            return Ok(Err(BudgetError::NotConfigured));
        };
        self.guarded(ledger.poll_request(&self.ctx, id)).await
    }
}
