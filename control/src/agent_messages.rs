//! Messages between agents (`delta:agent/agents`, issue 14).
//!
//! A guest's `send(to, message)` reaches its node, which forwards it here
//! (`POST /v1/nodes/messages`, with the node's credential, the sending run's
//! id and the message's position in that run). The control plane:
//! 1. checks that the sender is placed on that node (403 `agent_not_here`)
//!    and that the run, if this plane knows it, is the sender's;
//! 2. checks the sender's `agents` grant names the receiver (by name or id;
//!    403 `not_allowed`, also for names that match nothing, so a grant probe
//!    learns nothing), then finds the receiver in the sender's tenant only
//!    (404 `unknown_agent` for a granted name that is not an agent of this
//!    tenant: another tenant's agent is never reached);
//! 3. bounds the message (JSON, `[agent_messages] max_bytes`), the run's
//!    messages (`max_per_run`), the chain of messages (`max_depth`: a
//!    message sent by a run that a message started is one deeper) and the
//!    sender's rate (`per_agent_per_minute`);
//! 4. in one transaction stores the message and the receiver's run, `queued`
//!    with trigger `{kind: "agent", id: <message id>}`, and its `pending` row
//!    of the run queue; then delivers it at once (and signals the queue, so
//!    with Redis another replica may take it). From there the run is any
//!    queued run: retried with backoff, `dead` after `[runs]
//!    max_deliveries` (the dead letter: `GET /v1/runs?status=dead`, `POST
//!    /v1/runs/{id}/retry`), re-queued when its node is lost.
//!
//! The message id is a hash of the sending run's id and the message's
//! position, so the same run delivered again sends the same ids: the insert
//! finds the message and answers its run, and the receiver is started once
//! per message (at least once, as every run). The receiver's input is
//! `{"message": ..., "message_id": ..., "from": {"agent_id", "agent_name",
//! "run_id"}}`.
//!
//! People list a tenant's messages at `GET /v1/agent-messages` (role
//! `member`, scope `runs:read`), by sender or receiver.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use delta_http::{ApiError, JsonBody, record_ids};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::AgentGrants;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::dispatch::RunQueue as _;
use crate::nodeauth::NodeAuth;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(node_send_message))
        .routes(routes!(list_agent_messages))
}

/// Body of `POST /v1/nodes/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeMessage {
    /// The sending agent (placed on the calling node).
    pub agent_id: String,
    /// The sending run (its `task.run-id`).
    #[schema(min_length = 1, max_length = 200)]
    pub run_id: String,
    /// The message's position in the run, from 0.
    pub seq: u32,
    /// The receiver's name or id, as the guest gave it.
    pub to: String,
    /// The message: JSON text.
    pub message: String,
}

/// Answer of `POST /v1/nodes/messages`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageSent {
    /// The message (`msg_...`).
    pub message_id: String,
    /// The receiver's run it started.
    pub run_id: String,
}

/// A stored message, without its body (that is the receiver run's input).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentMessage {
    /// `msg_...`.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The sending agent.
    pub from_agent_id: String,
    /// The sending run.
    pub from_run_id: String,
    /// The receiving agent.
    pub to_agent_id: String,
    /// The receiver's run (`GET /v1/runs/{id}`: its status, its output).
    pub run_id: String,
    /// Length of the chain of messages that led to it (1: sent by a run no
    /// message started).
    pub depth: i64,
    /// Size of the message, bytes.
    pub bytes: i64,
    /// When it was accepted.
    pub created_at_ms: i64,
}

/// `?from_agent_id=` and/or `?to_agent_id=` of `GET /v1/agent-messages`
/// (both: the messages between those two agents, one way).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageFilter {
    /// Only messages this agent sent.
    pub from_agent_id: Option<String>,
    /// Only messages this agent received.
    pub to_agent_id: Option<String>,
}

const COLUMNS: &str =
    "id, tenant_id, from_agent_id, from_run_id, to_agent_id, run_id, depth, bytes, created_at_ms";

fn message_from_row(row: &sqlx::any::AnyRow) -> Result<AgentMessage, sqlx::Error> {
    Ok(AgentMessage {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        from_agent_id: row.try_get("from_agent_id")?,
        from_run_id: row.try_get("from_run_id")?,
        to_agent_id: row.try_get("to_agent_id")?,
        run_id: row.try_get("run_id")?,
        depth: row.try_get("depth")?,
        bytes: row.try_get("bytes")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// The id of message `seq` of run `run_id`: the same on every delivery of
/// that run.
pub fn message_id(run_id: &str, seq: u32) -> String {
    let digest = Sha256::digest(format!("{run_id}\n{seq}"));
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// The sender as its row says.
struct Sender {
    tenant_id: String,
    name: String,
    grants: AgentGrants,
}

async fn sender_for_node(
    state: &AppState,
    node: &NodeAuth,
    agent_id: &str,
) -> Result<Sender, ApiError> {
    let agent = crate::nodeauth::placed_agent(state, node, agent_id).await?;
    Ok(Sender {
        tenant_id: agent.tenant_id,
        name: agent.name,
        grants: agent.grants,
    })
}

fn not_allowed(to: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "not_allowed",
        "the sender's `agents` grant does not name that agent",
    )
    .details(json!({ "to": to }))
}

/// The depth a message sent by `run_id` has: one more than the message
/// that started the run, if one did.
async fn depth_of_next(state: &AppState, agent_id: &str, run_id: &str) -> Result<i64, ApiError> {
    let row = sqlx::query("SELECT agent_id, trigger_kind, trigger_id FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    // A run this plane did not name (submitted to the node directly) starts
    // a chain.
    let Some(row) = row else { return Ok(1) };
    let owner: String = row.try_get("agent_id").map_err(ApiError::internal)?;
    if owner != agent_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "run_not_of_agent",
            "that run belongs to another agent",
        ));
    }
    let kind: String = row.try_get("trigger_kind").map_err(ApiError::internal)?;
    let trigger: Option<String> = row.try_get("trigger_id").map_err(ApiError::internal)?;
    if kind != "agent" {
        return Ok(1);
    }
    let parent: Option<i64> = sqlx::query_scalar("SELECT depth FROM agent_messages WHERE id = $1")
        .bind(trigger.unwrap_or_default())
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    Ok(parent.unwrap_or(0).saturating_add(1))
}

/// A node hands over a message one of its agents sent.
#[utoipa::path(
    post,
    path = "/v1/nodes/messages",
    tag = "nodes",
    request_body = NodeMessage,
    responses(
        (status = 201, description = "Stored; the receiver's run is queued", body = MessageSent),
        (status = 200, description = "Already stored (the same run sent it before)", body = MessageSent),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`, `run_not_of_agent`, `not_allowed` \
                                      (the grant does not name the receiver)"),
        (status = 404, description = "Unknown sender, or `unknown_agent` (no such receiver \
                                      in the sender's tenant)"),
        (status = 413, description = "`too_large` (`details.limit`)"),
        (status = 422, description = "`invalid_message`, `too_deep`, `too_many` (`details.limit`)"),
        (status = 429, description = "`rate_limited` (see `Retry-After`)"),
    ),
    security(("bearer" = []))
)]
async fn node_send_message(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(body): JsonBody<NodeMessage>,
) -> Result<(StatusCode, Json<MessageSent>), ApiError> {
    record_ids(None, Some(&body.agent_id), Some(&body.run_id));
    if body.run_id.is_empty() || body.run_id.len() > 200 {
        return Err(ApiError::invalid("run_id must be 1-200 bytes"));
    }
    let sender = sender_for_node(&state, &node, &body.agent_id).await?;
    let cfg = &state.config.agent_messages;
    let granted = |s: &str| sender.grants.agents.iter().any(|g| g == s);
    if sender.grants.agents.is_empty() {
        return Err(not_allowed(&body.to));
    }
    // Looked up only in the sender's tenant: another tenant's id finds
    // nothing.
    let receiver = sqlx::query(
        "SELECT id, name FROM agents WHERE tenant_id = $1 AND (id = $2 OR name = $2) \
         ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(&sender.tenant_id)
    .bind(&body.to)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let receiver = match receiver {
        Some(row) => {
            let id: String = row.try_get("id").map_err(ApiError::internal)?;
            let name: String = row.try_get("name").map_err(ApiError::internal)?;
            if !granted(&id) && !granted(&name) {
                return Err(not_allowed(&body.to));
            }
            id
        }
        None if granted(&body.to) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_agent",
                "no agent of this tenant has that name or id",
            )
            .details(json!({ "to": body.to })));
        }
        None => return Err(not_allowed(&body.to)),
    };
    let bytes = body.message.len() as u64;
    if bytes > cfg.max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the message is over the limit of {} bytes", cfg.max_bytes),
        )
        .details(json!({ "limit": cfg.max_bytes })));
    }
    let message: Value = serde_json::from_str(&body.message).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_message",
            format!("the message is not JSON: {e}"),
        )
    })?;
    if body.seq >= cfg.max_per_run {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many",
            format!("a run may send at most {} messages", cfg.max_per_run),
        )
        .details(json!({ "limit": cfg.max_per_run })));
    }
    let id = message_id(&body.run_id, body.seq);
    // A message already stored is answered before any limit: the run that
    // sent it is being delivered again, and must see what it saw.
    if let Some(run_id) = stored_run(&state, &id, &sender.tenant_id).await? {
        return Ok((
            StatusCode::OK,
            Json(MessageSent {
                message_id: id,
                run_id,
            }),
        ));
    }
    let depth = depth_of_next(&state, &body.agent_id, &body.run_id).await?;
    if depth > i64::from(cfg.max_depth) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_deep",
            format!(
                "this run was started by a chain of {} messages, the most allowed",
                cfg.max_depth
            ),
        )
        .details(json!({ "limit": cfg.max_depth })));
    }
    if let Some(limit) = &state.agent_message_limit
        && let Err(not_until) = limit.check_key(&body.agent_id)
    {
        use governor::clock::Clock as _;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "this agent sends messages faster than its limit",
        )
        .details(json!({ "retry_after_ms": ms }))
        .retry_after(wait));
    }
    let input = json!({
        "message": message,
        "message_id": &id,
        "from": { "agent_id": &body.agent_id, "agent_name": &sender.name, "run_id": &body.run_id },
    })
    .to_string();
    let (run_id, created) = store(
        &state,
        &Stored {
            id: &id,
            tenant_id: &sender.tenant_id,
            from_agent_id: &body.agent_id,
            from_run_id: &body.run_id,
            seq: body.seq,
            to_agent_id: &receiver,
            depth,
            bytes,
            input: &input,
        },
    )
    .await?;
    if created {
        let now = now_ms();
        state.run_queue.announce(&[(run_id.clone(), now)]).await;
        let (state, run) = (state.clone(), run_id.clone());
        tokio::spawn(async move { crate::dispatch::dispatcher::deliver_now(&state, &run).await });
        tracing::info!(message = %id, from = %body.agent_id, to = %receiver, run = %run_id, depth, "agent message queued");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(MessageSent {
            message_id: id,
            run_id,
        }),
    ))
}

async fn stored_run(state: &AppState, id: &str, tenant: &str) -> Result<Option<String>, ApiError> {
    sqlx::query_scalar("SELECT run_id FROM agent_messages WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)
}

/// What [`store`] writes.
struct Stored<'a> {
    id: &'a str,
    tenant_id: &'a str,
    from_agent_id: &'a str,
    from_run_id: &'a str,
    seq: u32,
    to_agent_id: &'a str,
    depth: i64,
    bytes: u64,
    input: &'a str,
}

/// Store the message, the receiver's run and its queue row together; the
/// run's id and whether this call stored them (false: the message was
/// there, with its run).
async fn store(state: &AppState, m: &Stored<'_>) -> Result<(String, bool), ApiError> {
    let run_id = format!("run_{}", uuid::Uuid::now_v7().simple());
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let inserted = sqlx::query(
        "INSERT INTO agent_messages (id, tenant_id, from_agent_id, from_run_id, seq, \
         to_agent_id, run_id, depth, bytes, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(m.id)
    .bind(m.tenant_id)
    .bind(m.from_agent_id)
    .bind(m.from_run_id)
    .bind(i64::from(m.seq))
    .bind(m.to_agent_id)
    .bind(&run_id)
    .bind(m.depth)
    .bind(i64::try_from(m.bytes).unwrap_or(i64::MAX))
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if inserted.rows_affected() == 0 {
        // Stored by a concurrent delivery of the same run.
        drop(tx);
        let run = stored_run(state, m.id, m.tenant_id)
            .await?
            .ok_or_else(|| ApiError::internal("a message vanished after a conflict"))?;
        return Ok((run, false));
    }
    crate::dispatch::sql::insert_pending(
        &mut tx,
        &crate::dispatch::sql::PendingRun {
            run_id: &run_id,
            tenant_id: m.tenant_id,
            agent_id: m.to_agent_id,
            trigger: ("agent", m.id),
            input: m.input,
        },
        now,
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok((run_id, true))
}

/// List this tenant's agent messages, oldest first.
#[utoipa::path(
    get,
    path = "/v1/agent-messages",
    tag = "runs",
    params(PageQuery, MessageFilter),
    responses(
        (status = 200, description = "A page", body = Page<AgentMessage>),
    ),
    security(("bearer" = []))
)]
async fn list_agent_messages(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<MessageFilter>,
) -> Result<Json<Page<AgentMessage>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("runs:read")?;
    let filters: Vec<(&str, &str)> = [
        ("from_agent_id", &filter.from_agent_id),
        ("to_agent_id", &filter.to_agent_id),
    ]
    .into_iter()
    .filter_map(|(column, value)| value.as_deref().map(|v| (column, v)))
    .collect();
    crate::pagination::tenant_page(
        &state.db,
        crate::pagination::Listing {
            columns: COLUMNS,
            table: "agent_messages",
            filters: &filters,
        },
        &principal.tenant_id,
        &page,
        message_from_row,
        |m: &AgentMessage| (m.created_at_ms, m.id.clone()),
    )
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_depends_on_the_run_and_the_position_only() {
        let a = message_id("run_1", 0);
        assert_eq!(a, message_id("run_1", 0));
        assert_ne!(a, message_id("run_1", 1));
        assert_ne!(a, message_id("run_2", 0));
        // No separator confusion between run id and position.
        assert_ne!(message_id("run_1", 12), message_id("run_11", 2));
        assert!(a.starts_with("msg_") && a.len() == 4 + 32);
    }
}
