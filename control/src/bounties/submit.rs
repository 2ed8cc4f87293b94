//! Recording submissions: the checks a submission (or a claim, or an
//! attempt) must pass, and the insert under the agent's claim, with its
//! audit entry and `submission.created` event in the same transaction.

use axum::http::StatusCode;
use delta_http::ApiError;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;

use crate::db::{Db, new_id};
use crate::state::AppState;

use super::artifacts::ArtifactRef;
use super::events::{Kind, publish};
use super::model::*;
use super::store::{Actor, audit_in, db_err, get_submission, get_visible, in_write};

/// Refuse a submission or claim by `tenant` on `b`: its own bounty (403
/// `own_bounty`), or one not open (409 `not_open`).
pub(super) fn check_open(b: &Bounty, tenant: &str, now: i64) -> Result<(), ApiError> {
    if b.tenant_id == tenant {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "own_bounty",
            "a business cannot claim or submit to its own bounty",
        ));
    }
    if b.status != "open" || b.deadline_ms <= now {
        return Err(
            ApiError::conflict("not_open", format!("the bounty is {}", b.status))
                .details(json!({ "status": b.status })),
        );
    }
    Ok(())
}

/// Refuse `agent_id` unless it is one of `tenant`'s agents (422
/// `unknown_agent`).
pub(super) async fn check_agent(db: &Db, tenant: &str, agent_id: &str) -> Result<(), ApiError> {
    let agent: Option<String> =
        sqlx::query_scalar("SELECT id FROM agents WHERE id = $1 AND tenant_id = $2")
            .bind(agent_id)
            .bind(tenant)
            .fetch_optional(db.pool())
            .await
            .map_err(db_err)?;
    if agent.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agent",
            "agent_id must name one of this tenant's agents",
        ));
    }
    Ok(())
}

/// Refuse a payload larger than `max_submission_bytes` (413).
pub(super) fn check_size(state: &AppState, payload: &str) -> Result<(), ApiError> {
    let max = state.config.max_submission_bytes;
    if payload.len() as u64 > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "submission_too_large",
            format!(
                "the payload is {} bytes of JSON; at most {max}",
                payload.len()
            ),
        ));
    }
    Ok(())
}

/// Record a submission of `body` (with `artifact`, already stored) to open
/// bounty `bounty_id` by another tenant's agent, `pending_verification`,
/// under the agent's claim (made here if it has none and the bounty has
/// room).
pub async fn submit(
    state: &AppState,
    actor: Actor<'_>,
    bounty_id: &str,
    body: &NewSubmission,
    artifact: Option<&ArtifactRef>,
    now: i64,
) -> Result<Submission, ApiError> {
    let b = get_visible(&state.db, actor.tenant_id, bounty_id).await?;
    check_open(&b, actor.tenant_id, now)?;
    let payload = body.payload.to_string();
    check_size(state, &payload)?;
    check_agent(&state.db, actor.tenant_id, &body.agent_id).await?;
    let id = in_write(&state.db, async |c: &mut AnyConnection| {
        let claim = super::claims::hold_in(c, actor, bounty_id, &body.agent_id, now).await?;
        let id =
            insert_submission_in(c, actor, &b, &claim.id, &body.agent_id, &payload, now).await?;
        if let Some(a) = artifact {
            sqlx::query(
                "UPDATE bounty_submissions SET artifact_sha256 = $2, artifact_bytes = $3 \
                 WHERE id = $1",
            )
            .bind(&id)
            .bind(&a.sha256)
            .bind(a.size_bytes)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
        }
        Ok(id)
    })
    .await?;
    get_submission(&state.db, actor.tenant_id, &id).await
}

/// Insert a submission under claim `claim_id` (held by the caller) and mark
/// the claim submitted, in transaction `c`; the new submission's id.
pub(super) async fn insert_submission_in(
    c: &mut AnyConnection,
    actor: Actor<'_>,
    b: &Bounty,
    claim_id: &str,
    agent_id: &str,
    payload: &str,
    now: i64,
) -> Result<String, ApiError> {
    let id = new_id(SUBMISSION_PREFIX);
    let sha256 = hex::encode(Sha256::digest(payload.as_bytes()));
    sqlx::query(
        "INSERT INTO bounty_submissions (id, bounty_id, tenant_id, user_id, agent_id, payload, \
         sha256, status, passed, score_milli, report, attempts, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending_verification', NULL, NULL, NULL, 0, $8, $8)",
    )
    .bind(&id)
    .bind(&b.id)
    .bind(actor.tenant_id)
    .bind(actor.user_id)
    .bind(agent_id)
    .bind(payload)
    .bind(&sha256)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "UPDATE bounty_claims SET status = 'submitted', updated_at_ms = $2 \
         WHERE id = $1 AND status = 'active'",
    )
    .bind(claim_id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    audit_in(
        c,
        actor.tenant_id,
        Some(actor),
        "submission_created",
        json!({ "bounty_id": b.id, "submission_id": id, "sha256": sha256 }),
    )
    .await?;
    // The payload itself is not in the event (the business reads it
    // through the API, where its rules apply).
    publish(
        c,
        &b.tenant_id,
        &b.id,
        Some(actor.tenant_id),
        Kind::SubmissionCreated,
        json!({ "bounty_id": b.id, "submission_id": id, "agent_id": agent_id,
                "claim_id": claim_id, "sha256": sha256 }),
        now,
    )
    .await?;
    Ok(id)
}
