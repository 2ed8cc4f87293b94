//! `POST /v1/payments/stripe/webhook`: Stripe's events in.
//!
//! Stripe signs each delivery as `Stripe-Signature: t=<unix secs>,v1=<hex
//! HMAC-SHA256(whsec, "<t>.<body>")>`, the same scheme as Delta's own
//! inbound webhooks, so the same check applies ([`verify`], ±300 s: the
//! tolerance Stripe's libraries use). Each event is acted on once: its id
//! is stored in the transaction that acts on it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::stripe::PaymentIntent;
use crate::db::now_ms;
use crate::state::AppState;
use crate::triggers::signature::{SignatureError, verify};

/// The header Stripe signs with.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";

/// Routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_webhook))
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Value,
}

/// What became of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventReceipt {
    /// Always true: Stripe needs a 2xx to stop redelivering.
    pub received: bool,
    /// `acted`, `duplicate` (seen before: nothing changed) or `ignored`
    /// (not about a bounty's PaymentIntent).
    pub outcome: String,
}

/// Receive a Stripe event (configured as the endpoint of the Stripe
/// account whose key is `payments.stripe.secret_key_file`).
#[utoipa::path(
    post,
    path = "/v1/payments/stripe/webhook",
    tag = "bounties",
    params(("Stripe-Signature" = Option<String>, Header,
        description = "`t=<unix secs>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" under the \
                       endpoint's whsec_ secret>`, within ±300 s; without it: 400 \
                       `signature_malformed`")),
    request_body(content = Object, description = "A Stripe event", content_type = "application/json"),
    responses(
        (status = 200, description = "Received", body = EventReceipt),
        (status = 400, description = "`signature_malformed`, `signature_invalid`, `signature_expired` or `invalid_event`"),
        (status = 404, description = "`not_configured`: the control plane has no [payments.stripe]"),
    )
)]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventReceipt>, ApiError> {
    let Some(stripe) = state.stripe.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this control plane takes no Stripe events (no [payments.stripe] in control.toml)",
        ));
    };
    let presented = headers.get(STRIPE_SIGNATURE).and_then(|v| v.to_str().ok());
    let now = now_ms();
    verify(
        presented,
        &stripe.webhook_secret,
        &body,
        now.div_euclid(1000),
    )
    .map_err(|e: SignatureError| {
        // Stripe only distinguishes 2xx from the rest; 400 for all.
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    })?;
    let event: Event = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            format!("not a Stripe event: {e}"),
        )
    })?;
    let outcome = if event.kind.starts_with("payment_intent.") {
        let intent: PaymentIntent = serde_json::from_value(event.data.object).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_event",
                format!("the event's object is not a PaymentIntent: {e}"),
            )
        })?;
        crate::bounties::stripe_event(&state, &event.id, &event.kind, &intent, now).await?
    } else {
        "ignored"
    };
    tracing::info!(event = %event.id, kind = %event.kind, outcome, "stripe event");
    Ok(Json(EventReceipt {
        received: true,
        outcome: outcome.to_owned(),
    }))
}
