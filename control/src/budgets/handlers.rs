//! The user-facing HTTP API of budgets and token requests.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::Kind;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

use super::accounts::*;
use super::model::*;
use super::requests::*;
use super::store::*;
use super::views::*;

// ---- routes ----------------------------------------------------------------

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_budget))
        .routes(routes!(get_user_budget, set_user_tier))
        .routes(routes!(get_agent_budget, set_agent_budget))
        .routes(routes!(create_token_request))
        .routes(routes!(list_token_requests))
        .routes(routes!(get_token_request))
        .routes(routes!(approve_token_request))
        .routes(routes!(deny_token_request))
        .merge(super::node_api::routes())
        .merge(super::lease_views::routes())
}

// ---- user API --------------------------------------------------------------

/// The caller's budget: tier, monthly allocation, pool and their main
/// agents' balances (created on the default tier on first use).
#[utoipa::path(
    get,
    path = "/v1/budget",
    tag = "budgets",
    responses((status = 200, description = "The caller's budget", body = UserBudget)),
    security(("bearer" = []))
)]
pub(super) async fn my_budget(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<UserBudget>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    user_budget_ensured(&state, &principal.tenant_id, &principal.user_id)
        .await
        .map(Json)
}

/// A member's budget (admin).
#[utoipa::path(
    get,
    path = "/v1/budget/users/{user_id}",
    tag = "budgets",
    params(("user_id" = String, Path, description = "A member of the tenant")),
    responses(
        (status = 200, description = "Their budget", body = UserBudget),
        (status = 404, description = "Not a member of this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_user_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Json<UserBudget>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("budgets:read")?;
    require_member(&state, &principal.tenant_id, &user_id).await?;
    user_budget_ensured(&state, &principal.tenant_id, &user_id)
        .await
        .map(Json)
}

/// Body of `PUT /v1/budget/users/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTier {
    /// A tier of the configuration's `[tiers]`.
    pub tier: String,
    /// The tenant whose account of the user changes (default: the
    /// operator's current tenant).
    pub tenant_id: Option<String>,
}

/// Change a user's tier in a tenant (platform operators only: a tenant
/// admin could otherwise grant themselves any allocation): the pool grows
/// or shrinks by the difference; refused (409 `below_allocated`) below
/// what is allocated.
#[utoipa::path(
    put,
    path = "/v1/budget/users/{user_id}",
    tag = "budgets",
    params(("user_id" = String, Path, description = "A member of the tenant")),
    request_body = SetTier,
    responses(
        (status = 200, description = "Changed", body = UserBudget),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "Not a member of that tenant"),
        (status = 409, description = "`below_allocated`"),
        (status = 422, description = "`invalid`: not a tier"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn set_user_tier(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<SetTier>,
) -> Result<Json<UserBudget>, ApiError> {
    principal.require_operator()?;
    principal.require_scope("budgets:write")?;
    let tenant = body.tenant_id.as_deref().unwrap_or(&principal.tenant_id);
    require_member(&state, tenant, &user_id).await?;
    let allocation = tier_allocation(&state.config, &body.tier).ok_or_else(|| {
        let known: Vec<&str> = state.config.tiers.keys().map(String::as_str).collect();
        ApiError::invalid(format!("unknown tier; the tiers are {}", known.join(", ")))
    })?;
    let allocation = to_i64(allocation, "the tier's allocation")?;
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        ensure_user_in(w.conn(), &state.config, tenant, &user_id, now).await?;
        let u = lock_user(w.conn(), tenant, &user_id, now)
            .await?
            .ok_or(BudgetError::NotFound("user"))?;
        if allocation < u.carved {
            return Err(BudgetError::BelowAllocated {
                allocation: to_u64(allocation),
                allocated: to_u64(u.carved),
            });
        }
        sqlx::query(
            "UPDATE budget_users SET tier = $3, monthly_allocation = $4, updated_at_ms = $5 \
             WHERE tenant_id = $1 AND user_id = $2 AND carved <= $4",
        )
        .bind(tenant)
        .bind(&user_id)
        .bind(&body.tier)
        .bind(allocation)
        .bind(now)
        .execute(w.conn())
        .await?;
        insert_entry(
            w.conn(),
            Entry {
                tenant,
                user: &user_id,
                kind: "tier",
                amount: allocation,
                d_monthly: allocation - u.monthly_allocation,
                note: Some(&body.tier),
                period: &u.period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
        audit::record_in(
            w.conn(),
            Some(tenant),
            Some(&principal.user_id),
            "budget_tier_changed",
            json!({ "user_id": user_id, "from": u.tier, "to": body.tier,
                    "monthly_allocation": allocation }),
            Some(&rid.0),
        )
        .await
        .map_err(|_| BudgetError::Internal("writing the audit row failed"))
    }
    .await;
    w.finish(result).await?;
    user_budget(&state.db, tenant, &user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("budget user vanished"))
        .map(Json)
}

/// An agent's budget account.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/budget",
    tag = "budgets",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Its account", body = AgentBudget),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_agent_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AgentBudget>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    agent_budget_ensured(&state, &agent).await.map(Json)
}

/// Body of `PUT /v1/agents/{id}/budget`; what is absent is unchanged.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAgentBudget {
    /// The agent's allocation (and per-period grant): the difference moves
    /// from or to its parent (the user's pool, or the bot's main agent).
    pub allocated: Option<u64>,
    /// A main agent's: its bots' requests up to this are approved at once.
    pub auto_approve_limit: Option<u64>,
    /// A main agent's: its bots may ask for at most this much at a time.
    pub max_request: Option<u64>,
}

/// Change an agent's allocation or a main agent's request limits.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/budget",
    tag = "budgets",
    params(("id" = String, Path, description = "Agent id")),
    request_body = SetAgentBudget,
    responses(
        (status = 200, description = "Changed", body = AgentBudget),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`budget_exhausted`: the parent cannot cover the increase, \
                                      or the allocation would go below spent + leased"),
        (status = 422, description = "`invalid`: limits on a bot, or a value too large"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn set_agent_budget(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetAgentBudget>,
) -> Result<Json<AgentBudget>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("budgets:write")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    let limits_given = body.auto_approve_limit.is_some() || body.max_request.is_some();
    if agent.kind == Kind::Bot && limits_given {
        return Err(ApiError::invalid(
            "auto_approve_limit and max_request belong to main agents: they bound their bots' requests",
        ));
    }
    let target = body.allocated.map(|v| to_i64(v, "allocated")).transpose()?;
    let auto = body
        .auto_approve_limit
        .map(|v| to_i64(v, "auto_approve_limit"))
        .transpose()?;
    let max = body
        .max_request
        .map(|v| to_i64(v, "max_request"))
        .transpose()?;
    let user = {
        let mut conn = state
            .db
            .pool()
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        budget_user_of(&mut conn, &agent.id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(BudgetError::NotFound("budget account"))?
    };
    let tenant = &principal.tenant_id;
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        ensure_user_in(w.conn(), &state.config, tenant, &user, now).await?;
        lock_user(w.conn(), tenant, &user, now).await?;
        let acct = ensure_account_in(w.conn(), &agent.id, &user, now).await?;
        if let Some(t) = target {
            set_allocation_in(w.conn(), &acct, t, now).await?;
        }
        if limits_given {
            sqlx::query(
                "UPDATE budget_accounts SET auto_approve_limit = $2, max_request = $3, \
                 updated_at_ms = $4 WHERE agent_id = $1",
            )
            .bind(&agent.id)
            .bind(auto.unwrap_or(acct.auto_approve_limit))
            .bind(max.unwrap_or(acct.max_request))
            .bind(now)
            .execute(w.conn())
            .await?;
        }
        audit::record_in(
            w.conn(),
            Some(tenant),
            Some(&principal.user_id),
            "agent_budget_changed",
            json!({ "agent_id": agent.id, "allocated": body.allocated,
                    "auto_approve_limit": body.auto_approve_limit,
                    "max_request": body.max_request }),
            Some(&rid.0),
        )
        .await
        .map_err(|_| BudgetError::Internal("writing the audit row failed"))?;
        account_in(w.conn(), &agent.id)
            .await?
            .ok_or(BudgetError::NotFound("budget account"))
    }
    .await;
    Ok(Json(w.finish(result).await?.view()))
}

/// Body of a token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Tokens asked for (1 to the main agent's `max_request`).
    pub amount: u64,
    /// Why (at most 1,000 characters; no control characters but newlines).
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$")]
    pub reason: String,
}

/// A bot asks its main agent for tokens (as the guest's `budget.request`
/// does): approved at once up to the main agent's `auto_approve_limit` when
/// it can cover it, otherwise pending. Needs an admin or the owner of the
/// main agent.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/token-requests",
    tag = "budgets",
    params(("id" = String, Path, description = "The bot's id")),
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Made (approved or pending)", body = TokenRequest),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`no_parent`: a main agent asked"),
        (status = 422, description = "`invalid_amount` (details.limit), `invalid`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NewTokenRequest>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:write")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    require_decider(&state, &principal, agent.parent_agent_id.as_deref()).await?;
    let by = Requester {
        tenant: Some(&principal.tenant_id),
        user: Some(&principal.user_id),
        request_id: Some(&rid.0),
    };
    let made = request_tokens(&state.db, by, &id, body.amount, &body.reason, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// Filters of `GET /v1/token-requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// `pending`, `approved`, `denied` or `expired`.
    #[param(pattern = "^(pending|approved|denied|expired)$")]
    pub status: Option<String>,
    /// Requests of this bot, or to this main agent.
    pub agent_id: Option<String>,
}

/// This tenant's token requests, oldest first.
#[utoipa::path(
    get,
    path = "/v1/token-requests",
    tag = "budgets",
    params(PageQuery, RequestFilter),
    responses(
        (status = 200, description = "A page", body = Page<TokenRequest>),
        (status = 422, description = "`invalid`: an unknown status"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_token_requests(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<RequestFilter>,
) -> Result<Json<Page<TokenRequest>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    if let Some(s) = &filter.status
        && !["pending", "approved", "denied", "expired"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "status must be pending, approved, denied or expired",
        ));
    }
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    // Clauses are constants; values are bound in order.
    let mut sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM token_requests \
         WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3)"
    );
    let mut next = 5;
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = ${next}"));
        next += 1;
    }
    if filter.agent_id.is_some() {
        sql.push_str(&format!(
            " AND (bot_agent_id = ${next} OR parent_agent_id = ${next})"
        ));
    }
    sql.push_str(" ORDER BY created_at_ms, id LIMIT $4");
    let mut query = sqlx::query(&sql)
        .bind(&principal.tenant_id)
        .bind(after_t)
        .bind(after_id)
        .bind(i64::from(limit) + 1);
    if let Some(s) = &filter.status {
        query = query.bind(s);
    }
    if let Some(a) = &filter.agent_id {
        query = query.bind(a);
    }
    let items = query
        .fetch_all(state.db.pool())
        .await
        .map_err(ApiError::internal)?
        .iter()
        .map(request_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |r| {
        (r.created_at_ms, r.id.clone())
    })))
}

/// One token request.
#[utoipa::path(
    get,
    path = "/v1/token-requests/{id}",
    tag = "budgets",
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request", body = TokenRequest),
        (status = 404, description = "No such request in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenRequest>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    get_request(&state.db, Some(&principal.tenant_id), &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("token request"))
        .map(Json)
}

/// Approve a pending request: the tokens move from the main agent to the
/// bot (409 `budget_exhausted` if it can no longer cover them; the request
/// stays pending). Needs an admin or the main agent's owner.
#[utoipa::path(
    post,
    path = "/v1/token-requests/{id}/approve",
    tag = "budgets",
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Approved", body = TokenRequest),
        (status = 404, description = "No such request in this tenant"),
        (status = 409, description = "`not_pending`, `budget_exhausted`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn approve_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<TokenRequest>, ApiError> {
    decide(&state, &principal, &rid, &id, true).await.map(Json)
}

/// Deny a pending request. Needs an admin or the main agent's owner.
#[utoipa::path(
    post,
    path = "/v1/token-requests/{id}/deny",
    tag = "budgets",
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Denied", body = TokenRequest),
        (status = 404, description = "No such request in this tenant"),
        (status = 409, description = "`not_pending`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn deny_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<TokenRequest>, ApiError> {
    decide(&state, &principal, &rid, &id, false).await.map(Json)
}

pub(super) async fn decide(
    state: &AppState,
    principal: &Principal,
    rid: &RequestId,
    id: &str,
    approve: bool,
) -> Result<TokenRequest, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:write")?;
    let req = get_request(&state.db, Some(&principal.tenant_id), id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("token request"))?;
    require_decider(state, principal, Some(&req.parent_agent_id)).await?;
    Ok(decide_request(
        &state.db,
        &principal.tenant_id,
        id,
        approve,
        &principal.user_id,
        Some(&rid.0),
        now_ms(),
    )
    .await?)
}
