//! Inbound webhooks: `POST /v1/agents/{id}/webhooks` (the secret is in the
//! answer, once), `GET` to list, `DELETE /v1/webhooks/{id}`,
//! `POST /v1/webhooks/{id}/rotate-secret`; and the public delivery route
//! `POST /v1/hooks/{id}`, which needs no bearer token but a signature
//! ([`super::signature`]).
//!
//! A delivery is checked in this order, each refusal starting nothing: the
//! webhook exists (404), its rate (429, the request rate limits keyed by
//! the webhook and its tenant), the body's size (413 over
//! `max_webhook_body_bytes`), the signature (400 malformed, 401 wrong or
//! outside the ±300 s window), and that the signature was not seen before
//! (401 `signature_replayed`; remembered in the database until the window
//! passes, so every replica knows; forgotten again when the run is refused
//! before it started, so the sender can retry). Then the run starts through
//! [`crate::runs::start_run`] with the input
//! `{"webhook": {"headers": {...}, "body": <JSON, or the text>}}`.
//!
//! Roles: listing needs `member` and `agents:read`; creating, deleting and
//! rotating need `admin` and `agents:write`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use delta_http::{ApiError, record_ids};
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{HookAccepted, HookQuery, Webhook, WebhookWithSecret};
use super::signature::{self, REPLAY_WINDOW_SECS, SIGNATURE_HEADER, SignatureError};
use super::store::{self, StoredWebhook, WEBHOOK_COLUMNS};
use crate::agents::load_agent;
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::pagination::{Listing, Page, PageQuery, tenant_page};
use crate::runs::Started;

/// Headers of a delivery passed to the run (besides `x-*` ones).
const PASSED_HEADERS: [&str; 3] = ["content-type", "user-agent", "content-encoding"];
/// Most headers passed to the run.
const MAX_PASSED_HEADERS: usize = 32;

/// Routes of webhooks.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(deliver))
}

/// Create an inbound webhook of an agent; the answer holds its secret,
/// shown only this once.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/webhooks",
    operation_id = "create_webhook",
    tag = "triggers",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 201, description = "Created, with its secret", body = WebhookWithSecret),
        (status = 403, description = "`quota_exceeded`: the agent has `[quotas] webhooks_per_agent` already"),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    record_ids(None, Some(&agent_id), None);
    let agent = load_agent(&state, &principal.tenant_id, &agent_id).await?;
    let id = format!("whk_{}", uuid::Uuid::now_v7().simple());
    let secret = signature::new_secret();
    let now = now_ms();
    let stored = StoredWebhook {
        webhook: Webhook {
            url: format!("/v1/hooks/{id}"),
            id: id.clone(),
            agent_id: agent.id,
            created_at_ms: now,
            rotated_at_ms: now,
        },
        tenant_id: principal.tenant_id.clone(),
        secret_sealed: signature::seal(&state.keys, &id, &secret)?,
    };
    store::insert_webhook(&state.db, &stored, state.config.quotas.webhooks_per_agent).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret {
            webhook: stored.webhook,
            secret,
        }),
    ))
}

/// List an agent's webhooks (without secrets), oldest first.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/webhooks",
    operation_id = "list_webhooks",
    tag = "triggers",
    params(("id" = String, Path, description = "Agent id"), PageQuery),
    responses(
        (status = 200, description = "A page", body = Page<Webhook>),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Webhook>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("agents:read")?;
    let agent = load_agent(&state, &principal.tenant_id, &agent_id).await?;
    tenant_page(
        &state.db,
        Listing {
            columns: WEBHOOK_COLUMNS,
            table: "webhooks",
            filters: &[("agent_id", &agent.id)],
        },
        &principal.tenant_id,
        &page,
        |row| store::webhook_from_row(row).map(|w| w.webhook),
        |w: &Webhook| (w.created_at_ms, w.id.clone()),
    )
    .await
    .map(Json)
}

/// Delete a webhook: deliveries to it answer 404 from now on.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "triggers",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    if store::delete_webhook(&state.db, &principal.tenant_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// Replace a webhook's secret; the old one stops verifying at once. The
/// answer holds the new secret, shown only this once.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    operation_id = "rotate_webhook_secret",
    tag = "triggers",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The new secret", body = WebhookWithSecret),
        (status = 404, description = "No such webhook in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn rotate_webhook_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("agents:write")?;
    let mut stored = store::load_webhook(&state.db, Some(&principal.tenant_id), &id).await?;
    let secret = signature::new_secret();
    let sealed = signature::seal(&state.keys, &id, &secret)?;
    let now = now_ms();
    if !store::rotate_webhook(&state.db, &principal.tenant_id, &id, &sealed, now).await? {
        return Err(ApiError::not_found("webhook"));
    }
    stored.webhook.rotated_at_ms = now;
    Ok(Json(WebhookWithSecret {
        webhook: stored.webhook,
        secret,
    }))
}

/// Deliver to an inbound webhook: a signed request that starts a run of
/// its agent with the request as input. No bearer token: the signature
/// `X-Delta-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
/// authenticates it.
#[utoipa::path(
    post,
    path = "/v1/hooks/{id}",
    operation_id = "deliver_webhook",
    tag = "triggers",
    params(
        ("id" = String, Path, description = "Webhook id"),
        ("X-Delta-Signature" = String, Header,
         description = "`t=<unix secs>,v1=<64 hex digits>`: HMAC-SHA256 of `<t>.<body>` under \
                        the webhook's secret, within ±300 s of the control plane's clock, \
                        each signature accepted once"),
        HookQuery,
    ),
    request_body(
        description = "Any body, at most `max_webhook_body_bytes` (default 256 KiB): a JSON \
                       content type whose body parses is passed to the run as JSON, anything \
                       else as text",
        content(
            (serde_json::Value = "application/json"),
            (String = "text/plain"),
        )
    ),
    responses(
        (status = 202, description = "A run started", body = HookAccepted),
        (status = 200, description = "Finished (`?wait=true`)", body = crate::runs::Run),
        (status = 400, description = "`signature_malformed`"),
        (status = 401, description = "`signature_invalid`, `signature_expired` or `signature_replayed`"),
        (status = 404, description = "No such webhook"),
        (status = 409, description = "`agent_paused`"),
        (status = 413, description = "`payload_too_large`"),
        (status = 429, description = "`rate_limited` or `queue_full` (see `Retry-After`)"),
        (status = 503, description = "`node_unavailable` (see `Retry-After`)"),
    )
)]
async fn deliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let hook = store::load_webhook(&state.db, None, &id).await?;
    record_ids(Some(&hook.tenant_id), Some(&hook.webhook.agent_id), None);
    if let Some(refusal) = state
        .limiter
        .check_ids(&format!("webhook:{id}"), &hook.tenant_id)
        .await
    {
        let mut refused = state.limiter.refuse(refusal);
        refused.message = "too many deliveries to this webhook (or its tenant); retry later".into();
        return Err(refused);
    }
    let cap = state.config.max_webhook_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a webhook delivery is at most {cap} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, usize::try_from(cap).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large())?;
    let secret = signature::open(&state.keys, &id, &hook.secret_sealed).ok_or_else(|| {
        ApiError::internal(format!(
            "webhook {id}: its secret does not open (was the access-token secret replaced?)"
        ))
    })?;
    let presented = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let now = now_ms();
    let verified =
        signature::verify(presented, &secret, &bytes, now.div_euclid(1000)).map_err(|e| {
            let status = match e {
                SignatureError::Malformed => StatusCode::BAD_REQUEST,
                SignatureError::Stale | SignatureError::Mismatch => StatusCode::UNAUTHORIZED,
            };
            ApiError::new(status, e.code(), e.to_string())
        })?;
    // Remembered until the window has passed for its own t: after that the
    // timestamp check refuses it anyway.
    let forget_at = verified
        .t
        .saturating_add(REPLAY_WINDOW_SECS + 1)
        .saturating_mul(1000);
    if !store::first_sight(&state.db, &id, &verified.v1, forget_at).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_replayed",
            "this signature was already delivered; sign each delivery anew",
        ));
    }
    let input = json!({ "webhook": { "headers": passed_headers(&headers), "body": body_value(&headers, &bytes) } });
    let started = match load_agent(&state, &hook.tenant_id, &hook.webhook.agent_id).await {
        Ok(agent) => {
            let trigger = crate::runs::RunTrigger::of("webhook", &id);
            crate::runs::start_run(&state, &agent, &input, query.wait, trigger).await
        }
        Err(e) => Err(e),
    };
    let started = match started {
        Ok(started) => started,
        Err(e) => {
            // Refused before anything ran (paused, no such agent; a busy
            // or lost node queues the run instead, see `start_run`): the
            // same signed delivery may be retried. A time-out keeps
            // the signature, since the run may have started.
            if matches!(
                e.status,
                StatusCode::NOT_FOUND
                    | StatusCode::CONFLICT
                    | StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::SERVICE_UNAVAILABLE
            ) && let Err(forget) = store::forget_signature(&state.db, &id, &verified.v1).await
            {
                tracing::warn!(webhook = %id, error = %forget, "forgetting a refused delivery's signature");
            }
            return Err(e);
        }
    };
    match started {
        Started::Accepted(accepted) => Ok((
            StatusCode::ACCEPTED,
            Json(HookAccepted {
                run_id: accepted.id,
            }),
        )
            .into_response()),
        finished @ Started::Finished(_) => Ok(finished.into_response()),
    }
}

/// The headers the run sees: content type, user agent, encoding and the
/// sender's `x-*` headers, never the signature (names lower case; values
/// that are not text are left out).
fn passed_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let passed = PASSED_HEADERS.contains(&name)
            || (name.starts_with("x-")
                && name != SIGNATURE_HEADER
                && !name.starts_with("x-forwarded-"));
        if !passed || out.len() >= MAX_PASSED_HEADERS {
            continue;
        }
        if let Ok(v) = value.to_str() {
            out.entry(name.to_owned())
                .or_insert_with(|| Value::String(v.to_owned()));
        }
    }
    Value::Object(out)
}

/// The body as the run sees it: JSON when it parses as JSON, else the text,
/// else (not UTF-8) `{"base64": ...}`.
fn body_value(headers: &HeaderMap, bytes: &[u8]) -> Value {
    let says_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    if says_json && let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return v;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}
