//! The node's `delta:agent/agents` backend: messages to other agents,
//! handed to the control plane (`POST /v1/nodes/messages` with the node's
//! credential), which checks the sender's grant again, finds the receiver
//! in the sender's tenant, stores the message and queues the receiver's
//! run. Without a control plane there is nobody to deliver to: every call
//! answers `not-configured`.
//!
//! Every run gets [`GrantedAgents`]: it refuses at once when the
//! deployment's `agents` grant is empty (fail closed, no call made),
//! numbers the run's messages in the order the guest sends them (the
//! control plane derives the message id from the run id and that number,
//! so a run delivered again sends the same ids) and counts each in the
//! run's usage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use delta_host_api::agents::{SendError, Sent};
use delta_host_api::{AgentBus, CallContext};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::capabilities::RunMeter;
use crate::kv::NodeApiClient;

/// The WIT name of a send error (a bounded label set).
pub fn error_code(e: &SendError) -> &'static str {
    match e {
        SendError::NotConfigured => "not-configured",
        SendError::NotAllowed(_) => "not-allowed",
        SendError::UnknownAgent(_) => "unknown-agent",
        SendError::InvalidMessage(_) => "invalid-message",
        SendError::TooLarge(_) => "too-large",
        SendError::TooDeep(_) => "too-deep",
        SendError::TooMany(_) => "too-many",
        SendError::RateLimited(_) => "rate-limited",
        SendError::Unavailable(_) => "unavailable",
    }
}

/// Messages handed to the control plane.
pub struct RemoteAgents(pub Arc<NodeApiClient>);

#[derive(Deserialize)]
struct Answer {
    message_id: String,
    run_id: String,
}

impl RemoteAgents {
    /// Hand over message `seq` of the run in `ctx`.
    pub async fn send_numbered(
        &self,
        ctx: &CallContext,
        seq: u32,
        to: String,
        message: String,
    ) -> Result<Sent, SendError> {
        let body = json!({ "agent_id": &*ctx.agent_id, "run_id": &*ctx.run_id, "seq": seq,
                           "to": &to, "message": message });
        let e = match self.0.post::<Answer>(&["messages"], &body).await {
            Ok(a) => {
                return Ok(Sent {
                    message_id: a.message_id,
                    run_id: a.run_id,
                });
            }
            Err(e) => e,
        };
        let limit = e.details["limit"].as_u64().unwrap_or(0);
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Err(match (e.status, e.code.as_str()) {
            (Some(StatusCode::FORBIDDEN), "not_allowed") => SendError::NotAllowed(to),
            (Some(StatusCode::NOT_FOUND), "unknown_agent") => SendError::UnknownAgent(to),
            (Some(StatusCode::PAYLOAD_TOO_LARGE), _) => SendError::TooLarge(limit),
            (_, "invalid_message") => SendError::InvalidMessage(e.message),
            (_, "too_deep") => SendError::TooDeep(small(limit)),
            (_, "too_many") => SendError::TooMany(small(limit)),
            (Some(StatusCode::TOO_MANY_REQUESTS), _) => {
                SendError::RateLimited(e.details["retry_after_ms"].as_u64().unwrap_or(1000))
            }
            (Some(status), code) => {
                tracing::warn!(%status, code, "agents: the control plane refused a message");
                SendError::Unavailable(format!("the control plane answered {}", status.as_u16()))
            }
            (None, _) => SendError::Unavailable(e.message),
        })
    }
}

/// One run's view: the grant checked first, messages numbered and counted.
pub struct GrantedAgents {
    inner: Arc<RemoteAgents>,
    granted: Vec<String>,
    next_seq: AtomicU32,
    meter: Arc<RunMeter>,
}

impl GrantedAgents {
    /// The view of a run whose deployment grants `granted`.
    pub fn new(inner: Arc<RemoteAgents>, granted: Vec<String>, meter: Arc<RunMeter>) -> Self {
        Self {
            inner,
            granted,
            next_seq: AtomicU32::new(0),
            meter,
        }
    }
}

#[async_trait]
impl AgentBus for GrantedAgents {
    async fn send(
        &self,
        ctx: &CallContext,
        to: String,
        message: String,
    ) -> Result<Sent, SendError> {
        let bytes = message.len() as u64;
        // Numbered before any check, so that the numbers depend only on the
        // order of the guest's calls.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let result = if self.granted.is_empty() {
            Err(SendError::NotAllowed(to))
        } else {
            self.inner.send_numbered(ctx, seq, to, message).await
        };
        self.meter.agent_message_result(bytes, &result);
        result
    }
}
