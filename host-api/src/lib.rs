//! Host side of Delta's WIT capabilities (`wit/agent.wit`).
//!
//! One module per imported interface: [`log`], [`llm`], [`messaging`],
//! [`budget`], [`kv`], [`http`], [`agents`]. Each capability has a narrow
//! backend trait ([`LogSink`], [`LlmGateway`], [`Messenger`],
//! [`BudgetLedger`], [`KvBackend`], [`HttpClient`], [`AgentBus`]) that the runtime and the
//! node wire to real backends; the per-invocation [`HostState`] implements the
//! generated `Host` traits by checking the run's deadline and cancellation,
//! then forwarding to the backend, or answering the WIT's typed
//! `not-configured` error when no backend is configured.
//!
//! This crate does not own Wasmtime's engine, stores or scheduling (that is
//! `delta-runtime`); it only links the capability imports into a
//! [`wasmtime::component::Linker`].

pub mod agents;
pub mod bindings;
pub mod budget;
pub mod http;
pub mod kv;
pub mod llm;
pub mod log;
pub mod messaging;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{HasSelf, Linker};

pub use agents::AgentBus;
pub use budget::{BudgetLedger, LedgerError, Reservation, Settlement};
pub use http::HttpClient;
pub use kv::KvBackend;
pub use llm::LlmGateway;
pub use log::{LogLimits, LogSink, LogState};
pub use messaging::Messenger;

/// Who is calling: the identity every backend scopes its work to.
///
/// Backends must use these ids (never guest-supplied ones) for budgets,
/// allow-lists and audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// Tenant that owns the agent.
    pub tenant_id: Arc<str>,
    /// The agent deployment.
    pub agent_id: Arc<str>,
    /// The run (one invocation).
    pub run_id: Arc<str>,
}

/// The capability backends available to one run. `None` means "not
/// configured": the guest gets the WIT's `not-configured` error.
///
/// Cheap to clone (all `Arc`s); built once per deployment and handed to each
/// run.
#[derive(Clone, Default)]
pub struct Capabilities {
    /// Backend for `delta:agent/llm`.
    pub llm: Option<Arc<dyn LlmGateway>>,
    /// Backend for `delta:agent/messaging`.
    pub messenger: Option<Arc<dyn Messenger>>,
    /// Backend for `delta:agent/budget`.
    pub budget: Option<Arc<dyn BudgetLedger>>,
    /// Backend for `delta:agent/kv` (checks the agent's grant itself).
    pub kv: Option<Arc<dyn KvBackend>>,
    /// Backend for `delta:agent/http` (checks the agent's grant itself).
    pub http: Option<Arc<dyn HttpClient>>,
    /// Backend for `delta:agent/agents` (checks the agent's grant itself).
    pub agents: Option<Arc<dyn AgentBus>>,
    /// Where accepted log lines are forwarded as they arrive (e.g. a live log
    /// stream). Lines are also kept in the run's [`LogState`].
    pub log_sink: Option<Arc<dyn LogSink>>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("llm", &self.llm.is_some())
            .field("messenger", &self.messenger.is_some())
            .field("budget", &self.budget.is_some())
            .field("kv", &self.kv.is_some())
            .field("http", &self.http.is_some())
            .field("agents", &self.agents.is_some())
            .field("log_sink", &self.log_sink.is_some())
            .finish()
    }
}

/// A host call was cut short because the run must stop. Returned as a trap,
/// so the guest never continues after it; the runtime maps it to the run's
/// outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// The run's wall-clock deadline passed while the guest waited on a host
    /// call.
    #[error("the run's deadline passed during a host call")]
    Deadline,
    /// The run was cancelled (agent deleted, node draining) during a host call.
    #[error("the run was cancelled during a host call")]
    Cancelled,
}

/// Per-invocation state of the capabilities: identity, backends, log bounds,
/// deadline and cancellation.
pub struct HostState {
    ctx: CallContext,
    caps: Capabilities,
    log: LogState,
    deadline: Instant,
    cancel: CancellationToken,
}

impl HostState {
    /// State for one run that must end by `deadline` or when `cancel` fires.
    pub fn new(
        ctx: CallContext,
        caps: Capabilities,
        log_limits: LogLimits,
        deadline: Instant,
        cancel: CancellationToken,
    ) -> Self {
        let log = LogState::new(log_limits, caps.log_sink.clone());
        Self {
            ctx,
            caps,
            log,
            deadline,
            cancel,
        }
    }

    /// The caller's identity.
    pub fn context(&self) -> &CallContext {
        &self.ctx
    }

    /// The run's log lines and counters.
    pub fn log(&self) -> &LogState {
        &self.log
    }

    /// Take the run's log state out (at the end of the run).
    pub fn take_log(&mut self) -> LogState {
        std::mem::take(&mut self.log)
    }

    /// Time left before the deadline (zero when passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Await `fut` unless the deadline passes or the run is cancelled first;
    /// those become traps so the guest stops at once.
    async fn guarded<F: Future>(&self, fut: F) -> wasmtime::Result<F::Output> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Interrupted::Cancelled.into()),
            _ = tokio::time::sleep_until(self.deadline) => Err(Interrupted::Deadline.into()),
            out = fut => Ok(out),
        }
    }
}

/// Access to the [`HostState`] inside a store's data.
pub trait HostView: Send {
    /// The run's capability state.
    fn host(&mut self) -> &mut HostState;
}

/// Link every `delta:agent` import (log, llm, messaging, budget, kv, http,
/// agents) into `linker`. Both worlds are served by the same linker: a verifier simply
/// imports fewer interfaces.
pub fn add_to_linker<T: HostView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn get<T: HostView>(t: &mut T) -> &mut HostState {
        t.host()
    }
    use bindings::delta::agent as wit;
    wit::types::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::log::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::llm::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::messaging::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::budget::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::kv::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::http::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    wit::agents::add_to_linker::<T, HasSelf<HostState>>(linker, get::<T>)?;
    Ok(())
}

impl bindings::delta::agent::types::Host for HostState {}
