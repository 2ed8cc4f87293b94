//! A client for the part of Stripe's PaymentIntents API that escrow needs:
//! create (manual capture), capture, cancel, retrieve.
//!
//! Hand-written rather than `async-stripe`: that crate generates the whole
//! API (hundreds of thousands of lines, minutes of compile on a small
//! machine) for the four form-encoded calls used here, and this keeps the
//! wire format in view where the tests check it against the fake in
//! `test-servers`.
//!
//! Every POST carries an `Idempotency-Key` chosen by the caller from the
//! bounty and the step, so a retry after a crash or a time-out is answered
//! with the first result and can never move money twice.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::config::StripeConfig;

/// The API version requests ask for (the shapes read below are stable in
/// it).
pub const API_VERSION: &str = "2024-06-20";

/// A PaymentIntent, as far as escrow reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    /// `pi_...`.
    pub id: String,
    /// `requires_payment_method`, `requires_capture`, `succeeded`,
    /// `canceled`, ...
    pub status: String,
    /// Minor units.
    pub amount: i64,
    /// What a capture may take now.
    #[serde(default)]
    pub amount_capturable: i64,
    /// What was captured.
    #[serde(default)]
    pub amount_received: i64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// For the business's browser to confirm the payment (Stripe.js).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// What the control plane put there: `bounty_id`, `tenant_id`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error object.
    #[error("Stripe refused ({status}, {kind}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// `error.type`.
        kind: String,
        /// `error.code`.
        code: Option<String>,
        /// `error.message`.
        message: String,
        /// `error.payment_intent.status`, when Stripe says which state
        /// stood in the way.
        intent_status: Option<String>,
    },
    /// Not reached, or no complete answer.
    #[error("Stripe could not be reached: {0}")]
    Transport(String),
    /// An answer that is not what the API documents.
    #[error("Stripe answered {status} with an unreadable body: {detail}")]
    Garbled {
        /// HTTP status.
        status: u16,
        /// What did not parse.
        detail: String,
    },
    /// The key file could not be read.
    #[error("reading the Stripe key: {0}")]
    Key(String),
}

impl StripeError {
    /// Worth trying again with the same idempotency key: the network, rate
    /// limits, Stripe's own errors, and a concurrent request with the same
    /// key (409).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Garbled { status, .. } | Self::Refused { status, .. } => {
                *status == 409 || *status == 429 || *status >= 500
            }
            Self::Key(_) => false,
        }
    }
}

/// The client (cheap to clone).
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(rename = "type")]
    kind: String,
    code: Option<String>,
    #[serde(default)]
    message: String,
    payment_intent: Option<IntentStatus>,
}

#[derive(Deserialize)]
struct IntentStatus {
    status: String,
}

impl StripeClient {
    /// A client for `config`, reading its key file.
    pub fn new(config: &StripeConfig) -> Result<Self, StripeError> {
        let key = delta_http::config::read_secret(&config.secret_key_file)
            .map_err(|e| StripeError::Key(e.to_string()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StripeError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: config.api_base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// Create a PaymentIntent of `amount` for bounty `bounty_id` with
    /// manual capture: the card is authorized when the business confirms
    /// it, and charged only by [`Self::capture`].
    pub async fn create_escrow(
        &self,
        amount: i64,
        currency: &str,
        bounty_id: &str,
        tenant_id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let form = [
            ("amount", amount.to_string()),
            ("currency", currency.to_lowercase()),
            ("capture_method", "manual".to_owned()),
            ("description", format!("Delta bounty {bounty_id}")),
            ("metadata[bounty_id]", bounty_id.to_owned()),
            ("metadata[tenant_id]", tenant_id.to_owned()),
        ];
        self.post("/v1/payment_intents", &form, idempotency_key)
            .await
    }

    /// Capture `amount` of an authorized PaymentIntent.
    pub async fn capture(
        &self,
        id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let form = [("amount_to_capture", amount.to_string())];
        self.post(
            &format!("/v1/payment_intents/{id}/capture"),
            &form,
            idempotency_key,
        )
        .await
    }

    /// Cancel a PaymentIntent (its authorization, if any, is released).
    pub async fn cancel(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let form = [("cancellation_reason", "abandoned".to_owned())];
        self.post(
            &format!("/v1/payment_intents/{id}/cancel"),
            &form,
            idempotency_key,
        )
        .await
    }

    /// The PaymentIntent as Stripe has it now.
    pub async fn retrieve(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        let response = self
            .http
            .get(format!("{}/v1/payment_intents/{id}", self.base))
            .bearer_auth(&self.key)
            .header("stripe-version", API_VERSION)
            .send()
            .await
            .map_err(|e| StripeError::Transport(e.to_string()))?;
        read(response).await
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("stripe-version", API_VERSION)
            .header("idempotency-key", idempotency_key)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| StripeError::Transport(e.to_string()))?;
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> Result<PaymentIntent, StripeError> {
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| StripeError::Transport(e.to_string()))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&bytes).map_err(|e| StripeError::Garbled {
            status,
            detail: e.to_string(),
        });
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => Err(StripeError::Refused {
            status,
            kind: b.error.kind,
            code: b.error.code,
            message: b.error.message,
            intent_status: b.error.payment_intent.map(|p| p.status),
        }),
        Err(e) => Err(StripeError::Garbled {
            status,
            detail: e.to_string(),
        }),
    }
}
