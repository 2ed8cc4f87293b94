//! Host side of `delta:agent/messaging`: templated email and SMS under the
//! operator's message security model.
//!
//! A guest sends only a template id, variables and a recipient. The operator
//! owns everything else: the From address, the credentials, the templates
//! (compiled once at startup) and which agent may reach whom. [`Messaging`]
//! is built once per node from [`MessagingConfig`]; [`Messaging::messenger`]
//! gives each agent an [`AgentMessenger`] carrying its [`AgentGrants`], which
//! implements [`delta_host_api::Messenger`].
//!
//! # A deployment's own templates
//!
//! On a node driven by the control plane, templates are authored and
//! approved per tenant there and shipped with each deployment;
//! [`AgentMessenger::with_templates`] makes a messenger use those instead of
//! the configured ones (compiled once per distinct set and cached). Such
//! templates are held to [`check_safe_subset`], which [`check_template`]
//! also applies, so the control plane refuses at its API what a node would
//! refuse. [`AgentMessenger::with_observer`] adds a second [`AuditLog`]
//! that sees every attempt of that messenger (the node's per-run meter).
//!
//! # Check order
//!
//! [`Messenger::send`] checks in this order and stops at the first failure,
//! which is returned and recorded in the [`AuditLog`]:
//!
//! 1. a backend is configured for the channel (`not-configured`);
//! 2. the template exists (`template-not-found`), is approved
//!    (`template-not-approved`) and is for this channel (`wrong-channel`);
//! 3. every variable is allowed (`variable-not-allowed`), every value is
//!    within the template's length and free of control characters and line
//!    separators, and no name repeats (`variable-invalid`), every variable
//!    the template uses is present (`variable-missing`);
//! 4. the recipient is valid for the channel (`invalid-recipient`) and on the
//!    agent's list (`recipient-not-allowed`);
//! 5. the agent may use the channel (`channel-not-allowed`);
//! 6. the message renders (else `delivery-failed`, nothing charged);
//! 7. the (agent, channel) rate limit, then the [`MessageQuota`] if one is
//!    set (the tenant's messages per day, on a node with a control plane)
//!    (`rate-limited`);
//! 8. the channel's token cost is reserved through the ledger, if one is
//!    configured and the cost is not zero (`budget-exceeded`);
//! 9. delivery; the reservation is settled on success and released on
//!    failure (`delivery-failed`).
//!
//! Once a call passes its synchronous checks it runs in its own task, so a
//! guest interrupted by its deadline cannot leave a reservation open or an
//! attempt unrecorded.
//!
//! # Header injection
//!
//! No agent input can add an email header: variable values with CR, LF or
//! any other control character are refused, the subject source may not
//! contain one, the rendered subject is checked again, the recipient is a
//! parsed addr-spec, and From comes from configuration.
//!
//! # Channels
//!
//! Email goes through an SMTP relay (lettre, STARTTLS or implicit TLS; plain
//! only to a loopback relay) or the file outbox; SMS through a
//! Twilio-compatible API or the file outbox. See [`config`].

pub mod audit;
pub mod config;
mod delivery;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use delta_host_api::bindings::delta::agent::types::Shortfall;
use delta_host_api::budget::{BudgetLedger, LedgerError, Reservation};
use delta_host_api::messaging::{Receipt, SendError, SendRequest};
use delta_host_api::{CallContext, Messenger};

pub use audit::{AuditError, AuditLog, AuditRecord, AuditStatus, JsonlAuditLog, MemoryAuditLog};
pub use config::{
    AgentGrants, ChannelId, EmailBackend, EmailConfig, MessagingConfig, OutboxConfig,
    RateLimitConfig, SecretSource, SmsBackend, SmsConfig, SmtpConfig, SmtpTls, TemplateConfig,
    TwilioConfig,
};
pub use delta_templates::{
    InvalidRecipientEntry, check_allow_entry, check_safe_subset, check_template,
};

use delivery::{Backend, Outgoing};
use delta_templates::{Templates, VariableError, recipient};

/// The configuration could not be turned into a working messenger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A template is malformed or inconsistent with its declaration.
    #[error("template {id:?}: {reason}")]
    Template {
        /// The template id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A channel's sender, backend or rate limit is unusable.
    #[error("{channel} channel: {reason}")]
    Backend {
        /// The channel.
        channel: ChannelId,
        /// What is wrong.
        reason: String,
    },
    /// A secret could not be read (the message never contains the secret).
    #[error("{what}: {reason}")]
    Secret {
        /// Which secret.
        what: String,
        /// Why it could not be read.
        reason: String,
    },
}

impl From<delta_templates::TemplateError> for BuildError {
    fn from(e: delta_templates::TemplateError) -> Self {
        BuildError::Template {
            id: e.id,
            reason: e.reason,
        }
    }
}

/// Key of the rate limiters: one GCRA state per (tenant, agent) in each
/// channel's limiter, i.e. per (agent, channel).
type AgentKey = (Arc<str>, Arc<str>);

/// One configured channel.
struct ChannelState {
    /// The From as configured (email mailbox or E.164 number).
    from: String,
    cost_tokens: u64,
    limiter: DefaultKeyedRateLimiter<AgentKey>,
    backend: Backend,
}

/// A quota outside the node (the control plane's per-tenant messages per
/// day), asked after every local check and before the ledger and delivery.
#[async_trait]
pub trait MessageQuota: Send + Sync {
    /// `Ok`: the message is counted, send it. `Err(ms)`: refused, nothing
    /// is sent, and the guest gets `rate-limited(ms)`.
    async fn admit(&self, ctx: &CallContext, channel: ChannelId) -> Result<(), u64>;
}

/// Distinct deployment template sets kept compiled at most; past this the
/// cache starts over (sets are small and compile in microseconds).
const DEPLOYED_SETS: usize = 256;

/// State shared by every agent's messenger: compiled templates, transports,
/// rate limiters, the ledger and the audit log.
struct Shared {
    templates: Templates,
    /// Deployments' template sets, compiled, by their JSON.
    deployed: Mutex<HashMap<String, Arc<Templates>>>,
    email: Option<ChannelState>,
    sms: Option<ChannelState>,
    ledger: Option<Arc<dyn BudgetLedger>>,
    /// Asked before every delivery (the tenant's daily message quota).
    quota: Option<Arc<dyn MessageQuota>>,
    audit: Arc<dyn AuditLog>,
    /// Sends since start, to prune idle rate-limiter keys now and then.
    sends: AtomicU64,
}

/// The node's messaging service, built once from configuration. Cheap to
/// clone.
#[derive(Clone)]
pub struct Messaging {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Messaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging")
            .field("templates", &self.shared.templates)
            .field("email", &self.shared.email.is_some())
            .field("sms", &self.shared.sms.is_some())
            .field("ledger", &self.shared.ledger.is_some())
            .finish()
    }
}

fn limiter(
    channel: ChannelId,
    rate: RateLimitConfig,
) -> Result<DefaultKeyedRateLimiter<AgentKey>, BuildError> {
    let bad = |what: &str| BuildError::Backend {
        channel,
        reason: format!("rate_limit.{what} must be at least 1"),
    };
    let per_minute = NonZeroU32::new(rate.per_minute).ok_or_else(|| bad("per_minute"))?;
    let burst = NonZeroU32::new(rate.burst).ok_or_else(|| bad("burst"))?;
    Ok(DefaultKeyedRateLimiter::keyed(
        Quota::per_minute(per_minute).allow_burst(burst),
    ))
}

impl Messaging {
    /// Build the service: compile templates, read secrets, build transports
    /// and rate limiters, create outbox directories. `ledger` is charged for
    /// channels with a non-zero cost; without one nothing is charged.
    pub fn new(
        config: &MessagingConfig,
        audit: Arc<dyn AuditLog>,
        ledger: Option<Arc<dyn BudgetLedger>>,
    ) -> Result<Self, BuildError> {
        Self::with_quota(config, audit, ledger, None)
    }

    /// [`Messaging::new`], asking `quota` (if any) before every delivery.
    pub fn with_quota(
        config: &MessagingConfig,
        audit: Arc<dyn AuditLog>,
        ledger: Option<Arc<dyn BudgetLedger>>,
        quota: Option<Arc<dyn MessageQuota>>,
    ) -> Result<Self, BuildError> {
        let templates = Templates::compile(&config.templates)?;
        let email = match &config.email {
            Some(c) => {
                let from = delivery::parse_from(ChannelId::Email, &c.from)?;
                let backend = match &c.backend {
                    EmailBackend::Smtp(smtp) => {
                        Backend::Smtp(Box::new(delivery::SmtpBackend::new(smtp, from)?))
                    }
                    EmailBackend::Outbox(o) => {
                        Backend::Outbox(delivery::OutboxBackend::new(o, ChannelId::Email)?)
                    }
                };
                Some(ChannelState {
                    from: c.from.clone(),
                    cost_tokens: c.cost_tokens,
                    limiter: limiter(ChannelId::Email, c.rate_limit)?,
                    backend,
                })
            }
            None => None,
        };
        let sms = match &config.sms {
            Some(c) => {
                delivery::check_sms_from(&c.from)?;
                let backend = match &c.backend {
                    SmsBackend::Twilio(t) => Backend::Twilio(delivery::TwilioBackend::new(t)?),
                    SmsBackend::Outbox(o) => {
                        Backend::Outbox(delivery::OutboxBackend::new(o, ChannelId::Sms)?)
                    }
                };
                Some(ChannelState {
                    from: c.from.clone(),
                    cost_tokens: c.cost_tokens,
                    limiter: limiter(ChannelId::Sms, c.rate_limit)?,
                    backend,
                })
            }
            None => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                templates,
                deployed: Mutex::new(HashMap::new()),
                email,
                sms,
                ledger,
                quota,
                audit,
                sends: AtomicU64::new(0),
            }),
        })
    }

    /// The messenger for one agent, limited by its `grants`.
    pub fn messenger(&self, grants: AgentGrants) -> AgentMessenger {
        AgentMessenger {
            shared: Arc::clone(&self.shared),
            grants: Arc::new(grants),
            templates: None,
            observer: None,
        }
    }
}

impl Shared {
    /// `configs` compiled (from the cache when this set was seen before).
    fn deployed_templates(&self, configs: &[TemplateConfig]) -> Arc<Templates> {
        let key = serde_json::to_string(configs).unwrap_or_default();
        let mut cache = self
            .deployed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(compiled) = cache.get(&key) {
            return Arc::clone(compiled);
        }
        let (compiled, errors) = Templates::compile_each(configs);
        for e in errors {
            // The control plane validates with the same code, so this means
            // versions disagree; the template answers template-not-found.
            tracing::error!(error = %e, "a deployment's template was left out");
        }
        if cache.len() >= DEPLOYED_SETS {
            cache.clear();
        }
        let compiled = Arc::new(compiled);
        cache.insert(key, Arc::clone(&compiled));
        compiled
    }
}

/// One agent's view of [`Messaging`]: implements
/// [`delta_host_api::Messenger`] within the agent's [`AgentGrants`].
#[derive(Clone)]
pub struct AgentMessenger {
    shared: Arc<Shared>,
    grants: Arc<AgentGrants>,
    /// The deployment's templates, replacing the configured ones.
    templates: Option<Arc<Templates>>,
    /// Sees every attempt, after the audit log.
    observer: Option<Arc<dyn AuditLog>>,
}

impl AgentMessenger {
    /// Use `templates` (a deployment's, from the control plane) instead of
    /// the configured ones: only these exist for this agent. Each must keep
    /// to [`check_safe_subset`]; one that does not, or does not compile, is
    /// left out (logged) and answers `template-not-found`.
    pub fn with_templates(mut self, templates: &[TemplateConfig]) -> Self {
        self.templates = Some(self.shared.deployed_templates(templates));
        self
    }

    /// Also hand every attempt's record to `observer` (after the audit log;
    /// its failure is logged and changes nothing).
    pub fn with_observer(mut self, observer: Arc<dyn AuditLog>) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl std::fmt::Debug for AgentMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMessenger")
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Messenger for AgentMessenger {
    async fn send(&self, ctx: &CallContext, request: SendRequest) -> Result<Receipt, SendError> {
        let messenger = self.clone();
        let ctx = ctx.clone();
        // Run the attempt in its own task: if the guest's deadline drops
        // this future, the attempt still settles or releases its tokens and
        // is still recorded.
        match tokio::spawn(async move { messenger.send_now(&ctx, request).await }).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "message send task failed");
                Err(SendError::DeliveryFailed("internal error".into()))
            }
        }
    }
}

/// Where an attempt stopped, for the audit record.
struct Ending {
    status: AuditStatus,
    tokens_charged: u64,
    provider_message_id: Option<String>,
}

impl Ending {
    fn refused() -> Self {
        Self {
            status: AuditStatus::Refused,
            tokens_charged: 0,
            provider_message_id: None,
        }
    }

    fn failed() -> Self {
        Self {
            status: AuditStatus::Failed,
            tokens_charged: 0,
            provider_message_id: None,
        }
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A fresh message id, `msg-<ms>-<16 hex>`: time-ordered, unique within the
/// process (counter) and unpredictable across processes (random keys of
/// std's hasher), and safe as a file name.
fn new_message_id(now_ms: u128) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(now_ms);
    format!("msg-{now_ms:x}-{:016x}", h.finish())
}

/// Keep guest-chosen strings in audit records bounded.
fn clip(s: &str) -> String {
    const MAX: usize = 256;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn reason_of(e: &SendError) -> (&'static str, Option<String>) {
    match e {
        SendError::NotConfigured => ("not-configured", None),
        SendError::TemplateNotFound => ("template-not-found", None),
        SendError::TemplateNotApproved => ("template-not-approved", None),
        SendError::WrongChannel => ("wrong-channel", None),
        SendError::VariableNotAllowed(n) => ("variable-not-allowed", Some(clip(n))),
        SendError::VariableInvalid(n) => ("variable-invalid", Some(clip(n))),
        SendError::VariableMissing(n) => ("variable-missing", Some(n.clone())),
        SendError::InvalidRecipient => ("invalid-recipient", None),
        SendError::RecipientNotAllowed => ("recipient-not-allowed", None),
        SendError::ChannelNotAllowed => ("channel-not-allowed", None),
        SendError::RateLimited(ms) => ("rate-limited", Some(ms.to_string())),
        SendError::BudgetExceeded(s) => (
            "budget-exceeded",
            Some(format!("needed {}, available {}", s.needed, s.available)),
        ),
        SendError::DeliveryFailed(summary) => ("delivery-failed", Some(summary.clone())),
    }
}

impl AgentMessenger {
    async fn send_now(
        &self,
        ctx: &CallContext,
        request: SendRequest,
    ) -> Result<Receipt, SendError> {
        let templates = self.templates.as_deref().unwrap_or(&self.shared.templates);
        self.shared
            .send(
                &self.grants,
                templates,
                self.observer.as_deref(),
                ctx,
                request,
            )
            .await
    }
}

impl Shared {
    fn channel(&self, channel: ChannelId) -> Option<&ChannelState> {
        match channel {
            ChannelId::Email => self.email.as_ref(),
            ChannelId::Sms => self.sms.as_ref(),
        }
    }

    async fn send(
        &self,
        grants: &AgentGrants,
        templates: &Templates,
        observer: Option<&dyn AuditLog>,
        ctx: &CallContext,
        request: SendRequest,
    ) -> Result<Receipt, SendError> {
        let requested_ms = unix_ms();
        let message_id = new_message_id(requested_ms);
        let channel = config::channel_id(request.channel);
        let (ending, error) = match self
            .attempt(grants, templates, ctx, &request, channel, &message_id)
            .await
        {
            Ok(ending) => (ending, None),
            Err((ending, error)) => (ending, Some(error)),
        };
        let (reason, detail) = match error.as_ref().map(reason_of) {
            Some((reason, detail)) => (Some(reason.to_owned()), detail),
            None => (None, None),
        };
        let record = AuditRecord {
            message_id: message_id.clone(),
            tenant_id: ctx.tenant_id.to_string(),
            agent_id: ctx.agent_id.to_string(),
            run_id: ctx.run_id.to_string(),
            channel,
            template_id: clip(&request.template_id),
            recipient: clip(&request.recipient),
            status: ending.status,
            reason,
            detail,
            tokens_charged: ending.tokens_charged,
            provider_message_id: ending.provider_message_id,
            requested_at: audit::rfc3339_millis(requested_ms),
            finished_at: audit::rfc3339_millis(unix_ms()),
        };
        if let Err(e) = self.audit.append(&record).await {
            // The message may already be delivered; failing the call would
            // invite a duplicate. Make the gap loud instead.
            tracing::error!(error = %e, message_id = %message_id, "message audit record lost");
        }
        if let Some(observer) = observer
            && let Err(e) = observer.append(&record).await
        {
            tracing::warn!(error = %e, message_id = %message_id, "message attempt observer failed");
        }
        match error {
            None => Ok(Receipt {
                message_id,
                tokens_charged: ending.tokens_charged,
            }),
            Some(e) => Err(e),
        }
    }

    /// Every check, then delivery. The error side carries how far the
    /// attempt got (refused before delivery or failed during it).
    async fn attempt(
        &self,
        grants: &AgentGrants,
        templates: &Templates,
        ctx: &CallContext,
        request: &SendRequest,
        channel: ChannelId,
        message_id: &str,
    ) -> Result<Ending, (Ending, SendError)> {
        let refuse = |e: SendError| (Ending::refused(), e);

        let state = self
            .channel(channel)
            .ok_or_else(|| refuse(SendError::NotConfigured))?;
        let template = templates
            .get(&request.template_id)
            .ok_or_else(|| refuse(SendError::TemplateNotFound))?;
        // A template granted to other agents only is "not found" for this
        // one: its existence is none of this agent's business.
        if grants
            .templates
            .as_ref()
            .is_some_and(|ids| !ids.contains(&request.template_id))
        {
            return Err(refuse(SendError::TemplateNotFound));
        }
        if !template.approved {
            return Err(refuse(SendError::TemplateNotApproved));
        }
        if template.channel != channel {
            return Err(refuse(SendError::WrongChannel));
        }
        let variables = template.check_variables(&request.variables).map_err(|e| {
            refuse(match e {
                VariableError::NotAllowed(name) => SendError::VariableNotAllowed(name),
                VariableError::Invalid(name) => SendError::VariableInvalid(name),
                VariableError::Missing(name) => SendError::VariableMissing(name),
            })
        })?;
        let to = recipient::parse(channel, &request.recipient)
            .ok_or_else(|| refuse(SendError::InvalidRecipient))?;
        if !recipient::is_allowed(&to, &grants.recipients) {
            return Err(refuse(SendError::RecipientNotAllowed));
        }
        if !grants.channels.contains(&channel) {
            return Err(refuse(SendError::ChannelNotAllowed));
        }
        // Rendered before the rate limit and the ledger so that a broken
        // template costs the agent neither quota nor tokens.
        let rendered = templates
            .render(template, &variables)
            .map_err(|summary| (Ending::failed(), SendError::DeliveryFailed(summary)))?;

        self.check_rate(state, ctx)
            .map_err(|ms| refuse(SendError::RateLimited(ms)))?;
        if let Some(quota) = &self.quota {
            quota
                .admit(ctx, channel)
                .await
                .map_err(|ms| refuse(SendError::RateLimited(ms.max(1))))?;
        }

        let reservation = self.reserve(state, ctx, channel).await?;

        let outgoing = Outgoing {
            message_id,
            channel,
            from: &state.from,
            to: &to,
            rendered: &rendered,
        };
        match state.backend.deliver(&outgoing).await {
            Ok(provider_id) => Ok(Ending {
                status: AuditStatus::Sent,
                tokens_charged: self.settle(reservation, state.cost_tokens).await,
                provider_message_id: Some(provider_id),
            }),
            Err(summary) => {
                self.release(reservation).await;
                tracing::warn!(%channel, message_id, %summary, "message delivery failed");
                Err((Ending::failed(), SendError::DeliveryFailed(summary)))
            }
        }
    }

    /// `Err` carries the wait in milliseconds (at least 1, so a guest never
    /// busy-loops on a zero).
    fn check_rate(&self, state: &ChannelState, ctx: &CallContext) -> Result<(), u64> {
        // Idle keys are indistinguishable from fresh ones; drop them now and
        // then so that many short-lived agents do not grow the map forever.
        if self.sends.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            if let Some(s) = &self.email {
                s.limiter.retain_recent();
            }
            if let Some(s) = &self.sms {
                s.limiter.retain_recent();
            }
        }
        let key = (Arc::clone(&ctx.tenant_id), Arc::clone(&ctx.agent_id));
        state.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(state.limiter.clock().now());
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
        })
    }

    async fn reserve(
        &self,
        state: &ChannelState,
        ctx: &CallContext,
        channel: ChannelId,
    ) -> Result<Option<(Arc<dyn BudgetLedger>, Reservation)>, (Ending, SendError)> {
        let Some(ledger) = &self.ledger else {
            return Ok(None);
        };
        if state.cost_tokens == 0 {
            return Ok(None);
        }
        let purpose = format!("message:{channel}");
        match ledger.reserve(ctx, state.cost_tokens, &purpose).await {
            Ok(r) => Ok(Some((Arc::clone(ledger), r))),
            Err(LedgerError::Insufficient { needed, available }) => Err((
                Ending::refused(),
                SendError::BudgetExceeded(Shortfall { needed, available }),
            )),
            // An agent without an account has nothing to spend.
            Err(LedgerError::UnknownAccount(_)) => Err((
                Ending::refused(),
                SendError::BudgetExceeded(Shortfall {
                    needed: state.cost_tokens,
                    available: 0,
                }),
            )),
            Err(e) => {
                tracing::error!(error = %e, "ledger reserve failed for a message");
                Err((
                    Ending::failed(),
                    SendError::DeliveryFailed("budget ledger unavailable".into()),
                ))
            }
        }
    }

    /// Charge the message; returns the tokens charged.
    async fn settle(
        &self,
        reservation: Option<(Arc<dyn BudgetLedger>, Reservation)>,
        cost: u64,
    ) -> u64 {
        let Some((ledger, reservation)) = reservation else {
            return 0;
        };
        match ledger.settle(&reservation, cost).await {
            Ok(s) => s.charged,
            Err(e) => {
                // The message is out; report what the ledger actually
                // recorded (nothing) rather than failing a sent message.
                tracing::error!(error = %e, reservation = %reservation.id, "ledger settle failed for a sent message");
                0
            }
        }
    }

    async fn release(&self, reservation: Option<(Arc<dyn BudgetLedger>, Reservation)>) {
        if let Some((ledger, reservation)) = reservation
            && let Err(e) = ledger.release(&reservation).await
        {
            tracing::error!(error = %e, reservation = %reservation.id, "ledger release failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_across_threads() {
        fn is<T: Send + Sync>() {}
        is::<Messaging>();
        is::<AgentMessenger>();
    }

    #[test]
    fn message_ids_are_unique_and_file_safe() {
        let a = new_message_id(1);
        let b = new_message_id(1);
        assert_ne!(a, b);
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{a}"
        );
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "\u{e9}".repeat(200);
        let c = clip(&s);
        assert!(c.len() <= 256);
        assert!(s.starts_with(&c));
    }
}
