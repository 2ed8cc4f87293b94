//! Chat completions through the host's LLM providers (`delta:agent/llm`).
//!
//! The agent names a model (or an operator-defined alias); it never sees a
//! provider, a key or a URL. Every call is paid from the agent's token
//! budget: the host reserves `max_tokens` plus an estimate of the prompt
//! before sending anything and settles to the provider's reported usage.
//!
//! ```no_run
//! use delta_sdk::llm::{self, CompletionRequest};
//!
//! # fn main() -> Result<(), delta_sdk::AgentError> {
//! let completion = CompletionRequest::new("fast")
//!     .system("You answer in one word.")
//!     .user("What colour is the sky?")
//!     .max_tokens(16)
//!     .temperature(0.0)
//!     .complete()?; // or llm::complete(request)
//! delta_sdk::info!("{} said {}", completion.model, completion.text);
//! # Ok(())
//! # }
//! ```
//!
//! Outside WebAssembly (unit tests on the host) every call fails with
//! [`LlmError::NotConfigured`].

use core::fmt;

use crate::{AgentError, Shortfall};

/// Who said a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user's turn.
    User,
    /// An earlier answer of the model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }

    /// A [`Role::System`] message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A [`Role::User`] message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// A [`Role::Assistant`] message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A chat completion request, built with chained calls.
///
/// ```
/// use delta_sdk::llm::CompletionRequest;
///
/// let request = CompletionRequest::new("gpt-4o-mini")
///     .system("Be brief.")
///     .user("Hello")
///     .max_tokens(64)
///     .stop("\n\n");
/// assert_eq!(request.messages.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// Model name or operator-defined alias; must be granted to the agent.
    pub model: String,
    /// The conversation, oldest first. Must not be empty.
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens; also what is reserved up front.
    /// Defaults to [`CompletionRequest::DEFAULT_MAX_TOKENS`].
    pub max_tokens: u32,
    /// Sampling temperature (provider default when `None`).
    pub temperature: Option<f32>,
    /// Sequences that end generation.
    pub stop: Vec<String>,
}

impl CompletionRequest {
    /// `max_tokens` of a new request.
    pub const DEFAULT_MAX_TOKENS: u32 = 1024;

    /// An empty conversation for `model`, with
    /// [`DEFAULT_MAX_TOKENS`](Self::DEFAULT_MAX_TOKENS), the provider's
    /// default temperature and no stop sequences.
    pub fn new(model: impl Into<String>) -> Self {
        CompletionRequest {
            model: model.into(),
            messages: Vec::new(),
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            temperature: None,
            stop: Vec::new(),
        }
    }

    /// Append a message.
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Append a [`Role::System`] message.
    pub fn system(self, content: impl Into<String>) -> Self {
        self.message(Message::system(content))
    }

    /// Append a [`Role::User`] message.
    pub fn user(self, content: impl Into<String>) -> Self {
        self.message(Message::user(content))
    }

    /// Append a [`Role::Assistant`] message.
    pub fn assistant(self, content: impl Into<String>) -> Self {
        self.message(Message::assistant(content))
    }

    /// Set the upper bound on generated tokens (also what is reserved from
    /// the budget up front).
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Set the sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Add a stop sequence.
    pub fn stop(mut self, sequence: impl Into<String>) -> Self {
        self.stop.push(sequence.into());
        self
    }

    /// Send the request: same as [`complete`]`(self)`.
    pub fn complete(self) -> Result<Completion, LlmError> {
        complete(self)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// Provider-specific reason (content filter, tool use, ...).
    Other,
}

/// Tokens a call consumed, as reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
}

impl Usage {
    /// `input_tokens + output_tokens`.
    pub fn total(&self) -> u64 {
        u64::from(self.input_tokens) + u64::from(self.output_tokens)
    }
}

/// A completed generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// The concrete model that answered (after alias resolution).
    pub model: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Tokens consumed.
    pub usage: Usage,
}

/// Why a completion was refused or failed.
///
/// Converts into [`AgentError`] with `?`: the code is `llm-` followed by
/// [`LlmError::code`] (for example `llm-not-configured`), the message is the
/// `Display` text and `retryable` is [`LlmError::is_retryable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmError {
    /// No LLM provider is configured on this node.
    NotConfigured,
    /// The model (or alias) is not granted to this agent; carries the name.
    ModelNotAllowed(String),
    /// The budget cannot cover the reservation; nothing was sent.
    BudgetExceeded(Shortfall),
    /// The request is malformed (empty conversation, zero max-tokens, ...).
    InvalidRequest(String),
    /// Providers are rate limiting.
    RateLimited {
        /// Retry after this many milliseconds.
        retry_after_ms: u64,
    },
    /// Every configured provider failed after retries; carries a summary.
    Unavailable(String),
}

impl LlmError {
    /// The WIT variant name in kebab case (`"not-configured"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::NotConfigured => "not-configured",
            LlmError::ModelNotAllowed(_) => "model-not-allowed",
            LlmError::BudgetExceeded(_) => "budget-exceeded",
            LlmError::InvalidRequest(_) => "invalid-request",
            LlmError::RateLimited { .. } => "rate-limited",
            LlmError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the same call may succeed later (`rate-limited`,
    /// `unavailable`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. } | LlmError::Unavailable(_)
        )
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::NotConfigured => f.write_str("no LLM provider is configured on this node"),
            LlmError::ModelNotAllowed(model) => {
                write!(f, "model `{model}` is not granted to this agent")
            }
            LlmError::BudgetExceeded(shortfall) => {
                write!(f, "token budget exceeded: {shortfall}")
            }
            LlmError::InvalidRequest(reason) => write!(f, "invalid completion request: {reason}"),
            LlmError::RateLimited { retry_after_ms } => {
                write!(f, "LLM rate limited; retry after {retry_after_ms} ms")
            }
            LlmError::Unavailable(summary) => write!(f, "no LLM provider available: {summary}"),
        }
    }
}

impl std::error::Error for LlmError {}

impl From<LlmError> for AgentError {
    fn from(error: LlmError) -> Self {
        AgentError {
            code: format!("llm-{}", error.code()),
            message: error.to_string(),
            retryable: error.is_retryable(),
        }
    }
}

/// Run one chat completion. Blocks until the provider answers, the call
/// fails, or the run's deadline passes.
pub fn complete(request: CompletionRequest) -> Result<Completion, LlmError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::complete(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = request;
        Err(LlmError::NotConfigured)
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::agent::delta::agent::llm as raw;

    pub(super) fn complete(request: CompletionRequest) -> Result<Completion, LlmError> {
        let request = raw::CompletionRequest {
            model: request.model,
            messages: request
                .messages
                .into_iter()
                .map(|m| raw::Message {
                    role: match m.role {
                        Role::System => raw::Role::System,
                        Role::User => raw::Role::User,
                        Role::Assistant => raw::Role::Assistant,
                    },
                    content: m.content,
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stop: request.stop,
        };
        match raw::complete(&request) {
            Ok(c) => Ok(Completion {
                text: c.text,
                model: c.model,
                finish_reason: match c.finish_reason {
                    raw::FinishReason::Stop => FinishReason::Stop,
                    raw::FinishReason::Length => FinishReason::Length,
                    raw::FinishReason::Other => FinishReason::Other,
                },
                usage: Usage {
                    input_tokens: c.usage.input_tokens,
                    output_tokens: c.usage.output_tokens,
                },
            }),
            Err(e) => Err(match e {
                raw::LlmError::NotConfigured => LlmError::NotConfigured,
                raw::LlmError::ModelNotAllowed(m) => LlmError::ModelNotAllowed(m),
                raw::LlmError::BudgetExceeded(s) => LlmError::BudgetExceeded(s.into()),
                raw::LlmError::InvalidRequest(r) => LlmError::InvalidRequest(r),
                raw::LlmError::RateLimited(ms) => LlmError::RateLimited { retry_after_ms: ms },
                raw::LlmError::Unavailable(s) => LlmError::Unavailable(s),
            }),
        }
    }
}
