//! HTTP conventions shared by the node daemon and the control plane.
//!
//! - Every error answer is JSON `{ "code", "message", "request_id",
//!   "details"? }`, including errors made by extractors and layers (413,
//!   404 of unknown routes, 405): handlers return [`ApiError`], which
//!   [`request_context`] renders with the request's id; any other error
//!   response without a JSON body is rewritten into that shape.
//! - Every request gets an id (a sane incoming `x-request-id` is kept),
//!   echoed in the response header and recorded on its tracing span, which
//!   also has empty `tenant_id`, `agent_id` and `run_id` fields for handlers
//!   to fill with [`record_ids`].
//! - Request counts and latencies by route template and status.
//! - [`client::read_capped`]: answers from peers are read with a size cap.

pub mod client;
pub mod config;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// An error answer. Rendered by [`request_context`] with the request id.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`not_found`, `queue_full`, ...).
    pub code: &'static str,
    /// Human-readable account (never secrets or internals).
    pub message: String,
    /// Structured extras.
    pub details: Option<Value>,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
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

    /// Attach structured details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Ask the client to retry after `after`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 `invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 401 without detail.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500: the account goes to the log, not to the client. A database
    /// that is only busy (see [`is_contention`]) is not an internal error:
    /// it answers 503 `busy` with `Retry-After: 1`, as the request may
    /// simply be sent again. (Checked here, by type, because every handler
    /// hands its database errors to this one function.)
    pub fn internal(error: impl std::fmt::Display + 'static) -> Self {
        if let Some(e) = (&error as &dyn std::any::Any).downcast_ref::<sqlx::Error>()
            && is_contention(e)
        {
            tracing::warn!(error = %error, "database busy");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the database is busy; retry shortly",
            )
            .retry_after(Duration::from_secs(1));
        }
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the server's log for this request id)",
        )
    }
}

/// Whether a database error is contention that a retry can get past, not a
/// fault: the pool had no connection in time; SQLite's `SQLITE_BUSY` or
/// `SQLITE_LOCKED` (any extended code: the primary code is the low byte)
/// after its busy timeout; PostgreSQL's serialization failure (40001),
/// deadlock (40P01) or lock not available (55P03).
pub fn is_contention(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL's SQLSTATEs are five characters; SQLite's codes
            // are numbers (up to four digits).
            Some(code) if code.len() == 5 => matches!(code, "40001" | "40P01" | "55P03"),
            Some(code) => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
            None => false,
        },
        _ => false,
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
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
        let rejected = |rejection: axum::extract::rejection::JsonRejection| {
            let status = rejection.status();
            let code = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                _ => "invalid_json",
            };
            ApiError::new(status, code, rejection.body_text())
        };
        if !json_content_type(req.headers()) {
            // axum's extractor words the 415.
            return match axum::Json::<T>::from_request(req, state).await {
                Ok(axum::Json(value)) => Ok(Self(value)),
                Err(rejection) => Err(rejected(rejection)),
            };
        }
        let bytes = RawBody::from_request(req, state).await?.0;
        // axum decodes through serde_path_to_error, which tracks the path
        // of every value: about a quarter of the time of a large body
        // (usage batches). Plain serde_json first; a body that fails is
        // decoded again by axum only to word the error precisely.
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Self(value)),
            Err(_) => {
                if let Some(value) = with_integral_numbers(&bytes) {
                    return Ok(Self(value));
                }
                match axum::Json::<T>::from_bytes(&bytes) {
                    Ok(axum::Json(value)) => Ok(Self(value)),
                    Err(rejection) => Err(rejected(rejection)),
                }
            }
        }
    }
}

/// `serde_json::from_slice`, with whole floats taken as integers (see
/// [`JsonBody`]): for handlers that read their body themselves.
pub fn from_json_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(bytes).or_else(|e| with_integral_numbers(bytes).ok_or(e))
}

/// JSON Schema (and JavaScript) count `3.0` as an integer; serde does not.
/// A body refused by serde is tried once more with every float that is a
/// whole number in range written as an integer, so a client whose JSON
/// encoder writes `3.0` is not refused for it. Only refused bodies pay.
fn with_integral_numbers<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn integral(value: &mut Value) -> bool {
        match value {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // 2^63: beyond it an f64 no longer says which integer.
                let whole = f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18;
                if whole {
                    *value = Value::from(f as i64);
                }
                whole
            }
            Value::Array(items) => items.iter_mut().fold(false, |c, v| integral(v) | c),
            Value::Object(map) => map.values_mut().fold(false, |c, v| integral(v) | c),
            _ => false,
        }
    }
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    if !integral(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// Whether the request says its body is JSON (`application/json` or
/// `application/*+json`, parameters allowed), as axum's `Json` requires.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json")))
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

/// The request's id (an extension set by [`request_context`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Request metrics, registered by the service that owns the registry.
#[derive(Clone)]
pub struct HttpMetrics {
    /// Requests by `route` and `status`.
    pub requests: prometheus::IntCounterVec,
    /// Latency by `route`.
    pub duration: prometheus::HistogramVec,
}

/// Middleware (`from_fn_with_state` with [`HttpMetrics`]): request id,
/// tracing span, metrics and the JSON error body.
pub async fn request_context(
    State(metrics): State<HttpMetrics>,
    mut req: Request,
    next: Next,
) -> Response {
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
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = render_error(response, &error, &id);
    } else if (status.is_client_error() || status.is_server_error())
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        // Made by a layer or axum itself (e.g. 405, 413): give it our shape.
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ if status.is_server_error() => "internal",
            _ => "bad_request",
        };
        let message = status.canonical_reason().unwrap_or("error").to_owned();
        response = render_error(response, &ApiError::new(status, code, message), &id);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    metrics
        .requests
        .with_label_values(&[route.as_str(), status.as_str()])
        .inc();
    metrics
        .duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    // Failures are logged at info; successes at debug (an access log line
    // per request costs more than a whole run on the hot path).
    let elapsed_us = started.elapsed().as_micros() as u64;
    span.in_scope(|| {
        if status.is_client_error() || status.is_server_error() {
            tracing::info!(status = status.as_u16(), elapsed_us, "request");
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_us, "request");
        }
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

/// Record ids on the current request's span (empty fields declared by
/// [`request_context`]).
pub fn record_ids(tenant: Option<&str>, agent: Option<&str>, run: Option<&str>) {
    let span = tracing::Span::current();
    if let Some(t) = tenant {
        span.record("tenant_id", t);
    }
    if let Some(a) = agent {
        span.record("agent_id", a);
    }
    if let Some(r) = run {
        span.record("run_id", r);
    }
}

/// Compare a presented secret with the expected one in constant time (both
/// hashed first, so the comparison is over equal lengths and the secret's
/// length does not leak through timing).
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    bool::from(a.ct_eq(&b))
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        // An empty token is no token (and never matches an empty secret).
        .filter(|t| !t.is_empty())
}

/// Headers every API response carries: no sniffing, no framing, no caching
/// of credentials-bearing answers, no referrer leaks.
pub fn security_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
    ]
}

/// Middleware adding [`security_headers`] to every response.
pub async fn add_security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in security_headers() {
        headers.entry(name).or_insert(value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn whole_floats_are_integers_and_nothing_else_changes() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Ask {
            amount: u64,
            ratio: f64,
        }
        let ok: Option<Ask> = with_integral_numbers(br#"{"amount": 3.0, "ratio": 2.0}"#);
        assert_eq!(
            ok,
            Some(Ask {
                amount: 3,
                ratio: 2.0
            })
        );
        for refused in [
            &br#"{"amount": 3.5, "ratio": 1.0}"#[..],
            br#"{"amount": -1.0, "ratio": 1.0}"#,
            br#"{"amount": 1e300, "ratio": 1.0}"#,
            br#"{"amount": 3, "ratio": 1}"#, // nothing to change: not retried
            b"not json",
        ] {
            assert_eq!(with_integral_numbers::<Ask>(refused), None);
        }
    }

    #[test]
    fn an_empty_bearer_is_no_bearer() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        for (value, expected) in [
            ("Bearer abc", Some("abc")),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Basic abc", None),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&headers), expected, "{value:?}");
        }
    }

    #[test]
    fn json_content_types_are_recognised_as_axum_does() {
        let mut headers = HeaderMap::new();
        assert!(!json_content_type(&headers));
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON;charset=utf-8", true),
            ("application/cloudevents+json", true),
            ("text/json", false),
            ("application/jsonl", false),
            ("application/x-www-form-urlencoded", false),
            ("json", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(json_content_type(&headers), json, "{value:?}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct Batch {
        #[allow(dead_code)]
        records: Vec<Record>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Record {
        #[allow(dead_code)]
        fuel: u64,
    }

    async fn extract(content_type: &str, body: &'static str) -> Result<Batch, ApiError> {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body))
            .expect("request");
        JsonBody::<Batch>::from_request(req, &()).await.map(|b| b.0)
    }

    /// The fast path decodes what axum would; a bad body still gets axum's
    /// precise account (with the path of the bad value).
    #[tokio::test]
    async fn json_bodies_decode_fast_and_fail_precisely() {
        let ok = extract("application/json", r#"{"records":[{"fuel":1},{"fuel":2}]}"#)
            .await
            .expect("valid");
        assert_eq!(ok.records.len(), 2);
        let err = extract(
            "application/json",
            r#"{"records":[{"fuel":1},{"fuel":-2}]}"#,
        )
        .await
        .expect_err("negative fuel");
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.code, "invalid_json");
        assert!(err.message.contains("records[1].fuel"), "{}", err.message);
        let err = extract("application/json", "{nope")
            .await
            .expect_err("syntax");
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        let err = extract("text/plain", "{}").await.expect_err("not json");
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err.code, "unsupported_media_type");
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(!secret_matches("s3cret", "s3cre"));
        assert!(!secret_matches("", "x"));
    }

    /// A real `SQLITE_BUSY` (a second writer with no busy timeout while
    /// another holds the write lock) and a pool timeout answer 503 `busy`
    /// with `Retry-After`; any other database error stays a 500.
    #[tokio::test]
    async fn a_busy_database_is_503_not_500() {
        use sqlx::{Connection as _, Executor as _};
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/busy.db?mode=rwc", dir.path().display());
        let mut holder = sqlx::SqliteConnection::connect(&url).await.expect("open");
        holder
            .execute("CREATE TABLE t (x INTEGER)")
            .await
            .expect("create");
        let mut other = sqlx::SqliteConnection::connect(&url).await.expect("open");
        other
            .execute("PRAGMA busy_timeout = 0")
            .await
            .expect("pragma");
        holder.execute("BEGIN IMMEDIATE").await.expect("lock");
        let busy = other
            .execute("INSERT INTO t VALUES (1)")
            .await
            .expect_err("the write lock is held");
        assert!(is_contention(&busy), "{busy}");
        let answer = ApiError::internal(busy);
        assert_eq!(
            (answer.status, answer.code),
            (StatusCode::SERVICE_UNAVAILABLE, "busy")
        );
        assert_eq!(answer.retry_after, Some(Duration::from_secs(1)));
        let answer = ApiError::internal(sqlx::Error::PoolTimedOut);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        let broken = other
            .execute("SELECT * FROM no_such_table")
            .await
            .expect_err("no table");
        assert!(!is_contention(&broken));
        assert_eq!(
            ApiError::internal(broken).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::internal("anything else").status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
