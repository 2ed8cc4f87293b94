//! The node's HTTP API (axum).
//!
//! Every response that is an error carries the JSON body
//! `{ "code", "message", "request_id", "details"? }`, including errors made
//! by extractors and layers (413, 404 of unknown routes, ...): the
//! [`request_context`] middleware rewrites them. Every request gets an id,
//! echoed in `x-request-id` and recorded on its tracing span.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tower_http::limit::RequestBodyLimitLayer;

use crate::model::{AgentSpec, RunStatus};
use crate::node::{Node, NodeError, Submitted};

/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The node.
    pub node: Arc<Node>,
    /// The bearer token clients must present (reloadable).
    pub token: Arc<RwLock<String>>,
}

/// An error answer. Rendered by [`request_context`] with the request id.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let message = e.to_string();
        match e {
            NodeError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            NodeError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            NodeError::BadComponent(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_component",
                message,
            ),
            NodeError::Conflict { code, .. } => Self::new(StatusCode::CONFLICT, code, message),
            NodeError::Busy { retry_after, scope } => {
                let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                    .details(json!({ "scope": scope }));
                e.retry_after = Some(retry_after);
                e
            }
            NodeError::Draining => {
                let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "draining", message);
                e.retry_after = Some(Duration::from_secs(1));
                e
            }
            NodeError::Internal(_) => {
                // The account goes to the log, not to the client.
                tracing::error!(error = %message, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the node's log for this request id)",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        // The body is written by `request_context`, which knows the id.
        response.extensions_mut().insert(self);
        response
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "invalid_json",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// Raw body extractor whose rejections are [`ApiError`]s.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "bad_request"
                };
                ApiError::new(status, code, rejection.body_text())
            })
    }
}

/// The router: health, metrics and `/v1`, with auth, ids, limits, metrics.
pub fn router(state: ApiState) -> Router {
    let limits = state.node.limits();
    let input_limit = usize::try_from(limits.max_input_bytes).unwrap_or(usize::MAX);
    let component_limit = usize::try_from(limits.max_component_bytes).unwrap_or(usize::MAX);
    // Both limits are checked from Content-Length before any byte of the
    // body is read (RequestBodyLimitLayer), and again while reading a
    // chunked body (DefaultBodyLimit, which the extractors honour).
    let uploads = Router::new()
        .route(
            "/v1/components/{sha256}",
            put(put_component).delete(delete_component),
        )
        .layer(DefaultBodyLimit::max(component_limit))
        .layer(RequestBodyLimitLayer::new(component_limit));
    let v1 = Router::new()
        .route("/v1/components", get(list_components))
        .route(
            "/v1/agents/{id}",
            put(put_agent).get(get_agent).delete(delete_agent),
        )
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}/pause", post(pause_agent))
        .route("/v1/agents/{id}/resume", post(resume_agent))
        .route("/v1/agents/{id}/runs", post(create_run))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/logs", get(run_logs))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(input_limit))
        .layer(RequestBodyLimitLayer::new(input_limit))
        .merge(uploads)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

/// Request id, tracing span, HTTP metrics and the JSON error body.
async fn request_context(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route,
        tenant_id = tracing::field::Empty,
        agent_id = tracing::field::Empty,
        run_id = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let mut response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = response.status();
    let error = response.extensions_mut().remove::<ApiError>();
    if let Some(error) = error {
        response = render_error(response, &error, &id);
    } else if (status.is_client_error() || status.is_server_error())
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        // Made by a layer or axum itself (e.g. 405): give it our shape.
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_FOUND => "not_found",
            _ if status.is_server_error() => "internal",
            _ => "bad_request",
        };
        let message = status.canonical_reason().unwrap_or("error").to_owned();
        let error = ApiError::new(status, code, message);
        response = render_error(response, &error, &id);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let m = state.node.metrics();
    m.http_requests
        .with_label_values(&[route.as_str(), status.as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        )
    });
    response
}

fn render_error(response: Response, error: &ApiError, id: &str) -> Response {
    let mut body = json!({
        "code": error.code,
        "message": error.message,
        "request_id": id,
    });
    if let Some(details) = &error.details {
        body["details"] = details.clone();
    }
    let (mut parts, _) = response.into_parts();
    parts.status = error.status;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// The request's id (an extension set by [`request_context`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Bearer token check, in constant time. Failures are 401 without detail.
async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = presented.is_some_and(|p| {
        let expected = state.token.read().unwrap_or_else(|e| e.into_inner());
        // Hash both so the comparison is over equal lengths and the token's
        // length does not leak through timing.
        let (a, b) = (
            Sha256::digest(p.as_bytes()),
            Sha256::digest(expected.as_bytes()),
        );
        bool::from(a.ct_eq(&b))
    });
    if !ok {
        state.node.metrics().auth_failures.inc();
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized").into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(req).await
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let node = &state.node;
    let store = node.store().ping().await.map_err(|e| e.to_string());
    let reporting = node.reporter().map(|r| r.stats.healthy());
    let draining = node.is_draining();
    let ready = store.is_ok() && reporting != Some(false) && !draining;
    let body = json!({
        "ready": ready,
        "engine": "ok",
        "store": store.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.clone()),
        "reporting": match reporting {
            None => "not configured",
            Some(true) => "ok",
            Some(false) => "failing",
        },
        "draining": draining,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    state.node.refresh_gauges().await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.node.metrics().render(),
    )
        .into_response()
}

async fn put_component(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let (record, created) = state.node.put_component(&sha256, bytes).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)).into_response())
}

async fn list_components(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let items = state.node.list_components().await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn delete_component(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.delete_component(&sha256).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn record_ids(agent: Option<&str>, tenant: Option<&str>, run: Option<&str>) {
    let span = tracing::Span::current();
    if let Some(a) = agent {
        span.record("agent_id", a);
    }
    if let Some(t) = tenant {
        span.record("tenant_id", t);
    }
    if let Some(r) = run {
        span.record("run_id", r);
    }
}

async fn put_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<AgentSpec>,
) -> Result<Response, ApiError> {
    record_ids(Some(&id), Some(&spec.tenant_id), None);
    let (record, created) = state.node.put_agent(&id, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)).into_response())
}

async fn get_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.get_agent(&id)?).into_response())
}

async fn list_agents(State(state): State<ApiState>) -> Response {
    Json(json!({ "items": state.node.list_agents() })).into_response()
}

async fn delete_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    record_ids(Some(&id), None, None);
    state.node.delete_agent(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_paused(&id, true).await?).into_response())
}

async fn resume_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_paused(&id, false).await?).into_response())
}

/// Body of `POST /v1/agents/{id}/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The task input: any JSON value (default `{}`).
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Query of `POST /v1/agents/{id}/runs`.
#[derive(Debug, Deserialize)]
pub struct RunQuery {
    /// Answer with the outcome instead of 202.
    #[serde(default)]
    pub wait: bool,
}

async fn create_run(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
    JsonBody(body): JsonBody<CreateRun>,
) -> Result<Response, ApiError> {
    record_ids(Some(&id), None, None);
    let input = body.input.to_string();
    match state.node.submit(&id, input, query.wait).await? {
        Submitted::Queued(run_id) => {
            record_ids(None, None, Some(&run_id));
            let location = format!("/v1/runs/{run_id}");
            let mut response = (
                StatusCode::ACCEPTED,
                Json(json!({ "id": run_id, "status": RunStatus::Queued })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            Ok(response)
        }
        Submitted::Finished(record) => {
            record_ids(None, Some(&record.tenant_id), Some(&record.id));
            Ok(Json(*record).into_response())
        }
    }
}

async fn get_run(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    record_ids(None, None, Some(&id));
    Ok(Json(state.node.get_run(&id).await?).into_response())
}

/// Server-sent events: `log` events with one line each (JSON), then one
/// `end` event with the run's status and outcome.
async fn run_logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    record_ids(None, None, Some(&id));
    let node = Arc::clone(&state.node);
    // Subscribe before reading the store: a run that finishes in between is
    // then seen as finished by the store read.
    let subscription = node.subscribe_logs(&id);
    let record = node.get_run(&id).await?;
    let line_event = |line: &delta_host_api::log::LogLine| {
        Event::default()
            .event("log")
            .json_data(line)
            .unwrap_or_else(|_| Event::default().event("log"))
    };
    let (backlog, live) = match subscription {
        Some(sub) => (
            sub.backlog.iter().map(line_event).collect::<Vec<_>>(),
            sub.live,
        ),
        None => {
            let lines: Vec<delta_host_api::log::LogLine> = record
                .logs
                .clone()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            (lines.iter().map(line_event).collect(), None)
        }
    };
    let live_events = futures_util::stream::iter(live)
        .flat_map(BroadcastStream::new)
        .map(move |item| match item {
            Ok(line) => line_event(&line),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
        });
    let end = futures_util::stream::once(async move {
        let body = match node.get_run(&id).await {
            Ok(run) => json!({ "status": run.status, "outcome": run.outcome }),
            Err(_) => json!({ "status": "unknown" }),
        };
        Event::default()
            .event("end")
            .json_data(body)
            .unwrap_or_else(|_| Event::default().event("end"))
    });
    let stream = futures_util::stream::iter(backlog)
        .chain(live_events)
        .chain(end)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
