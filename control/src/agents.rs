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
//! Roles: reading needs `member` and `agents:read`; uploading and every
//! change need `admin` and `agents:write`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use delta_node_api::AgentRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::components::{UNCHECKED, component_path, require_component};
use crate::db::{new_id, now_ms};
use crate::nodeclient::{DeploySpec, NodeCallError, NodeClient};
use crate::nodes::{self, Target};
use crate::pagination::{Page, PageQuery};

/// Prefix of agent ids (`agt_...`). The node monitor only ever deletes
/// deployments with this prefix from a node.
pub const ID_PREFIX: &str = "agt";

/// Longest agent name, in bytes.
const MAX_NAME: usize = 128;
/// Most entries in one grant list, and longest entry.
const MAX_GRANTS: usize = 256;
const MAX_GRANT_LEN: usize = 256;
/// Nodes tried when creating an agent whose first choice does not answer.
const PLACEMENT_ATTEMPTS: usize = 3;

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

// ---- routes ----------------------------------------------------------------

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(pause_agent))
        .routes(routes!(resume_agent))
}

// ---- agents: storage -------------------------------------------------------

/// Columns of [`agent_from_row`].
pub(crate) const AGENT_COLUMNS: &str = "id, tenant_id, name, kind, parent_agent_id, component, \
     limits, grants, paused, node_loss, node_id, created_at_ms, updated_at_ms";

/// An agent from a row of [`AGENT_COLUMNS`].
pub(crate) fn agent_from_row(row: &AnyRow) -> Result<Agent, sqlx::Error> {
    let json_column = |name: &str| -> Result<String, sqlx::Error> { row.try_get(name) };
    let decode = |name: &str, e: serde_json::Error| sqlx::Error::ColumnDecode {
        index: name.to_owned(),
        source: Box::new(e),
    };
    let kind: String = row.try_get("kind")?;
    let node_loss: String = row.try_get("node_loss")?;
    Ok(Agent {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        kind: Kind::parse(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "kind".into(),
            source: format!("unknown kind {kind:?}").into(),
        })?,
        parent_agent_id: row.try_get("parent_agent_id")?,
        component: row.try_get("component")?,
        limits: serde_json::from_str(&json_column("limits")?).map_err(|e| decode("limits", e))?,
        grants: serde_json::from_str(&json_column("grants")?).map_err(|e| decode("grants", e))?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        node_loss: NodeLoss::parse(&node_loss).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "node_loss".into(),
            source: format!("unknown node_loss {node_loss:?}").into(),
        })?,
        node_id: row.try_get("node_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// The tenant's agent `id`, or 404 (also for another tenant's id).
pub(crate) async fn load_agent(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<Agent, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("agent"))?;
    agent_from_row(&row).map_err(ApiError::internal)
}

/// The node hosting `agent`, or 503 `node_unavailable` when it is down (the
/// monitor is about to move the agent).
pub(crate) async fn hosting_node(state: &AppState, agent: &Agent) -> Result<Target, ApiError> {
    let Some(node_id) = &agent.node_id else {
        return Err(crate::nodeclient::node_unavailable());
    };
    nodes::up_node(state, node_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(crate::nodeclient::node_unavailable)
}

// ---- agents: deployment ----------------------------------------------------

/// Why an agent could not be deployed on a node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeployError {
    /// The node refused or did not answer.
    #[error(transparent)]
    Node(#[from] NodeCallError),
    /// The component's bytes could not be read here.
    #[error("reading component {sha256}: {source}")]
    Component {
        /// Which.
        sha256: String,
        /// Why.
        source: std::io::Error,
    },
    /// Limits or grants do not serialise (never, for stored values).
    #[error("encoding the deployment: {0}")]
    Encode(#[from] serde_json::Error),
    /// The granted templates could not be read.
    #[error("reading the agent's templates: {0}")]
    Database(#[from] sqlx::Error),
}

impl DeployError {
    /// Whether the node did not answer (another node may).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Self::Node(e) if e.is_unreachable())
    }

    /// The client's answer: a node's 422 is `invalid_component`.
    pub(crate) fn to_api(&self) -> ApiError {
        match self {
            Self::Node(NodeCallError::Refused {
                status, message, ..
            }) if *status == StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::new(*status, "invalid_component", message.clone())
            }
            Self::Node(e) => e.to_api(),
            other => ApiError::internal(other),
        }
    }
}

/// Redeploy agent `id` to `node` as its row stands now, under the agent's
/// deploy lock (see `AppState::lock_deploys`): for callers that read the
/// agent earlier (reconciliation, template changes), whose copy may be
/// older than an update made meanwhile. `Ok(false)`: the agent is gone or
/// placed elsewhere now.
pub(crate) async fn redeploy_current(
    state: &AppState,
    node: &Target,
    id: &str,
) -> Result<bool, DeployError> {
    let _deploying = state.lock_deploys(id).await;
    let row = sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND node_id = $2"
    ))
    .bind(id)
    .bind(&node.id)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let agent = agent_from_row(&row)?;
    deploy(state, node, &agent).await?;
    Ok(true)
}

/// Make `node` run `agent` as stored: its spec, and its pause state. The
/// component is pushed only when the node lacks it (its 422 on the agent).
pub(crate) async fn deploy(
    state: &AppState,
    node: &Target,
    agent: &Agent,
) -> Result<AgentRecord, DeployError> {
    let client = NodeClient::new(state);
    let limits = serde_json::to_value(&agent.limits)?;
    // The node's grants carry the granted templates' definitions.
    let grants = serde_json::to_value(crate::templates::node_grants(&state.db, agent).await?)?;
    let spec = DeploySpec {
        tenant_id: &agent.tenant_id,
        component: &agent.component,
        limits: &limits,
        grants: &grants,
    };
    let record = match client.put_agent(node, &agent.id, &spec).await {
        Ok(record) => record,
        Err(e) if e.is_unprocessable() => {
            // Most likely the node does not hold the component yet; if the
            // 422 was about something else, the second attempt says so.
            push_component(state, node, &agent.component, &agent.tenant_id).await?;
            client.put_agent(node, &agent.id, &spec).await?
        }
        Err(e) => return Err(e.into()),
    };
    if record.paused != agent.paused {
        return Ok(client.set_paused(node, &agent.id, agent.paused).await?);
    }
    Ok(record)
}

/// Upload a stored component to `node` and remember what world it is. The
/// node charges the compile to `tenant`'s compile budget.
async fn push_component(
    state: &AppState,
    node: &Target,
    sha256: &str,
    tenant: &str,
) -> Result<(), DeployError> {
    let bytes = tokio::fs::read(component_path(state, sha256))
        .await
        .map_err(|source| DeployError::Component {
            sha256: sha256.to_owned(),
            source,
        })?;
    let record = NodeClient::new(state)
        .put_component(node, sha256, tenant, Bytes::from(bytes))
        .await?;
    // Derived from the bytes alone, so every tenant's row may learn it.
    if let Err(e) = sqlx::query("UPDATE components SET world = $1 WHERE sha256 = $2 AND world = $3")
        .bind(&record.world)
        .bind(sha256)
        .bind(UNCHECKED)
        .execute(state.db.pool())
        .await
    {
        tracing::warn!(error = %e, sha256, "recording a component's world");
    }
    Ok(())
}

// ---- agents: handlers ------------------------------------------------------

fn validate_name(name: &str) -> Result<(), ApiError> {
    // Characters, not bytes: the document's maxLength counts characters.
    if name.is_empty()
        || name.chars().count() > MAX_NAME
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "name must be 1-{MAX_NAME} characters without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

fn validate_grants(grants: &AgentGrants) -> Result<(), ApiError> {
    if let Some(http) = &grants.http {
        if http.hosts.len() > 100 || http.secrets.len() > 50 {
            return Err(ApiError::invalid(
                "grants.http: at most 100 hosts and 50 secrets",
            ));
        }
        delta_outbound::HostRule::parse_all(&http.hosts)
            .map_err(|e| ApiError::invalid(format!("grants.http.hosts: {e}")))?;
        if let Some(bad) = http.secrets.iter().find(|s| !crate::vault::valid_name(s)) {
            return Err(ApiError::invalid(format!(
                "grants.http.secrets: {bad:?} is not a secret name (1-64 of A-Z a-z 0-9 _ -)"
            )));
        }
    }
    for (what, list) in [
        ("models", &grants.models),
        ("templates", &grants.templates),
        ("recipients", &grants.recipients),
    ] {
        if list.len() > MAX_GRANTS || list.iter().any(|s| s.is_empty() || s.len() > MAX_GRANT_LEN) {
            return Err(ApiError::invalid(format!(
                "grants.{what}: at most {MAX_GRANTS} entries of 1-{MAX_GRANT_LEN} bytes"
            )));
        }
    }
    Ok(())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Create an agent and deploy it.
///
/// Placed on the least-loaded node that is up (smallest load / capacity,
/// then fewest agents); if that node does not answer, the next is tried.
/// Nothing is stored unless a node accepted the deployment.
#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "agents",
    request_body = CreateAgent,
    responses(
        (status = 201, description = "Deployed", body = Agent),
        (status = 403, description = "`quota_exceeded`: the tenant has as many agents as its quota allows"),
        (status = 409, description = "`name_taken`, `budget_exhausted` (the parent's budget \
                                      cannot cover `budget`)"),
        (status = 422, description = "`invalid`, `invalid_parent`, `unknown_component`, \
                                      `invalid_component` (the node refused it)"),
        (status = 503, description = "`no_nodes` (no node is up) or `node_unavailable`"),
    ),
    security(("bearer" = []))
)]
async fn create_agent(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<CreateAgent>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    let tenant = &principal.tenant_id;
    validate_name(&body.name)?;
    let grants = body.grants.unwrap_or_default();
    validate_grants(&grants)?;
    match (body.kind, &body.parent_agent_id) {
        (Kind::Main, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parent",
                "a main agent has no parent_agent_id",
            ));
        }
        (Kind::Bot, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parent",
                "a bot needs parent_agent_id: a main agent of this tenant",
            ));
        }
        (Kind::Bot, Some(parent)) => {
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM agents WHERE id = $1 AND tenant_id = $2")
                    .bind(parent)
                    .bind(tenant)
                    .fetch_optional(state.db.pool())
                    .await
                    .map_err(ApiError::internal)?;
            if kind.as_deref() != Some(Kind::Main.as_str()) {
                return Err(invalid_parent());
            }
        }
        (Kind::Main, None) => {}
    }
    if !is_sha256(&body.component) {
        return Err(ApiError::invalid(
            "component must be a sha256 (64 lowercase hex digits)",
        ));
    }
    require_component(&state, tenant, &body.component).await?;
    {
        // Before anything is deployed; checked again where the row is
        // written.
        let mut conn = state
            .db
            .pool()
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        crate::quotas::check_agents(&mut conn, &state, tenant).await?;
    }
    let budget = body.budget.unwrap_or(0);
    crate::budgets::check_creation(
        &state,
        tenant,
        &principal.user_id,
        body.kind,
        body.parent_agent_id.as_deref(),
        budget,
    )
    .await?;
    let taken: Option<String> =
        sqlx::query_scalar("SELECT id FROM agents WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(&body.name)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    if taken.is_some() {
        return Err(name_taken(&body.name));
    }

    let now = now_ms();
    let mut agent = Agent {
        id: new_id(ID_PREFIX),
        tenant_id: tenant.clone(),
        name: body.name,
        kind: body.kind,
        parent_agent_id: body.parent_agent_id,
        component: body.component,
        limits: body.limits.unwrap_or_default(),
        grants,
        paused: false,
        node_loss: body.node_loss.unwrap_or_default(),
        node_id: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    record_ids(Some(tenant), Some(&agent.id), None);
    let candidates = nodes::candidates(&state)
        .await
        .map_err(ApiError::internal)?;
    if candidates.is_empty() {
        return Err(no_nodes());
    }
    let mut placed = None;
    for node in candidates.iter().take(PLACEMENT_ATTEMPTS) {
        match deploy(&state, node, &agent).await {
            Ok(_) => {
                placed = Some(node);
                break;
            }
            Err(e) if e.is_unreachable() => {
                tracing::warn!(node = %node.id, error = %e, "placement: node did not answer");
            }
            Err(e) => return Err(e.to_api()),
        }
    }
    let Some(node) = placed else {
        return Err(crate::nodeclient::node_unavailable());
    };
    agent.node_id = Some(node.id.clone());

    if let Err(e) = insert_agent(&state, &agent, budget, &principal, &rid).await {
        // Not stored: take the deployment back (the monitor would remove
        // it later otherwise).
        if let Err(undo) = NodeClient::new(&state).delete_agent(node, &agent.id).await {
            tracing::warn!(error = %undo, "removing the deployment of an agent that was not stored");
        }
        return Err(e);
    }
    tracing::info!(agent = %agent.id, node = %node.id, "agent created");
    Ok((StatusCode::CREATED, Json(agent)).into_response())
}

/// Store a new agent with its budget account and audit row, in one
/// transaction.
async fn insert_agent(
    state: &AppState,
    agent: &Agent,
    budget: u64,
    principal: &Principal,
    rid: &RequestId,
) -> Result<(), ApiError> {
    let mut tx = state.db.pool().begin().await.map_err(ApiError::internal)?;
    crate::quotas::lock_tenant(&mut tx, &agent.tenant_id).await?;
    crate::quotas::check_agents(&mut tx, state, &agent.tenant_id).await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO agents ({AGENT_COLUMNS}, owner_user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&agent.id)
    .bind(&agent.tenant_id)
    .bind(&agent.name)
    .bind(agent.kind.as_str())
    .bind(agent.parent_agent_id.clone())
    .bind(&agent.component)
    .bind(serde_json::to_string(&agent.limits).map_err(ApiError::internal)?)
    .bind(serde_json::to_string(&agent.grants).map_err(ApiError::internal)?)
    .bind(i64::from(agent.paused))
    .bind(agent.node_loss.as_str())
    .bind(agent.node_id.clone())
    .bind(agent.created_at_ms)
    .bind(agent.updated_at_ms)
    // The user who created it: usage and budgets are per user (seed 000).
    .bind(&principal.user_id)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        let db = e.as_database_error();
        if db.is_some_and(|d| d.is_unique_violation()) {
            return Err(name_taken(&agent.name));
        }
        if db.is_some_and(|d| d.is_foreign_key_violation()) {
            return Err(invalid_parent());
        }
        return Err(ApiError::internal(e));
    }
    crate::budgets::open_account(&mut tx, &state.config, agent, &principal.user_id, budget).await?;
    audit::record_in(
        &mut tx,
        Some(&agent.tenant_id),
        Some(&principal.user_id),
        "agent_created",
        json!({ "agent_id": agent.id, "name": agent.name, "kind": agent.kind,
                "component": agent.component, "node_id": agent.node_id }),
        Some(&rid.0),
    )
    .await?;
    crate::deployments::record_in(
        &mut tx,
        agent,
        crate::deployments::Reason::Created,
        Some(&principal.user_id),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(
        "name_taken",
        format!("this tenant already has an agent named {name:?}"),
    )
}

/// The same answer for a missing parent, a bot and another tenant's agent.
fn invalid_parent() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_parent",
        "parent_agent_id is not a main agent of this tenant",
    )
}

fn no_nodes() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_nodes",
        "no node is up to run this agent",
    )
    .retry_after(std::time::Duration::from_secs(5))
}

/// List this tenant's agents, oldest first.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    params(PageQuery, AgentFilter),
    responses((status = 200, description = "A page", body = Page<Agent>)),
    security(("bearer" = []))
)]
async fn list_agents(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<AgentFilter>,
) -> Result<Json<Page<Agent>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    let kind = filter.kind.map(|k| k.as_str());
    crate::pagination::tenant_page(
        &state.db,
        crate::pagination::Listing {
            columns: AGENT_COLUMNS,
            table: "agents",
            filter: kind.map(|k| ("kind", k)),
        },
        &principal.tenant_id,
        &page,
        agent_from_row,
        |a: &Agent| (a.created_at_ms, a.id.clone()),
    )
    .await
    .map(Json)
}

/// One agent.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The agent", body = Agent),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_agent(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    record_ids(None, Some(&id), None);
    Ok(Json(load_agent(&state, &principal.tenant_id, &id).await?))
}

/// Change an agent's component, limits or grants; it is redeployed on its
/// node (which must accept the change before it is stored).
#[utoipa::path(
    patch,
    path = "/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    request_body = UpdateAgent,
    responses(
        (status = 200, description = "Redeployed", body = Agent),
        (status = 404, description = "No such agent in this tenant"),
        (status = 422, description = "`invalid`, `unknown_component`, `invalid_component`"),
        (status = 503, description = "`node_unavailable`: its node is down (retry)"),
    ),
    security(("bearer" = []))
)]
async fn update_agent(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateAgent>,
) -> Result<Json<Agent>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    // Until the row is written: see `AppState::lock_deploys`.
    let _deploying = state.lock_deploys(&id).await;
    let mut agent = load_agent(&state, &principal.tenant_id, &id).await?;
    if let Some(component) = body.component {
        if !is_sha256(&component) {
            return Err(ApiError::invalid(
                "component must be a sha256 (64 lowercase hex digits)",
            ));
        }
        require_component(&state, &principal.tenant_id, &component).await?;
        agent.component = component;
    }
    if let Some(limits) = body.limits {
        agent.limits = limits;
    }
    if let Some(grants) = body.grants {
        validate_grants(&grants)?;
        agent.grants = grants;
    }
    if let Some(node_loss) = body.node_loss {
        agent.node_loss = node_loss;
    }
    let node = hosting_node(&state, &agent).await?;
    deploy(&state, &node, &agent)
        .await
        .map_err(|e| e.to_api())?;
    agent.updated_at_ms = now_ms().max(agent.updated_at_ms + 1);
    let mut tx = state.db.pool().begin().await.map_err(ApiError::internal)?;
    let updated = sqlx::query(
        "UPDATE agents SET component = $1, limits = $2, grants = $3, node_loss = $4, \
         updated_at_ms = $5 WHERE id = $6 AND tenant_id = $7",
    )
    .bind(&agent.component)
    .bind(serde_json::to_string(&agent.limits).map_err(ApiError::internal)?)
    .bind(serde_json::to_string(&agent.grants).map_err(ApiError::internal)?)
    .bind(agent.node_loss.as_str())
    .bind(agent.updated_at_ms)
    .bind(&agent.id)
    .bind(&principal.tenant_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::not_found("agent"));
    }
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "agent_updated",
        json!({ "agent_id": agent.id, "component": agent.component,
                "limits": agent.limits, "grants": agent.grants,
                "node_loss": agent.node_loss }),
        Some(&rid.0),
    )
    .await?;
    crate::deployments::record_in(
        &mut tx,
        &agent,
        crate::deployments::Reason::Updated,
        Some(&principal.user_id),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(Json(agent))
}

/// Delete an agent: 409 `has_bots` while bots name it as parent. Its
/// unspent tokens go back to its parent's budget. Its deployment is removed from its node, which cancels its runs; if the node
/// is down, the monitor removes it when the node is back. Its runs stay
/// listed.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`has_bots`"),
    ),
    security(("bearer" = []))
)]
async fn delete_agent(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    let agent = load_agent(&state, &principal.tenant_id, &id).await?;
    // The row goes first: the monitor then sees the deployment as stale
    // and never redeploys it, whatever happens to the node call below.
    let mut tx = state.db.pool().begin().await.map_err(ApiError::internal)?;
    let deleted = sqlx::query(
        "DELETE FROM agents WHERE id = $1 AND tenant_id = $2 \
         AND NOT EXISTS (SELECT 1 FROM agents b WHERE b.parent_agent_id = $1)",
    )
    .bind(&id)
    .bind(&principal.tenant_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if deleted.rows_affected() == 0 {
        drop(tx);
        load_agent(&state, &principal.tenant_id, &id).await?;
        return Err(ApiError::conflict(
            "has_bots",
            "delete this main agent's bots first",
        ));
    }
    crate::budgets::close_account(&mut tx, &principal.tenant_id, &id).await?;
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "agent_deleted",
        json!({ "agent_id": agent.id, "name": agent.name, "node_id": agent.node_id }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    if let Some(node_id) = &agent.node_id {
        match nodes::up_node(&state, node_id).await {
            Ok(Some(node)) => match NodeClient::new(&state).delete_agent(&node, &id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(error = %e, node = %node_id, "deleting a deployment; the monitor retries")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "looking up an agent's node"),
        }
    }
    tracing::info!(agent = %id, "agent deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Pause an agent: it takes no new runs (409 `agent_paused`); queued runs
/// wait.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/pause",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Paused", body = Agent),
        (status = 404, description = "No such agent in this tenant"),
        (status = 503, description = "`node_unavailable`: its node is down (retry)"),
    ),
    security(("bearer" = []))
)]
async fn pause_agent(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    set_paused(state, principal, rid, id, true).await.map(Json)
}

/// Resume a paused agent.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/resume",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Running again", body = Agent),
        (status = 404, description = "No such agent in this tenant"),
        (status = 503, description = "`node_unavailable`: its node is down (retry)"),
    ),
    security(("bearer" = []))
)]
async fn resume_agent(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    set_paused(state, principal, rid, id, false).await.map(Json)
}

async fn set_paused(
    state: AppState,
    principal: Principal,
    rid: RequestId,
    id: String,
    paused: bool,
) -> Result<Agent, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    let mut agent = load_agent(&state, &principal.tenant_id, &id).await?;
    agent.paused = paused;
    let node = hosting_node(&state, &agent).await?;
    match NodeClient::new(&state).set_paused(&node, &id, paused).await {
        Ok(_) => {}
        // The node lost the deployment: put it back, in the new state.
        Err(e) if e.is_not_found() => {
            deploy(&state, &node, &agent)
                .await
                .map_err(|e| e.to_api())?;
        }
        Err(e) => return Err(e.to_api()),
    }
    agent.updated_at_ms = now_ms().max(agent.updated_at_ms + 1);
    let mut tx = state.db.pool().begin().await.map_err(ApiError::internal)?;
    let updated = sqlx::query(
        "UPDATE agents SET paused = $1, updated_at_ms = $2 WHERE id = $3 AND tenant_id = $4",
    )
    .bind(i64::from(paused))
    .bind(agent.updated_at_ms)
    .bind(&id)
    .bind(&principal.tenant_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::not_found("agent"));
    }
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        if paused {
            "agent_paused"
        } else {
            "agent_resumed"
        },
        json!({ "agent_id": agent.id }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_grants_and_digests_are_validated() {
        assert!(validate_name("main-1 ü").is_ok());
        for bad in ["", " x", "x ", "a\nb", &"x".repeat(MAX_NAME + 1)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"AB".repeat(32)));
        assert!(!is_sha256("../../etc/passwd"));
        let grants = AgentGrants {
            models: vec![String::new()],
            ..AgentGrants::default()
        };
        assert!(validate_grants(&grants).is_err());
        // The grants serialise as the node's `Grants`.
        let ours = AgentGrants {
            models: vec!["m".into()],
            channels: vec![Channel::Email, Channel::Sms],
            templates: vec![],
            recipients: vec!["*@example.com".into()],
            kv: true,
            http: Some(HttpGrant {
                hosts: vec!["*.example.com".into()],
                secrets: vec!["TOKEN".into()],
            }),
        };
        let theirs: delta_node_api::Grants =
            serde_json::from_value(serde_json::to_value(&ours).expect("json"))
                .expect("node grants");
        assert_eq!(theirs.channels.len(), 2);
        assert!(theirs.kv);
        assert_eq!(
            theirs.http.map(|h| h.secrets),
            Some(vec!["TOKEN".to_owned()])
        );
        let bad = AgentGrants {
            http: Some(HttpGrant {
                hosts: vec!["example.com/path".into()],
                secrets: vec![],
            }),
            ..AgentGrants::default()
        };
        assert!(validate_grants(&bad).is_err());
        let limits: delta_node_api::AgentLimits = serde_json::from_value(
            serde_json::to_value(Limits {
                fuel: Some(5),
                ..Limits::default()
            })
            .expect("json"),
        )
        .expect("node limits");
        assert_eq!(limits.fuel, Some(5));
    }
}
