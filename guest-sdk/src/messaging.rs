//! Templated email and SMS (`delta:agent/messaging`).
//!
//! The agent picks an approved template, fills its allowed variables and
//! names an allowed recipient; it never writes a raw message, a header or a
//! sender address. Every refusal is recorded in the host's message audit log.
//!
//! ```no_run
//! use delta_sdk::messaging::SendRequest;
//!
//! # fn main() -> Result<(), delta_sdk::AgentError> {
//! let receipt = SendRequest::email("welcome", "ada@example.com")
//!     .var("name", "Ada")
//!     .send()?; // or messaging::send(request)
//! delta_sdk::info!("sent {}", receipt.message_id);
//! # Ok(())
//! # }
//! ```
//!
//! Outside WebAssembly (unit tests on the host) every call fails with
//! [`SendError::NotConfigured`].

use core::fmt;

use crate::{AgentError, Shortfall};

/// Delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Email; the recipient is an RFC 5322 addr-spec.
    Email,
    /// SMS; the recipient is an E.164 phone number.
    Sms,
}

/// A request to send one message, built with chained calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// Delivery channel.
    pub channel: Channel,
    /// Id of an approved template for this channel.
    pub template_id: String,
    /// Email address or E.164 phone number.
    pub recipient: String,
    /// Values for the template's variables, as name/value pairs.
    pub variables: Vec<(String, String)>,
}

impl SendRequest {
    /// A message on `channel` with no variables.
    pub fn new(
        channel: Channel,
        template_id: impl Into<String>,
        recipient: impl Into<String>,
    ) -> Self {
        SendRequest {
            channel,
            template_id: template_id.into(),
            recipient: recipient.into(),
            variables: Vec::new(),
        }
    }

    /// An email from `template_id` to `address`.
    pub fn email(template_id: impl Into<String>, address: impl Into<String>) -> Self {
        Self::new(Channel::Email, template_id, address)
    }

    /// An SMS from `template_id` to the E.164 number `phone`.
    pub fn sms(template_id: impl Into<String>, phone: impl Into<String>) -> Self {
        Self::new(Channel::Sms, template_id, phone)
    }

    /// Set a template variable.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }

    /// Send the message: same as [`send`]`(self)`.
    pub fn send(self) -> Result<Receipt, SendError> {
        send(self)
    }
}

/// Proof of an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Host-assigned id of the message (also in the audit log).
    pub message_id: String,
    /// Tokens charged to the agent's budget for this message.
    pub tokens_charged: u64,
}

/// Why a message was refused, in the order the host checks.
///
/// Converts into [`AgentError`] with `?`: the code is `messaging-` followed
/// by [`SendError::code`] (for example `messaging-template-not-found`), the
/// message is the `Display` text and `retryable` is
/// [`SendError::is_retryable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No backend for this channel is configured on this node.
    NotConfigured,
    /// No template with this id.
    TemplateNotFound,
    /// The template exists but is not approved.
    TemplateNotApproved,
    /// The template belongs to another channel.
    WrongChannel,
    /// A variable is not among the template's allowed variables; carries its name.
    VariableNotAllowed(String),
    /// A variable's value is too long or contains forbidden characters; carries its name.
    VariableInvalid(String),
    /// A variable the template needs is missing; carries its name.
    VariableMissing(String),
    /// The recipient is not a valid address or number for the channel.
    InvalidRecipient,
    /// The recipient is not on the agent's allowed list.
    RecipientNotAllowed,
    /// The agent may not use this channel.
    ChannelNotAllowed,
    /// Per-agent rate limit.
    RateLimited {
        /// Retry after this many milliseconds.
        retry_after_ms: u64,
    },
    /// The budget cannot cover the message's token cost.
    BudgetExceeded(Shortfall),
    /// The provider refused or failed; carries a summary without secrets.
    DeliveryFailed(String),
}

impl SendError {
    /// The WIT variant name in kebab case (`"template-not-found"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            SendError::NotConfigured => "not-configured",
            SendError::TemplateNotFound => "template-not-found",
            SendError::TemplateNotApproved => "template-not-approved",
            SendError::WrongChannel => "wrong-channel",
            SendError::VariableNotAllowed(_) => "variable-not-allowed",
            SendError::VariableInvalid(_) => "variable-invalid",
            SendError::VariableMissing(_) => "variable-missing",
            SendError::InvalidRecipient => "invalid-recipient",
            SendError::RecipientNotAllowed => "recipient-not-allowed",
            SendError::ChannelNotAllowed => "channel-not-allowed",
            SendError::RateLimited { .. } => "rate-limited",
            SendError::BudgetExceeded(_) => "budget-exceeded",
            SendError::DeliveryFailed(_) => "delivery-failed",
        }
    }

    /// Whether the same call may succeed later (`rate-limited`,
    /// `delivery-failed`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SendError::RateLimited { .. } | SendError::DeliveryFailed(_)
        )
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotConfigured => {
                f.write_str("no messaging backend is configured for this channel")
            }
            SendError::TemplateNotFound => f.write_str("template not found"),
            SendError::TemplateNotApproved => f.write_str("template not approved"),
            SendError::WrongChannel => f.write_str("template belongs to another channel"),
            SendError::VariableNotAllowed(name) => {
                write!(f, "variable `{name}` is not allowed by the template")
            }
            SendError::VariableInvalid(name) => write!(f, "variable `{name}` has an invalid value"),
            SendError::VariableMissing(name) => write!(f, "variable `{name}` is missing"),
            SendError::InvalidRecipient => f.write_str("invalid recipient"),
            SendError::RecipientNotAllowed => f.write_str("recipient not allowed"),
            SendError::ChannelNotAllowed => f.write_str("channel not allowed for this agent"),
            SendError::RateLimited { retry_after_ms } => {
                write!(f, "messaging rate limited; retry after {retry_after_ms} ms")
            }
            SendError::BudgetExceeded(shortfall) => {
                write!(f, "token budget exceeded: {shortfall}")
            }
            SendError::DeliveryFailed(summary) => write!(f, "delivery failed: {summary}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<SendError> for AgentError {
    fn from(error: SendError) -> Self {
        AgentError {
            code: format!("messaging-{}", error.code()),
            message: error.to_string(),
            retryable: error.is_retryable(),
        }
    }
}

/// Render and send one message. Returns once the provider accepted it.
pub fn send(request: SendRequest) -> Result<Receipt, SendError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::send(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = request;
        Err(SendError::NotConfigured)
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::agent::delta::agent::messaging as raw;

    pub(super) fn send(request: SendRequest) -> Result<Receipt, SendError> {
        let request = raw::SendRequest {
            channel: match request.channel {
                Channel::Email => raw::Channel::Email,
                Channel::Sms => raw::Channel::Sms,
            },
            template_id: request.template_id,
            recipient: request.recipient,
            variables: request.variables,
        };
        match raw::send(&request) {
            Ok(r) => Ok(Receipt {
                message_id: r.message_id,
                tokens_charged: r.tokens_charged,
            }),
            Err(e) => Err(match e {
                raw::SendError::NotConfigured => SendError::NotConfigured,
                raw::SendError::TemplateNotFound => SendError::TemplateNotFound,
                raw::SendError::TemplateNotApproved => SendError::TemplateNotApproved,
                raw::SendError::WrongChannel => SendError::WrongChannel,
                raw::SendError::VariableNotAllowed(n) => SendError::VariableNotAllowed(n),
                raw::SendError::VariableInvalid(n) => SendError::VariableInvalid(n),
                raw::SendError::VariableMissing(n) => SendError::VariableMissing(n),
                raw::SendError::InvalidRecipient => SendError::InvalidRecipient,
                raw::SendError::RecipientNotAllowed => SendError::RecipientNotAllowed,
                raw::SendError::ChannelNotAllowed => SendError::ChannelNotAllowed,
                raw::SendError::RateLimited(ms) => SendError::RateLimited { retry_after_ms: ms },
                raw::SendError::BudgetExceeded(s) => SendError::BudgetExceeded(s.into()),
                raw::SendError::DeliveryFailed(s) => SendError::DeliveryFailed(s),
            }),
        }
    }
}
