//! Message templates and recipients: the data model and the checks that
//! both sides of messaging apply.
//!
//! The control plane checks a tenant's template and recipient allow-list
//! when they are written; the messaging capability (`delta-messaging`)
//! compiles, checks and renders the same templates on the node when a guest
//! sends. Keeping the rules here, with no I/O, no transport and no Wasmtime,
//! means both apply exactly the same code and the control plane links
//! neither SMTP nor the runtime for it.
//!
//! - [`ChannelId`], [`TemplateConfig`]: the model, as configuration files
//!   and the node API spell it.
//! - [`Templates`]: a set of templates compiled into one minijinja
//!   environment; [`Template::check_variables`] and [`Templates::render`]
//!   are what a send runs.
//! - [`check_template`], [`check_safe_subset`]: a tenant's template as a
//!   node will use it.
//! - [`recipient`]: recipient syntax per channel and the allow-list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[doc(hidden)]
pub mod fuzzing;
pub mod recipient;
mod template;

pub use recipient::{InvalidRecipientEntry, check_allow_entry};
pub use template::{
    MAX_SMS_BODY_CHARS, Rendered, Template, TemplateError, Templates, VariableError,
    check_safe_subset, check_template, is_forbidden_char,
};

/// A delivery channel, as spelled in configuration and audit records
/// (`"email"`, `"sms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelId {
    /// Email over SMTP (or the file outbox).
    Email,
    /// SMS over a Twilio-compatible API (or the file outbox).
    Sms,
}

impl ChannelId {
    /// The lowercase name used in configuration, audit records and ledger
    /// purposes.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelId::Email => "email",
            ChannelId::Sms => "sms",
        }
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One template: the operator's (configuration file) or a deployment's
/// (authored in the control plane, shipped in the agent's grants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// The id agents refer to. Required, unique.
    pub id: String,
    /// The channel this template is for. Required.
    pub channel: ChannelId,
    /// Subject template (minijinja); required for email, forbidden for SMS.
    /// Never HTML-escaped; a rendered subject must be a single line.
    #[serde(default)]
    pub subject: Option<String>,
    /// Body template (minijinja). Required.
    pub body: String,
    /// Whether the body is HTML: variables are HTML-escaped and the email is
    /// sent as `text/html`. Email only. Default: false.
    #[serde(default)]
    pub html: bool,
    /// Names of the variables an agent may pass. Every variable the subject
    /// and body use must be listed. Default: none.
    #[serde(default)]
    pub variables: Vec<String>,
    /// Longest accepted variable value, in characters. Default: 256.
    #[serde(default = "default_max_variable_len")]
    pub max_variable_len: usize,
    /// Longest accepted value of particular variables, in characters,
    /// overriding `max_variable_len` for those. Every key must be in
    /// `variables`; every value at least 1. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_lengths: BTreeMap<String, usize>,
    /// Whether the template may be used. Default: false, so a template
    /// added to the file is inert until an operator approves it.
    #[serde(default)]
    pub approved: bool,
}

fn default_max_variable_len() -> usize {
    256
}
