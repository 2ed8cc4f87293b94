//! Agents' durable key-value state (`delta:agent/kv`), kept in this
//! database by [`delta_kv::KvStore`] (the rules live there).
//!
//! # Nodes
//! A node reaches an agent's state over `POST /v1/nodes/kv/{get,set,delete,
//! list}` with its credential. It may touch only the state of an agent that
//! is placed on it (as with leases: 403 `agent_not_here`) and that has the
//! `kv` grant (403 `kv_not_granted`): a stolen node credential reaches that
//! node's agents' state, not the fleet's. The tenant is the agent row's,
//! never the node's word.
//!
//! # People
//! A tenant's members read an agent's state (`GET /v1/agents/{id}/kv`, one
//! key at `GET /v1/agents/{id}/kv/{key}`), its admins change it (`PUT`,
//! `DELETE`; audited, without the value). Keys in the path are
//! percent-encoded (a `/` in a key is `%2F`); another tenant's agent is a
//! 404 like an unknown one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use delta_kv::KvError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::load_agent;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::nodeauth::NodeAuth;
use crate::state::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(node_kv_get))
        .routes(routes!(node_kv_set))
        .routes(routes!(node_kv_delete))
        .routes(routes!(node_kv_list))
        .routes(routes!(list_keys))
        .routes(routes!(get_key, put_key, delete_key))
}

/// The API error for a store error.
fn api_error(e: KvError) -> ApiError {
    match e {
        KvError::InvalidKey(why) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_key",
            format!("invalid key: {why}"),
        ),
        KvError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the value is over the limit of {limit} bytes"),
        )
        .details(json!({ "limit": limit })),
        KvError::QuotaExceeded(why) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "quota_exceeded",
            format!("the agent's state quota: {why}"),
        ),
        KvError::Conflict { current } => ApiError::conflict(
            "version_conflict",
            format!("the key's current version is {current} (0: it does not exist)"),
        )
        .details(json!({ "current_version": current })),
        // Only a tenant mismatch on an agent id: not ours, so not found.
        KvError::NotAllowed => ApiError::not_found("agent"),
        KvError::NotConfigured => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_configured",
            "no kv store is configured",
        ),
        KvError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the state store did not answer; retry",
        ),
    }
}

fn decode_value(b64: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(b64)
        .map_err(|_| ApiError::invalid("value_base64 is not valid base64"))
}

// ---- nodes -------------------------------------------------------------------

/// The tenant of `agent_id` if the node may touch its state: the agent
/// exists (404), is placed on this node (403 `agent_not_here`) and has the
/// `kv` grant (403 `kv_not_granted`).
async fn agent_for_node(
    state: &AppState,
    node: &NodeAuth,
    agent_id: &str,
) -> Result<String, ApiError> {
    record_ids(None, Some(agent_id), None);
    let agent = crate::nodeauth::placed_agent(state, node, agent_id).await?;
    if !agent.grants.kv {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "kv_not_granted",
            "that agent has no kv grant",
        ));
    }
    Ok(agent.tenant_id)
}

/// Body of `POST /v1/nodes/kv/get` and `/v1/nodes/kv/delete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeKvKey {
    /// The agent (placed on the calling node).
    pub agent_id: String,
    /// The key.
    pub key: String,
}

/// An entry as a node gets it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeKvEntry {
    /// The key.
    pub key: String,
    /// The value, base64.
    pub value_base64: String,
    /// Its version.
    pub version: u64,
    /// When it was written.
    pub updated_at_ms: i64,
}

/// Answer of `POST /v1/nodes/kv/get`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeKvGot {
    /// None: no such key.
    pub entry: Option<NodeKvEntry>,
}

/// A node reads one key of an agent placed on it.
#[utoipa::path(
    post,
    path = "/v1/nodes/kv/get",
    tag = "nodes",
    request_body = NodeKvKey,
    responses(
        (status = 200, description = "The entry, or none", body = NodeKvGot),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`, `kv_not_granted`"),
        (status = 404, description = "Unknown agent"),
        (status = 422, description = "`invalid_key`"),
    ),
    security(("bearer" = []))
)]
async fn node_kv_get(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(body): JsonBody<NodeKvKey>,
) -> Result<Json<NodeKvGot>, ApiError> {
    let tenant = agent_for_node(&state, &node, &body.agent_id).await?;
    let entry = state
        .kv
        .get(&tenant, &body.agent_id, &body.key)
        .await
        .map_err(api_error)?;
    Ok(Json(NodeKvGot {
        entry: entry.map(|e| NodeKvEntry {
            key: e.key,
            value_base64: STANDARD.encode(e.value),
            version: e.version,
            updated_at_ms: e.updated_at_ms,
        }),
    }))
}

/// Body of `POST /v1/nodes/kv/set`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeKvSet {
    /// The agent (placed on the calling node).
    pub agent_id: String,
    /// The key.
    pub key: String,
    /// The value, base64.
    pub value_base64: String,
    /// Compare-and-swap: store only if the current version is this (0:
    /// only if the key does not exist).
    pub expected_version: Option<u64>,
}

/// A stored value's new version.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvWritten {
    /// The key.
    pub key: String,
    /// Its new version.
    pub version: u64,
}

/// A node stores one key of an agent placed on it (compare-and-swap with
/// `expected_version`).
#[utoipa::path(
    post,
    path = "/v1/nodes/kv/set",
    tag = "nodes",
    request_body = NodeKvSet,
    responses(
        (status = 200, description = "Stored", body = KvWritten),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`, `kv_not_granted`"),
        (status = 404, description = "Unknown agent"),
        (status = 409, description = "`version_conflict` (details.current_version)"),
        (status = 413, description = "`too_large` (details.limit)"),
        (status = 422, description = "`invalid_key`, `quota_exceeded`, `invalid`"),
    ),
    security(("bearer" = []))
)]
async fn node_kv_set(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(body): JsonBody<NodeKvSet>,
) -> Result<Json<KvWritten>, ApiError> {
    let tenant = agent_for_node(&state, &node, &body.agent_id).await?;
    let value = decode_value(&body.value_base64)?;
    let version = state
        .kv
        .set(
            &tenant,
            &body.agent_id,
            &body.key,
            &value,
            body.expected_version,
        )
        .await
        .map_err(api_error)?;
    Ok(Json(KvWritten {
        key: body.key,
        version,
    }))
}

/// Answer of `POST /v1/nodes/kv/delete`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeKvDeleted {
    /// Whether the key existed.
    pub existed: bool,
}

/// A node deletes one key of an agent placed on it.
#[utoipa::path(
    post,
    path = "/v1/nodes/kv/delete",
    tag = "nodes",
    request_body = NodeKvKey,
    responses(
        (status = 200, description = "Deleted (or absent)", body = NodeKvDeleted),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`, `kv_not_granted`"),
        (status = 404, description = "Unknown agent"),
        (status = 422, description = "`invalid_key`"),
    ),
    security(("bearer" = []))
)]
async fn node_kv_delete(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(body): JsonBody<NodeKvKey>,
) -> Result<Json<NodeKvDeleted>, ApiError> {
    let tenant = agent_for_node(&state, &node, &body.agent_id).await?;
    let existed = state
        .kv
        .delete(&tenant, &body.agent_id, &body.key)
        .await
        .map_err(api_error)?;
    Ok(Json(NodeKvDeleted { existed }))
}

/// Body of `POST /v1/nodes/kv/list`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeKvList {
    /// The agent (placed on the calling node).
    pub agent_id: String,
    /// Keys starting with this (default: all).
    #[serde(default)]
    pub prefix: String,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Keys per page (0: 100; at most 1000).
    #[serde(default)]
    pub limit: u32,
}

/// Answer of `POST /v1/nodes/kv/list`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeKvPage {
    /// Keys, in byte order.
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; none on the last one.
    pub next_cursor: Option<String>,
}

/// A node lists keys of an agent placed on it.
#[utoipa::path(
    post,
    path = "/v1/nodes/kv/list",
    tag = "nodes",
    request_body = NodeKvList,
    responses(
        (status = 200, description = "One page", body = NodeKvPage),
        (status = 401, description = "No valid node credential"),
        (status = 403, description = "`agent_not_here`, `kv_not_granted`"),
        (status = 404, description = "Unknown agent"),
        (status = 422, description = "`invalid_key`"),
    ),
    security(("bearer" = []))
)]
async fn node_kv_list(
    State(state): State<AppState>,
    node: NodeAuth,
    JsonBody(body): JsonBody<NodeKvList>,
) -> Result<Json<NodeKvPage>, ApiError> {
    let tenant = agent_for_node(&state, &node, &body.agent_id).await?;
    let page = state
        .kv
        .list(
            &tenant,
            &body.agent_id,
            &body.prefix,
            body.cursor.as_deref(),
            body.limit,
        )
        .await
        .map_err(api_error)?;
    Ok(Json(NodeKvPage {
        keys: page.items.into_iter().map(|k| k.key).collect(),
        next_cursor: page.next,
    }))
}

// ---- people ------------------------------------------------------------------

/// `?prefix=&limit=&cursor=` of `GET /v1/agents/{id}/kv`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Only keys starting with this (at most 512 bytes, no control
    /// characters).
    #[param(max_length = 512, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub prefix: Option<String>,
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "crate::pagination::page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given: the hex of the last
    /// key's UTF-8 bytes. The pattern admits exactly the hex of well-formed
    /// UTF-8 (RFC 3629's byte ranges), so every string it admits is a
    /// position in the list.
    #[param(
        max_length = 1024,
        pattern = r"^(?:[0-7][0-9a-f]|(?:c[2-9a-f]|d[0-9a-f])[89ab][0-9a-f]|e0[ab][0-9a-f][89ab][0-9a-f]|(?:e[1-9a-cef])(?:[89ab][0-9a-f]){2}|ed[89][0-9a-f][89ab][0-9a-f]|f0[9ab][0-9a-f](?:[89ab][0-9a-f]){2}|f[1-3](?:[89ab][0-9a-f]){3}|f48[0-9a-f](?:[89ab][0-9a-f]){2})+$"
    )]
    pub cursor: Option<String>,
}

/// A key as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvKey {
    /// The key.
    pub key: String,
    /// Its version.
    pub version: u64,
    /// Bytes of its value.
    pub size: u64,
    /// When it was written.
    pub updated_at_ms: i64,
}

/// A page of an agent's keys, in byte order.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvKeyPage {
    /// The keys.
    pub items: Vec<KvKey>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An agent's keys (not their values).
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/kv",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id"), KeyQuery),
    responses(
        (status = 200, description = "One page of keys", body = KvKeyPage),
        (status = 400, description = "Malformed cursor or limit"),
        (status = 404, description = "No such agent in this tenant"),
        (status = 422, description = "`invalid_key` (the prefix)"),
    ),
    security(("bearer" = []))
)]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<KvKeyPage>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    record_ids(None, Some(&id), None);
    let agent = load_agent(&state, &principal.tenant_id, &id).await?;
    let after = match &query.cursor {
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("malformed cursor (pass next_cursor as given)")
                })?,
        ),
        None => None,
    };
    let page = state
        .kv
        .list(
            &agent.tenant_id,
            &agent.id,
            query.prefix.as_deref().unwrap_or(""),
            after.as_deref(),
            query.limit.unwrap_or(crate::pagination::DEFAULT_LIMIT),
        )
        .await
        .map_err(api_error)?;
    Ok(Json(KvKeyPage {
        next_cursor: page.next.map(hex::encode),
        items: page
            .items
            .into_iter()
            .map(|k| KvKey {
                key: k.key,
                version: k.version,
                size: k.size,
                updated_at_ms: k.updated_at_ms,
            })
            .collect(),
    }))
}

/// One key's value.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvValue {
    /// The key.
    pub key: String,
    /// The value as text, when it is UTF-8.
    pub value: Option<String>,
    /// The value, base64 (always).
    pub value_base64: String,
    /// Its version.
    pub version: u64,
    /// When it was written.
    pub updated_at_ms: i64,
}

/// One key of an agent.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/kv/{key}",
    tag = "agents",
    params(
        ("id" = String, Path, description = "Agent id"),
        ("key" = String, Path, description = "The key, percent-encoded"),
    ),
    responses(
        (status = 200, description = "The value", body = KvValue),
        (status = 404, description = "No such agent in this tenant, or no such key"),
        (status = 422, description = "`invalid_key`"),
    ),
    security(("bearer" = []))
)]
async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<KvValue>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    record_ids(None, Some(&id), None);
    let agent = load_agent(&state, &principal.tenant_id, &id).await?;
    let entry = state
        .kv
        .get(&agent.tenant_id, &agent.id, &key)
        .await
        .map_err(api_error)?
        .ok_or_else(|| ApiError::not_found("key"))?;
    Ok(Json(KvValue {
        key: entry.key,
        value_base64: STANDARD.encode(&entry.value),
        value: String::from_utf8(entry.value).ok(),
        version: entry.version,
        updated_at_ms: entry.updated_at_ms,
    }))
}

/// Body of `PUT /v1/agents/{id}/kv/{key}`: exactly one of `value` and
/// `value_base64`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutKv {
    /// The value as text.
    pub value: Option<String>,
    /// The value as base64 (for bytes that are not text).
    pub value_base64: Option<String>,
    /// Compare-and-swap: store only if the current version is this (0: only
    /// if the key does not exist); 409 `version_conflict` otherwise.
    pub expected_version: Option<u64>,
}

/// Set one key of an agent (tenant admins).
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/kv/{key}",
    tag = "agents",
    params(
        ("id" = String, Path, description = "Agent id"),
        ("key" = String, Path, description = "The key, percent-encoded"),
    ),
    request_body = PutKv,
    responses(
        (status = 200, description = "Stored", body = KvWritten),
        (status = 403, description = "Not a tenant admin, or no `agents:write` scope"),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`version_conflict` (details.current_version)"),
        (status = 413, description = "`too_large` (details.limit)"),
        (status = 422, description = "`invalid_key`, `quota_exceeded`, `invalid`"),
    ),
    security(("bearer" = []))
)]
async fn put_key(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path((id, key)): Path<(String, String)>,
    JsonBody(body): JsonBody<PutKv>,
) -> Result<Json<KvWritten>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    let agent = load_agent(&state, &principal.tenant_id, &id).await?;
    let value = match (body.value, body.value_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => decode_value(&b64)?,
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of value and value_base64",
            ));
        }
    };
    let version = state
        .kv
        .set(
            &agent.tenant_id,
            &agent.id,
            &key,
            &value,
            body.expected_version,
        )
        .await
        .map_err(api_error)?;
    audit::record(
        &state.db,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "agent_kv_set",
        json!({ "agent_id": agent.id, "key": key, "version": version, "size": value.len() }),
        Some(&rid.0),
    )
    .await;
    Ok(Json(KvWritten { key, version }))
}

/// Delete one key of an agent (tenant admins).
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}/kv/{key}",
    tag = "agents",
    params(
        ("id" = String, Path, description = "Agent id"),
        ("key" = String, Path, description = "The key, percent-encoded"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a tenant admin, or no `agents:write` scope"),
        (status = 404, description = "No such agent in this tenant, or no such key"),
        (status = 422, description = "`invalid_key`"),
    ),
    security(("bearer" = []))
)]
async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    let agent = load_agent(&state, &principal.tenant_id, &id).await?;
    let existed = state
        .kv
        .delete(&agent.tenant_id, &agent.id, &key)
        .await
        .map_err(api_error)?;
    if !existed {
        return Err(ApiError::not_found("key"));
    }
    audit::record(
        &state.db,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "agent_kv_deleted",
        json!({ "agent_id": agent.id, "key": key }),
        Some(&rid.0),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
