//! `delta.toml`: capabilities for local runs (`delta run --config`).
//!
//! One file names the agent being run and its grants, and configures each
//! capability backend; a missing section leaves that capability
//! `not-configured`. Secrets are never in the file: providers, SMTP and SMS
//! backends name an environment variable or a file.
//!
//! ```toml
//! [agent]
//! id = "email-bot"          # budget account, audit records, task.agent-id
//! tenant = "local"
//! models = ["default"]      # LLM models or aliases the agent may use
//! channels = ["email"]      # messaging channels it may use
//! recipients = ["*@example.com"]
//!
//! [limits]                  # optional overrides of the invocation limits
//! timeout_ms = 30000
//!
//! [llm]                     # delta_llm::LlmConfig
//! aliases = { default = "claude-haiku-4-5" }
//! [[llm.providers]]
//! name = "anthropic"
//! kind = "anthropic"
//! base_url = "https://api.anthropic.com"
//! api_key_env = "ANTHROPIC_API_KEY"
//! models = ["claude-haiku-4-5"]
//!
//! [messaging]               # delta_messaging::MessagingConfig
//! audit_log = ".delta/messages.jsonl"   # default: no file, audit kept in memory
//! [messaging.email]
//! from = "Delta <noreply@example.com>"
//! backend = { kind = "outbox", dir = ".delta/outbox" }
//! [[messaging.templates]]
//! id = "welcome"
//! channel = "email"
//! subject = "Welcome, {{ name }}"
//! body = "Hello {{ name }}!"
//! variables = ["name"]
//! approved = true
//!
//! [kv]                      # durable key-value state (the section grants it)
//! database = ".delta/kv.db"
//!
//! [budget]                  # the SQLite token ledger
//! database = ".delta/ledger.db"
//! [[budget.users]]
//! id = "dev"
//! tier = "developer"
//! monthly_allocation = 10000
//! [[budget.agents]]         # main agent: has `user`
//! id = "main"
//! user = "dev"
//! budget = 3000
//! auto_approve_limit = 200
//! max_request = 1000
//! [[budget.agents]]         # bot: has `parent`
//! id = "email-bot"
//! parent = "main"
//! budget = 100
//! ```
//!
//! Relative paths are relative to the directory of the config file. Users and
//! agents are created in the ledger on first use and left as they are after
//! (balances persist between runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use delta_host_api::{BudgetLedger, Capabilities};
use delta_ledger::SqliteLedger;
use delta_ledger::seed::BudgetConfig;
use delta_messaging::{AgentGrants, ChannelId, JsonlAuditLog, MemoryAuditLog, MessagingConfig};
use delta_runtime::InvocationLimits;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The agent being run and its grants.
    #[serde(default)]
    pub agent: AgentSection,
    /// Invocation limits (defaults for anything not set).
    pub limits: Option<InvocationLimits>,
    /// LLM providers.
    pub llm: Option<delta_llm::LlmConfig>,
    /// Messaging channels and templates.
    pub messaging: Option<MessagingSection>,
    /// The token ledger.
    pub budget: Option<BudgetConfig>,
    /// Key-value state (`delta:agent/kv`); present, it is granted.
    pub kv: Option<KvSection>,
}

/// `[kv]`: where local runs keep the agent's state, and its bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSection {
    /// The SQLite file (created if missing).
    pub database: PathBuf,
    /// Bounds (default: `delta_kv::KvLimits`'s).
    #[serde(default)]
    pub limits: delta_kv::KvLimits,
}

/// `[agent]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// Agent id (default: the component's file name without extension).
    pub id: Option<String>,
    /// Tenant id (default `local`).
    pub tenant: String,
    /// Models or aliases the agent may call (default none).
    pub models: Vec<String>,
    /// Messaging channels it may use (default none).
    pub channels: Vec<ChannelId>,
    /// Recipients it may reach (default none).
    pub recipients: Vec<String>,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            id: None,
            tenant: "local".into(),
            models: Vec::new(),
            channels: Vec::new(),
            recipients: Vec::new(),
        }
    }
}

/// `[messaging]`: the backend configuration plus where the audit goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSection {
    /// JSON-lines audit log of every attempt (default: in memory only).
    pub audit_log: Option<PathBuf>,
    /// Channels and templates.
    #[serde(flatten)]
    pub config: MessagingConfig,
}

impl LocalConfig {
    /// Read and parse `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: LocalConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(budget) = &mut config.budget {
            budget.database = base.join(&budget.database);
        }
        if let Some(kv) = &mut config.kv {
            kv.database = base.join(&kv.database);
        }
        if let Some(messaging) = &mut config.messaging {
            if let Some(audit) = &mut messaging.audit_log {
                *audit = base.join(&*audit);
            }
            delta_messaging::config::resolve_paths(&mut messaging.config, base);
        }
        if let Some(llm) = &mut config.llm {
            for provider in &mut llm.providers {
                if let Some(file) = &mut provider.api_key_file {
                    *file = base.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// Build the capability backends for the agent `agent_id`.
    pub async fn capabilities(&self, agent_id: &str) -> anyhow::Result<Capabilities> {
        let ledger = match &self.budget {
            Some(budget) => Some(open_ledger(budget).await?),
            None => None,
        };
        let ledger_dyn = ledger.clone().map(|l| l as Arc<dyn BudgetLedger>);
        let llm = match &self.llm {
            Some(config) => {
                let providers = Arc::new(
                    delta_llm::Providers::new(config).context("configuring LLM providers")?,
                );
                Some(
                    Arc::new(providers.for_agent(self.agent.models.clone(), ledger_dyn.clone()))
                        as Arc<dyn delta_host_api::LlmGateway>,
                )
            }
            None => None,
        };
        let messenger = match &self.messaging {
            Some(section) => {
                let audit: Arc<dyn delta_messaging::AuditLog> = match &section.audit_log {
                    Some(path) => Arc::new(
                        JsonlAuditLog::open(path)
                            .await
                            .with_context(|| format!("opening {}", path.display()))?,
                    ),
                    None => Arc::new(MemoryAuditLog::new()),
                };
                let messaging =
                    delta_messaging::Messaging::new(&section.config, audit, ledger_dyn.clone())
                        .context("configuring messaging")?;
                Some(Arc::new(messaging.messenger(AgentGrants {
                    channels: self.agent.channels.clone(),
                    recipients: self.agent.recipients.clone(),
                    templates: None,
                })) as Arc<dyn delta_host_api::Messenger>)
            }
            None => None,
        };
        if let (Some(ledger), false) = (&ledger, agent_id.is_empty()) {
            // Fail early with a clear message instead of every call answering
            // budget-exceeded for an unknown account.
            ledger.balance(agent_id).await.with_context(|| {
                format!("agent {agent_id} has no budget account: add it under [[budget.agents]]")
            })?;
        }
        let kv = match &self.kv {
            Some(section) => {
                let store = delta_kv::KvStore::open_sqlite(&section.database, section.limits)
                    .await
                    .with_context(|| format!("opening {}", section.database.display()))?;
                Some(Arc::new(delta_node::kv::LocalKv(store)) as Arc<dyn delta_host_api::KvBackend>)
            }
            None => None,
        };
        Ok(Capabilities {
            llm,
            messenger,
            budget: ledger_dyn,
            kv,
            http: None,
            // `delta run` has no control plane to deliver to.
            agents: None,
            log_sink: None,
        })
    }
}

async fn open_ledger(budget: &BudgetConfig) -> anyhow::Result<Arc<SqliteLedger>> {
    Ok(Arc::new(delta_ledger::seed::open_seeded(budget).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml").expect("example") + "//! ```toml".len();
        let end = start + doc[start..].find("//! ```").expect("end");
        let toml: String = doc[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix("//!")
                    .unwrap_or(l)
                    .strip_prefix(' ')
                    .unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config: LocalConfig = toml::from_str(&toml).expect("example parses");
        assert_eq!(config.agent.id.as_deref(), Some("email-bot"));
        assert_eq!(config.budget.expect("budget").agents.len(), 2);
    }
}
