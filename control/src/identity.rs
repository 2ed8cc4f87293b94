//! Identity: registration, login, sessions (access + refresh tokens),
//! logout, `/v1/me` and API keys.
//!
//! Sessions. A login opens a *family* of refresh tokens and answers an
//! access token (JWT, [`ACCESS_TTL`]) and a refresh token (random, stored
//! as its SHA-256, [`REFRESH_TTL`] from when it was issued, so a family
//! lives as long as it is used at least once a week, and never longer
//! than `session_max_secs`, 30 days by default, from the login). `POST
//! /v1/auth/refresh` rotates: the presented token is marked rotated by one
//! conditional `UPDATE` (so of two concurrent uses exactly one wins) and a
//! new token of the same family is issued. A rotated token is never
//! presented again by an honest client; when one is, the whole family is
//! revoked (theft is assumed; the client that lost the race of a concurrent
//! double refresh has to log in again). Logout revokes the family. Ending a
//! family (logout, reuse, the absolute lifetime) also ends its access
//! tokens: each names its family (`fam`), and every request checks it
//! against `revoked_sessions` along with the caller's membership (so
//! removing a member takes effect at once too).
//!
//! API keys are `dk_<prefix>_<secret>`: shown once at creation, stored as
//! the SHA-256 of the secret with the visible prefix, per tenant, with
//! scopes, an optional expiry and revocation.
//!
//! [`ACCESS_TTL`]: crate::auth::ACCESS_TTL

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use delta_http::{ApiError, JsonBody, RequestId};

use crate::app::AppState;
use crate::audit;
use crate::auth::{
    JwtKeys, Principal, REFRESH_TTL, Role, SCOPES, hash_password, new_api_key, random_token,
    sha256_hex, verify_password,
};
use crate::db::{new_id, now_ms};
use crate::guard::ClientIp;
use crate::pagination::{Page, PageQuery};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in characters (argon2 takes any length; this
/// only bounds the work a request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest API key lifetime, in days.
pub const MAX_KEY_DAYS: u32 = 3650;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    /// User id (`usr_...`).
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// A tenant's id and name.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantRef {
    /// Tenant id (`ten_...`).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// `POST /v1/auth/register`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email (trimmed and lowercased).
    // The literal of identity::EMAIL_PATTERN (contract tests compare them).
    #[schema(
        max_length = 254,
        pattern = r"^[ \t\n\f\r]*[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\f\r]*$"
    )]
    pub email: String,
    /// 12-1024 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    /// Name of the personal tenant (default: derived from the email).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub tenant_name: Option<String>,
}

/// The new user and their personal tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    /// The user.
    pub user: UserView,
    /// Their personal tenant, where they are owner.
    pub tenant: TenantRef,
}

/// `POST /v1/auth/login`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// The tenant to open the session in (default: the user's oldest
    /// membership).
    pub tenant_id: Option<String>,
}

/// A session's tokens.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use token for `/v1/auth/refresh`.
    pub refresh_token: String,
    /// The tenant the session is in.
    pub tenant_id: String,
}

/// `POST /v1/auth/refresh` and `/v1/auth/logout`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// A refresh token from login or a previous refresh.
    pub refresh_token: String,
}

/// `GET /v1/me`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    /// The user.
    pub user: UserView,
    /// The tenant of this credential.
    pub tenant_id: String,
    /// The user's role there.
    pub role: Role,
    /// `session` or `api_key`.
    pub via: String,
    /// The credential's scopes (a session has them all).
    pub scopes: Vec<String>,
    /// Whether the user is a platform operator.
    pub operator: bool,
}

/// `POST /v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label (1-100 characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// Subset of the known scopes (default: all of them). A key may only be
    /// made with scopes the calling credential has.
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<String>>,
    /// Days until the key expires (1-3650; default: never).
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// A new key; `key` is shown only here.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// Key id (`key_...`).
    pub id: String,
    /// Label.
    pub name: String,
    /// The secret key, `dk_<prefix>_<secret>`: shown once, never again.
    pub key: String,
    /// Visible prefix (part of the key).
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time, ms.
    pub created_at_ms: i64,
    /// Expiry, ms (none: never).
    pub expires_at_ms: Option<i64>,
}

/// A key as lists show it (never the secret or its hash).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// Key id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Visible prefix.
    pub prefix: String,
    /// The user the key acts as.
    pub user_id: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time, ms.
    pub created_at_ms: i64,
    /// Expiry, ms (none: never).
    pub expires_at_ms: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// When it last authenticated a request (recorded at most once a
    /// minute; none: never used).
    pub last_used_at_ms: Option<i64>,
}

/// The document's pattern for an email (with `maxLength` 254): what
/// [`normalise_email`] accepts (surrounding ASCII blanks, an RFC 5322
/// dot-atom-ish local part of at most 64 characters, a dotted domain of
/// letters, digits and `-`). The server bounds the trimmed length; a
/// lookahead saying so made the pattern too hard for generators to meet.
pub const EMAIL_PATTERN: &str = r"^[ \t\n\f\r]*[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\f\r]*$";

/// Trim (ASCII blanks) and lowercase an email and check that it looks like
/// one ([`EMAIL_PATTERN`]); 422 otherwise. ASCII only: internationalised
/// addresses are refused rather than half-supported.
pub fn normalise_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let bad = || ApiError::invalid("email must look like name@example.com");
    if email.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&b));
    let domain_ok = domain.contains('.')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !local_ok || !domain_ok {
        return Err(bad());
    }
    Ok(email.to_ascii_lowercase())
}

/// Trim a display name and check it is 1-100 printable characters.
pub fn clean_name(raw: &str, what: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{what} must be 1-100 printable characters"
        )));
    }
    Ok(name.to_owned())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong email or password",
    )
}

fn invalid_refresh() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "the refresh token is unknown, expired, revoked or already used",
    )
}

/// A hash of a random password with the same parameters as real hashes:
/// verifying against it when the email is unknown makes that answer take as
/// long as a wrong password.
async fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash_password(random_token()))
        .await
        .map(String::as_str)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Issue an access token and a new refresh token of `family` (inserted
/// through `conn`, the caller's transaction).
async fn issue_tokens(
    conn: &mut sqlx::AnyConnection,
    keys: &JwtKeys,
    user: &str,
    tenant: &str,
    family: &str,
) -> Result<TokenResponse, ApiError> {
    let (access, ttl) = keys.issue(user, tenant, family)?;
    let refresh = random_token();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO refresh_tokens \
           (id, family_id, user_id, tenant_id, token_hash, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("rtk"))
    .bind(family)
    .bind(user)
    .bind(tenant)
    .bind(sha256_hex(&refresh))
    .bind(now)
    .bind(now.saturating_add(ms(REFRESH_TTL)))
    .execute(&mut *conn)
    .await
    .map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
        refresh_token: refresh,
        tenant_id: tenant.to_owned(),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Register a user with a personal tenant where they are owner. With
/// `require_email_verification` the answer is 202 for every address, known
/// or not: the account exists once the emailed token is presented to
/// `POST /v1/auth/verify-email` (so registration tells nobody which
/// addresses have accounts).
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "identity",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = RegisterResponse),
        (status = 202, description = "A verification email is on its way (with \
                                      `require_email_verification`; the same answer \
                                      whether or not the address has an account)",
         body = crate::verification::VerificationSent),
        (status = 403, description = "Registration is closed, or the address is an \
                                      operator's (`registration_closed`)"),
        (status = 409, description = "The email is taken (`email_taken`; not with \
                                      `require_email_verification`)"),
        (status = 422, description = "Bad email, short password or bad tenant name"),
    )
)]
async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    state.guard.check_ip(ip)?;
    if !state.config.allow_registration {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "registration is closed on this control plane",
        ));
    }
    let email = normalise_email(&req.email)?;
    // An operator's address is never claimed through open registration:
    // whoever registered it first would hold the platform.
    if state.config.is_operator(&email) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "this address cannot be registered through the API",
        ));
    }
    if state.config.require_email_verification {
        let sent = crate::verification::start(&state, req, Some(&rid.0)).await?;
        return Ok((StatusCode::ACCEPTED, Json(sent)).into_response());
    }
    create_account(
        &state,
        &email,
        req.password,
        req.tenant_name.as_deref(),
        Some(&rid.0),
    )
    .await
    .map(|created| (StatusCode::CREATED, Json(created)).into_response())
}

/// Create an account and its personal tenant (which it owns): what
/// registration does, and what `delta control --create-account` and
/// `delta up` call directly (operators' accounts cannot be registered).
/// `email` is normalised here; 409 `email_taken`, 422 for bad input.
pub async fn create_account(
    state: &AppState,
    email: &str,
    password: String,
    tenant_name: Option<&str>,
    request_id: Option<&str>,
) -> Result<RegisterResponse, ApiError> {
    let (email, tenant_name) = check_account_input(email, &password, tenant_name)?;
    // Hash before opening the transaction: it is slow on purpose.
    let password_hash = hash_password(password).await?;
    insert_account(state, &email, &password_hash, &tenant_name, request_id).await
}

/// The normalised email and the tenant's name of a new account, or 422
/// for a bad email, password or name.
pub(crate) fn check_account_input(
    email: &str,
    password: &str,
    tenant_name: Option<&str>,
) -> Result<(String, String), ApiError> {
    let email = normalise_email(email)?;
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let tenant_name = match tenant_name {
        Some(name) => clean_name(name, "tenant_name")?,
        None => email.split('@').next().unwrap_or("personal").to_owned(),
    };
    Ok((email, tenant_name))
}

/// Store an account whose input [`check_account_input`] passed and whose
/// password is hashed already; 409 `email_taken`.
pub(crate) async fn insert_account(
    state: &AppState,
    email: &str,
    password_hash: &str,
    tenant_name: &str,
    request_id: Option<&str>,
) -> Result<RegisterResponse, ApiError> {
    let user = UserView {
        id: new_id("usr"),
        email: email.to_owned(),
        created_at_ms: now_ms(),
    };
    let tenant = TenantRef {
        id: new_id("ten"),
        name: tenant_name.to_owned(),
    };
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(password_hash)
    .bind(user.created_at_ms)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "email_taken",
                "a user with this email exists",
            ));
        }
        Err(e) => return Err(ApiError::internal(e)),
    }
    crate::tenants::insert_owned(
        &mut tx,
        &tenant.id,
        &tenant.name,
        &user.id,
        user.created_at_ms,
    )
    .await?;
    audit::record_in(
        &mut tx,
        Some(&tenant.id),
        Some(&user.id),
        "user_registered",
        json!({ "email": user.email }),
        request_id,
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(RegisterResponse { user, tenant })
}

/// Log in: an access token and a refresh token for one tenant.
///
/// A wrong password and an unknown email answer the same 401
/// `invalid_credentials`, in about the same time. Failed logins are
/// audited in every tenant of the account that was tried (unknown emails
/// without a tenant).
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "identity",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong credentials (`invalid_credentials`), or not a \
                                      member of the tenant asked for (`not_a_member`)"),
    )
)]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    // Before any argon2 work: the address's rate, then the account's
    // lockout (an address that is not an email is an account too, so a
    // refusal says nothing about which exist).
    state.guard.check_ip(ip)?;
    let tried: String = req.email.trim().to_lowercase().chars().take(254).collect();
    state.guard.check_account(&tried)?;
    let dummy = dummy_hash().await?;
    let email = normalise_email(&req.email).ok();
    let user = match &email {
        Some(email) => sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    r.try_get::<String, _>("id")?,
                    r.try_get::<String, _>("password_hash")?,
                ))
            })
            .transpose()
            .map_err(ApiError::internal)?,
        None => None,
    };
    let (known_id, hash) = match user {
        Some((id, hash)) => (Some(id), hash),
        None => (None, dummy.to_owned()),
    };
    // Always verify (against the dummy hash for unknown users) so that
    // timing does not tell which emails exist.
    let password_ok = verify_password(hash, req.password).await?;
    if password_ok && known_id.is_some() {
        state.guard.succeeded(&tried);
    } else {
        state.guard.failed(&tried);
    }
    let user_id = match known_id {
        Some(id) if password_ok => id,
        Some(id) => {
            let detail = json!({ "email": tried, "reason": "bad_password" });
            audit_failed_login(&state, &id, detail, &rid).await;
            return Err(invalid_credentials());
        }
        None => {
            let detail = json!({ "email": tried, "reason": "unknown_email" });
            audit::record(&state.db, None, None, "login_failed", detail, Some(&rid.0)).await;
            return Err(invalid_credentials());
        }
    };
    let tenant_row = match &req.tenant_id {
        Some(tenant) => {
            sqlx::query("SELECT tenant_id FROM memberships WHERE user_id = $1 AND tenant_id = $2")
                .bind(&user_id)
                .bind(tenant)
                .fetch_optional(state.db.pool())
                .await
        }
        None => {
            sqlx::query(
                "SELECT tenant_id FROM memberships WHERE user_id = $1 \
                 ORDER BY created_at_ms, tenant_id LIMIT 1",
            )
            .bind(&user_id)
            .fetch_optional(state.db.pool())
            .await
        }
    }
    .map_err(ApiError::internal)?;
    let Some(tenant_row) = tenant_row else {
        // The requested tenant is not named in the detail: it may be another
        // tenant's id, which this user's admins have no business seeing.
        audit_failed_login(&state, &user_id, json!({ "reason": "not_a_member" }), &rid).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_a_member",
            "you are not a member of that tenant",
        ));
    };
    let tenant: String = tenant_row
        .try_get("tenant_id")
        .map_err(ApiError::internal)?;
    let family = new_id("fam");
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let tokens = issue_tokens(&mut tx, &state.keys, &user_id, &tenant, &family).await?;
    audit::record_in(
        &mut tx,
        Some(&tenant),
        Some(&user_id),
        "login",
        json!({ "family_id": family }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(Json(tokens))
}

/// Audit a failed login of a known account in each of its tenants, so
/// every admin responsible for the account sees attempts against it.
async fn audit_failed_login(
    state: &AppState,
    user_id: &str,
    detail: serde_json::Value,
    rid: &RequestId,
) {
    let tenants = sqlx::query("SELECT tenant_id FROM memberships WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(state.db.pool())
        .await;
    let tenants: Vec<Option<String>> = match tenants {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("tenant_id").ok())
            .map(Some)
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "listing the tenants of a failed login");
            Vec::new()
        }
    };
    // An account in no tenant still leaves a (tenantless) trace.
    let tenants = if tenants.is_empty() {
        vec![None]
    } else {
        tenants
    };
    for tenant in tenants {
        audit::record(
            &state.db,
            tenant.as_deref(),
            Some(user_id),
            "login_failed",
            detail.clone(),
            Some(&rid.0),
        )
        .await;
    }
}

enum RefreshOutcome {
    Rotated(TokenResponse),
    Refused,
}

/// Exchange a refresh token for new tokens (rotation).
///
/// The presented token stops working. Presenting a token that was already
/// rotated revokes every token of its family (401).
#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "identity",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens, same tenant", body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or reused token"),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    state.guard.check_ip(ip)?;
    let hash = sha256_hex(&req.refresh_token);
    let now = now_ms();
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    // The write comes first: it takes SQLite's write lock (and PostgreSQL's
    // row lock), and only one caller can move a token from unrotated to
    // rotated.
    let rotated = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at_ms = $2 \
         WHERE token_hash = $1 AND rotated_at_ms IS NULL AND revoked_at_ms IS NULL \
           AND expires_at_ms > $2 \
         RETURNING family_id, user_id, tenant_id",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    let outcome = match rotated {
        Some(row) => {
            let family: String = row.try_get("family_id").map_err(ApiError::internal)?;
            let user: String = row.try_get("user_id").map_err(ApiError::internal)?;
            let tenant: String = row.try_get("tenant_id").map_err(ApiError::internal)?;
            let member = sqlx::query(
                "SELECT 1 AS one FROM memberships WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(&tenant)
            .bind(&user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(ApiError::internal)?
            .is_some();
            // When the login was: its family's first token.
            let started: i64 = sqlx::query_scalar(
                "SELECT MIN(created_at_ms) FROM refresh_tokens WHERE family_id = $1",
            )
            .bind(&family)
            .fetch_one(&mut *tx)
            .await
            .map_err(ApiError::internal)?;
            let max_ms = i64::try_from(state.config.session_max_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX);
            if member && now.saturating_sub(started) <= max_ms {
                RefreshOutcome::Rotated(
                    issue_tokens(&mut tx, &state.keys, &user, &tenant, &family).await?,
                )
            } else {
                // Removed from the tenant since, or the session is older
                // than session_max_secs: it ends.
                revoke_family(&mut tx, &family, now).await?;
                RefreshOutcome::Refused
            }
        }
        None => {
            let row = sqlx::query(
                "SELECT family_id, user_id, tenant_id, rotated_at_ms, revoked_at_ms \
                 FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(ApiError::internal)?;
            if let Some(row) = row {
                let rotated: Option<i64> =
                    row.try_get("rotated_at_ms").map_err(ApiError::internal)?;
                let revoked: Option<i64> =
                    row.try_get("revoked_at_ms").map_err(ApiError::internal)?;
                // Reuse of a rotated token, even an expired one: whoever
                // holds it is not the client the family was handed to.
                if rotated.is_some() && revoked.is_none() {
                    let family: String = row.try_get("family_id").map_err(ApiError::internal)?;
                    let user: String = row.try_get("user_id").map_err(ApiError::internal)?;
                    let tenant: String = row.try_get("tenant_id").map_err(ApiError::internal)?;
                    let revoked = revoke_family(&mut tx, &family, now).await?;
                    tracing::warn!(family_id = %family, "refresh token reused; family revoked");
                    audit::record_in(
                        &mut tx,
                        Some(&tenant),
                        Some(&user),
                        "refresh_token_reuse",
                        json!({ "family_id": family, "tokens_revoked": revoked }),
                        Some(&rid.0),
                    )
                    .await?;
                }
            }
            RefreshOutcome::Refused
        }
    };
    // Commit in every case: a refusal may have revoked a family.
    tx.commit().await.map_err(ApiError::internal)?;
    match outcome {
        RefreshOutcome::Rotated(tokens) => Ok(Json(tokens)),
        RefreshOutcome::Refused => Err(invalid_refresh()),
    }
}

/// Revoke every live token of `family`; answers how many.
async fn revoke_family(
    conn: &mut sqlx::AnyConnection,
    family: &str,
    now: i64,
) -> Result<u64, ApiError> {
    // The family's token rows first, the session row second: every path
    // that touches both takes them in this order. The other order deadlocked
    // on PostgreSQL when several reuses of one token raced (each held the
    // session row and waited for token rows another held).
    let revoked = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at_ms = $2 \
         WHERE family_id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(family)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected())
    .map_err(ApiError::internal)?;
    crate::auth::end_session(&mut *conn, family, now)
        .await
        .map_err(ApiError::internal)?;
    Ok(revoked)
}

/// Log out: revoke the refresh token's whole family.
///
/// Always 204 (an unknown token reveals nothing). The session's access
/// tokens are refused from now on too.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "identity",
    request_body = RefreshRequest,
    responses((status = 204, description = "The session's refresh tokens are revoked"))
)]
async fn logout(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let hash = sha256_hex(&req.refresh_token);
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let revoked = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at_ms = $2 \
         WHERE revoked_at_ms IS NULL AND family_id = \
           (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) \
         RETURNING family_id, user_id, tenant_id",
    )
    .bind(&hash)
    .bind(now_ms())
    .fetch_all(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    if let Some(row) = revoked.first() {
        let family: String = row.try_get("family_id").map_err(ApiError::internal)?;
        crate::auth::end_session(&mut tx, &family, now_ms())
            .await
            .map_err(ApiError::internal)?;
        let user: String = row.try_get("user_id").map_err(ApiError::internal)?;
        let tenant: String = row.try_get("tenant_id").map_err(ApiError::internal)?;
        audit::record_in(
            &mut tx,
            Some(&tenant),
            Some(&user),
            "logout",
            json!({ "family_id": family }),
            Some(&rid.0),
        )
        .await?;
    }
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the credential belongs to.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "identity",
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        (status = 401, description = "No valid credential"),
    ),
    security(("bearer" = []))
)]
async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<MeResponse>, ApiError> {
    principal.require_role(Role::Member)?;
    let row = sqlx::query("SELECT id, email, created_at_ms FROM users WHERE id = $1")
        .bind(&principal.user_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let user = UserView {
        id: row.try_get("id").map_err(ApiError::internal)?,
        email: row.try_get("email").map_err(ApiError::internal)?,
        created_at_ms: row.try_get("created_at_ms").map_err(ApiError::internal)?,
    };
    let via = if principal.api_key_id.is_some() {
        "api_key"
    } else {
        "session"
    };
    let scopes = principal
        .scopes
        .clone()
        .unwrap_or_else(|| SCOPES.iter().map(|s| (*s).to_owned()).collect());
    Ok(Json(MeResponse {
        user,
        tenant_id: principal.tenant_id,
        role: principal.role,
        via: via.into(),
        scopes,
        operator: principal.operator,
    }))
}

/// The scopes a new key gets: known, deduplicated, in [`SCOPES`] order, and
/// none the calling credential lacks.
fn key_scopes(requested: Option<&[String]>, caller: &Principal) -> Result<Vec<String>, ApiError> {
    let requested: Vec<&str> = match requested {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => SCOPES.to_vec(),
    };
    if requested.is_empty() {
        return Err(ApiError::invalid("a key needs at least one scope"));
    }
    if let Some(unknown) = requested.iter().find(|s| !SCOPES.contains(s)) {
        return Err(ApiError::invalid(format!(
            "unknown scope {unknown:?}; known: {}",
            SCOPES.join(", ")
        ))
        .details(json!({ "known_scopes": SCOPES })));
    }
    // A key cannot mint a key stronger than itself.
    for scope in &requested {
        caller.require_scope(scope)?;
    }
    Ok(SCOPES
        .iter()
        .filter(|s| requested.contains(s))
        .map(|s| (*s).to_owned())
        .collect())
}

/// Create an API key acting as the caller in the current tenant.
///
/// The key is in the answer once and never again. With an API key as the
/// credential this needs the `tenant:admin` scope, and the new key may not
/// have scopes the calling key lacks.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "identity",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "The key (shown once)", body = CreatedApiKey),
        (status = 403, description = "The calling key lacks a scope"),
        (status = 422, description = "Bad name, scopes or expiry"),
    ),
    security(("bearer" = []))
)]
async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(req): JsonBody<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("tenant:admin")?;
    let name = clean_name(&req.name, "name")?;
    let scopes = key_scopes(req.scopes.as_deref(), &principal)?;
    let now = now_ms();
    let expires_at_ms = match req.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_KEY_DAYS).contains(&days) => {
            Some(now.saturating_add(i64::from(days) * 24 * 3600 * 1000))
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "expires_in_days must be 1-{MAX_KEY_DAYS} (omit it for a key that does not expire)"
            )));
        }
    };
    let key = new_api_key();
    let id = new_id("key");
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO api_keys \
           (id, tenant_id, user_id, name, prefix, secret_hash, scopes, created_at_ms, \
            expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(&principal.tenant_id)
    .bind(&principal.user_id)
    .bind(&name)
    .bind(&key.prefix)
    .bind(&key.secret_hash)
    .bind(scopes.join(" "))
    .bind(now)
    .bind(expires_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    audit::record_in(
        &mut tx,
        Some(&principal.tenant_id),
        Some(&principal.user_id),
        "api_key_created",
        json!({
            "api_key_id": id,
            "name": name,
            "prefix": key.prefix,
            "scopes": scopes,
            "expires_at_ms": expires_at_ms,
            "via_api_key": principal.api_key_id,
        }),
        Some(&rid.0),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            id,
            name,
            key: key.key,
            prefix: key.prefix,
            scopes,
            created_at_ms: now,
            expires_at_ms,
        }),
    ))
}

/// Whether the caller manages all of the tenant's keys (an admin, through
/// a session or a key with `tenant:admin`) or only their own.
fn manages_tenant_keys(principal: &Principal) -> bool {
    principal.role >= Role::Admin && principal.require_scope("tenant:admin").is_ok()
}

/// List API keys of the current tenant: all of them for admins, the
/// caller's own for members. Revoked keys are listed with `revoked_at_ms`.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "identity",
    params(PageQuery),
    responses((status = 200, description = "One page, oldest first", body = Page<ApiKeyView>)),
    security(("bearer" = []))
)]
async fn list_api_keys(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<ApiKeyView>>, ApiError> {
    principal.require_role(Role::Member)?;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    // '' selects every user's keys; a user id only that user's.
    let only_user = if manages_tenant_keys(&principal) {
        String::new()
    } else {
        principal.user_id.clone()
    };
    let rows = sqlx::query(
        "SELECT id, name, prefix, user_id, scopes, created_at_ms, expires_at_ms, revoked_at_ms, \
                last_used_at_ms \
         FROM api_keys \
         WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) \
           AND (created_at_ms, id) > ($3, $4) \
         ORDER BY created_at_ms, id LIMIT $5",
    )
    .bind(&principal.tenant_id)
    .bind(&only_user)
    .bind(after_t)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db.pool())
    .await
    .map_err(ApiError::internal)?;
    let keys = rows
        .iter()
        .map(|r| {
            let scopes: String = r.try_get("scopes")?;
            Ok(ApiKeyView {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                prefix: r.try_get("prefix")?,
                user_id: r.try_get("user_id")?,
                scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                created_at_ms: r.try_get("created_at_ms")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
                revoked_at_ms: r.try_get("revoked_at_ms")?,
                last_used_at_ms: r.try_get("last_used_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(keys, limit, |k| {
        (k.created_at_ms, k.id.clone())
    })))
}

/// Revoke an API key (its owner or an admin). Keys the caller may not see
/// (another tenant's, or another member's for a non-admin) answer 404.
/// Revoking a revoked key is a no-op (204).
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "identity",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The calling key lacks `tenant:admin`"),
        (status = 404, description = "No such key in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn revoke_api_key(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("tenant:admin")?;
    let owner: String =
        sqlx::query("SELECT user_id FROM api_keys WHERE id = $1 AND tenant_id = $2")
            .bind(&id)
            .bind(&principal.tenant_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?
            .map(|r| r.try_get("user_id"))
            .transpose()
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("API key"))?;
    if owner != principal.user_id && !manages_tenant_keys(&principal) {
        return Err(ApiError::not_found("API key"));
    }
    let mut tx = state.db.begin().await.map_err(ApiError::internal)?;
    let revoked = sqlx::query(
        "UPDATE api_keys SET revoked_at_ms = $3 \
         WHERE id = $1 AND tenant_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(&id)
    .bind(&principal.tenant_id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if revoked > 0 {
        audit::record_in(
            &mut tx,
            Some(&principal.tenant_id),
            Some(&principal.user_id),
            "api_key_revoked",
            json!({ "api_key_id": id, "key_owner": owner, "via_api_key": principal.api_key_id }),
            Some(&rid.0),
        )
        .await?;
    }
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
