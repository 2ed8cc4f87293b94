//! Components: the code agents and verifiers run.
//!
//! `POST /v1/components` takes a component's raw bytes (or a JavaScript
//! module, prepared into one here); it is named by its sha256 (computed
//! here), kept once in `<state_dir>/components/` and recorded per tenant.
//! What can be checked without compiling (structure, size bounds, world and
//! imports) is checked here; the node compiles and validates it when an
//! agent using it is deployed (a node's 422 is the client's 422
//! `invalid_component`). Uploading needs `admin` and `agents:write`; listing
//! `member` and `agents:read`.

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, RequestId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};

/// The `world` of a component no node has validated yet.
pub const UNCHECKED: &str = "unchecked";

/// A component as the tenant sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Component {
    /// sha256 of the bytes, hex: the component's name.
    pub sha256: String,
    /// Size, bytes.
    pub size: i64,
    /// `unchecked` until a node validated it (at a deployment), then
    /// `agent` or `verifier`.
    pub world: String,
    /// When this tenant first uploaded it.
    pub created_at_ms: i64,
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload_component, list_components))
}

/// Upload a component (raw bytes), or a JavaScript module
/// (`Content-Type: text/javascript`) that is prepared into one here.
///
/// Content-addressed: the same bytes uploaded again answer 200 with the
/// same record (for a script, the prepared component's bytes). Only a cheap check happens here (a WebAssembly component,
/// not a core module); a node validates and compiles it when an agent using
/// it is deployed.
#[utoipa::path(
    post,
    path = "/v1/components",
    tag = "agents",
    request_body(content = Vec<u8>, content_type = "application/wasm",
                 description = "The component's bytes"),
    responses(
        (status = 201, description = "Stored", body = Component),
        (status = 200, description = "This tenant had it already", body = Component),
        (status = 413, description = "Larger than max_component_bytes, or past the tenant's component storage quota (`quota_exceeded`, with `details {quota, limit, used}`)"),
        (status = 422, description = "Not a WebAssembly component, over a structural bound, or not a Delta world (`invalid_component`), or a script that does not parse, load or export `run`/`verify` (`invalid_script`)"),
        (status = 501, description = "A JavaScript upload to a control plane without a script preparer (`not_configured`)"),
    ),
    security(("bearer" = []))
)]
async fn upload_component(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    let bytes = match read_limited(&headers, body, state.config.max_component_bytes).await {
        Ok(bytes) => bytes,
        Err(refused) => return Ok(refused),
    };
    let bytes = if is_javascript(&headers) {
        prepare_script(&state, &bytes).await?
    } else {
        check_component_header(&bytes)?;
        bytes
    };
    // A prepared script is a component like any other: the same checks.
    precheck_component(bytes.clone()).await?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = i64::try_from(bytes.len()).map_err(ApiError::internal)?;
    let had = get_component(&state, &principal.tenant_id, &sha256)
        .await?
        .is_some();
    if !had {
        // Before the file is written: a tenant over its quota must not fill
        // the disk with files no row names. Checked again under the lock.
        let mut conn = state
            .db
            .pool()
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        crate::quotas::check_component_bytes(
            &mut conn,
            &state,
            &principal.tenant_id,
            size.unsigned_abs(),
        )
        .await?;
    }
    let path = component_path(&state, &sha256);
    let existed = path.exists();
    store_component_file(path, bytes).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    if !had {
        crate::quotas::lock_tenant(&mut tx, &principal.tenant_id).await?;
    }
    if !had
        && let Err(e) = crate::quotas::check_component_bytes(
            &mut tx,
            &state,
            &principal.tenant_id,
            size.unsigned_abs(),
        )
        .await
    {
        // A concurrent upload took the room meanwhile: the file this one
        // wrote goes (one that was there is some tenant's).
        drop(tx);
        if !existed {
            let _ = tokio::fs::remove_file(component_path(&state, &sha256)).await;
        }
        return Err(e);
    }
    // Another tenant's deployment may have validated the same bytes.
    let inserted = sqlx::query(
        "INSERT INTO components (tenant_id, sha256, size, world, created_at_ms) \
         VALUES ($1, $2, $3, COALESCE((SELECT c.world FROM components c \
                                       WHERE c.sha256 = $2 AND c.world <> $4 LIMIT 1), $4), $5) \
         ON CONFLICT (tenant_id, sha256) DO NOTHING",
    )
    .bind(&principal.tenant_id)
    .bind(&sha256)
    .bind(size)
    .bind(UNCHECKED)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if inserted == 1 {
        audit::record_in(
            &mut tx,
            Some(&principal.tenant_id),
            Some(&principal.user_id),
            "component_uploaded",
            json!({ "sha256": sha256, "size": size }),
            Some(&rid.0),
        )
        .await?;
    }
    tx.commit().await.map_err(ApiError::internal)?;
    let component = get_component(&state, &principal.tenant_id, &sha256)
        .await?
        .ok_or_else(|| ApiError::internal("component row vanished"))?;
    let status = if inserted == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(component)).into_response())
}

/// List this tenant's components, oldest first.
#[utoipa::path(
    get,
    path = "/v1/components",
    tag = "agents",
    params(PageQuery),
    responses((status = 200, description = "A page", body = Page<Component>)),
    security(("bearer" = []))
)]
async fn list_components(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Component>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(
        "SELECT sha256, size, world, created_at_ms FROM components \
         WHERE tenant_id = $1 AND (created_at_ms, sha256) > ($2, $3) \
         ORDER BY created_at_ms, sha256 LIMIT $4",
    )
    .bind(&principal.tenant_id)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(component_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::from_rows(items, limit, |c| {
        (c.created_at_ms, c.sha256.clone())
    })))
}

/// The body, up to `limit` bytes: refused from Content-Length before
/// reading, and while reading a body without one. (The router's default
/// limit is for JSON; `routes()` has no configuration to build a layer from,
/// so the upload enforces `max_component_bytes` itself.) A refusal is the
/// error response, with `Connection: close`: the rest of the body is never
/// read, so the connection cannot carry another request, and a client must
/// not put it back in its pool.
async fn read_limited(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, Response> {
    use futures_util::StreamExt as _;
    let refuse = |e: ApiError| {
        let mut response = e.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let too_large = || {
        refuse(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a component may have at most {limit} bytes"),
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf =
        Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or_default());
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| refuse(ApiError::bad_request(format!("reading the body: {e}"))))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Whether the upload is a JavaScript module (`text/javascript` or
/// `application/javascript`) rather than component bytes.
fn is_javascript(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "text/javascript" || v == "application/javascript")
}

/// Turn a JavaScript module into a pre-initialised QuickJS component (an
/// agent when it exports `run`, else a verifier exporting `verify`), stored
/// and deployed from then on like any uploaded component. A script that
/// does not parse, load or export an entry is 422 `invalid_script` with the
/// reason (`details.code`, and `line`/`column` for a syntax error); one over
/// the preparer's source limit is 413.
async fn prepare_script(state: &AppState, bytes: &[u8]) -> Result<Bytes, ApiError> {
    use crate::scripts::ScriptError;
    let preparer = state.scripts.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_configured",
            "this control plane does not prepare JavaScript uploads; upload a component",
        )
    })?;
    let source = std::str::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_script",
            "the script is not UTF-8",
        )
    })?;
    match preparer.prepare(source).await {
        Ok(component) => Ok(Bytes::from(component)),
        Err(ScriptError::TooLarge(message)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            message,
        )),
        Err(ScriptError::Invalid {
            code,
            message,
            position,
        }) => {
            let mut details = json!({ "code": code });
            if let Some((line, column)) = position {
                details["line"] = json!(line);
                details["column"] = json!(column);
            }
            Err(
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_script", message)
                    .details(details),
            )
        }
        Err(ScriptError::Internal(message)) => Err(ApiError::internal(message)),
    }
}

/// A WebAssembly binary of the component layer (not a core module).
fn check_component_header(bytes: &[u8]) -> Result<(), ApiError> {
    let invalid = |m: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_component",
            m.to_owned(),
        )
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(invalid("the body is not WebAssembly"));
    }
    // Version 1 with layer 0 is a core module; components are layer 1.
    if bytes[6..8] != [1, 0] {
        return Err(invalid(
            "the body is a core WebAssembly module, not a component",
        ));
    }
    Ok(())
}

/// The checks that need no compilation (structure, counts that predict an
/// expensive compile, the world and its imports), with the nodes' default
/// bounds: what no node would compile is refused before it is stored.
async fn precheck_component(bytes: Bytes) -> Result<(), ApiError> {
    let checked = tokio::task::spawn_blocking(move || {
        delta_precheck::precheck(
            &bytes,
            &delta_precheck::PrecheckLimits::default(),
            &delta_precheck::SlotLimits::default(),
        )
    })
    .await
    .map_err(ApiError::internal)?;
    match checked {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_component",
            e.to_string(),
        )),
    }
}

pub(crate) fn component_path(state: &AppState, sha256: &str) -> PathBuf {
    state.components_dir.join(format!("{sha256}.wasm"))
}

/// Write the bytes under their name once, atomically (temporary file,
/// fsync, rename), so a reader never sees a partial component.
async fn store_component_file(path: PathBuf, bytes: Bytes) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write as _;
        if path.exists() {
            return Ok(());
        }
        // A unique temporary name: concurrent uploads of the same bytes
        // each write their own file and the last rename wins (same bytes).
        let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

async fn get_component(
    state: &AppState,
    tenant: &str,
    sha256: &str,
) -> Result<Option<Component>, ApiError> {
    sqlx::query(
        "SELECT sha256, size, world, created_at_ms FROM components \
         WHERE tenant_id = $1 AND sha256 = $2",
    )
    .bind(tenant)
    .bind(sha256)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?
    .as_ref()
    .map(component_from_row)
    .transpose()
}

fn component_from_row(row: &AnyRow) -> Result<Component, ApiError> {
    Ok(Component {
        sha256: row.try_get("sha256").map_err(ApiError::internal)?,
        size: row.try_get("size").map_err(ApiError::internal)?,
        world: row.try_get("world").map_err(ApiError::internal)?,
        created_at_ms: row.try_get("created_at_ms").map_err(ApiError::internal)?,
    })
}

/// 422 unless the tenant uploaded `sha256`.
pub(crate) async fn require_component(
    state: &AppState,
    tenant: &str,
    sha256: &str,
) -> Result<(), ApiError> {
    match get_component(state, tenant, sha256).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_component",
            format!("no component {sha256} was uploaded to this tenant (POST /v1/components)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_headers_are_checked_cheaply() {
        assert!(check_component_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        let core = check_component_header(b"\0asm\x01\0\0\0").expect_err("core module");
        assert_eq!(core.code, "invalid_component");
        assert!(check_component_header(b"MZ\0\0\0\0\0\0").is_err());
        assert!(check_component_header(b"\0asm").is_err());
    }
}
