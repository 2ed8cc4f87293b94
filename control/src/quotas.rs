//! Per-tenant quotas: component storage, messages per UTC day and agents.
//!
//! Defaults come from `[quotas]` in `control.toml`; an operator overrides
//! them per tenant (`PUT /v1/operator/tenants/{id}/quotas`, a `null` field
//! going back to the default). Every refusal is `quota_exceeded` with
//! `details {quota, limit, used}`:
//! - a component upload that would take the tenant's stored bytes past
//!   `component_bytes` is 413 (nothing stored for the tenant);
//! - an agent past `agents` is 403;
//! - a message past `messages_per_day` is refused to the node before
//!   delivery (429 with `Retry-After` until the next UTC day), which the
//!   guest sees as `rate-limited`: the node asks
//!   `POST /v1/nodes/messages/admit` before every send, and the count is
//!   taken there, so nothing is sent past the quota.
//!
//! Components no agent and no draft or open bounty of their tenant uses are
//! deleted by the sweep ([`collect_components`]) once older than
//! `component_gc_grace_secs`: their row, and their file when no tenant has
//! a row for those bytes any more.
//!
//! Between two concurrent uploads (or agent creations) of one tenant the
//! check and the insert are one transaction that first writes the tenant's
//! row ([`lock_tenant`]), so the two cannot both pass; a message is
//! counted by one conditional upsert.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::auth::Principal;
use crate::db::now_ms;
use crate::state::AppState;

/// Routes of this module (operators only).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_quotas, set_quotas))
        .routes(routes!(node_admit_message))
}

/// Body of `POST /v1/nodes/messages/admit`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageAdmission {
    /// The agent about to send (placed on the calling node).
    pub agent_id: String,
    /// `email` or `sms`.
    #[schema(pattern = "^(email|sms)$")]
    pub channel: String,
}

/// What `POST /v1/nodes/messages/admit` answers when the message may go.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Admitted {
    /// Always true (a refusal is an error answer).
    pub admitted: bool,
}

/// A node asks before sending a message for an agent placed on it: the
/// message is counted against the agent's tenant's `messages_per_day`, or
/// refused (429 `quota_exceeded`, `Retry-After` the next UTC day), in which
/// case the node sends nothing and the guest gets `rate-limited`.
#[utoipa::path(
    post,
    path = "/v1/nodes/messages/admit",
    tag = "nodes",
    request_body = MessageAdmission,
    responses(
        (status = 200, description = "Counted: send it", body = Admitted),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`"),
        (status = 404, description = "Unknown agent"),
        (status = 422, description = "`invalid` channel"),
        (status = 429, description = "`quota_exceeded` (details: quota, limit, used)"),
    ),
    security(("bearer" = []))
)]
async fn node_admit_message(
    State(state): State<AppState>,
    node: crate::nodeauth::NodeAuth,
    JsonBody(ask): JsonBody<MessageAdmission>,
) -> Result<Json<Admitted>, ApiError> {
    if !matches!(ask.channel.as_str(), "email" | "sms") {
        return Err(ApiError::invalid("channel must be email or sms"));
    }
    let agent = crate::nodeauth::placed_agent(&state, &node, &ask.agent_id).await?;
    admit_message(&state, &agent.tenant_id, now_ms()).await?;
    Ok(Json(Admitted { admitted: true }))
}

/// A tenant's limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaLimits {
    /// Bytes of components the tenant may keep.
    pub component_bytes: u64,
    /// Messages per UTC day.
    pub messages_per_day: u64,
    /// Agents at once.
    pub agents: u64,
}

/// A tenant's quotas: what is in force and what is used.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantQuotas {
    /// The tenant.
    pub tenant_id: String,
    /// Limits in force (the operator's overrides, else the defaults).
    pub limits: QuotaLimits,
    /// Which limits the operator set for this tenant (the others are the
    /// configured defaults).
    pub overridden: Vec<String>,
    /// Use now: component bytes, messages today, agents.
    pub used: QuotaLimits,
}

/// Body of `PUT /v1/operator/tenants/{id}/quotas`: each field given sets
/// that limit for the tenant (values past 2^63 - 1 are kept as that, which
/// is no limit); `null` returns it to the default; an absent one is left as
/// it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaChange {
    /// Component bytes.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub component_bytes: Option<Option<u64>>,
    /// Messages per UTC day.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub messages_per_day: Option<Option<u64>>,
    /// Agents at once.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub agents: Option<Option<u64>>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(d).map(Some)
    }
}

/// 'quota_exceeded' with what the tenant may and does use.
pub fn exceeded(status: StatusCode, quota: &str, limit: u64, used: u64) -> ApiError {
    ApiError::new(
        status,
        "quota_exceeded",
        format!(
            "this tenant's {quota} quota is {limit} and {used} is used; \
             an operator can raise it (PUT /v1/operator/tenants/{{id}}/quotas)"
        ),
    )
    .details(json!({ "quota": quota, "limit": limit, "used": used }))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The limits in force for `tenant_id` and the names of those overridden.
pub async fn limits(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    tenant_id: &str,
) -> Result<(QuotaLimits, Vec<String>), sqlx::Error> {
    let defaults = &state.config.quotas;
    let mut limits = QuotaLimits {
        component_bytes: defaults.component_bytes,
        messages_per_day: defaults.messages_per_day,
        agents: defaults.agents,
    };
    let mut overridden = Vec::new();
    let row = sqlx::query(
        "SELECT component_bytes, messages_per_day, agents FROM tenant_quotas WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        for (name, slot) in [
            ("component_bytes", &mut limits.component_bytes),
            ("messages_per_day", &mut limits.messages_per_day),
            ("agents", &mut limits.agents),
        ] {
            if let Some(v) = row.try_get::<Option<i64>, _>(name)? {
                *slot = to_u64(v);
                overridden.push(name.to_owned());
            }
        }
    }
    Ok((limits, overridden))
}

/// At the start of a transaction that checks a quota and then writes:
/// serialise it with the tenant's other such transactions by writing the
/// tenant's row first (PostgreSQL: a row lock; SQLite: the database's
/// write lock, taken before any read, so the transaction cannot fail on a
/// stale read snapshot when it writes).
pub async fn lock_tenant(conn: &mut sqlx::AnyConnection, tenant_id: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
        .bind(tenant_id)
        .execute(&mut *conn)
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}

/// Bytes of components `tenant_id` keeps.
async fn component_bytes_used(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
) -> Result<u64, sqlx::Error> {
    let used: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM components WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(used.map_or(0, to_u64))
}

/// 413 `quota_exceeded` unless `size` more bytes fit `tenant_id`'s
/// component quota (in the upload's transaction, after [`lock_tenant`]).
/// Bytes the tenant already has (the same component again) cost nothing:
/// the caller skips the check.
pub async fn check_component_bytes(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    tenant_id: &str,
    size: u64,
) -> Result<(), ApiError> {
    let (limits, _) = limits(conn, state, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let used = component_bytes_used(conn, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    if used.saturating_add(size) > limits.component_bytes {
        return Err(exceeded(
            StatusCode::PAYLOAD_TOO_LARGE,
            "component_bytes",
            limits.component_bytes,
            used,
        ));
    }
    Ok(())
}

async fn agents_used(conn: &mut sqlx::AnyConnection, tenant_id: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(to_u64(n))
}

/// 403 `quota_exceeded` unless one more agent fits `tenant_id`'s quota
/// (in the agent's transaction, after [`lock_tenant`]).
pub async fn check_agents(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    tenant_id: &str,
) -> Result<(), ApiError> {
    let (limits, _) = limits(conn, state, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let used = agents_used(conn, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    if used >= limits.agents {
        return Err(exceeded(
            StatusCode::FORBIDDEN,
            "agents",
            limits.agents,
            used,
        ));
    }
    Ok(())
}

const DAY_MS: i64 = 24 * 3600 * 1000;

async fn messages_today(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    day: i64,
) -> Result<u64, sqlx::Error> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT admitted FROM message_days WHERE tenant_id = $1 AND day = $2")
            .bind(tenant_id)
            .bind(day)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(n.map_or(0, to_u64))
}

/// Count one message of `tenant_id` today, or refuse it: 429
/// `quota_exceeded` with `Retry-After` until the next UTC day. Taken before
/// delivery, so a refused message is never sent (one admitted but then not
/// delivered still counts: the count is of attempts let through).
pub async fn admit_message(state: &AppState, tenant_id: &str, now: i64) -> Result<(), ApiError> {
    let day = now.div_euclid(DAY_MS);
    let mut conn = state
        .db
        .pool()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (limits, _) = limits(&mut conn, state, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    // One statement that counts only under the limit: concurrent sends of
    // a tenant (from several nodes) cannot both take the last one.
    let admitted = sqlx::query(
        "INSERT INTO message_days (tenant_id, day, admitted) SELECT $1, $2, 1 WHERE $3 > 0 \
         ON CONFLICT (tenant_id, day) DO UPDATE SET admitted = message_days.admitted + 1 \
         WHERE message_days.admitted < $3",
    )
    .bind(tenant_id)
    .bind(day)
    .bind(to_i64(limits.messages_per_day))
    .execute(&mut *conn)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if admitted == 1 {
        return Ok(());
    }
    let used = messages_today(&mut conn, tenant_id, day)
        .await
        .map_err(ApiError::internal)?;
    let wait_ms = u64::try_from((day + 1) * DAY_MS - now)
        .unwrap_or(1000)
        .max(1);
    let mut refused = exceeded(
        StatusCode::TOO_MANY_REQUESTS,
        "messages_per_day",
        limits.messages_per_day,
        used,
    )
    .retry_after(std::time::Duration::from_millis(wait_ms.max(1000)));
    // The node hands the wait to the guest (`rate-limited(ms)`).
    if let Some(details) = refused.details.as_mut() {
        details["retry_after_ms"] = json!(wait_ms);
    }
    Err(refused)
}

async fn load(state: &AppState, tenant_id: &str) -> Result<TenantQuotas, ApiError> {
    let mut conn = state
        .db
        .pool()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(ApiError::internal)?;
    if exists.is_none() {
        return Err(ApiError::not_found("tenant"));
    }
    let (limits, overridden) = limits(&mut conn, state, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let used = QuotaLimits {
        component_bytes: component_bytes_used(&mut conn, tenant_id)
            .await
            .map_err(ApiError::internal)?,
        messages_per_day: messages_today(&mut conn, tenant_id, now_ms().div_euclid(DAY_MS))
            .await
            .map_err(ApiError::internal)?,
        agents: agents_used(&mut conn, tenant_id)
            .await
            .map_err(ApiError::internal)?,
    };
    Ok(TenantQuotas {
        tenant_id: tenant_id.to_owned(),
        limits,
        overridden,
        used,
    })
}

/// A tenant's quotas and use (operators only).
#[utoipa::path(
    get,
    path = "/v1/operator/tenants/{tenant_id}/quotas",
    tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "Limits and use", body = TenantQuotas),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_quotas(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<TenantQuotas>, ApiError> {
    principal.require_operator()?;
    load(&state, &tenant_id).await.map(Json)
}

/// Set a tenant's quotas (operators only): raise or lower them; `null`
/// returns one to the default. Lowering one below what is used refuses
/// what comes next and deletes nothing.
#[utoipa::path(
    put,
    path = "/v1/operator/tenants/{tenant_id}/quotas",
    tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    request_body = QuotaChange,
    responses(
        (status = 200, description = "Limits in force and use", body = TenantQuotas),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such tenant"),
    ),
    security(("bearer" = []))
)]
async fn set_quotas(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(tenant_id): Path<String>,
    JsonBody(change): JsonBody<QuotaChange>,
) -> Result<Json<TenantQuotas>, ApiError> {
    principal.require_operator()?;
    // Fails with 404 before anything is written.
    load(&state, &tenant_id).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO tenant_quotas (tenant_id, component_bytes, messages_per_day, agents, \
             updated_at_ms) VALUES ($1, NULL, NULL, NULL, $2) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(&tenant_id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    for (column, value) in [
        ("component_bytes", change.component_bytes),
        ("messages_per_day", change.messages_per_day),
        ("agents", change.agents),
    ] {
        let Some(value) = value else { continue };
        // `column` is one of three constants, never input.
        sqlx::query(&format!(
            "UPDATE tenant_quotas SET {column} = $1, updated_at_ms = $2 WHERE tenant_id = $3"
        ))
        .bind(value.map(to_i64))
        .bind(now_ms())
        .bind(&tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    }
    audit::record_in(
        &mut tx,
        Some(&tenant_id),
        Some(&principal.user_id),
        "tenant_quotas_set",
        json!({
            "component_bytes": change.component_bytes,
            "messages_per_day": change.messages_per_day,
            "agents": change.agents,
        }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    load(&state, &tenant_id).await.map(Json)
}

/// Most components deleted per sweep pass.
const GC_CHUNK: i64 = 500;

/// Delete components that nothing of their tenant uses (no agent, no draft
/// or open bounty as verifier) and that were uploaded more than
/// `component_gc_grace_secs` before `now`; then the files of those whose
/// bytes no tenant keeps. Called by the sweep, one replica at a time. The
/// number of rows deleted.
pub async fn collect_components(state: &AppState, now: i64) -> Result<u64, sqlx::Error> {
    let grace_ms = to_i64(
        state
            .config
            .quotas
            .component_gc_grace_secs
            .saturating_mul(1000),
    );
    let cutoff = now.saturating_sub(grace_ms);
    const UNUSED: &str = "c.created_at_ms < $1 \
         AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.tenant_id = c.tenant_id \
                         AND a.component = c.sha256) \
         AND NOT EXISTS (SELECT 1 FROM bounties b WHERE b.tenant_id = c.tenant_id \
                         AND b.verifier = c.sha256 AND b.status IN ('draft', 'open'))";
    let rows = sqlx::query(&format!(
        "SELECT c.tenant_id, c.sha256 FROM components c WHERE {UNUSED} \
         ORDER BY c.created_at_ms LIMIT $2"
    ))
    .bind(cutoff)
    .bind(GC_CHUNK)
    .fetch_all(state.db.pool())
    .await?;
    let mut deleted = 0;
    for row in rows {
        let tenant_id: String = row.try_get("tenant_id")?;
        let sha256: String = row.try_get("sha256")?;
        // The same condition again: an agent created since the select
        // keeps its component.
        let gone = sqlx::query(&format!(
            "DELETE FROM components WHERE tenant_id = $2 AND sha256 = $3 AND EXISTS \
             (SELECT 1 FROM components c WHERE c.tenant_id = $2 AND c.sha256 = $3 AND {UNUSED})"
        ))
        .bind(cutoff)
        .bind(&tenant_id)
        .bind(&sha256)
        .execute(state.db.pool())
        .await?
        .rows_affected();
        if gone == 0 {
            continue;
        }
        deleted += gone;
        audit::record(
            &state.db,
            Some(&tenant_id),
            None,
            "component_collected",
            json!({ "sha256": sha256 }),
            None,
        )
        .await;
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM components WHERE sha256 = $1")
            .bind(&sha256)
            .fetch_one(state.db.pool())
            .await?;
        if kept == 0 {
            remove_file(state, &sha256, cutoff).await;
        }
    }
    Ok(deleted)
}

/// Remove the file of `sha256` unless it was written after `cutoff` (an
/// upload of the same bytes under way writes it before its row: such a
/// file stays, and a later pass takes it if its row never comes).
async fn remove_file(state: &AppState, sha256: &str, cutoff: i64) {
    // Only a sha256 names a file: nothing else reaches the path.
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return;
    }
    let path = state.components_dir.join(format!("{sha256}.wasm"));
    let written_ms = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match written_ms {
        Some(ms) if ms < cutoff => {
            if let Err(e) = tokio::fs::remove_file(&path).await {
                tracing::warn!(error = %e, sha256, "removing a collected component's file");
            }
        }
        _ => {}
    }
}
