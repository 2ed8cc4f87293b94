//! Node identity: one credential per node, and what a node may touch.
//!
//! # Credentials
//! An operator enrols a node (`POST /v1/operator/nodes`,
//! [`crate::node_enrolment`]) and gets its
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
//! Calls the other way (control plane to node) carry a separate token, one
//! per node ([`node_api_token`]): HMAC-SHA256 of the node id under the
//! control plane's `node_api_secret_file`. A node holds only its own (its
//! `token_file`), so neither its credential nor its token can call another
//! node.
//!
//! The operator's routes that issue, list and revoke credentials are in
//! [`crate::node_enrolment`]; this module is the layer below handlers
//! (ARCHITECTURE.md, "control plane layers").

use std::collections::{HashMap, HashSet};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use delta_http::ApiError;
use delta_node_api::RunUsage;
use rand::RngCore as _;
use serde_json::json;
use sqlx::Row as _;

use crate::auth::sha256_hex;
use crate::db::{Db, now_ms};
use crate::state::AppState;

/// Prefix of credential ids (and so of credentials).
pub const CREDENTIAL_PREFIX: &str = "ncr_";
/// Ids and hashes looked up per statement.
const CHUNK: usize = 500;

/// Prefix of the tokens the control plane presents to nodes.
pub const NODE_API_TOKEN_PREFIX: &str = "nat_";

/// The token the control plane presents to `node_id` (and so what that
/// node's `token_file` must hold): `nat_` and the hex HMAC-SHA256 of the
/// node id under the fleet secret. Derived rather than stored, so that the
/// control plane keeps one secret for the whole fleet while each node can
/// be called only with its own token: holding one node's token says
/// nothing about another's.
pub fn node_api_token(secret: &[u8], node_id: &str) -> String {
    let mut data = b"delta node api token v1\0".to_vec();
    data.extend_from_slice(node_id.as_bytes());
    format!(
        "{NODE_API_TOKEN_PREFIX}{}",
        hex::encode(crate::auth::hmac_sha256(secret, &data))
    )
}

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

/// The node a presented credential is bound to, if it is valid now
/// (known, secret matching, not revoked, not expired).
pub async fn authenticate(
    db: &Db,
    presented: &str,
    now: i64,
) -> Result<Option<NodeAuth>, sqlx::Error> {
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

/// An agent placed on the credential's node, as a node-facing capability
/// endpoint needs it.
#[derive(Debug, Clone)]
pub struct PlacedAgent {
    /// Its tenant: what every query the endpoint makes is scoped by.
    pub tenant_id: String,
    /// Its name (a message's sender).
    pub name: String,
    /// What it is granted. A row this plane wrote always parses; were it
    /// not to, nothing is granted (fail closed).
    pub grants: crate::agents::AgentGrants,
}

/// [`require_agent_here`] for the capability endpoints (kv, messages,
/// secrets, message admission), in one read: the agent exists (404) and
/// is placed on the credential's node (403 `agent_not_here`); its tenant,
/// name and grants.
pub async fn placed_agent(
    state: &AppState,
    node: &NodeAuth,
    agent_id: &str,
) -> Result<PlacedAgent, ApiError> {
    let row = sqlx::query("SELECT tenant_id, name, node_id, grants FROM agents WHERE id = $1")
        .bind(agent_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let on: Option<String> = row.try_get("node_id").map_err(ApiError::internal)?;
    if on.as_deref() != Some(node.node_id.as_str()) {
        return Err(not_here());
    }
    let grants: String = row.try_get("grants").map_err(ApiError::internal)?;
    Ok(PlacedAgent {
        tenant_id: row.try_get("tenant_id").map_err(ApiError::internal)?,
        name: row.try_get("name").map_err(ApiError::internal)?,
        grants: serde_json::from_str(&grants).unwrap_or_default(),
    })
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

// ---- node ids and URLs ----------------------------------------------------

/// Whether `url` is https, or plain http to a loopback host (a node on
/// the same machine, as `delta up` runs it).
pub fn secure_or_loopback(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if u.scheme() == "https" {
        return true;
    }
    let Some(host) = u.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether `id` is a well-formed node id.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A node URL the control plane will call: well-formed, and https unless
/// loopback or allowed in the configuration.
pub fn check_node_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    if !valid_node_url(url) {
        return Err(ApiError::invalid(
            "url must be an http(s) URL with a host and no credentials",
        ));
    }
    if !state.config.allow_plain_http_nodes && !secure_or_loopback(url) {
        return Err(ApiError::invalid(
            "a node's url must be https (plain http only on loopback, or with \
             allow_plain_http_nodes in control.toml)",
        ));
    }
    Ok(())
}

/// Whether `url` is an http(s) URL with a host and no credentials in it.
pub fn valid_node_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
    }) && url.len() <= 2048
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_its_id_a_dot_and_a_32_byte_secret() {
        let (id, credential, hash) = mint();
        assert!(
            id.starts_with(CREDENTIAL_PREFIX) && id.len() == 4 + 16,
            "{id}"
        );
        let (cid, secret) = credential.split_once('.').expect("a dot");
        assert_eq!(cid, id);
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).expect("base64url").len(), 32);
        assert_eq!(hash, sha256_hex(secret));
        assert!(!hash.contains(secret));
        let (other, _, _) = mint();
        assert_ne!(id, other);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://node.example.com:7421",
            "http://127.0.0.1:7421",
            "http://127.9.0.1",
            "http://[::1]:7421",
            "http://localhost:7421",
        ] {
            assert!(secure_or_loopback(ok), "{ok}");
        }
        for bad in [
            "http://node.example.com:7421",
            "http://10.0.0.5:7421",
            "http://169.254.169.254/latest",
            "http://127.0.0.1.example.com",
            "not a url",
        ] {
            assert!(!secure_or_loopback(bad), "{bad}");
        }
    }
}
