//! Invitations: the invitee's side of joining a tenant. An admin invites an
//! email (`POST /v1/tenants/current/members`, [`crate::tenants`]); the user
//! with that email sees the invitation here and accepts it (becoming a
//! member with the invited role) or declines it. An invitation is found by
//! the caller's own email only: another user's invitation id is 404.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use delta_http::{ApiError, RequestId};

use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::tenants::{MemberView, lock_tenant};

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_invitations))
        .routes(routes!(accept))
        .routes(routes!(decline))
}

/// A pending invitation, as its invitee sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvitationView {
    /// `inv_...`.
    pub id: String,
    /// The tenant it is to.
    pub tenant_id: String,
    /// That tenant's name.
    pub tenant_name: String,
    /// The role on accepting.
    pub role: Role,
    /// Made (or last renewed), ms.
    pub created_at_ms: i64,
    /// Lapses then, ms.
    pub expires_at_ms: i64,
}

async fn caller_email(state: &AppState, principal: &Principal) -> Result<String, ApiError> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(&principal.user_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)
}

/// The caller's pending invitations, oldest first.
#[utoipa::path(
    get,
    path = "/v1/invitations",
    tag = "tenants",
    params(PageQuery),
    responses((status = 200, description = "A page", body = Page<InvitationView>)),
    security(("bearer" = []))
)]
async fn list_invitations(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<InvitationView>>, ApiError> {
    let email = caller_email(&state, &principal).await?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(
        "SELECT i.id, i.tenant_id, t.name, i.role, i.created_at_ms, i.expires_at_ms \
         FROM invitations i JOIN tenants t ON t.id = i.tenant_id \
         WHERE i.email = $1 AND i.status = 'pending' AND i.expires_at_ms > $2 \
           AND (i.created_at_ms, i.id) > ($3, $4) \
         ORDER BY i.created_at_ms, i.id LIMIT $5",
    )
    .bind(&email)
    .bind(now_ms())
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            Ok(InvitationView {
                id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
                tenant_name: r.try_get("name")?,
                role: Role::parse(&role).unwrap_or(Role::Member),
                created_at_ms: r.try_get("created_at_ms")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |i| {
        (i.created_at_ms, i.id.clone())
    })))
}

/// The caller's pending, unexpired invitation `id`: (tenant, role).
async fn pending(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    email: &str,
) -> Result<(String, Role), ApiError> {
    let row = sqlx::query(
        "SELECT tenant_id, role FROM invitations \
         WHERE id = $1 AND email = $2 AND status = 'pending' AND expires_at_ms > $3",
    )
    .bind(id)
    .bind(email)
    .bind(now_ms())
    .fetch_optional(&mut *conn)
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("invitation"))?;
    let tenant: String = row.try_get("tenant_id").map_err(ApiError::internal)?;
    let role: String = row.try_get("role").map_err(ApiError::internal)?;
    let role = Role::parse(&role)
        .ok_or_else(|| ApiError::internal(format!("stored role {role:?} is not a role")))?;
    Ok((tenant, role))
}

async fn decide(conn: &mut sqlx::AnyConnection, id: &str, status: &str) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE invitations SET status = $1, decided_at_ms = $2 \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(status)
    .bind(now_ms())
    .bind(id)
    .execute(conn)
    .await
    .map_err(ApiError::internal)?;
    Ok(())
}

/// Accept an invitation: the caller joins its tenant with its role (sign in
/// to that tenant with `tenant_id` at login, or an API key made there).
#[utoipa::path(
    post,
    path = "/v1/invitations/{id}/accept",
    tag = "tenants",
    params(("id" = String, Path, description = "Invitation id")),
    responses(
        (status = 200, description = "A member now", body = MemberView),
        (status = 404, description = "No pending invitation of the caller's with this id"),
    ),
    security(("bearer" = []))
)]
async fn accept(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<MemberView>, ApiError> {
    let email = caller_email(&state, &principal).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    write_first(&mut tx, &id).await?;
    let (tenant, role) = pending(&mut tx, &id, &email).await?;
    // Serialised with the tenant's other membership changes.
    lock_tenant(&mut tx, &tenant).await?;
    let joined = MemberView {
        user_id: principal.user_id.clone(),
        email,
        role,
        created_at_ms: now_ms(),
    };
    sqlx::query(
        "INSERT INTO memberships (tenant_id, user_id, role, created_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, user_id) DO NOTHING",
    )
    .bind(&tenant)
    .bind(&joined.user_id)
    .bind(role.as_str())
    .bind(joined.created_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    decide(&mut tx, &id, "accepted").await?;
    audit::record_in(
        &mut tx,
        Some(&tenant),
        Some(&principal.user_id),
        "member_added",
        json!({ "member": joined.user_id, "email": joined.email, "role": role,
                "invitation": id }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(Json(joined))
}

/// Decline an invitation.
#[utoipa::path(
    post,
    path = "/v1/invitations/{id}/decline",
    tag = "tenants",
    params(("id" = String, Path, description = "Invitation id")),
    responses(
        (status = 204, description = "Declined"),
        (status = 404, description = "No pending invitation of the caller's with this id"),
    ),
    security(("bearer" = []))
)]
async fn decline(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let email = caller_email(&state, &principal).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    write_first(&mut tx, &id).await?;
    let (tenant, _) = pending(&mut tx, &id, &email).await?;
    decide(&mut tx, &id, "declined").await?;
    audit::record_in(
        &mut tx,
        Some(&tenant),
        Some(&principal.user_id),
        "invitation_declined",
        json!({ "invitation": id }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A write before any read: a SQLite transaction that reads first cannot
/// take the write lock once another connection has committed (it fails at
/// once with "database is locked" instead of waiting).
async fn write_first(tx: &mut sqlx::AnyConnection, id: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE invitations SET status = status WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}
