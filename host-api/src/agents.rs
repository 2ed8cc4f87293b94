//! `delta:agent/agents`: messages to other agents of the same tenant.
//!
//! The [`AgentBus`] checks the agent's `agents` grant, numbers the run's
//! messages (the number is part of the message id, so a run delivered
//! again sends the same ids) and hands each to whoever delivers it (the
//! control plane). Without a bus every call answers `not-configured`.

use async_trait::async_trait;

use crate::bindings::delta::agent::agents::Host;
pub use crate::bindings::delta::agent::agents::{SendError, Sent};
use crate::{CallContext, HostState};

/// A backend that delivers agents' messages to other agents.
#[async_trait]
pub trait AgentBus: Send + Sync {
    /// Send `message` (JSON text) from the agent in `ctx` to the agent
    /// named `to`, or refuse it.
    async fn send(&self, ctx: &CallContext, to: String, message: String)
    -> Result<Sent, SendError>;
}

impl Host for HostState {
    async fn send(
        &mut self,
        to: String,
        message: String,
    ) -> wasmtime::Result<Result<Sent, SendError>> {
        let Some(bus) = self.caps.agents.clone() else {
            return Ok(Err(SendError::NotConfigured));
        };
        self.guarded(bus.send(&self.ctx, to, message)).await
    }
}
