//! An S3-compatible object store on loopback: `s3s` speaks the S3 REST
//! protocol and checks every request's AWS Signature V4 against one
//! access key, `s3s-fs` keeps each bucket as a directory under `root`
//! (an object `k` of bucket `b` is the file `root/b/k`; its metadata are
//! dot-files in `root`). For the control plane's S3 artifact backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// The access key id every test server accepts.
pub const ACCESS_KEY_ID: &str = "DELTATESTACCESSKEY";
/// Its secret key.
pub const SECRET_ACCESS_KEY: &str = "delta-test-secret-access-key-0123456789";

/// A running S3 server; stops when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made at start.
    pub bucket: String,
    /// Where its objects are: `root/<bucket>/<key>`.
    pub root: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Serve `root` (created if missing) with one empty bucket `bucket`.
    pub async fn start(root: &Path, bucket: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join(bucket))?;
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut service = S3ServiceBuilder::new(fs);
        service.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        let service = service.build();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            endpoint: format!("http://{addr}"),
            bucket: bucket.to_owned(),
            root: root.to_owned(),
            task,
        })
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(&self.bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
