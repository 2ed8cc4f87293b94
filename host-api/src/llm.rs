//! `delta:agent/llm`: chat completions routed by the host.
//!
//! The guest names a model; the [`LlmGateway`] resolves it against the
//! agent's grants, pays for it from the agent's budget and speaks to the
//! provider. Without a gateway every call answers `not-configured`.

use async_trait::async_trait;

use crate::bindings::delta::agent::llm::Host;
pub use crate::bindings::delta::agent::llm::{
    Completion, CompletionRequest, FinishReason, LlmError, Message, Role, Usage,
};
use crate::{CallContext, HostState};

/// A backend that answers chat completions for agents.
#[async_trait]
pub trait LlmGateway: Send + Sync {
    /// Complete `request` on behalf of the agent in `ctx`.
    ///
    /// Must check the agent's model grants and reserve budget before any
    /// request leaves the host; errors are the WIT's typed `llm-error`.
    async fn complete(
        &self,
        ctx: &CallContext,
        request: CompletionRequest,
    ) -> Result<Completion, LlmError>;
}

impl Host for HostState {
    async fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> wasmtime::Result<Result<Completion, LlmError>> {
        let Some(gateway) = self.caps.llm.clone() else {
            return Ok(Err(LlmError::NotConfigured));
        };
        self.guarded(gateway.complete(&self.ctx, request)).await
    }
}
