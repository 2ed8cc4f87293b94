//! The webhooks' HTTP API: endpoints and deliveries of the caller's
//! tenant. Managing endpoints and replaying deliveries needs the admin
//! role (and an API key's `tenant:admin` scope): an endpoint receives every
//! subscribed event of the tenant. Reading deliveries needs membership.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

use super::model::*;
use super::store;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook_endpoint, list_webhook_endpoints))
        .routes(routes!(delete_webhook_endpoint))
        .routes(routes!(list_webhook_deliveries))
        .routes(routes!(replay_webhook_delivery))
}

fn admin(p: &Principal) -> Result<(), ApiError> {
    p.require_role(Role::Admin)?;
    p.require_scope("tenant:admin")
}

/// Register an endpoint: events of the chosen types are POSTed to it,
/// signed with the secret answered here (and only here). `agent_ids` and
/// `trigger_ids` narrow the `run.*` events to some agents or triggers.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "The endpoint and its secret (shown once)", body = CreatedEndpoint),
        (status = 409, description = "`too_many_endpoints` (20 per tenant)"),
        (status = 422, description = "`invalid_url`, `invalid_event_types`, `invalid_description`, \
            `invalid_filter` (more than 50 ids, or an empty or over-long one), `unknown_agent` / \
            `unknown_trigger` (an id of `agent_ids` / `trigger_ids` that is not this tenant's), \
            `unresolvable_url` (the host does not resolve within 3 s), `private_webhook_url` (it \
            resolves to a loopback, private, link-local or reserved address)"),
    ),
    security(("bearer" = []))
)]
async fn create_webhook_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<NewEndpoint>,
) -> Result<Response, ApiError> {
    admin(&principal)?;
    let created = store::create(
        &state,
        &principal.tenant_id,
        &principal.user_id,
        body,
        now_ms(),
    )
    .await?;
    crate::audit::record(
        &state.db,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "webhook_endpoint_created",
        json!({ "endpoint_id": created.endpoint.id, "url": created.endpoint.url }),
        Some(&rid.0),
    )
    .await;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The tenant's endpoints, oldest first (without their secrets).
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    params(PageQuery),
    responses((status = 200, description = "A page", body = Page<Endpoint>)),
    security(("bearer" = []))
)]
async fn list_webhook_endpoints(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Endpoint>>, ApiError> {
    admin(&principal)?;
    store::list(&state.db, &principal.tenant_id, &page)
        .await
        .map(Json)
}

/// Delete an endpoint; its deliveries, pending ones included, go with it.
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn delete_webhook_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&principal)?;
    store::delete(&state.db, &principal.tenant_id, &id).await?;
    crate::audit::record(
        &state.db,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "webhook_endpoint_deleted",
        json!({ "endpoint_id": id }),
        Some(&rid.0),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Filters of `GET /v1/webhook-deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this status (`pending`, `delivered`, `dead`).
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub status: Option<String>,
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "crate::pagination::page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,200}$")]
    pub cursor: Option<String>,
}

/// The tenant's deliveries, oldest first; `?status=dead` is the dead-letter
/// list.
#[utoipa::path(
    get,
    path = "/v1/webhook-deliveries",
    tag = "webhooks",
    params(DeliveryQuery),
    responses((status = 200, description = "A page", body = Page<Delivery>)),
    security(("bearer" = []))
)]
async fn list_webhook_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    admin(&principal)?;
    if let Some(s) = &q.status
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "status must be pending, delivered or dead",
        ));
    }
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    store::deliveries(&state.db, &principal.tenant_id, q.status.as_deref(), &page)
        .await
        .map(Json)
}

/// Send a dead (or delivered) delivery again: five fresh tries, the same
/// `webhook-id`.
#[utoipa::path(
    post,
    path = "/v1/webhook-deliveries/{id}/replay",
    tag = "webhooks",
    params(("id" = String, Path, description = "The delivery")),
    responses(
        (status = 200, description = "Pending again", body = Delivery),
        (status = 404, description = "No such delivery in this tenant"),
        (status = 409, description = "`delivery_pending`: it is still being retried"),
    ),
    security(("bearer" = []))
)]
async fn replay_webhook_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    admin(&principal)?;
    let d = store::replay(&state.db, &principal.tenant_id, &id, now_ms()).await?;
    crate::audit::record(
        &state.db,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "webhook_delivery_replayed",
        json!({ "delivery_id": id }),
        Some(&rid.0),
    )
    .await;
    Ok(Json(d))
}
