//! Messages to other agents of the same tenant (`delta:agent/agents`).
//!
//! A message starts a run of the receiver whose input is
//! `{"message": <your JSON>, "message_id": "msg_...", "from": {"agent_id":
//! ..., "agent_name": ..., "run_id": ...}}` ([`Incoming`] reads it).
//! [`send`] returns once the message is stored and the receiver's run
//! queued; the run is delivered at least once (retried, then dead-lettered:
//! `GET /v1/runs?status=dead`). The message id is derived from this run's
//! id and the message's position in the run, so when this run is delivered
//! again the same messages get the same ids and the receiver is not
//! started twice for one message. Messages have no order between them.
//!
//! The agent needs the `agents` grant naming the receiver (name or id);
//! without it every call fails with [`SendError::NotAllowed`].
//!
//! ```no_run
//! use delta_sdk::agents;
//! use delta_sdk::serde_json::json;
//!
//! # fn main() -> Result<(), delta_sdk::AgentError> {
//! let sent = agents::send("summariser", &json!({"url": "https://example.com"}))?;
//! delta_sdk::info!("message {} starts run {}", sent.message_id, sent.run_id);
//! # Ok(())
//! # }
//! ```
//!
//! Outside WebAssembly every call fails with [`SendError::NotConfigured`].

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// A message accepted for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The message's id (the receiver sees it as `message_id`).
    pub message_id: String,
    /// The receiver's run it starts.
    pub run_id: String,
}

/// Why a message was refused.
///
/// Converts into [`AgentError`] with `?`: the code is `agents-` followed
/// by [`SendError::code`]; retryable for [`SendError::RateLimited`] and
/// [`SendError::Unavailable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No control plane is configured on this node.
    NotConfigured,
    /// The receiver is not in the agent's `agents` grant.
    NotAllowed(String),
    /// No agent of this tenant has that name or id.
    UnknownAgent(String),
    /// The message is not a JSON document.
    InvalidMessage(String),
    /// The message is over the limit (bytes).
    TooLarge(u64),
    /// The chain of messages that led here is at its limit (depth).
    TooDeep(u32),
    /// This run has sent as many messages as a run may (the limit).
    TooMany(u32),
    /// Rate limited; retry after this many milliseconds.
    RateLimited(u64),
    /// The control plane could not take it; retry later.
    Unavailable(String),
}

impl SendError {
    /// The WIT case name (`not-allowed`, `too-deep`, ...).
    pub fn code(&self) -> &'static str {
        match self {
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
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConfigured => f.write_str("agent messages are not configured"),
            SendError::NotAllowed(to) => write!(f, "this agent may not message {to}"),
            SendError::UnknownAgent(to) => write!(f, "no agent {to} in this tenant"),
            SendError::InvalidMessage(why) => write!(f, "invalid message: {why}"),
            SendError::TooLarge(limit) => write!(f, "over the limit of {limit} bytes"),
            SendError::TooDeep(limit) => {
                write!(f, "the chain of messages is at its limit of {limit}")
            }
            SendError::TooMany(limit) => write!(f, "a run may send at most {limit} messages"),
            SendError::RateLimited(ms) => write!(f, "rate limited; retry in {ms} ms"),
            SendError::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<SendError> for AgentError {
    fn from(error: SendError) -> Self {
        AgentError {
            code: format!("agents-{}", error.code()),
            retryable: matches!(error, SendError::RateLimited(_) | SendError::Unavailable(_)),
            message: error.to_string(),
        }
    }
}

/// Send `message` to the agent named `to` (name or id, this tenant).
pub fn send<T: Serialize + ?Sized>(to: &str, message: &T) -> Result<Sent, SendError> {
    let json =
        serde_json::to_string(message).map_err(|e| SendError::InvalidMessage(e.to_string()))?;
    send_json(to, &json)
}

/// Send `message`, already JSON text, to the agent named `to`.
pub fn send_json(to: &str, message: &str) -> Result<Sent, SendError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::send(to, message)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (to, message);
        Err(SendError::NotConfigured)
    }
}

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The sending agent's id.
    pub agent_id: String,
    /// Its name.
    pub agent_name: String,
    /// The run that sent it.
    pub run_id: String,
}

/// The input of a run a message started: use it (with your message type
/// as `M`) as [`crate::Agent::Input`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming<M> {
    /// The message.
    pub message: M,
    /// Its id: the same on every delivery of this run.
    pub message_id: String,
    /// Who sent it.
    pub from: Sender,
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::agent::delta::agent::agents as raw;

    pub(super) fn send(to: &str, message: &str) -> Result<Sent, SendError> {
        raw::send(to, message)
            .map(|s| Sent {
                message_id: s.message_id,
                run_id: s.run_id,
            })
            .map_err(|e| match e {
                raw::SendError::NotConfigured => SendError::NotConfigured,
                raw::SendError::NotAllowed(to) => SendError::NotAllowed(to),
                raw::SendError::UnknownAgent(to) => SendError::UnknownAgent(to),
                raw::SendError::InvalidMessage(w) => SendError::InvalidMessage(w),
                raw::SendError::TooLarge(l) => SendError::TooLarge(l),
                raw::SendError::TooDeep(l) => SendError::TooDeep(l),
                raw::SendError::TooMany(l) => SendError::TooMany(l),
                raw::SendError::RateLimited(ms) => SendError::RateLimited(ms),
                raw::SendError::Unavailable(w) => SendError::Unavailable(w),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_webassembly_sending_is_not_configured() {
        assert_eq!(
            send("other", &serde_json::json!({"a": 1})),
            Err(SendError::NotConfigured)
        );
        let e: AgentError = SendError::TooDeep(8).into();
        assert_eq!((e.code.as_str(), e.retryable), ("agents-too-deep", false));
    }

    #[test]
    fn an_incoming_message_reads_as_the_host_writes_it() {
        let input = r#"{"message": {"n": 3}, "message_id": "msg_1",
                        "from": {"agent_id": "agt_1", "agent_name": "a", "run_id": "run_1"}}"#;
        let got: Incoming<serde_json::Value> = serde_json::from_str(input).expect("parses");
        assert_eq!(got.message["n"], 3);
        assert_eq!(got.from.agent_name, "a");
    }
}
