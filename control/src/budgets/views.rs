//! Read views of budgets, and the authorization helpers the handlers share.

use delta_http::ApiError;

use crate::agents::Agent;
use crate::auth::{Principal, Role};
use crate::db::{Db, now_ms};
use crate::state::AppState;

use super::accounts::*;
use super::model::*;
use super::store::*;

/// `user`'s budget in `tenant`, if it has one.
pub async fn user_budget(
    db: &Db,
    tenant: &str,
    user: &str,
) -> Result<Option<UserBudget>, sqlx::Error> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM budget_users WHERE tenant_id = $1 AND user_id = $2"
    ))
    .bind(tenant)
    .bind(user)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let u = user_from_row(&row)?;
    let main_agents = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM budget_accounts \
         WHERE tenant_id = $1 AND user_id = $2 AND kind = 'main' ORDER BY created_at_ms, agent_id"
    ))
    .bind(tenant)
    .bind(user)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| account_from_row(r).map(|a| a.view()))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(UserBudget {
        user_id: user.to_owned(),
        tier: u.tier,
        monthly_allocation: to_u64(u.monthly_allocation),
        allocated: to_u64(u.carved),
        pool: to_u64(u.monthly_allocation - u.carved),
        retired: to_u64(u.retired),
        period: u.period,
        main_agents,
    }))
}

/// `agent_id`'s budget account, if it has one.
pub async fn agent_budget(db: &Db, agent_id: &str) -> Result<Option<AgentBudget>, sqlx::Error> {
    Ok(load_account(db, agent_id).await?.map(|a| a.view()))
}

/// `user`'s budget, created on the default tier if they have none yet.
pub(super) async fn user_budget_ensured(
    state: &AppState,
    tenant: &str,
    user: &str,
) -> Result<UserBudget, ApiError> {
    if let Some(b) = user_budget(&state.db, tenant, user)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(b);
    }
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = ensure_user_in(w.conn(), &state.config, tenant, user, now_ms()).await;
    w.finish(result).await?;
    user_budget(&state.db, tenant, user)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("budget user vanished"))
}

/// `agent`'s account, opened empty if it has none (an agent from before
/// budgets existed).
pub(super) async fn agent_budget_ensured(
    state: &AppState,
    agent: &Agent,
) -> Result<AgentBudget, ApiError> {
    if let Some(b) = agent_budget(&state.db, &agent.id)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(b);
    }
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
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        ensure_user_in(w.conn(), &state.config, &agent.tenant_id, &user, now).await?;
        lock_user(w.conn(), &agent.tenant_id, &user, now).await?;
        ensure_account_in(w.conn(), &agent.id, &user, now).await
    }
    .await;
    Ok(w.finish(result).await?.view())
}

/// The user who owns `agent_id` in `tenant` (`owner_user_id`).
pub(super) async fn owner_of(
    db: &Db,
    tenant: &str,
    agent_id: &str,
) -> Result<Option<String>, ApiError> {
    let owner: Option<Option<String>> =
        sqlx::query_scalar("SELECT owner_user_id FROM agents WHERE id = $1 AND tenant_id = $2")
            .bind(agent_id)
            .bind(tenant)
            .fetch_optional(db.pool())
            .await
            .map_err(ApiError::internal)?;
    Ok(owner.flatten())
}

/// Deciding a bot's requests (and asking on its behalf) needs an admin or
/// the owner of the bot's main agent.
pub(super) async fn require_decider(
    state: &AppState,
    principal: &Principal,
    parent: Option<&str>,
) -> Result<(), ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:write")?;
    if principal.role >= Role::Admin {
        return Ok(());
    }
    if let Some(p) = parent
        && owner_of(&state.db, &principal.tenant_id, p)
            .await?
            .as_deref()
            == Some(principal.user_id.as_str())
    {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "this needs the admin role or owning the bot's main agent",
    ))
}

pub(super) async fn require_member(
    state: &AppState,
    tenant: &str,
    user: &str,
) -> Result<(), ApiError> {
    let member: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    member
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("user"))
}
