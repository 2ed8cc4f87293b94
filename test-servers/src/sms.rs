//! A Twilio-compatible SMS API on `127.0.0.1:0` that records every request.
//!
//! Serves `POST /2010-04-01/Accounts/{sid}/Messages.json` with a form body
//! (`To`, `From`, `Body`, ...). It checks HTTP basic auth against the
//! configured account SID and auth token (`401` with a Twilio-style error
//! otherwise, and a `404` when the path's SID is not the account's), records
//! the form fields of every authenticated request, and answers `201` with a
//! JSON message resource whose `sid` is `SM` + 32 hex digits. Told to fail
//! ([`SmsServer::fail_with`]), it answers that status with a Twilio-style
//! error body instead (the request is still recorded).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use delta_test_servers::sms::SmsServer;
//! let server = SmsServer::start("AC123", "token").await?;
//! // base_url for the client: server.base_url()
//! let req = &server.requests()[0];
//! assert_eq!(req.field("To"), Some("+14155550100"));
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Form, Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use tokio::task::JoinHandle;

/// One authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRequest {
    /// Account SID from the path.
    pub account_sid: String,
    /// Basic-auth user name sent.
    pub username: String,
    /// Basic-auth password sent.
    pub password: String,
    /// Form fields in the order sent.
    pub fields: Vec<(String, String)>,
    /// The `sid` answered (`None` when told to fail).
    pub sid: Option<String>,
}

impl SmsRequest {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<SmsRequest>,
    unauthorized: usize,
    fail_with: Option<u16>,
}

#[derive(Debug)]
struct Shared {
    account_sid: String,
    auth_token: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running Twilio-compatible API. See the module docs.
#[derive(Debug)]
pub struct SmsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for SmsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmsServer {
    /// Bind `127.0.0.1:0`, accepting only `account_sid:auth_token`.
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(create))
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

    /// `http://127.0.0.1:<port>`: the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every authenticated request so far, oldest first.
    pub fn requests(&self) -> Vec<SmsRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests refused for bad or missing credentials.
    pub fn unauthorized(&self) -> usize {
        self.shared.lock().unauthorized
    }

    /// Answer authenticated requests with this HTTP status (e.g. 400, 500)
    /// and a Twilio-style error body; `None` succeeds again.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.lock().fail_with = status;
    }
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

async fn create(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let Some((username, password)) =
        basic_auth(&headers).filter(|(u, p)| *u == shared.account_sid && *p == shared.auth_token)
    else {
        shared.lock().unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    };
    if sid != shared.account_sid {
        return error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        );
    }
    let mut inner = shared.lock();
    let mut request = SmsRequest {
        account_sid: sid.clone(),
        username,
        password,
        fields,
        sid: None,
    };
    if let Some(code) = inner.fail_with {
        inner.requests.push(request);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(
            status,
            21610,
            "Message cannot be sent (test server told to fail)",
        );
    }
    let message_sid = format!("SM{:032x}", inner.requests.len() + 1);
    request.sid = Some(message_sid.clone());
    let body = json!({
        "sid": message_sid,
        "account_sid": sid,
        "to": request.field("To"),
        "from": request.field("From"),
        "body": request.field("Body"),
        "status": "queued",
        "num_segments": "1",
        "uri": format!("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json"),
    });
    inner.requests.push(request);
    (StatusCode::CREATED, axum::Json(body)).into_response()
}
