//! The application: state shared by handlers, the router (every route is
//! registered with its OpenAPI description, so `/v1/openapi.json` is
//! generated from the same code that routes), and serving.

use std::net::SocketAddr;
use std::path::PathBuf;
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

use crate::auth::JwtKeys;
use crate::config::ControlConfig;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// Access-token keys.
    pub keys: Arc<JwtKeys>,
    /// The configuration.
    pub config: Arc<ControlConfig>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The fleet's node token (none: no node may register).
    pub node_token: Option<Arc<str>>,
    /// HTTP client for calls to nodes.
    pub http: reqwest::Client,
    /// Where uploaded components are kept (by sha256).
    pub components_dir: PathBuf,
    /// Request rate limits (in process, or shared through Redis).
    pub limiter: Arc<RateLimiter>,
    /// Per-IP limits and account lockout of the anonymous routes.
    pub guard: Arc<crate::guard::AuthGuard>,
    /// Serialises deployments of one agent within this process (see
    /// [`AppState::lock_deploys`]).
    deploy_locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl AppState {
    /// Open the database, keys and directories `config` names.
    pub async fn open(config: ControlConfig) -> anyhow::Result<Self> {
        config.validate()?;
        {
            use std::os::unix::fs::DirBuilderExt;
            // 0700: it holds the database, the access-token secret and
            // tenants' components.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.state_dir)
                .with_context(|| format!("creating {}", config.state_dir.display()))?;
        }
        if let Some(problem) = loose_permissions(&config.state_dir, "the state directory", "700") {
            tracing::warn!("{problem}");
        }
        let db = Db::connect(&config.database_url())
            .await
            .context("opening the control plane's database")?;
        let secret_file = config
            .jwt_secret_file
            .clone()
            .unwrap_or_else(|| config.state_dir.join("jwt-secret"));
        // Whoever reads it can mint any user's session: refuse to start.
        if let Some(problem) = loose_permissions(&secret_file, "the access-token secret", "600") {
            anyhow::bail!("{problem}");
        }
        let keys = JwtKeys::load_or_create(&secret_file)
            .with_context(|| format!("access-token secret {}", secret_file.display()))?;
        let node_token = match &config.node_token_file {
            Some(path) => {
                if let Some(problem) = loose_permissions(path, "the fleet's node token", "600") {
                    tracing::warn!("{problem}");
                }
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let token = token.trim();
                if token.len() < 16 {
                    anyhow::bail!(
                        "{} holds fewer than 16 characters: the fleet token must be a real secret",
                        path.display()
                    );
                }
                Some(Arc::from(token))
            }
            None => None,
        };
        let components_dir = config.state_dir.join("components");
        std::fs::create_dir_all(&components_dir)?;
        // No redirects: a node's answer must come from the node, never
        // send the control plane (and its node token) somewhere else.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let metrics = Metrics::new();
        let limiter = RateLimiter::new(
            &config.rate_limit,
            config.redis_url.as_deref(),
            metrics.registry(),
        )
        .context("setting up rate limits")?;
        let guard = Arc::new(crate::guard::AuthGuard::new(&config.auth_limits));
        Ok(Self {
            db,
            keys: Arc::new(keys),
            config: Arc::new(config),
            metrics: Arc::new(metrics),
            node_token,
            http,
            components_dir,
            limiter: Arc::new(limiter),
            guard,
            deploy_locks: (0..DEPLOY_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// Hold while changing what an agent's node runs: an update holds it
    /// from reading the agent until its row is written, a redeployment from
    /// re-reading the row until the node has it. Without it, a
    /// reconciliation that read the row just before an update committed
    /// could push the old spec over the new one. (Replicas do not share
    /// it: across them the next reconciliation repairs such a race.)
    pub async fn lock_deploys(&self, agent_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        agent_id.hash(&mut hasher);
        let stripe = (hasher.finish() % self.deploy_locks.len() as u64) as usize;
        self.deploy_locks[stripe].lock().await
    }
}

/// Locks shared by agents whose ids hash alike: enough that unrelated
/// deployments rarely wait on each other.
const DEPLOY_LOCK_STRIPES: usize = 64;

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
        .merge(crate::tenants::routes())
        .merge(crate::agents::routes())
        .merge(crate::runs::routes())
        .merge(crate::nodes::routes())
        .merge(crate::budgets::routes())
        .merge(crate::templates::routes())
        .merge(crate::messages::routes())
        .merge(crate::usage::routes())
}

/// The whole router: API, OpenAPI document, health, metrics, conventions.
pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = api_routes().split_for_parts();
    crate::idempotency::document(&mut openapi);
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
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // Inside request_context, so that its refusals (400, 409, 422) get
        // the request id and the JSON error shape like any other.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::middleware,
        ))
        // Component uploads set their own, larger limit on their route.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(add_security_headers))
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
/// monitor) run meanwhile.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let monitor = crate::nodes::spawn_monitor(state.clone());
    let sweep = crate::sweep::spawn(state.clone());
    let app = router(state);
    // The peer's address, for the anonymous routes' per-IP limits.
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving the control plane");
    monitor.abort();
    sweep.abort();
    result
}

/// Why `path` (if it exists) is too open: group or others may access it.
fn loose_permissions(path: &std::path::Path, what: &str, fix: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} ({what}) may be read by group or others (mode {mode:o}); chmod {fix} it",
            path.display()
        )
    })
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
    use super::*;

    #[tokio::test]
    async fn the_state_dir_is_private_and_an_open_secret_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ControlConfig {
            state_dir: dir.path().join("state"),
            ..ControlConfig::default()
        };
        drop(AppState::open(config.clone()).await.expect("opens"));
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&config.state_dir), 0o700);
        let secret = config.state_dir.join("jwt-secret");
        assert_eq!(mode(&secret), 0o600);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = AppState::open(config).await;
        let message = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            message.contains("jwt-secret") && message.contains("chmod 600"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_short_fleet_token_is_refused_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("node-token");
        std::fs::write(&token, "short\n").expect("token");
        let config = ControlConfig {
            state_dir: dir.path().join("state"),
            node_token_file: Some(token.clone()),
            ..ControlConfig::default()
        };
        let refused = AppState::open(config.clone()).await;
        let message = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(message.contains("fewer than 16"), "{message}");
        std::fs::write(&token, "a-real-fleet-secret-0123456789").expect("token");
        let state = AppState::open(config).await.expect("opens");
        assert_eq!(
            state.node_token.as_deref(),
            Some("a-real-fleet-secret-0123456789")
        );
    }
}
