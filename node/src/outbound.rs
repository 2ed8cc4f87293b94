//! The node's `delta:agent/http` backend: [`delta_outbound::Outbound`]
//! (built once from `[http]` in `node.toml`), limited per run to the
//! deployment's `http` grant and counted in the run's meter.
//!
//! Secrets for `{{secret:NAME}}` come from the control plane's vault
//! (`POST /v1/nodes/secrets/resolve`, which checks again that the agent is
//! placed here and that its grant lists the names). They are fetched per
//! request and never cached, logged or handed to the guest; a node without
//! a control plane has no vault, so a placeholder is `secret-not-allowed`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use delta_host_api::http::{HttpError, Method, Request, Response};
use delta_host_api::{CallContext, HttpClient};
use delta_outbound::{HostRule, OutError, OutRequest, Outbound, SecretSource};
use serde::Deserialize;
use serde_json::json;

use crate::capabilities::RunMeter;
use crate::kv::NodeApiClient;
use crate::model::HttpGrant;

/// Secrets from the control plane's vault.
pub struct VaultSecrets(pub Arc<NodeApiClient>);

#[derive(Deserialize)]
struct Resolved {
    values: BTreeMap<String, String>,
}

#[async_trait]
impl SecretSource for VaultSecrets {
    async fn resolve(
        &self,
        agent_id: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        let body = json!({ "agent_id": agent_id, "names": names });
        match self
            .0
            .post::<Resolved>(&["secrets", "resolve"], &body)
            .await
        {
            Ok(resolved) => Ok(resolved.values),
            // Refused: the grant or the vault says no; the request is not
            // sent (fail closed) and the guest is told which name.
            Err(e) if e.code == "secret_not_granted" => Ok(BTreeMap::new()),
            Err(e) => Err(format!(
                "{} {}",
                e.status.map(|s| s.as_u16()).unwrap_or_default(),
                e.code
            )),
        }
    }
}

/// The WIT error for an outbound error.
pub fn wit_error(e: OutError) -> HttpError {
    match e {
        OutError::NotAllowed(h) => HttpError::NotAllowed(h),
        OutError::BlockedAddress(h) => HttpError::BlockedAddress(h),
        OutError::SecretNotAllowed(n) => HttpError::SecretNotAllowed(n),
        OutError::InvalidRequest(why) => HttpError::InvalidRequest(why),
        OutError::TooLarge(limit) => HttpError::TooLarge(limit),
        OutError::RateLimited(ms) => HttpError::RateLimited(ms),
        OutError::Timeout => HttpError::Timeout,
        OutError::Failed(why) => HttpError::Failed(why),
    }
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

/// One run's view: its grant's rules and secrets, every call counted.
pub struct GrantedHttp {
    /// The node's client.
    pub outbound: Arc<Outbound>,
    /// The grant's allow-list (empty without a grant: every host refused).
    pub rules: Vec<HostRule>,
    /// Secret names the grant lists.
    pub secrets: Vec<String>,
    /// The vault, with a control plane.
    pub source: Option<Arc<dyn SecretSource>>,
    /// The run's meter.
    pub meter: Arc<RunMeter>,
}

impl GrantedHttp {
    /// The view for a deployment with `grant`.
    pub fn new(
        outbound: Arc<Outbound>,
        grant: Option<&HttpGrant>,
        source: Option<Arc<dyn SecretSource>>,
        meter: Arc<RunMeter>,
    ) -> Self {
        let (rules, secrets) = match grant {
            Some(grant) => (
                grant
                    .hosts
                    .iter()
                    .filter_map(|h| match HostRule::parse(h) {
                        Ok(rule) => Some(rule),
                        // The control plane validates grants; a bad entry
                        // here allows nothing.
                        Err(e) => {
                            tracing::warn!(error = %e, "an http grant entry does not parse");
                            None
                        }
                    })
                    .collect(),
                grant.secrets.clone(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Self {
            outbound,
            rules,
            secrets,
            source,
            meter,
        }
    }
}

#[async_trait]
impl HttpClient for GrantedHttp {
    async fn send(&self, ctx: &CallContext, request: Request) -> Result<Response, HttpError> {
        let sent = request.body.len() as u64;
        let result = self
            .outbound
            .send(
                &ctx.agent_id,
                &self.rules,
                &self.secrets,
                self.source.as_deref(),
                OutRequest {
                    method: method(request.method),
                    url: request.url,
                    headers: request.headers,
                    body: request.body,
                },
            )
            .await;
        self.meter.http_result(sent, &result);
        result
            .map(|r| Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(wit_error)
    }
}
