//! The node's HTTP API (axum), with the conventions of `delta-http`: JSON
//! errors with request ids, request metrics, bearer auth in constant time.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use delta_http::{ApiError, HttpMetrics, JsonBody, RawBody, request_context};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tower_http::limit::RequestBodyLimitLayer;

use crate::model::{AgentSpec, RunStatus};
use crate::node::{Node, NodeError, Submitted};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The node.
    pub node: Arc<Node>,
    /// The bearer token clients must present (reloadable).
    pub token: Arc<RwLock<String>>,
}

/// How node errors answer.
fn node_error(e: NodeError) -> ApiError {
    let message = e.to_string();
    match e {
        NodeError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
        NodeError::Invalid(_) => ApiError::invalid(message),
        NodeError::BadComponent(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_component",
            message,
        ),
        NodeError::Conflict { code, .. } => ApiError::conflict(code, message),
        NodeError::Busy { retry_after, scope } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message)
                .details(json!({ "scope": scope }))
                .retry_after(retry_after)
        }
        NodeError::Draining => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", message)
            .retry_after(Duration::from_secs(1)),
        NodeError::Internal(_) => ApiError::internal(message),
    }
}

/// `?` on a node result inside a handler.
trait OrApi<T> {
    fn api(self) -> Result<T, ApiError>;
}

impl<T> OrApi<T> for Result<T, NodeError> {
    fn api(self) -> Result<T, ApiError> {
        self.map_err(node_error)
    }
}

/// The router: health, metrics and `/v1`, with auth, ids, limits, metrics.
pub fn router(state: ApiState) -> Router {
    let registry = state.node.metrics();
    let http_metrics = HttpMetrics {
        requests: registry.http_requests.clone(),
        duration: registry.http_duration.clone(),
    };
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
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/verifications", post(verify))
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
            http_metrics,
            request_context,
        ))
        .with_state(state)
}

/// Bearer token check, in constant time. Failures are 401 without detail.
async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let ok = delta_http::bearer(req.headers()).is_some_and(|presented| {
        let expected = state.token.read().unwrap_or_else(|e| e.into_inner());
        delta_http::secret_matches(presented, &expected)
    });
    if !ok {
        state.node.metrics().auth_failures.inc();
        return ApiError::unauthorized().into_response();
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

/// Run a bounty's verifier once (see [`crate::verify`]).
async fn verify(
    State(state): State<ApiState>,
    JsonBody(req): JsonBody<delta_node_api::VerificationRequest>,
) -> Result<Json<delta_node_api::VerificationResult>, ApiError> {
    record_ids(None, Some(&req.tenant_id), None);
    crate::verify::verify(&state.node, req)
        .await
        .api()
        .map(Json)
}

pub use delta_node_api::TENANT_HEADER;

/// The compile owner of uploads that name no tenant (one budget for all).
const ANONYMOUS_UPLOADER: &str = "anonymous-uploads";

async fn put_component(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
    headers: axum::http::HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let tenant = headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .unwrap_or(ANONYMOUS_UPLOADER);
    record_ids(None, Some(tenant), None);
    let (record, created) = state
        .node
        .put_component(&sha256, bytes, tenant)
        .await
        .api()?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)).into_response())
}

async fn list_components(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let items = state.node.list_components().await.api()?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn delete_component(
    State(state): State<ApiState>,
    Path(sha256): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.delete_component(&sha256).await.api()?;
    Ok(StatusCode::NO_CONTENT)
}

fn record_ids(agent: Option<&str>, tenant: Option<&str>, run: Option<&str>) {
    delta_http::record_ids(tenant, agent, run);
}

async fn put_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<AgentSpec>,
) -> Result<Response, ApiError> {
    record_ids(Some(&id), Some(&spec.tenant_id), None);
    let (record, created) = state.node.put_agent(&id, spec).await.api()?;
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
    Ok(Json(state.node.get_agent(&id).api()?).into_response())
}

async fn list_agents(State(state): State<ApiState>) -> Response {
    Json(json!({ "items": state.node.list_agents() })).into_response()
}

async fn delete_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    record_ids(Some(&id), None, None);
    state.node.delete_agent(&id).await.api()?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_paused(&id, true).await.api()?).into_response())
}

async fn resume_agent(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.set_paused(&id, false).await.api()?).into_response())
}

/// Body of `POST /v1/agents/{id}/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The task input: any JSON value (default `{}`).
    #[serde(default = "empty_object")]
    pub input: Value,
    /// The run's id, chosen by the caller (the control plane names runs so
    /// that they are known before the node answers); default: the node
    /// makes one. An id the node already has for this agent is answered
    /// with that run (202, or 200 once finished with `?wait=true`): a
    /// repeated delivery never starts a second run. Another agent's: 409
    /// `run_exists`.
    #[serde(default)]
    pub id: Option<String>,
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
    match state
        .node
        .submit(&id, input, query.wait, body.id)
        .await
        .api()?
    {
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
    Ok(Json(state.node.get_run(&id).await.api()?).into_response())
}

/// Cancel a run: 202 with the run while it is being stopped, 200 when it
/// had already finished, 404 when this node never had it.
async fn cancel_run(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    record_ids(None, None, Some(&id));
    let run = state.node.cancel_run(&id).await.api()?;
    let status = if run.status == RunStatus::Finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(run)).into_response())
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
    let record = node.get_run(&id).await.map_err(node_error)?;
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
