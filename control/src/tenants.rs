//! Tenants (organisations), their members and roles, and the tenant's audit
//! log.
//!
//! Everything but creating and listing tenants acts on the *current* tenant:
//! the one the caller's credential is for. A user id that is not a member of
//! it answers 404, whichever other tenant it may belong to.
//!
//! Adding a member is an invitation the invitee accepts
//! ([`crate::invitations`]). Who may change a membership (see
//! [`may_change`]): admins and owners invite members and move non-owners between member and admin; only owners grant
//! admin when adding someone, grant owner, or change or remove an owner; any
//! member may remove themselves. A tenant always keeps an owner: demoting or
//! removing the last one is 409 `last_owner`. Membership changes of one
//! tenant are serialised by a write to its row, so two owners demoting each
//! other at once cannot leave it without one.
//!
//! With an API key as the credential, every change (and the audit log)
//! needs the `tenant:admin` scope.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use delta_http::{ApiError, JsonBody, RequestId};

use crate::app::AppState;
use crate::audit::{self, AuditEntry};
use crate::auth::{Principal, Role};
use crate::db::{new_id, now_ms};
use crate::identity::{clean_name, normalise_email};
use crate::pagination::{Page, PageQuery};

/// The scope an API key needs to manage the tenant.
const ADMIN_SCOPE: &str = "tenant:admin";

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(current_tenant))
        .routes(routes!(list_members, add_member))
        .routes(routes!(change_role, remove_member))
        .routes(routes!(list_audit))
}

/// A tenant and the caller's role in it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The caller's role.
    pub role: Role,
    /// Creation time, ms.
    pub created_at_ms: i64,
}

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Display name (1-100 characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
}

/// A member of the current tenant.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    /// User id.
    pub user_id: String,
    /// Their email.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// When they joined, ms.
    pub created_at_ms: i64,
}

/// `POST /v1/tenants/current/members`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Email to invite (with or without an account).
    // The literal of identity::EMAIL_PATTERN (contract tests compare them).
    #[schema(
        max_length = 254,
        pattern = r"^[ \t\n\f\r]*[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\f\r]*$"
    )]
    pub email: String,
    /// Their role.
    pub role: Role,
}

/// `PATCH /v1/tenants/current/members/{user_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// The new role.
    pub role: Role,
}

/// Create a tenant owned by `owner` (a new user's personal tenant, or one
/// made through `POST /v1/tenants`), inside the caller's transaction.
pub(crate) async fn insert_owned(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    name: &str,
    owner: &str,
    at_ms: i64,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(at_ms)
        .execute(&mut *conn)
        .await
        .map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO memberships (tenant_id, user_id, role, created_at_ms) \
         VALUES ($1, $2, 'owner', $3)",
    )
    .bind(id)
    .bind(owner)
    .bind(at_ms)
    .execute(&mut *conn)
    .await
    .map_err(ApiError::internal)?;
    Ok(())
}

/// Whether an `actor` may move someone (not themselves) from `from` to
/// `to`; `None` is "not a member" (adding) or "removed".
pub fn may_change(actor: Role, from: Option<Role>, to: Option<Role>) -> Result<(), ApiError> {
    if actor < Role::Admin {
        return Err(ApiError::forbidden(
            "managing members needs the admin role in the tenant",
        ));
    }
    let needs_owner = match (from, to) {
        // Adding: only owners hand out more than membership.
        (None, Some(role)) => role >= Role::Admin,
        // Changing or removing: owners are only touched by owners, and
        // promoting to admin is granting admin (same rule as adding one).
        (from, to) => {
            from == Some(Role::Owner)
                || to == Some(Role::Owner)
                || (to == Some(Role::Admin) && from != Some(Role::Admin))
        }
    };
    if needs_owner && actor < Role::Owner {
        return Err(ApiError::forbidden(
            "only an owner may grant admin or owner, or change an owner",
        ));
    }
    Ok(())
}

fn role_of(row: &sqlx::any::AnyRow) -> Result<Role, ApiError> {
    let role: String = row.try_get("role").map_err(ApiError::internal)?;
    Role::parse(&role).ok_or_else(|| ApiError::internal(format!("stored role {role:?}")))
}

/// Take the tenant's row lock (PostgreSQL) or the write lock (SQLite) so
/// that membership changes of one tenant happen one at a time.
pub(crate) async fn lock_tenant(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
) -> Result<(), ApiError> {
    let locked = sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
        .bind(tenant)
        .execute(conn)
        .await
        .map_err(ApiError::internal)?
        .rows_affected();
    if locked == 0 {
        return Err(ApiError::not_found("tenant"));
    }
    Ok(())
}

/// A member of `tenant`, read inside the caller's transaction.
async fn member(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    user: &str,
) -> Result<Option<MemberView>, ApiError> {
    let row = sqlx::query(
        "SELECT m.user_id, u.email, m.role, m.created_at_ms \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2",
    )
    .bind(tenant)
    .bind(user)
    .fetch_optional(conn)
    .await
    .map_err(ApiError::internal)?;
    row.map(|r| member_from_row(&r)).transpose()
}

fn member_from_row(r: &sqlx::any::AnyRow) -> Result<MemberView, ApiError> {
    Ok(MemberView {
        user_id: r.try_get("user_id").map_err(ApiError::internal)?,
        email: r.try_get("email").map_err(ApiError::internal)?,
        role: role_of(r)?,
        created_at_ms: r.try_get("created_at_ms").map_err(ApiError::internal)?,
    })
}

/// The caller's role, re-read under the tenant lock (it may have changed
/// since the request was authenticated).
async fn actor_role(
    conn: &mut sqlx::AnyConnection,
    principal: &Principal,
) -> Result<Role, ApiError> {
    member(conn, &principal.tenant_id, &principal.user_id)
        .await?
        .map(|m| m.role)
        .ok_or_else(|| ApiError::forbidden("you are no longer a member of this tenant"))
}

/// 409 unless the tenant has an owner besides the one about to go.
async fn ensure_another_owner(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
) -> Result<(), ApiError> {
    let owners: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM memberships WHERE tenant_id = $1 AND role = 'owner'",
    )
    .bind(tenant)
    .fetch_one(conn)
    .await
    .and_then(|r| r.try_get("n"))
    .map_err(ApiError::internal)?;
    if owners <= 1 {
        return Err(ApiError::conflict(
            "last_owner",
            "the tenant's last owner can be neither demoted nor removed; make someone else \
             owner first",
        ));
    }
    Ok(())
}

/// Create a tenant; the caller becomes its owner. A user owns at most
/// `max_tenants_per_user` (403 `tenant_limit`; operators: no limit), and
/// their budget there comes out of their one tier (see `budgets`).
///
/// The caller's credential stays in its tenant: log in with `tenant_id` to
/// work in the new one.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 403, description = "`tenant_limit`: the caller owns as many as allowed"),
        (status = 422, description = "Bad name"),
    ),
    security(("bearer" = []))
)]
async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope(ADMIN_SCOPE)?;
    let tenant = TenantView {
        id: new_id("ten"),
        name: clean_name(&req.name, "name")?,
        role: Role::Owner,
        created_at_ms: now_ms(),
    };
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    // Locks the user (a write first: SQLite cannot always upgrade a read),
    // so that concurrent creations count each other.
    sqlx::query("UPDATE users SET created_at_ms = created_at_ms WHERE id = $1")
        .bind(&principal.user_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    if !principal.operator {
        let owned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE user_id = $1 AND role = 'owner'",
        )
        .bind(&principal.user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
        let cap = i64::from(state.config.max_tenants_per_user);
        if owned >= cap {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_limit",
                format!("a user may own at most {cap} tenants"),
            ));
        }
    }
    insert_owned(
        &mut tx,
        &tenant.id,
        &tenant.name,
        &principal.user_id,
        tenant.created_at_ms,
    )
    .await?;
    audit::record_in(
        &mut tx,
        Some(&tenant.id),
        Some(&principal.user_id),
        "tenant_created",
        json!({ "name": tenant.name }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// The caller's tenants with their role, oldest first. With an API key:
/// only the key's tenant (a key is not a way into the user's other
/// tenants).
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    params(PageQuery),
    responses((status = 200, description = "One page", body = Page<TenantView>)),
    security(("bearer" = []))
)]
async fn list_tenants(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<TenantView>>, ApiError> {
    principal.require_role(Role::Member)?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    // '' lists every tenant of the user; a tenant id only that one.
    let only_tenant = if principal.api_key_id.is_some() {
        principal.tenant_id.clone()
    } else {
        String::new()
    };
    let rows = sqlx::query(
        "SELECT t.id, t.name, t.created_at_ms, m.role \
         FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.user_id = $1 AND ($2 = '' OR t.id = $2) \
           AND (t.created_at_ms, t.id) > ($3, $4) \
         ORDER BY t.created_at_ms, t.id LIMIT $5",
    )
    .bind(&principal.user_id)
    .bind(&only_tenant)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let tenants = rows
        .iter()
        .map(|r| {
            Ok(TenantView {
                id: r.try_get("id").map_err(ApiError::internal)?,
                name: r.try_get("name").map_err(ApiError::internal)?,
                role: role_of(r)?,
                created_at_ms: r.try_get("created_at_ms").map_err(ApiError::internal)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(Page::from_rows(tenants, limit, |t| {
        (t.created_at_ms, t.id.clone())
    })))
}

/// The tenant of the caller's credential.
#[utoipa::path(
    get,
    path = "/v1/tenants/current",
    tag = "tenants",
    responses((status = 200, description = "The current tenant", body = TenantView)),
    security(("bearer" = []))
)]
async fn current_tenant(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TenantView>, ApiError> {
    principal.require_role(Role::Member)?;
    let row = sqlx::query("SELECT id, name, created_at_ms FROM tenants WHERE id = $1")
        .bind(&principal.tenant_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(TenantView {
        id: row.try_get("id").map_err(ApiError::internal)?,
        name: row.try_get("name").map_err(ApiError::internal)?,
        role: principal.role,
        created_at_ms: row.try_get("created_at_ms").map_err(ApiError::internal)?,
    }))
}

/// Members of the current tenant, in the order they joined.
#[utoipa::path(
    get,
    path = "/v1/tenants/current/members",
    tag = "tenants",
    params(PageQuery),
    responses((status = 200, description = "One page", body = Page<MemberView>)),
    security(("bearer" = []))
)]
async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<MemberView>>, ApiError> {
    principal.require_role(Role::Member)?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(
        "SELECT m.user_id, u.email, m.role, m.created_at_ms \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND (m.created_at_ms, m.user_id) > ($2, $3) \
         ORDER BY m.created_at_ms, m.user_id LIMIT $4",
    )
    .bind(&principal.tenant_id)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let members = rows
        .iter()
        .map(member_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::from_rows(members, limit, |m| {
        (m.created_at_ms, m.user_id.clone())
    })))
}

/// How long an invitation waits for its invitee.
pub const INVITATION_TTL_MS: i64 = 14 * 24 * 3600 * 1000;

/// Answer to an invitation: the same whether or not the email has an
/// account (no enumeration).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvitedView {
    /// The invited email (normalised).
    pub email: String,
    /// The role they get on accepting.
    pub role: Role,
    /// `invited`.
    pub status: String,
    /// The invitation lapses then, ms.
    pub expires_at_ms: i64,
}

/// Invite someone (by email) to the current tenant: they become a member
/// when they accept (`POST /v1/invitations/{id}/accept`). Admins invite
/// members; only owners invite admins or owners. The answer is the same
/// for an email with an account and one without (an invitation waits for
/// the account), so this route does not tell which addresses are
/// registered; inviting again refreshes the pending invitation.
#[utoipa::path(
    post,
    path = "/v1/tenants/current/members",
    tag = "tenants",
    request_body = AddMemberRequest,
    responses(
        (status = 202, description = "Invited", body = InvitedView),
        (status = 403, description = "The caller's role (or key scope) does not allow it"),
        (status = 409, description = "Already a member (`already_member`)"),
    ),
    security(("bearer" = []))
)]
async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<AddMemberRequest>,
) -> Result<(StatusCode, Json<InvitedView>), ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope(ADMIN_SCOPE)?;
    let email = normalise_email(&req.email)?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    lock_tenant(&mut tx, &principal.tenant_id).await?;
    may_change(actor_role(&mut tx, &principal).await?, None, Some(req.role))?;
    // Members are the admin's to see anyway: saying so tells nothing new.
    let member: Option<String> = sqlx::query_scalar(
        "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND u.email = $2",
    )
    .bind(&principal.tenant_id)
    .bind(&email)
    .fetch_optional(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if member.is_some() {
        return Err(ApiError::conflict(
            "already_member",
            "this user is a member already; change their role with PATCH",
        ));
    }
    let now = now_ms();
    let expires_at_ms = now.saturating_add(INVITATION_TTL_MS);
    let refreshed = sqlx::query(
        "UPDATE invitations SET role = $1, invited_by = $2, created_at_ms = $3, \
             expires_at_ms = $4 \
         WHERE tenant_id = $5 AND email = $6 AND status = 'pending'",
    )
    .bind(req.role.as_str())
    .bind(&principal.user_id)
    .bind(now)
    .bind(expires_at_ms)
    .bind(&principal.tenant_id)
    .bind(&email)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if refreshed == 0 {
        sqlx::query(
            "INSERT INTO invitations (id, tenant_id, email, role, invited_by, status, \
                 created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
        )
        .bind(new_id("inv"))
        .bind(&principal.tenant_id)
        .bind(&email)
        .bind(req.role.as_str())
        .bind(&principal.user_id)
        .bind(now)
        .bind(expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    }
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "member_invited",
        json!({ "email": email, "role": req.role }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(InvitedView {
            email,
            role: req.role,
            status: "invited".to_owned(),
            expires_at_ms,
        }),
    ))
}

/// Change a member's role. Admins move non-owners between member and
/// admin; only owners change an owner or grant owner; the last owner
/// cannot be demoted (409 `last_owner`).
#[utoipa::path(
    patch,
    path = "/v1/tenants/current/members/{user_id}",
    tag = "tenants",
    params(("user_id" = String, Path, description = "A member's user id")),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "The member with the new role", body = MemberView),
        (status = 403, description = "The caller's role (or key scope) does not allow it"),
        (status = 404, description = "Not a member of the current tenant"),
        (status = 409, description = "The last owner (`last_owner`)"),
    ),
    security(("bearer" = []))
)]
async fn change_role(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(user_id): Path<String>,
    JsonBody(req): JsonBody<RoleRequest>,
) -> Result<Json<MemberView>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope(ADMIN_SCOPE)?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    lock_tenant(&mut tx, &principal.tenant_id).await?;
    let actor = actor_role(&mut tx, &principal).await?;
    let mut target = member(&mut tx, &principal.tenant_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let from = target.role;
    may_change(actor, Some(from), Some(req.role))?;
    if from == req.role {
        return Ok(Json(target));
    }
    if from == Role::Owner {
        ensure_another_owner(&mut tx, &principal.tenant_id).await?;
    }
    sqlx::query("UPDATE memberships SET role = $3 WHERE tenant_id = $1 AND user_id = $2")
        .bind(&principal.tenant_id)
        .bind(&user_id)
        .bind(req.role.as_str())
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "role_changed",
        json!({ "member": user_id, "from": from, "to": req.role }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    target.role = req.role;
    Ok(Json(target))
}

/// Remove a member (admins remove non-owners, owners anyone; any member
/// may remove themselves). Their API keys in this tenant are revoked and
/// their sessions in it end; the last owner cannot be removed (409
/// `last_owner`).
#[utoipa::path(
    delete,
    path = "/v1/tenants/current/members/{user_id}",
    tag = "tenants",
    params(("user_id" = String, Path, description = "A member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The caller's role (or key scope) does not allow it"),
        (status = 404, description = "Not a member of the current tenant"),
        (status = 409, description = "The last owner (`last_owner`)"),
    ),
    security(("bearer" = []))
)]
async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope(ADMIN_SCOPE)?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    lock_tenant(&mut tx, &principal.tenant_id).await?;
    let actor = actor_role(&mut tx, &principal).await?;
    let target = member(&mut tx, &principal.tenant_id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    let leaving = user_id == principal.user_id;
    if !leaving {
        may_change(actor, Some(target.role), None)?;
    }
    if target.role == Role::Owner {
        ensure_another_owner(&mut tx, &principal.tenant_id).await?;
    }
    let now = now_ms();
    sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
        .bind(&principal.tenant_id)
        .bind(&user_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    // Keys and sessions would stop working without their membership anyway;
    // revoking them keeps them dead should the user be added back.
    let keys = sqlx::query(
        "UPDATE api_keys SET revoked_at_ms = $3 \
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(&principal.tenant_id)
    .bind(&user_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at_ms = $3 \
         WHERE tenant_id = $1 AND user_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(&principal.tenant_id)
    .bind(&user_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "member_removed",
        json!({
            "member": user_id,
            "role": target.role,
            "left": leaving,
            "api_keys_revoked": keys,
        }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters and page of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this action (`login`, `role_changed`, `agent_updated`, ...).
    #[param(pattern = "^[a-z_]{1,64}$")]
    pub action: Option<String>,
    /// Only this user's entries.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user_id: Option<String>,
    /// Only entries at or after this time, ms since the epoch.
    #[param(minimum = 0)]
    pub since_ms: Option<i64>,
    /// Only entries before this time, ms since the epoch.
    #[param(minimum = 0)]
    pub until_ms: Option<i64>,
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "crate::pagination::page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,200}$")]
    pub cursor: Option<String>,
}

/// The current tenant's audit log, **newest first** (the cursor walks back
/// in time), optionally only one action, one user or a time range. Admins
/// only.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "tenants",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page, newest first", body = Page<AuditEntry>),
        (status = 400, description = "A filter that does not parse (e.g. `since_ms=soon`)"),
        (status = 422, description = "`invalid`: a filter out of its pattern or range"),
        (status = 403, description = "Not an admin (or the key lacks `tenant:admin`)"),
    ),
    security(("bearer" = []))
)]
async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope(ADMIN_SCOPE)?;
    let bad = |m: &str| Err(ApiError::invalid(m));
    if q.action.as_ref().is_some_and(|a| {
        a.is_empty() || a.len() > 64 || !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }) {
        return bad("action must be 1-64 lower-case letters and underscores");
    }
    if q.user_id.as_ref().is_some_and(|u| {
        u.is_empty()
            || u.len() > 64
            || !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return bad("user_id must be 1-64 letters, digits, '_' or '-'");
    }
    if q.since_ms.is_some_and(|t| t < 0) || q.until_ms.is_some_and(|t| t < 0) {
        return bad("since_ms and until_ms are milliseconds since the epoch (>= 0)");
    }
    let filter = audit::AuditFilter {
        action: q.action,
        user_id: q.user_id,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    audit::list(&state.db, &principal.tenant_id, &filter, &page)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owners_touch_owners_and_admins_manage_the_rest() {
        use Role::{Admin, Member, Owner};
        let ok = |a, f, t| may_change(a, f, t).is_ok();
        // Members manage nobody.
        assert!(!ok(Member, None, Some(Member)));
        assert!(!ok(Member, Some(Member), None));
        // Admins: add members, demote admins, remove non-owners; never
        // grant admin or owner, never touch owners.
        assert!(ok(Admin, None, Some(Member)));
        assert!(!ok(Admin, None, Some(Admin)));
        assert!(!ok(Admin, None, Some(Owner)));
        assert!(!ok(Admin, Some(Member), Some(Admin)));
        assert!(ok(Admin, Some(Admin), Some(Member)));
        assert!(!ok(Admin, Some(Member), Some(Owner)));
        assert!(!ok(Admin, Some(Owner), Some(Admin)));
        assert!(ok(Admin, Some(Admin), None));
        assert!(!ok(Admin, Some(Owner), None));
        // Owners: everything.
        assert!(ok(Owner, None, Some(Owner)));
        assert!(ok(Owner, Some(Owner), Some(Member)));
        assert!(ok(Owner, Some(Owner), None));
    }
}
