//! Operator configuration of the gateway (deserialised with serde, e.g. from
//! the node's TOML file). Every field documents its default; unknown fields
//! are refused so that a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The gateway's configuration: the providers it may call and the model
/// aliases agents may name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Providers, in order of preference: a model served by several providers
    /// is tried on each in this order (falling back on failure). Default:
    /// none (every call then fails with `unavailable`).
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Aliases an agent may name instead of a model, e.g. `fast =
    /// "claude-haiku-4-5"`. Resolved once (an alias never names another
    /// alias). Default: none.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key`
    /// and `anthropic-version` headers.
    Anthropic,
    /// OpenAI-compatible Chat Completions: `POST
    /// {base_url}/v1/chat/completions` with `Authorization: Bearer` (OpenAI,
    /// Ollama, vLLM, llama.cpp server, Groq, ...).
    Openai,
}

/// One provider endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name used in logs and error summaries; must be unique. Required.
    pub name: String,
    /// Protocol: `"anthropic"` or `"openai"`. Required.
    pub kind: ProviderKind,
    /// Base URL without the API path, e.g. `https://api.anthropic.com` or
    /// `http://127.0.0.1:11434` (the path `/v1/...` is appended). Required.
    pub base_url: String,
    /// Name of the environment variable holding the API key, read once when
    /// the gateway is built. Default: none. At most one of `api_key_env` and
    /// `api_key_file` may be set; with neither, no key header is sent (local
    /// servers such as Ollama need none).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (surrounding whitespace trimmed), read once
    /// when the gateway is built. Default: none.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Allow-list of the models this provider serves, by exact name. A model
    /// not listed by any provider cannot be called. Required (may be empty).
    pub models: Vec<String>,
    /// Deadline of one HTTP attempt (connect, send, and read the whole
    /// response), in milliseconds. Default: 60000.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Retries on this provider after the first attempt, for retryable
    /// failures only (429, 5xx, timeouts, connection errors). Default: 2.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Base of the exponential backoff between retries, in milliseconds: the
    /// n-th retry waits a random time in `[d/2, d]` with `d = retry_base_ms *
    /// 2^n` capped at `retry_max_ms`. Default: 250.
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    /// Cap on one backoff delay and on an honoured `Retry-After`, in
    /// milliseconds. A `Retry-After` longer than this is not waited for: the
    /// gateway moves to the next provider (and reports the delay if every
    /// attempt was rate limited). Default: 10000.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// Largest response body accepted, in bytes; a longer body is refused
    /// (and not read further). Default: 4194304 (4 MiB).
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: u64,
    /// Value of the `anthropic-version` header (Anthropic providers only).
    /// Default: `"2023-06-01"`.
    #[serde(default = "defaults::anthropic_version")]
    pub anthropic_version: String,
    /// Circuit breaker of this provider. Default: see [`CircuitConfig`].
    #[serde(default)]
    pub circuit: CircuitConfig,
}

/// When a provider is taken out of rotation.
///
/// After `failure_threshold` consecutive failed attempts (5xx, timeout,
/// connection error, malformed or oversized response) the circuit opens: the
/// provider is skipped for `cooldown_ms`. Then it is half-open: one call is
/// let through as a probe; its success closes the circuit, its failure opens
/// it for another cooldown. Rate limiting (429) and other 4xx answers do not
/// count: the provider is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive failed attempts that open the circuit; 0 disables the
    /// breaker. Default: 5.
    #[serde(default = "defaults::failure_threshold")]
    pub failure_threshold: u32,
    /// How long an open circuit stays open, in milliseconds. Default: 30000.
    #[serde(default = "defaults::cooldown_ms")]
    pub cooldown_ms: u64,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: defaults::failure_threshold(),
            cooldown_ms: defaults::cooldown_ms(),
        }
    }
}

impl ProviderConfig {
    /// A provider with every optional field at its default.
    pub fn new(
        name: impl Into<String>,
        kind: ProviderKind,
        base_url: impl Into<String>,
        models: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            api_key_env: None,
            api_key_file: None,
            models: models.into_iter().map(Into::into).collect(),
            timeout_ms: defaults::timeout_ms(),
            max_retries: defaults::max_retries(),
            retry_base_ms: defaults::retry_base_ms(),
            retry_max_ms: defaults::retry_max_ms(),
            max_response_bytes: defaults::max_response_bytes(),
            anthropic_version: defaults::anthropic_version(),
            circuit: CircuitConfig::default(),
        }
    }
}

/// Default values of the optional fields (serde needs functions).
mod defaults {
    pub fn timeout_ms() -> u64 {
        60_000
    }
    pub fn max_retries() -> u32 {
        2
    }
    pub fn retry_base_ms() -> u64 {
        250
    }
    pub fn retry_max_ms() -> u64 {
        10_000
    }
    pub fn max_response_bytes() -> u64 {
        4 * 1024 * 1024
    }
    pub fn anthropic_version() -> String {
        "2023-06-01".to_owned()
    }
    pub fn failure_threshold() -> u32 {
        5
    }
    pub fn cooldown_ms() -> u64 {
        30_000
    }
}
