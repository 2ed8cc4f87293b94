//! Outbound HTTP to hosts on the agent's allow-list (`delta:agent/http`).
//!
//! The agent needs the `http` grant naming the hosts (`api.example.com`,
//! `*.example.com`, `http://host:8080`). A header value may hold
//! `{{secret:NAME}}`: the host fills in the tenant's secret (listed in the
//! grant) after the request leaves the guest, so the agent never sees it.
//! Redirects are returned, not followed.
//!
//! ```no_run
//! use delta_sdk::http::{self, Request};
//!
//! # fn main() -> Result<(), delta_sdk::AgentError> {
//! let answer = Request::get("https://api.example.com/v1/items")
//!     .header("authorization", "Bearer {{secret:EXAMPLE_TOKEN}}")
//!     .send()?;
//! if answer.status == 200 {
//!     delta_sdk::info!("{} bytes", answer.body.len());
//! }
//! let _ = http::Request::post("https://api.example.com/v1/items", b"{}".to_vec()).send()?;
//! # Ok(())
//! # }
//! ```
//!
//! Outside WebAssembly every call fails with [`HttpError::NotConfigured`].

use core::fmt;

use crate::AgentError;

/// Request methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

/// A request (a small builder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Absolute http(s) URL.
    pub url: String,
    /// Headers; values may hold `{{secret:NAME}}`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An answer (any status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with `method` to `url`, no headers, no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// `POST url` with `body`.
    pub fn post(url: impl Into<String>, body: Vec<u8>) -> Self {
        Self::new(Method::Post, url).body(body)
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Send it and wait for the whole answer.
    pub fn send(self) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            wasm::send(self)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(HttpError::NotConfigured)
        }
    }
}

/// Why a request was refused or failed.
///
/// Converts into [`AgentError`] with `?`: the code is `http-` followed by
/// [`HttpError::code`]; retryable for rate limits, timeouts and failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Outbound HTTP is not configured on this node.
    NotConfigured,
    /// Not on the allow-list (or no grant); carries the host.
    NotAllowed(String),
    /// The host resolves to an address agents may not reach.
    BlockedAddress(String),
    /// A `{{secret:NAME}}` the grant does not list or the tenant lacks.
    SecretNotAllowed(String),
    /// Malformed URL, header or method.
    InvalidRequest(String),
    /// A body over the node's limit (bytes).
    TooLarge(u64),
    /// Rate limited; retry after this many ms.
    RateLimited(u64),
    /// No answer in time.
    Timeout,
    /// Connecting, TLS or the exchange failed.
    Failed(String),
}

impl HttpError {
    /// The WIT variant name in kebab case.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::NotConfigured => "not-configured",
            HttpError::NotAllowed(_) => "not-allowed",
            HttpError::BlockedAddress(_) => "blocked-address",
            HttpError::SecretNotAllowed(_) => "secret-not-allowed",
            HttpError::InvalidRequest(_) => "invalid-request",
            HttpError::TooLarge(_) => "too-large",
            HttpError::RateLimited(_) => "rate-limited",
            HttpError::Timeout => "timeout",
            HttpError::Failed(_) => "failed",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::NotConfigured => f.write_str("outbound HTTP is not configured"),
            HttpError::NotAllowed(h) => write!(f, "{h} is not on the allow-list"),
            HttpError::BlockedAddress(h) => write!(f, "{h} resolves to a blocked address"),
            HttpError::SecretNotAllowed(n) => write!(f, "secret {n} is not granted"),
            HttpError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            HttpError::TooLarge(limit) => write!(f, "over the limit of {limit} bytes"),
            HttpError::RateLimited(ms) => write!(f, "rate limited; retry in {ms} ms"),
            HttpError::Timeout => f.write_str("timed out"),
            HttpError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for AgentError {
    fn from(error: HttpError) -> Self {
        AgentError {
            code: format!("http-{}", error.code()),
            retryable: matches!(
                error,
                HttpError::RateLimited(_) | HttpError::Timeout | HttpError::Failed(_)
            ),
            message: error.to_string(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::agent::delta::agent::http as raw;

    pub(super) fn send(r: Request) -> Result<Response, HttpError> {
        let request = raw::Request {
            method: match r.method {
                Method::Get => raw::Method::Get,
                Method::Head => raw::Method::Head,
                Method::Post => raw::Method::Post,
                Method::Put => raw::Method::Put,
                Method::Patch => raw::Method::Patch,
                Method::Delete => raw::Method::Delete,
            },
            url: r.url,
            headers: r.headers,
            body: r.body,
        };
        raw::send(&request)
            .map(|a| Response {
                status: a.status,
                headers: a.headers,
                body: a.body,
            })
            .map_err(|e| match e {
                raw::HttpError::NotConfigured => HttpError::NotConfigured,
                raw::HttpError::NotAllowed(h) => HttpError::NotAllowed(h),
                raw::HttpError::BlockedAddress(h) => HttpError::BlockedAddress(h),
                raw::HttpError::SecretNotAllowed(n) => HttpError::SecretNotAllowed(n),
                raw::HttpError::InvalidRequest(w) => HttpError::InvalidRequest(w),
                raw::HttpError::TooLarge(l) => HttpError::TooLarge(l),
                raw::HttpError::RateLimited(ms) => HttpError::RateLimited(ms),
                raw::HttpError::Timeout => HttpError::Timeout,
                raw::HttpError::Failed(w) => HttpError::Failed(w),
            })
    }
}
