//! Tenants' secrets over the API (sealing in [`crate::vault`]): admins
//! write, list (names and times only) and delete; no route returns a value.
//! Without `vault_key_file` every route answers 501 `not_configured`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::nodeauth::NodeAuth;
use crate::state::AppState;
use crate::vault::{MAX_SECRETS_PER_TENANT, MAX_VALUE_BYTES, Sealed, Vault, valid_name};

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
        .routes(routes!(node_resolve_secrets))
}

/// The vault, or 501 `not_configured`.
pub(crate) fn vault(state: &AppState) -> Result<&Vault, ApiError> {
    state.vault.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_configured",
            "the secrets vault is not configured (vault_key_file in control.toml)",
        )
    })
}

fn admin(principal: &Principal) -> Result<(), ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("tenant:admin")
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "a secret's name is 1-64 characters of A-Z, a-z, 0-9, _ and -",
        ))
    }
}

/// A secret as listed: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretInfo {
    /// Its name (what `{{secret:NAME}}` and an HTTP grant's `secrets` name).
    pub name: String,
    /// First written.
    pub created_at_ms: i64,
    /// Last written.
    pub updated_at_ms: i64,
}

/// Body of `PUT /v1/secrets/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value (1-8192 bytes, no control characters: it goes into HTTP
    /// header values). Never shown again.
    #[schema(min_length = 1, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub value: String,
}

/// Write a secret of the current tenant (admins; write-only: no route
/// reads it back).
#[utoipa::path(
    put,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path, description = "1-64 of A-Z a-z 0-9 _ -")),
    request_body = PutSecret,
    responses(
        (status = 200, description = "Stored (created or replaced)", body = SecretInfo),
        (status = 403, description = "Not a tenant admin, or no `tenant:admin` scope"),
        (status = 422, description = "`invalid` name or value, `quota_exceeded`"),
        (status = 501, description = "`not_configured`: no vault key"),
    ),
    security(("bearer" = []))
)]
async fn put_secret(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PutSecret>,
) -> Result<Json<SecretInfo>, ApiError> {
    admin(&principal)?;
    let vault = vault(&state)?;
    check_name(&name)?;
    if body.value.is_empty()
        || body.value.len() > MAX_VALUE_BYTES
        || body.value.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "a secret's value is 1-{MAX_VALUE_BYTES} bytes without control characters"
        )));
    }
    let tenant = principal.tenant_id.as_str();
    let sealed = vault
        .seal(tenant, &name, body.value.as_bytes())
        .map_err(ApiError::internal)?;
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tenant_secrets WHERE tenant_id = $1 AND name <> $2",
    )
    .bind(tenant)
    .bind(&name)
    .fetch_one(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if count >= MAX_SECRETS_PER_TENANT {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "quota_exceeded",
            format!("a tenant has at most {MAX_SECRETS_PER_TENANT} secrets"),
        ));
    }
    let row = sqlx::query(
        "INSERT INTO tenant_secrets (tenant_id, name, nonce, ciphertext, created_at_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, updated_at_ms = excluded.updated_at_ms \
         RETURNING created_at_ms",
    )
    .bind(tenant)
    .bind(&name)
    .bind(sealed.nonce)
    .bind(sealed.ciphertext)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    let created_at_ms: i64 = row.try_get("created_at_ms").map_err(ApiError::internal)?;
    audit::record_in(
        &mut tx,
        Some(tenant),
        Some(&principal.user_id),
        "secret_written",
        json!({ "name": name }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(Json(SecretInfo {
        name,
        created_at_ms,
        updated_at_ms: now,
    }))
}

/// `?limit=&cursor=` of `GET /v1/secrets`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretQuery {
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "crate::pagination::page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub cursor: Option<String>,
}

/// A page of the tenant's secrets, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretPage {
    /// The secrets (names and times only).
    pub items: Vec<SecretInfo>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The current tenant's secrets: names and times, never values (admins).
#[utoipa::path(
    get,
    path = "/v1/secrets",
    tag = "secrets",
    params(SecretQuery),
    responses(
        (status = 200, description = "One page", body = SecretPage),
        (status = 400, description = "Malformed cursor or limit"),
        (status = 403, description = "Not a tenant admin, or no `tenant:admin` scope"),
        (status = 501, description = "`not_configured`: no vault key"),
    ),
    security(("bearer" = []))
)]
async fn list_secrets(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<SecretQuery>,
) -> Result<Json<SecretPage>, ApiError> {
    admin(&principal)?;
    vault(&state)?;
    if let Some(cursor) = &query.cursor
        && !valid_name(cursor)
    {
        return Err(ApiError::bad_request(
            "malformed cursor (pass next_cursor as given)",
        ));
    }
    let limit = query.limit.unwrap_or(crate::pagination::DEFAULT_LIMIT);
    let rows = sqlx::query(
        "SELECT name, created_at_ms, updated_at_ms FROM tenant_secrets \
         WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT $3",
    )
    .bind(&principal.tenant_id)
    .bind(query.cursor.as_deref().unwrap_or(""))
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(SecretInfo {
            name: row.try_get("name").map_err(ApiError::internal)?,
            created_at_ms: row.try_get("created_at_ms").map_err(ApiError::internal)?,
            updated_at_ms: row.try_get("updated_at_ms").map_err(ApiError::internal)?,
        });
    }
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(Json(SecretPage {
        next_cursor: more.then(|| items.last().map(|s| s.name.clone())).flatten(),
        items,
    }))
}

/// Delete a secret of the current tenant (admins).
#[utoipa::path(
    delete,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path, description = "The secret's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a tenant admin, or no `tenant:admin` scope"),
        (status = 404, description = "No such secret in this tenant"),
        (status = 501, description = "`not_configured`: no vault key"),
    ),
    security(("bearer" = []))
)]
async fn delete_secret(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin(&principal)?;
    vault(&state)?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let gone = sqlx::query("DELETE FROM tenant_secrets WHERE tenant_id = $1 AND name = $2")
        .bind(&principal.tenant_id)
        .bind(&name)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::not_found("secret"));
    }
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "secret_deleted",
        json!({ "name": name }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The values of `names` of `tenant_id`, opened: for a node resolving an
/// agent's granted secrets. A name without a row is missing from the map;
/// a row that does not open is an error (the key changed, or tampering).
pub(crate) async fn open_many(
    state: &AppState,
    tenant_id: &str,
    names: &[String],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let vault = vault(state)?;
    let mut out = std::collections::BTreeMap::new();
    for name in names {
        let row = sqlx::query(
            "SELECT nonce, ciphertext FROM tenant_secrets WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
        let Some(row) = row else { continue };
        let sealed = Sealed {
            nonce: row.try_get("nonce").map_err(ApiError::internal)?,
            ciphertext: row.try_get("ciphertext").map_err(ApiError::internal)?,
        };
        let value = vault
            .open(tenant_id, name, &sealed)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "secret {name} of tenant {tenant_id} does not open under the vault key"
                ))
            })?;
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Body of `POST /v1/nodes/secrets/resolve`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveSecrets {
    /// The agent making an HTTP call (placed on the calling node).
    pub agent_id: String,
    /// Secret names its request uses; each must be in its `http.secrets`
    /// grant. At most 50.
    pub names: Vec<String>,
}

/// Answer of `POST /v1/nodes/secrets/resolve`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedSecrets {
    /// Name to value, for the names the tenant has (a missing name does not
    /// exist).
    pub values: std::collections::BTreeMap<String, String>,
}

/// A node fetches the secrets an agent placed on it may inject into its
/// HTTP calls: only names its grant lists, only of its own tenant.
#[utoipa::path(
    post,
    path = "/v1/nodes/secrets/resolve",
    tag = "nodes",
    request_body = ResolveSecrets,
    responses(
        (status = 200, description = "The values found", body = ResolvedSecrets),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`, `secret_not_granted`"),
        (status = 404, description = "Unknown agent"),
        (status = 422, description = "`invalid`"),
        (status = 501, description = "`not_configured`: no vault key"),
    ),
    security(("bearer" = []))
)]
async fn node_resolve_secrets(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(body): JsonBody<ResolveSecrets>,
) -> Result<Json<ResolvedSecrets>, ApiError> {
    if body.names.is_empty() || body.names.len() > 50 || !body.names.iter().all(|n| valid_name(n)) {
        return Err(ApiError::invalid("names: 1-50 secret names"));
    }
    delta_http::record_ids(None, Some(&body.agent_id), None);
    let agent = crate::nodeauth::placed_agent(&state, &node, &body.agent_id).await?;
    let tenant = agent.tenant_id;
    let granted = agent.grants.http.map(|h| h.secrets).unwrap_or_default();
    if let Some(name) = body.names.iter().find(|n| !granted.contains(n)) {
        tracing::warn!(node = %node.node_id, agent = %body.agent_id, secret = %name,
            "a node asked for a secret the agent is not granted");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "secret_not_granted",
            format!("the agent's http grant does not list secret {name}"),
        ));
    }
    let values = open_many(&state, &tenant, &body.names).await?;
    Ok(Json(ResolvedSecrets { values }))
}
