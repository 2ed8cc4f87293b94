//! An agent's allowed recipients: `GET`, `PUT` and `DELETE` of
//! `/v1/agents/{id}/recipients`.

use super::*;

/// Entries checked and de-duplicated (case-insensitively, as they match),
/// in their order.
pub(super) fn validate_recipients(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        if entry.len() > MAX_RECIPIENT_LEN {
            return Err(ApiError::invalid(format!(
                "a recipient may have at most {MAX_RECIPIENT_LEN} bytes"
            )));
        }
        delta_templates::check_allow_entry(&entry).map_err(|e| {
            ApiError::invalid(e.to_string()).details(json!({ "recipient": e.entry }))
        })?;
        if seen.insert(entry.to_lowercase()) {
            out.push(entry);
        }
    }
    if out.len() > MAX_RECIPIENTS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_RECIPIENTS} recipients"
        )));
    }
    Ok(out)
}

/// Read-modify-write of an agent's recipients: `change` edits the list and
/// answers whether it changed. Retried when another change of the agent
/// came in between (its `updated_at_ms` moved); audited with `action`.
pub(super) async fn change_recipients(
    state: &AppState,
    principal: &Principal,
    rid: &RequestId,
    id: &str,
    action: &str,
    change: impl Fn(&mut Vec<String>) -> Result<bool, ApiError>,
) -> Result<Agent, ApiError> {
    for _ in 0..GRANT_WRITE_ATTEMPTS {
        let mut agent = agents::load_agent(state, &principal.tenant_id, id).await?;
        if !change(&mut agent.grants.recipients)? {
            return Ok(agent);
        }
        let previous = agent.updated_at_ms;
        agent.updated_at_ms = now_ms().max(previous + 1);
        let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
        let updated = sqlx::query(
            "UPDATE agents SET grants = $1, updated_at_ms = $2 \
             WHERE id = $3 AND tenant_id = $4 AND updated_at_ms = $5",
        )
        .bind(serde_json::to_string(&agent.grants).map_err(ApiError::internal)?)
        .bind(agent.updated_at_ms)
        .bind(id)
        .bind(&principal.tenant_id)
        .bind(previous)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
        if updated.rows_affected() == 0 {
            continue;
        }
        audit::record_in(
            &mut tx,
            Some(&principal.tenant_id),
            Some(&principal.user_id),
            action,
            json!({ "agent_id": id, "recipients": agent.grants.recipients }),
            Some(&rid.0),
        )
        .await?;
        tx.commit().await.map_err(ApiError::internal)?;
        redeploy(state, &agent).await;
        return Ok(agent);
    }
    Err(ApiError::conflict(
        "conflict",
        "the agent kept changing meanwhile; retry",
    ))
}

/// An agent's allowed recipients.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/recipients",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The list", body = Recipients),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get_recipients(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Recipients>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    record_ids(None, Some(&id), None);
    let agent = agents::load_agent(&state, &principal.tenant_id, &id).await?;
    Ok(Json(Recipients {
        agent_id: agent.id,
        recipients: agent.grants.recipients,
    }))
}

/// Replace an agent's allowed recipients; its node is updated.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/recipients",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    request_body = SetRecipients,
    responses(
        (status = 200, description = "Stored", body = Recipients),
        (status = 404, description = "No such agent in this tenant"),
        (status = 422, description = "`invalid`: an entry is not an email address, \
                                      `*@domain` or an E.164 number (`details.recipient`)"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn set_recipients(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetRecipients>,
) -> Result<Json<Recipients>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    // The agent first: another tenant's id is a 404 whatever the body.
    agents::load_agent(&state, &principal.tenant_id, &id).await?;
    let list = validate_recipients(body.recipients)?;
    let agent = change_recipients(
        &state,
        &principal,
        &rid,
        &id,
        "agent_recipients_set",
        |current| {
            let changed = *current != list;
            current.clone_from(&list);
            Ok(changed)
        },
    )
    .await?;
    Ok(Json(Recipients {
        agent_id: agent.id,
        recipients: agent.grants.recipients,
    }))
}

/// Remove one entry from an agent's allowed recipients (compared
/// case-insensitively); its node is updated.
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}/recipients/{recipient}",
    tag = "agents",
    params(
        ("id" = String, Path, description = "Agent id"),
        ("recipient" = String, Path, description = "The entry (URL-encoded)"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such agent in this tenant, or not on its list"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn delete_recipient(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path((id, recipient)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&id), None);
    let target = recipient.to_lowercase();
    change_recipients(
        &state,
        &principal,
        &rid,
        &id,
        "agent_recipient_removed",
        |current| {
            let before = current.len();
            current.retain(|r| r.to_lowercase() != target);
            if current.len() == before {
                return Err(ApiError::not_found("recipient"));
            }
            Ok(true)
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
