//! An agent's deploy history: every deployment (created, updated with a
//! new component, limits or grants, moved to another node by the monitor)
//! with what was deployed where, by whom, in which request.
//!
//! Rows of a change made by a request are written in that request's
//! transaction ([`record_in`]), so the history has a row exactly when the
//! agent changed; a move by the monitor is recorded right after it, best
//! effort, as its audit row is ([`record`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::Agent;
use crate::auth::{Principal, Role};
use crate::db::{Db, new_id, now_ms};
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// Why a deployment happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The agent was created.
    Created,
    /// Its component, limits or grants changed.
    Updated,
    /// Its node was lost and the monitor placed it on another.
    Moved,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Moved => "moved",
        }
    }
}

/// One deployment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deployment {
    /// `dep_...`.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// sha256 of the component deployed.
    pub component: String,
    /// The node it went to (none: no node was up to take it).
    pub node_id: Option<String>,
    /// The limits it was deployed with.
    #[schema(value_type = Object)]
    pub limits: Value,
    /// `created`, `updated` or `moved`.
    pub reason: Reason,
    /// Who did it (none: the monitor).
    pub user_id: Option<String>,
    /// The request that did it.
    pub request_id: Option<String>,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

async fn insert<'e>(
    executor: impl sqlx::AnyExecutor<'e>,
    agent: &Agent,
    reason: Reason,
    user_id: Option<&str>,
    request_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agent_deployments (id, tenant_id, agent_id, component, node_id, limits, \
         reason, user_id, request_id, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new_id("dep"))
    .bind(&agent.tenant_id)
    .bind(&agent.id)
    .bind(&agent.component)
    .bind(agent.node_id.clone())
    .bind(serde_json::to_string(&agent.limits).unwrap_or_else(|_| "{}".to_owned()))
    .bind(reason.as_str())
    .bind(user_id)
    .bind(request_id)
    .bind(now_ms())
    .execute(executor)
    .await?;
    Ok(())
}

/// Record `agent` as deployed now, inside the caller's transaction.
pub async fn record_in(
    conn: &mut sqlx::AnyConnection,
    agent: &Agent,
    reason: Reason,
    user_id: Option<&str>,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    insert(conn, agent, reason, user_id, request_id)
        .await
        .map_err(ApiError::internal)
}

/// The same, best effort (a failure is logged): for the monitor's moves,
/// which happened whether or not their trace is written.
pub async fn record(db: &Db, agent: &Agent, reason: Reason) {
    if let Err(e) = insert(db.pool(), agent, reason, None, None).await {
        tracing::error!(error = %e, agent = %agent.id, "writing a deployment row");
    }
}

/// Routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_deployments))
}

/// An agent's deployments, **newest first** (the cursor walks back in
/// time).
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/deployments",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id"), PageQuery),
    responses(
        (status = 200, description = "One page, newest first", body = Page<Deployment>),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn list_deployments(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Deployment>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    // 404 for another tenant's agent (and for none), alike.
    crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    let (before_t, before_id) = page
        .cursor()?
        .map(|c| (c.t, c.id))
        .unwrap_or((i64::MAX, String::new()));
    let limit = page.limit();
    let rows = sqlx::query(
        "SELECT id, agent_id, component, node_id, limits, reason, user_id, request_id, at_ms \
         FROM agent_deployments WHERE tenant_id = $1 AND agent_id = $2 AND (at_ms, id) < ($3, $4) \
         ORDER BY at_ms DESC, id DESC LIMIT $5",
    )
    .bind(&principal.tenant_id)
    .bind(&id)
    .bind(before_t)
    .bind(before_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(|r| {
            let limits: String = r.try_get("limits")?;
            let reason: String = r.try_get("reason")?;
            Ok(Deployment {
                id: r.try_get("id")?,
                agent_id: r.try_get("agent_id")?,
                component: r.try_get("component")?,
                node_id: r.try_get("node_id")?,
                limits: serde_json::from_str(&limits).unwrap_or(Value::String(limits)),
                reason: match reason.as_str() {
                    "created" => Reason::Created,
                    "moved" => Reason::Moved,
                    _ => Reason::Updated,
                },
                user_id: r.try_get("user_id")?,
                request_id: r.try_get("request_id")?,
                at_ms: r.try_get("at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |d| {
        (d.at_ms, d.id.clone())
    })))
}
