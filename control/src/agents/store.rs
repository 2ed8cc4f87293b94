//! Agents' rows: reading, decoding and the insert of a new agent with its
//! budget account and audit row.

use axum::http::StatusCode;
use delta_http::{ApiError, RequestId};
use serde_json::json;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Agent, Kind, NodeLoss};
use crate::app::AppState;
use crate::audit;
use crate::auth::Principal;

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

/// Store a new agent with its budget account and audit row, in one
/// transaction.
pub(super) async fn insert_agent(
    state: &AppState,
    agent: &Agent,
    budget: u64,
    principal: &Principal,
    rid: &RequestId,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
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

pub(super) fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(
        "name_taken",
        format!("this tenant already has an agent named {name:?}"),
    )
}

/// The same answer for a missing parent, a bot and another tenant's agent.
pub(super) fn invalid_parent() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_parent",
        "parent_agent_id is not a main agent of this tenant",
    )
}
