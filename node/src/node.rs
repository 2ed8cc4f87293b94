//! The node's state and the life of a run: admission, queueing, execution,
//! durable recording, live logs.
//!
//! A run is acknowledged (202, or 200 with `?wait=true`) only after what the
//! client is told is durable: the queued row for 202, the finished row and
//! its usage-outbox record (one transaction) for 200.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use delta_host_api::CallContext;
use delta_host_api::log::LogLine;
use delta_runtime::{
    AgentInvocation, Digest, LoadError, LoadedComponent, Outcome, RunError, Runtime,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capabilities::{Backends, RunMeter};
use crate::config::{NodeConfig, NodeLimits, RunsConfig};
use crate::journal::{Journal, JournalJob, JournalOp};
use crate::metrics::Metrics;
use crate::model::{
    AgentRecord, AgentSpec, ComponentRecord, FinishedRun, Millis, NewRun, RunRecord, RunStatus,
    RunUsage, now_ms,
};
use crate::reporter::{ReporterHandle, ReporterStats};
use crate::scheduler::{Refused, Scheduler, SchedulerLimits};
use crate::store::{Store, StoreError};

/// Why the node refused or failed a request (mapped to HTTP by the API).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No such agent, run or component.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is malformed or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The state does not allow it (paused agent, component in use, ...).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable account.
        message: String,
    },
    /// The queues are full; try again after this long.
    #[error("queue full ({scope}); retry after {retry_after:?}")]
    Busy {
        /// Which queue.
        scope: String,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Draining,
    /// A component failed validation or compilation.
    #[error("{0}")]
    BadComponent(String),
    /// Storage or another internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        Self::Internal(format!("state store: {e}"))
    }
}

/// A deployed agent with its loaded component.
#[derive(Clone)]
struct Deployment {
    record: AgentRecord,
    component: Arc<LoadedComponent>,
    /// Cancels every run of this deployment (on delete).
    cancel: CancellationToken,
}

/// A run that has not finished: its cancel token and live log.
pub struct LiveRun {
    agent_id: String,
    tenant_id: String,
    created_at_ms: Millis,
    /// When it got a slot (0: still queued).
    started_at_ms: AtomicI64,
    cancel: CancellationToken,
    log: Mutex<LiveLog>,
}

struct LiveLog {
    lines: Vec<LogLine>,
    tx: Option<broadcast::Sender<LogLine>>,
    /// The run ended: no more lines, no new channel.
    closed: bool,
}

/// What a log subscriber gets: the lines so far and the rest as they come
/// (`None` when the run already finished).
pub struct LogSubscription {
    /// Lines written before subscribing.
    pub backlog: Vec<LogLine>,
    /// Later lines; closed when the run ends.
    pub live: Option<broadcast::Receiver<LogLine>>,
}

impl LiveRun {
    fn subscribe(&self) -> LogSubscription {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        // The channel is made for the first subscriber: most runs have none,
        // and a broadcast channel allocates all its slots up front.
        let live = match (&log.tx, log.closed) {
            (_, true) => None,
            (Some(tx), false) => Some(tx.subscribe()),
            (None, false) => {
                let (tx, rx) = broadcast::channel(256);
                log.tx = Some(tx);
                Some(rx)
            }
        };
        LogSubscription {
            backlog: log.lines.clone(),
            live,
        }
    }

    fn close(&self) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.tx = None;
        log.closed = true;
    }
}

impl delta_host_api::LogSink for LiveRun {
    fn line(&self, _ctx: &CallContext, line: &LogLine) {
        // The runtime bounds lines per run, so this copy is bounded too.
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.lines.push(line.clone());
        if let Some(tx) = &log.tx {
            // No subscriber is fine; a slow one lags (broadcast never blocks).
            let _ = tx.send(line.clone());
        }
    }
}

/// Everything a node holds.
pub struct Node {
    node_id: String,
    runtime: Arc<Runtime>,
    store: Store,
    scheduler: Arc<Scheduler>,
    backends: Backends,
    metrics: Arc<Metrics>,
    limits: RwLock<NodeLimits>,
    runs_config: RunsConfig,
    components_dir: PathBuf,
    agents: RwLock<HashMap<String, Deployment>>,
    live: Mutex<HashMap<String, Arc<LiveRun>>>,
    reporter: Option<Reporting>,
    draining: CancellationToken,
    tasks: TaskTracker,
    recorder: mpsc::Sender<RecordJob>,
}

/// One finished run waiting for the group commit.
struct RecordJob {
    accepted: Option<NewRun>,
    finished: FinishedRun,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// Most runs committed in one transaction.
const GROUP_COMMIT_MAX: usize = 512;

/// The group commit: takes whatever finished runs are waiting (up to
/// [`GROUP_COMMIT_MAX`]) and commits them in one transaction, so the fsync
/// that makes each one durable is shared by all of them. Spend-journal
/// writes (`crate::journal`) go through the same task and the store's one
/// write connection, grouped the same way; they are taken first, since a
/// guest waits on each.
fn spawn_recorder(store: Store) -> (mpsc::Sender<RecordJob>, mpsc::Sender<JournalJob>) {
    let (tx, mut rx) = mpsc::channel::<RecordJob>(4 * GROUP_COMMIT_MAX);
    let (journal_tx, mut journal_rx) = mpsc::channel::<JournalJob>(4 * GROUP_COMMIT_MAX);
    tokio::spawn(async move {
        let mut jobs = Vec::with_capacity(GROUP_COMMIT_MAX);
        let mut writes = Vec::with_capacity(GROUP_COMMIT_MAX);
        let (mut runs_open, mut journal_open) = (true, true);
        while runs_open || journal_open {
            tokio::select! {
                biased;
                n = journal_rx.recv_many(&mut writes, GROUP_COMMIT_MAX), if journal_open => {
                    journal_open = n > 0;
                }
                n = rx.recv_many(&mut jobs, GROUP_COMMIT_MAX), if runs_open => {
                    runs_open = n > 0;
                }
            }
            if !writes.is_empty() {
                commit_journal(&store, &mut writes).await;
            }
            if jobs.is_empty() {
                continue;
            }
            // Moved out, not cloned: a run's record is several owned
            // strings and JSON values, and allocation was a tenth of a
            // run's cost (issue 15's profile).
            let (batch, done): (Vec<(Option<NewRun>, FinishedRun)>, Vec<_>) = jobs
                .drain(..)
                .map(|j| ((j.accepted, j.finished), j.done))
                .unzip();
            match store.finish_runs(&batch).await {
                Ok(results) => {
                    for (done, result) in done.into_iter().zip(results) {
                        let _ = done.send(result);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for done in done {
                        let _ =
                            done.send(Err(StoreError::Invalid(format!("group commit: {message}"))));
                    }
                }
            }
        }
    });
    (tx, journal_tx)
}

/// Commit a group of journal writes (one transaction) and answer each.
async fn commit_journal(store: &Store, writes: &mut Vec<JournalJob>) {
    let ops: Vec<JournalOp> = writes.iter().map(|w| w.op.clone()).collect();
    let result = store.journal_write(&ops).await.map_err(|e| e.to_string());
    if let Err(e) = &result {
        tracing::error!(writes = ops.len(), error = %e, "the spend journal's group commit failed");
    }
    for w in writes.drain(..) {
        if let Some(done) = w.done {
            let _ = done.send(result.clone());
        }
    }
}

/// The usage reporter of a node with a control plane.
pub struct Reporting {
    /// The reporter task.
    pub handle: ReporterHandle,
    /// Its counters (for metrics and readiness).
    pub stats: Arc<ReporterStats>,
}

/// What [`Node::submit`] answers.
pub enum Submitted {
    /// Accepted; the run id.
    Queued(String),
    /// Finished (with `wait`).
    Finished(Box<RunRecord>),
}

impl Node {
    /// Assemble a node from its parts and restore deployments from the
    /// store (loading their components).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        config: &NodeConfig,
        runtime: Arc<Runtime>,
        store: Store,
        backends: Backends,
        metrics: Arc<Metrics>,
        reporter: Option<Reporting>,
    ) -> anyhow::Result<Arc<Self>> {
        let components_dir = config.state_dir.join("components");
        std::fs::create_dir_all(&components_dir)?;
        let (recorder, journal) = spawn_recorder(store.clone());
        // Spend against leases is journaled through the same writer; the
        // leases a killed predecessor left unreturned are returned now.
        if let Some(leases) = backends.leases() {
            let unreturned = store.journal_unreturned().await?;
            leases
                .attach_journal(Journal::new(journal), unreturned)
                .await;
        }
        let node = Arc::new(Self {
            node_id: config.node_id(),
            runtime,
            store,
            scheduler: Scheduler::new(config.scheduler),
            backends,
            metrics,
            limits: RwLock::new(config.limits),
            runs_config: config.runs,
            components_dir,
            agents: RwLock::default(),
            live: Mutex::default(),
            reporter,
            draining: CancellationToken::new(),
            tasks: TaskTracker::new(),
            recorder,
        });
        // Runs a dead predecessor left behind end as cancelled, once.
        let recovered = node
            .store
            .recover_interrupted(now_ms(), now_ms() + node.retention_ms())
            .await?;
        if !recovered.is_empty() {
            tracing::warn!(
                runs = recovered.len(),
                "runs interrupted by the previous process recorded as cancelled"
            );
            node.notify_reporter();
        }
        for component in node.store.list_components().await? {
            let path = node.component_path(&component.sha256);
            if let Err(e) = node.runtime.load_file(&path).await {
                tracing::error!(sha256 = %component.sha256, error = %e, "stored component does not load");
            }
        }
        for record in node.store.list_agents().await? {
            match node.loaded(&record.spec.component) {
                Some(component) => {
                    if record.paused {
                        node.scheduler.pause(&record.id);
                    }
                    node.write_agents().insert(
                        record.id.clone(),
                        Deployment {
                            record,
                            component,
                            cancel: CancellationToken::new(),
                        },
                    );
                }
                None => {
                    tracing::error!(agent = %record.id, "agent's component is missing; not serving it")
                }
            }
        }
        Ok(node)
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.node_id
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The state store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// The usage reporter, when a control plane is configured.
    pub fn reporter(&self) -> Option<&Reporting> {
        self.reporter.as_ref()
    }

    /// Current per-run limits.
    pub fn limits(&self) -> NodeLimits {
        *self.limits.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply reloaded limits (SIGHUP): new runs use them; running ones keep
    /// theirs.
    pub fn reload_limits(&self, limits: NodeLimits, scheduler: SchedulerLimits) {
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
        self.scheduler.set_limits(scheduler);
    }

    fn retention_ms(&self) -> Millis {
        Millis::try_from(self.runs_config.retention_secs.saturating_mul(1000))
            .unwrap_or(Millis::MAX)
    }

    fn read_agents(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Deployment>> {
        self.agents.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_agents(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Deployment>> {
        self.agents.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveRun>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn component_path(&self, sha256: &str) -> PathBuf {
        self.components_dir.join(format!("{sha256}.wasm"))
    }

    fn loaded(&self, sha256: &str) -> Option<Arc<LoadedComponent>> {
        let digest: Digest = sha256.parse().ok()?;
        self.runtime.get(&digest)
    }

    fn notify_reporter(&self) {
        if let Some(reporter) = &self.reporter {
            reporter.handle.notify();
        }
    }

    // ---- components -------------------------------------------------------

    /// Store, validate and compile an uploaded component whose bytes must
    /// hash to `sha256`. Returns the record and whether it was new.
    pub async fn put_component(
        &self,
        sha256: &str,
        bytes: bytes::Bytes,
        tenant: &str,
    ) -> Result<(ComponentRecord, bool), NodeError> {
        let expected: Digest = sha256
            .parse()
            .map_err(|_| NodeError::Invalid("the component id must be 64 hex digits".into()))?;
        let actual = Digest::of(&bytes);
        if actual != expected {
            return Err(NodeError::Invalid(format!(
                "the body's sha256 is {actual}, not {expected}"
            )));
        }
        if let Some(existing) = self.store.get_component(sha256).await?
            && self.runtime.get(&expected).is_some()
        {
            return Ok((existing, false));
        }
        let component =
            self.runtime
                .load_as(bytes.to_vec(), tenant)
                .await
                .map_err(|e| match e {
                    LoadError::CompileBudgetExhausted {
                        retry_after_secs, ..
                    } => NodeError::Busy {
                        scope: format!("compile budget: {e}"),
                        retry_after: Duration::from_secs(retry_after_secs),
                    },
                    e if e.is_bad_input() => NodeError::BadComponent(e.to_string()),
                    e => NodeError::Internal(format!("loading the component: {e}")),
                })?;
        // Keep the bytes so a restart can load it again (the compiled cache
        // is keyed by engine and may be discarded).
        let path = self.component_path(sha256);
        write_atomically(&path, &bytes)
            .await
            .map_err(|e| NodeError::Internal(format!("writing {}: {e}", path.display())))?;
        let record = ComponentRecord {
            sha256: sha256.to_owned(),
            size: component.size(),
            world: component.world().name().to_owned(),
            created_at_ms: now_ms(),
        };
        self.store.put_component(&record).await?;
        Ok((record, true))
    }

    /// Every stored component.
    pub async fn list_components(&self) -> Result<Vec<ComponentRecord>, NodeError> {
        Ok(self.store.list_components().await?)
    }

    /// Remove a component no agent uses.
    pub async fn delete_component(&self, sha256: &str) -> Result<(), NodeError> {
        if self.store.get_component(sha256).await?.is_none() {
            return Err(NodeError::NotFound(format!("component {sha256}")));
        }
        let in_use = self.store.component_in_use(sha256).await?
            || self
                .read_agents()
                .values()
                .any(|d| d.record.spec.component == sha256);
        if in_use {
            return Err(NodeError::Conflict {
                code: "component_in_use",
                message: format!("component {sha256} is used by an agent"),
            });
        }
        self.store.delete_component(sha256).await?;
        if let Ok(digest) = sha256.parse::<Digest>() {
            self.runtime.unload(&digest);
        }
        let _ = tokio::fs::remove_file(self.component_path(sha256)).await;
        Ok(())
    }

    // ---- agents -----------------------------------------------------------

    /// Create or replace a deployment. The component must be an uploaded
    /// agent component; the tenant of an existing agent cannot change.
    pub async fn put_agent(
        &self,
        id: &str,
        spec: AgentSpec,
    ) -> Result<(AgentRecord, bool), NodeError> {
        validate_id("agent id", id)?;
        validate_id("tenant_id", &spec.tenant_id)?;
        let component = self.loaded(&spec.component).ok_or_else(|| {
            NodeError::Invalid(format!(
                "component {} is not on this node: upload it first",
                spec.component
            ))
        })?;
        if component.world() != delta_runtime::World::Agent {
            return Err(NodeError::Invalid(format!(
                "component {} is a {} component, not an agent",
                spec.component,
                component.world().name()
            )));
        }
        let now = now_ms();
        let existing = self.read_agents().get(id).map(|d| d.record.clone());
        if let Some(existing) = &existing
            && existing.spec.tenant_id != spec.tenant_id
        {
            return Err(NodeError::Conflict {
                code: "tenant_mismatch",
                message: format!("agent {id} belongs to another tenant"),
            });
        }
        let record = AgentRecord {
            id: id.to_owned(),
            spec,
            paused: existing.as_ref().is_some_and(|e| e.paused),
            created_at_ms: existing.as_ref().map_or(now, |e| e.created_at_ms),
            updated_at_ms: now,
        };
        self.store.put_agent(&record).await?;
        let mut agents = self.write_agents();
        let cancel = agents.get(id).map(|d| d.cancel.clone()).unwrap_or_default();
        agents.insert(
            id.to_owned(),
            Deployment {
                record: record.clone(),
                component,
                cancel,
            },
        );
        Ok((record, existing.is_none()))
    }

    /// One deployment.
    pub fn get_agent(&self, id: &str) -> Result<AgentRecord, NodeError> {
        self.read_agents()
            .get(id)
            .map(|d| d.record.clone())
            .ok_or_else(|| NodeError::NotFound(format!("agent {id}")))
    }

    /// Every deployment, by id.
    pub fn list_agents(&self) -> Vec<AgentRecord> {
        let mut agents: Vec<_> = self
            .read_agents()
            .values()
            .map(|d| d.record.clone())
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        agents
    }

    /// Remove a deployment: its queued runs are cancelled and its running
    /// ones interrupted (all recorded as `cancelled`).
    pub async fn delete_agent(&self, id: &str) -> Result<(), NodeError> {
        let removed = self.write_agents().remove(id);
        let Some(deployment) = removed else {
            return Err(NodeError::NotFound(format!("agent {id}")));
        };
        deployment.cancel.cancel();
        self.scheduler.cancel_agent(id);
        self.store.delete_agent(id).await?;
        Ok(())
    }

    /// Pause or resume a deployment.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<AgentRecord, NodeError> {
        let record = {
            let mut agents = self.write_agents();
            let deployment = agents
                .get_mut(id)
                .ok_or_else(|| NodeError::NotFound(format!("agent {id}")))?;
            deployment.record.paused = paused;
            deployment.record.updated_at_ms = now_ms();
            deployment.record.clone()
        };
        self.store.set_paused(id, paused).await?;
        if paused {
            self.scheduler.pause(id);
        } else {
            self.scheduler.resume(id);
        }
        Ok(record)
    }

    // ---- runs -------------------------------------------------------------

    /// Admit a run of agent `agent_id`. With `wait`, answer once it has
    /// finished and is durably recorded.
    pub async fn submit(
        self: &Arc<Self>,
        agent_id: &str,
        input: String,
        wait: bool,
        run_id: Option<String>,
    ) -> Result<Submitted, NodeError> {
        if self.draining.is_cancelled() {
            return Err(NodeError::Draining);
        }
        // The control plane names runs itself, so that a run is known (and
        // listed) before its node answers. It may deliver one run again (its
        // answer was lost, or its dispatcher retries): a run this node
        // already holds for the same agent is answered as if accepted now,
        // never started twice. The same id for another agent is 409.
        if let Some(id) = &run_id {
            validate_id("run id", id)?;
            if let Some(existing) = self.existing_run(id).await? {
                if existing.agent_id != agent_id {
                    return Err(run_exists(id));
                }
                return Ok(if wait && existing.status == RunStatus::Finished {
                    Submitted::Finished(Box::new(existing))
                } else {
                    Submitted::Queued(existing.id)
                });
            }
        }
        let deployment = self
            .read_agents()
            .get(agent_id)
            .cloned()
            .ok_or_else(|| NodeError::NotFound(format!("agent {agent_id}")))?;
        if deployment.record.paused {
            self.metrics
                .runs_rejected
                .with_label_values(&["paused"])
                .inc();
            return Err(NodeError::Conflict {
                code: "agent_paused",
                message: format!("agent {agent_id} is paused"),
            });
        }
        let tenant = deployment.record.spec.tenant_id.clone();
        let ticket = match self.scheduler.enqueue(&tenant, agent_id) {
            Ok(ticket) => ticket,
            Err(Refused::QueueFull { retry_after, scope }) => {
                self.metrics
                    .runs_rejected
                    .with_label_values(&["queue_full"])
                    .inc();
                return Err(NodeError::Busy {
                    scope: scope.to_string(),
                    retry_after,
                });
            }
            Err(Refused::Closed) => return Err(NodeError::Draining),
        };
        let run = NewRun {
            id: run_id.unwrap_or_else(|| format!("run_{}", uuid::Uuid::now_v7().simple())),
            agent_id: agent_id.to_owned(),
            tenant_id: tenant,
            input,
            created_at_ms: now_ms(),
        };
        let live = Arc::new(LiveRun {
            agent_id: agent_id.to_owned(),
            tenant_id: run.tenant_id.clone(),
            created_at_ms: run.created_at_ms,
            started_at_ms: AtomicI64::new(0),
            cancel: deployment.cancel.child_token(),
            log: Mutex::new(LiveLog {
                lines: Vec::new(),
                tx: None,
                closed: false,
            }),
        });
        match self.lock_live().entry(run.id.clone()) {
            // The same id submitted twice at once.
            std::collections::hash_map::Entry::Occupied(_) => return Err(run_exists(&run.id)),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&live));
            }
        }
        // From here on the run lives in a task of its own, spawned with no
        // `await` since its live entry was made: if the caller goes away
        // (the control plane's delivery cut short by its replica dying), the
        // run is still recorded and executed. Awaiting the insert here
        // instead left a live entry with no task when the request was
        // dropped, and a repeated delivery was then answered "queued"
        // forever.
        let (answer_tx, answer) = oneshot::channel();
        let node = Arc::clone(self);
        self.tasks.spawn(async move {
            if wait {
                // Written once, when it finishes, and answered then.
                let finished = node.execute(run, false, deployment, ticket, live).await;
                let _ = answer_tx.send(finished.map(|r| Submitted::Finished(Box::new(r))));
                return;
            }
            // Accepted (202): durable before it is answered.
            if let Err(e) = node.store.insert_run(&run).await {
                node.lock_live().remove(&run.id);
                let _ = answer_tx.send(Err(NodeError::from(e)));
                return;
            }
            let _ = answer_tx.send(Ok(Submitted::Queued(run.id.clone())));
            // Its outcome is read back by id; this task only runs it.
            let _ = node.execute(run, true, deployment, ticket, live).await;
        });
        answer
            .await
            .unwrap_or_else(|_| Err(NodeError::Internal("the run's task ended early".into())))
    }

    /// Wait for a slot, run, record. Never loses the run: every path ends
    /// in `finish_run`.
    async fn execute(
        self: Arc<Self>,
        run: NewRun,
        persisted_queued: bool,
        deployment: Deployment,
        ticket: crate::scheduler::Ticket,
        live: Arc<LiveRun>,
    ) -> Result<RunRecord, NodeError> {
        let permit = tokio::select! {
            permit = ticket => permit.ok(),
            _ = live.cancel.cancelled() => None,
        };
        let started = now_ms();
        let meter = RunMeter::new(Arc::clone(&self.metrics));
        let outcome_and_usage = match permit {
            None => None,
            Some(permit) => {
                // Running is shown from memory (a crash ends it as
                // cancelled either way): no write on the hot path.
                live.started_at_ms.store(started, Ordering::Relaxed);
                self.metrics.runs_running.inc();
                let report = self.invoke(&run, &deployment, &live, &meter).await;
                self.metrics.runs_running.dec();
                drop(permit);
                Some(report)
            }
        };
        let (outcome, usage_core, logs) = match outcome_and_usage {
            None => (
                Outcome::Cancelled,
                delta_runtime::Usage::default(),
                Vec::new(),
            ),
            Some(Ok(report)) => (report.outcome, report.usage, report.logs),
            Some(Err(message)) => (
                Outcome::Trap {
                    message: format!("host error: {message}"),
                },
                delta_runtime::Usage::default(),
                Vec::new(),
            ),
        };
        let (llm, messages) = meter.totals();
        let (message_log, message_log_dropped) = meter.message_log();
        let finished_at = now_ms();
        let name = outcome.name().to_owned();
        let outcome = serde_json::to_value(&outcome).unwrap_or_default();
        // The result rides along with the usage, for the control plane's
        // result webhooks, when it is small; a larger one stays here only.
        let result = serde_json::to_vec(&outcome)
            .is_ok_and(|b| b.len() <= delta_node_api::MAX_REPORTED_RESULT_BYTES)
            .then(|| outcome.clone());
        let usage = RunUsage {
            run_id: run.id.clone(),
            agent_id: run.agent_id.clone(),
            tenant_id: run.tenant_id.clone(),
            outcome: name,
            fuel_used: usage_core.fuel_used,
            wall_time_us: usage_core.wall_time_us,
            peak_memory_bytes: usage_core.peak_memory_bytes,
            llm,
            messages,
            finished_at_ms: finished_at,
            message_log,
            message_log_dropped,
            kv: meter.kv_counts(),
            http: meter.http_counts(),
            agent_messages: meter.agent_message_counts(),
            result,
        };
        let finished = FinishedRun {
            run_id: run.id.clone(),
            outcome,
            logs: serde_json::to_value(&logs).unwrap_or_default(),
            usage: usage.clone(),
            expires_at_ms: finished_at.saturating_add(self.retention_ms()),
            started_at_ms: permit_started(started, &usage),
        };
        let accepted = (!persisted_queued).then(|| run.clone());
        let recorded = self.record(accepted, &finished).await;
        self.observe(&usage);
        live.close();
        self.lock_live().remove(&run.id);
        recorded?;
        self.notify_reporter();
        Ok(RunRecord {
            id: run.id,
            agent_id: run.agent_id,
            tenant_id: run.tenant_id,
            status: RunStatus::Finished,
            outcome: Some(finished.outcome),
            logs: Some(finished.logs),
            usage: Some(usage),
            created_at_ms: run.created_at_ms,
            started_at_ms: finished.started_at_ms,
            finished_at_ms: Some(finished_at),
            expires_at_ms: Some(finished.expires_at_ms),
        })
    }

    /// One invocation; `Err` is a host-side failure (not the guest's).
    async fn invoke(
        &self,
        run: &NewRun,
        deployment: &Deployment,
        live: &Arc<LiveRun>,
        meter: &Arc<RunMeter>,
    ) -> Result<delta_runtime::RunReport, String> {
        let spec = &deployment.record.spec;
        let limits = self.limits().for_run(
            spec.limits.fuel,
            spec.limits.memory_bytes,
            spec.limits.timeout_ms,
        );
        let capabilities = self.backends.for_run(
            &spec.grants,
            meter,
            Some(Arc::clone(live) as Arc<dyn delta_host_api::LogSink>),
        );
        let invocation = AgentInvocation {
            context: CallContext {
                tenant_id: run.tenant_id.as_str().into(),
                agent_id: run.agent_id.as_str().into(),
                run_id: run.id.as_str().into(),
            },
            input: run.input.clone(),
            limits,
            capabilities,
            cancel: live.cancel.clone(),
        };
        // The scheduler keeps executions below the pool size; a Busy here
        // means instances outlived their runs briefly (e.g. a dropped store
        // being torn down), so a short retry is enough.
        let mut backoff = Duration::from_millis(2);
        loop {
            match self
                .runtime
                .run_agent(&deployment.component, invocation.clone())
                .await
            {
                Err(RunError::Busy) if backoff < Duration::from_secs(1) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Ok(report) => return Ok(report),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Record a finished run through the group commit, with a few retries:
    /// the store is local, so a failure is rare and usually transient.
    async fn record(
        &self,
        accepted: Option<NewRun>,
        finished: &FinishedRun,
    ) -> Result<(), NodeError> {
        let mut attempt = 0;
        loop {
            let (done, result) = oneshot::channel();
            let job = RecordJob {
                accepted: accepted.clone(),
                finished: finished.clone(),
                done,
            };
            let result = match self.recorder.send(job).await {
                Ok(()) => result
                    .await
                    .unwrap_or_else(|_| Err(StoreError::Invalid("the recorder stopped".into()))),
                Err(_) => Err(StoreError::Invalid("the recorder stopped".into())),
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(run = %finished.run_id, error = %e, attempt, "recording a finished run");
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(run = %finished.run_id, error = %e, "a finished run could not be recorded");
                    return Err(e.into());
                }
            }
        }
    }

    fn observe(&self, usage: &RunUsage) {
        let m = &self.metrics;
        m.runs
            .with_label_values(&[usage.tenant_id.as_str(), usage.outcome.as_str()])
            .inc();
        m.run_duration
            .with_label_values(&[usage.outcome.as_str()])
            .observe(usage.wall_time_us as f64 / 1e6);
        m.fuel_used
            .with_label_values(&[usage.tenant_id.as_str()])
            .inc_by(usage.fuel_used);
        if usage.wall_time_us > 0 {
            m.peak_memory.observe(usage.peak_memory_bytes as f64);
        }
    }

    /// The run `id` if this node has it, live or stored.
    async fn existing_run(&self, id: &str) -> Result<Option<RunRecord>, NodeError> {
        match self.get_run(id).await {
            Ok(record) => Ok(Some(record)),
            Err(NodeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A run, live or stored. A live run is shown from memory (`queued` or
    /// `running`); it reaches the store when it finishes.
    pub async fn get_run(&self, id: &str) -> Result<RunRecord, NodeError> {
        let live = self.lock_live().get(id).cloned();
        if let Some(live) = live {
            let started = live.started_at_ms.load(Ordering::Relaxed);
            return Ok(RunRecord {
                id: id.to_owned(),
                agent_id: live.agent_id.clone(),
                tenant_id: live.tenant_id.clone(),
                status: if started > 0 {
                    RunStatus::Running
                } else {
                    RunStatus::Queued
                },
                outcome: None,
                logs: None,
                usage: None,
                created_at_ms: live.created_at_ms,
                started_at_ms: (started > 0).then_some(started),
                finished_at_ms: None,
                expires_at_ms: None,
            });
        }
        self.store
            .get_run(id)
            .await?
            .ok_or_else(|| NodeError::NotFound(format!("run {id}")))
    }

    /// Cancel run `id`: a queued run leaves the queue and a running one is
    /// interrupted (its store and instance are dropped at the next epoch
    /// tick), either recorded as `cancelled` with its usage so far. Returns
    /// the run as it stands: still `queued` or `running` when it was live
    /// (the end follows within milliseconds), or already `finished`
    /// (nothing to do). 404 for a run this node never had.
    pub async fn cancel_run(&self, id: &str) -> Result<RunRecord, NodeError> {
        let live = self.lock_live().get(id).cloned();
        if let Some(live) = live {
            tracing::info!(run = id, agent = %live.agent_id, "run cancelled by request");
            live.cancel.cancel();
        }
        self.get_run(id).await
    }

    /// Subscribe to a run's log: `Ok(None)` when it is not live (finished;
    /// the caller serves the stored lines).
    pub fn subscribe_logs(&self, id: &str) -> Option<LogSubscription> {
        self.lock_live().get(id).map(|live| live.subscribe())
    }

    // ---- lifecycle --------------------------------------------------------

    /// Whether the node stopped admitting runs.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Runs not yet finished (queued or executing).
    pub fn runs_in_flight(&self) -> usize {
        self.lock_live().len()
    }

    /// Graceful stop: refuse new runs, let in-flight ones finish within
    /// `grace`, cancel the rest (recorded as `cancelled`), wait until every
    /// run is recorded.
    pub async fn drain(&self, grace: Duration) {
        self.draining.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            let cancelled = {
                let live = self.lock_live();
                for run in live.values() {
                    run.cancel.cancel();
                }
                live.len()
            };
            tracing::warn!(runs = cancelled, "grace period over: cancelling runs");
            self.scheduler.close();
            self.tasks.wait().await;
        }
        self.scheduler.close();
    }

    /// Delete expired runs' data (seed 004). Returns rows deleted.
    pub async fn sweep(&self) -> Result<u64, NodeError> {
        let deleted = self.store.sweep_expired(now_ms()).await?;
        self.metrics.runs_expired.inc_by(deleted);
        Ok(deleted)
    }

    /// Refresh gauges that mirror state elsewhere (called at scrape time).
    pub async fn refresh_gauges(&self) {
        let m = &self.metrics;
        m.instances_live.set(self.runtime.instances_live() as i64);
        m.queue_depth.reset();
        for (tenant, depth) in self.scheduler.queue_depths() {
            m.queue_depth
                .with_label_values(&[tenant.as_str()])
                .set(depth as i64);
        }
        match self.store.outbox_backlog().await {
            Ok((count, oldest)) => {
                m.usage_backlog.set(count as i64);
                let lag = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
                m.usage_lag.set(lag);
            }
            Err(e) => tracing::warn!(error = %e, "reading the outbox backlog"),
        }
    }

    /// Cancel the runs of agent `agent_id` that are live (for tests and
    /// operators); returns how many.
    pub fn cancel_runs_of(&self, agent_id: &str) -> usize {
        let live = self.lock_live();
        let mut n = 0;
        for run in live.values().filter(|r| r.agent_id == agent_id) {
            run.cancel.cancel();
            n += 1;
        }
        n
    }
}

/// Write `bytes` to `path` so that `path` is either absent or complete: a
/// unique temporary file beside it, synced, then renamed over it.
async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let staged = path.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
    let result = async {
        let mut file = tokio::fs::File::create(&staged).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        tokio::fs::rename(&staged, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&staged).await;
    }
    result
}

/// When a run that got a slot started (none for one cancelled in the queue).
fn permit_started(started: Millis, usage: &RunUsage) -> Option<Millis> {
    (usage.outcome != "cancelled" || usage.wall_time_us > 0).then_some(started)
}

fn run_exists(id: &str) -> NodeError {
    NodeError::Conflict {
        code: "run_exists",
        message: format!("run {id} already exists"),
    }
}

/// Ids are path segments, label values and file-name parts: keep them
/// boring.
pub fn validate_id(what: &str, id: &str) -> Result<(), NodeError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(NodeError::Invalid(format!(
            "{what} must be 1-128 characters of letters, digits, '-', '_', '.', ':'"
        )))
    }
}
