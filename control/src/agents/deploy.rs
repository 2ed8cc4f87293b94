//! Making a node run an agent as its row says: the spec, the pause state,
//! and the component pushed when the node lacks it.

use axum::body::Bytes;
use axum::http::StatusCode;
use delta_http::ApiError;
use delta_node_api::AgentRecord;

use super::Agent;
use super::store::{AGENT_COLUMNS, agent_from_row};
use crate::app::AppState;
use crate::components::{UNCHECKED, component_path};
use crate::nodeclient::{DeploySpec, NodeCallError, NodeClient};
use crate::nodes::{self, Target};

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
            other => ApiError::internal(other.to_string()),
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
