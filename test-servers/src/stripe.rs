//! A Stripe-compatible PaymentIntents API on `127.0.0.1:0`, with signed
//! webhooks, for the control plane's `stripe` payments backend.
//!
//! It implements the subset Delta speaks, the way Stripe documents it:
//! - `POST /v1/payment_intents` (form: `amount`, `currency`,
//!   `capture_method`, `metadata[..]`, `description`, `payment_method`,
//!   `confirm`), `GET /v1/payment_intents/{id}`,
//!   `POST /v1/payment_intents/{id}/confirm` (`payment_method`: the test
//!   methods `pm_card_visa` succeeds, `pm_card_chargeDeclined` is declined),
//!   `POST /v1/payment_intents/{id}/capture` (`amount_to_capture`),
//!   `POST /v1/payment_intents/{id}/cancel` (`cancellation_reason`);
//! - the state machine: `requires_payment_method` → (confirm) →
//!   `requires_capture` (manual capture; `amount_capturable` = `amount`) →
//!   `succeeded`, or `canceled`; a request that does not fit the state is
//!   `400 payment_intent_unexpected_state`, a capture above the capturable
//!   amount `400 amount_too_large`;
//! - `Authorization: Bearer <secret key>` (401 otherwise);
//! - `Idempotency-Key` on POSTs: a retry with the same key and parameters
//!   gets the first answer again (`Idempotent-Replayed: true`), the same key
//!   with other parameters `400 idempotency_error`;
//! - the **authorization window**: an uncaptured authorization older than
//!   the window (default 7 days, as on Stripe for cards) is canceled with
//!   `cancellation_reason = "automatic"`; [`StripeServer::advance`] moves
//!   the server's clock to get there in a test;
//! - events `payment_intent.amount_capturable_updated`, `.succeeded`,
//!   `.canceled` and `.payment_failed`, POSTed in order to the endpoint set
//!   with [`StripeServer::set_webhook`], signed as Stripe signs them:
//!   `Stripe-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`;
//!   a delivery answered with anything but 2xx is retried (three tries);
//! - injected failures ([`StripeServer::fail_with`]): a status answered
//!   without acting (5xx once, or a refusal), or an answer lost after the
//!   request was done.
//!
//! Errors have Stripe's shape: `{"error": {"type", "code", "message"}}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Stripe's authorization window for card payments: seven days.
pub const DEFAULT_AUTHORIZATION_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// One API request the server accepted (authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// Whether the answer was a replay of an earlier one.
    pub replayed: bool,
    /// Form fields, in order.
    pub fields: Vec<(String, String)>,
    /// The HTTP status answered.
    pub status: u16,
}

impl StripeRequest {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One webhook delivery attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's id (`evt_...`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The exact body sent.
    pub body: Vec<u8>,
    /// The `Stripe-Signature` header sent.
    pub signature: String,
    /// The endpoint's answer (`None`: it could not be reached).
    pub status: Option<u16>,
}

#[derive(Debug, Clone)]
struct Intent {
    object: Value,
    /// Fake-clock seconds when it became capturable.
    authorized_at: Option<i64>,
}

#[derive(Debug)]
struct Stored {
    fingerprint: String,
    status: StatusCode,
    body: Value,
}

#[derive(Debug, Default)]
struct Inner {
    intents: BTreeMap<String, Intent>,
    idempotency: BTreeMap<String, Stored>,
    requests: Vec<StripeRequest>,
    deliveries: Vec<Delivery>,
    unauthorized: usize,
    webhook: Option<(String, String)>,
    offset_secs: i64,
    next_id: u64,
    failures: std::collections::VecDeque<Failure>,
}

/// A failure [`StripeServer::fail_with`] injects into the next
/// authenticated request (one each, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer this status (a Stripe error: `api_error` for 5xx,
    /// `invalid_request_error` otherwise) and do nothing.
    Status(u16),
    /// Do the request, remembering its answer for its `Idempotency-Key`,
    /// then answer 500 instead: the answer lost on the way back, as when
    /// the network drops after Stripe acted.
    LostAnswer,
}

#[derive(Debug)]
struct Shared {
    secret_key: String,
    window_secs: i64,
    inner: Mutex<Inner>,
    events: mpsc::UnboundedSender<Value>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A running fake. See the module docs.
#[derive(Debug)]
pub struct StripeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for StripeServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl StripeServer {
    /// Bind `127.0.0.1:0`, accepting `secret_key` (e.g. `sk_test_...`).
    pub async fn start(secret_key: &str) -> std::io::Result<Self> {
        Self::start_with_window(secret_key, DEFAULT_AUTHORIZATION_WINDOW).await
    }

    /// The same with another authorization window.
    pub async fn start_with_window(secret_key: &str, window: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            secret_key: secret_key.to_owned(),
            window_secs: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            inner: Mutex::new(Inner::default()),
            events: tx,
        });
        let app = Router::new()
            .route("/v1/payment_intents", post(create))
            .route("/v1/payment_intents/{id}", get(retrieve))
            .route("/v1/payment_intents/{id}/{action}", post(act))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let deliver = tokio::spawn(deliver_events(Arc::clone(&shared), rx));
        Ok(Self {
            addr,
            shared,
            tasks: vec![serve, deliver],
        })
    }

    /// `http://127.0.0.1:<port>`: the API base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Send events from now on to `url`, signed with `secret` (`whsec_...`).
    pub fn set_webhook(&self, url: &str, secret: &str) {
        self.shared.lock().webhook = Some((url.to_owned(), secret.to_owned()));
    }

    /// Fail the next authenticated request as `failure` (queued: each
    /// call fails one more request).
    pub fn fail_with(&self, failure: Failure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Every authenticated request so far, oldest first.
    pub fn requests(&self) -> Vec<StripeRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests refused for a bad or missing key.
    pub fn unauthorized(&self) -> usize {
        self.shared.lock().unauthorized
    }

    /// Every webhook delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The PaymentIntent `id` as `GET` would answer it.
    pub fn intent(&self, id: &str) -> Option<Value> {
        self.shared.lock().intents.get(id).map(|i| i.object.clone())
    }

    /// Confirm `id` with `payment_method` as the business's browser would
    /// (Stripe.js with the client secret); the same as `POST .../confirm`.
    pub fn confirm(&self, id: &str, payment_method: &str) -> Result<Value, Value> {
        let mut inner = self.shared.lock();
        let now = real_now() + inner.offset_secs;
        let (_, body) = confirm_in(&self.shared, &mut inner, id, payment_method, now);
        if body.get("error").is_some() {
            Err(body)
        } else {
            Ok(body)
        }
    }

    /// Move the server's clock `secs` forward and cancel authorizations
    /// that outlived the window (each with a `payment_intent.canceled`).
    pub fn advance(&self, secs: i64) {
        let mut inner = self.shared.lock();
        inner.offset_secs += secs;
        expire(&self.shared, &mut inner);
    }
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> (StatusCode, Value) {
    let mut e = json!({ "type": kind, "message": message });
    if !code.is_empty() {
        e["code"] = json!(code);
        e["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{code}"));
    }
    (status, json!({ "error": e }))
}

fn unexpected_state(intent: &Value, action: &str) -> (StatusCode, Value) {
    let status = intent["status"].as_str().unwrap_or("unknown");
    let mut answer = error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "payment_intent_unexpected_state",
        &format!("You cannot {action} this PaymentIntent because it has a status of {status}."),
    );
    answer.1["error"]["payment_intent"] = intent.clone();
    answer
}

fn bearer_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == shared.secret_key)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Authenticate, answer a replay, run `op` and remember its answer.
fn handle(
    shared: &Shared,
    method: Method,
    path: String,
    headers: &HeaderMap,
    fields: Vec<(String, String)>,
    op: impl FnOnce(&Shared, &mut Inner, &[(String, String)], i64) -> (StatusCode, Value),
) -> Response {
    if !bearer_ok(shared, headers) {
        shared.lock().unauthorized += 1;
        let (status, body) = error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "",
            "Invalid API Key provided.",
        );
        return (status, axum::Json(body)).into_response();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = shared.lock();
    expire(shared, &mut inner);
    let fingerprint = format!("{method} {path} {fields:?}");
    let mut request = StripeRequest {
        method: method.to_string(),
        path,
        idempotency_key: key.clone(),
        replayed: false,
        fields,
        status: 0,
    };
    let failure = inner.failures.pop_front();
    if let Some(Failure::Status(code)) = failure {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = if status.is_server_error() {
            "api_error"
        } else {
            "invalid_request_error"
        };
        let (status, body) = error(status, kind, "", "An injected failure (fail_with).");
        request.status = status.as_u16();
        inner.requests.push(request);
        return (status, axum::Json(body)).into_response();
    }
    let stored = key
        .as_ref()
        .filter(|_| method == Method::POST)
        .and_then(|k| inner.idempotency.get(k));
    let (status, body, replayed) = match stored {
        Some(s) if s.fingerprint == fingerprint => (s.status, s.body.clone(), true),
        Some(_) => {
            let (status, body) = error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "",
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with.",
            );
            (status, body, false)
        }
        None => {
            let now = real_now() + inner.offset_secs;
            let (status, body) = op(shared, &mut inner, &request.fields, now);
            if let Some(k) = key.filter(|_| method == Method::POST) {
                inner.idempotency.insert(
                    k,
                    Stored {
                        fingerprint,
                        status,
                        body: body.clone(),
                    },
                );
            }
            (status, body, false)
        }
    };
    request.replayed = replayed;
    if failure == Some(Failure::LostAnswer) {
        let (status, body) = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "",
            "An injected failure (fail_with): the request was done, its answer lost.",
        );
        request.status = status.as_u16();
        inner.requests.push(request);
        return (status, axum::Json(body)).into_response();
    }
    request.status = status.as_u16();
    inner.requests.push(request);
    let mut response = (status, axum::Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn create(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    handle(
        &shared,
        Method::POST,
        "/v1/payment_intents".to_owned(),
        &headers,
        fields,
        |shared, inner, fields, now| {
            let amount = field(fields, "amount").and_then(|a| a.parse::<i64>().ok());
            let Some(amount) = amount.filter(|a| *a > 0) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_missing",
                    "Missing required param: amount.",
                );
            };
            if amount < 50 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "amount_too_small",
                    "Amount must be at least 50 cents.",
                );
            }
            let currency = field(fields, "currency").unwrap_or_default().to_lowercase();
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_invalid_empty",
                    "Invalid currency.",
                );
            }
            let capture = field(fields, "capture_method").unwrap_or("automatic");
            if !matches!(capture, "automatic" | "automatic_async" | "manual") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_invalid_empty",
                    "Invalid capture_method.",
                );
            }
            let metadata: serde_json::Map<String, Value> = fields
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
                    Some((name.to_owned(), json!(v)))
                })
                .collect();
            inner.next_id += 1;
            let id = format!("pi_{:024x}", inner.next_id);
            let object = json!({
                "id": id, "object": "payment_intent", "amount": amount,
                "amount_capturable": 0, "amount_received": 0, "capture_method": capture,
                "client_secret": format!("{id}_secret_{:016x}", inner.next_id * 7919),
                "currency": currency, "created": now, "livemode": false,
                "description": field(fields, "description"), "metadata": metadata,
                "status": "requires_payment_method", "canceled_at": null,
                "cancellation_reason": null, "last_payment_error": null,
            });
            inner.intents.insert(
                id.clone(),
                Intent {
                    object,
                    authorized_at: None,
                },
            );
            if field(fields, "confirm") == Some("true") {
                let method = field(fields, "payment_method")
                    .unwrap_or_default()
                    .to_owned();
                return confirm_in(shared, inner, &id, &method, now);
            }
            (StatusCode::OK, inner.intents[&id].object.clone())
        },
    )
}

async fn retrieve(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    handle(
        &shared,
        Method::GET,
        format!("/v1/payment_intents/{id}"),
        &headers,
        Vec::new(),
        |_, inner, _, _| match inner.intents.get(&id) {
            Some(i) => (StatusCode::OK, i.object.clone()),
            None => no_such(&id),
        },
    )
}

fn no_such(id: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "resource_missing",
        &format!("No such payment_intent: '{id}'"),
    )
}

async fn act(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    handle(
        &shared,
        Method::POST,
        format!("/v1/payment_intents/{id}/{action}"),
        &headers,
        fields,
        |shared, inner, fields, now| {
            if !inner.intents.contains_key(&id) {
                return no_such(&id);
            }
            match action.as_str() {
                "confirm" => {
                    let method = field(fields, "payment_method")
                        .unwrap_or_default()
                        .to_owned();
                    confirm_in(shared, inner, &id, &method, now)
                }
                "capture" => capture_in(shared, inner, &id, field(fields, "amount_to_capture")),
                "cancel" => {
                    let reason = field(fields, "cancellation_reason").map(str::to_owned);
                    if let Some(r) = &reason
                        && !matches!(
                            r.as_str(),
                            "duplicate" | "fraudulent" | "requested_by_customer" | "abandoned"
                        )
                    {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            "parameter_invalid_empty",
                            "Invalid cancellation_reason.",
                        );
                    }
                    cancel_in(shared, inner, &id, reason.as_deref(), now)
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "",
                    "Unrecognized request URL.",
                ),
            }
        },
    )
}

fn emit(shared: &Shared, inner: &mut Inner, kind: &str, object: &Value, now: i64) {
    inner.next_id += 1;
    let event = json!({
        "id": format!("evt_{:024x}", inner.next_id), "object": "event",
        "api_version": "2024-06-20", "created": now, "livemode": false,
        "type": kind, "data": { "object": object },
        "pending_webhooks": 1, "request": { "id": null, "idempotency_key": null },
    });
    // The receiver lives as long as the server; a send error means it is
    // shutting down.
    let _ = shared.events.send(event);
}

fn confirm_in(
    shared: &Shared,
    inner: &mut Inner,
    id: &str,
    method: &str,
    now: i64,
) -> (StatusCode, Value) {
    let Some(intent) = inner.intents.get(id).cloned() else {
        return no_such(id);
    };
    let status = intent.object["status"].as_str().unwrap_or_default();
    if !matches!(status, "requires_payment_method" | "requires_confirmation") {
        return unexpected_state(&intent.object, "confirm");
    }
    let mut object = intent.object;
    match method {
        "pm_card_visa" | "pm_card_mastercard" => {
            let amount = object["amount"].clone();
            object["last_payment_error"] = Value::Null;
            let authorized_at = if object["capture_method"] == "manual" {
                object["status"] = json!("requires_capture");
                object["amount_capturable"] = amount;
                Some(now)
            } else {
                object["status"] = json!("succeeded");
                object["amount_received"] = amount;
                None
            };
            inner.intents.insert(
                id.to_owned(),
                Intent {
                    object: object.clone(),
                    authorized_at,
                },
            );
            let kind = if authorized_at.is_some() {
                "payment_intent.amount_capturable_updated"
            } else {
                "payment_intent.succeeded"
            };
            emit(shared, inner, kind, &object, now);
            (StatusCode::OK, object)
        }
        "pm_card_chargeDeclined" => {
            object["status"] = json!("requires_payment_method");
            object["last_payment_error"] = json!({
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined.",
            });
            inner.intents.insert(
                id.to_owned(),
                Intent {
                    object: object.clone(),
                    authorized_at: None,
                },
            );
            emit(shared, inner, "payment_intent.payment_failed", &object, now);
            let mut answer = error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                "card_declined",
                "Your card was declined.",
            );
            answer.1["error"]["decline_code"] = json!("generic_decline");
            answer.1["error"]["payment_intent"] = object;
            answer
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "resource_missing",
            &format!("No such PaymentMethod: '{method}'"),
        ),
    }
}

fn capture_in(
    shared: &Shared,
    inner: &mut Inner,
    id: &str,
    amount: Option<&str>,
) -> (StatusCode, Value) {
    let Some(intent) = inner.intents.get(id).cloned() else {
        return no_such(id);
    };
    if intent.object["status"] != "requires_capture" {
        return unexpected_state(&intent.object, "capture");
    }
    let capturable = intent.object["amount_capturable"].as_i64().unwrap_or(0);
    let amount = match amount.map(str::parse::<i64>) {
        None => capturable,
        Some(Ok(a)) if a > 0 => a,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_invalid_integer",
                "Invalid amount_to_capture.",
            );
        }
    };
    if amount > capturable {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "amount_too_large",
            "The amount to capture is greater than the amount capturable.",
        );
    }
    let mut object = intent.object;
    object["status"] = json!("succeeded");
    object["amount_received"] = json!(amount);
    object["amount_capturable"] = json!(0);
    inner.intents.insert(
        id.to_owned(),
        Intent {
            object: object.clone(),
            authorized_at: None,
        },
    );
    let now = real_now() + inner.offset_secs;
    emit(shared, inner, "payment_intent.succeeded", &object, now);
    (StatusCode::OK, object)
}

fn cancel_in(
    shared: &Shared,
    inner: &mut Inner,
    id: &str,
    reason: Option<&str>,
    now: i64,
) -> (StatusCode, Value) {
    let Some(intent) = inner.intents.get(id).cloned() else {
        return no_such(id);
    };
    if matches!(
        intent.object["status"].as_str(),
        Some("succeeded" | "canceled")
    ) {
        return unexpected_state(&intent.object, "cancel");
    }
    let mut object = intent.object;
    object["status"] = json!("canceled");
    object["amount_capturable"] = json!(0);
    object["canceled_at"] = json!(now);
    object["cancellation_reason"] = json!(reason);
    inner.intents.insert(
        id.to_owned(),
        Intent {
            object: object.clone(),
            authorized_at: None,
        },
    );
    emit(shared, inner, "payment_intent.canceled", &object, now);
    (StatusCode::OK, object)
}

/// Cancel authorizations older than the window.
fn expire(shared: &Shared, inner: &mut Inner) {
    let now = real_now() + inner.offset_secs;
    let lapsed: Vec<String> = inner
        .intents
        .iter()
        .filter(|(_, i)| {
            i.authorized_at
                .is_some_and(|t| now >= t + shared.window_secs)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in lapsed {
        cancel_in(shared, inner, &id, Some("automatic"), now);
    }
}

/// HMAC-SHA256 of `"<t>.<body>"` under `secret`, hex: Stripe's `v1`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn deliver_events(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Value>) {
    let client = reqwest::Client::new();
    while let Some(event) = rx.recv().await {
        let Some((url, secret)) = shared.lock().webhook.clone() else {
            continue;
        };
        let body = event.to_string().into_bytes();
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Signed at each attempt, with the real clock, as Stripe does.
            let t = real_now();
            let signature = format!("t={t},v1={}", sign(&secret, t, &body));
            let status = client
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header("stripe-signature", &signature)
                .body(body.clone())
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            shared.lock().deliveries.push(Delivery {
                event_id: event["id"].as_str().unwrap_or_default().to_owned(),
                event_type: event["type"].as_str().unwrap_or_default().to_owned(),
                body: body.clone(),
                signature,
                status,
            });
            if status.is_some_and(|s| (200..300).contains(&s)) {
                break;
            }
        }
    }
}
