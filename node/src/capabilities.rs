//! Capability backends of the node and the per-run view of them.
//!
//! The node builds its backends once from `node.toml` ([`Backends`]); each
//! run gets [`Capabilities`] limited to its deployment's grants and wrapped
//! so that what the run used (LLM tokens per model, messages per channel)
//! lands in its [`RunMeter`] and in the node's metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use delta_host_api::llm::{Completion, CompletionRequest, LlmError};
use delta_host_api::messaging::{Receipt, SendError, SendRequest};
use delta_host_api::{BudgetLedger, CallContext, Capabilities, LlmGateway, LogSink, Messenger};
use delta_messaging::{AgentGrants, ChannelId, JsonlAuditLog};

use crate::config::{ConfigError, NodeConfig};
use crate::metrics::Metrics;
use crate::model::{Grants, LlmTokens, MessageCounts};

/// The node-wide backends; `None` leaves a capability `not-configured`.
#[derive(Default, Clone)]
pub struct Backends {
    llm: Option<Arc<delta_llm::Providers>>,
    messaging: Option<Arc<delta_messaging::Messaging>>,
    ledger: Option<Arc<dyn BudgetLedger>>,
}

impl Backends {
    /// Build the backends `config` configures.
    pub async fn from_config(config: &NodeConfig) -> Result<Self, ConfigError> {
        let ledger: Option<Arc<dyn BudgetLedger>> = match &config.budget {
            Some(budget) => Some(Arc::new(
                delta_ledger::seed::open_seeded(budget)
                    .await
                    .map_err(|e| ConfigError::Invalid(format!("budget: {e}")))?,
            )),
            None => None,
        };
        let llm = match &config.llm {
            Some(llm) => Some(Arc::new(
                delta_llm::Providers::new(llm)
                    .map_err(|e| ConfigError::Invalid(format!("llm: {e}")))?,
            )),
            None => None,
        };
        let messaging = match &config.messaging {
            Some(section) => {
                let path = section
                    .audit_log
                    .clone()
                    .unwrap_or_else(|| config.state_dir.join("messages.jsonl"));
                let audit = JsonlAuditLog::open(&path).await.map_err(|e| {
                    ConfigError::Invalid(format!("message audit log {}: {e}", path.display()))
                })?;
                Some(Arc::new(
                    delta_messaging::Messaging::new(
                        &section.config,
                        Arc::new(audit),
                        ledger.clone(),
                    )
                    .map_err(|e| ConfigError::Invalid(format!("messaging: {e}")))?,
                ))
            }
            None => None,
        };
        Ok(Self {
            llm,
            messaging,
            ledger,
        })
    }

    /// The capabilities of one run of an agent with `grants`.
    pub fn for_run(
        &self,
        grants: &Grants,
        meter: &Arc<RunMeter>,
        log_sink: Option<Arc<dyn LogSink>>,
    ) -> Capabilities {
        let llm = self.llm.as_ref().map(|providers| {
            let gateway = providers.for_agent(grants.models.clone(), self.ledger.clone());
            Arc::new(MeteredLlm {
                inner: Arc::new(gateway),
                meter: Arc::clone(meter),
            }) as Arc<dyn LlmGateway>
        });
        let messenger = self.messaging.as_ref().map(|messaging| {
            let messenger = messaging.messenger(AgentGrants {
                channels: grants.channels.clone(),
                recipients: grants.recipients.clone(),
                templates: Some(grants.templates.clone()),
            });
            Arc::new(MeteredMessenger {
                inner: Arc::new(messenger),
                meter: Arc::clone(meter),
            }) as Arc<dyn Messenger>
        });
        Capabilities {
            llm,
            messenger,
            budget: self.ledger.clone(),
            log_sink,
        }
    }
}

/// What one run used through its capabilities.
pub struct RunMeter {
    metrics: Arc<Metrics>,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    llm: BTreeMap<String, LlmTokens>,
    messages: BTreeMap<String, MessageCounts>,
}

impl RunMeter {
    /// A meter that also counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            used: Mutex::default(),
        })
    }

    /// LLM tokens by model and messages by channel, so far.
    pub fn totals(&self) -> (BTreeMap<String, LlmTokens>, BTreeMap<String, MessageCounts>) {
        let used = self.lock();
        (used.llm.clone(), used.messages.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Used> {
        // Plain counters: consistent even after a panic elsewhere.
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn llm_result(&self, result: &Result<Completion, LlmError>) {
        match result {
            Ok(c) => {
                let (input, output) = (
                    u64::from(c.usage.input_tokens),
                    u64::from(c.usage.output_tokens),
                );
                {
                    let mut used = self.lock();
                    let entry = used.llm.entry(c.model.clone()).or_default();
                    entry.calls += 1;
                    entry.input_tokens += input;
                    entry.output_tokens += output;
                }
                self.metrics
                    .llm_tokens
                    .with_label_values(&[c.model.as_str(), "input"])
                    .inc_by(input);
                self.metrics
                    .llm_tokens
                    .with_label_values(&[c.model.as_str(), "output"])
                    .inc_by(output);
                self.metrics.llm_calls.with_label_values(&["ok"]).inc();
            }
            Err(e) => {
                self.metrics
                    .llm_calls
                    .with_label_values(&[llm_error_code(e)])
                    .inc();
            }
        }
    }

    fn message_result(&self, channel: ChannelId, result: &Result<Receipt, SendError>) {
        let name = channel.to_string();
        let outcome = match result {
            Ok(_) => "sent",
            Err(e) => send_error_code(e),
        };
        {
            let mut used = self.lock();
            let entry = used.messages.entry(name.clone()).or_default();
            match result {
                Ok(receipt) => {
                    entry.sent += 1;
                    entry.tokens += receipt.tokens_charged;
                }
                Err(_) => entry.refused += 1,
            }
        }
        self.metrics
            .messages
            .with_label_values(&[name.as_str(), outcome])
            .inc();
    }
}

/// The WIT name of an LLM error (a bounded label set for metrics).
fn llm_error_code(e: &LlmError) -> &'static str {
    match e {
        LlmError::NotConfigured => "not-configured",
        LlmError::ModelNotAllowed(_) => "model-not-allowed",
        LlmError::BudgetExceeded(_) => "budget-exceeded",
        LlmError::InvalidRequest(_) => "invalid-request",
        LlmError::RateLimited(_) => "rate-limited",
        LlmError::Unavailable(_) => "unavailable",
    }
}

/// The WIT name of a send error.
fn send_error_code(e: &SendError) -> &'static str {
    match e {
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
        SendError::RateLimited(_) => "rate-limited",
        SendError::BudgetExceeded(_) => "budget-exceeded",
        SendError::DeliveryFailed(_) => "delivery-failed",
    }
}

struct MeteredLlm {
    inner: Arc<dyn LlmGateway>,
    meter: Arc<RunMeter>,
}

#[async_trait]
impl LlmGateway for MeteredLlm {
    async fn complete(
        &self,
        ctx: &CallContext,
        request: CompletionRequest,
    ) -> Result<Completion, LlmError> {
        let result = self.inner.complete(ctx, request).await;
        self.meter.llm_result(&result);
        result
    }
}

struct MeteredMessenger {
    inner: Arc<dyn Messenger>,
    meter: Arc<RunMeter>,
}

#[async_trait]
impl Messenger for MeteredMessenger {
    async fn send(&self, ctx: &CallContext, request: SendRequest) -> Result<Receipt, SendError> {
        let channel = ChannelId::from(request.channel);
        let result = self.inner.send(ctx, request).await;
        self.meter.message_result(channel, &result);
        result
    }
}
