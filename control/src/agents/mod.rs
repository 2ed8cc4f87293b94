//! Agents (components, the code they run, are `crate::components`).
//!
//! - An agent is a main agent or a bot under a main agent of the same tenant
//!   (seed 000). Creating one places it on the least-loaded node that is up
//!   ([`crate::nodes::candidates`]), pushes its component there and deploys
//!   it; only then is it stored, so a failed deployment leaves nothing. Its
//!   row is the desired state: changes (PATCH, pause, resume) are applied to
//!   the hosting node first and stored after it accepted them; the node
//!   monitor re-deploys agents whose node is lost or lost them.
//! - Changes are audited in the same transaction as their row:
//!   `component_uploaded`, `agent_created`, `agent_updated`, `agent_paused`,
//!   `agent_resumed`, `agent_deleted` (and `agent_moved`, by the monitor).
//!
//! Layers: `handlers` (HTTP) over `deploy` (making a node run an agent)
//! over `store` (rows); nothing below calls up.
//!
//! Roles: reading needs `member` and `agents:read`; uploading and every
//! change need `admin` and `agents:write`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

mod deploy;
mod handlers;
mod store;

pub(crate) use deploy::{deploy, hosting_node, redeploy_current};
pub use handlers::routes;
pub(crate) use store::{AGENT_COLUMNS, agent_from_row, load_agent};

/// Prefix of agent ids (`agt_...`). The node monitor only ever deletes
/// deployments with this prefix from a node.
pub const ID_PREFIX: &str = "agt";

// ---- shapes ----------------------------------------------------------------

/// Per-run limits; each is clamped by the node's maximums, unset takes the
/// node's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel per run.
    pub fuel: Option<u64>,
    /// Linear memory cap per run, bytes.
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline per run, milliseconds.
    pub timeout_ms: Option<u64>,
}

/// What becomes of an agent's unfinished runs when their node is lost
/// (stops heart-beating): see `crate::dispatch::requeue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeLoss {
    /// Delivered again to the agent's new node under the same run id (at
    /// least once: a guest that had started may run twice, and sees the
    /// same `run-id` as its idempotency key).
    #[default]
    Requeue,
    /// Marked `dead` with `last_error` `node_lost` (never run twice). The
    /// control plane cannot tell whether the lost node had started a run,
    /// so every unfinished run out on it fails; `POST /v1/runs/{id}/retry`
    /// runs one again on purpose.
    Fail,
}

impl NodeLoss {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requeue => "requeue",
            Self::Fail => "fail",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "requeue" => Some(Self::Requeue),
            "fail" => Some(Self::Fail),
            _ => None,
        }
    }
}

/// A messaging channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Email.
    Email,
    /// SMS.
    Sms,
}

/// What an agent may reach; everything defaults to nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentGrants {
    /// LLM models or aliases it may call.
    #[serde(default)]
    pub models: Vec<String>,
    /// Messaging channels it may use.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Message templates (ids) it may use.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Recipients it may reach (addresses, `*@domain`, E.164 numbers).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Whether it may keep durable key-value state between runs
    /// (`delta:agent/kv`; readable at `/v1/agents/{id}/kv`). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kv: bool,
    /// Outbound HTTP (`delta:agent/http`); absent: no request leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpGrant>,
    /// Agents of this tenant it may message (`delta:agent/agents`), by name
    /// or id; a message to any other is refused `not-allowed`. At most 256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}

/// What an agent may reach over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// Allow-list: `api.example.com` (exactly that host), `*.example.com`
    /// (its subdomains), `http://host:8080` (plain http, or a port other
    /// than the scheme's, must be named). At most 100.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Names of this tenant's secrets (`PUT /v1/secrets/{name}`) that its
    /// header values may use as `{{secret:NAME}}`. At most 50.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Main agent or bot (seed 000: a bot acts for a main agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A user's main agent.
    Main,
    /// A bot under a main agent.
    Bot,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Bot => "bot",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "main" => Some(Self::Main),
            "bot" => Some(Self::Bot),
            _ => None,
        }
    }
}

/// An agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    /// `agt_...`.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Unique in the tenant.
    pub name: String,
    /// Main agent or bot.
    pub kind: Kind,
    /// A bot's main agent.
    pub parent_agent_id: Option<String>,
    /// Component sha256.
    pub component: String,
    /// Per-run limits.
    pub limits: Limits,
    /// Capability grants.
    pub grants: AgentGrants,
    /// Paused agents take no new runs (409 `agent_paused`).
    pub paused: bool,
    /// Its unfinished runs when their node is lost.
    pub node_loss: NodeLoss,
    /// The node hosting it.
    pub node_id: Option<String>,
    /// Created at.
    pub created_at_ms: i64,
    /// Last changed (including moves between nodes).
    pub updated_at_ms: i64,
}

/// Body of `POST /v1/agents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// Unique in the tenant (409 `name_taken`): 1-128 characters, no
    /// control characters, no surrounding spaces.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
    /// `main` or `bot`.
    pub kind: Kind,
    /// Required for a bot (a main agent of the tenant); absent for a main
    /// agent.
    pub parent_agent_id: Option<String>,
    /// sha256 of a component this tenant uploaded.
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    pub component: String,
    /// Per-run limits (default: the node's).
    pub limits: Option<Limits>,
    /// Grants (default: nothing).
    pub grants: Option<AgentGrants>,
    /// Its unfinished runs when their node is lost (default `requeue`).
    pub node_loss: Option<NodeLoss>,
    /// Tokens carved at creation from the parent's budget (the creating
    /// user's pool for a main agent, the main agent's for a bot); default 0.
    /// 409 `budget_exhausted` when the parent cannot cover it.
    pub budget: Option<u64>,
}

/// Body of `PATCH /v1/agents/{id}`: what is given is replaced, and the agent
/// is redeployed on its node.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    /// Another component of this tenant.
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    pub component: Option<String>,
    /// New limits (all three fields; unset ones take the node's default).
    pub limits: Option<Limits>,
    /// New grants.
    pub grants: Option<AgentGrants>,
    /// New node-loss policy (takes effect at the next loss; no redeploy).
    pub node_loss: Option<NodeLoss>,
}

/// `?kind=` of `GET /v1/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentFilter {
    /// Only main agents or only bots.
    pub kind: Option<Kind>,
}
