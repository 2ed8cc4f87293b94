//! The endpoints nodes call: leases, balances and token requests on a guest's behalf.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{now_ms, utc_month};
use crate::nodeauth::{NodeAuth, require_agent_here, require_self};
use crate::state::AppState;

use super::accounts::*;
use super::leases::*;
use super::model::*;
use super::requests::*;
use super::store::*;

/// The node API's routes (merged into [`super::routes`]).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(node_grant_lease, node_unreturned_leases))
        .routes(routes!(node_return_lease))
        .routes(routes!(node_budget))
        .routes(routes!(node_create_token_request))
        .routes(routes!(node_get_token_request))
}

pub(super) fn check_node_id(node_id: &str) -> Result<(), ApiError> {
    if node_id.is_empty() || node_id.len() > MAX_NODE_ID || node_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "node_id must be 1-{MAX_NODE_ID} bytes without control characters"
        )));
    }
    Ok(())
}

/// Body of `POST /v1/nodes/leases`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseAsk {
    /// The calling node.
    pub node_id: String,
    /// The agent whose budget to lease from.
    pub agent_id: String,
    /// Tokens wanted.
    pub amount: u64,
    /// Fewest tokens worth having (at least 1).
    #[serde(default)]
    pub min_amount: u64,
}

/// A node leases part of an agent's budget: granted = min(amount,
/// available) if that is at least min_amount.
#[utoipa::path(
    post,
    path = "/v1/nodes/leases",
    tag = "nodes",
    request_body = LeaseAsk,
    responses(
        (status = 201, description = "Granted", body = Lease),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`, `agent_not_here`"),
        (status = 404, description = "Unknown agent"),
        (status = 409, description = "`budget_exhausted` (details.available)"),
        (status = 422, description = "`invalid`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn node_grant_lease(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(ask): JsonBody<LeaseAsk>,
) -> Result<Response, ApiError> {
    check_node_id(&ask.node_id)?;
    record_ids(None, Some(&ask.agent_id), None);
    require_agent_here(&state, &node, Some(&ask.node_id), &ask.agent_id).await?;
    let ttl_ms =
        i64::try_from(state.config.lease_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let lease = grant_lease(
        &state.db,
        &ask.node_id,
        &ask.agent_id,
        ask.amount,
        ask.min_amount,
        ttl_ms,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(lease)).into_response())
}

/// `?node_id=` of `GET /v1/nodes/leases`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodeLeasesQuery {
    /// The calling node.
    pub node_id: String,
}

/// A lease the calling node has not returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnreturnedLease {
    /// `lse_...`.
    pub lease_id: String,
    /// Its agent.
    pub agent_id: String,
}

/// `GET /v1/nodes/leases`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnreturnedLeases {
    /// Oldest first, at most 1,000.
    pub items: Vec<UnreturnedLease>,
}

/// The calling node's leases not returned yet (active, or expired and
/// settled provisionally). A node starting after a crash returns those its
/// spend journal does not know with nothing spent: it journals every lease
/// before spending on it, so a lease granted while it died has no spend.
#[utoipa::path(
    get,
    path = "/v1/nodes/leases",
    tag = "nodes",
    params(NodeLeasesQuery),
    responses(
        (status = 200, description = "Its unreturned leases", body = UnreturnedLeases),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn node_unreturned_leases(
    State(state): State<AppState>,
    node: NodeAuth,
    Query(q): Query<NodeLeasesQuery>,
) -> Result<Json<UnreturnedLeases>, ApiError> {
    check_node_id(&q.node_id)?;
    require_self(&node, &q.node_id)?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, agent_id FROM budget_leases WHERE node_id = $1 AND returned_at_ms IS NULL \
         ORDER BY created_at_ms, id LIMIT 1000",
    )
    .bind(&node.node_id)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(UnreturnedLeases {
        items: rows
            .into_iter()
            .map(|(lease_id, agent_id)| UnreturnedLease { lease_id, agent_id })
            .collect(),
    }))
}

/// Body of `POST /v1/nodes/leases/{lease_id}/return`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseGiveBack {
    /// The calling node.
    pub node_id: String,
    /// Tokens spent against the lease (may exceed what it granted).
    pub spent: u64,
}

/// A node returns a lease with what it spent. Idempotent: a second return
/// answers the first one's result.
#[utoipa::path(
    post,
    path = "/v1/nodes/leases/{lease_id}/return",
    tag = "nodes",
    params(("lease_id" = String, Path, description = "Lease id")),
    request_body = LeaseGiveBack,
    responses(
        (status = 200, description = "Returned", body = LeaseReturn),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`, `agent_not_here`"),
        (status = 404, description = "Unknown lease"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn node_return_lease(
    State(state): State<AppState>,
    node: NodeAuth,
    Path(lease_id): Path<String>,
    JsonBody(back): JsonBody<LeaseGiveBack>,
) -> Result<Json<LeaseReturn>, ApiError> {
    check_node_id(&back.node_id)?;
    require_self(&node, &back.node_id)?;
    // Only the node that took a lease returns it: another node returning it
    // with `spent: 0` would refund tokens the holder is still spending. A
    // lease's node never changes, so checking before the return is enough.
    let holder: Option<(String,)> =
        sqlx::query_as("SELECT node_id FROM budget_leases WHERE id = $1")
            .bind(&lease_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    if holder.is_some_and(|(holder,)| holder != node.node_id) {
        return Err(ApiError::not_found("lease"));
    }
    Ok(Json(
        return_lease(&state.db, &lease_id, back.spent, now_ms()).await?,
    ))
}

/// An agent's balance, for a node.
#[utoipa::path(
    get,
    path = "/v1/nodes/budgets/{agent_id}",
    tag = "nodes",
    params(("agent_id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Its balance", body = NodeBudget),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`, `agent_not_here`"),
        (status = 404, description = "Unknown agent"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn node_budget(
    State(state): State<AppState>,
    node: NodeAuth,
    Path(agent_id): Path<String>,
) -> Result<Json<NodeBudget>, ApiError> {
    record_ids(None, Some(&agent_id), None);
    require_agent_here(&state, &node, None, &agent_id).await?;
    let acct = load_account(&state.db, &agent_id)
        .await
        .map_err(ApiError::internal)?;
    let budget = match acct {
        Some(a) => NodeBudget {
            allocated: to_u64(a.allocated),
            spent: to_u64(a.spent),
            reserved: to_u64(a.leased),
            available: to_u64(a.available()),
            period: a.period,
        },
        None => {
            // An agent from before budgets existed has none.
            let mut conn = state
                .db
                .pool()
                .acquire()
                .await
                .map_err(ApiError::internal)?;
            if agent_facts(&mut conn, &agent_id)
                .await
                .map_err(ApiError::internal)?
                .is_none()
            {
                return Err(ApiError::not_found("agent"));
            }
            NodeBudget {
                allocated: 0,
                spent: 0,
                reserved: 0,
                available: 0,
                period: utc_month(now_ms()),
            }
        }
    };
    Ok(Json(budget))
}

/// Body of `POST /v1/nodes/token-requests`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeTokenAsk {
    /// The calling node.
    pub node_id: String,
    /// The bot asking.
    pub agent_id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// A token request as a guest sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeTokenRequest {
    /// `tkr_...`.
    pub id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
}

impl From<TokenRequest> for NodeTokenRequest {
    fn from(r: TokenRequest) -> Self {
        Self {
            id: r.id,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
        }
    }
}

/// A bot's token request from its guest (`budget.request`).
#[utoipa::path(
    post,
    path = "/v1/nodes/token-requests",
    tag = "nodes",
    request_body = NodeTokenAsk,
    responses(
        (status = 201, description = "Made (approved or pending)", body = NodeTokenRequest),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`, `agent_not_here`"),
        (status = 404, description = "Unknown agent"),
        (status = 409, description = "`no_parent`: a main agent asked"),
        (status = 422, description = "`invalid_amount` (details.limit), `invalid`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn node_create_token_request(
    State(state): State<AppState>,
    node: NodeAuth,
    Extension(rid): Extension<RequestId>,
    JsonBody(ask): JsonBody<NodeTokenAsk>,
) -> Result<Response, ApiError> {
    check_node_id(&ask.node_id)?;
    record_ids(None, Some(&ask.agent_id), None);
    require_agent_here(&state, &node, Some(&ask.node_id), &ask.agent_id).await?;
    let by = Requester {
        tenant: None,
        user: None,
        request_id: Some(&rid.0),
    };
    let made = request_tokens(
        &state.db,
        by,
        &ask.agent_id,
        ask.amount,
        &ask.reason,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(NodeTokenRequest::from(made))).into_response())
}

/// `?agent_id=` of a node's poll.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// The bot that made the request.
    pub agent_id: String,
}

/// A guest polls its request.
#[utoipa::path(
    get,
    path = "/v1/nodes/token-requests/{id}",
    tag = "nodes",
    params(("id" = String, Path, description = "Request id"), PollQuery),
    responses(
        (status = 200, description = "The request", body = NodeTokenRequest),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`wrong_node`, `agent_not_here`"),
        (status = 404, description = "Not that agent's request"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn node_get_token_request(
    State(state): State<AppState>,
    node: NodeAuth,
    Path(id): Path<String>,
    Query(poll): Query<PollQuery>,
) -> Result<Json<NodeTokenRequest>, ApiError> {
    record_ids(None, Some(&poll.agent_id), None);
    require_agent_here(&state, &node, None, &poll.agent_id).await?;
    get_request(&state.db, None, &id)
        .await
        .map_err(ApiError::internal)?
        .filter(|r| r.agent_id == poll.agent_id)
        .map(|r| Json(NodeTokenRequest::from(r)))
        .ok_or_else(|| ApiError::not_found("token request"))
}
