//! Operator configuration: templates, channel backends, costs, rate limits,
//! and the per-agent grants.
//!
//! Every struct refuses unknown fields, so a typo in a config file is an
//! error at startup rather than a silently ignored setting. Secrets never
//! appear in the configuration itself, only where to read them from
//! ([`SecretSource`]).
//!
//! # Example (TOML)
//!
//! ```toml
//! [email]
//! from = "Delta <noreply@example.com>"   # required; operator-owned
//! cost_tokens = 10                       # default 0
//! rate_limit = { per_minute = 10, burst = 5 }   # the defaults
//!
//! [email.backend]
//! kind = "smtp"                          # or "outbox" with `dir`
//! host = "smtp.example.com"
//! tls = "starttls"                       # default; "implicit" | "none" (loopback only)
//! # port = 587                           # default by tls: 587 / 465 / 25
//! username = "apikey"
//! password = { env = "DELTA_SMTP_PASSWORD" }   # or { file = "/run/secrets/smtp" }
//! timeout_ms = 30000                     # default
//!
//! [sms]
//! from = "+15005550006"                  # required, E.164
//! cost_tokens = 25
//!
//! [sms.backend]
//! kind = "twilio"                        # or "outbox" with `dir`
//! base_url = "https://api.twilio.com"    # default
//! account_sid = "AC0123456789abcdef"
//! auth_token = { file = "/run/secrets/twilio-token" }
//! timeout_ms = 15000                     # default
//!
//! [[templates]]
//! id = "welcome"
//! channel = "email"
//! subject = "Welcome, {{ name }}"        # email only, single line
//! body = "Hello {{ name }}, your code is {{ code }}."
//! html = false                           # default
//! variables = ["name", "code"]           # default []
//! max_variable_len = 256                 # default
//! max_lengths = { code = 8 }             # per variable; default none
//! approved = true                        # default false
//!
//! [[templates]]
//! id = "otp"
//! channel = "sms"
//! body = "Your code is {{ code }}"
//! variables = ["code"]
//! max_variable_len = 8
//! approved = true
//! ```
//!
//! For local runs, route both channels to the outbox:
//!
//! ```toml
//! [email]
//! from = "dev@localhost.test"
//! backend = { kind = "outbox", dir = "./outbox" }
//!
//! [sms]
//! from = "+15005550006"
//! backend = { kind = "outbox", dir = "./outbox" }
//! ```
//!
//! Per-agent grants ([`AgentGrants`]) are not part of this file: the node
//! passes them when it builds an agent's messenger.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use delta_host_api::messaging::Channel;

pub use delta_templates::{ChannelId, TemplateConfig};

/// The configuration's name of a WIT channel.
pub fn channel_id(channel: Channel) -> ChannelId {
    match channel {
        Channel::Email => ChannelId::Email,
        Channel::Sms => ChannelId::Sms,
    }
}

/// The whole messaging configuration of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfig {
    /// The email channel. Default: absent, so email answers `not-configured`.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// The SMS channel. Default: absent, so SMS answers `not-configured`.
    #[serde(default)]
    pub sms: Option<SmsConfig>,
    /// The operator's templates. Default: none (every send answers
    /// `template-not-found`).
    #[serde(default)]
    pub templates: Vec<TemplateConfig>,
}

/// The email channel: sender, backend, price and rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The operator's From mailbox, e.g. `"Delta <noreply@example.com>"`.
    /// Required; agents can never choose it.
    pub from: String,
    /// Tokens reserved and charged per message. Default: 0 (free; the
    /// ledger is not consulted).
    #[serde(default)]
    pub cost_tokens: u64,
    /// Per-agent rate limit on this channel. Default: 10 per minute, burst 5.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Where messages go. Required.
    pub backend: EmailBackend,
}

/// Backend for the email channel, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EmailBackend {
    /// Deliver through an SMTP relay.
    Smtp(SmtpConfig),
    /// Write each message as a JSON file (local runs).
    Outbox(OutboxConfig),
}

/// An SMTP relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name (also the name its TLS certificate must carry).
    /// Required.
    pub host: String,
    /// Port. Default: 465 for `implicit`, 587 for `starttls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Transport security. Default: `starttls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// AUTH user name. Default: none (no AUTH). When set, `password` is
    /// required.
    #[serde(default)]
    pub username: Option<String>,
    /// Where to read the AUTH password. Default: none.
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Timeout of each SMTP command, in milliseconds. Default: 30000.
    #[serde(default = "default_smtp_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_smtp_timeout_ms() -> u64 {
    30_000
}

/// SMTP transport security (shared with the control plane's own mail).
pub use delta_mail::SmtpTls;

/// Where a secret is read from at startup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// The named environment variable.
    Env(String),
    /// The file at this path; one trailing newline is ignored.
    File(PathBuf),
}

/// The SMS channel: sender, backend, price and rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The operator's sending number in E.164 (`+` and 8-15 digits).
    /// Required.
    pub from: String,
    /// Tokens reserved and charged per message. Default: 0.
    #[serde(default)]
    pub cost_tokens: u64,
    /// Per-agent rate limit on this channel. Default: 10 per minute, burst 5.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Where messages go. Required.
    pub backend: SmsBackend,
}

/// Backend for the SMS channel, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SmsBackend {
    /// A Twilio-compatible REST API.
    Twilio(TwilioConfig),
    /// Write each message as a JSON file (local runs).
    Outbox(OutboxConfig),
}

/// A Twilio-compatible REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// API base URL, without the `/2010-04-01/...` path. Must be `https`
    /// unless the host is loopback. Default: `https://api.twilio.com`.
    #[serde(default = "default_twilio_base_url")]
    pub base_url: String,
    /// Account SID (the basic-auth user and part of the path). Required.
    pub account_sid: String,
    /// Where to read the auth token (the basic-auth password). Required.
    pub auth_token: SecretSource,
    /// Timeout of the whole HTTP request, in milliseconds. Default: 15000.
    #[serde(default = "default_twilio_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_twilio_base_url() -> String {
    "https://api.twilio.com".to_owned()
}

fn default_twilio_timeout_ms() -> u64 {
    15_000
}

/// The file outbox: one JSON file per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Directory the files are written to (created at startup). Required.
    pub dir: PathBuf,
}

/// A GCRA rate limit per (agent, channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained messages per minute. Default: 10. Must be at least 1.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// Messages that may be sent at once before the sustained rate applies.
    /// Default: 5. Must be at least 1.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_per_minute() -> u32 {
    10
}

fn default_burst() -> u32 {
    5
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_minute: default_per_minute(),
            burst: default_burst(),
        }
    }
}

/// What one agent may do with messaging; given when building its
/// [`AgentMessenger`](crate::AgentMessenger).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGrants {
    /// Channels the agent may use. Default: none.
    #[serde(default)]
    pub channels: Vec<ChannelId>,
    /// Recipients the agent may reach: exact email addresses (compared
    /// case-insensitively), `*@domain` for every address of a domain, or
    /// exact E.164 numbers. Default: none.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Templates the agent may use, by id; `None` allows every approved
    /// template (local runs), `Some` only those listed (node deployments).
    #[serde(default)]
    pub templates: Option<Vec<String>>,
}

/// Make outbox directories and secret files relative to `base` (the
/// directory of the file the configuration came from).
pub fn resolve_paths(config: &mut MessagingConfig, base: &Path) {
    let secret = |source: &mut SecretSource| {
        if let SecretSource::File(path) = source {
            *path = base.join(&*path);
        }
    };
    if let Some(email) = &mut config.email {
        match &mut email.backend {
            EmailBackend::Outbox(outbox) => outbox.dir = base.join(&outbox.dir),
            EmailBackend::Smtp(smtp) => {
                if let Some(password) = &mut smtp.password {
                    secret(password);
                }
            }
        }
    }
    if let Some(sms) = &mut config.sms {
        match &mut sms.backend {
            SmsBackend::Outbox(outbox) => outbox.dir = base.join(&outbox.dir),
            SmsBackend::Twilio(twilio) => secret(&mut twilio.auth_token),
        }
    }
}
