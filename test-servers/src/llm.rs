//! A scripted loopback LLM provider speaking both the Anthropic Messages API
//! (`POST /v1/messages`) and the OpenAI-compatible Chat Completions API
//! (`POST /v1/chat/completions`).
//!
//! Tests queue one [`Reply`] per expected request with
//! [`ScriptedLlm::push`]; each request to either API path takes the next one
//! (or the fallback, [`Reply::ok`]`("ok", 1, 1)` unless changed with
//! [`ScriptedLlm::set_fallback`]) and is answered in the shape of the
//! protocol its path names. Every request, to any path, is recorded
//! ([`RecordedRequest`]: path, headers, JSON body) for assertions; paths
//! other than the two APIs answer 404 without consuming the script.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use delta_test_servers::llm::{Reply, ScriptedLlm};
//! let server = ScriptedLlm::start().await?;
//! server.push(Reply::rate_limited(Some("1")));
//! server.push(Reply::ok("hello", 12, 3));
//! // point a provider at server.base_url(), make calls, then:
//! assert_eq!(server.request_count(), 2);
//! # Ok(()) }
//! ```
//!
//! The server binds `127.0.0.1:0` and stops when the [`ScriptedLlm`] is
//! dropped.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Why generation ended, in protocol-neutral terms (mapped to `end_turn` /
/// `max_tokens` for Anthropic and `stop` / `length` for OpenAI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Natural end.
    Stop,
    /// The token limit was reached.
    Length,
    /// A provider-specific reason (`refusal` / `content_filter`).
    Other,
}

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with a well-formed completion.
    Ok {
        /// Generated text.
        text: String,
        /// `(input, output)` tokens; `None` leaves `usage` out of the body.
        usage: Option<(u64, u64)>,
        /// Why generation ended.
        finish: Finish,
    },
    /// 429, with this `Retry-After` header value when `Some` (seconds or an
    /// HTTP-date, sent verbatim).
    RateLimited {
        /// The header value.
        retry_after: Option<String>,
    },
    /// Any status with this body (e.g. 500, or 401 echoing a key).
    Status {
        /// HTTP status code.
        code: u16,
        /// Response body, sent as `application/json`.
        body: String,
    },
    /// Wait `delay` before answering with `then` (longer than the client's
    /// timeout to test timeouts; the wait is abandoned if the client leaves).
    Slow {
        /// How long to wait before answering.
        delay: Duration,
        /// The answer after the wait.
        then: Box<Reply>,
    },
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with a valid completion whose text makes the body at least
    /// `bytes` long (sent with a `Content-Length`).
    Huge {
        /// Minimum body size in bytes.
        bytes: usize,
    },
}

impl Reply {
    /// 200 with `text`, `input` and `output` tokens, finish `Stop`.
    pub fn ok(text: impl Into<String>, input: u64, output: u64) -> Self {
        Self::Ok {
            text: text.into(),
            usage: Some((input, output)),
            finish: Finish::Stop,
        }
    }

    /// 200 with `text` and no `usage` field.
    pub fn ok_without_usage(text: impl Into<String>) -> Self {
        Self::Ok {
            text: text.into(),
            usage: None,
            finish: Finish::Stop,
        }
    }

    /// Same reply with another finish reason (only changes [`Reply::Ok`]).
    pub fn with_finish(mut self, finish: Finish) -> Self {
        if let Self::Ok { finish: f, .. } = &mut self {
            *f = finish;
        }
        self
    }

    /// 429 with an optional `Retry-After` value.
    pub fn rate_limited(retry_after: Option<&str>) -> Self {
        Self::RateLimited {
            retry_after: retry_after.map(str::to_owned),
        }
    }

    /// 500 with a small JSON error body.
    pub fn server_error() -> Self {
        Self::status(500, r#"{"error":{"message":"internal error"}}"#)
    }

    /// `code` with `body`.
    pub fn status(code: u16, body: impl Into<String>) -> Self {
        Self::Status {
            code,
            body: body.into(),
        }
    }

    /// Wait `delay`, then answer `then`.
    pub fn slow(delay: Duration, then: Reply) -> Self {
        Self::Slow {
            delay,
            then: Box::new(then),
        }
    }

    /// 200 with a non-JSON body.
    pub fn malformed() -> Self {
        Self::Malformed
    }

    /// 200 with a valid body of at least `bytes` bytes.
    pub fn huge(bytes: usize) -> Self {
        Self::Huge { bytes }
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Request path, e.g. `/v1/messages`.
    pub path: String,
    /// Headers by lower-case name (repeated headers joined with `, `; values
    /// that are not UTF-8 are replaced lossily).
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The protocol a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Anthropic,
    OpenAi,
}

#[derive(Debug)]
struct Script {
    replies: VecDeque<Reply>,
    fallback: Reply,
    requests: Vec<RecordedRequest>,
}

type Shared = Arc<Mutex<Script>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Script> {
    // Test helper state; a panicking test thread must not hide the script
    // from the others.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running scripted provider. Dropping it stops the server.
#[derive(Debug)]
pub struct ScriptedLlm {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedLlm {
    /// Bind `127.0.0.1:0` and serve on the current tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let shared: Shared = Arc::new(Mutex::new(Script {
            replies: VecDeque::new(),
            fallback: Reply::ok("ok", 1, 1),
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Errors end the server; the test then sees connection failures.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to use as a provider's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue the reply for the next unanswered request.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared).replies.push_back(reply);
    }

    /// Queue several replies in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared).replies.extend(replies);
    }

    /// The reply used once the queue is empty.
    pub fn set_fallback(&self, reply: Reply) {
        lock(&self.shared).fallback = reply;
    }

    /// Replies still queued.
    pub fn pending(&self) -> usize {
        lock(&self.shared).replies.len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared).requests.len()
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut recorded = BTreeMap::<String, String>::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        recorded
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let protocol = match uri.path() {
        "/v1/messages" => Some(Protocol::Anthropic),
        "/v1/chat/completions" => Some(Protocol::OpenAi),
        _ => None,
    };
    let model = json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    // The lock is scoped to this block: never held across the reply's wait.
    let reply = {
        let mut script = lock(&shared);
        script.requests.push(RecordedRequest {
            path: uri.path().to_owned(),
            headers: recorded,
            body: json,
        });
        // Unknown paths do not consume the script.
        protocol.map(|_| {
            script
                .replies
                .pop_front()
                .unwrap_or_else(|| script.fallback.clone())
        })
    };
    let (Some(protocol), Some(reply)) = (protocol, reply) else {
        return (StatusCode::NOT_FOUND, "no such API").into_response();
    };
    respond(protocol, &model, reply).await
}

async fn respond(protocol: Protocol, model: &str, mut reply: Reply) -> Response {
    // Unwrap nested `Slow`s iteratively (an async fn cannot recurse directly).
    while let Reply::Slow { delay, then } = reply {
        tokio::time::sleep(delay).await;
        reply = *then;
    }
    match reply {
        Reply::Ok {
            text,
            usage,
            finish,
        } => json_response(
            StatusCode::OK,
            completion(protocol, model, &text, usage, finish).to_string(),
        ),
        Reply::RateLimited { retry_after } => {
            let body = r#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#;
            let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, body.to_owned());
            if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, value);
            }
            resp
        }
        Reply::Status { code, body } => json_response(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        ),
        Reply::Malformed => {
            json_response(StatusCode::OK, r#"{"content": [ {"type": "te"#.to_owned())
        }
        Reply::Huge { bytes } => {
            let text = "x".repeat(bytes);
            let body = completion(protocol, model, &text, Some((1, 1)), Finish::Stop);
            json_response(StatusCode::OK, body.to_string())
        }
        Reply::Slow { .. } => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A completion body in the protocol's shape.
fn completion(
    protocol: Protocol,
    model: &str,
    text: &str,
    usage: Option<(u64, u64)>,
    finish: Finish,
) -> Value {
    match protocol {
        Protocol::Anthropic => {
            let stop = match finish {
                Finish::Stop => "end_turn",
                Finish::Length => "max_tokens",
                Finish::Other => "refusal",
            };
            let mut body = json!({
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop,
                "stop_sequence": null,
            });
            if let Some((input, output)) = usage {
                body["usage"] = json!({"input_tokens": input, "output_tokens": output});
            }
            body
        }
        Protocol::OpenAi => {
            let reason = match finish {
                Finish::Stop => "stop",
                Finish::Length => "length",
                Finish::Other => "content_filter",
            };
            let mut body = json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reason,
                }],
            });
            if let Some((input, output)) = usage {
                body["usage"] = json!({
                    "prompt_tokens": input,
                    "completion_tokens": output,
                    "total_tokens": input + output,
                });
            }
            body
        }
    }
}
