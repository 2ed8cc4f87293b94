//! Submission artifacts: files an agent owner uploads as its submission
//! (`POST /v1/bounties/{id}/submissions` with `application/octet-stream`),
//! size-capped (`[artifacts] max_bytes`), addressed by their SHA-256 and
//! kept through the `object_store` crate (local filesystem under the state
//! directory, or an S3-compatible bucket: `artifact_store`; the same bytes
//! are stored once, whoever uploads them).
//!
//! Downloads go through expiring signed URLs:
//! `GET /v1/submissions/{id}/artifact` answers 307 to
//! `/v1/artifacts/{sha256}?expires=<unix s>&sig=<hex HMAC-SHA256>`, a route
//! without authentication that serves the bytes only with a valid signature
//! (403 `bad_signature`) before `expires` (410 `url_expired`). The HMAC key
//! is `[artifacts] signing_key_file` (default: generated once into
//! `<state_dir>/artifact-key`); replicas share it by sharing that file.
//! With the S3 backend too the bytes go through the control plane (the
//! bucket needs no public endpoint, and the URL's rules stay one).
//!
//! Who gets a URL: the submitter's tenant always; the bounty's business
//! once the submission is `approved` (before that 403 `not_approved`: it
//! sees the submission and its verdict, never the work it has not paid
//! for); anyone else 404, as for the submission itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use delta_http::ApiError;
use hmac::{Hmac, Mac as _};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::artifact_store::{ArtifactBackend, S3Config};
use crate::auth::Principal;
use crate::db::now_ms;
use crate::state::AppState;

/// `[artifacts]`: where submission artifacts are kept and how they are served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// `local` (files under `dir`) or `s3` (`[artifacts.s3]`).
    pub backend: ArtifactBackend,
    /// Directory of the local backend (default `<state_dir>/artifacts`).
    pub dir: Option<PathBuf>,
    /// The bucket of the `s3` backend.
    pub s3: Option<S3Config>,
    /// Largest artifact, bytes (default 10 MiB); larger uploads answer 413
    /// `artifact_too_large`.
    pub max_bytes: u64,
    /// Lifetime of a signed download URL (default 300 s).
    pub url_ttl_secs: u64,
    /// File with the URL-signing key (at least 32 bytes; default generated
    /// once into `<state_dir>/artifact-key`, mode 0600).
    pub signing_key_file: Option<PathBuf>,
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self {
            backend: ArtifactBackend::Local,
            dir: None,
            s3: None,
            max_bytes: 10 << 20,
            url_ttl_secs: 300,
            signing_key_file: None,
        }
    }
}

/// A submission's artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactRef {
    /// SHA-256 of its bytes (hex): its address in the store.
    pub sha256: String,
    /// Its size, bytes.
    pub size_bytes: i64,
}

/// The store and the URL signer.
pub struct Artifacts {
    store: Arc<dyn ObjectStore>,
    /// Whether the store refuses to overwrite by itself (`PutMode::Create`).
    atomic_create: bool,
    /// What the store is, for logs.
    describe: String,
    key: Vec<u8>,
    ttl_secs: u64,
    /// `[artifacts] max_bytes`.
    pub max_bytes: u64,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts")
            .field("store", &self.describe)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Artifacts {
    /// Open the store and the signing key `config` names.
    pub fn open(config: &ArtifactsConfig, state_dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let opened = super::artifact_store::open(
            config.backend,
            config.dir.as_deref(),
            config.s3.as_ref(),
            state_dir,
        )?;
        let key_file = config
            .signing_key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("artifact-key"));
        let key = load_or_create_key(&key_file)
            .with_context(|| format!("artifact signing key {}", key_file.display()))?;
        Ok(Self {
            store: opened.store,
            atomic_create: opened.atomic_create,
            describe: opened.describe,
            key,
            ttl_secs: config.url_ttl_secs,
            max_bytes: config.max_bytes,
        })
    }

    /// Store `bytes` under their SHA-256 (once: the same bytes again are
    /// not written again); the reference.
    pub async fn put(&self, bytes: Bytes) -> Result<ArtifactRef, ApiError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size_bytes = i64::try_from(bytes.len()).map_err(ApiError::internal)?;
        let location = object_path(&sha256);
        if !self.atomic_create {
            // Content-addressed: an object already there holds these bytes.
            match self.store.head(&location).await {
                Ok(_) => return Ok(ArtifactRef { sha256, size_bytes }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(&e)),
            }
        }
        let opts = PutOptions {
            mode: if self.atomic_create {
                PutMode::Create
            } else {
                PutMode::Overwrite
            },
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from_bytes(bytes), opts)
            .await
        {
            // Content-addressed: an object already there holds these bytes.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {
                Ok(ArtifactRef { sha256, size_bytes })
            }
            Err(e) => Err(store_error(&e)),
        }
    }

    /// Whether the store answers: a read of a key nobody writes (not found
    /// is an answer). For the start-up log: a bucket that is missing or
    /// refuses the credentials shows there, not at the first upload.
    pub async fn probe(&self) -> Result<(), String> {
        match self.store.head(&ObjectPath::from("delta-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("{} ({e})", self.describe)),
        }
    }

    /// The bytes stored as `sha256`.
    async fn get(&self, sha256: &str) -> Result<Bytes, ApiError> {
        match self.store.get(&object_path(sha256)).await {
            Ok(got) => got.bytes().await.map_err(|e| store_error(&e)),
            Err(object_store::Error::NotFound { .. }) => Err(ApiError::not_found("artifact")),
            Err(e) => Err(store_error(&e)),
        }
    }

    fn signature(&self, sha256: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{sha256}\n{expires}").as_bytes());
        mac
    }

    /// The signed download path of `sha256`, valid until `now_secs + ttl`.
    pub fn signed_path(&self, sha256: &str, now_secs: i64) -> (String, i64) {
        let expires = now_secs.saturating_add(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX));
        let sig = hex::encode(self.signature(sha256, expires).finalize().into_bytes());
        (
            format!("/v1/artifacts/{sha256}?expires={expires}&sig={sig}"),
            expires,
        )
    }

    /// Refuse a download of `sha256` unless `sig` signs it with `expires`
    /// (403 `bad_signature`) and `expires` has not passed (410
    /// `url_expired`). The signature first: a forged `expires` is a bad
    /// signature, not an expiry.
    pub fn check(
        &self,
        sha256: &str,
        expires: Option<i64>,
        sig: Option<&str>,
        now_secs: i64,
    ) -> Result<(), ApiError> {
        let bad = || {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_signature",
                "the URL's signature is missing or wrong: ask for a new one",
            )
        };
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Err(bad());
        };
        let sig = hex::decode(sig).map_err(|_| bad())?;
        self.signature(sha256, expires)
            .verify_slice(&sig)
            .map_err(|_| bad())?;
        if expires <= now_secs {
            return Err(ApiError::new(
                StatusCode::GONE,
                "url_expired",
                "the URL has expired: ask GET /v1/submissions/{id}/artifact for a new one",
            ));
        }
        Ok(())
    }
}

/// The store failed (unreachable, credentials refused, ...): 503, the
/// caller may retry; the cause goes to the log, not to the caller.
fn store_error(e: &object_store::Error) -> ApiError {
    tracing::error!(error = %e, "artifact store");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "artifact_store_unavailable",
        "the artifact store did not answer; try again later",
    )
}

/// `ab/abcdef…`: a fan-out directory per first byte keeps directories small.
fn object_path(sha256: &str) -> ObjectPath {
    ObjectPath::from(format!("{}/{sha256}", &sha256[..2]))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn load_or_create_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::read(path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => anyhow::bail!("it holds fewer than 32 bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let key = hex::encode(rand::random::<[u8; 32]>()).into_bytes();
    // create_new: two replicas starting at once on one state directory
    // must end with one key; the loser reads the winner's.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(&key)?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The other writer may still be writing: wait for its 64 bytes.
            for _ in 0..50 {
                let got = std::fs::read(path)?;
                if got.len() >= 64 {
                    return Ok(got);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            anyhow::bail!("it stays shorter than 32 bytes")
        }
        Err(e) => Err(e.into()),
    }
}

/// Read an upload of at most `limit` bytes; 413 `artifact_too_large` past
/// it, with `Connection: close` (the rest of the body is never read, so the
/// connection cannot carry another request).
pub(super) async fn read_capped(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, Response> {
    use futures_util::StreamExt as _;
    let refuse = |e: ApiError| {
        let mut response = e.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let too_large = || {
        refuse(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "artifact_too_large",
            format!("an artifact may have at most {limit} bytes"),
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf =
        Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or_default());
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| refuse(ApiError::bad_request(format!("reading the body: {e}"))))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A signed URL's query.
#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct SignedQuery {
    /// Unix seconds after which the URL is refused.
    expires: Option<i64>,
    /// Hex HMAC-SHA256 of `{sha256}\n{expires}`.
    sig: Option<String>,
}

/// A redirect to an expiring signed URL of a submission's artifact (the
/// submitter's tenant; the business once it is approved).
#[utoipa::path(
    get,
    path = "/v1/submissions/{id}/artifact",
    tag = "bounties",
    params(("id" = String, Path, description = "The submission")),
    responses(
        (status = 307, description = "`Location`: the signed URL (`[artifacts] url_ttl_secs`)"),
        (status = 403, description = "`not_approved`: the business sees an artifact once it approved it"),
        (status = 404, description = "No such submission visible to this tenant, or `no_artifact`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn artifact_url(
    State(state): State<AppState>,
    principal: Principal,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    principal.require_role(crate::auth::Role::Member)?;
    principal.require_scope("bounties:read")?;
    let s = super::store::get_submission(&state.db, &principal.tenant_id, &id).await?;
    let Some(artifact) = s.artifact else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_artifact",
            "this submission has no artifact (its work is its payload)",
        ));
    };
    if s.tenant_id != principal.tenant_id && s.status != "approved" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_approved",
            "the business sees a submission's artifact once it has approved it",
        ));
    }
    let (location, expires) = state
        .artifacts
        .signed_path(&artifact.sha256, now_ms() / 1000);
    let mut response = (
        StatusCode::TEMPORARY_REDIRECT,
        axum::Json(serde_json::json!({ "url": location, "expires": expires })),
    )
        .into_response();
    let value = HeaderValue::from_str(&location).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::LOCATION, value);
    Ok(response)
}

/// An artifact's bytes, through a signed URL (no other authentication: the
/// signature is the permission).
#[utoipa::path(
    get,
    path = "/v1/artifacts/{sha256}",
    tag = "bounties",
    params(("sha256" = String, Path, description = "The artifact's SHA-256"), SignedQuery),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 403, description = "`bad_signature`"),
        (status = 404, description = "No such artifact"),
        (status = 410, description = "`url_expired`"),
        (status = 503, description = "`artifact_store_unavailable`: the store did not answer"),
    )
)]
pub(super) async fn download(
    State(state): State<AppState>,
    UrlPath(sha256): UrlPath<String>,
    Query(q): Query<SignedQuery>,
) -> Result<Response, ApiError> {
    if !is_sha256(&sha256) {
        return Err(ApiError::not_found("artifact"));
    }
    state
        .artifacts
        .check(&sha256, q.expires, q.sig.as_deref(), now_ms() / 1000)?;
    let bytes = state.artifacts.get(&sha256).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("private")),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts() -> (tempfile::TempDir, Artifacts) {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Artifacts::open(&ArtifactsConfig::default(), dir.path()).expect("open");
        (dir, a)
    }

    #[test]
    fn a_signed_path_checks_and_a_changed_one_does_not() {
        let (_dir, a) = artifacts();
        let sha = "ab".repeat(32);
        let (path, expires) = a.signed_path(&sha, 1_000);
        let sig = path.rsplit("sig=").next().expect("sig");
        assert!(a.check(&sha, Some(expires), Some(sig), 1_000).is_ok());
        let code = |r: Result<(), ApiError>| r.expect_err("refused").status.as_u16();
        assert_eq!(
            code(a.check(&sha, Some(expires + 1), Some(sig), 1_000)),
            403
        );
        assert_eq!(
            code(a.check(&"cd".repeat(32), Some(expires), Some(sig), 1_000)),
            403
        );
        assert_eq!(code(a.check(&sha, Some(expires), None, 1_000)), 403);
        assert_eq!(code(a.check(&sha, Some(expires), Some("zz"), 1_000)), 403);
        assert_eq!(code(a.check(&sha, Some(expires), Some(sig), expires)), 410);
    }

    #[tokio::test]
    async fn the_same_bytes_are_stored_once() {
        let (dir, a) = artifacts();
        let one = a.put(Bytes::from_static(b"hello")).await.expect("put");
        let two = a
            .put(Bytes::from_static(b"hello"))
            .await
            .expect("put again");
        assert_eq!(one, two);
        assert_eq!(one.size_bytes, 5);
        assert_eq!(&a.get(&one.sha256).await.expect("get")[..], b"hello");
        let files: Vec<_> = walk(&dir.path().join("artifacts"));
        assert_eq!(files.len(), 1, "{files:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
