//! The HTTP handlers of `/v1/agents`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::deploy::{deploy, hosting_node};
use super::store::{
    AGENT_COLUMNS, agent_from_row, insert_agent, invalid_parent, load_agent, name_taken,
};
use super::{Agent, AgentFilter, AgentGrants, CreateAgent, ID_PREFIX, Kind, UpdateAgent};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::components::require_component;
use crate::db::{new_id, now_ms};
use crate::nodeclient::NodeClient;
use crate::nodes;
use crate::pagination::{Page, PageQuery};

/// Longest agent name, in bytes.
const MAX_NAME: usize = 128;
/// Most entries in one grant list, and longest entry.
const MAX_GRANTS: usize = 256;
const MAX_GRANT_LEN: usize = 256;
/// Nodes tried when creating an agent whose first choice does not answer.
const PLACEMENT_ATTEMPTS: usize = 3;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(pause_agent))
        .routes(routes!(resume_agent))
}

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
        ("agents", &grants.agents),
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
            filters: kind.map(|k| ("kind", k)).as_slice(),
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
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
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
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
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
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
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
    use crate::agents::{Channel, HttpGrant, Limits};

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
            agents: vec!["summariser".into()],
        };
        let theirs: delta_node_api::Grants =
            serde_json::from_value(serde_json::to_value(&ours).expect("json"))
                .expect("node grants");
        assert_eq!(theirs.channels.len(), 2);
        assert!(theirs.kv);
        assert_eq!(theirs.agents, ["summariser"]);
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
