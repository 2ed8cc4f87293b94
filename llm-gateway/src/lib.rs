//! The host side of `delta:agent/llm`: an [`LlmGateway`] that speaks real
//! HTTP to LLM providers.
//!
//! Two protocols cover the providers Delta talks to: the **Anthropic
//! Messages API** and the **OpenAI-compatible Chat Completions API** (OpenAI,
//! Ollama, vLLM, llama.cpp server, Groq). See [`config`] for the operator's
//! configuration.
//!
//! # Structure
//! [`Providers`] is built once per node from an [`LlmConfig`]: one HTTP
//! client, the providers (with their keys, read from an environment variable
//! or a file, never from a guest) and a circuit breaker per provider.
//! [`Providers::for_agent`] makes an [`AgentGateway`] for one agent: the
//! models and aliases it was granted and the [`BudgetLedger`] it pays from.
//!
//! # One call
//! 1. Validate (non-empty conversation, `max-tokens > 0`, finite
//!    non-negative temperature) -> `invalid-request`.
//! 2. Resolve an alias to its model; the agent must be granted the name it
//!    used or the model -> otherwise `model-not-allowed(name)`.
//! 3. Pick the providers whose `models` list it, in config order (none ->
//!    `unavailable`).
//! 4. **Budget first**: reserve `max-tokens` + [`estimate_prompt_tokens`]
//!    through the ledger. If the ledger refuses -> `budget-exceeded`, and no
//!    request is sent.
//! 5. Try the providers in order, skipping those whose circuit is open. On a
//!    429, a 5xx, a timeout or a connection error, retry the same provider
//!    with exponential backoff and jitter (honouring `Retry-After`, capped);
//!    other failures (4xx, malformed or oversized body) and exhausted retries
//!    fall back to the next provider. Bodies are read in chunks up to
//!    `max_response_bytes`.
//! 6. On success, settle the reservation to the provider's reported usage
//!    (input + output). **When the provider reports no usage, the whole
//!    reservation is charged** and a warning is logged; the guest is told
//!    `input = estimate, output = max-tokens`. On failure, release it. If
//!    the call is dropped midway (the run's deadline or cancellation), the
//!    reservation is charged in full when a request had been sent (the
//!    provider may bill it) and released otherwise.
//! 7. The final failure is `rate-limited(ms)` when every attempt was a 429
//!    (the smallest `Retry-After`, or backoff, across providers), otherwise
//!    `unavailable(summary)`: provider names, status codes and our own words,
//!    never a key, a header or a response body.
//!
//! **Without a ledger** (`None`), calls are not metered: nothing is reserved
//! or charged. Grants and validation still apply.
//!
//! Keys are held in header values marked sensitive, never logged, and
//! scrubbed from error summaries as a last line of defence. Redirects are
//! not followed (a redirect could carry a key to another host). The client
//! honours the usual `HTTPS_PROXY`/`NO_PROXY` environment.

pub mod config;

mod circuit;
mod gateway;
mod protocol;

use delta_host_api::llm::Message;

pub use config::{CircuitConfig, LlmConfig, ProviderConfig, ProviderKind};
pub use delta_host_api::{BudgetLedger, LlmGateway};
pub use gateway::{AgentGateway, ConfigError, Providers};

/// Tokens added per message for the role and the chat template's framing.
pub const PER_MESSAGE_OVERHEAD: u64 = 4;
/// Tokens added once per request for priming the assistant's reply.
pub const PER_REQUEST_OVERHEAD: u64 = 3;

/// Estimate the prompt's tokens, to reserve before the provider reports the
/// real count: per message, its content's UTF-8 bytes / 4 rounded up plus
/// [`PER_MESSAGE_OVERHEAD`], plus [`PER_REQUEST_OVERHEAD`].
///
/// Four bytes per token is the usual figure for English with BPE tokenizers;
/// text that tokenizes worse (code, CJK) is underestimated, which is safe:
/// the call is settled to the provider's usage, and the ledger charges usage
/// beyond the reservation as far as the budget allows.
pub fn estimate_prompt_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| (m.content.len() as u64).div_ceil(4) + PER_MESSAGE_OVERHEAD)
        .fold(PER_REQUEST_OVERHEAD, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_host_api::llm::Role;

    #[test]
    fn estimator_rounds_up_and_adds_overheads() {
        let m = |s: &str| Message {
            role: Role::User,
            content: s.into(),
        };
        assert_eq!(estimate_prompt_tokens(&[]), 3);
        assert_eq!(estimate_prompt_tokens(&[m("")]), 3 + 4);
        assert_eq!(estimate_prompt_tokens(&[m("abcde")]), 3 + 4 + 2);
        assert_eq!(
            estimate_prompt_tokens(&[m("abcd"), m("é")]),
            3 + 4 + 1 + 4 + 1
        );
    }
}
