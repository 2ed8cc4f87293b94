//! The operator's side of node identity ([`crate::nodeauth`]): enrolling a
//! node, issuing (rotating), listing and revoking its credentials, under
//! `/v1/operator/nodes`. Platform operators only (`operators` in
//! `control.toml`); a credential's secret is in the answer that issues it
//! and nowhere else.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
use crate::db::{Db, now_ms};
use crate::nodeauth::{check_node_url, insert_credential};
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enrol))
        .routes(routes!(set_url))
        .routes(routes!(rotate, list_credentials))
        .routes(routes!(revoke))
}

/// Body of `POST /v1/operator/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// The node's id (`node_id` in its configuration).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub node_id: String,
    /// Where the control plane reaches it (default: what its first
    /// heartbeat says): http(s), a host name or IPv4 address, no
    /// credentials; plain http only to loopback unless the operator allows it.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^https?://(([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(:[0-9]{1,4})?(/[!-~]*)?$"
    )]
    pub url: Option<String>,
}

/// A credential just issued (the only time its secret is shown).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedCredential {
    /// The node it is bound to.
    pub node_id: String,
    /// Its id (`ncr_...`, the part before the dot).
    pub credential_id: String,
    /// The credential: the node's `[control_plane] token_file` holds it.
    pub credential: String,
    /// What the control plane presents to this node (and only to it): the
    /// node's own `token_file` holds it. Derived from the control plane's
    /// `node_api_secret_file` and the node id, so every issue answers the
    /// same; absent when that secret is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_api_token: Option<String>,
    /// When the other credentials of the node stop working, if this
    /// rotation retires them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_expire_at_ms: Option<i64>,
}

/// A credential as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialInfo {
    /// `ncr_...`.
    pub id: String,
    /// The node it is bound to.
    pub node_id: String,
    /// Issued.
    pub created_at_ms: i64,
    /// Stops working then (retired by a rotation).
    pub expires_at_ms: Option<i64>,
    /// Revoked.
    pub revoked_at_ms: Option<i64>,
    /// Whether it works now.
    pub active: bool,
}

/// Body of `POST /v1/operator/nodes/{node_id}/credentials`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Retire the node's other credentials this many seconds from now (0:
    /// at once; absent: they keep working until revoked).
    /// At most 10 years.
    #[serde(default)]
    #[schema(maximum = 315_360_000)]
    pub retire_others_after_secs: Option<u64>,
}

fn valid_node_id(id: &str) -> Result<(), ApiError> {
    if crate::nodeauth::valid_node_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "node_id must be 1-128 characters of letters, digits, '-', '_', '.', ':'",
        ))
    }
}

async fn node_exists(db: &Db, id: &str) -> Result<bool, ApiError> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM nodes WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(ApiError::internal)?;
    Ok(found.is_some())
}

/// Enrol a node: record it and issue its first credential (operators
/// only). The node then starts with the credential in its `[control_plane]
/// token_file`; a node id never enrolled cannot heartbeat.
#[utoipa::path(
    post,
    path = "/v1/operator/nodes",
    tag = "nodes",
    request_body = Enrolment,
    responses(
        (status = 201, description = "Enrolled; the credential is shown this once", body = IssuedCredential),
        (status = 403, description = "`operator_only`"),
        (status = 409, description = "`node_enrolled`: it has a working credential (rotate instead)"),
        (status = 422, description = "Malformed node id or URL"),
    ),
    security(("bearer" = []))
)]
async fn enrol(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<Enrolment>,
) -> Result<Response, ApiError> {
    principal.require_operator()?;
    principal.require_scope("agents:write")?;
    valid_node_id(&body.node_id)?;
    let url = match body.url.as_deref().map(|u| u.trim_end_matches('/')) {
        Some(u) => {
            check_node_url(&state, u)?;
            u.to_owned()
        }
        None => String::new(),
    };
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    // Down until its first heartbeat; an empty URL is filled in by it.
    sqlx::query(
        "INSERT INTO nodes (id, url, capacity, load, status, registered_at_ms, last_heartbeat_ms) \
         VALUES ($1, $2, 0, 0, 'down', $3, 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&body.node_id)
    .bind(&url)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    // A write to the row, always: it serialises two enrolments of one node
    // id (the second then sees the first's credential). A node known from
    // before (the shared-token days) gets the URL the operator gives.
    sqlx::query("UPDATE nodes SET url = CASE WHEN $1 = '' THEN url ELSE $1 END WHERE id = $2")
        .bind(&url)
        .bind(&body.node_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM node_credentials WHERE node_id = $1 AND revoked_at_ms IS NULL \
         AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
    )
    .bind(&body.node_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if active > 0 {
        // Dropping the transaction undoes the writes above.
        return Err(ApiError::conflict(
            "node_enrolled",
            "this node has a working credential: rotate it with \
             POST /v1/operator/nodes/{id}/credentials (delta nodes credentials ID --rotate)",
        ));
    }
    let (id, credential) = insert_credential(&mut tx, &body.node_id, now)
        .await
        .map_err(ApiError::internal)?;
    audit::record_in(
        &mut tx,
        None,
        Some(&principal.user_id),
        "node_enrolled",
        json!({ "node_id": body.node_id, "credential_id": id }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredential {
            node_api_token: state.node_api_token(&body.node_id),
            node_id: body.node_id,
            credential_id: id,
            credential,
            others_expire_at_ms: None,
        }),
    )
        .into_response())
}

/// Body of `PATCH /v1/operator/nodes/{node_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeChange {
    /// Where the control plane reaches the node from now on (as in
    /// [`Enrolment::url`]).
    #[schema(
        max_length = 2048,
        pattern = r"^https?://(([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(:[0-9]{1,4})?(/[!-~]*)?$"
    )]
    pub url: String,
}

/// A node as the operator changed it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeUrl {
    /// Node id.
    pub node_id: String,
    /// Its URL now.
    pub url: String,
}

/// Change where the control plane reaches a node (operators only): the
/// only way an enrolled node's URL moves, since heartbeats cannot (a
/// stolen credential would otherwise redirect the node's agents and runs).
/// The node's own heartbeats then have to name the new URL.
#[utoipa::path(
    patch,
    path = "/v1/operator/nodes/{node_id}",
    tag = "nodes",
    params(("node_id" = String, Path, description = "Node id")),
    request_body = NodeChange,
    responses(
        (status = 200, description = "Changed", body = NodeUrl),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such node"),
        (status = 422, description = "Malformed URL"),
    ),
    security(("bearer" = []))
)]
async fn set_url(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(node_id): Path<String>,
    JsonBody(body): JsonBody<NodeChange>,
) -> Result<Json<NodeUrl>, ApiError> {
    principal.require_operator()?;
    principal.require_scope("agents:write")?;
    let url = body.url.trim_end_matches('/').to_owned();
    check_node_url(&state, &url)?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    // A write first: a SQLite transaction that reads first cannot take the
    // write lock once another connection (a heartbeat) has committed; it
    // fails at once instead of waiting. (On PostgreSQL: the row lock.)
    sqlx::query("UPDATE nodes SET url = url WHERE id = $1")
        .bind(&node_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    let before: Option<String> = sqlx::query_scalar("SELECT url FROM nodes WHERE id = $1")
        .bind(&node_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    let Some(before) = before else {
        return Err(ApiError::not_found("node"));
    };
    sqlx::query("UPDATE nodes SET url = $1 WHERE id = $2")
        .bind(&url)
        .bind(&node_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    audit::record_in(
        &mut tx,
        None,
        Some(&principal.user_id),
        "node_url_changed",
        json!({ "node_id": node_id, "from": before, "to": url }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(Json(NodeUrl { node_id, url }))
}

/// Longest delay before the other credentials retire (10 years): longer is
/// a mistake, and never retiring is saying nothing.
const MAX_RETIRE_SECS: u64 = 315_360_000;

/// Issue another credential for an enrolled node (rotation without
/// downtime: the others keep working until `retire_others_after_secs`, if
/// given, or until revoked).
#[utoipa::path(
    post,
    path = "/v1/operator/nodes/{node_id}/credentials",
    tag = "nodes",
    params(("node_id" = String, Path, description = "Node id")),
    request_body = Rotation,
    responses(
        (status = 201, description = "Issued; shown this once", body = IssuedCredential),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such node"),
    ),
    security(("bearer" = []))
)]
async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(node_id): Path<String>,
    JsonBody(rotation): JsonBody<Rotation>,
) -> Result<Response, ApiError> {
    principal.require_operator()?;
    principal.require_scope("agents:write")?;
    if !node_exists(&state.db, &node_id).await? {
        return Err(ApiError::not_found("node"));
    }
    if rotation
        .retire_others_after_secs
        .is_some_and(|secs| secs > MAX_RETIRE_SECS)
    {
        return Err(ApiError::invalid(format!(
            "retire_others_after_secs must be at most {MAX_RETIRE_SECS} (10 years)"
        )));
    }
    let now = now_ms();
    let retire_at = rotation.retire_others_after_secs.map(|secs| {
        now.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let (id, credential) = insert_credential(&mut tx, &node_id, now)
        .await
        .map_err(ApiError::internal)?;
    if let Some(at) = retire_at {
        // Never later than an expiry already set.
        sqlx::query(
            "UPDATE node_credentials SET expires_at_ms = $1 \
             WHERE node_id = $2 AND id <> $3 AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $1)",
        )
        .bind(at)
        .bind(&node_id)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    }
    audit::record_in(
        &mut tx,
        None,
        Some(&principal.user_id),
        "node_credential_issued",
        json!({ "node_id": node_id, "credential_id": id, "others_expire_at_ms": retire_at }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredential {
            node_api_token: state.node_api_token(&node_id),
            node_id,
            credential_id: id,
            credential,
            others_expire_at_ms: retire_at,
        }),
    )
        .into_response())
}

/// A node's credentials, oldest first (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/operator/nodes/{node_id}/credentials",
    tag = "nodes",
    params(("node_id" = String, Path, description = "Node id"), PageQuery),
    responses(
        (status = 200, description = "A page", body = Page<CredentialInfo>),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such node"),
    ),
    security(("bearer" = []))
)]
async fn list_credentials(
    State(state): State<AppState>,
    principal: Principal,
    Path(node_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<CredentialInfo>>, ApiError> {
    principal.require_operator()?;
    principal.require_scope("agents:read")?;
    if !node_exists(&state.db, &node_id).await? {
        return Err(ApiError::not_found("node"));
    }
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT id, node_id, created_at_ms, expires_at_ms, revoked_at_ms FROM node_credentials \
         WHERE node_id = $1 AND (created_at_ms, id) > ($2, $3) \
         ORDER BY created_at_ms, id LIMIT $4",
    )
    .bind(&node_id)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(|row| {
            let expires_at_ms: Option<i64> = row.try_get("expires_at_ms")?;
            let revoked_at_ms: Option<i64> = row.try_get("revoked_at_ms")?;
            Ok(CredentialInfo {
                id: row.try_get("id")?,
                node_id: row.try_get("node_id")?,
                created_at_ms: row.try_get("created_at_ms")?,
                expires_at_ms,
                revoked_at_ms,
                active: revoked_at_ms.is_none() && expires_at_ms.is_none_or(|at| at > now),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |c| {
        (c.created_at_ms, c.id.clone())
    })))
}

/// Revoke one of a node's credentials: refused from the next request on.
#[utoipa::path(
    delete,
    path = "/v1/operator/nodes/{node_id}/credentials/{credential_id}",
    tag = "nodes",
    params(
        ("node_id" = String, Path, description = "Node id"),
        ("credential_id" = String, Path, description = "Credential id (ncr_...)"),
    ),
    responses(
        (status = 204, description = "Revoked (or already)"),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "Not a credential of that node"),
    ),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path((node_id, credential_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_operator()?;
    principal.require_scope("agents:write")?;
    let found: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT revoked_at_ms FROM node_credentials WHERE id = $1 AND node_id = $2",
    )
    .bind(&credential_id)
    .bind(&node_id)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    match found {
        None => return Err(ApiError::not_found("credential")),
        Some(Some(_)) => return Ok(StatusCode::NO_CONTENT),
        Some(None) => {}
    }
    sqlx::query(
        "UPDATE node_credentials SET revoked_at_ms = $1 \
         WHERE id = $2 AND node_id = $3 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms())
    .bind(&credential_id)
    .bind(&node_id)
    .execute(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    audit::record(
        &state.db,
        None,
        Some(&principal.user_id),
        "node_credential_revoked",
        json!({ "node_id": node_id, "credential_id": credential_id }),
        Some(&rid.0),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
