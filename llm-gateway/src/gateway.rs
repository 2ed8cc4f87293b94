//! [`Providers`] (shared state built once from the config) and
//! [`AgentGateway`] (one agent's view: grants and ledger) implementing
//! [`LlmGateway`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use delta_host_api::bindings::delta::agent::types::Shortfall;
use delta_host_api::llm::{Completion, CompletionRequest, LlmError, Usage};
use delta_host_api::{BudgetLedger, CallContext, LedgerError, LlmGateway, Reservation};
use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use crate::circuit::Circuit;
use crate::config::{LlmConfig, ProviderConfig, ProviderKind};
use crate::estimate_prompt_tokens;
use crate::protocol::{self, Parsed};

/// Why the gateway could not be built from its configuration. Messages name
/// providers, variables and files, never a key's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two providers have the same name.
    #[error("duplicate provider name {0:?}")]
    DuplicateProvider(String),
    /// Both `api_key_env` and `api_key_file` are set.
    #[error("provider {0:?}: set at most one of api_key_env and api_key_file")]
    TwoKeySources(String),
    /// The key's environment variable is unset, empty or not UTF-8.
    #[error("provider {provider:?}: environment variable {var} is unset, empty or not UTF-8")]
    MissingKeyEnv {
        /// Provider name.
        provider: String,
        /// Variable name.
        var: String,
    },
    /// The key file could not be read.
    #[error("provider {provider:?}: cannot read key file {}: {source}", path.display())]
    KeyFile {
        /// Provider name.
        provider: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key (or `anthropic_version`) cannot be sent as an HTTP header
    /// (empty or with control characters); the value itself is not shown.
    #[error("provider {provider:?}: {what} is empty or not a valid HTTP header value")]
    BadHeader {
        /// Provider name.
        provider: String,
        /// `"api key"` or `"anthropic_version"`.
        what: &'static str,
    },
    /// `base_url` is not an absolute `http` or `https` URL.
    #[error("provider {provider:?}: base_url is not an absolute http(s) URL")]
    BadUrl {
        /// Provider name.
        provider: String,
    },
    /// A numeric setting that must be positive is zero.
    #[error("provider {provider:?}: {field} must be greater than 0")]
    Zero {
        /// Provider name.
        provider: String,
        /// Field name.
        field: &'static str,
    },
    /// An alias has the name of a served model (resolution would be
    /// ambiguous).
    #[error("alias {0:?} is also the name of a model")]
    AliasShadowsModel(String),
    /// An alias names a model that no provider serves.
    #[error("alias {alias:?} names model {model:?}, which no provider serves")]
    UnservedAlias {
        /// The alias.
        alias: String,
        /// Its target.
        model: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// An API key: never printed, compared or logged.
struct Secret {
    /// The raw key, kept to scrub it from any text that might echo it.
    raw: String,
    /// The ready header value (`x-api-key` or `Bearer ...`), marked
    /// sensitive so that hyper and reqwest redact it in debug output.
    header: HeaderValue,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug)]
struct Provider {
    cfg: ProviderConfig,
    url: String,
    key: Option<Secret>,
    version: HeaderValue,
    circuit: Circuit,
}

/// Shared state of the gateway, built once from [`LlmConfig`]: one HTTP
/// client (connection pools), the providers with their keys, and each
/// provider's circuit breaker. Share it in an `Arc` across agents; make a
/// per-agent [`AgentGateway`] with [`Providers::for_agent`].
#[derive(Debug)]
pub struct Providers {
    client: reqwest::Client,
    providers: Vec<Provider>,
    aliases: BTreeMap<String, String>,
}

impl Providers {
    /// Build from `config`, reading keys from the process environment and
    /// the named files.
    pub fn new(config: &LlmConfig) -> Result<Self, ConfigError> {
        Self::with_env(config, |var| std::env::var(var).ok())
    }

    /// Build from `config`, reading `api_key_env` variables through `env`
    /// (tests and embedders that do not want the process environment).
    pub fn with_env(
        config: &LlmConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut names = HashSet::new();
        let mut providers = Vec::with_capacity(config.providers.len());
        for cfg in &config.providers {
            if !names.insert(cfg.name.as_str()) {
                return Err(ConfigError::DuplicateProvider(cfg.name.clone()));
            }
            providers.push(Provider::new(cfg, &env)?);
        }
        let served: HashSet<&str> = providers
            .iter()
            .flat_map(|p| p.cfg.models.iter().map(String::as_str))
            .collect();
        for (alias, model) in &config.aliases {
            if served.contains(alias.as_str()) {
                return Err(ConfigError::AliasShadowsModel(alias.clone()));
            }
            if !served.contains(model.as_str()) {
                return Err(ConfigError::UnservedAlias {
                    alias: alias.clone(),
                    model: model.clone(),
                });
            }
        }
        let client = reqwest::Client::builder()
            // A redirect could carry the key elsewhere or turn a POST into a
            // GET; providers do not redirect API calls.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("delta-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self {
            client,
            providers,
            aliases: config.aliases.clone(),
        })
    }

    /// A gateway for one agent that may use the models and aliases in
    /// `grants`, paying from `ledger`. Without a ledger calls are not
    /// metered (development nodes); grants are still enforced.
    pub fn for_agent(
        self: &Arc<Self>,
        grants: impl IntoIterator<Item = impl Into<String>>,
        ledger: Option<Arc<dyn BudgetLedger>>,
    ) -> AgentGateway {
        AgentGateway {
            providers: Arc::clone(self),
            grants: grants.into_iter().map(Into::into).collect(),
            ledger,
        }
    }

    /// The model `name` stands for: its alias target, or `name` itself.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, String::as_str)
    }

    /// Whether the circuit breaker of provider `name` is open now (`None`
    /// for an unknown provider).
    pub fn circuit_open(&self, name: &str) -> Option<bool> {
        self.providers
            .iter()
            .find(|p| p.cfg.name == name)
            .map(|p| p.circuit.is_open())
    }

    /// Replace every configured key in `text` (defence in depth: summaries
    /// are built from our own words, but a URL or a library message could
    /// echo a key an operator put in the wrong place).
    fn scrub(&self, mut text: String) -> String {
        for key in self.providers.iter().filter_map(|p| p.key.as_ref()) {
            if !key.raw.is_empty() && text.contains(&key.raw) {
                text = text.replace(&key.raw, "<redacted>");
            }
        }
        text
    }
}

impl Provider {
    fn new(
        cfg: &ProviderConfig,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let name = || cfg.name.clone();
        for (field, value) in [
            ("timeout_ms", cfg.timeout_ms),
            ("max_response_bytes", cfg.max_response_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero {
                    provider: name(),
                    field,
                });
            }
        }
        let url = Url::parse(&cfg.base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| ConfigError::BadUrl { provider: name() })?;
        let url = format!(
            "{}{}",
            url.as_str().trim_end_matches('/'),
            protocol::path(cfg.kind)
        );
        let raw = match (&cfg.api_key_env, &cfg.api_key_file) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoKeySources(name())),
            (Some(var), None) => {
                Some(env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    ConfigError::MissingKeyEnv {
                        provider: name(),
                        var: var.clone(),
                    }
                })?)
            }
            (None, Some(path)) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
                        provider: name(),
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            (None, None) => None,
        };
        let key = match raw {
            None => None,
            Some(raw) => {
                let raw = raw.trim().to_owned();
                let value = match cfg.kind {
                    ProviderKind::Anthropic => raw.clone(),
                    ProviderKind::Openai => format!("Bearer {raw}"),
                };
                let mut header = HeaderValue::from_str(&value)
                    .ok()
                    .filter(|_| !raw.is_empty())
                    .ok_or_else(|| ConfigError::BadHeader {
                        provider: name(),
                        what: "api key",
                    })?;
                header.set_sensitive(true);
                Some(Secret { raw, header })
            }
        };
        let version =
            HeaderValue::from_str(&cfg.anthropic_version).map_err(|_| ConfigError::BadHeader {
                provider: name(),
                what: "anthropic_version",
            })?;
        Ok(Self {
            cfg: cfg.clone(),
            url,
            key,
            version,
            circuit: Circuit::new(&cfg.circuit),
        })
    }

    fn serves(&self, model: &str) -> bool {
        self.cfg.models.iter().any(|m| m == model)
    }
}

/// One agent's LLM capability: its grants and its ledger over the shared
/// [`Providers`].
///
/// A call is allowed when the agent's grants contain the name it asked for
/// (a model or an alias) or the model that name resolves to.
pub struct AgentGateway {
    providers: Arc<Providers>,
    grants: BTreeSet<String>,
    ledger: Option<Arc<dyn BudgetLedger>>,
}

impl fmt::Debug for AgentGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentGateway")
            .field("grants", &self.grants)
            .field("metered", &self.ledger.is_some())
            .finish_non_exhaustive()
    }
}

impl AgentGateway {
    /// Same as [`Providers::for_agent`].
    pub fn new(
        providers: Arc<Providers>,
        grants: impl IntoIterator<Item = impl Into<String>>,
        ledger: Option<Arc<dyn BudgetLedger>>,
    ) -> Self {
        providers.for_agent(grants, ledger)
    }
}

/// Check what the provider would refuse anyway, before any budget is held.
fn validate(req: &CompletionRequest) -> Result<(), LlmError> {
    if req.messages.is_empty() {
        return Err(LlmError::InvalidRequest(
            "messages must not be empty".into(),
        ));
    }
    if req.max_tokens == 0 {
        return Err(LlmError::InvalidRequest(
            "max-tokens must be greater than 0".into(),
        ));
    }
    if req.temperature.is_some_and(|t| !t.is_finite() || t < 0.0) {
        return Err(LlmError::InvalidRequest(
            "temperature must be a finite number >= 0".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl LlmGateway for AgentGateway {
    async fn complete(
        &self,
        ctx: &CallContext,
        request: CompletionRequest,
    ) -> Result<Completion, LlmError> {
        validate(&request)?;
        let model = self.providers.resolve(&request.model);
        if !self.grants.contains(&request.model) && !self.grants.contains(model) {
            return Err(LlmError::ModelNotAllowed(request.model.clone()));
        }
        let candidates: Vec<&Provider> = self
            .providers
            .providers
            .iter()
            .filter(|p| p.serves(model))
            .collect();
        if candidates.is_empty() {
            return Err(LlmError::Unavailable(format!(
                "no configured provider serves model {model}"
            )));
        }

        // Budget first: nothing leaves the host unless the budget holds it.
        let estimate = estimate_prompt_tokens(&request.messages);
        let amount = u64::from(request.max_tokens).saturating_add(estimate);
        let hold = match &self.ledger {
            Some(ledger) => Some(Hold::reserve(ledger, ctx, amount, model).await?),
            None => None,
        };
        let sent = hold.as_ref().map(|h| &h.sent);

        let result = self.call(&candidates, model, &request, sent).await;
        match result {
            Ok(parsed) => {
                let (input, output) = parsed.usage.unwrap_or_else(|| {
                    tracing::warn!(
                        agent = %ctx.agent_id, run = %ctx.run_id, model,
                        "provider reported no usage; charging the whole reservation"
                    );
                    // Report what is charged, split as it was reserved.
                    (estimate, u64::from(request.max_tokens))
                });
                if let Some(hold) = hold {
                    hold.settle(input.saturating_add(output)).await;
                }
                Ok(Completion {
                    text: parsed.text,
                    model: model.to_owned(),
                    finish_reason: parsed.finish_reason,
                    usage: Usage {
                        input_tokens: u32::try_from(input).unwrap_or(u32::MAX),
                        output_tokens: u32::try_from(output).unwrap_or(u32::MAX),
                    },
                })
            }
            Err(failure) => {
                if let Some(hold) = hold {
                    hold.release().await;
                }
                let err = failure.into_error(&self.providers);
                tracing::warn!(agent = %ctx.agent_id, run = %ctx.run_id, model, error = ?err, "llm call failed");
                Err(err)
            }
        }
    }
}

/// How one attempt failed. The `Display` is what summaries show: our own
/// words, status codes and serde positions, never a body or a header.
#[derive(Debug)]
enum AttemptError {
    /// 429, with the parsed `Retry-After` if any.
    RateLimited(Option<Duration>),
    /// 5xx.
    Server(StatusCode),
    /// Another non-2xx (bad key, bad request): the provider is up but
    /// refuses; retrying the same request would not help.
    Rejected(StatusCode),
    /// The attempt's deadline passed.
    Timeout(u64),
    /// Connecting or transferring failed.
    Transport,
    /// Body larger than `max_response_bytes`.
    TooLarge(u64),
    /// 2xx body that is not the protocol's JSON.
    Malformed(String),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited(_) => f.write_str("rate limited (HTTP 429)"),
            Self::Server(s) | Self::Rejected(s) => write!(f, "HTTP {}", s.as_u16()),
            Self::Timeout(ms) => write!(f, "timed out after {ms} ms"),
            Self::Transport => f.write_str("connection failed"),
            Self::TooLarge(max) => write!(f, "response body over {max} bytes"),
            Self::Malformed(why) => write!(f, "malformed response ({why})"),
        }
    }
}

impl AttemptError {
    /// Worth retrying on the same provider.
    fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_) | Self::Server(_) | Self::Timeout(_) | Self::Transport
        )
    }

    /// Counts towards opening the provider's circuit (the provider looks
    /// broken, not merely busy or refusing this request).
    fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            Self::Server(_)
                | Self::Timeout(_)
                | Self::Transport
                | Self::TooLarge(_)
                | Self::Malformed(_)
        )
    }
}

/// Everything that went wrong across providers, for the final error.
#[derive(Debug, Default)]
struct Failure {
    /// One entry per provider: `name: last error (n attempts)`.
    summaries: Vec<String>,
    /// Every attempt made was a 429 (and at least one was made).
    all_rate_limited: bool,
    /// Smallest "retry after" hint across the rate-limited providers.
    retry_hint: Option<Duration>,
}

impl Failure {
    fn into_error(self, providers: &Providers) -> LlmError {
        if self.all_rate_limited {
            let ms = self.retry_hint.unwrap_or_default().as_millis();
            return LlmError::RateLimited(u64::try_from(ms).unwrap_or(u64::MAX));
        }
        let summary = format!("all providers failed: {}", self.summaries.join("; "));
        LlmError::Unavailable(providers.scrub(summary))
    }
}

impl AgentGateway {
    /// Try `candidates` in order with retries; the first success wins.
    async fn call(
        &self,
        candidates: &[&Provider],
        model: &str,
        request: &CompletionRequest,
        sent: Option<&AtomicBool>,
    ) -> Result<Parsed, Failure> {
        let mut failure = Failure {
            all_rate_limited: true,
            ..Failure::default()
        };
        let mut attempted = false;
        let mut bodies: [Option<Vec<u8>>; 2] = [None, None];
        for provider in candidates {
            let kind = provider.cfg.kind;
            let slot = &mut bodies[kind as usize];
            let body = match slot {
                Some(body) => body.clone(),
                None => {
                    let body = protocol::request_body(kind, model, request).map_err(|e| {
                        // Cannot happen for these plain structs; report it
                        // rather than panic.
                        Failure {
                            summaries: vec![format!("encoding the request: {e}")],
                            ..Failure::default()
                        }
                    })?;
                    slot.insert(body).clone()
                }
            };
            let name = &provider.cfg.name;
            let mut attempts = 0u32;
            let mut last: Option<AttemptError> = None;
            while attempts <= provider.cfg.max_retries {
                let Some(permit) = provider.circuit.admit() else {
                    break;
                };
                attempts += 1;
                attempted = true;
                if let Some(sent) = sent {
                    sent.store(true, Ordering::Relaxed);
                }
                let err = match self.attempt(provider, body.clone()).await {
                    Ok(parsed) => {
                        permit.success();
                        return Ok(parsed);
                    }
                    Err(err) => err,
                };
                if err.counts_as_failure() {
                    permit.failure();
                } else {
                    drop(permit);
                }
                tracing::debug!(provider = %name, attempt = attempts, error = %err, "llm attempt failed");
                let retry_after = match &err {
                    AttemptError::RateLimited(after) => Some(*after),
                    _ => {
                        failure.all_rate_limited = false;
                        None
                    }
                };
                let cap = Duration::from_millis(provider.cfg.retry_max_ms);
                let backoff = backoff(provider.cfg.retry_base_ms, cap, attempts - 1);
                let delay = match retry_after {
                    Some(Some(after)) => after,
                    _ => backoff,
                };
                if retry_after.is_some() {
                    failure.retry_hint = Some(failure.retry_hint.map_or(delay, |h| h.min(delay)));
                }
                let give_up = !err.retryable()
                    || attempts > provider.cfg.max_retries
                    // A Retry-After past the cap is not worth blocking the
                    // guest for: try the next provider instead.
                    || delay > cap;
                last = Some(err);
                if give_up {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            failure.summaries.push(match last {
                Some(err) => {
                    let plural = if attempts == 1 { "" } else { "s" };
                    format!("{name}: {err} ({attempts} attempt{plural})")
                }
                None => {
                    failure.all_rate_limited = false;
                    format!("{name}: circuit open")
                }
            });
        }
        if !attempted {
            failure.all_rate_limited = false;
        }
        Err(failure)
    }

    /// One HTTP exchange, bounded by the provider's timeout as a whole
    /// (reqwest's own timeout is set too, so the connection is torn down).
    async fn attempt(&self, provider: &Provider, body: Vec<u8>) -> Result<Parsed, AttemptError> {
        let cfg = &provider.cfg;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let exchange = async {
            let mut rb = self
                .providers
                .client
                .post(&provider.url)
                .timeout(timeout)
                .header(CONTENT_TYPE, "application/json")
                .body(body);
            match cfg.kind {
                ProviderKind::Anthropic => {
                    rb = rb.header("anthropic-version", provider.version.clone());
                    if let Some(key) = &provider.key {
                        rb = rb.header("x-api-key", key.header.clone());
                    }
                }
                ProviderKind::Openai => {
                    if let Some(key) = &provider.key {
                        rb = rb.header(AUTHORIZATION, key.header.clone());
                    }
                }
            }
            let mut resp = rb.send().await.map_err(|e| transport(&e, cfg.timeout_ms))?;
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                return Err(AttemptError::RateLimited(after));
            }
            if status.is_server_error() {
                return Err(AttemptError::Server(status));
            }
            if !status.is_success() {
                return Err(AttemptError::Rejected(status));
            }
            let max = cfg.max_response_bytes;
            if resp.content_length().is_some_and(|len| len > max) {
                return Err(AttemptError::TooLarge(max));
            }
            // Read in chunks and stop as soon as the cap is passed, so a
            // hostile or broken provider cannot make us buffer without bound.
            let mut buf = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| transport(&e, cfg.timeout_ms))?
            {
                if (buf.len() as u64).saturating_add(chunk.len() as u64) > max {
                    return Err(AttemptError::TooLarge(max));
                }
                buf.extend_from_slice(&chunk);
            }
            protocol::parse_response(cfg.kind, &buf).map_err(AttemptError::Malformed)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(AttemptError::Timeout(cfg.timeout_ms)))
    }
}

fn transport(e: &reqwest::Error, timeout_ms: u64) -> AttemptError {
    if e.is_timeout() {
        AttemptError::Timeout(timeout_ms)
    } else {
        AttemptError::Transport
    }
}

/// Delay before retry number `retry` (0-based): a random time in `[d/2, d]`
/// with `d = base * 2^retry` capped at `cap` ("equal jitter": spreads
/// concurrent retries while keeping a floor that still backs off).
pub(crate) fn backoff(base_ms: u64, cap: Duration, retry: u32) -> Duration {
    let factor = 1u64.checked_shl(retry.min(32)).unwrap_or(u64::MAX);
    let max = Duration::from_millis(base_ms.saturating_mul(factor)).min(cap);
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

/// `Retry-After` as delay-seconds or an HTTP-date (a date in the past means
/// "now").
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Tokens held for one call. Ends in exactly one settle or release; if the
/// call's future is dropped first (the run's deadline or cancellation won
/// the race), `Drop` finishes it on a spawned task: the whole reservation is
/// charged if a request had been sent (the provider may have billed it),
/// otherwise it is released.
struct Hold {
    ledger: Arc<dyn BudgetLedger>,
    reservation: Option<Reservation>,
    sent: AtomicBool,
}

impl Hold {
    async fn reserve(
        ledger: &Arc<dyn BudgetLedger>,
        ctx: &CallContext,
        amount: u64,
        model: &str,
    ) -> Result<Self, LlmError> {
        match ledger.reserve(ctx, amount, &format!("llm:{model}")).await {
            Ok(reservation) => Ok(Self {
                ledger: Arc::clone(ledger),
                reservation: Some(reservation),
                sent: AtomicBool::new(false),
            }),
            Err(LedgerError::Insufficient { needed, available }) => {
                Err(LlmError::BudgetExceeded(Shortfall { needed, available }))
            }
            // No account means no budget at all.
            Err(LedgerError::UnknownAccount(_)) => Err(LlmError::BudgetExceeded(Shortfall {
                needed: amount,
                available: 0,
            })),
            Err(e) => {
                tracing::error!(agent = %ctx.agent_id, error = %e, "budget reservation failed");
                Err(LlmError::Unavailable(
                    "the budget ledger is unavailable".into(),
                ))
            }
        }
    }

    async fn settle(mut self, used: u64) {
        if let Some(r) = self.reservation.take() {
            match self.ledger.settle(&r, used).await {
                Ok(s) if s.uncovered > 0 => {
                    tracing::warn!(agent = %r.agent_id, reservation = %r.id, uncovered = s.uncovered,
                        "llm usage exceeded the reservation and the budget");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(agent = %r.agent_id, reservation = %r.id, error = %e, "settling an llm call failed")
                }
            }
        }
    }

    async fn release(mut self) {
        if let Some(r) = self.reservation.take()
            && let Err(e) = self.ledger.release(&r).await
        {
            tracing::error!(agent = %r.agent_id, reservation = %r.id, error = %e, "releasing an llm reservation failed");
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(r) = self.reservation.take() else {
            return;
        };
        let ledger = Arc::clone(&self.ledger);
        let charge = self.sent.load(Ordering::Relaxed);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!(reservation = %r.id, "llm call dropped outside a runtime; reservation left open");
            return;
        };
        handle.spawn(async move {
            let result = if charge {
                ledger.settle(&r, r.amount).await.map(drop)
            } else {
                ledger.release(&r).await
            };
            if let Err(e) = result {
                tracing::error!(reservation = %r.id, error = %e, "finishing a cancelled llm call's reservation failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_millis(1000);
        for retry in 0..40 {
            let d = backoff(100, cap, retry);
            let full = Duration::from_millis(100u64.saturating_mul(1 << retry.min(32))).min(cap);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
    }
}
