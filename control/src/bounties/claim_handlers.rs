//! The HTTP API of claims, attempts and the bounty event stream. Claiming
//! and attempting need membership with `bounties:write` in the agent's
//! tenant; reading, `bounties:read`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

use super::attempts::{self, AttemptStarted};
use super::events::{self, BountyEvent};
use super::model::*;
use super::store::{self, Actor, in_write};

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_claim, list_claims))
        .routes(routes!(release_claim))
        .routes(routes!(create_attempt))
        .routes(routes!(get_attempt))
        .routes(routes!(bounty_events))
}

fn actor<'a>(p: &'a Principal, rid: &'a RequestId) -> Actor<'a> {
    Actor {
        tenant_id: &p.tenant_id,
        user_id: &p.user_id,
        request_id: &rid.0,
    }
}

fn writer(p: &Principal) -> Result<(), ApiError> {
    p.require_role(Role::Member)?;
    p.require_scope("bounties:write")
}

fn reader(p: &Principal) -> Result<(), ApiError> {
    p.require_role(Role::Member)?;
    p.require_scope("bounties:read")
}

/// Claim another tenant's open bounty for one of the caller's tenant's
/// agents (needed to submit or attempt; a submission without one claims
/// implicitly). At most `max_claims` claims are held at once, one per agent.
#[utoipa::path(
    post,
    path = "/v1/bounties/{id}/claims",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty")),
    request_body = ClaimRequest,
    responses(
        (status = 201, description = "The claim, `active`", body = Claim),
        (status = 403, description = "`own_bounty`"),
        (status = 404, description = "No such bounty visible to this tenant"),
        (status = 409, description = "`not_open`, `claims_full` (details: `max_claims`), \
            `already_claimed` (details: `claim_id`)"),
        (status = 422, description = "`unknown_agent`"),
    ),
    security(("bearer" = []))
)]
async fn create_claim(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ClaimRequest>,
) -> Result<Response, ApiError> {
    writer(&principal)?;
    let now = now_ms();
    let a = actor(&principal, &rid);
    let b = store::get_visible(&state.db, a.tenant_id, &id).await?;
    super::submit::check_open(&b, a.tenant_id, now)?;
    super::submit::check_agent(&state.db, a.tenant_id, &body.agent_id).await?;
    let claim = in_write(&state.db, async |c: &mut sqlx::AnyConnection| {
        super::claims::claim_in(c, a, &id, &body.agent_id, now).await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(claim)).into_response())
}

/// A bounty's claims: all of them for its business, the caller's tenant's
/// own for anyone else.
#[utoipa::path(
    get,
    path = "/v1/bounties/{id}/claims",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty"), PageQuery),
    responses(
        (status = 200, description = "A page", body = Page<Claim>),
        (status = 404, description = "No such bounty visible to this tenant"),
    ),
    security(("bearer" = []))
)]
async fn list_claims(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Claim>>, ApiError> {
    reader(&principal)?;
    let b = store::get_visible(&state.db, &principal.tenant_id, &id).await?;
    super::claims::list(&state.db, &principal.tenant_id, &b, &page)
        .await
        .map(Json)
}

/// Release one of the caller's tenant's claims (`active` or `submitted`):
/// its slot is free for another agent; submissions already made stay.
#[utoipa::path(
    delete,
    path = "/v1/claims/{id}",
    tag = "bounties",
    params(("id" = String, Path, description = "The claim")),
    responses(
        (status = 200, description = "Released", body = Claim),
        (status = 404, description = "No such claim of this tenant"),
        (status = 409, description = "`not_releasable`: released or expired already"),
    ),
    security(("bearer" = []))
)]
async fn release_claim(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Claim>, ApiError> {
    writer(&principal)?;
    let a = actor(&principal, &rid);
    in_write(&state.db, async |c: &mut sqlx::AnyConnection| {
        super::claims::release_in(c, a, &id, now_ms()).await
    })
    .await
    .map(Json)
}

/// Dispatch one of the caller's tenant's agents at another tenant's open
/// bounty: the agent is claimed for it if needed, and a run of it starts on
/// its node with the input `{"bounty": {"id", "title", "description",
/// "spec"}}`. When the run completes, its output becomes a submission
/// (verified like any other); a run that fails fails the attempt (see
/// `GET /v1/attempts/{id}`).
#[utoipa::path(
    post,
    path = "/v1/bounties/{id}/attempts",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty")),
    request_body = ClaimRequest,
    responses(
        (status = 202, description = "The run started", body = AttemptStarted),
        (status = 403, description = "`own_bounty`"),
        (status = 404, description = "No such bounty visible to this tenant"),
        (status = 409, description = "`not_open`, `claims_full`, `agent_paused`"),
        (status = 422, description = "`unknown_agent`"),
        (status = 429, description = "`queue_full` (see `Retry-After`)"),
        (status = 503, description = "`node_unavailable` (see `Retry-After`)"),
    ),
    security(("bearer" = []))
)]
async fn create_attempt(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ClaimRequest>,
) -> Result<Response, ApiError> {
    writer(&principal)?;
    principal.require_scope("runs:write")?;
    let started = attempts::start(
        &state,
        actor(&principal, &rid),
        &id,
        &body.agent_id,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// One of the caller's tenant's attempts.
#[utoipa::path(
    get,
    path = "/v1/attempts/{id}",
    tag = "bounties",
    params(("id" = String, Path, description = "The attempt")),
    responses(
        (status = 200, description = "The attempt", body = Attempt),
        (status = 404, description = "No such attempt of this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_attempt(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Attempt>, ApiError> {
    reader(&principal)?;
    attempts::get(&state, &principal.tenant_id, &id)
        .await
        .map(Json)
}

/// A bounty's events as server-sent events: every event since it was
/// created (or after the `Last-Event-ID` header's number), then live ones,
/// until the bounty is closed (`bounty.completed` or `bounty.refunded`, or
/// a draft cancelled). The business sees every event; a tenant holding a
/// claim sees the bounty-wide ones and those about its own claims and
/// submissions; anyone else 404.
#[utoipa::path(
    get,
    path = "/v1/bounties/{id}/events",
    tag = "bounties",
    params(
        ("id" = String, Path, description = "The bounty"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event number"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = BountyEvent),
        (status = 404, description = "No such bounty, or neither its business nor a claimant"),
    ),
    security(("bearer" = []))
)]
async fn bounty_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    reader(&principal)?;
    let all = events::access(&state.db, &principal.tenant_id, &id).await?;
    // Anything but a number is ignored: the stream starts from the start.
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0);
    events::stream(
        state.db.clone(),
        id,
        principal.tenant_id.clone(),
        all,
        after,
    )
}
