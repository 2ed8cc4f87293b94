//! Ships the usage outbox to the control plane, exactly once per run.
//!
//! One background task reads unsent records from the [`Store`]'s outbox
//! (oldest first, up to `batch_size`), POSTs them as a [`UsageBatch`] to
//! `{url}/v1/nodes/usage` and marks them sent only after a 2xx answer.
//! Anything else (connection refused, timeout, 5xx, 4xx) leaves the rows
//! unsent and is retried with jittered exponential backoff.
//!
//! # Exactly once
//! The node gives *at least once*: a row is marked sent only after the
//! control plane acknowledged it, so a crash between the acknowledgement and
//! `mark_sent` resends it. The control plane makes that *exactly once*: the
//! batch's `Idempotency-Key` ([`batch_id`]) is a hash of the node id and the
//! records, so the same rows resent give the same key, and every record
//! carries its unique `run_id` for deduplication when batches are cut
//! differently (after a restart with another batch size, or a 413).
//!
//! # Never dropped
//! Usage is what tenants are billed for, so no answer makes the reporter
//! drop a record. A 4xx other than 408 and 429 means the node or the control
//! plane is misconfigured (bad token, wrong URL, schema mismatch); it is
//! logged at error level and retried at the maximum backoff, so that the
//! records are delivered once an operator fixes the configuration. A 413
//! halves the batch size. Until then [`ReporterStats::healthy`] is false and
//! the outbox grows on disk.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{Millis, RunUsage, UsageBatch, now_ms};
use crate::store::Store;

/// Default [`ReporterConfig::batch_size`].
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Default [`ReporterConfig::interval`].
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default [`ReporterConfig::initial_backoff`].
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Default [`ReporterConfig::max_backoff`].
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default [`ReporterConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `Retry-After` honoured; longer values are treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// While a [`ReporterHandle::flush`] waits, backoff delays are capped at this.
const FLUSH_MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How often [`ReporterHandle::flush`] looks at the outbox.
const FLUSH_POLL: Duration = Duration::from_millis(20);
/// Bytes of an error response body kept for the log and `last_error`.
const ERROR_BODY_BYTES: usize = 512;

/// Where and how to report usage.
#[derive(Clone)]
pub struct ReporterConfig {
    /// Control plane base URL; batches go to `{url}/v1/nodes/usage`.
    pub url: Url,
    /// Bearer token sent as `Authorization: Bearer {token}`.
    pub token: Option<String>,
    /// This node's id (in every batch and in its [`batch_id`]).
    pub node_id: String,
    /// Records per batch at most (at least 1 is used).
    pub batch_size: usize,
    /// How long an idle reporter sleeps before looking at the outbox again
    /// (a [`ReporterHandle::notify`] wakes it earlier).
    pub interval: Duration,
    /// First retry delay; doubles per consecutive failure.
    pub initial_backoff: Duration,
    /// Longest retry delay (except when `Retry-After` asks for more).
    pub max_backoff: Duration,
    /// Timeout of one POST, connect to end of response.
    pub timeout: Duration,
}

impl ReporterConfig {
    /// A configuration with the default batch size, interval, backoff and
    /// timeout, and no token.
    pub fn new(url: Url, node_id: impl Into<String>) -> Self {
        Self {
            url,
            token: None,
            node_id: node_id.into(),
            batch_size: DEFAULT_BATCH_SIZE,
            interval: DEFAULT_INTERVAL,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `{url}/v1/nodes/usage`, whether or not `url` ends with a slash.
    pub fn endpoint(&self) -> Url {
        let mut u = self.url.clone();
        let path = format!("{}/v1/nodes/usage", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }
}

impl std::fmt::Debug for ReporterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReporterConfig")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("node_id", &self.node_id)
            .field("batch_size", &self.batch_size)
            .field("interval", &self.interval)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Counters of the reporter, for metrics and readiness. Shared with the
/// reporter task; all fields are updated as it goes.
#[derive(Debug, Default)]
pub struct ReporterStats {
    /// Batches acknowledged by the control plane.
    pub batches_sent: AtomicU64,
    /// Records acknowledged by the control plane (and marked sent).
    pub records_sent: AtomicU64,
    /// Failed attempts (network, HTTP status, or the store).
    pub failures: AtomicU64,
    /// When the last batch was acknowledged ([`Millis`]; 0: never).
    pub last_success_ms: AtomicI64,
    /// The last failure's description; cleared by the next success.
    pub last_error: Mutex<Option<String>>,
    /// Whether the last attempt failed (cleared by a success or by finding
    /// the outbox empty).
    pub failing: AtomicBool,
}

impl ReporterStats {
    /// New zeroed counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// True when the last attempt succeeded or nothing was pending.
    pub fn healthy(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
    }

    /// A copy of the last failure's description.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_error(&self, msg: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = msg;
    }

    fn failed(&self, msg: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
        self.set_error(Some(msg));
    }

    fn succeeded(&self, records: u64) {
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.records_sent.fetch_add(records, Ordering::Relaxed);
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        self.failing.store(false, Ordering::Relaxed);
        self.set_error(None);
    }

    fn idle(&self) {
        self.failing.store(false, Ordering::Relaxed);
    }
}

/// The batch id of these records from this node: hex SHA-256 of the node id
/// and the records as sent, in order. The same rows always give the same id.
/// The records' bytes, not only their run ids, go in: the control plane
/// answers a reused `Idempotency-Key` with a different body 422, so a node
/// upgraded between two attempts (records serialised differently) must
/// send a new key; the control plane still counts each run once, by run id.
pub fn batch_id(node_id: &str, records: &[RunUsage]) -> String {
    let mut h = Sha256::new();
    h.update(b"delta-usage-batch-v2\0");
    h.update(node_id.as_bytes());
    h.update(b"\0");
    for r in records {
        h.update(r.run_id.as_bytes());
        h.update(b"\0");
        // Serialising a record cannot fail (strings, numbers, maps with
        // string keys); if it ever did, the run ids alone still identify it.
        h.update(serde_json::to_vec(r).unwrap_or_default());
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

/// State shared by the handle and the task.
#[derive(Debug)]
struct Shared {
    /// A run finished (or a flush started): look at the outbox now.
    wake: Notify,
    /// A flush started: cut the current backoff short.
    urgent: Notify,
    /// Flushes in progress (backoff is capped while > 0).
    flushing: AtomicUsize,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Control of the running reporter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReporterHandle {
    shared: Arc<Shared>,
    store: Store,
}

/// Decrements the flush counter when a flush ends or is cancelled.
struct FlushGuard<'a>(&'a AtomicUsize);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReporterHandle {
    /// A run finished: send now instead of at the next poll.
    pub fn notify(&self) {
        self.shared.wake.notify_one();
    }

    /// Wait until the outbox is empty (true) or `deadline` has passed
    /// (false), for graceful shutdown. The reporter task does the sending;
    /// while a flush waits, it retries failures at least every 500 ms. What
    /// is not sent stays in the outbox for the next start.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        self.shared.flushing.fetch_add(1, Ordering::Relaxed);
        let _guard = FlushGuard(&self.shared.flushing);
        self.shared.wake.notify_one();
        self.shared.urgent.notify_waiters();
        loop {
            match self.store.outbox_backlog().await {
                Ok((0, _)) => return true,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "usage flush: reading the outbox failed"),
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            tokio::time::sleep(FLUSH_POLL.min(end - now)).await;
        }
    }

    /// Stop the reporter and wait for its task to end. An attempt in flight
    /// completes first (bounded by the configured timeout); unsent records
    /// stay in the outbox.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "usage reporter task failed");
        }
    }
}

/// Start the reporter task on the current tokio runtime.
pub fn spawn(store: Store, config: ReporterConfig, stats: Arc<ReporterStats>) -> ReporterHandle {
    let shared = Arc::new(Shared {
        wake: Notify::new(),
        urgent: Notify::new(),
        flushing: AtomicUsize::new(0),
        cancel: CancellationToken::new(),
        task: Mutex::new(None),
    });
    let task = tokio::spawn(run(store.clone(), config, stats, shared.clone()));
    *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    ReporterHandle { shared, store }
}

/// Why an attempt failed and how long to wait before the next one.
#[derive(Debug)]
struct Failure {
    message: String,
    /// What the server asked for (`Retry-After`).
    retry_after: Option<Duration>,
    /// A client error that will not go away by itself: wait `max_backoff`.
    permanent: bool,
    /// 413: send smaller batches.
    too_large: bool,
}

impl Failure {
    fn transient(message: String) -> Self {
        Self {
            message,
            retry_after: None,
            permanent: false,
            too_large: false,
        }
    }
}

async fn run(store: Store, cfg: ReporterConfig, stats: Arc<ReporterStats>, shared: Arc<Shared>) {
    let endpoint = cfg.endpoint();
    let mut batch_size = cfg.batch_size.max(1);
    let mut client: Option<reqwest::Client> = None;
    // Consecutive failures.
    let mut failures: u32 = 0;
    tracing::info!(endpoint = %endpoint, node_id = %cfg.node_id, "usage reporter started");
    while !shared.cancel.is_cancelled() {
        let failure = match store.outbox_unsent(batch_size).await {
            Err(e) => Failure::transient(format!("reading the outbox: {e}")),
            Ok(rows) if rows.is_empty() => {
                stats.idle();
                failures = 0;
                tokio::select! {
                    () = shared.cancel.cancelled() => break,
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep(cfg.interval) => {}
                }
                continue;
            }
            Ok(rows) => {
                let http = match &client {
                    Some(c) => Ok(c.clone()),
                    None => reqwest::Client::builder()
                        .timeout(cfg.timeout)
                        .build()
                        .inspect(|c| client = Some(c.clone()))
                        .map_err(|e| Failure::transient(format!("building the HTTP client: {e}"))),
                };
                match http {
                    Ok(http) => match send_and_mark(&http, &endpoint, &cfg, &store, rows).await {
                        Ok(n) => {
                            stats.succeeded(n);
                            failures = 0;
                            continue;
                        }
                        Err(f) => f,
                    },
                    Err(f) => f,
                }
            }
        };

        failures = failures.saturating_add(1);
        if failure.too_large && batch_size > 1 {
            batch_size = (batch_size / 2).max(1);
            tracing::warn!(batch_size, "usage batch too large; halving the batch size");
        }
        let mut delay = backoff(&cfg, &failure, failures);
        if shared.flushing.load(Ordering::Relaxed) > 0 {
            delay = delay.min(FLUSH_MAX_BACKOFF);
        }
        if failure.permanent {
            tracing::error!(
                error = %failure.message,
                retry_in_ms = delay.as_millis() as u64,
                "usage report refused by the control plane; records are kept and retried"
            );
        } else {
            tracing::warn!(
                error = %failure.message,
                attempt = failures,
                retry_in_ms = delay.as_millis() as u64,
                "usage report failed; will retry"
            );
        }
        stats.failed(failure.message);
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.urgent.notified() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!("usage reporter stopped");
}

/// The delay before the next attempt after `failures` consecutive failures.
fn backoff(cfg: &ReporterConfig, f: &Failure, failures: u32) -> Duration {
    let mut rng = rand::rng();
    if let Some(ra) = f.retry_after {
        // At least what the server asked for, plus up to 10% so that nodes
        // told the same thing do not come back in lockstep.
        let ra = ra.min(MAX_RETRY_AFTER);
        let extra = ra.as_millis().min(10_000) as u64 / 10;
        return ra + Duration::from_millis(rng.random_range(0..=extra));
    }
    let max = cfg.max_backoff.max(Duration::from_millis(1));
    let base = if f.permanent {
        max
    } else {
        let exp = failures.saturating_sub(1).min(31);
        cfg.initial_backoff
            .max(Duration::from_millis(1))
            .saturating_mul(1u32 << exp)
            .min(max)
    };
    // "Equal jitter": somewhere in [base/2, base].
    let half = base / 2;
    let span = (base - half).as_millis() as u64;
    half + Duration::from_millis(rng.random_range(0..=span))
}

/// POST one batch; on a 2xx mark its rows sent and return how many records
/// it carried.
async fn send_and_mark(
    http: &reqwest::Client,
    endpoint: &Url,
    cfg: &ReporterConfig,
    store: &Store,
    rows: Vec<(i64, RunUsage)>,
) -> Result<u64, Failure> {
    let (seqs, records): (Vec<i64>, Vec<RunUsage>) = rows.into_iter().unzip();
    let batch = UsageBatch {
        batch_id: batch_id(&cfg.node_id, &records),
        node_id: cfg.node_id.clone(),
        records,
    };
    let mut req = http
        .post(endpoint.clone())
        .header("Idempotency-Key", &batch.batch_id)
        .json(&batch);
    if let Some(token) = &cfg.token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::transient(format!("POST {endpoint}: {}", error_chain(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            retry_after(resp.headers())
        } else {
            None
        };
        let body = error_body(resp).await;
        let permanent = status.is_client_error()
            && !matches!(
                status,
                StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::PAYLOAD_TOO_LARGE
            );
        return Err(Failure {
            message: format!("POST {endpoint}: HTTP {status}: {body}"),
            retry_after,
            permanent,
            too_large: status == StatusCode::PAYLOAD_TOO_LARGE,
        });
    }
    // The control plane has the batch. If marking fails (or the process dies
    // here) the same rows are resent with the same batch id.
    store
        .mark_sent(&seqs, now_ms())
        .await
        .map_err(|e| Failure::transient(format!("marking a delivered batch sent: {e}")))?;
    tracing::debug!(
        batch_id = %batch.batch_id,
        records = batch.records.len(),
        "usage batch delivered"
    );
    Ok(batch.records.len() as u64)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The start of an error response's body, as text.
async fn error_body(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(ERROR_BODY_BYTES);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// An error with its sources (reqwest's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Milliseconds since the last acknowledged batch, if any (for metrics).
pub fn since_last_success(stats: &ReporterStats, now: Millis) -> Option<Millis> {
    match stats.last_success_ms.load(Ordering::Relaxed) {
        0 => None,
        t => Some(now.saturating_sub(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FinishedRun, NewRun};
    use axum::extract::State;
    use axum::http::{HeaderMap as AxHeaders, StatusCode as AxStatus};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Json, Router};
    use std::collections::HashMap;
    use std::net::SocketAddr;

    /// What the fake control plane does with the next requests.
    #[derive(Clone, Copy)]
    enum Fail {
        Status500,
        TooMany,
        BadRequest,
        /// Accept the batch, then answer 500, as if the node crashed between
        /// the control plane's acknowledgement and `mark_sent`.
        AckLost,
    }

    #[derive(Default)]
    struct Receiver {
        /// Fail this many requests first.
        fail_first: AtomicUsize,
        mode: Mutex<Option<Fail>>,
        requests: AtomicUsize,
        /// Idempotency-Key of every request, in order (failed ones too).
        keys: Mutex<Vec<String>>,
        /// Accepted batches, one per distinct key: (Authorization, batch).
        batches: Mutex<Vec<(String, UsageBatch)>>,
        /// Records per run id over accepted batches (deduplicated by key,
        /// as the control plane does).
        by_run: Mutex<HashMap<String, usize>>,
        /// Set if a request carried a record already marked sent.
        marked_early: AtomicBool,
        store: Mutex<Option<Store>>,
    }

    impl Receiver {
        /// Record a batch unless its key was seen before.
        fn accept(&self, key: &str, auth: String, batch: UsageBatch) {
            let mut batches = self.batches.lock().expect("lock");
            if batches.iter().any(|(_, b)| b.batch_id == key) {
                return;
            }
            let mut by_run = self.by_run.lock().expect("lock");
            for r in &batch.records {
                *by_run.entry(r.run_id.clone()).or_default() += 1;
            }
            batches.push((auth, batch));
        }
    }

    async fn usage_handler(
        State(rx): State<Arc<Receiver>>,
        headers: AxHeaders,
        Json(batch): Json<UsageBatch>,
    ) -> Response {
        rx.requests.fetch_add(1, Ordering::SeqCst);
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let key = header("idempotency-key");
        let auth = header("authorization");
        rx.keys.lock().expect("lock").push(key.clone());
        // Every record is still unsent while its request is in flight.
        let store = rx.store.lock().expect("lock").clone();
        if let Some(store) = store {
            let unsent = store.outbox_unsent(100_000).await.expect("outbox");
            for r in &batch.records {
                if !unsent.iter().any(|(_, u)| u.run_id == r.run_id) {
                    rx.marked_early.store(true, Ordering::SeqCst);
                }
            }
        }
        let failing = rx
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            let mode = *rx.mode.lock().expect("lock");
            return match mode {
                Some(Fail::TooMany) => (
                    AxStatus::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "slow down",
                )
                    .into_response(),
                Some(Fail::BadRequest) => (AxStatus::BAD_REQUEST, "bad").into_response(),
                Some(Fail::AckLost) => {
                    rx.accept(&key, auth, batch);
                    (AxStatus::INTERNAL_SERVER_ERROR, "lost").into_response()
                }
                Some(Fail::Status500) | None => {
                    (AxStatus::INTERNAL_SERVER_ERROR, "boom").into_response()
                }
            };
        }
        rx.accept(&key, auth, batch);
        AxStatus::OK.into_response()
    }

    async fn serve(rx: Arc<Receiver>, addr: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/base/v1/nodes/usage", post(usage_handler))
            .with_state(rx);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        (addr, task)
    }

    fn config(addr: SocketAddr) -> ReporterConfig {
        let url = Url::parse(&format!("http://{addr}/base/")).expect("url");
        ReporterConfig {
            token: Some("secret".into()),
            batch_size: 7,
            interval: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            ..ReporterConfig::new(url, "node-1")
        }
    }

    async fn store_with_runs(dir: &tempfile::TempDir, n: usize) -> Store {
        let store = Store::open(&dir.path().join("node.db"))
            .await
            .expect("open");
        add_runs(&store, 0, n).await;
        store
    }

    async fn add_runs(store: &Store, from: usize, n: usize) {
        for i in from..from + n {
            let id = format!("run-{i:04}");
            store
                .insert_run(&NewRun {
                    id: id.clone(),
                    agent_id: "a".into(),
                    tenant_id: "t".into(),
                    input: "{}".into(),
                    created_at_ms: i as Millis,
                })
                .await
                .expect("insert");
            store
                .finish_run(&FinishedRun {
                    run_id: id.clone(),
                    outcome: serde_json::json!({"status": "completed", "output": "{}"}),
                    logs: serde_json::json!([]),
                    usage: RunUsage {
                        run_id: id,
                        agent_id: "a".into(),
                        tenant_id: "t".into(),
                        outcome: "completed".into(),
                        fuel_used: i as u64,
                        ..RunUsage::default()
                    },
                    expires_at_ms: 1_000_000,
                    started_at_ms: None,
                })
                .await
                .expect("finish");
        }
    }

    fn assert_all_once(rx: &Receiver, n: usize) {
        let by_run = rx.by_run.lock().expect("lock");
        assert_eq!(by_run.len(), n, "every record arrived");
        for i in 0..n {
            assert_eq!(
                by_run.get(&format!("run-{i:04}")),
                Some(&1),
                "run-{i:04} once"
            );
        }
        assert!(
            !rx.marked_early.load(Ordering::SeqCst),
            "marked sent before ack"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_everything_once_through_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_runs(&dir, 30).await;
        let rx = Arc::new(Receiver::default());
        *rx.store.lock().expect("lock") = Some(store.clone());
        rx.fail_first.store(3, Ordering::SeqCst);
        *rx.mode.lock().expect("lock") = Some(Fail::Status500);
        let (addr, server) = serve(rx.clone(), "127.0.0.1:0".parse().expect("addr")).await;

        let stats = ReporterStats::new();
        let h = spawn(store.clone(), config(addr), stats.clone());
        assert!(h.flush(Duration::from_secs(10)).await, "outbox emptied");
        assert_all_once(&rx, 30);
        assert_eq!(store.outbox_backlog().await.expect("backlog").0, 0);
        assert_eq!(stats.failures.load(Ordering::SeqCst), 3);
        assert_eq!(stats.records_sent.load(Ordering::SeqCst), 30);
        assert_eq!(
            stats.batches_sent.load(Ordering::SeqCst),
            5,
            "30 in batches of 7"
        );
        assert!(stats.healthy());
        assert!(stats.last_error().is_none());
        assert!(since_last_success(&stats, now_ms()).is_some());

        {
            let batches = rx.batches.lock().expect("lock");
            for (auth, batch) in batches.iter() {
                assert_eq!(auth, "Bearer secret");
                assert_eq!(batch.node_id, "node-1");
                assert_eq!(batch.batch_id, batch_id("node-1", &batch.records));
                assert!(batch.records.len() <= 7);
            }
            // Oldest first.
            assert_eq!(batches[0].1.records[0].run_id, "run-0000");
            // The first batch was sent 4 times (3 failures), always under
            // the same key, and each accepted key is its batch's id.
            let keys = rx.keys.lock().expect("lock");
            assert_eq!(keys.len(), 3 + 5);
            assert!(keys[..4].iter().all(|k| k == &batches[0].1.batch_id));
        }

        // A finished run is picked up after notify().
        add_runs(&store, 30, 2).await;
        h.notify();
        assert!(h.flush(Duration::from_secs(5)).await);
        assert_all_once(&rx, 32);
        h.shutdown().await;
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_acknowledgement_is_resent_with_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_runs(&dir, 10).await;
        let rx = Arc::new(Receiver::default());
        *rx.store.lock().expect("lock") = Some(store.clone());
        rx.fail_first.store(2, Ordering::SeqCst);
        *rx.mode.lock().expect("lock") = Some(Fail::AckLost);
        let (addr, server) = serve(rx.clone(), "127.0.0.1:0".parse().expect("addr")).await;

        let h = spawn(store.clone(), config(addr), ReporterStats::new());
        assert!(h.flush(Duration::from_secs(5)).await);
        // Delivered 3 times, counted once.
        assert_eq!(rx.requests.load(Ordering::SeqCst), 3 + 1);
        let keys = rx.keys.lock().expect("lock").clone();
        assert_eq!(keys[0], keys[1]);
        assert_eq!(keys[1], keys[2]);
        assert_ne!(keys[2], keys[3]);
        assert_all_once(&rx, 10);
        h.shutdown().await;
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn honours_retry_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_runs(&dir, 3).await;
        let rx = Arc::new(Receiver::default());
        rx.fail_first.store(1, Ordering::SeqCst);
        *rx.mode.lock().expect("lock") = Some(Fail::TooMany);
        let (addr, server) = serve(rx.clone(), "127.0.0.1:0".parse().expect("addr")).await;

        let stats = ReporterStats::new();
        let started = std::time::Instant::now();
        let h = spawn(store.clone(), config(addr), stats.clone());
        // Wait without flush(), which would cut the wait short.
        while store.outbox_backlog().await.expect("backlog").0 > 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "not delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1),
            "waited Retry-After: {took:?}"
        );
        assert!(took < Duration::from_secs(3), "not much longer: {took:?}");
        assert_all_once(&rx, 3);
        assert_eq!(rx.requests.load(Ordering::SeqCst), 2);
        h.shutdown().await;
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_errors_are_retried_not_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_runs(&dir, 2).await;
        let rx = Arc::new(Receiver::default());
        rx.fail_first.store(2, Ordering::SeqCst);
        *rx.mode.lock().expect("lock") = Some(Fail::BadRequest);
        let (addr, server) = serve(rx.clone(), "127.0.0.1:0".parse().expect("addr")).await;

        let stats = ReporterStats::new();
        let h = spawn(store.clone(), config(addr), stats.clone());
        assert!(h.flush(Duration::from_secs(5)).await);
        assert_all_once(&rx, 2);
        assert_eq!(stats.failures.load(Ordering::SeqCst), 2);
        h.shutdown().await;
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_down_then_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_runs(&dir, 10).await;
        // Reserve a port, then free it: connections are refused.
        let addr = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            l.local_addr().expect("addr")
        };
        let stats = ReporterStats::new();
        let h = spawn(store.clone(), config(addr), stats.clone());
        assert!(
            !h.flush(Duration::from_millis(400)).await,
            "nothing can be sent"
        );
        assert_eq!(store.outbox_backlog().await.expect("backlog").0, 10);
        assert!(stats.failures.load(Ordering::SeqCst) >= 2);
        assert!(!stats.healthy());
        assert!(stats.last_error().is_some_and(|e| e.contains("POST")));
        assert_eq!(stats.records_sent.load(Ordering::SeqCst), 0);

        let rx = Arc::new(Receiver::default());
        *rx.store.lock().expect("lock") = Some(store.clone());
        let (_, server) = serve(rx.clone(), addr).await;
        assert!(h.flush(Duration::from_secs(5)).await);
        assert_all_once(&rx, 10);
        assert!(stats.healthy());
        h.shutdown().await;
        server.abort();
    }

    #[tokio::test]
    async fn batch_id_is_deterministic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_runs(&dir, 5).await;
        let a: Vec<RunUsage> = store
            .outbox_unsent(5)
            .await
            .expect("outbox")
            .into_iter()
            .map(|(_, u)| u)
            .collect();
        let b: Vec<RunUsage> = store
            .outbox_unsent(5)
            .await
            .expect("outbox")
            .into_iter()
            .map(|(_, u)| u)
            .collect();
        assert_eq!(batch_id("n", &a), batch_id("n", &b));
        assert_eq!(batch_id("n", &a).len(), 64);
        assert_ne!(batch_id("n", &a), batch_id("m", &a));
        assert_ne!(batch_id("n", &a), batch_id("n", &a[..4]));
    }

    #[test]
    fn endpoint_and_backoff() {
        let mut cfg = ReporterConfig::new(Url::parse("https://cp.example/").expect("url"), "n");
        assert_eq!(cfg.endpoint().as_str(), "https://cp.example/v1/nodes/usage");
        cfg.url = Url::parse("https://cp.example/api").expect("url");
        assert_eq!(
            cfg.endpoint().as_str(),
            "https://cp.example/api/v1/nodes/usage"
        );
        cfg.token = Some("secret".into());
        assert!(!format!("{cfg:?}").contains("secret"));

        let f = Failure::transient("x".into());
        for n in 1..40 {
            let d = backoff(&cfg, &f, n);
            assert!(d <= cfg.max_backoff, "{n}: {d:?}");
            assert!(d >= cfg.initial_backoff.min(cfg.max_backoff) / 2);
        }
        assert!(backoff(&cfg, &f, 40) >= cfg.max_backoff / 2);
        let permanent = Failure {
            permanent: true,
            ..Failure::transient("x".into())
        };
        assert!(backoff(&cfg, &permanent, 1) >= cfg.max_backoff / 2);
        let ra = Failure {
            retry_after: Some(Duration::from_secs(2)),
            ..Failure::transient("x".into())
        };
        let d = backoff(&cfg, &ra, 1);
        assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(2_200));

        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(60);
        h.insert(
            RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().expect("value"),
        );
        let d = retry_after(&h).expect("date");
        assert!(d > Duration::from_secs(55) && d <= Duration::from_secs(60));
    }
}
