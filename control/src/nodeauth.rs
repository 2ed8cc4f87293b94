//! Node identity: one credential per node, and what a node may touch.
//!
//! # Credentials
//! An operator enrols a node (`POST /v1/operator/nodes`) and gets its
//! credential once: `ncr_<16 hex>.<secret>`, the part before the dot being
//! the credential's id, the secret 32 random bytes (URL-safe base64). The
//! control plane keeps the SHA-256 of the secret (a 256-bit random value:
//! a fast hash is enough) and compares in constant time. A credential is
//! bound to one node id; every node-facing route takes the node id from
//! the credential ([`NodeAuth`]), and a body or path naming another node
//! is refused (403 `wrong_node`). Rotation issues another credential for
//! the same node while the older ones keep working, until they are retired
//! (`retire_others_after_secs`: their expiry) or revoked; so a node's
//! credential can be replaced without downtime.
//!
//! # Scope
//! A node acts only for the agents placed on it ([`require_agent_here`]:
//! 403 `agent_not_here`) and reports usage only for those agents or for
//! runs the control plane recorded on it ([`require_usage_here`]). A
//! stolen node credential therefore reaches that node's agents and runs,
//! not the fleet's.
//!
//! Calls the other way (control plane to node) carry a separate secret,
//! `node_api_token_file`: a node's credential cannot call other nodes.

use std::collections::{HashMap, HashSet};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use delta_http::{ApiError, JsonBody, RequestId};
use delta_node_api::RunUsage;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::auth::{Principal, sha256_hex};
use crate::db::{Db, now_ms};
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// Prefix of credential ids (and so of credentials).
pub const CREDENTIAL_PREFIX: &str = "ncr_";
/// Ids and hashes looked up per statement.
const CHUNK: usize = 500;

/// Extractor: the request carries a valid node credential (401
/// otherwise); yields the node it is bound to. An extractor rather than a
/// check in the handler, so that it runs before the body is parsed.
#[derive(Debug, Clone)]
pub struct NodeAuth {
    /// The node the credential belongs to: the only node id this request
    /// may act as.
    pub node_id: String,
    /// The credential presented.
    pub credential_id: String,
}

impl FromRequestParts<AppState> for NodeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Idempotency's middleware authenticates first and leaves the
        // answer here, so that a request is looked up once.
        if let Some(node) = parts.extensions.get::<NodeAuth>() {
            return Ok(node.clone());
        }
        let found = match delta_http::bearer(&parts.headers) {
            Some(presented) => authenticate(&state.db, presented, now_ms())
                .await
                .map_err(ApiError::internal)?,
            None => None,
        };
        let label = if found.is_some() {
            "node_ok"
        } else {
            "node_unauthorized"
        };
        state.metrics.auth.with_label_values(&[label]).inc();
        let node = found.ok_or_else(ApiError::unauthorized)?;
        parts.extensions.insert(node.clone());
        Ok(node)
    }
}

/// A new credential: its id and the whole credential (shown once).
fn mint() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = format!("{CREDENTIAL_PREFIX}{}", hex::encode(id));
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let hash = sha256_hex(&secret);
    (id.clone(), format!("{id}.{secret}"), hash)
}

/// The node a presented credential is bound to, if it is valid now
/// (known, secret matching, not revoked, not expired).
pub async fn authenticate(db: &Db, presented: &str, now: i64) -> Result<Option<NodeAuth>, sqlx::Error> {
    let Some((id, secret)) = presented.split_once('.') else {
        return Ok(None);
    };
    if !id.starts_with(CREDENTIAL_PREFIX) || id.len() > 64 || secret.is_empty() {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT node_id, secret_hash, expires_at_ms, revoked_at_ms \
         FROM node_credentials WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored: String = row.try_get("secret_hash")?;
    // Constant time: the comparison must not tell how much of a guess was right.
    let matches = delta_http::secret_matches(&sha256_hex(secret), &stored);
    let expires: Option<i64> = row.try_get("expires_at_ms")?;
    let revoked: Option<i64> = row.try_get("revoked_at_ms")?;
    if !matches || revoked.is_some() || expires.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    Ok(Some(NodeAuth {
        node_id: row.try_get("node_id")?,
        credential_id: id.to_owned(),
    }))
}

// ---- scope -----------------------------------------------------------------

/// 403 `wrong_node` unless `claimed` (a node id in a body or path) is the
/// credential's node.
pub fn require_self(node: &NodeAuth, claimed: &str) -> Result<(), ApiError> {
    if node.node_id == claimed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_node",
            "this credential belongs to another node id",
        ))
    }
}

fn not_here() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "agent_not_here",
        "that agent is not placed on this node",
    )
}

/// The credential's node may act for `agent_id` (leases, balances, token
/// requests): the agent exists (404 otherwise) and is placed on it (403
/// `agent_not_here`). `claimed` is the node id the body names, if any.
pub async fn require_agent_here(
    state: &AppState,
    node: &NodeAuth,
    claimed: Option<&str>,
    agent_id: &str,
) -> Result<(), ApiError> {
    if let Some(claimed) = claimed {
        require_self(node, claimed)?;
    }
    let placed: Option<Option<String>> =
        sqlx::query_scalar("SELECT node_id FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    match placed {
        None => Err(ApiError::not_found("agent")),
        Some(Some(on)) if on == node.node_id => Ok(()),
        Some(_) => Err(not_here()),
    }
}

/// The credential's node may report every record of a usage batch: each
/// names a run the control plane recorded on this node (it held the run,
/// wherever its agent is now, or if it was deleted since), or an agent
/// placed on it (a run whose report beat the control plane's row). A
/// record naming an agent placed elsewhere refuses the batch (403
/// `agent_not_here`), one naming an agent nobody knows 422
/// `unknown_agent`: nothing of the batch is stored either way.
pub async fn require_usage_here(
    state: &AppState,
    node: &NodeAuth,
    records: &[RunUsage],
) -> Result<(), ApiError> {
    let db = &state.db;
    let mut run_ids: Vec<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    let mut held: HashSet<String> = HashSet::new();
    for chunk in run_ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, node_id FROM runs WHERE id IN ({})",
            db.param_list(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(db.pool()).await.map_err(ApiError::internal)? {
            let on: String = row.try_get("node_id").map_err(ApiError::internal)?;
            if on == node.node_id {
                held.insert(row.try_get("id").map_err(ApiError::internal)?);
            }
        }
    }
    let mut agent_ids: Vec<&str> = records
        .iter()
        .filter(|r| !held.contains(&r.run_id))
        .map(|r| r.agent_id.as_str())
        .collect();
    agent_ids.sort_unstable();
    agent_ids.dedup();
    let mut placed: HashMap<String, Option<String>> = HashMap::new();
    for chunk in agent_ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, node_id FROM agents WHERE id IN ({})",
            db.param_list(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(db.pool()).await.map_err(ApiError::internal)? {
            placed.insert(
                row.try_get("id").map_err(ApiError::internal)?,
                row.try_get("node_id").map_err(ApiError::internal)?,
            );
        }
    }
    for agent in agent_ids {
        match placed.get(agent) {
            Some(Some(on)) if *on == node.node_id => {}
            Some(_) => {
                tracing::warn!(node = %node.node_id, agent, "usage for an agent not on this node refused");
                return Err(not_here().details(json!({ "agent_id": agent })));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_agent",
                    "a record names an agent the control plane does not know, for a run it \
                     did not record on this node",
                )
                .details(json!({ "agent_id": agent })));
            }
        }
    }
    Ok(())
}

// ---- operator routes -------------------------------------------------------

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enrol))
        .routes(routes!(rotate, list_credentials))
        .routes(routes!(revoke))
}

/// Body of `POST /v1/operator/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// The node's id (`node_id` in its configuration).
    pub node_id: String,
    /// Where the control plane reaches it (default: what its first
    /// heartbeat says).
    #[serde(default)]
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
    #[serde(default)]
    pub retire_others_after_secs: Option<u64>,
}

fn valid_node_id(id: &str) -> Result<(), ApiError> {
    if crate::nodes::valid_node_id(id) {
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

/// Issue a credential for `node_id` (enrolled or not: the caller checks):
/// its id and the credential, whose secret is stored only hashed.
pub async fn insert_credential(
    conn: &mut sqlx::AnyConnection,
    node_id: &str,
    now: i64,
) -> Result<(String, String), sqlx::Error> {
    let (id, credential, hash) = mint();
    sqlx::query(
        "INSERT INTO node_credentials (id, node_id, secret_hash, created_at_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(node_id)
    .bind(&hash)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok((id, credential))
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
            crate::nodes::check_node_url(&state, u)?;
            u.to_owned()
        }
        None => String::new(),
    };
    let now = now_ms();
    let mut tx = state.db.pool().begin().await.map_err(ApiError::internal)?;
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
        return Err(ApiError::conflict(
            "node_enrolled",
            "this node has a working credential: rotate it with \
             POST /v1/operator/nodes/{id}/credentials (delta nodes credentials ID --rotate)",
        ));
    }
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
    if !url.is_empty() {
        // A node known from before (the shared-token days): the operator
        // may set where it is.
        sqlx::query("UPDATE nodes SET url = $1 WHERE id = $2")
            .bind(&url)
            .bind(&body.node_id)
            .execute(&mut *tx)
            .await
            .map_err(ApiError::internal)?;
    }
    let (id, credential) = insert_credential(&mut *tx, &body.node_id, now)
        .await
        .map_err(ApiError::internal)?;
    audit::record_in(
        &mut *tx,
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
            node_id: body.node_id,
            credential_id: id,
            credential,
            others_expire_at_ms: None,
        }),
    )
        .into_response())
}

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
    let now = now_ms();
    let retire_at = rotation.retire_others_after_secs.map(|secs| {
        now.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    let mut tx = state.db.pool().begin().await.map_err(ApiError::internal)?;
    let (id, credential) = insert_credential(&mut *tx, &node_id, now)
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
        &mut *tx,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_its_id_a_dot_and_a_32_byte_secret() {
        let (id, credential, hash) = mint();
        assert!(id.starts_with(CREDENTIAL_PREFIX) && id.len() == 4 + 16, "{id}");
        let (cid, secret) = credential.split_once('.').expect("a dot");
        assert_eq!(cid, id);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(secret).expect("base64url").len(),
            32
        );
        assert_eq!(hash, sha256_hex(secret));
        assert!(!hash.contains(secret));
        let (other, _, _) = mint();
        assert_ne!(id, other);
    }
}
