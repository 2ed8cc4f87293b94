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

/// Token accounting for agents.
#[async_trait]
pub trait BudgetLedger: Send + Sync {
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
