//! Registration with email verification (`require_email_verification`):
//! registration answers the same 202 for every address, so it tells nobody
//! which addresses have accounts.
//!
//! - An address without an account gets a mail with a one-time token; the
//!   registration waits in `pending_registrations` (the password already
//!   hashed, the token only as its SHA-256) for 24 hours. A later
//!   registration of the same address replaces it.
//! - An address with an account gets a mail saying someone tried to
//!   register it, and nothing changes.
//! - Both paths hash the password (argon2) and send their mail off the
//!   request path, so they take about the same time.
//! - `POST /v1/auth/verify-email {token}` creates the account (201, as an
//!   unverified registration answers) and forgets the token; a token that
//!   is unknown, used or expired is 404 `invalid_token`. Until then the
//!   address has no account: logging in is `invalid_credentials` like any
//!   unknown address.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use delta_http::{ApiError, JsonBody, RequestId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::hash_password;
use crate::db::now_ms;
use crate::guard::ClientIp;
use crate::identity::{RegisterRequest, RegisterResponse, check_account_input, insert_account};
use crate::state::AppState;

/// How long an emailed token is good for.
pub const TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// The answer to a registration awaiting verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationSent {
    /// `verification_sent`.
    pub status: String,
    /// The address the mail went to (normalised).
    pub email: String,
}

/// `POST /v1/auth/verify-email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmail {
    /// The token from the mail (64 hex digits).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub token: String,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_email))
}

/// Begin a registration: store it (new address) or warn the owner (known
/// address), mail either way, answer the same.
pub async fn start(
    state: &AppState,
    req: RegisterRequest,
    request_id: Option<&str>,
) -> Result<VerificationSent, ApiError> {
    let (email, tenant_name) =
        check_account_input(&req.email, &req.password, req.tenant_name.as_deref())?;
    let Some(mailer) = state.mailer.clone() else {
        // Checked at start-up; kept as an answer rather than a panic.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "email verification is on but no [smtp] relay is configured",
        ));
    };
    // Both paths pay for the hash: the answer's time says nothing.
    let password_hash = hash_password(req.password).await?;
    let known: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    let (subject, body) = if known.is_some() {
        (
            "Someone tried to register with your address".to_owned(),
            "Someone (perhaps you) tried to register an account with this address, which \
             already has one. Nothing was changed. If it was you, sign in instead; if not, \
             you need not do anything.\n"
                .to_owned(),
        )
    } else {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
        sqlx::query("DELETE FROM pending_registrations WHERE email = $1")
            .bind(&email)
            .execute(&mut *tx)
            .await
            .map_err(ApiError::internal)?;
        sqlx::query(
            "INSERT INTO pending_registrations (token_hash, email, password_hash, tenant_name, \
             request_id, expires_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash(&token))
        .bind(&email)
        .bind(&password_hash)
        .bind(&tenant_name)
        .bind(request_id)
        .bind(now + TOKEN_TTL_MS)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
        tx.commit().await.map_err(ApiError::internal)?;
        (
            "Confirm your address".to_owned(),
            format!(
                "To finish registering, confirm this address within 24 hours with the \
                 token below (POST /v1/auth/verify-email, or paste it where you \
                 registered):\n\n{token}\n\nIf you did not register, ignore this mail.\n"
            ),
        )
    };
    let to = email.clone();
    // Off the request path: the answer does not wait for the relay (and so
    // does not tell by its time which mail went out).
    tokio::spawn(async move {
        if let Err(e) = mailer.send(&to, &subject, body).await {
            tracing::error!(error = %e, "sending a registration mail");
        }
    });
    Ok(VerificationSent {
        status: "verification_sent".to_owned(),
        email,
    })
}

/// Finish a registration with the token its mail carried: the account and
/// its personal tenant are created.
#[utoipa::path(
    post,
    path = "/v1/auth/verify-email",
    tag = "identity",
    request_body = VerifyEmail,
    responses(
        (status = 201, description = "Registered", body = RegisterResponse),
        (status = 404, description = "`invalid_token`: unknown, used or expired"),
        (status = 422, description = "`invalid`: not 64 hex digits"),
        (status = 409, description = "`email_taken`: the address got an account meanwhile"),
    )
)]
async fn verify_email(
    State(state): State<AppState>,
    ip: ClientIp,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<VerifyEmail>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    state.guard.check_ip(ip)?;
    let invalid = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_token",
            "this token is unknown, used or expired: register again for a new one",
        )
    };
    if req.token.len() != 64 || !req.token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("token must be 64 hex digits"));
    }
    // Taken by deleting it, in one statement: of two racing requests, one
    // gets the row.
    let row = sqlx::query(
        "DELETE FROM pending_registrations WHERE token_hash = $1 \
         RETURNING email, password_hash, tenant_name, expires_at_ms",
    )
    .bind(token_hash(&req.token.to_ascii_lowercase()))
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let Some(row) = row else {
        return Err(invalid());
    };
    let get = |c: &str| row.try_get::<String, _>(c).map_err(ApiError::internal);
    let (email, hash, tenant) = (get("email")?, get("password_hash")?, get("tenant_name")?);
    let expires: i64 = row.try_get("expires_at_ms").map_err(ApiError::internal)?;
    if expires <= now_ms() {
        return Err(invalid());
    }
    insert_account(&state, &email, &hash, &tenant, Some(&rid.0))
        .await
        .map(|created| (StatusCode::CREATED, Json(created)))
}
