//! `Idempotency-Key` on every mutating request (issue 7).
//!
//! A `POST`, `PUT`, `PATCH` or `DELETE` that carries `Idempotency-Key` (1-255
//! printable ASCII characters; anything else answers 400
//! `invalid_idempotency_key`) is executed at most once per key and caller
//! for `idempotency_ttl_secs` (24 h by default; 0 turns replay off):
//!
//! - First request: a *pending* row is claimed (unique on scope and key)
//!   with a hash of the request (method, path and query, body); the handler
//!   runs; its status, `Content-Type`, `Location`, `Retry-After` and body
//!   are stored and the row is *complete*.
//! - The same key and the same request again: the stored answer is replayed
//!   with `Idempotency-Replayed: true`; the handler does not run. (Error
//!   answers are replayed with the new request's id.)
//! - The same key with a different request: 422 `idempotency_key_reused`.
//! - The same key while the first request is still running: 409
//!   `idempotency_key_in_flight` with `Retry-After`.
//!
//! # What is not stored
//! Answers that say the request was not carried out, or may succeed if
//! retried, are not stored, and the key is released so that a retry
//! executes: every 5xx (the handler failed; whatever it did is not known to
//! be complete, and the client is told to retry), 401 and 403 (the request
//! never reached the operation; a new credential or role may change that),
//! 408 and 429 (`rate_limited`, `queue_full`: not executed). Neither are
//! answers we cannot keep: streams, and bodies larger than `max_body_bytes`
//! (no mutating route answers that way today); those pass through and
//! release the key.
//!
//! # Callers
//! The caller is authenticated and rate limited before its key is read,
//! claimed or replayed, exactly as the route's handler will (the handler
//! then reuses that result: one request counts once against the limits):
//! a node's credential on the node routes (`/v1/nodes/...`), a session or an
//! API key on every other route but [`PUBLIC_ROUTES`] (registration, login,
//! refresh, logout: no credentials). A refused credential, or a 429, is
//! answered at once: the body is not read and the table is not touched. So
//! a stored answer (a new API key, say) is replayed only to a caller who
//! may still make the request: never to a revoked or expired API key, an
//! expired session, or a user who left the tenant. (Authorization beyond
//! that, a role or a scope, is the handler's, checked when it ran.)
//!
//! # Scope
//! Keys are scoped by the caller so that nobody can replay (or block)
//! another's request: a valid session is scoped by its user and tenant (so
//! a refreshed access token keeps its keys); any other credential by an HMAC
//! of the `Authorization` header (an API key, a node's credential: one
//! node's, whose reporter's keys are batch ids; after a rotation a resent
//! batch is not replayed but deduplicated by run id). Anonymous requests (registration, login) cannot be told apart by
//! caller, so their scope includes the request hash: an identical request
//! replays, a different one is simply another request (never 422).
//!
//! # Secrets at rest
//! A stored answer may hold secrets (a new API key, login tokens), so it is
//! sealed with AES-256-GCM under a key derived from the access-token secret
//! (shared by all replicas), bound to its scope and key. The request hash and
//! the scope are HMACs under another derived key: a plain hash of a login
//! body would be a fast password-guessing oracle.
//!
//! # Clients that go away
//! The handler runs in a task of its own, which also stores its answer: a
//! client that disconnects mid-request (its request future is dropped)
//! does not cancel the operation, and its retry with the key waits (409
//! `idempotency_key_in_flight`) and then gets the stored answer, rather than
//! executing the operation a second time.
//!
//! # Crashes
//! A pending claim is a lease of [`LEASE`], renewed while the handler runs;
//! a replica that dies mid-request leaves a claim another request may take
//! over once it lapses (and execute again). A handler that panics releases
//! its claim. The stored answer and the handler's own
//! transaction are not one transaction: a crash between the two means the
//! retry executes again; handlers whose effects must be exactly-once keep
//! their own natural keys too (usage batches dedupe by run id).
//!
//! Expired rows are deleted by the lead's sweep through [`sweep_expired`].
//!
//! # Never stored
//! Login and refresh ([`NEVER_STORED`]) ignore the header: their answers
//! are credentials, and a replayed refresh would bypass the rotation's
//! reuse detection.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use tracing::Instrument as _;

use delta_http::{ApiError, RequestId};

use crate::app::AppState;
use crate::auth::{API_KEY_PREFIX, JwtKeys, Principal, hmac_sha256};
use crate::db::{Db, now_ms};
use crate::nodeauth::NodeAuth;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed answer.
pub const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");
/// Longest key, characters.
pub const MAX_KEY_LEN: usize = 255;
/// How long a pending claim holds without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running handler's claim is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// `Retry-After` of a 409 `idempotency_key_in_flight`.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);
/// Route with a larger body limit than `max_body_bytes` (see
/// `app::upload_limit`): its body is read up to `max_component_bytes`.
const UPLOAD_ROUTE: &str = "/v1/components";
/// Mutating routes whose handlers take no credentials: not authenticated
/// here. Every other route is (see the module's documentation).
pub const PUBLIC_ROUTES: [&str; 7] = [
    "/v1/auth/register",
    "/v1/auth/verify-email",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    // Inbound webhooks: signed with the webhook's secret, checked by the
    // handler (crate::triggers::webhooks).
    "/v1/hooks/{id}",
    // Stripe's events: signed with the endpoint's secret, checked by the
    // handler (crate::payments).
    "/v1/payments/stripe/webhook",
];
/// Routes that issue credentials: `Idempotency-Key` is ignored there (not
/// stored, not replayed). A stored login or refresh answer would hand out
/// its tokens again to whoever replays the request, and a replayed refresh
/// would answer the new pair for a rotated token without tripping reuse
/// detection; both are safe to retry without a key (a retried login is
/// another session, a retried refresh is reuse, as it should be).
pub const NEVER_STORED: [&str; 3] = [
    "/v1/auth/login",
    "/v1/auth/refresh",
    // Stripe sends no key; each event is acted on once by its id instead.
    "/v1/payments/stripe/webhook",
];
/// Routes under this prefix are the nodes': a node credential.
const NODE_ROUTES: &str = "/v1/nodes/";
/// Response headers stored and replayed.
const STORED_HEADERS: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER];

const SEAL_PURPOSE: &str = "idempotency-response-seal-v1";
const HASH_PURPOSE: &str = "idempotency-request-hash-v1";

/// The `(method, route template)` pairs the API serves, read from its
/// OpenAPI document. A key sent with a method its route does not serve is
/// neither checked nor claimed: the router answers 405, as for any
/// undeclared method.
#[derive(Clone, Default)]
pub struct Served(Arc<HashSet<(Method, String)>>);

impl Served {
    /// Every operation of `openapi`.
    pub fn from_openapi(openapi: &utoipa::openapi::OpenApi) -> Self {
        let mut served = HashSet::new();
        for (path, item) in &openapi.paths.paths {
            for (method, op) in [
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                if op.is_some() {
                    served.insert((method, path.clone()));
                }
            }
        }
        Self(Arc::new(served))
    }

    fn serves(&self, method: &Method, route: &str) -> bool {
        self.0.contains(&(method.clone(), route.to_owned()))
    }
}

/// Middleware (`from_fn_with_state`, inside `request_context`).
pub async fn middleware(
    State((state, served)): State<(AppState, Served)>,
    req: Request,
    next: Next,
) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) || state.config.idempotency_ttl_secs == 0
    {
        return next.run(req).await;
    }
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        // No route (the fallback's 404): nothing would execute.
        return next.run(req).await;
    };
    if NEVER_STORED.contains(&route.as_str()) || !served.serves(req.method(), &route) {
        return next.run(req).await;
    }
    match parse_key(req.headers()) {
        Ok(None) => next.run(req).await,
        Ok(Some(key)) => match handle(&state, &route, key, req, next).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        },
        Err(e) => {
            // A missing or refused credential is answered before a bad key,
            // as the handler would: 401 says more than 400 about what to fix.
            let (mut parts, _) = req.into_parts();
            match authenticate(&state, &route, &mut parts).await {
                Ok(()) => e.into_response(),
                Err(auth) => auth.into_response(),
            }
        }
    }
}

/// The request's key: none, or a valid one; 400 otherwise.
pub fn parse_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |m: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            m.to_owned(),
        )
    };
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key header, not several"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_KEY_LEN
        || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(invalid(
            "Idempotency-Key must be 1-255 printable ASCII characters (a UUID is a good choice)",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

async fn handle(
    state: &AppState,
    route: &str,
    key: String,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let limit = if route == UPLOAD_ROUTE {
        state.config.max_component_bytes
    } else {
        state.config.max_body_bytes
    };
    let (mut parts, body) = req.into_parts();
    authenticate(state, route, &mut parts).await?;
    let bytes = read_body(body, limit).await?;
    let crypto = Crypto::new(&state.keys);
    let request_hash = crypto.request_hash(&parts.method, &parts.uri, &bytes);
    let scope = crypto.scope(&state.keys, &parts.headers, &request_hash);
    let ttl_ms = ttl_ms(state);
    let claim = claim(&state.db, &scope, &key, &request_hash, now_ms(), ttl_ms)
        .await
        .map_err(ApiError::internal)?;
    let token = match claim {
        Claim::Acquired { token } => token,
        Claim::Replay { sealed, .. } => {
            let rid = parts.extensions.get::<RequestId>().map(|r| r.0.as_str());
            tracing::debug!(%key, "Idempotency-Key: replaying the stored answer");
            return crypto.replay(&scope, &key, &sealed, rid.unwrap_or_default());
        }
        Claim::InFlight => return Err(in_flight()),
        Claim::Mismatch => return Err(reused()),
    };
    let held = Held {
        db: state.db.clone(),
        scope,
        key,
        token,
        armed: true,
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    // The handler runs, and its answer is stored, in a task of its own:
    // if the client goes away (this future is dropped), the operation
    // still completes and its answer is kept for the retry.
    let max = state.config.max_body_bytes;
    let task =
        tokio::spawn(execute(crypto, held, next, req, max).instrument(tracing::Span::current()));
    match task.await {
        Ok(result) => result,
        // A panic: the claim was released as the task unwound.
        Err(e) => Err(ApiError::internal(format!(
            "a request's handler failed: {e}"
        ))),
    }
}

/// Authenticate and rate-limit the request as its route's handler will
/// (see the module's documentation); a principal is left in the request
/// for the handler.
async fn authenticate(state: &AppState, route: &str, parts: &mut Parts) -> Result<(), ApiError> {
    if PUBLIC_ROUTES.contains(&route) {
        return Ok(());
    }
    if route.starts_with(NODE_ROUTES) {
        NodeAuth::from_request_parts(parts, state).await?;
        return Ok(());
    }
    let principal = Principal::from_request_parts(parts, state).await?;
    parts.extensions.insert(principal);
    Ok(())
}

/// Run the handler under the claim `held`, then store its answer or
/// release the claim.
async fn execute(
    crypto: Crypto,
    held: Held,
    next: Next,
    req: Request,
    max: u64,
) -> Result<Response, ApiError> {
    let response = held.renewing(next.run(req)).await;
    let status = response.status();
    if !storable(status) {
        held.release().await;
        return Ok(response);
    }
    let headers: Vec<(String, String)> = STORED_HEADERS
        .iter()
        .filter_map(|name| {
            let v = response.headers().get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    // An ApiError's body is written by request_context (with the request
    // id): store the error itself, replay renders it with the new id.
    if let Some(error) = response.extensions().get::<ApiError>() {
        let stored = Stored {
            status: status.as_u16(),
            headers,
            body: None,
            error: Some(StoredError {
                code: error.code.to_owned(),
                message: error.message.clone(),
                details: error.details.clone(),
            }),
        };
        let sealed = crypto.seal(&held.scope, &held.key, &stored)?;
        held.complete(status, sealed).await;
        return Ok(response);
    }
    match response.body().size_hint().exact() {
        Some(size) if size <= max => {}
        _ => {
            tracing::debug!(
                key = %held.key,
                "Idempotency-Key: a stream or a large answer is not stored"
            );
            held.release().await;
            return Ok(response);
        }
    }
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, usize::try_from(max).unwrap_or(usize::MAX)).await {
        Ok(body) => body,
        Err(e) => {
            held.release().await;
            return Err(ApiError::internal(format!(
                "reading a handler's answer: {e}"
            )));
        }
    };
    let stored = Stored {
        status: status.as_u16(),
        headers,
        body: Some(STANDARD.encode(&body)),
        error: None,
    };
    let sealed = crypto.seal(&held.scope, &held.key, &stored)?;
    held.complete(status, sealed).await;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// The whole request body, up to `limit` bytes (413 beyond: the route
/// would refuse it too).
async fn read_body(body: Body, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Whether an answer with `status` is stored (see the module's
/// documentation).
pub fn storable(status: StatusCode) -> bool {
    !(status.is_server_error()
        || matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::REQUEST_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
        ))
}

fn in_flight() -> ApiError {
    ApiError::conflict(
        "idempotency_key_in_flight",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
    .retry_after(IN_FLIGHT_RETRY)
}

fn reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request (method, path or body); \
         use a new key for a new request",
    )
}

fn ttl_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.idempotency_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

// ---- the stored answer ---------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    /// Base64 of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<StoredError>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredError {
    code: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
}

/// The derived keys of one request.
struct Crypto {
    seal: [u8; 32],
    hash: [u8; 32],
}

impl Crypto {
    fn new(keys: &JwtKeys) -> Self {
        Self {
            seal: keys.derive_key(SEAL_PURPOSE),
            hash: keys.derive_key(HASH_PURPOSE),
        }
    }

    /// HMAC of the method, path and query, and body.
    fn request_hash(&self, method: &Method, uri: &axum::http::Uri, body: &[u8]) -> String {
        use aws_lc_rs::hmac;
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &self.hash));
        ctx.update(b"request\0");
        ctx.update(method.as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
        ctx.update(b"\0");
        ctx.update(body);
        hex::encode(ctx.sign().as_ref())
    }

    /// Whose keys these are (see the module's documentation).
    fn scope(&self, keys: &JwtKeys, headers: &HeaderMap, request_hash: &str) -> String {
        let Some(auth) = headers.get(header::AUTHORIZATION) else {
            return format!("anon:{request_hash}");
        };
        if let Some(token) = delta_http::bearer(headers)
            && !token.starts_with(API_KEY_PREFIX)
            && let Ok(claims) = keys.verify(token)
        {
            // The tenant acted in: X-App-ID's when given (a key is the
            // caller's in one tenant, not across them).
            let tenant = crate::auth::app_id(headers)
                .ok()
                .flatten()
                .unwrap_or(&claims.tid);
            return format!("user:{tenant}:{}", claims.sub);
        }
        let mut data = b"credential\0".to_vec();
        data.extend_from_slice(auth.as_bytes());
        format!("cred:{}", hex::encode(hmac_sha256(&self.hash, &data)))
    }

    fn aad(scope: &str, key: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(scope.len() + key.len() + 1);
        aad.extend_from_slice(scope.as_bytes());
        aad.push(0);
        aad.extend_from_slice(key.as_bytes());
        aad
    }

    fn seal(&self, scope: &str, key: &str, stored: &Stored) -> Result<String, ApiError> {
        let sealer = RandomizedNonceKey::new(&AES_256_GCM, &self.seal)
            .map_err(|_| ApiError::internal("building the response-sealing key"))?;
        let mut data = serde_json::to_vec(stored).map_err(ApiError::internal)?;
        let nonce = sealer
            .seal_in_place_append_tag(Aad::from(Self::aad(scope, key)), &mut data)
            .map_err(|_| ApiError::internal("sealing a stored response"))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(STANDARD.encode(out))
    }

    fn open(&self, scope: &str, key: &str, sealed: &str) -> Option<Stored> {
        let opener = RandomizedNonceKey::new(&AES_256_GCM, &self.seal).ok()?;
        let raw = STANDARD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = opener
            .open_in_place(nonce, Aad::from(Self::aad(scope, key)), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    fn replay(
        &self,
        scope: &str,
        key: &str,
        sealed: &str,
        request_id: &str,
    ) -> Result<Response, ApiError> {
        let stored = self.open(scope, key, sealed).ok_or_else(|| {
            ApiError::internal(
                "a stored Idempotency-Key answer cannot be opened \
                 (was the access-token secret changed?)",
            )
        })?;
        let status = StatusCode::from_u16(stored.status).map_err(ApiError::internal)?;
        let body = match (&stored.error, &stored.body) {
            (Some(error), _) => {
                let mut body = json!({
                    "code": error.code,
                    "message": error.message,
                    "request_id": request_id,
                });
                if let Some(details) = &error.details {
                    body["details"] = details.clone();
                }
                Body::from(body.to_string())
            }
            (None, Some(b64)) => Body::from(STANDARD.decode(b64).map_err(ApiError::internal)?),
            (None, None) => Body::empty(),
        };
        let mut response = (status, body).into_response();
        for (name, value) in &stored.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        if stored.error.is_some() {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        response
            .headers_mut()
            .insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
        Ok(response)
    }
}

// ---- the claim state machine (public for tests and the sweep) -------------

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the key: run the handler, then [`complete`] or
    /// [`release`] with `token`.
    Acquired {
        /// Proves the claim in later updates.
        token: String,
    },
    /// A complete answer for the same request.
    Replay {
        /// Its status.
        status: u16,
        /// The sealed answer.
        sealed: String,
    },
    /// Another request with this key is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// Claim `key` in `scope` for a request hashing to `request_hash` (see the
/// module's documentation for the states). Rows older than `ttl_ms` count
/// as absent, unless their request is still running.
pub async fn claim(
    db: &Db,
    scope: &str,
    key: &str,
    request_hash: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Claim, sqlx::Error> {
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(30_000);
    // A row can change between our statements (another request, the
    // sweep); each step is conditional, and a lost race starts over.
    for _ in 0..4 {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys \
               (scope, idem_key, request_hash, state, lock_token, locked_until_ms, created_at_ms) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6) \
             ON CONFLICT (scope, idem_key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(&token)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(now_ms)
        .execute(db.pool())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Acquired { token });
        }
        let Some(row) = sqlx::query(
            "SELECT request_hash, state, lock_token, locked_until_ms, status, response, \
                    created_at_ms \
             FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(db.pool())
        .await?
        else {
            continue;
        };
        let stored_hash: String = row.try_get("request_hash")?;
        let state: String = row.try_get("state")?;
        let old_token: String = row.try_get("lock_token")?;
        let locked_until: i64 = row.try_get("locked_until_ms")?;
        let created: i64 = row.try_get("created_at_ms")?;
        let running = state == "pending" && locked_until > now_ms;
        if created <= now_ms.saturating_sub(ttl_ms) && !running {
            // Expired (the sweep has not got to it): a fresh claim. (A
            // request still running keeps its key, however old.)
            let taken = sqlx::query(
                "UPDATE idempotency_keys SET request_hash = $3, state = 'pending', \
                     lock_token = $4, locked_until_ms = $5, status = NULL, response = NULL, \
                     created_at_ms = $6, completed_at_ms = NULL \
                 WHERE scope = $1 AND idem_key = $2 AND lock_token = $7",
            )
            .bind(scope)
            .bind(key)
            .bind(request_hash)
            .bind(&token)
            .bind(now_ms.saturating_add(lease_ms))
            .bind(now_ms)
            .bind(&old_token)
            .execute(db.pool())
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(Claim::Acquired { token });
            }
            continue;
        }
        if stored_hash != request_hash {
            return Ok(Claim::Mismatch);
        }
        if state == "complete" {
            let status: Option<i64> = row.try_get("status")?;
            let sealed: Option<String> = row.try_get("response")?;
            if let (Some(status), Some(sealed)) = (status, sealed) {
                return Ok(Claim::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    sealed,
                });
            }
            return Err(sqlx::Error::Protocol(
                "a complete idempotency row without its answer".into(),
            ));
        }
        if running {
            return Ok(Claim::InFlight);
        }
        // The holder's lease lapsed (its replica died): take over.
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET lock_token = $3, locked_until_ms = $4 \
             WHERE scope = $1 AND idem_key = $2 AND lock_token = $5 AND state = 'pending'",
        )
        .bind(scope)
        .bind(key)
        .bind(&token)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(&old_token)
        .execute(db.pool())
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Claim::Acquired { token });
        }
    }
    // Lost every race: someone else is working on this key right now.
    Ok(Claim::InFlight)
}

/// Store the answer of a claim; false if the claim was lost (lapsed and
/// taken over).
pub async fn complete(
    db: &Db,
    scope: &str,
    key: &str,
    token: &str,
    status: u16,
    sealed: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE idempotency_keys SET state = 'complete', status = $4, response = $5, \
             completed_at_ms = $6 \
         WHERE scope = $1 AND idem_key = $2 AND lock_token = $3 AND state = 'pending'",
    )
    .bind(scope)
    .bind(key)
    .bind(token)
    .bind(i64::from(status))
    .bind(sealed)
    .bind(now_ms)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Give a claim up (nothing stored: a retry executes).
pub async fn release(db: &Db, scope: &str, key: &str, token: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys \
         WHERE scope = $1 AND idem_key = $2 AND lock_token = $3 AND state = 'pending'",
    )
    .bind(scope)
    .bind(key)
    .bind(token)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Extend a running claim's lease to `until_ms`.
pub async fn renew(
    db: &Db,
    scope: &str,
    key: &str,
    token: &str,
    until_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE idempotency_keys SET locked_until_ms = $4 \
         WHERE scope = $1 AND idem_key = $2 AND lock_token = $3 AND state = 'pending'",
    )
    .bind(scope)
    .bind(key)
    .bind(token)
    .bind(until_ms)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Delete the records created `ttl_ms` or more before `now_ms` (a pending
/// claim only once its lease has lapsed too); the number deleted.
pub async fn sweep_expired(db: &Db, now_ms: i64, ttl_ms: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys \
         WHERE created_at_ms <= $1 AND (state = 'complete' OR locked_until_ms <= $2)",
    )
    .bind(now_ms.saturating_sub(ttl_ms))
    .bind(now_ms)
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// A claim held by a running request; released if it is dropped before
/// the answer is stored or the claim released (the handler panicked).
struct Held {
    db: Db,
    scope: String,
    key: String,
    token: String,
    armed: bool,
}

impl Held {
    /// Run `handler`, renewing the lease meanwhile.
    async fn renewing(&self, handler: impl Future<Output = Response>) -> Response {
        let mut handler = std::pin::pin!(handler);
        let start = tokio::time::Instant::now() + RENEW_EVERY;
        let mut tick = tokio::time::interval_at(start, RENEW_EVERY);
        loop {
            tokio::select! {
                response = &mut handler => return response,
                _ = tick.tick() => {
                    let until = now_ms()
                        .saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(30_000));
                    match renew(&self.db, &self.scope, &self.key, &self.token, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(key = %self.key,
                            "Idempotency-Key: the claim was taken over while its request ran"),
                        Err(e) => tracing::warn!(key = %self.key, error = %e,
                            "Idempotency-Key: renewing a claim"),
                    }
                }
            }
        }
    }

    async fn complete(mut self, status: StatusCode, sealed: String) {
        self.armed = false;
        match complete(
            &self.db,
            &self.scope,
            &self.key,
            &self.token,
            status.as_u16(),
            &sealed,
            now_ms(),
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(key = %self.key,
                "Idempotency-Key: the claim was lost before the answer was stored"),
            // The client still gets its answer; the claim lapses after its
            // lease and a retry then executes again.
            Err(e) => tracing::error!(key = %self.key, error = %e,
                "Idempotency-Key: storing an answer"),
        }
    }

    async fn release(mut self) {
        self.armed = false;
        if let Err(e) = release(&self.db, &self.scope, &self.key, &self.token).await {
            tracing::warn!(key = %self.key, error = %e, "Idempotency-Key: releasing a claim");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Dropped mid-request (the handler panicked, or the runtime is
        // shutting down): let a retry run rather than wait for the lease.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (db, scope, key, token) = (
                self.db.clone(),
                std::mem::take(&mut self.scope),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            rt.spawn(async move {
                if let Err(e) = release(&db, &scope, &key, &token).await {
                    tracing::warn!(%key, error = %e, "Idempotency-Key: releasing a dropped claim");
                }
            });
        }
    }
}

// ---- OpenAPI ---------------------------------------------------------------

/// Document the header on every mutating operation, and the conventions
/// of this module and of rate limits in the API's description.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::Required;
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    for item in openapi.paths.paths.values_mut() {
        for op in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let params = op.parameters.get_or_insert_with(Vec::new);
            if params
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(IDEMPOTENCY_KEY.as_str()))
            {
                continue;
            }
            params.push(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Execute at most once: the same key and request replay the stored \
                         answer (`Idempotency-Replayed: true`); 400 `invalid_idempotency_key`, \
                         409 `idempotency_key_in_flight`, 422 `idempotency_key_reused`",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(MAX_KEY_LEN))
                            .pattern(Some("^[ -~]+$")),
                    ))
                    .build(),
            );
        }
    }
    let description = openapi.info.description.get_or_insert_with(String::new);
    description.push_str(
        "\n\nMutating requests may carry `Idempotency-Key` (1-255 printable ASCII): the \
         answer is stored for `idempotency_ttl_secs` (24 h) and replayed for the same key \
         and request (5xx, 401, 403, 408 and 429 answers are not stored). Authenticated \
         requests are rate limited per API key (or session user) and per tenant: 429 \
         `rate_limited` with `Retry-After` and `details.limit`.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                &IDEMPOTENCY_KEY,
                HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        h
    }

    #[test]
    fn keys_are_1_to_255_printable_ascii_and_single() {
        assert_eq!(parse_key(&HeaderMap::new()).expect("none"), None);
        assert_eq!(
            parse_key(&headers(&[b"abc-123 x"])).expect("ok").as_deref(),
            Some("abc-123 x")
        );
        let long = vec![b'k'; MAX_KEY_LEN];
        assert!(parse_key(&headers(&[&long])).is_ok());
        let too_long = vec![b'k'; MAX_KEY_LEN + 1];
        for bad in [&too_long[..], b"", b"caf\xc3\xa9", b"tab\there"] {
            let err = parse_key(&headers(&[bad])).expect_err("invalid");
            assert_eq!(err.code, "invalid_idempotency_key");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
        assert!(parse_key(&headers(&[b"a", b"b"])).is_err());
    }

    #[test]
    fn what_is_stored() {
        for s in [200, 201, 204, 400, 404, 409, 413, 422] {
            assert!(storable(StatusCode::from_u16(s).expect("status")), "{s}");
        }
        for s in [401, 403, 408, 429, 500, 502, 503, 504] {
            assert!(!storable(StatusCode::from_u16(s).expect("status")), "{s}");
        }
    }

    #[test]
    fn sealed_answers_open_only_under_their_scope_key_and_secret() {
        let keys = JwtKeys::new(&[3u8; 32]);
        let crypto = Crypto::new(&keys);
        let stored = Stored {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(STANDARD.encode(br#"{"key":"dk_secret"}"#)),
            error: None,
        };
        let sealed = crypto.seal("s", "k", &stored).expect("seal");
        assert!(
            !String::from_utf8_lossy(&STANDARD.decode(&sealed).expect("b64")).contains("dk_secret")
        );
        let opened = crypto.open("s", "k", &sealed).expect("opens");
        assert_eq!(opened.body, stored.body);
        assert!(crypto.open("s", "other", &sealed).is_none());
        assert!(crypto.open("other", "k", &sealed).is_none());
        let other = Crypto::new(&JwtKeys::new(&[4u8; 32]));
        assert!(other.open("s", "k", &sealed).is_none());
        // Hashes are keyed too: another secret, another hash.
        let uri: axum::http::Uri = "/v1/x?a=1".parse().expect("uri");
        let h = crypto.request_hash(&Method::POST, &uri, b"{}");
        assert_eq!(h, crypto.request_hash(&Method::POST, &uri, b"{}"));
        assert_ne!(h, crypto.request_hash(&Method::PUT, &uri, b"{}"));
        assert_ne!(h, crypto.request_hash(&Method::POST, &uri, b"{ }"));
        assert_ne!(h, other.request_hash(&Method::POST, &uri, b"{}"));
    }
}
