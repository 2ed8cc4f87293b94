//! The template handlers: create, list, read, edit, delete, approve and
//! reject (see the module above for the rules they keep).

use super::*;

/// Create a template (as a draft).
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = "templates",
    request_body = CreateTemplate,
    responses(
        (status = 201, description = "Created as a draft", body = Template),
        (status = 409, description = "`name_taken`"),
        (status = 422, description = "`invalid`, or `invalid_template` (it could not be \
                                      rendered; `details.reason` says why)"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn create_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<CreateTemplate>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:write")?;
    let now = now_ms();
    let template = Template {
        id: new_id(ID_PREFIX),
        tenant_id: principal.tenant_id.clone(),
        name: body.name,
        channel: body.channel,
        subject: body.subject,
        body: body.body,
        html: body.html,
        variables: body.variables,
        status: TemplateStatus::Draft,
        version: 1,
        created_by: Some(principal.user_id.clone()),
        created_at_ms: now,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        approved_by: None,
        approved_at_ms: None,
        rejected_by: None,
        rejected_at_ms: None,
        rejection_reason: None,
    };
    validate_template(&template)?;
    write_template(
        &state,
        &template,
        None,
        "template_created",
        json!({ "template_id": template.id, "name": template.name,
                "channel": template.channel, "version": template.version }),
        &principal,
        &rid,
    )
    .await?;
    // A grant may name it already (by name): those agents learn it exists.
    redeploy_granted(&state, &template.tenant_id, &template_keys(&template, None)).await;
    Ok((StatusCode::CREATED, Json(template)).into_response())
}

/// List this tenant's templates, oldest first.
#[utoipa::path(
    get,
    path = "/v1/templates",
    tag = "templates",
    params(PageQuery, TemplateFilter),
    responses(
        (status = 200, description = "A page", body = Page<Template>),
        (status = 422, description = "Unknown status or channel"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_templates(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<TemplateFilter>,
) -> Result<Json<Page<Template>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:read")?;
    let status = match filter.status.as_deref() {
        None => "",
        Some(s) => TemplateStatus::parse(s)
            .ok_or_else(|| {
                ApiError::invalid("status must be draft, pending_operator, approved or rejected")
            })?
            .as_str(),
    };
    let channel = match filter.channel.as_deref() {
        None => "",
        Some(c) => channel_str(
            parse_channel(c).ok_or_else(|| ApiError::invalid("channel must be email or sms"))?,
        ),
    };
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let rows = sqlx::query(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates \
         WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3) \
         AND ($5 = '' OR status = $5) AND ($6 = '' OR channel = $6) \
         ORDER BY created_at_ms, id LIMIT $4"
    ))
    .bind(&principal.tenant_id)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .bind(status)
    .bind(channel)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(template_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |t| {
        (t.created_at_ms, t.id.clone())
    })))
}

/// One template.
#[utoipa::path(
    get,
    path = "/v1/templates/{id}",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses(
        (status = 200, description = "The template", body = Template),
        (status = 404, description = "No such template in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_template(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:read")?;
    Ok(Json(
        load_template(&state.db, &principal.tenant_id, &id).await?,
    ))
}

/// Change a template. Any change of content returns it to `draft` (an
/// approved template stops being usable until an admin approves the new
/// version); a body that changes nothing changes nothing.
#[utoipa::path(
    patch,
    path = "/v1/templates/{id}",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body = UpdateTemplate,
    responses(
        (status = 200, description = "Changed (now a draft) or unchanged", body = Template),
        (status = 404, description = "No such template in this tenant"),
        (status = 409, description = "`name_taken`, or `conflict` (changed meanwhile)"),
        (status = 422, description = "`invalid` or `invalid_template`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn update_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateTemplate>,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:write")?;
    let current = load_template(&state.db, &principal.tenant_id, &id).await?;
    let mut next = current.clone();
    if let Some(name) = body.name {
        next.name = name;
    }
    if let Some(channel) = body.channel {
        next.channel = channel;
    }
    if let Some(subject) = body.subject {
        next.subject = subject;
    }
    if let Some(text) = body.body {
        next.body = text;
    }
    if let Some(html) = body.html {
        next.html = html;
    }
    if let Some(variables) = body.variables {
        next.variables = variables;
    }
    if next.content() == current.content() {
        return Ok(Json(current));
    }
    validate_template(&next)?;
    next.status = TemplateStatus::Draft;
    next.version = current.version + 1;
    next.updated_by = Some(principal.user_id.clone());
    next.updated_at_ms = now_ms().max(current.updated_at_ms + 1);
    next.approved_by = None;
    next.approved_at_ms = None;
    next.rejected_by = None;
    next.rejected_at_ms = None;
    next.rejection_reason = None;
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_updated",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "from_status": current.status.as_str(), "from_name": current.name }),
        &principal,
        &rid,
    )
    .await?;
    redeploy_granted(
        &state,
        &next.tenant_id,
        &template_keys(&next, Some(&current.name)),
    )
    .await;
    Ok(Json(next))
}

/// Delete a template. Agents granted it can no longer send it
/// (`template-not-found`); their grants keep the id until changed.
#[utoipa::path(
    delete,
    path = "/v1/templates/{id}",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such template in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn delete_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("templates:write")?;
    let template = load_template(&state.db, &principal.tenant_id, &id).await?;
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let deleted = sqlx::query("DELETE FROM templates WHERE id = $1 AND tenant_id = $2")
        .bind(&id)
        .bind(&principal.tenant_id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::not_found("template"));
    }
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "template_deleted",
        json!({ "template_id": template.id, "name": template.name,
                "version": template.version, "status": template.status }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    redeploy_granted(
        &state,
        &principal.tenant_id,
        &template_keys(&template, None),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Approve a template (its current version): agents granted it may send
/// it. Admins only. With `[templates] operator_review` set and the tenant
/// not yet trusted, it becomes `pending_operator` instead, usable once a
/// platform operator approves it (`/v1/operator/templates`).
#[utoipa::path(
    post,
    path = "/v1/templates/{id}/approve",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body(content = Option<Approve>, description = "Optional: the version being approved"),
    responses(
        (status = 200, description = "Approved (or `pending_operator`)", body = Template),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such template in this tenant"),
        (status = 409, description = "`already_approved`, `pending_operator`, `version_mismatch` or `conflict`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn approve_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("templates:write")?;
    let current = load_template(&state.db, &principal.tenant_id, &id).await?;
    let approve: Approve = optional_body(&body)?;
    check_version(&current, approve.version)?;
    if current.status == TemplateStatus::Approved {
        return Err(ApiError::conflict(
            "already_approved",
            "this version is approved already",
        ));
    }
    if current.status == TemplateStatus::PendingOperator {
        return Err(ApiError::conflict(
            "pending_operator",
            "this version is approved here and waits for a platform operator",
        ));
    }
    // The platform's operators may want to see it first (a stranger's
    // template goes out through the operator's own mail and SMS accounts).
    let status = if crate::template_review::needs_operator(&state, &principal.tenant_id).await? {
        TemplateStatus::PendingOperator
    } else {
        TemplateStatus::Approved
    };
    let now = now_ms().max(current.updated_at_ms + 1);
    let next = Template {
        status,
        updated_by: Some(principal.user_id.clone()),
        updated_at_ms: now,
        approved_by: Some(principal.user_id.clone()),
        approved_at_ms: Some(now),
        rejected_by: None,
        rejected_at_ms: None,
        rejection_reason: None,
        ..current.clone()
    };
    write_template(
        &state,
        &next,
        Some((current.version, current.status)),
        "template_approved",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "from_status": current.status.as_str() }),
        &principal,
        &rid,
    )
    .await?;
    redeploy_granted(&state, &next.tenant_id, &template_keys(&next, None)).await;
    Ok(Json(next))
}

/// Reject a template (its current version), with an optional reason; an
/// approved one stops being usable. Admins only.
#[utoipa::path(
    post,
    path = "/v1/templates/{id}/reject",
    tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    request_body(content = Option<Reject>, description = "Optional: version and reason"),
    responses(
        (status = 200, description = "Rejected", body = Template),
        (status = 403, description = "Not an admin"),
        (status = 404, description = "No such template in this tenant"),
        (status = 409, description = "`already_rejected`, `version_mismatch` or `conflict`"),
        (status = 422, description = "`invalid`: reason too long"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn reject_template(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Template>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("templates:write")?;
    let current = load_template(&state.db, &principal.tenant_id, &id).await?;
    let reject: Reject = optional_body(&body)?;
    if reject
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(ApiError::invalid(format!(
            "reason may have at most {MAX_REASON} characters"
        )));
    }
    check_version(&current, reject.version)?;
    if current.status == TemplateStatus::Rejected {
        return Err(ApiError::conflict(
            "already_rejected",
            "this version is rejected already",
        ));
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
        "template_rejected",
        json!({ "template_id": next.id, "name": next.name, "version": next.version,
                "from_status": current.status.as_str(), "reason": next.rejection_reason }),
        &principal,
        &rid,
    )
    .await?;
    redeploy_granted(&state, &next.tenant_id, &template_keys(&next, None)).await;
    Ok(Json(next))
}

pub(crate) fn check_version(current: &Template, expected: Option<i64>) -> Result<(), ApiError> {
    match expected {
        Some(v) if v != current.version => Err(ApiError::conflict(
            "version_mismatch",
            format!(
                "the template is at version {}, not {v}: review it again",
                current.version
            ),
        )
        .details(json!({ "version": current.version }))),
        _ => Ok(()),
    }
}
