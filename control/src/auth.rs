//! Credentials: passwords (argon2id), access tokens (JWT, HS256, 30 min,
//! a `kid` naming their key so that two keys verify during a rotation),
//! refresh tokens (random, stored hashed), API keys (shown once, stored
//! hashed, found by a visible prefix), and the [`Principal`] every
//! authenticated handler takes.
//!
//! A principal is always *in a tenant*: a session's token names the tenant
//! it was opened for, an API key belongs to one. A session's role is read
//! from the membership on every request; an API key's comes from the
//! verified-key cache ([`crate::keycache`]), which every role change,
//! removal or revocation empties on every replica (at once on PostgreSQL,
//! within 100 ms on SQLite), so they take effect for credentials already
//! issued too.

use std::path::Path;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row;

use delta_http::ApiError;

use crate::app::AppState;
use crate::db::now_ms;
use crate::keycache::CachedKey;

/// Lifetime of an access token.
pub const ACCESS_TTL: Duration = Duration::from_secs(30 * 60);
/// Lifetime of a refresh token.
pub const REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Audience of access tokens.
pub const AUDIENCE: &str = "delta-control";
/// Issuer of access tokens.
pub const ISSUER: &str = "delta";
/// An API key's `last_used_at_ms` is recorded at most this often.
const LAST_USED_EVERY_MS: i64 = 60_000;

/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "dk_";

/// Scopes an API key may carry; sessions have them all.
pub const SCOPES: &[&str] = &[
    "agents:read",
    "agents:write",
    "runs:read",
    "runs:write",
    "budgets:read",
    "budgets:write",
    "templates:read",
    "templates:write",
    "usage:read",
    "bounties:read",
    "bounties:write",
    "tenant:admin",
];

/// A member's role in a tenant, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uses the tenant's agents.
    Member,
    /// Manages agents, keys and members (not owners).
    Admin,
    /// Everything, including roles of admins and owners.
    Owner,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Parse the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }
}

/// Who is calling, in which tenant, with which rights.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user (an API key acts as the user who made it).
    pub user_id: String,
    /// The tenant every query of this request is scoped to.
    pub tenant_id: String,
    /// The user's current role in that tenant.
    pub role: Role,
    /// An API key's scopes; `None` for a session (all scopes).
    pub scopes: Option<Vec<String>>,
    /// The API key used, if any.
    pub api_key_id: Option<String>,
    /// Whether the user is a platform operator (`operators` in
    /// `control.toml`, read on every request like the role): tiers, the
    /// node fleet and the tenant cap are theirs, apart from any tenant role.
    pub operator: bool,
}

impl Principal {
    /// 403 unless the caller's role is at least `min`.
    pub fn require_role(&self, min: Role) -> Result<(), ApiError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role in the tenant",
                min.as_str()
            )))
        }
    }

    /// 403 `operator_only` unless the caller is a platform operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.operator {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "operator_only",
                "this is for the platform's operators, not tenant roles",
            ))
        }
    }

    /// 403 unless the credential carries `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), ApiError> {
        match &self.scopes {
            Some(scopes) if !scopes.iter().any(|s| s == scope) => Err(ApiError::forbidden(
                format!("this API key lacks the {scope} scope"),
            )),
            _ => Ok(()),
        }
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// Audience ([`AUDIENCE`]).
    pub aud: String,
    /// Issuer ([`ISSUER`]).
    pub iss: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Token id.
    pub jti: String,
    /// The session (refresh family) it belongs to: ending the session
    /// (logout, reuse of a refresh token) refuses it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

/// The HMAC key of access tokens and how they are checked.
///
/// Tokens carry the key id (`kid`) of the secret that signed them. During
/// a rotation the previous secret (`jwt_previous_secret_file`) still
/// verifies the tokens it signed, for their short life, while new tokens
/// are signed with the current one; a token naming neither key (or no key:
/// tokens from before key ids) is checked against the current secret only.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The current secret's key id.
    kid: String,
    /// The previous secret, during a rotation: its key id and key.
    previous: Option<(String, DecodingKey)>,
    validation: Validation,
    /// HMAC-SHA256(secret, "delta-control subkeys v1"): the root of
    /// [`JwtKeys::derive_key`], so the raw secret is kept by the JWT keys
    /// only.
    subkey_root: [u8; 32],
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    /// Keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Self {
        // Only HS256: a token naming another algorithm (none, RS256 with
        // the HMAC key as a public key, ...) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            kid: key_id(secret),
            previous: None,
            validation,
            subkey_root: hmac_sha256(secret, b"delta-control subkeys v1"),
        }
    }

    /// Also verify tokens signed with `previous` (a rotation: the secret
    /// tokens were signed with until now). Keys derived for other purposes
    /// ([`JwtKeys::derive_key`]) come from the current secret only.
    pub fn with_previous(mut self, previous: &[u8]) -> Self {
        let kid = key_id(previous);
        if kid != self.kid {
            self.previous = Some((kid, DecodingKey::from_secret(previous)));
        }
        self
    }

    /// The current secret's key id (the `kid` of new tokens).
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// A 256-bit key for `purpose`, derived from the access-token secret:
    /// every replica sharing the secret derives the same key (used to seal
    /// stored Idempotency-Key responses and to hash what they are stored
    /// under).
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.subkey_root, purpose.as_bytes())
    }

    /// Read the secret from `path`, creating a random one (mode 0600) if
    /// the file does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(secret) if secret.len() >= 32 => Ok(Self::new(&secret)),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds fewer than 32 bytes", path.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let secret = random_token().into_bytes();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                file.write_all(&secret)?;
                file.sync_all()?;
                Ok(Self::new(&secret))
            }
            Err(e) => Err(e),
        }
    }

    /// A signed access token for `user` in `tenant` within the session
    /// `family`, and its lifetime.
    pub fn issue(
        &self,
        user: &str,
        tenant: &str,
        family: &str,
    ) -> Result<(String, Duration), ApiError> {
        let now = (now_ms() / 1000) as u64;
        let claims = Claims {
            sub: user.to_owned(),
            tid: tenant.to_owned(),
            aud: AUDIENCE.to_owned(),
            iss: ISSUER.to_owned(),
            exp: now + ACCESS_TTL.as_secs(),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            fam: Some(family.to_owned()),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map(|t| (t, ACCESS_TTL))
            .map_err(ApiError::internal)
    }

    /// Check a token's signature (with the key its `kid` names: the
    /// current one, or the previous one during a rotation), algorithm,
    /// audience, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let kid = jsonwebtoken::decode_header(token)?.kid;
        let key = match (&self.previous, kid) {
            (Some((previous, key)), Some(kid)) if *previous == kid => key,
            _ => &self.decoding,
        };
        jsonwebtoken::decode::<Claims>(token, key, &self.validation).map(|d| d.claims)
    }
}

/// A key id for `secret`: the start of a hash of it, which names the key
/// without revealing it.
fn key_id(secret: &[u8]) -> String {
    hex::encode(&hmac_sha256(secret, b"delta-control key id v1")[..8])
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// 32 random bytes, base64url: refresh tokens, secrets.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256: how refresh tokens and API key secrets are stored. (These
/// are 256-bit random values, so a fast hash is enough; passwords, which are
/// not, use argon2id.)
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// At most this many argon2 computations at once: each takes ~19 MiB and a
/// core for tens of milliseconds, and `/v1/auth/login` needs no credentials,
/// so unbounded concurrency would let anyone exhaust memory and CPU.
const ARGON2_CONCURRENCY: usize = 4;
/// At most this many callers wait for a slot; more are refused at once
/// (503 `busy`), so a login flood cannot build a queue that makes every
/// other user's login wait behind it.
pub const ARGON2_QUEUE: usize = 32;

static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_CONCURRENCY);
static ARGON2_WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A place in the argon2 queue (counted while held), or 503 `busy`.
struct QueuePlace;

impl QueuePlace {
    fn take() -> Result<Self, ApiError> {
        use std::sync::atomic::Ordering;
        let before = ARGON2_WAITING.fetch_add(1, Ordering::AcqRel);
        if before >= ARGON2_QUEUE {
            ARGON2_WAITING.fetch_sub(1, Ordering::AcqRel);
            let mut e = ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many password checks in progress; retry shortly",
            );
            e.retry_after = Some(Duration::from_secs(1));
            return Err(e);
        }
        Ok(Self)
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        ARGON2_WAITING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Wait for an argon2 slot, unless the queue is full.
async fn argon2_slot() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    let _place = QueuePlace::take()?;
    ARGON2_SLOTS.acquire().await.map_err(ApiError::internal)
}

/// Hash a password with argon2id (on a blocking thread: it is slow on
/// purpose). 503 `busy` when the queue is full.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let _slot = argon2_slot().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Check a password against a stored argon2 hash (blocking thread); 503
/// `busy` when the queue is full.
pub async fn verify_password(hash: String, password: String) -> Result<bool, ApiError> {
    let _slot = argon2_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false))
}

/// A new API key: the full key (shown once), its lookup prefix and the
/// hash of its secret part.
pub struct NewApiKey {
    /// `dk_<prefix>_<secret>`.
    pub key: String,
    /// Stored and shown in lists.
    pub prefix: String,
    /// Stored.
    pub secret_hash: String,
}

/// Make an API key.
pub fn new_api_key() -> NewApiKey {
    let mut prefix = [0u8; 6];
    rand::rng().fill_bytes(&mut prefix);
    let prefix = hex::encode(prefix);
    let secret = random_token();
    NewApiKey {
        key: format!("{API_KEY_PREFIX}{prefix}_{secret}"),
        secret_hash: sha256_hex(&secret),
        prefix,
    }
}

/// The request header that selects the tenant ("app", seed 004) a request
/// acts in: a session acts in any tenant its user is a member of (the one
/// named at login when absent); an API key only in its own. Anything else is
/// 403 `app_not_allowed`, the same for a tenant that does not exist, so the
/// answer tells nothing about other tenants.
pub const APP_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-app-id");

/// The request's `X-App-ID`: absent, or a well-formed tenant id (400
/// `invalid_app_id` otherwise).
pub fn app_id(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(&APP_ID).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let well_formed = values.next().is_none()
        && (1..=128).contains(&value.len())
        && value
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    match value.to_str() {
        Ok(app) if well_formed => Ok(Some(app)),
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_app_id",
            "X-App-ID must be one tenant id (1-128 letters, digits, '_' or '-')",
        )),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Already authenticated for this request by the Idempotency-Key
        // middleware (which authenticates before it claims or replays a key): reuse
        // it, so that the request is counted once against the rate limits.
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let token = delta_http::bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let app = app_id(&parts.headers)?;
        let result = if let Some(rest) = token.strip_prefix(API_KEY_PREFIX) {
            api_key_principal(state, rest, app).await
        } else {
            session_principal(state, token, app).await
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(reason) => reason,
        };
        state.metrics.auth.with_label_values(&[label]).inc();
        let principal = result.map_err(|reason| {
            if reason == APP_NOT_ALLOWED {
                ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    APP_NOT_ALLOWED,
                    "X-App-ID names no tenant this credential may act in",
                )
            } else {
                ApiError::unauthorized()
            }
        })?;
        delta_http::record_ids(Some(&principal.tenant_id), None, None);
        // After authentication, so that limits are per real credential and
        // a flood of bad credentials cannot use up a tenant's budget.
        state.limiter.check(&principal).await?;
        Ok(principal)
    }
}

/// The refusal (and metrics label) of an `X-App-ID` the credential may not use.
const APP_NOT_ALLOWED: &str = "app_not_allowed";

async fn session_principal(
    state: &AppState,
    token: &str,
    app: Option<&str>,
) -> Result<Principal, &'static str> {
    let claims = state.keys.verify(token).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => "expired",
            ErrorKind::InvalidAudience => "wrong_audience",
            ErrorKind::InvalidAlgorithm => "wrong_algorithm",
            _ => "invalid_token",
        }
    })?;
    let tenant = app.unwrap_or(&claims.tid).to_owned();
    let (role, email, revoked) =
        match membership_role(state, &tenant, &claims.sub, claims.fam.as_deref()).await? {
            Some(found) => found,
            None if app.is_some() => return Err(APP_NOT_ALLOWED),
            None => return Err("not_a_member"),
        };
    if revoked {
        return Err("session_ended");
    }
    Ok(Principal {
        user_id: claims.sub,
        tenant_id: tenant,
        role,
        scopes: None,
        api_key_id: None,
        operator: state.config.is_operator(&email),
    })
}

async fn api_key_principal(
    state: &AppState,
    rest: &str,
    app: Option<&str>,
) -> Result<Principal, &'static str> {
    let (prefix, secret) = rest.split_once('_').ok_or("malformed_key")?;
    let key = match state.key_cache.get(&state.db, prefix).await {
        Some(key) => key,
        None => {
            let (key, revoked, generation) = read_api_key(state, prefix).await?;
            if revoked.is_some() {
                // Not cached: a revoked key is read again on each attempt.
                // Its secret is checked before saying it is revoked.
                if !delta_http::secret_matches(&sha256_hex(secret), &key.secret_hash) {
                    return Err("bad_key");
                }
                return Err("revoked_key");
            }
            state.key_cache.put(prefix, key.clone(), generation);
            key
        }
    };
    if !delta_http::secret_matches(&sha256_hex(secret), &key.secret_hash) {
        return Err("bad_key");
    }
    let now = now_ms();
    if key.expires_at_ms.is_some_and(|t| t <= now) {
        return Err("expired_key");
    }
    if app.is_some_and(|app| app != key.tenant_id) {
        return Err(APP_NOT_ALLOWED);
    }
    if key
        .last_used_at_ms
        .is_none_or(|t| t < now - LAST_USED_EVERY_MS)
    {
        // Off the request's path, and at most once a minute per key: a
        // write per request would make every read a write.
        state.key_cache.used(prefix, now);
        let db = state.db.clone();
        let id = key.id.clone();
        tokio::spawn(async move {
            let done = sqlx::query(
                "UPDATE api_keys SET last_used_at_ms = $1 \
                 WHERE id = $2 AND (last_used_at_ms IS NULL OR last_used_at_ms < $3)",
            )
            .bind(now)
            .bind(&id)
            .bind(now - LAST_USED_EVERY_MS)
            .execute(db.pool())
            .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, key = %id, "recording an API key's last use");
            }
        });
    }
    Ok(Principal {
        operator: state.config.is_operator(&key.email),
        user_id: key.user_id,
        tenant_id: key.tenant_id,
        role: key.role,
        scopes: Some(key.scopes),
        api_key_id: Some(key.id),
    })
}

/// The key `prefix` (with when it was revoked) and the auth generation it
/// was read at, in one statement (see [`crate::keycache`]).
async fn read_api_key(
    state: &AppState,
    prefix: &str,
) -> Result<(CachedKey, Option<i64>, i64), &'static str> {
    let row = sqlx::query(
        "SELECT k.id, k.tenant_id, k.user_id, k.secret_hash, k.scopes, k.expires_at_ms, \
                k.revoked_at_ms, k.last_used_at_ms, m.role, u.email, \
                (SELECT generation FROM auth_generation WHERE id = 1) AS auth_generation \
         FROM api_keys k JOIN memberships m \
           ON m.tenant_id = k.tenant_id AND m.user_id = k.user_id \
         JOIN users u ON u.id = k.user_id \
         WHERE k.prefix = $1",
    )
    .bind(prefix)
    .fetch_optional(state.db.pool())
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "looking up an API key");
        "storage"
    })?
    .ok_or("unknown_key")?;
    let get_str = |c: &str| row.try_get::<String, _>(c).map_err(|_| "storage");
    let role = get_str("role")?;
    let scopes = get_str("scopes")?;
    let key = CachedKey {
        id: get_str("id")?,
        tenant_id: get_str("tenant_id")?,
        user_id: get_str("user_id")?,
        secret_hash: get_str("secret_hash")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        expires_at_ms: row.try_get("expires_at_ms").map_err(|_| "storage")?,
        role: Role::parse(&role).ok_or("storage")?,
        email: get_str("email")?,
        last_used_at_ms: row.try_get("last_used_at_ms").map_err(|_| "storage")?,
        read_at_ms: now_ms(),
    };
    let revoked: Option<i64> = row.try_get("revoked_at_ms").map_err(|_| "storage")?;
    let generation: i64 = row.try_get("auth_generation").map_err(|_| "storage")?;
    Ok((key, revoked, generation))
}

/// The user's role in `tenant`, their email (which says whether they are
/// an operator) and whether the session `family` has ended: one query per
/// request.
async fn membership_role(
    state: &AppState,
    tenant: &str,
    user: &str,
    family: Option<&str>,
) -> Result<Option<(Role, String, bool)>, &'static str> {
    let row = sqlx::query(
        "SELECT m.role, u.email, \
                (SELECT COUNT(*) FROM revoked_sessions r WHERE r.family_id = $3) AS revoked \
         FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2",
    )
    .bind(tenant)
    .bind(user)
    .bind(family.unwrap_or(""))
    .fetch_optional(state.db.pool())
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "looking up a membership");
        "storage"
    })?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role").map_err(|_| "storage")?;
    let email: String = row.try_get("email").map_err(|_| "storage")?;
    let revoked: i64 = row.try_get("revoked").map_err(|_| "storage")?;
    Ok(Some((
        Role::parse(&role).ok_or("storage")?,
        email,
        revoked > 0,
    )))
}

/// End the session `family` for its access tokens too (inside the
/// caller's transaction): they are refused until the last could expire.
pub async fn end_session(
    conn: &mut sqlx::AnyConnection,
    family: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let until = now.saturating_add(i64::try_from(ACCESS_TTL.as_millis()).unwrap_or(i64::MAX));
    sqlx::query(
        "INSERT INTO revoked_sessions (family_id, expires_at_ms) VALUES ($1, $2) \
         ON CONFLICT (family_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
    )
    .bind(family)
    .bind(until)
    .execute(conn)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_or_other_algorithms_do_not() {
        let keys = JwtKeys::new(&[7u8; 32]);
        let (token, ttl) = keys.issue("u1", "t1", "f1").expect("issue");
        assert_eq!(ttl, ACCESS_TTL);
        let claims = keys.verify(&token).expect("verify");
        assert_eq!((claims.sub.as_str(), claims.tid.as_str()), ("u1", "t1"));
        // Another key, a flipped payload byte, alg=none: refused.
        assert!(JwtKeys::new(&[8u8; 32]).verify(&token).is_err());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].replacen('e', "f", 1);
        assert!(keys.verify(&parts.join(".")).is_err());
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", token.split('.').nth(1).unwrap_or(""));
        assert!(keys.verify(&unsigned).is_err());
    }

    #[test]
    fn during_a_rotation_both_keys_verify_their_own_tokens_only() {
        let old = JwtKeys::new(&[1u8; 32]);
        let (old_token, _) = old.issue("u1", "t1", "f1").expect("issue");
        let header = jsonwebtoken::decode_header(&old_token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(old.key_id()));
        let rotated = JwtKeys::new(&[2u8; 32]).with_previous(&[1u8; 32]);
        assert_ne!(rotated.key_id(), old.key_id());
        // The old token still verifies (by its kid), a new one too.
        assert_eq!(rotated.verify(&old_token).expect("old token").sub, "u1");
        let (new_token, _) = rotated.issue("u2", "t1", "f2").expect("issue");
        assert_eq!(rotated.verify(&new_token).expect("new token").sub, "u2");
        // Without the previous secret the old token is refused; a token
        // signed with a third key but naming the previous kid is refused.
        assert!(JwtKeys::new(&[2u8; 32]).verify(&old_token).is_err());
        let forger = JwtKeys::new(&[3u8; 32]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(old.key_id().to_owned());
        let claims = rotated.verify(&new_token).expect("claims");
        let forged = jsonwebtoken::encode(&header, &claims, &forger.encoding).expect("encode");
        assert!(rotated.verify(&forged).is_err());
        // Derived keys follow the current secret only.
        assert_eq!(
            rotated.derive_key("p"),
            JwtKeys::new(&[2u8; 32]).derive_key("p")
        );
    }

    #[test]
    fn api_keys_carry_a_prefix_and_a_hash_of_the_secret() {
        let k = new_api_key();
        assert!(k.key.starts_with(&format!("{API_KEY_PREFIX}{}_", k.prefix)));
        // The prefix is hex (no '_'); the secret may contain '_'.
        let (_, secret) = k.key[API_KEY_PREFIX.len()..]
            .split_once('_')
            .expect("secret");
        assert_eq!(sha256_hex(secret), k.secret_hash);
        assert_ne!(new_api_key().key, k.key);
    }

    /// The argon2 queue is process-wide: tests that use it take turns.
    static ARGON2_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let _turn = ARGON2_TESTS.lock().await;
        let hash = hash_password("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            verify_password(hash.clone(), "correct horse".into())
                .await
                .ok(),
            Some(true)
        );
        assert_eq!(
            verify_password(hash, "wrong".into()).await.ok(),
            Some(false)
        );
        assert_eq!(
            verify_password("garbage".into(), "x".into()).await.ok(),
            Some(false)
        );
    }

    #[tokio::test]
    async fn a_full_argon2_queue_refuses_at_once() {
        let _turn = ARGON2_TESTS.lock().await;
        // Hold every slot, so that callers queue.
        let held = ARGON2_SLOTS
            .acquire_many(ARGON2_CONCURRENCY as u32)
            .await
            .expect("slots");
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned();
        let waiting: Vec<_> = (0..ARGON2_QUEUE)
            .map(|_| tokio::spawn(verify_password(hash.clone(), "x".into())))
            .collect();
        for _ in 0..500 {
            if ARGON2_WAITING.load(std::sync::atomic::Ordering::Acquire) >= ARGON2_QUEUE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let refused = verify_password(hash.clone(), "x".into()).await;
        let e = refused.expect_err("refused");
        assert_eq!((e.status.as_u16(), e.code), (503, "busy"));
        assert!(e.retry_after.is_some());
        // The queued ones go through once the slots are free.
        drop(held);
        for task in waiting {
            assert_eq!(task.await.expect("task").ok(), Some(false));
        }
    }
}
