//! Artifact submissions: an upload (size-capped, SHA-256 addressed, the
//! same bytes stored once), downloads through expiring signed URLs (a
//! tampered or expired one refused), and who may ask for a URL.

use sha2::{Digest as _, Sha256};

use super::*;

/// `[artifacts] max_bytes` in these tests.
const MAX: usize = 4096;

/// Bob uploads `bytes` as his agent's submission to bounty `id`.
async fn upload_artifact(m: &Market, id: &str, bytes: Vec<u8>, agent: bool) -> (StatusCode, Value) {
    let query = if agent {
        format!("?agent_id={}", m.agent)
    } else {
        String::new()
    };
    let resp = m
        .ctl
        .client
        .post(m.ctl.url(&format!("/v1/bounties/{id}/submissions{query}")))
        .bearer_auth(&m.bob.access)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `who` asks for submission `sub`'s artifact: the status and `Location`.
async fn artifact_url(m: &Market, who: &Session, sub: &str) -> (StatusCode, String, Value) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = client
        .get(m.ctl.url(&format!("/v1/submissions/{sub}/artifact")))
        .bearer_auth(&who.access)
        .send()
        .await
        .expect("artifact");
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, location, body)
}

/// GET `path` without credentials: the status, the bytes, the error code.
async fn download(m: &Market, path: &str) -> (StatusCode, Vec<u8>, String) {
    let resp = reqwest::get(m.ctl.url(path)).await.expect("download");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("bytes").to_vec();
    let code = serde_json::from_slice::<Value>(&bytes)
        .map(|v| s(&v["code"]))
        .unwrap_or_default();
    (status, bytes, code)
}

/// Files under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

both_with!(
    an_artifact_is_stored_by_hash_and_downloaded_through_a_signed_url,
    |c: &mut delta_control::config::ControlConfig| c.artifacts.max_bytes = MAX as u64,
    |ctl: Control| async move {
        let dir = ctl.state.config.state_dir.join("artifacts");
        artifact_lifecycle(ctl, dir).await;
    }
);

/// Upload, dedup, signed URLs and who may ask, with the store's objects
/// as files under `stored` (the local backend's directory, or the S3
/// server's bucket directory).
async fn artifact_lifecycle(ctl: Control, stored: std::path::PathBuf) {
    let m = market(ctl).await;
    let carol = m.ctl.register("carol").await;
    let bytes = b"the answer is 42\n".repeat(10);
    let sha = hex::encode(Sha256::digest(&bytes));
    // The verifier passes exactly this artifact: the payload an
    // artifact submission carries is its reference.
    let expected = json!({ "artifact": { "sha256": sha, "size_bytes": bytes.len() } });
    let id = m
        .open(1_000, 60_000, json!({ "spec": { "expected": expected } }))
        .await;

    let (status, e) = upload_artifact(&m, &id, bytes.clone(), false).await;
    assert_eq!(
        (status, s(&e["code"])),
        (StatusCode::UNPROCESSABLE_ENTITY, "missing_agent".into()),
        "{e}"
    );
    let (status, e) = upload_artifact(&m, &id, vec![7; MAX + 1], true).await;
    assert_eq!(
        (status, s(&e["code"])),
        (StatusCode::PAYLOAD_TOO_LARGE, "artifact_too_large".into()),
        "{e}"
    );

    let (status, sub) = upload_artifact(&m, &id, bytes.clone(), true).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["artifact"]["sha256"], sha.as_str(), "{sub}");
    assert_eq!(sub["payload"], expected);
    assert_eq!(sub["passed"], true, "{sub}");
    let sub_id = s(&sub["id"]);

    // The submitter: a redirect to a signed URL that serves the bytes.
    let (status, location, body) = artifact_url(&m, &m.bob, &sub_id).await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT, "{body}");
    assert!(
        location.starts_with(&format!("/v1/artifacts/{sha}?expires=")),
        "{location}"
    );
    assert_eq!(body["url"], location.as_str());
    let (status, got, _) = download(&m, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, bytes);

    // Tampered: another signature, a later expiry, another object.
    let mut forged = location.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == '0' { '1' } else { '0' });
    let (status, _, code) = download(&m, &forged).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "bad_signature")
    );
    let later = location.replace(
        &format!("expires={}", body["expires"]),
        &format!("expires={}", body["expires"].as_i64().unwrap_or(0) + 3600),
    );
    assert_ne!(later, location);
    let (status, _, code) = download(&m, &later).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "bad_signature")
    );
    let other = location.replace(&sha, &"0".repeat(64));
    let (status, _, code) = download(&m, &other).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "bad_signature")
    );
    let unsigned = format!("/v1/artifacts/{sha}");
    let (status, _, code) = download(&m, &unsigned).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "bad_signature")
    );
    // Expired: a URL the control plane signed an hour ago.
    let (old, _) = m
        .ctl
        .state
        .artifacts
        .signed_path(&sha, now_ms() / 1000 - 3600);
    let (status, _, code) = download(&m, &old).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "url_expired"));

    // The business before approving: 403; another tenant: 404.
    let (status, _, body) = artifact_url(&m, &m.alice, &sub_id).await;
    assert_eq!(
        (status, s(&body["code"])),
        (StatusCode::FORBIDDEN, "not_approved".into()),
        "{body}"
    );
    let (status, _, _) = artifact_url(&m, &carol, &sub_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A JSON submission has no artifact.
    let plain = m.open(100, 60_000, json!({})).await;
    let (status, json_sub) = m.submit(&plain, json!({ "answer": 42 })).await;
    assert_eq!(status, StatusCode::CREATED, "{json_sub}");
    assert_eq!(json_sub["artifact"], Value::Null);
    let (status, _, body) = artifact_url(&m, &m.bob, &s(&json_sub["id"])).await;
    assert_eq!(
        (status, s(&body["code"])),
        (StatusCode::NOT_FOUND, "no_artifact".into()),
        "{body}"
    );

    // The same bytes to another bounty: stored once.
    let second = m
        .open(500, 60_000, json!({ "spec": { "expected": expected } }))
        .await;
    let (status, again) = upload_artifact(&m, &second, bytes.clone(), true).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["artifact"]["sha256"], sha.as_str());
    let stored = files(&stored);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::read(&stored[0]).expect("stored"), bytes);

    // Approved: the business gets its URL, and the bytes.
    let (status, approved) = m
        .call(
            &m.alice,
            Method::POST,
            &format!("/v1/submissions/{sub_id}/approve"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    let (status, location, body) = artifact_url(&m, &m.alice, &sub_id).await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT, "{body}");
    let (status, got, _) = download(&m, &location).await;
    assert_eq!((status, got), (StatusCode::OK, bytes));
    let (status, _, _) = artifact_url(&m, &carol, &sub_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    m.conserved("an artifact approved").await;
}

/// A control plane whose artifacts go to `s3`'s bucket, with `secret` as
/// its secret access key (in a 0600 file).
async fn on_s3(
    dialect: common::Dialect,
    s3: &delta_test_servers::s3::S3Server,
    secret: &str,
) -> Control {
    let (endpoint, bucket) = (s3.endpoint.clone(), s3.bucket.clone());
    let secret = secret.to_owned();
    Control::start_with(dialect, move |c| {
        let file = c.state_dir.with_file_name("s3-secret");
        common::write_secret(&file, &secret);
        c.artifacts.max_bytes = MAX as u64;
        c.artifacts.backend = delta_control::bounties::ArtifactBackend::S3;
        c.artifacts.s3 = Some(delta_control::bounties::S3Config {
            endpoint: Some(endpoint),
            bucket,
            access_key_id: Some(delta_test_servers::s3::ACCESS_KEY_ID.to_owned()),
            secret_access_key_file: Some(file),
            ..Default::default()
        });
    })
    .await
}

/// The same life as on the local backend, with the objects in an S3
/// bucket (a real S3 server on loopback, checking SigV4): stored once
/// under their hash, served through the control plane's signed URLs.
async fn s3_bucket_keeps_artifacts(dialect: common::Dialect) {
    let root = tempfile::tempdir().expect("tempdir");
    let s3 = delta_test_servers::s3::S3Server::start(root.path(), "delta-artifacts")
        .await
        .expect("s3 server");
    let ctl = on_s3(dialect, &s3, delta_test_servers::s3::SECRET_ACCESS_KEY).await;
    assert!(
        !ctl.state.config.state_dir.join("artifacts").exists(),
        "the s3 backend keeps no local directory"
    );
    artifact_lifecycle(ctl, s3.bucket_dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_keeps_artifacts_sqlite() {
    s3_bucket_keeps_artifacts(common::Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_keeps_artifacts_postgres() {
    s3_bucket_keeps_artifacts(common::Dialect::Postgres).await;
}

/// A wrong secret key: the server refuses the signature, the upload
/// answers 503 `artifact_store_unavailable` (the store, not the caller,
/// is at fault) and nothing is stored or submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_s3_signature_is_a_503_and_stores_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let s3 = delta_test_servers::s3::S3Server::start(root.path(), "delta-artifacts")
        .await
        .expect("s3 server");
    let ctl = on_s3(common::Dialect::Sqlite, &s3, "not-the-secret-key-at-all").await;
    let m = market(ctl).await;
    let id = m.open(1_000, 60_000, json!({})).await;
    let (status, e) = upload_artifact(&m, &id, b"some work".to_vec(), true).await;
    assert_eq!(
        (status, s(&e["code"])),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "artifact_store_unavailable".into()
        ),
        "{e}"
    );
    assert!(files(&s3.bucket_dir()).is_empty());
    let (_, subs) = m
        .call(
            &m.alice,
            Method::GET,
            &format!("/v1/bounties/{id}/submissions"),
            None,
        )
        .await;
    assert_eq!(subs["items"], json!([]), "{subs}");
}
