//! [`Outbound`]: the client agents' requests go through.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::addr::is_public;
use crate::grant::{HostRule, url_host};

/// `[http]` of `node.toml`: outbound HTTP for agents with an `http` grant
/// (absent: every request answers `not-configured`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Let agents reach loopback, private, link-local and other non-public
    /// addresses (default false). Only for tests and closed networks: with
    /// it, an agent granted a host that resolves inside the network reaches
    /// that network.
    pub allow_private_networks: bool,
    /// Largest request body, bytes (default 1 MiB).
    pub max_request_bytes: u64,
    /// Largest response body, bytes (default 1 MiB); a larger answer is
    /// `too-large` (its body is not read further).
    pub max_response_bytes: u64,
    /// Time for one request, connect to last byte, ms (default 10,000; the
    /// run's deadline cuts it shorter).
    pub timeout_ms: u64,
    /// Requests per agent per minute (default 60) ...
    pub requests_per_minute: u32,
    /// ... with bursts of this many (default 20).
    pub burst: u32,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            max_request_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
            timeout_ms: 10_000,
            requests_per_minute: 60,
            burst: 20,
        }
    }
}

/// One request, as the guest handed it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRequest {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Header names and values; values may hold `{{secret:NAME}}`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutResponse {
    /// Status code.
    pub status: u16,
    /// Headers (values that are not UTF-8 are left out).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why a request was refused or failed (the WIT's `http-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutError {
    /// Not on the allow-list (or no grant); carries the host.
    #[error("{0} is not on the agent's allow-list")]
    NotAllowed(String),
    /// Resolves to an address agents may not reach; carries the host.
    #[error("{0} resolves to an address agents may not reach")]
    BlockedAddress(String),
    /// A placeholder names a secret not granted or not there.
    #[error("secret {0} is not granted or does not exist")]
    SecretNotAllowed(String),
    /// Malformed URL, header or method.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A body over the limit.
    #[error("over the limit of {0} bytes")]
    TooLarge(u64),
    /// Rate limited; retry after this many ms.
    #[error("rate limited; retry in {0} ms")]
    RateLimited(u64),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// Connecting, TLS or the exchange failed.
    #[error("failed: {0}")]
    Failed(String),
}

impl OutError {
    /// The WIT case name (a bounded label set).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAllowed(_) => "not-allowed",
            Self::BlockedAddress(_) => "blocked-address",
            Self::SecretNotAllowed(_) => "secret-not-allowed",
            Self::InvalidRequest(_) => "invalid-request",
            Self::TooLarge(_) => "too-large",
            Self::RateLimited(_) => "rate-limited",
            Self::Timeout => "timeout",
            Self::Failed(_) => "failed",
        }
    }
}

/// Where `{{secret:NAME}}` values come from (the control plane's vault).
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The values of `names` for `agent_id`; a name missing from the
    /// answer does not exist. `Err`: the source could not answer.
    async fn resolve(
        &self,
        agent_id: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, String>;
}

/// The resolver's refusal, found again in reqwest's error chain.
#[derive(Debug)]
struct Blocked;

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every address of the host is one agents may not reach")
    }
}

impl std::error::Error for Blocked {}

/// Resolves with the system's resolver, then drops every address the
/// filter refuses. reqwest asks it for every new connection, so the check
/// holds for each one (no cached answer from an earlier check is trusted).
struct FilteringResolver {
    allow_private: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(Blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Headers the host sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];
/// Most request headers.
const MAX_HEADERS: usize = 64;
/// Longest URL.
const MAX_URL: usize = 8 * 1024;

/// The client one node shares between its agents.
pub struct Outbound {
    client: reqwest::Client,
    config: OutboundConfig,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("config", &self.config)
            .finish()
    }
}

impl Outbound {
    /// A client under `config`.
    pub fn new(config: OutboundConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(FilteringResolver {
                allow_private: config.allow_private_networks,
            })
            // A redirect is the guest's to judge (and to ask for again,
            // through every check): following it here would skip them.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would make the connection's address the proxy's.
            .no_proxy()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.timeout_ms.clamp(1, 5_000)))
            .build()
            .map_err(|e| format!("building the outbound client: {e}"))?;
        let per_minute =
            NonZeroU32::new(config.requests_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            client,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Send `request` for `agent_id` if `rules` allow its URL; header
    /// values' `{{secret:NAME}}` are filled from `secrets` for names in
    /// `granted_secrets` only.
    pub async fn send(
        &self,
        agent_id: &str,
        rules: &[HostRule],
        granted_secrets: &[String],
        secrets: Option<&dyn SecretSource>,
        request: OutRequest,
    ) -> Result<OutResponse, OutError> {
        if request.url.len() > MAX_URL {
            return Err(OutError::InvalidRequest(format!(
                "the URL is over {MAX_URL} bytes"
            )));
        }
        let url = Url::parse(&request.url)
            .map_err(|e| OutError::InvalidRequest(format!("the URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutError::InvalidRequest(
                "the scheme must be http or https".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutError::InvalidRequest("no credentials in the URL".into()));
        }
        let host =
            url_host(&url).ok_or_else(|| OutError::InvalidRequest("the URL has no host".into()))?;
        if !rules.iter().any(|r| r.allows(&url)) {
            return Err(OutError::NotAllowed(host));
        }
        // Every allowed attempt counts, whatever happens to it next.
        if let Err(not_until) = self.limiter.check_key(&agent_id.to_owned()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(OutError::RateLimited(wait.as_millis().max(1) as u64));
        }
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        // An address literal never reaches the resolver: judged here.
        if let Ok(ip) = host.parse::<IpAddr>()
            && !self.config.allow_private_networks
            && !is_public(ip)
        {
            return Err(OutError::BlockedAddress(host));
        }
        if request.body.len() as u64 > self.config.max_request_bytes {
            return Err(OutError::TooLarge(self.config.max_request_bytes));
        }
        let headers = self
            .headers(agent_id, &request.headers, granted_secrets, secrets)
            .await?;
        let response = self
            .client
            .request(request.method, url)
            .headers(headers)
            .body(request.body)
            .send()
            .await
            .map_err(|e| map_error(&e, &host))?;
        let status = response.status().as_u16();
        let limit = self.config.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(OutError::TooLarge(limit));
        }
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| map_error(&e, &host))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(OutError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutResponse {
            status,
            headers,
            body,
        })
    }

    /// The request's headers with secrets filled in (marked sensitive, so
    /// no debug output of the request shows them).
    async fn headers(
        &self,
        agent_id: &str,
        given: &[(String, String)],
        granted: &[String],
        source: Option<&dyn SecretSource>,
    ) -> Result<HeaderMap, OutError> {
        if given.len() > MAX_HEADERS {
            return Err(OutError::InvalidRequest(format!(
                "at most {MAX_HEADERS} headers"
            )));
        }
        let mut wanted: Vec<String> = Vec::new();
        for (_, value) in given {
            for name in placeholders(value)? {
                if !granted.iter().any(|g| g == name) {
                    return Err(OutError::SecretNotAllowed(name.to_owned()));
                }
                if !wanted.iter().any(|w| w == name) {
                    wanted.push(name.to_owned());
                }
            }
        }
        let values = if wanted.is_empty() {
            BTreeMap::new()
        } else {
            let Some(source) = source else {
                return Err(OutError::SecretNotAllowed(wanted[0].clone()));
            };
            let found = source.resolve(agent_id, &wanted).await.map_err(|e| {
                tracing::warn!(agent = agent_id, error = %e, "resolving an agent's secrets failed");
                OutError::Failed("the secrets vault did not answer".into())
            })?;
            if let Some(missing) = wanted.iter().find(|w| !found.contains_key(*w)) {
                return Err(OutError::SecretNotAllowed(missing.clone()));
            }
            found
        };
        let mut headers = HeaderMap::new();
        for (name, value) in given {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OutError::InvalidRequest(format!("header name {name:?}")))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(OutError::InvalidRequest(format!(
                    "the host sets the {header} header itself"
                )));
            }
            let (filled, secret) = fill(value, &values);
            let mut value = HeaderValue::from_str(&filled).map_err(|_| {
                // Never echo a value that may now hold a secret.
                OutError::InvalidRequest(format!("the value of header {name}"))
            })?;
            if secret {
                value.set_sensitive(true);
            }
            headers.append(header, value);
        }
        Ok(headers)
    }
}

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// The secret names `value` refers to.
fn placeholders(value: &str) -> Result<Vec<&str>, OutError> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find(CLOSE)
            .ok_or_else(|| OutError::InvalidRequest("an unclosed {{secret:".into()))?;
        names.push(&after[..end]);
        rest = &after[end + CLOSE.len()..];
    }
    Ok(names)
}

/// `value` with every placeholder replaced; whether it had one.
fn fill(value: &str, secrets: &BTreeMap<String, String>) -> (String, bool) {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut any = false;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        out.push_str(&rest[..start]);
        out.push_str(secrets.get(&after[..end]).map_or("", String::as_str));
        any = true;
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    (out, any)
}

fn map_error(e: &reqwest::Error, host: &str) -> OutError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Blocked>().is_some() {
            return OutError::BlockedAddress(host.to_owned());
        }
        source = s.source();
    }
    if e.is_timeout() {
        return OutError::Timeout;
    }
    let what = if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the exchange failed"
    };
    OutError::Failed(format!("{what} ({host})"))
}

/// The WIT method's name for reqwest (for callers mapping the guest's enum).
pub fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl SecretSource for Fixed {
        async fn resolve(
            &self,
            _agent: &str,
            names: &[String],
        ) -> Result<BTreeMap<String, String>, String> {
            Ok(names
                .iter()
                .filter(|n| *n == "TOKEN")
                .map(|n| (n.clone(), "s3cr3t".to_owned()))
                .collect())
        }
    }

    fn request(url: &str) -> OutRequest {
        OutRequest {
            method: Method::GET,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn placeholders_are_found_and_filled() {
        assert_eq!(
            placeholders("Bearer {{secret:A}}-{{secret:B}}").ok(),
            Some(vec!["A", "B"])
        );
        assert!(placeholders("x {{secret:A").is_err());
        let values = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(
            fill("Bearer {{secret:A}}!", &values),
            ("Bearer 1!".to_owned(), true)
        );
        assert_eq!(fill("plain", &values), ("plain".to_owned(), false));
    }

    #[tokio::test]
    async fn refusals_come_before_any_connection() {
        let out = Outbound::new(OutboundConfig::default()).expect("client");
        let rules = HostRule::parse_all(&[
            "api.example.com".into(),
            "http://localhost:9".into(),
            "http://127.0.0.1:9".into(),
        ])
        .expect("rules");
        let granted = vec!["TOKEN".to_owned()];
        let send = |r: OutRequest| out.send("a1", &rules, &granted, Some(&Fixed), r);
        assert_eq!(
            send(request("https://evil.example.net/")).await,
            Err(OutError::NotAllowed("evil.example.net".into()))
        );
        assert_eq!(
            send(request("http://api.example.com/")).await,
            Err(OutError::NotAllowed("api.example.com".into())),
            "https only unless granted"
        );
        assert_eq!(
            send(request("http://127.0.0.1:9/")).await,
            Err(OutError::BlockedAddress("127.0.0.1".into()))
        );
        // A granted name that resolves to loopback: refused after
        // resolution, never connected.
        assert_eq!(
            send(request("http://localhost:9/")).await,
            Err(OutError::BlockedAddress("localhost".into()))
        );
        let mut with_secret = request("https://api.example.com/");
        with_secret.headers = vec![("authorization".into(), "Bearer {{secret:OTHER}}".into())];
        assert_eq!(
            send(with_secret).await,
            Err(OutError::SecretNotAllowed("OTHER".into()))
        );
        let mut host = request("https://api.example.com/");
        host.headers = vec![("Host".into(), "internal".into())];
        assert!(matches!(send(host).await, Err(OutError::InvalidRequest(_))));
        let mut big = request("https://api.example.com/");
        big.body = vec![0; (1 << 20) + 1];
        assert_eq!(send(big).await, Err(OutError::TooLarge(1 << 20)));
        assert!(matches!(
            send(request("https://user:pw@api.example.com/")).await,
            Err(OutError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn the_rate_limit_is_per_agent() {
        let out = Outbound::new(OutboundConfig {
            requests_per_minute: 1,
            burst: 2,
            ..OutboundConfig::default()
        })
        .expect("client");
        let rules = HostRule::parse_all(&["http://127.0.0.1:9".into()]).expect("rules");
        // Refused by the address filter, but counted.
        for _ in 0..2 {
            assert!(matches!(
                out.send("a1", &rules, &[], None, request("http://127.0.0.1:9/"))
                    .await,
                Err(OutError::BlockedAddress(_))
            ));
        }
        assert!(matches!(
            out.send("a1", &rules, &[], None, request("http://127.0.0.1:9/")).await,
            Err(OutError::RateLimited(ms)) if ms > 0
        ));
        assert!(matches!(
            out.send("a2", &rules, &[], None, request("http://127.0.0.1:9/"))
                .await,
            Err(OutError::BlockedAddress(_))
        ));
    }
}
