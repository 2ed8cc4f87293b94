//! Capability backends of the node and the per-run view of them.
//!
//! The node builds its backends once from `node.toml` ([`Backends`]); each
//! run gets [`Capabilities`] limited to its deployment's grants and wrapped
//! so that what the run used (LLM tokens per model, messages per channel)
//! lands in its [`RunMeter`] and in the node's metrics.
//!
//! Key-value state: see [`crate::kv`] (the grant is checked per run,
//! every call counted in the run's usage as `kv`). Outbound HTTP: see
//! [`crate::outbound`] (counted as `http`). Messages to other agents: see
//! [`crate::agents`] (counted as `agent_messages`).
//!
//! Messaging: a deployment whose grants carry `message_templates` (the
//! control plane's definitions of the templates granted to the agent, each
//! marked approved or not) gets a messenger that uses only those instead of
//! `node.toml`'s. Every attempt, sent or not, is also recorded
//! in the run's meter (bounded: [`MAX_LOGGED_ATTEMPTS`] and
//! [`MAX_LOGGED_BYTES`] per run, the rest counted) and reported in the run's
//! usage as `message_log`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use delta_host_api::llm::{Completion, CompletionRequest, LlmError};
use delta_host_api::messaging::{Receipt, SendError, SendRequest};
use delta_host_api::{BudgetLedger, CallContext, Capabilities, LlmGateway, LogSink, Messenger};
use delta_messaging::{
    AgentGrants, AuditError, AuditLog, AuditRecord, AuditStatus, ChannelId, JsonlAuditLog,
};

use crate::config::{ConfigError, NodeConfig};
use crate::metrics::Metrics;
use crate::model::{Grants, LlmTokens, MessageAttempt, MessageCounts};

/// Message attempts kept per run; later ones are only counted.
pub const MAX_LOGGED_ATTEMPTS: usize = 1_000;
/// Bytes of kept attempts per run (estimated as their strings' lengths),
/// so that one run's usage record stays far below a usage batch's size.
pub const MAX_LOGGED_BYTES: usize = 256 * 1024;
/// Longest guest-chosen string (template id, recipient) kept in a logged
/// attempt, bytes.
const MAX_LOGGED_FIELD: usize = 128;

/// The node-wide backends; `None` leaves a capability `not-configured`.
#[derive(Default, Clone)]
pub struct Backends {
    llm: Option<Arc<delta_llm::Providers>>,
    messaging: Option<Arc<delta_messaging::Messaging>>,
    ledger: Option<Arc<dyn BudgetLedger>>,
    /// The same ledger when it is the lease-backed one (returned at shutdown).
    leases: Option<Arc<crate::leases::LeaseLedger>>,
    /// Agents' key-value state: the control plane's, or this node's file.
    kv: Option<Arc<dyn delta_host_api::KvBackend>>,
    /// Outbound HTTP, with `[http]`.
    outbound: Option<Arc<delta_outbound::Outbound>>,
    /// The vault for `{{secret:NAME}}`, with a control plane.
    secrets: Option<Arc<dyn delta_outbound::SecretSource>>,
    /// Delivery of agents' messages: the control plane (none without one).
    agents: Option<Arc<crate::agents::RemoteAgents>>,
}

impl Backends {
    /// Build the backends `config` configures.
    pub async fn from_config(config: &NodeConfig) -> Result<Self, ConfigError> {
        // With a control plane it is the budget authority: the node spends
        // against leases from it. Without one, the local seeded ledger.
        let (ledger, leases): (Option<Arc<dyn BudgetLedger>>, _) =
            match (&config.control_plane, &config.budget) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid(
                        "[budget] and [control_plane] are both configured: the control plane \
                         is the budget authority; remove the local [budget] section"
                            .into(),
                    ));
                }
                (Some(cp), None) => {
                    let leases = Arc::new(crate::leases::LeaseLedger::from_config(
                        cp,
                        &config.node_id(),
                    )?);
                    (
                        Some(Arc::clone(&leases) as Arc<dyn BudgetLedger>),
                        Some(leases),
                    )
                }
                (None, Some(budget)) => (
                    Some(Arc::new(
                        delta_ledger::seed::open_seeded(budget)
                            .await
                            .map_err(|e| ConfigError::Invalid(format!("budget: {e}")))?,
                    ) as Arc<dyn BudgetLedger>),
                    None,
                ),
                (None, None) => (None, None),
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
                // With a control plane, every message is counted against
                // the tenant's daily quota there before it is sent.
                let quota = leases.as_ref().map(|leases| {
                    Arc::new(ControlPlaneQuota(Arc::clone(leases)))
                        as Arc<dyn delta_messaging::MessageQuota>
                });
                Some(Arc::new(
                    delta_messaging::Messaging::with_quota(
                        &section.config,
                        Arc::new(audit),
                        ledger.clone(),
                        quota,
                    )
                    .map_err(|e| ConfigError::Invalid(format!("messaging: {e}")))?,
                ))
            }
            None => None,
        };
        let node_api = match &config.control_plane {
            Some(cp) => Some(Arc::new(crate::kv::NodeApiClient::from_config(cp)?)),
            None => None,
        };
        let kv: Arc<dyn delta_host_api::KvBackend> = match &node_api {
            Some(client) => Arc::new(crate::kv::RemoteKv(Arc::clone(client))),
            None => {
                let path = config.state_dir.join("kv.db");
                let store = delta_kv::KvStore::open_sqlite(&path, config.kv)
                    .await
                    .map_err(|e| {
                        ConfigError::Invalid(format!("kv store {}: {e}", path.display()))
                    })?;
                Arc::new(crate::kv::LocalKv(store))
            }
        };
        let outbound = match &config.http {
            Some(http) => Some(Arc::new(
                delta_outbound::Outbound::new(http.clone()).map_err(ConfigError::Invalid)?,
            )),
            None => None,
        };
        let agents = node_api
            .as_ref()
            .map(|client| Arc::new(crate::agents::RemoteAgents(Arc::clone(client))));
        let secrets = node_api.map(|client| {
            Arc::new(crate::outbound::VaultSecrets(client)) as Arc<dyn delta_outbound::SecretSource>
        });
        Ok(Self {
            llm,
            messaging,
            ledger,
            leases,
            kv: Some(kv),
            outbound,
            secrets,
            agents,
        })
    }

    /// The lease-backed ledger, when the node has a control plane.
    pub fn leases(&self) -> Option<&Arc<crate::leases::LeaseLedger>> {
        self.leases.as_ref()
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
            let mut messenger = messaging
                .messenger(AgentGrants {
                    channels: grants.channels.clone(),
                    recipients: grants.recipients.clone(),
                    templates: Some(grants.templates.clone()),
                })
                // The observer runs inside the send's own task, so an
                // attempt a deadline cut short is still logged if the run
                // has not been recorded yet.
                .with_observer(Arc::new(AttemptLog(Arc::clone(meter))));
            if let Some(templates) = &grants.message_templates {
                messenger = messenger.with_templates(templates);
            }
            Arc::new(MeteredMessenger {
                inner: Arc::new(messenger),
                meter: Arc::clone(meter),
            }) as Arc<dyn Messenger>
        });
        let kv = self.kv.as_ref().map(|inner| {
            Arc::new(crate::kv::GrantedKv {
                inner: Arc::clone(inner),
                granted: grants.kv,
                meter: Arc::clone(meter),
            }) as Arc<dyn delta_host_api::KvBackend>
        });
        Capabilities {
            llm,
            messenger,
            budget: self.ledger.clone(),
            kv,
            http: self.outbound.as_ref().map(|outbound| {
                Arc::new(crate::outbound::GrantedHttp::new(
                    Arc::clone(outbound),
                    grants.http.as_ref(),
                    self.secrets.clone(),
                    Arc::clone(meter),
                )) as Arc<dyn delta_host_api::HttpClient>
            }),
            agents: self.agents.as_ref().map(|inner| {
                Arc::new(crate::agents::GrantedAgents::new(
                    Arc::clone(inner),
                    grants.agents.clone(),
                    Arc::clone(meter),
                )) as Arc<dyn delta_host_api::AgentBus>
            }),
            log_sink,
        }
    }
}

/// The control plane's per-tenant daily message quota, asked through the
/// lease client (same URL and credential).
struct ControlPlaneQuota(Arc<crate::leases::LeaseLedger>);

#[async_trait::async_trait]
impl delta_messaging::MessageQuota for ControlPlaneQuota {
    async fn admit(
        &self,
        ctx: &CallContext,
        channel: delta_messaging::ChannelId,
    ) -> Result<(), u64> {
        self.0.admit_message(&ctx.agent_id, channel.as_str()).await
    }
}

/// What one run used through its capabilities.
pub struct RunMeter {
    metrics: Arc<Metrics>,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    kv: Option<crate::model::KvCounts>,
    http: Option<crate::model::HttpCounts>,
    agent_messages: Option<crate::model::AgentMessageCounts>,
    llm: BTreeMap<String, LlmTokens>,
    messages: BTreeMap<String, MessageCounts>,
    attempts: Vec<MessageAttempt>,
    attempts_bytes: usize,
    attempts_dropped: u64,
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

    /// Key-value operations so far (none: the run made none).
    pub fn kv_counts(&self) -> Option<crate::model::KvCounts> {
        self.lock().kv
    }

    /// Outbound HTTP so far (none: the run made no request).
    pub fn http_counts(&self) -> Option<crate::model::HttpCounts> {
        self.lock().http
    }

    /// Messages to other agents so far (none: the run sent none).
    pub fn agent_message_counts(&self) -> Option<crate::model::AgentMessageCounts> {
        self.lock().agent_messages
    }

    /// Count one message to another agent (`bytes`: its size).
    pub(crate) fn agent_message_result(
        &self,
        bytes: u64,
        result: &Result<delta_host_api::agents::Sent, delta_host_api::agents::SendError>,
    ) {
        {
            let mut used = self.lock();
            let counts = used.agent_messages.get_or_insert_with(Default::default);
            match result {
                Ok(_) => {
                    counts.sent += 1;
                    counts.bytes += bytes;
                }
                Err(_) => counts.refused += 1,
            }
        }
        let outcome = match result {
            Ok(_) => "sent",
            Err(e) => crate::agents::error_code(e),
        };
        self.metrics
            .agent_messages
            .with_label_values(&[outcome])
            .inc();
    }

    /// Count one outbound request.
    pub(crate) fn http_result(
        &self,
        sent: u64,
        result: &Result<delta_outbound::OutResponse, delta_outbound::OutError>,
    ) {
        {
            let mut used = self.lock();
            let http = used.http.get_or_insert_with(Default::default);
            match result {
                Ok(r) => {
                    http.requests += 1;
                    http.bytes_sent += sent;
                    http.bytes_received += r.body.len() as u64;
                }
                Err(_) => http.refused += 1,
            }
        }
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.metrics
            .http_requests_out
            .with_label_values(&[outcome])
            .inc();
    }

    /// Count one key-value call.
    pub(crate) fn kv_result<T>(
        &self,
        op: crate::kv::Op,
        size: u64,
        result: &Result<T, delta_host_api::kv::KvError>,
    ) {
        use delta_host_api::kv::KvError;
        {
            let mut used = self.lock();
            let kv = used.kv.get_or_insert_with(Default::default);
            match (result, op) {
                (Ok(_), crate::kv::Op::Read) => kv.reads += 1,
                (Ok(_), crate::kv::Op::Write) => {
                    kv.writes += 1;
                    kv.bytes_written += size;
                }
                (Ok(_), crate::kv::Op::Delete) => kv.deletes += 1,
                (Err(KvError::Conflict(_)), _) => kv.conflicts += 1,
                (Err(_), _) => kv.refused += 1,
            }
        }
        let op = match op {
            crate::kv::Op::Read => "read",
            crate::kv::Op::Write => "write",
            crate::kv::Op::Delete => "delete",
        };
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => crate::kv::error_code(e),
        };
        self.metrics
            .kv_calls
            .with_label_values(&[op, outcome])
            .inc();
    }

    /// The message attempts kept so far, oldest first, and how many more
    /// were counted but not kept.
    pub fn message_log(&self) -> (Vec<MessageAttempt>, u64) {
        let used = self.lock();
        (used.attempts.clone(), used.attempts_dropped)
    }

    /// Keep one attempt (within the bounds).
    fn record_attempt(&self, record: &AuditRecord) {
        let attempt = MessageAttempt {
            channel: record.channel.to_string(),
            template_id: clean(&record.template_id),
            recipient: clean(&record.recipient),
            status: match record.status {
                AuditStatus::Sent => "sent",
                AuditStatus::Refused => "refused",
                AuditStatus::Failed => "failed",
            }
            .to_owned(),
            reason: record.reason.clone(),
            tokens: record.tokens_charged,
            provider_id: record.provider_message_id.as_deref().map(clean),
            at_ms: crate::model::now_ms(),
        };
        let bytes = attempt.template_id.len()
            + attempt.recipient.len()
            + attempt.provider_id.as_ref().map_or(0, String::len)
            + 128;
        let mut used = self.lock();
        if used.attempts.len() >= MAX_LOGGED_ATTEMPTS
            || used.attempts_bytes + bytes > MAX_LOGGED_BYTES
        {
            used.attempts_dropped += 1;
        } else {
            used.attempts_bytes += bytes;
            used.attempts.push(attempt);
        }
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

/// A guest-chosen string as a logged attempt keeps it: control characters
/// replaced (PostgreSQL refuses NUL, and escapes would multiply the size)
/// and clipped to [`MAX_LOGGED_FIELD`] bytes.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED_FIELD));
    for c in s.chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > MAX_LOGGED_FIELD {
            break;
        }
        out.push(c);
    }
    out
}

/// The messenger's observer: every attempt into the run's meter.
struct AttemptLog(Arc<RunMeter>);

#[async_trait]
impl AuditLog for AttemptLog {
    async fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        self.0.record_attempt(record);
        Ok(())
    }
}

struct MeteredMessenger {
    inner: Arc<dyn Messenger>,
    meter: Arc<RunMeter>,
}

#[async_trait]
impl Messenger for MeteredMessenger {
    async fn send(&self, ctx: &CallContext, request: SendRequest) -> Result<Receipt, SendError> {
        let channel = delta_messaging::config::channel_id(request.channel);
        let result = self.inner.send(ctx, request).await;
        self.meter.message_result(channel, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_host_api::messaging::Channel;
    use delta_messaging::{
        EmailBackend, EmailConfig, MemoryAuditLog, MessagingConfig, OutboxConfig, TemplateConfig,
    };

    fn template(id: &str, body: &str, approved: bool) -> TemplateConfig {
        TemplateConfig {
            id: id.into(),
            channel: ChannelId::Email,
            subject: Some("Hi {{ name }}".into()),
            body: body.into(),
            html: false,
            variables: vec!["name".into()],
            max_variable_len: 64,
            max_lengths: BTreeMap::new(),
            approved,
        }
    }

    /// Email into a file outbox, with one template of the node's own.
    fn backends(dir: &std::path::Path) -> (Backends, Arc<MemoryAuditLog>) {
        let audit = Arc::new(MemoryAuditLog::new());
        let config = MessagingConfig {
            email: Some(EmailConfig {
                from: "ops@example.com".into(),
                cost_tokens: 0,
                rate_limit: delta_messaging::RateLimitConfig {
                    per_minute: 600,
                    burst: 100,
                },
                backend: EmailBackend::Outbox(OutboxConfig {
                    dir: dir.join("outbox"),
                }),
            }),
            sms: None,
            templates: vec![template("welcome", "node's own {{ name }}", true)],
        };
        let messaging = delta_messaging::Messaging::new(
            &config,
            Arc::clone(&audit) as Arc<dyn delta_messaging::AuditLog>,
            None,
        )
        .expect("messaging");
        (
            Backends {
                messaging: Some(Arc::new(messaging)),
                ..Backends::default()
            },
            audit,
        )
    }

    fn send(template: &str, to: &str) -> SendRequest {
        SendRequest {
            channel: Channel::Email,
            template_id: template.into(),
            recipient: to.into(),
            variables: vec![("name".into(), "Ada".into())],
        }
    }

    fn ctx() -> CallContext {
        CallContext {
            tenant_id: "t1".into(),
            agent_id: "agt_1".into(),
            run_id: "run_1".into(),
        }
    }

    #[tokio::test]
    async fn a_deployment_s_templates_are_used_and_every_attempt_is_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (backends, audit) = backends(dir.path());
        let grants = Grants {
            channels: vec![ChannelId::Email],
            recipients: vec!["*@example.com".into()],
            // `extra` is defined but not granted; `welcome` is granted but
            // only the node has it.
            templates: vec!["greeting".into(), "draft".into(), "welcome".into()],
            message_templates: Some(vec![
                template("greeting", "Hello {{ name }} from the control plane", true),
                template("draft", "not yet", false),
                template("extra", "not granted", true),
            ]),
            ..Grants::default()
        };
        let meter = RunMeter::new(Arc::new(Metrics::new()));
        let caps = backends.for_run(&grants, &meter, None);
        let messenger = caps.messenger.expect("messaging configured");
        let c = ctx();
        let receipt = messenger
            .send(&c, send("greeting", "ada@example.com"))
            .await
            .expect("an approved, granted template of the deployment is sent");
        for (template, to, error) in [
            ("draft", "ada@example.com", SendError::TemplateNotApproved),
            ("extra", "ada@example.com", SendError::TemplateNotFound),
            ("welcome", "ada@example.com", SendError::TemplateNotFound),
            ("greeting", "eve@evil.test\0", SendError::InvalidRecipient),
        ] {
            assert_eq!(
                messenger.send(&c, send(template, to)).await,
                Err(error),
                "{template}"
            );
        }
        let (log, dropped) = meter.message_log();
        assert_eq!(dropped, 0);
        let summary: Vec<(&str, &str, Option<&str>)> = log
            .iter()
            .map(|a| {
                (
                    a.template_id.as_str(),
                    a.status.as_str(),
                    a.reason.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("greeting", "sent", None),
                ("draft", "refused", Some("template-not-approved")),
                ("extra", "refused", Some("template-not-found")),
                ("welcome", "refused", Some("template-not-found")),
                ("greeting", "refused", Some("invalid-recipient")),
            ]
        );
        assert_eq!(log[0].channel, "email");
        assert_eq!(log[0].recipient, "ada@example.com");
        let provider = log[0].provider_id.as_deref().expect("provider id");
        assert_eq!(
            audit.records()[0].provider_message_id.as_deref(),
            Some(provider)
        );
        assert_eq!(audit.records()[0].message_id, receipt.message_id);
        assert_eq!(log[4].recipient, "eve@evil.test\u{fffd}", "NUL replaced");
        assert!(log.iter().all(|a| a.at_ms > 0));
        let (_, messages) = meter.totals();
        assert_eq!(messages["email"].sent, 1);
        assert_eq!(messages["email"].refused, 4);

        // Without definitions in the spec, the node's own templates serve.
        let local = Grants {
            message_templates: None,
            ..grants
        };
        let meter = RunMeter::new(Arc::new(Metrics::new()));
        let messenger = backends
            .for_run(&local, &meter, None)
            .messenger
            .expect("messaging configured");
        messenger
            .send(&c, send("welcome", "ada@example.com"))
            .await
            .expect("node.toml's template");
        assert_eq!(
            messenger
                .send(&c, send("greeting", "ada@example.com"))
                .await,
            Err(SendError::TemplateNotFound)
        );
    }

    #[tokio::test]
    async fn the_message_log_of_a_run_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (backends, _) = backends(dir.path());
        let meter = RunMeter::new(Arc::new(Metrics::new()));
        let messenger = backends
            .for_run(&Grants::default(), &meter, None)
            .messenger
            .expect("messaging configured");
        let long = "x".repeat(10_000);
        for _ in 0..MAX_LOGGED_ATTEMPTS + 5 {
            let _ = messenger.send(&ctx(), send(&long, "a@example.com")).await;
        }
        let (log, dropped) = meter.message_log();
        assert_eq!(log.len() + dropped as usize, MAX_LOGGED_ATTEMPTS + 5);
        assert!(dropped >= 5, "{dropped}");
        assert!(log.iter().all(|a| a.template_id.len() <= MAX_LOGGED_FIELD));
        let bytes = serde_json::to_vec(&log).expect("json").len();
        assert!(bytes <= MAX_LOGGED_BYTES + 64 * log.len(), "{bytes}");
        assert_eq!(
            meter.totals().1["email"].refused as usize,
            MAX_LOGGED_ATTEMPTS + 5
        );
    }
}
