//! The bounties' HTTP API. Business operations (create, fund, cancel,
//! approve, reject) need the admin role in the bounty's tenant; reading and
//! submitting, membership. Every route is tenant-scoped: another tenant's
//! drafts and submissions answer 404.

use axum::extract::{FromRequest as _, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::payments::PaymentsBackend;
use crate::state::AppState;

use super::model::*;
use super::store::{self, Actor, ListFilter};
use super::verify::verify_submission;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_bounty, list_bounties))
        .routes(routes!(get_bounty))
        .routes(routes!(fund_bounty))
        .routes(routes!(cancel_bounty))
        .routes(routes!(create_submission, list_submissions))
        .routes(routes!(get_submission))
        .routes(routes!(verify_again))
        .routes(routes!(approve_submission))
        .routes(routes!(reject_submission))
        .routes(routes!(super::artifacts::artifact_url))
        .routes(routes!(super::artifacts::download))
        .merge(super::claim_handlers::routes())
}

fn actor<'a>(p: &'a Principal, rid: &'a RequestId) -> Actor<'a> {
    Actor {
        tenant_id: &p.tenant_id,
        user_id: &p.user_id,
        request_id: &rid.0,
    }
}

fn business(p: &Principal) -> Result<(), ApiError> {
    p.require_role(Role::Admin)?;
    p.require_scope("bounties:write")
}

fn reader(p: &Principal) -> Result<(), ApiError> {
    p.require_role(Role::Member)?;
    p.require_scope("bounties:read")
}

/// Create a draft bounty (nothing is escrowed until it is funded).
#[utoipa::path(
    post,
    path = "/v1/bounties",
    tag = "bounties",
    request_body = NewBounty,
    responses(
        (status = 201, description = "The draft", body = Bounty),
        (status = 422, description = "`invalid_title`, `invalid_reward`, `invalid_currency`, \
            `invalid_deadline`, `invalid_spec`, `unknown_verifier` (not an upload of this tenant), \
            `invalid_verifier` (not a `verifier` component)"),
    ),
    security(("bearer" = []))
)]
async fn create_bounty(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<NewBounty>,
) -> Result<Response, ApiError> {
    business(&principal)?;
    let b = store::create(&state, actor(&principal, &rid), body, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

/// Filters of `GET /v1/bounties`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BountyQuery {
    /// Only this status (`draft`, `open`, `completed`, `cancelled`, `expired`).
    #[param(pattern = "^(draft|open|completed|cancelled|expired)$")]
    pub status: Option<String>,
    /// Only rewards of at least this many minor units.
    pub min_reward: Option<i64>,
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "crate::pagination::page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,200}$")]
    pub cursor: Option<String>,
}

/// The tenant's own bounties and every funded one, oldest first.
#[utoipa::path(
    get,
    path = "/v1/bounties",
    tag = "bounties",
    params(BountyQuery),
    responses((status = 200, description = "A page", body = Page<Bounty>)),
    security(("bearer" = []))
)]
async fn list_bounties(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<BountyQuery>,
) -> Result<Json<Page<Bounty>>, ApiError> {
    reader(&principal)?;
    if let Some(s) = &q.status
        && !["draft", "open", "completed", "cancelled", "expired"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "status must be draft, open, completed, cancelled or expired",
        ));
    }
    let filter = ListFilter {
        status: q.status,
        min_reward: q.min_reward,
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    store::list(&state.db, &principal.tenant_id, &filter, &page)
        .await
        .map(Json)
}

/// One bounty (another tenant's draft is 404).
#[utoipa::path(
    get,
    path = "/v1/bounties/{id}",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty")),
    responses(
        (status = 200, description = "The bounty", body = Bounty),
        (status = 404, description = "No such bounty visible to this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_bounty(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Bounty>, ApiError> {
    reader(&principal)?;
    store::get_visible(&state.db, &principal.tenant_id, &id)
        .await
        .map(Json)
}

/// Fund a draft. With the `ledger` payments backend the reward moves from
/// the business's balance into escrow (a pending transfer) and the bounty
/// opens. With `stripe` the answer is still a draft whose `payment` holds a
/// PaymentIntent and its `client_secret`: the business confirms the card
/// payment with Stripe, and the bounty opens when Stripe reports the card
/// authorized (calling this again answers the same PaymentIntent).
#[utoipa::path(
    post,
    path = "/v1/bounties/{id}/fund",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty")),
    responses(
        (status = 200, description = "Open (ledger), or a draft awaiting its card payment (stripe)", body = Bounty),
        (status = 404, description = "No such bounty of this tenant"),
        (status = 409, description = "`insufficient_funds` (nothing changed), `not_draft`, `deadline_passed`, `payment_in_progress`"),
        (status = 422, description = "`deadline_beyond_authorization` or `payment_refused` (stripe)"),
        (status = 503, description = "`payment_provider_unavailable` (stripe; retry)"),
    ),
    security(("bearer" = []))
)]
async fn fund_bounty(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Bounty>, ApiError> {
    business(&principal)?;
    let actor = actor(&principal, &rid);
    match state.config.payments.backend {
        PaymentsBackend::Ledger => store::fund(&state, actor, &id, now_ms()).await,
        PaymentsBackend::Stripe => super::fund_with_stripe(&state, actor, &id, now_ms()).await,
    }
    .map(Json)
}

/// Cancel before approval: an open bounty's escrow is voided (a full
/// refund); its submissions are rejected.
#[utoipa::path(
    post,
    path = "/v1/bounties/{id}/cancel",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty")),
    responses(
        (status = 200, description = "Cancelled", body = Bounty),
        (status = 404, description = "No such bounty of this tenant"),
        (status = 409, description = "`not_cancellable`: completed, cancelled or expired"),
    ),
    security(("bearer" = []))
)]
async fn cancel_bounty(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Bounty>, ApiError> {
    business(&principal)?;
    store::cancel(&state.db, actor(&principal, &rid), &id, now_ms())
        .await
        .map(Json)
}

/// Submit work to another tenant's open bounty with one of the caller's
/// tenant's agents; it is verified on a node before the answer (if no node
/// is available it stays `pending_verification`). The work is either a
/// JSON body (`NewSubmission`) or a file: `Content-Type:
/// application/octet-stream` with `?agent_id=`, at most `[artifacts]
/// max_bytes`, stored by its SHA-256; the verifier then receives
/// `{"artifact": {"sha256", "size_bytes"}}` as the payload.
#[utoipa::path(
    post,
    path = "/v1/bounties/{id}/submissions",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty"), ArtifactQuery),
    request_body(content(
        (NewSubmission = "application/json"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Recorded (and verified, unless pending)", body = Submission),
        (status = 403, description = "`own_bounty`"),
        (status = 404, description = "No such bounty visible to this tenant"),
        (status = 409, description = "`not_open`"),
        (status = 413, description = "`submission_too_large`, `artifact_too_large`"),
        (status = 422, description = "`unknown_agent`, `missing_agent` (an artifact without \
            `?agent_id=`)"),
        (status = 503, description = "`artifact_store_unavailable`: the artifact store did not \
            answer (try again)"),
    ),
    security(("bearer" = []))
)]
async fn create_submission(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    Query(q): Query<ArtifactQuery>,
    request: Request,
) -> Result<Response, Response> {
    let err = IntoResponse::into_response;
    principal.require_role(Role::Member).map_err(err)?;
    principal.require_scope("bounties:write").map_err(err)?;
    let actor = actor(&principal, &rid);
    let (body, artifact) = if is_octet_stream(request.headers()) {
        let agent_id = q.agent_id.ok_or_else(|| {
            err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_agent",
                "an artifact upload names its agent: ?agent_id=",
            ))
        })?;
        // Refuse before reading (and storing) the bytes what the insert
        // would refuse anyway.
        let b = store::get_visible(&state.db, actor.tenant_id, &id)
            .await
            .map_err(err)?;
        super::submit::check_open(&b, actor.tenant_id, now_ms()).map_err(err)?;
        super::submit::check_agent(&state.db, actor.tenant_id, &agent_id)
            .await
            .map_err(err)?;
        let (parts, body) = request.into_parts();
        let bytes =
            super::artifacts::read_capped(&parts.headers, body, state.artifacts.max_bytes).await?;
        let artifact = state.artifacts.put(bytes).await.map_err(err)?;
        let payload = serde_json::json!({ "artifact": &artifact });
        (NewSubmission { agent_id, payload }, Some(artifact))
    } else {
        let JsonBody(body) = JsonBody::<NewSubmission>::from_request(request, &state)
            .await
            .map_err(err)?;
        (body, None)
    };
    let s = super::submit::submit(&state, actor, &id, &body, artifact.as_ref(), now_ms())
        .await
        .map_err(err)?;
    verify_submission(&state, &s.id).await.map_err(err)?;
    let s = store::get_submission(&state.db, &principal.tenant_id, &s.id)
        .await
        .map_err(err)?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

/// The query of an artifact upload.
#[derive(Debug, Deserialize, IntoParams)]
struct ArtifactQuery {
    /// The submitting agent (artifact uploads only; a JSON body names it
    /// in the body).
    agent_id: Option<String>,
}

fn is_octet_stream(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/octet-stream"))
        })
}

/// A bounty's submissions: all of them for its business, the caller's
/// tenant's own for anyone else.
#[utoipa::path(
    get,
    path = "/v1/bounties/{id}/submissions",
    tag = "bounties",
    params(("id" = String, Path, description = "The bounty"), PageQuery),
    responses(
        (status = 200, description = "A page", body = Page<Submission>),
        (status = 404, description = "No such bounty visible to this tenant"),
    ),
    security(("bearer" = []))
)]
async fn list_submissions(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Submission>>, ApiError> {
    reader(&principal)?;
    let b = store::get_visible(&state.db, &principal.tenant_id, &id).await?;
    store::list_submissions(&state.db, &principal.tenant_id, &b, &page)
        .await
        .map(Json)
}

/// One submission (its submitter's tenant or the bounty's business).
#[utoipa::path(
    get,
    path = "/v1/submissions/{id}",
    tag = "bounties",
    params(("id" = String, Path, description = "The submission")),
    responses(
        (status = 200, description = "The submission", body = Submission),
        (status = 404, description = "No such submission visible to this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_submission(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Submission>, ApiError> {
    reader(&principal)?;
    store::get_submission(&state.db, &principal.tenant_id, &id)
        .await
        .map(Json)
}

/// Verify a `pending_verification` submission now (no node was available
/// before); any other submission is answered as it is.
#[utoipa::path(
    post,
    path = "/v1/submissions/{id}/verify",
    tag = "bounties",
    params(("id" = String, Path, description = "The submission")),
    responses(
        (status = 200, description = "The submission after the attempt", body = Submission),
        (status = 404, description = "No such submission visible to this tenant"),
    ),
    security(("bearer" = []))
)]
async fn verify_again(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Submission>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("bounties:write")?;
    store::get_submission(&state.db, &principal.tenant_id, &id).await?;
    verify_submission(&state, &id).await?;
    store::get_submission(&state.db, &principal.tenant_id, &id)
        .await
        .map(Json)
}

/// Approve a verified, passing submission: the escrow is posted, the
/// submitter's tenant paid the reward minus the platform fee
/// (`bounty_fee_bps`), the fee booked, the bounty completed and the other
/// submissions rejected. Exactly once: a second approval, or one racing a
/// cancellation or the deadline, is refused.
#[utoipa::path(
    post,
    path = "/v1/submissions/{id}/approve",
    tag = "bounties",
    params(("id" = String, Path, description = "The submission")),
    responses(
        (status = 200, description = "The completed bounty", body = Bounty),
        (status = 403, description = "The submitter cannot approve"),
        (status = 404, description = "No such submission visible to this tenant"),
        (status = 409, description = "`not_open` (completed, cancelled, expired), `deadline_passed`, \
            `not_approvable` (not verified or its verdict failed)"),
    ),
    security(("bearer" = []))
)]
async fn approve_submission(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Bounty>, ApiError> {
    business(&principal)?;
    store::approve(
        &state.db,
        Some(actor(&principal, &rid)),
        &id,
        state.config.bounty_fee_bps,
        now_ms(),
    )
    .await
    .map(Json)
}

/// Reject a submission; the bounty stays open.
#[utoipa::path(
    post,
    path = "/v1/submissions/{id}/reject",
    tag = "bounties",
    params(("id" = String, Path, description = "The submission")),
    responses(
        (status = 200, description = "Rejected", body = Submission),
        (status = 403, description = "The submitter cannot reject"),
        (status = 404, description = "No such submission visible to this tenant"),
        (status = 409, description = "`not_rejectable`: approved or rejected already"),
    ),
    security(("bearer" = []))
)]
async fn reject_submission(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Submission>, ApiError> {
    business(&principal)?;
    store::reject(&state.db, actor(&principal, &rid), &id, now_ms()).await?;
    store::get_submission(&state.db, &principal.tenant_id, &id)
        .await
        .map(Json)
}
