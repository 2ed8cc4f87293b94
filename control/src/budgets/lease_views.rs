//! Leases as users and operators see them: which node holds what, and which
//! expired leases are settled provisionally (their node never reported; the
//! whole grant counts as spent until it does).

use axum::Json;
use axum::extract::{Path, Query, State};
use delta_http::{ApiError, record_ids};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::state::AppState;

use super::model::to_u64;

/// Most leases one listing answers (newest first).
const MAX_LEASES: i64 = 200;

/// The routes of this module (merged into [`super::routes`]).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agent_leases))
        .routes(routes!(list_tenant_leases))
}

/// A budget lease.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// `lse_...`.
    pub lease_id: String,
    /// The agent whose budget it is a slice of.
    pub agent_id: String,
    /// The node holding it.
    pub node_id: String,
    /// Tokens granted.
    pub granted: u64,
    /// What the node reported spent (absent until it returns the lease).
    pub spent: Option<u64>,
    /// `active`, `returned` or `expired`.
    pub status: String,
    /// Expired without its node reporting: its whole grant
    /// (`provisional_spent`) counts as spent until the node reports, which
    /// corrects it once. A node that never comes back leaves it so.
    pub provisional: bool,
    /// What the expiry counted as spent (0 unless it expired unreturned).
    pub provisional_spent: u64,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms.
    pub expires_at_ms: i64,
    /// Unix ms of the node's return (absent until then).
    pub returned_at_ms: Option<i64>,
}

/// A list of leases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseList {
    /// Newest first, at most 200.
    pub items: Vec<LeaseView>,
}

/// `?provisional=&agent_id=` of a lease listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseFilter {
    /// Only leases settled provisionally (expired, never reported).
    #[serde(default)]
    pub provisional: bool,
    /// Only this agent's (tenant-wide listing only).
    pub agent_id: Option<String>,
}

fn lease_from_row(r: &AnyRow) -> Result<LeaseView, sqlx::Error> {
    let provisional_spent: i64 = r.try_get("provisional_spent")?;
    let returned_at_ms: Option<i64> = r.try_get("returned_at_ms")?;
    Ok(LeaseView {
        lease_id: r.try_get("id")?,
        agent_id: r.try_get("agent_id")?,
        node_id: r.try_get("node_id")?,
        granted: to_u64(r.try_get("granted")?),
        spent: r.try_get::<Option<i64>, _>("spent")?.map(to_u64),
        status: r.try_get("status")?,
        provisional: provisional_spent > 0 && returned_at_ms.is_none(),
        provisional_spent: to_u64(provisional_spent),
        created_at_ms: r.try_get("created_at_ms")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        returned_at_ms,
    })
}

/// Tenant `tenant`'s leases (of `agent` if given), newest first.
pub async fn list_leases(
    state: &AppState,
    tenant: &str,
    agent: Option<&str>,
    provisional: bool,
) -> Result<Vec<LeaseView>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT id, agent_id, node_id, granted, spent, status, provisional_spent, \
         created_at_ms, expires_at_ms, returned_at_ms FROM budget_leases \
         WHERE tenant_id = $1 AND ($2 = '' OR agent_id = $2)",
    );
    if provisional {
        sql.push_str(" AND provisional_spent > 0 AND returned_at_ms IS NULL");
    }
    sql.push_str(" ORDER BY created_at_ms DESC, id DESC LIMIT $3");
    sqlx::query(&sql)
        .bind(tenant)
        .bind(agent.unwrap_or_default())
        .bind(MAX_LEASES)
        .fetch_all(state.db.pool())
        .await?
        .iter()
        .map(lease_from_row)
        .collect()
}

/// An agent's budget leases (`?provisional=true`: only those settled
/// provisionally, whose node never reported).
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/budget/leases",
    tag = "budgets",
    params(("id" = String, Path, description = "Agent id"), LeaseFilter),
    responses(
        (status = 200, description = "Its leases, newest first", body = LeaseList),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_agent_leases(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(filter): Query<LeaseFilter>,
) -> Result<Json<LeaseList>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    let items = list_leases(
        &state,
        &principal.tenant_id,
        Some(&agent.id),
        filter.provisional,
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(LeaseList { items }))
}

/// The tenant's budget leases, for admins and operators
/// (`?provisional=true`: those whose node never reported).
#[utoipa::path(
    get,
    path = "/v1/budget/leases",
    tag = "budgets",
    params(LeaseFilter),
    responses(
        (status = 200, description = "Leases, newest first", body = LeaseList),
        (status = 403, description = "Not an admin"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_tenant_leases(
    State(state): State<AppState>,
    principal: Principal,
    Query(filter): Query<LeaseFilter>,
) -> Result<Json<LeaseList>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("budgets:read")?;
    let items = list_leases(
        &state,
        &principal.tenant_id,
        filter.agent_id.as_deref(),
        filter.provisional,
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(LeaseList { items }))
}
