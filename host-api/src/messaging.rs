//! `delta:agent/messaging`: templated email and SMS.
//!
//! The guest sends a template id, variables and a recipient; the
//! [`Messenger`] applies the operator's message security model (approved
//! templates, allowed variables and recipients, channel grants, rate limits,
//! token cost) and records every attempt. Without a messenger every call
//! answers `not-configured`.

use async_trait::async_trait;

use crate::bindings::delta::agent::messaging::Host;
pub use crate::bindings::delta::agent::messaging::{Channel, Receipt, SendError, SendRequest};
use crate::{CallContext, HostState};

/// A backend that checks, renders and delivers templated messages.
#[async_trait]
pub trait Messenger: Send + Sync {
    /// Send one message for the agent in `ctx`, or refuse it with the first
    /// check that failed.
    async fn send(&self, ctx: &CallContext, request: SendRequest) -> Result<Receipt, SendError>;
}

impl Host for HostState {
    async fn send(&mut self, request: SendRequest) -> wasmtime::Result<Result<Receipt, SendError>> {
        let Some(messenger) = self.caps.messenger.clone() else {
            return Ok(Err(SendError::NotConfigured));
        };
        self.guarded(messenger.send(&self.ctx, request)).await
    }
}
