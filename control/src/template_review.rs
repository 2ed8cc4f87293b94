//! Platform operators' review of message templates
//! (`[templates] operator_review`).
//!
//! With `first` or `all`, a template a tenant admin approves becomes
//! `pending_operator` (not usable: a guest sending it gets
//! `template-not-approved`) until an operator approves it here. With
//! `first`, the operator's first approval of one of a tenant's templates
//! makes the tenant trusted (`template_trust`): its admins approve alone
//! from then on. An operator may also reject a pending template. Operators
//! only; every decision is audited in the template's tenant.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use delta_http::{ApiError, RequestId};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::config::OperatorReview;
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;
use crate::templates::{
    Approve, Reject, TEMPLATE_COLUMNS, Template, TemplateStatus, check_version, load_template,
    optional_body, redeploy_granted, template_from_row, template_keys, write_template,
};

/// Routes of this module (merged into the templates' routes).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_pending))
        .routes(routes!(operator_approve))
        .routes(routes!(operator_reject))
}

/// Whether a tenant admin's approval in `tenant_id` still needs an
/// operator's.
pub async fn needs_operator(state: &AppState, tenant_id: &str) -> Result<bool, ApiError> {
    match state.config.templates.operator_review {
        OperatorReview::None => Ok(false),
        OperatorReview::All => Ok(true),
        OperatorReview::First => {
            let trusted: Option<String> =
                sqlx::query_scalar("SELECT tenant_id FROM template_trust WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_optional(state.db.pool())
                    .await
                    .map_err(ApiError::internal)?;
            Ok(trusted.is_none())
        }
    }
}

/// A pending template of any tenant, or 404.
async fn load_any(state: &AppState, id: &str) -> Result<Template, ApiError> {
    let tenant: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM templates WHERE id = $1")
            .bind(id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    let tenant = tenant.ok_or_else(|| ApiError::not_found("template"))?;
    load_template(&state.db, &tenant, id).await
}

fn not_pending(t: &Template) -> ApiError {
    ApiError::conflict(
        "not_pending_operator",
        format!(
            "the template is {}, not pending_operator (a tenant admin approves it first)",
            t.status.as_str()
        ),
    )
}

/// Templates waiting for an operator, across tenants, oldest first.
#[utoipa::path(
    get,
    path = "/v1/operator/templates",
    tag = "templates",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of `pending_operator` templates", body = Page<Template>),
        (status = 403, description = "`operator_only`"),
    ),
    security(("bearer" = []))
)]
async fn list_pending(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Template>>, ApiError> {
    principal.require_operator()?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates \
         WHERE status = 'pending_operator' AND (updated_at_ms, id) > ($1, $2) \
         ORDER BY updated_at_ms, id LIMIT $3"
    ))
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(template_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |t| {
        (t.updated_at_ms, t.id.clone())
    })))
}

/// Approve a `pending_operator` template (its current version): usable
/// from now on; with `operator_review = "first"` its tenant is trusted.
#[utoipa::path(
    post,
    path = "/v1/operator/templates/{id}/approve",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body(content = Option<Approve>, description = "Optional: the version being approved"),
    responses(
        (status = 200, description = "Approved", body = Template),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such template"),
        (status = 409, description = "`not_pending_operator`, `version_mismatch` or `conflict`"),
    ),
    security(("bearer" = []))
)]
async fn operator_approve(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Template>, ApiError> {
    principal.require_operator()?;
    let current = load_any(&state, &id).await?;
    let approve: Approve = optional_body(&body)?;
    check_version(&current, approve.version)?;
    if current.status != TemplateStatus::PendingOperator {
        return Err(not_pending(&current));
    }
    let now = now_ms().max(current.updated_at_ms + 1);
    let next = Template {
        status: TemplateStatus::Approved,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        ..current.clone()
    };
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_operator_approved",
        json!({ "template_id": next.id, "name": next.name, "version": next.version }),
        &principal,
        &rid,
    )
    .await?;
    if state.config.templates.operator_review == OperatorReview::First {
        sqlx::query(
            "INSERT INTO template_trust (tenant_id, trusted_by, trusted_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(&next.tenant_id)
        .bind(&principal.user_id)
        .bind(now)
        .execute(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    }
    redeploy_granted(&state, &next.tenant_id, &template_keys(&next, None)).await;
    Ok(Json(next))
}

/// Reject a `pending_operator` template, with an optional reason.
#[utoipa::path(
    post,
    path = "/v1/operator/templates/{id}/reject",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body(content = Option<Reject>, description = "Optional: version and reason"),
    responses(
        (status = 200, description = "Rejected", body = Template),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such template"),
        (status = 409, description = "`not_pending_operator`, `version_mismatch` or `conflict`"),
        (status = 422, description = "`invalid`: reason too long"),
    ),
    security(("bearer" = []))
)]
async fn operator_reject(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Template>, ApiError> {
    principal.require_operator()?;
    let current = load_any(&state, &id).await?;
    let reject: Reject = optional_body(&body)?;
    if reject
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 1000)
    {
        return Err(ApiError::invalid("reason must be at most 1000 characters"));
    }
    check_version(&current, reject.version)?;
    if current.status != TemplateStatus::PendingOperator {
        return Err(not_pending(&current));
    }
    let now = now_ms().max(current.updated_at_ms + 1);
    let next = Template {
        status: TemplateStatus::Rejected,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        approved_by: None,
        approved_at_ms: None,
        rejected_by: Some(principal.user_id.clone()),
        rejected_at_ms: Some(now),
        rejection_reason: reject.reason,
        ..current.clone()
    };
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_operator_rejected",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "reason": next.rejection_reason }),
        &principal,
        &rid,
    )
    .await?;
    Ok(Json(next))
}
