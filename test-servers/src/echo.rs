//! An HTTP server that records every request it receives (method, path,
//! headers, body) and answers `200` with `{"ok": true, "path": ...}`; a
//! request to `/redirect` answers `302` to the `Location` given with
//! [`EchoServer::redirect_to`]; `/big` answers a body of the size given
//! with [`EchoServer::big_body`]. For tests of agents' outbound HTTP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    redirect_to: String,
    big: usize,
}

type Shared = Arc<Mutex<Inner>>;

/// A running recording server. See the module docs.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    /// Bind `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let shared: Shared = Arc::default();
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared).received.clone()
    }

    /// Where `/redirect` sends the client.
    pub fn redirect_to(&self, location: &str) {
        lock(&self.shared).redirect_to = location.to_owned();
    }

    /// The size of `/big`'s body.
    pub fn big_body(&self, bytes: usize) {
        lock(&self.shared).big = bytes;
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut inner = lock(&shared);
    inner.received.push(Received {
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    });
    match uri.path() {
        "/redirect" => (
            StatusCode::FOUND,
            [(header::LOCATION, inner.redirect_to.clone())],
        )
            .into_response(),
        "/big" => vec![b'x'; inner.big].into_response(),
        _ => axum::Json(serde_json::json!({ "ok": true, "path": path })).into_response(),
    }
}
