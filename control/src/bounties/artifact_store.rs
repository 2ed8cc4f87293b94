//! Where artifacts are kept (`[artifacts] backend`): the local filesystem
//! (the default) or an S3-compatible bucket (`[artifacts.s3]`), both behind
//! `object_store`. What is stored and how it is served is the same for
//! both (`artifacts`); this module only opens the store.
//!
//! S3 credentials: `access_key_id` with `secret_access_key_file` (a file,
//! mode 0600 advised), or, when neither is set, `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` from the environment. Plain `http://` endpoints
//! are refused unless they are on loopback (a local test server, or a
//! proxy on the same host): credentials and artifacts would cross the
//! network unencrypted.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use serde::Deserialize;

/// `[artifacts] backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactBackend {
    /// Files under `[artifacts] dir`.
    #[default]
    Local,
    /// An S3-compatible bucket, `[artifacts.s3]`.
    S3,
}

/// `[artifacts.s3]`: an S3-compatible bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The service's URL (default: AWS's endpoint of `region`); requests
    /// are path-style (`<endpoint>/<bucket>/<key>`), which every
    /// S3-compatible server accepts. `http://` only on loopback.
    pub endpoint: Option<String>,
    /// The bucket (required; it must exist).
    pub bucket: String,
    /// Region used in the signature (default `us-east-1`).
    pub region: Option<String>,
    /// Key prefix inside the bucket (default none), e.g. `delta/artifacts`.
    pub prefix: Option<String>,
    /// Access key id; with `secret_access_key_file`. Both unset: the
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment variables.
    pub access_key_id: Option<String>,
    /// File holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
}

/// An opened store, and whether it can refuse to overwrite (`PutMode::Create`)
/// without the server supporting conditional writes.
pub(super) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    pub atomic_create: bool,
    pub describe: String,
}

/// Open the store `backend` names.
pub(super) fn open(
    backend: ArtifactBackend,
    dir: Option<&Path>,
    s3: Option<&S3Config>,
    state_dir: &Path,
) -> anyhow::Result<Opened> {
    match backend {
        ArtifactBackend::Local => {
            if s3.is_some() {
                bail!("[artifacts.s3] is set but backend is \"local\": say backend = \"s3\"");
            }
            let dir = dir.map_or_else(|| state_dir.join("artifacts"), Path::to_path_buf);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("artifact store {}", dir.display()))?;
            Ok(Opened {
                store: Arc::new(store),
                atomic_create: true,
                describe: format!("local {}", dir.display()),
            })
        }
        ArtifactBackend::S3 => {
            if dir.is_some() {
                bail!("[artifacts] dir is for the local backend; backend = \"s3\" keeps none");
            }
            let s3 = s3.context("backend = \"s3\" needs [artifacts.s3] (bucket, ...)")?;
            open_s3(s3)
        }
    }
}

fn open_s3(s3: &S3Config) -> anyhow::Result<Opened> {
    if s3.bucket.trim().is_empty() {
        bail!("[artifacts.s3] bucket is required");
    }
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
        .with_virtual_hosted_style_request(false);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(plain_http_allowed(endpoint)?);
    }
    match (&s3.access_key_id, &s3.secret_access_key_file) {
        (Some(id), Some(file)) => {
            let secret = delta_http::config::read_secret(file).with_context(|| {
                format!("[artifacts.s3] secret_access_key_file {}", file.display())
            })?;
            if let Some(problem) =
                delta_http::config::loose_permissions(file, "the S3 secret access key", "600")
            {
                tracing::warn!("{problem}");
            }
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        (None, None) => {
            let id = std::env::var("AWS_ACCESS_KEY_ID").ok();
            let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok();
            let (Some(id), Some(secret)) = (id, secret) else {
                bail!(
                    "[artifacts.s3] has no credentials: set access_key_id and \
                     secret_access_key_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                );
            };
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        _ => bail!("[artifacts.s3] access_key_id and secret_access_key_file go together"),
    }
    let store = builder.build().context("[artifacts.s3]")?;
    let describe = format!(
        "s3 {}/{}",
        s3.endpoint.as_deref().unwrap_or("aws"),
        s3.bucket
    );
    let store: Arc<dyn ObjectStore> = match s3.prefix.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => Arc::new(object_store::prefix::PrefixStore::new(
            store,
            p.trim_matches('/'),
        )),
        _ => Arc::new(store),
    };
    Ok(Opened {
        store,
        // Not every S3-compatible server honours `If-None-Match: *`; the
        // bytes are content-addressed, so the same key is the same bytes.
        atomic_create: false,
        describe,
    })
}

/// Whether `endpoint` may be plain HTTP: only on loopback. An `https://`
/// endpoint needs nothing; anything else is refused.
fn plain_http_allowed(endpoint: &str) -> anyhow::Result<bool> {
    let url = reqwest::Url::parse(endpoint)
        .with_context(|| format!("[artifacts.s3] endpoint {endpoint:?} is not a URL"))?;
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            // `host_str` keeps an IPv6 literal's brackets.
            let host = url.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(true)
            } else {
                bail!(
                    "[artifacts.s3] endpoint {endpoint} is plain http off loopback: \
                     credentials and artifacts would cross the network unencrypted (use https)"
                )
            }
        }
        other => bail!("[artifacts.s3] endpoint {endpoint}: scheme {other} is not http(s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(!plain_http_allowed("https://s3.example.com").expect("https"));
        for ok in [
            "http://127.0.0.1:9000",
            "http://127.1.2.3",
            "http://[::1]:9000",
            "http://localhost:9000",
        ] {
            assert!(plain_http_allowed(ok).expect(ok), "{ok}");
        }
        for refused in [
            "http://10.0.0.5:9000",
            "http://s3.example.com",
            "http://[::ffff:7f00:1]",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(plain_http_allowed(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn s3_needs_a_bucket_and_both_credential_halves() {
        let s3 = S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            bucket: "b".into(),
            access_key_id: Some("id".into()),
            ..S3Config::default()
        };
        let err = |c: &S3Config| {
            open(
                ArtifactBackend::S3,
                None,
                Some(c),
                Path::new("/nonexistent"),
            )
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
        };
        assert!(err(&s3).contains("go together"), "{}", err(&s3));
        let no_bucket = S3Config {
            bucket: " ".into(),
            ..s3.clone()
        };
        assert!(err(&no_bucket).contains("bucket is required"));
        let plain = S3Config {
            endpoint: Some("http://192.0.2.1:9000".into()),
            ..s3
        };
        assert!(err(&plain).contains("off loopback"), "{}", err(&plain));
        let missing = open(ArtifactBackend::S3, None, None, Path::new("/nonexistent"));
        assert!(missing.is_err());
    }
}
