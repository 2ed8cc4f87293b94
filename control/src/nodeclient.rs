//! A typed client for the node API (`delta node`, see `node/src/api.rs`).
//!
//! Every call presents the called node's own token (derived from
//! `node_api_secret_file`, see `nodeauth::node_api_token`), has its own timeout, and is
//! counted in `delta_control_node_calls_total{op, result}` with `result` one
//! of `ok`, `refused` (a 4xx), `error` (a 5xx or an answer that is not the
//! node API's) and `unreachable` (connecting, sending or the timeout).
//! Failures become a [`NodeCallError`], which [`NodeCallError::to_api`] turns
//! into the answer a control plane client gets.

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use delta_http::ApiError;
use delta_node_api::{AgentRecord, ComponentRecord, RunRecord, RunStatus};
use serde::Deserialize;
use serde::Serialize;
use serde_json::{Value, json};

use crate::app::AppState;

/// Timeout of calls that change or read a deployment.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a component upload (the node compiles it before answering).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Added to an agent's own deadline for a run with `?wait=true`: the run
/// may wait in the node's queue first.
pub const WAIT_MARGIN: Duration = Duration::from_secs(30);
/// Deadline assumed for an agent that sets none (the node's largest
/// default deadline, so a waiting call is never cut short).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read from a node. The largest legitimate ones are an
/// agent list (deployments carry their templates, up to 64 KiB each) and a
/// run with its output and logs (both capped by the node); a node that
/// sends more is broken or hostile and must not exhaust the control plane's
/// memory.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Largest error answer read from a node (only its code and message are
/// kept).
pub const MAX_ERROR_BYTES: usize = 64 << 10;

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeCallError {
    /// No answer: connection refused or reset.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The node took the request but did not answer in time: it may still
    /// act on it (a run may still finish), so this is not retryable.
    #[error("node did not answer in time: {0}")]
    TimedOut(String),
    /// The node answered with an error.
    #[error("node answered {status} {code}: {message}")]
    Refused {
        /// Its status.
        status: StatusCode,
        /// Its error code (`not_found`, `agent_paused`, `queue_full`, ...).
        code: String,
        /// Its message.
        message: String,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// Its `details`, if any.
        details: Option<Value>,
    },
    /// The answer is not what the node API promises.
    #[error("unexpected answer from the node: {0}")]
    Protocol(String),
}

impl NodeCallError {
    /// Whether the node did not answer at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::TimedOut(_))
    }

    /// Whether the node could not take the request now and surely did not
    /// act on it: unreachable (never delivered), or 429 / 503 (full queue,
    /// draining). A time-out is not: the node may have acted.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::SERVICE_UNAVAILABLE
            }
            Self::TimedOut(_) | Self::Protocol(_) => false,
        }
    }

    /// Whether the node answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// Whether the node answered 422 (the component or spec is invalid).
    pub fn is_unprocessable(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if *status == StatusCode::UNPROCESSABLE_ENTITY)
    }

    /// The answer for the control plane's client: the node's 404, 409, 422
    /// and 429 go through (with `Retry-After`); a node that cannot be
    /// reached or is draining is 503 `node_unavailable`; anything else is
    /// the node's fault or the fleet's configuration (502 `node_error`).
    pub fn to_api(&self) -> ApiError {
        match self {
            Self::Unreachable(_) => node_unavailable(),
            // No Retry-After: retrying could do the work twice.
            Self::TimedOut(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "node_timeout",
                "the node did not answer in time; the operation may still complete \
                 (a run keeps going: its usage is still reported)",
            ),
            Self::Refused {
                status,
                code,
                message,
                retry_after,
                details,
            } => match *status {
                StatusCode::NOT_FOUND
                | StatusCode::CONFLICT
                | StatusCode::UNPROCESSABLE_ENTITY
                | StatusCode::TOO_MANY_REQUESTS => {
                    let mut e = ApiError::new(*status, known_code(code), message.clone());
                    e.retry_after = *retry_after;
                    e.details = details.clone();
                    e
                }
                StatusCode::SERVICE_UNAVAILABLE => node_unavailable(),
                _ => {
                    tracing::error!(%status, code, message, "a node refused a call");
                    node_error()
                }
            },
            Self::Protocol(message) => {
                tracing::error!(message, "a node answered outside its API");
                node_error()
            }
        }
    }
}

/// 503 `node_unavailable` with `Retry-After: 1`.
pub fn node_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "node_unavailable",
        "the node hosting this agent is unavailable; retry shortly",
    )
    .retry_after(Duration::from_secs(1))
}

fn node_error() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "node_error",
        "the node failed this request (see the control plane's log)",
    )
}

/// `ApiError::code` is `&'static str`: the node's codes that pass through
/// are spelled here; anything else becomes `node_error`.
fn known_code(code: &str) -> &'static str {
    match code {
        "not_found" => "not_found",
        "agent_paused" => "agent_paused",
        "queue_full" => "queue_full",
        "invalid" => "invalid",
        "invalid_component" => "invalid_component",
        "invalid_json" => "invalid_json",
        "tenant_mismatch" => "tenant_mismatch",
        "in_use" => "in_use",
        "run_exists" => "run_exists",
        "payload_too_large" => "payload_too_large",
        _ => "node_error",
    }
}

/// What `POST /v1/agents/{id}/runs` answered.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// 202: accepted, not finished.
    Queued {
        /// The node's run id.
        id: String,
        /// Its status (`queued`).
        status: RunStatus,
    },
    /// 200: the finished run (`?wait=true`).
    Finished(Box<RunRecord>),
}

/// The body of `PUT /v1/agents/{id}` (the node's `AgentSpec`; limits and
/// grants are the control plane's JSON, which has the same shape).
#[derive(Debug, Serialize)]
pub struct DeploySpec<'a> {
    /// The owner.
    pub tenant_id: &'a str,
    /// Component sha256.
    pub component: &'a str,
    /// `{fuel, memory_bytes, timeout_ms}`.
    pub limits: &'a Value,
    /// `{models, channels, templates, recipients}`.
    pub grants: &'a Value,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

/// A node to call: its id (which picks the token presented) and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Node id.
    pub id: String,
    /// Base URL.
    pub url: String,
}

/// Calls to nodes, over the state's HTTP client, each with the node's own
/// token ([`AppState::node_api_token`]).
pub struct NodeClient<'a> {
    state: &'a AppState,
}

impl<'a> NodeClient<'a> {
    /// A client over `state`.
    pub fn new(state: &'a AppState) -> Self {
        Self { state }
    }

    fn request(
        &self,
        method: reqwest::Method,
        node: &Target,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", node.url.trim_end_matches('/'));
        let req = self.state.http.request(method, url);
        // The node's own token: another node's would be refused.
        match self.state.node_api_token(&node.id) {
            Some(token) => req.bearer_auth(token),
            // Without `node_api_secret_file` the control plane has nothing
            // to present; the node answers 401 and the call fails loudly.
            None => req,
        }
    }

    fn count(&self, op: &str, result: &str) {
        self.state
            .metrics
            .node_calls
            .with_label_values(&[op, result])
            .inc();
    }

    /// Send and sort the answer: a 2xx response, or the error.
    async fn send(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, NodeCallError> {
        let req = match timeout {
            Some(t) => req.timeout(t),
            None => req,
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => {
                self.count(op, "timeout");
                return Err(NodeCallError::TimedOut(without_url(&e)));
            }
            Err(e) => {
                self.count(op, "unreachable");
                return Err(NodeCallError::Unreachable(without_url(&e)));
            }
        };
        let status = resp.status();
        if status.is_success() {
            self.count(op, "ok");
            return Ok(resp);
        }
        self.count(
            op,
            if status.is_client_error() {
                "refused"
            } else {
                "error"
            },
        );
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = delta_http::client::read_capped(resp, MAX_ERROR_BYTES)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        Err(NodeCallError::Refused {
            status,
            code: text("code").unwrap_or_else(|| "node_error".into()),
            message: text("message").unwrap_or_else(|| format!("node answered {status}")),
            retry_after,
            details: body.get("details").cloned(),
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<T, NodeCallError> {
        let resp = self.send(op, req, timeout).await?;
        let body = read_answer(op, resp).await?;
        serde_json::from_slice(&body).map_err(|e| NodeCallError::Protocol(format!("{op}: {e}")))
    }

    /// `PUT /v1/components/{sha256}`, compiled on behalf of `tenant`.
    pub async fn put_component(
        &self,
        node: &Target,
        sha256: &str,
        tenant: &str,
        bytes: Bytes,
    ) -> Result<ComponentRecord, NodeCallError> {
        let req = self
            .request(
                reqwest::Method::PUT,
                node,
                &format!("/v1/components/{sha256}"),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .header(delta_node_api::TENANT_HEADER, tenant)
            .body(bytes);
        self.json("put_component", req, Some(UPLOAD_TIMEOUT)).await
    }

    /// `PUT /v1/agents/{id}` (201 deployed, 200 updated; pause state kept).
    pub async fn put_agent(
        &self,
        node: &Target,
        id: &str,
        spec: &DeploySpec<'_>,
    ) -> Result<AgentRecord, NodeCallError> {
        let req = self
            .request(reqwest::Method::PUT, node, &format!("/v1/agents/{id}"))
            .json(spec);
        self.json("put_agent", req, Some(CALL_TIMEOUT)).await
    }

    /// `GET /v1/agents/{id}`.
    pub async fn get_agent(&self, node: &Target, id: &str) -> Result<AgentRecord, NodeCallError> {
        let req = self.request(reqwest::Method::GET, node, &format!("/v1/agents/{id}"));
        self.json("get_agent", req, Some(CALL_TIMEOUT)).await
    }

    /// `GET /v1/agents`: every deployment on the node.
    pub async fn list_agents(&self, node: &Target) -> Result<Vec<AgentRecord>, NodeCallError> {
        let req = self.request(reqwest::Method::GET, node, "/v1/agents");
        let items: Items<AgentRecord> = self.json("list_agents", req, Some(CALL_TIMEOUT)).await?;
        Ok(items.items)
    }

    /// `DELETE /v1/agents/{id}` (cancels its runs).
    pub async fn delete_agent(&self, node: &Target, id: &str) -> Result<(), NodeCallError> {
        let req = self.request(reqwest::Method::DELETE, node, &format!("/v1/agents/{id}"));
        self.send("delete_agent", req, Some(CALL_TIMEOUT))
            .await
            .map(drop)
    }

    /// `POST /v1/agents/{id}/pause` or `/resume`.
    pub async fn set_paused(
        &self,
        node: &Target,
        id: &str,
        paused: bool,
    ) -> Result<AgentRecord, NodeCallError> {
        let (op, verb) = if paused {
            ("pause_agent", "pause")
        } else {
            ("resume_agent", "resume")
        };
        let req = self.request(
            reqwest::Method::POST,
            node,
            &format!("/v1/agents/{id}/{verb}"),
        );
        self.json(op, req, Some(CALL_TIMEOUT)).await
    }

    /// `POST /v1/agents/{id}/runs[?wait=true]` with `{"input": input}`.
    /// `run_timeout` is the agent's deadline: a waiting call allows it plus
    /// [`WAIT_MARGIN`].
    pub async fn create_run(
        &self,
        node: &Target,
        agent_id: &str,
        run_id: &str,
        input: &Value,
        wait: bool,
        run_timeout: Duration,
    ) -> Result<Submitted, NodeCallError> {
        let path = format!(
            "/v1/agents/{agent_id}/runs{}",
            if wait { "?wait=true" } else { "" }
        );
        let req = self
            .request(reqwest::Method::POST, node, &path)
            .json(&json!({ "input": input, "id": run_id }));
        let timeout = if wait {
            run_timeout.saturating_add(WAIT_MARGIN)
        } else {
            CALL_TIMEOUT
        };
        let resp = self.send("create_run", req, Some(timeout)).await?;
        let status = resp.status();
        let body = read_answer("create_run", resp).await?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| NodeCallError::Protocol(format!("create_run: {e}")))?;
        if status == StatusCode::ACCEPTED {
            #[derive(Deserialize)]
            struct Accepted {
                id: String,
                status: RunStatus,
            }
            let a: Accepted = serde_json::from_value(body)
                .map_err(|e| NodeCallError::Protocol(format!("create_run (202): {e}")))?;
            Ok(Submitted::Queued {
                id: a.id,
                status: a.status,
            })
        } else {
            let record: RunRecord = serde_json::from_value(body)
                .map_err(|e| NodeCallError::Protocol(format!("create_run (200): {e}")))?;
            Ok(Submitted::Finished(Box::new(record)))
        }
    }

    /// `POST /v1/verifications`: run a verifier once; `run_timeout` is its
    /// deadline (the call allows it plus [`WAIT_MARGIN`]).
    pub async fn verify(
        &self,
        node: &Target,
        req: &delta_node_api::VerificationRequest,
        run_timeout: Duration,
    ) -> Result<delta_node_api::VerificationResult, NodeCallError> {
        let http = self
            .request(reqwest::Method::POST, node, "/v1/verifications")
            .json(req);
        self.json(
            "verify",
            http,
            Some(run_timeout.saturating_add(WAIT_MARGIN)),
        )
        .await
    }

    /// `GET /v1/runs/{id}`.
    pub async fn get_run(&self, node: &Target, id: &str) -> Result<RunRecord, NodeCallError> {
        let req = self.request(reqwest::Method::GET, node, &format!("/v1/runs/{id}"));
        self.json("get_run", req, Some(CALL_TIMEOUT)).await
    }

    /// `POST /v1/runs/{id}/cancel`: the run as the node has it (still
    /// queued or running while it stops, or already finished).
    pub async fn cancel_run(&self, node: &Target, id: &str) -> Result<RunRecord, NodeCallError> {
        let req = self.request(
            reqwest::Method::POST,
            node,
            &format!("/v1/runs/{id}/cancel"),
        );
        self.json("cancel_run", req, Some(CALL_TIMEOUT)).await
    }

    /// `GET /v1/runs/{id}/logs`: the server-sent event stream, unread (no
    /// overall timeout: it lasts as long as the run).
    pub async fn run_logs(
        &self,
        node: &Target,
        id: &str,
    ) -> Result<reqwest::Response, NodeCallError> {
        let req = self
            .request(reqwest::Method::GET, node, &format!("/v1/runs/{id}/logs"))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.send("run_logs", req, None).await
    }
}

/// A successful answer's body, at most [`MAX_ANSWER_BYTES`].
async fn read_answer(op: &str, resp: reqwest::Response) -> Result<Bytes, NodeCallError> {
    delta_http::client::read_capped(resp, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| NodeCallError::Protocol(format!("{op}: {e}")))
}

/// A transport error's account without the URL (node addresses are the
/// operator's business, and the account may reach a log a tenant sees).
fn without_url(e: &reqwest::Error) -> String {
    let mut account = e.to_string();
    if let Some(url) = e.url() {
        account = account.replace(url.as_str(), "<node>");
    }
    if e.is_timeout() {
        format!("timed out: {account}")
    } else {
        account
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_timeout_is_a_504_without_a_retry_hint() {
        // Retrying a run the node may still be executing would run it twice.
        let e = NodeCallError::TimedOut("slow".into());
        assert!(e.is_unreachable(), "placement may try another node");
        let answer = e.to_api();
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(answer.code, "node_timeout");
        assert!(answer.retry_after.is_none());
    }

    #[test]
    fn node_errors_map_to_client_answers() {
        let refused = |status: StatusCode, code: &str| NodeCallError::Refused {
            status,
            code: code.into(),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(3)),
            details: None,
        };
        let e = refused(StatusCode::TOO_MANY_REQUESTS, "queue_full").to_api();
        assert_eq!(
            (e.status, e.code, e.retry_after),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                Some(Duration::from_secs(3))
            )
        );
        let e = refused(StatusCode::CONFLICT, "agent_paused").to_api();
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "agent_paused"));
        let e = refused(StatusCode::CONFLICT, "something_new").to_api();
        assert_eq!(e.code, "node_error");
        let e = refused(StatusCode::UNAUTHORIZED, "unauthorized").to_api();
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        let e = refused(StatusCode::SERVICE_UNAVAILABLE, "draining").to_api();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "node_unavailable")
        );
        let e = NodeCallError::Unreachable("refused".into()).to_api();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.retry_after.is_some());
        assert!(refused(StatusCode::NOT_FOUND, "not_found").is_not_found());
        assert!(refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid").is_unprocessable());
    }
}
