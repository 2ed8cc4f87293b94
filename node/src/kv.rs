//! The node's `delta:agent/kv` backends.
//!
//! With a control plane the state lives in its database, reached over the
//! node API (`POST /v1/nodes/kv/{get,set,delete,list}` with the node's
//! credential; the control plane lets a node touch only the state of agents
//! placed on it that have the `kv` grant). So the state survives the loss
//! of this node by construction: the agent's next node reads the same rows.
//! There is no read cache on the node: a cached value would be stale as
//! soon as another node (the agent's next placement, or a concurrent run
//! elsewhere during a move) wrote it, and compare-and-swap needs the
//! current version anyway. Without a control plane the state is in
//! `state_dir/kv.db` ([`delta_kv::KvStore::open_sqlite`]).
//!
//! Every run gets [`GrantedKv`]: it checks the deployment's grant first
//! (fail closed: `not-allowed` without it) and counts what the run did in
//! its [`RunMeter`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use delta_host_api::kv::{Entry, KeyPage, KvError};
use delta_host_api::{CallContext, KvBackend};
use delta_kv::KvStore;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::capabilities::RunMeter;
use crate::config::{ConfigError, ControlPlaneConfig, read_secret};

/// Largest answer read from the control plane (a value is at most its
/// limit, base64: well below this).
const MAX_ANSWER: usize = 1 << 20;

/// The WIT error for a store error.
pub fn wit_error(e: delta_kv::KvError) -> KvError {
    use delta_kv::KvError as E;
    match e {
        E::NotConfigured => KvError::NotConfigured,
        E::NotAllowed => KvError::NotAllowed,
        E::InvalidKey(why) => KvError::InvalidKey(why),
        E::TooLarge { limit } => KvError::TooLarge(limit),
        E::QuotaExceeded(why) => KvError::QuotaExceeded(why),
        E::Conflict { current } => KvError::Conflict(current),
        E::Unavailable(why) => KvError::Unavailable(why),
    }
}

/// The WIT name of a kv error (a bounded label set).
pub fn error_code(e: &KvError) -> &'static str {
    match e {
        KvError::NotConfigured => "not-configured",
        KvError::NotAllowed => "not-allowed",
        KvError::InvalidKey(_) => "invalid-key",
        KvError::TooLarge(_) => "too-large",
        KvError::QuotaExceeded(_) => "quota-exceeded",
        KvError::Conflict(_) => "conflict",
        KvError::Unavailable(_) => "unavailable",
    }
}

/// State in this node's own SQLite file.
pub struct LocalKv(pub KvStore);

#[async_trait]
impl KvBackend for LocalKv {
    async fn get(&self, ctx: &CallContext, key: String) -> Result<Option<Entry>, KvError> {
        let entry = self
            .0
            .get(&ctx.tenant_id, &ctx.agent_id, &key)
            .await
            .map_err(wit_error)?;
        Ok(entry.map(|e| Entry {
            key: e.key,
            value: e.value,
            version: e.version,
        }))
    }

    async fn set(&self, ctx: &CallContext, key: String, value: Vec<u8>) -> Result<u64, KvError> {
        self.0
            .set(&ctx.tenant_id, &ctx.agent_id, &key, &value, None)
            .await
            .map_err(wit_error)
    }

    async fn delete(&self, ctx: &CallContext, key: String) -> Result<bool, KvError> {
        self.0
            .delete(&ctx.tenant_id, &ctx.agent_id, &key)
            .await
            .map_err(wit_error)
    }

    async fn list_prefix(
        &self,
        ctx: &CallContext,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        let page = self
            .0
            .list(
                &ctx.tenant_id,
                &ctx.agent_id,
                &prefix,
                cursor.as_deref(),
                limit,
            )
            .await
            .map_err(wit_error)?;
        Ok(KeyPage {
            keys: page.items.into_iter().map(|k| k.key).collect(),
            next_cursor: page.next,
        })
    }

    async fn compare_and_swap(
        &self,
        ctx: &CallContext,
        key: String,
        expected: u64,
        value: Vec<u8>,
    ) -> Result<u64, KvError> {
        self.0
            .set(&ctx.tenant_id, &ctx.agent_id, &key, &value, Some(expected))
            .await
            .map_err(wit_error)
    }
}

/// A client of the control plane's node API (`POST /v1/nodes/...` with
/// the node's credential), shared by the kv and secret backends.
pub struct NodeApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// A refused or failed node API call.
#[derive(Debug)]
pub struct CallFailure {
    /// The status (none: no answer).
    pub status: Option<StatusCode>,
    /// The error body's `code`.
    pub code: String,
    /// The error body's `message`.
    pub message: String,
    /// The error body's `details`.
    pub details: Value,
}

impl NodeApiClient {
    /// The client `[control_plane]` describes.
    pub fn from_config(cp: &ControlPlaneConfig) -> Result<Self, ConfigError> {
        let token = match &cp.token_file {
            Some(path) => Some(read_secret(path)?),
            None => None,
        };
        let base = Url::parse(&cp.url)
            .ok()
            .filter(|u| !u.cannot_be_a_base() && matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ConfigError::Invalid(format!("control_plane.url {:?}", cp.url)))?;
        let http = reqwest::Client::builder()
            // A redirect would carry the node's credential elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(cp.budget_timeout_secs.max(1)))
            .build()
            .map_err(|e| ConfigError::Invalid(format!("control_plane: {e}")))?;
        Ok(Self { http, base, token })
    }

    /// `POST {base}/v1/nodes/{segments}` with `body`; a 2xx body decodes as `T`.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<T, CallFailure> {
        let failed = |what: &str| CallFailure {
            status: None,
            code: String::new(),
            message: what.to_owned(),
            details: Value::Null,
        };
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["v1", "nodes"]).extend(segments);
        }
        let mut req = self.http.post(url).json(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| {
            tracing::warn!(error = %e, "the control plane did not answer");
            failed("the control plane did not answer")
        })?;
        let status = resp.status();
        let bytes = delta_http::client::read_capped(resp, MAX_ANSWER)
            .await
            .map_err(|_| failed("an unreadable answer"))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| failed("an unreadable answer"));
        }
        let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(CallFailure {
            status: Some(status),
            code: error["code"].as_str().unwrap_or_default().to_owned(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            details: error["details"].clone(),
        })
    }
}

/// State in the control plane's database, over the node API.
pub struct RemoteKv(pub Arc<NodeApiClient>);

#[derive(Deserialize)]
struct RemoteEntry {
    key: String,
    value_base64: String,
    version: u64,
}

#[derive(Deserialize)]
struct RemoteGet {
    entry: Option<RemoteEntry>,
}

#[derive(Deserialize)]
struct RemoteWritten {
    version: u64,
}

#[derive(Deserialize)]
struct RemoteDeleted {
    existed: bool,
}

#[derive(Deserialize)]
struct RemotePage {
    keys: Vec<String>,
    next_cursor: Option<String>,
}

impl RemoteKv {
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        body: Value,
    ) -> Result<T, KvError> {
        let e = match self.0.post(&["kv", op], &body).await {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        let detail = |k: &str| e.details[k].as_u64().unwrap_or(0);
        Err(match (e.status, e.code.as_str()) {
            (Some(StatusCode::CONFLICT), "version_conflict") => {
                KvError::Conflict(detail("current_version"))
            }
            (_, "quota_exceeded") => KvError::QuotaExceeded(e.message),
            (_, "too_large") => KvError::TooLarge(detail("limit")),
            (_, "invalid_key") => KvError::InvalidKey(e.message),
            (Some(StatusCode::FORBIDDEN), "kv_not_granted") => KvError::NotAllowed,
            (Some(status), code) => {
                tracing::warn!(%status, code, "kv: the control plane refused a call");
                KvError::Unavailable(format!("the state store answered {}", status.as_u16()))
            }
            (None, _) => KvError::Unavailable(e.message),
        })
    }
}

#[async_trait]
impl KvBackend for RemoteKv {
    async fn get(&self, ctx: &CallContext, key: String) -> Result<Option<Entry>, KvError> {
        let got: RemoteGet = self
            .call("get", json!({ "agent_id": &*ctx.agent_id, "key": key }))
            .await?;
        got.entry
            .map(|e| {
                Ok(Entry {
                    key: e.key,
                    value: STANDARD
                        .decode(e.value_base64)
                        .map_err(|_| KvError::Unavailable("an unreadable answer".into()))?,
                    version: e.version,
                })
            })
            .transpose()
    }

    async fn set(&self, ctx: &CallContext, key: String, value: Vec<u8>) -> Result<u64, KvError> {
        let body = json!({ "agent_id": &*ctx.agent_id, "key": key,
                           "value_base64": STANDARD.encode(value) });
        Ok(self.call::<RemoteWritten>("set", body).await?.version)
    }

    async fn delete(&self, ctx: &CallContext, key: String) -> Result<bool, KvError> {
        let body = json!({ "agent_id": &*ctx.agent_id, "key": key });
        Ok(self.call::<RemoteDeleted>("delete", body).await?.existed)
    }

    async fn list_prefix(
        &self,
        ctx: &CallContext,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        let body = json!({ "agent_id": &*ctx.agent_id, "prefix": prefix, "cursor": cursor,
                           "limit": limit });
        let page: RemotePage = self.call("list", body).await?;
        Ok(KeyPage {
            keys: page.keys,
            next_cursor: page.next_cursor,
        })
    }

    async fn compare_and_swap(
        &self,
        ctx: &CallContext,
        key: String,
        expected: u64,
        value: Vec<u8>,
    ) -> Result<u64, KvError> {
        let body = json!({ "agent_id": &*ctx.agent_id, "key": key,
                           "value_base64": STANDARD.encode(value),
                           "expected_version": expected });
        Ok(self.call::<RemoteWritten>("set", body).await?.version)
    }
}

/// One run's view: the grant checked first, every call counted.
pub struct GrantedKv {
    /// The node's backend.
    pub inner: Arc<dyn KvBackend>,
    /// Whether the deployment has the `kv` grant.
    pub granted: bool,
    /// The run's meter.
    pub meter: Arc<RunMeter>,
}

impl GrantedKv {
    fn check(&self) -> Result<(), KvError> {
        if self.granted {
            Ok(())
        } else {
            let refused = Err(KvError::NotAllowed);
            self.meter.kv_result(Op::Read, 0, &refused);
            refused
        }
    }
}

/// What a kv call was, for the meter.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// `get`, `list-prefix`.
    Read,
    /// `set`, `compare-and-swap` (with the value's size).
    Write,
    /// `delete`.
    Delete,
}

#[async_trait]
impl KvBackend for GrantedKv {
    async fn get(&self, ctx: &CallContext, key: String) -> Result<Option<Entry>, KvError> {
        self.check()?;
        let result = self.inner.get(ctx, key).await;
        self.meter.kv_result(Op::Read, 0, &result);
        result
    }

    async fn set(&self, ctx: &CallContext, key: String, value: Vec<u8>) -> Result<u64, KvError> {
        self.check()?;
        let size = value.len() as u64;
        let result = self.inner.set(ctx, key, value).await;
        self.meter.kv_result(Op::Write, size, &result);
        result
    }

    async fn delete(&self, ctx: &CallContext, key: String) -> Result<bool, KvError> {
        self.check()?;
        let result = self.inner.delete(ctx, key).await;
        self.meter.kv_result(Op::Delete, 0, &result);
        result
    }

    async fn list_prefix(
        &self,
        ctx: &CallContext,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        self.check()?;
        let result = self.inner.list_prefix(ctx, prefix, cursor, limit).await;
        self.meter.kv_result(Op::Read, 0, &result);
        result
    }

    async fn compare_and_swap(
        &self,
        ctx: &CallContext,
        key: String,
        expected: u64,
        value: Vec<u8>,
    ) -> Result<u64, KvError> {
        self.check()?;
        let size = value.len() as u64;
        let result = self.inner.compare_and_swap(ctx, key, expected, value).await;
        self.meter.kv_result(Op::Write, size, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn ctx(tenant: &str, agent: &str) -> CallContext {
        CallContext {
            tenant_id: tenant.into(),
            agent_id: agent.into(),
            run_id: "run_1".into(),
        }
    }

    #[tokio::test]
    async fn without_the_grant_every_call_is_not_allowed_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvStore::open_sqlite(&dir.path().join("kv.db"), Default::default())
            .await
            .expect("open");
        let local: Arc<dyn KvBackend> = Arc::new(LocalKv(store));
        let meter = RunMeter::new(Arc::new(Metrics::new()));
        let denied = GrantedKv {
            inner: Arc::clone(&local),
            granted: false,
            meter: Arc::clone(&meter),
        };
        let c = ctx("t1", "a1");
        assert_eq!(
            denied.set(&c, "k".into(), b"v".to_vec()).await,
            Err(KvError::NotAllowed)
        );
        assert_eq!(denied.get(&c, "k".into()).await, Err(KvError::NotAllowed));
        assert_eq!(
            denied.list_prefix(&c, String::new(), None, 0).await,
            Err(KvError::NotAllowed)
        );
        assert_eq!(meter.kv_counts().map(|k| k.refused), Some(3));
        // Nothing was written behind the refusal.
        assert_eq!(local.get(&c, "k".into()).await, Ok(None));

        let meter = RunMeter::new(Arc::new(Metrics::new()));
        let granted = GrantedKv {
            inner: local,
            granted: true,
            meter: Arc::clone(&meter),
        };
        let v = granted
            .set(&c, "k".into(), b"value".to_vec())
            .await
            .expect("set");
        assert_eq!(
            granted
                .compare_and_swap(&c, "k".into(), v + 5, b"x".to_vec())
                .await,
            Err(KvError::Conflict(v))
        );
        let got = granted
            .get(&c, "k".into())
            .await
            .expect("get")
            .expect("entry");
        assert_eq!((got.value.as_slice(), got.version), (&b"value"[..], v));
        // Another agent of the same tenant sees nothing of it.
        assert_eq!(granted.get(&ctx("t1", "a2"), "k".into()).await, Ok(None));
        let counts = meter.kv_counts().expect("counted");
        assert_eq!(
            (
                counts.writes,
                counts.conflicts,
                counts.reads,
                counts.bytes_written
            ),
            (1, 1, 2, 5)
        );
    }
}
