//! The top of the control plane: the router (every route is registered
//! with its OpenAPI description, so `/v1/openapi.json` is generated from
//! the same code that routes) and serving. The state handlers share is in
//! [`crate::state`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use delta_http::{ApiError, HttpMetrics, add_security_headers, request_context};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::config::ControlConfig;

pub use crate::state::AppState;

/// The OpenAPI document's frame; paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Delta control plane",
        description = "Users, tenants, API keys, agents, nodes and runs. Errors are \
                       `{code, message, request_id, details?}`; lists are cursor-paginated."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from /v1/auth/login or an API key (dk_...)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's routes with their OpenAPI descriptions.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::identity::routes())
        .merge(crate::verification::routes())
        .merge(crate::tenants::routes())
        .merge(crate::invitations::routes())
        .merge(crate::components::routes())
        .merge(crate::agents::routes())
        .merge(crate::kv::routes())
        .merge(crate::agent_messages::routes())
        .merge(crate::secrets::routes())
        .merge(crate::deployments::routes())
        .merge(crate::runs::routes())
        .merge(crate::run_cancel::routes())
        .merge(crate::nodes::routes())
        .merge(crate::node_enrolment::routes())
        .merge(crate::quotas::routes())
        .merge(crate::budgets::routes())
        .merge(crate::templates::routes())
        .merge(crate::messages::routes())
        .merge(crate::usage::routes())
        .merge(crate::money::routes())
        .merge(crate::bounties::routes())
        .merge(crate::payments::routes())
        .merge(crate::webhooks::routes())
        .merge(crate::reputation::routes())
        .merge(crate::triggers::routes())
        .merge(crate::workflows::routes())
}

/// The API's routes and their finished OpenAPI document under `config`
/// (its tiers are part of the document).
fn api_and_document(config: &ControlConfig) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut openapi) = api_routes().split_for_parts();
    crate::idempotency::document(&mut openapi);
    crate::contract::document(&mut openapi);
    crate::links::document(&mut openapi);
    let tiers: Vec<&str> = config.tiers.keys().map(String::as_str).collect();
    crate::contract::constrain(&mut openapi, &tiers, crate::auth::SCOPES);
    (api, openapi)
}

/// The OpenAPI document `/v1/openapi.json` serves under `config` (`delta
/// openapi` prints it; the clients are generated from it).
pub fn openapi(config: &ControlConfig) -> utoipa::openapi::OpenApi {
    api_and_document(config).1
}

/// The whole router: API, OpenAPI document, health, metrics, conventions.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api_and_document(&state.config);
    let served = crate::idempotency::Served::from_openapi(&openapi);
    let openapi = Arc::new(openapi);
    let body_limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
    let http_metrics = HttpMetrics {
        requests: state.metrics.http_requests.clone(),
        duration: state.metrics.http_duration.clone(),
    };
    Router::new()
        .route(
            "/v1/openapi.json",
            get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // Inside request_context, so that its refusals (400, 409, 422) get
        // the request id and the JSON error shape like any other.
        .layer(middleware::from_fn_with_state(
            (state.clone(), served),
            crate::idempotency::middleware,
        ))
        // Component uploads set their own, larger limit on their route.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(add_security_headers))
        // A change made through this replica holds for its next request at
        // once, not only after the key cache's period.
        .layer(middleware::from_fn_with_state(
            state.key_cache.clone(),
            crate::keycache::after_writes,
        ))
        .layer(middleware::from_fn_with_state(
            http_metrics,
            request_context,
        ))
        .with_state(state)
}

/// A larger body limit for one route (component uploads), checked from
/// Content-Length before reading.
pub fn upload_limit(bytes: u64) -> (DefaultBodyLimit, RequestBodyLimitLayer) {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    (
        DefaultBodyLimit::max(bytes),
        RequestBodyLimitLayer::new(bytes),
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => Json(json!({ "ready": true, "database": "ok" })).into_response(),
        Err(e) => {
            // The account goes to the log: this route needs no credentials.
            tracing::warn!(error = %e, "readiness: database not answering");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "ready": false, "database": "not answering" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Serve on `listener` until `shutdown` resolves; background tasks (node
/// monitor, run dispatcher, sweep, schedules' fire loop) run meanwhile.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let monitor = crate::nodes::spawn_monitor(state.clone());
    let dispatcher = crate::dispatch::dispatcher::spawn(state.clone());
    let sweep = crate::sweep::spawn(state.clone());
    let webhooks = crate::webhooks::spawn(state.clone());
    let schedules = crate::triggers::fire::spawn(state.clone());
    let grace = std::time::Duration::from_secs(state.config.drain_grace_secs);
    let app = router(state);
    // Graceful shutdown waits for every connection, and a client following
    // a log stream would hold it open for ever: the drain is bounded.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::clone(&stopping);
    // The peer's address, for the anonymous routes' per-IP limits.
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        stopped.notify_one();
    });
    let result = tokio::select! {
        result = server => result.context("serving the control plane"),
        () = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "drain grace over: closing the connections still open");
            Ok(())
        }
    };
    monitor.abort();
    dispatcher.abort();
    sweep.abort();
    webhooks.abort();
    schedules.abort();
    result
}

/// Bind `addr` (port 0 picks one) and report where.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::config::ControlConfig;

    /// A request whose body never finishes holds its connection open; the
    /// drain must still end, after `drain_grace_secs`.
    #[tokio::test]
    async fn the_drain_is_bounded_by_its_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ControlConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            state_dir: dir.path().join("state"),
            drain_grace_secs: 1,
            ..ControlConfig::default()
        };
        let state = AppState::open(config.clone()).await.expect("opens");
        let (listener, addr) = bind(config.listen).await.expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(state, listener, async move {
            let _ = stopped.await;
        }));
        let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stalled
            .write_all(
                b"POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                  content-length: 100\r\n\r\n{\"email\":",
            )
            .await
            .expect("write");
        // Let the server take the request in before stopping.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(()).expect("stop");
        let served = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the drain ended within its grace, not when the client left");
        served.expect("joined").expect("served");
        drop(stalled);
    }
}
