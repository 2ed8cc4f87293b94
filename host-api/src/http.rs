//! `delta:agent/http`: outbound HTTP requests under an allow-list.
//!
//! The [`HttpClient`] checks the agent's grant (scheme, host, port) first,
//! resolves and filters addresses itself (no loopback, private or
//! link-local targets unless the operator allows them), injects the
//! tenant's secrets into header values and bounds sizes, time and rate.
//! Without a client every call answers `not-configured`.

use async_trait::async_trait;

use crate::bindings::delta::agent::http::Host;
pub use crate::bindings::delta::agent::http::{HttpError, Method, Request, Response};
use crate::{CallContext, HostState};

/// A backend that sends agents' HTTP requests.
#[async_trait]
pub trait HttpClient: Send + Sync {
    /// Send `request` for the agent in `ctx`, or refuse it.
    async fn send(&self, ctx: &CallContext, request: Request) -> Result<Response, HttpError>;
}

impl Host for HostState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let Some(client) = self.caps.http.clone() else {
            return Ok(Err(HttpError::NotConfigured));
        };
        self.guarded(client.send(&self.ctx, request)).await
    }
}
