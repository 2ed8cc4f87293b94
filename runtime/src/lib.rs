//! Delta's runtime: runs untrusted agent components under hard limits.
//!
//! A [`Runtime`] owns one Wasmtime engine (pooling allocator, fuel metering,
//! epoch interruption with a single ticker thread), one linker with WASI
//! (granting nothing) and the `delta:agent` capabilities, and a cache of
//! loaded components. [`Runtime::load`] vets bytes cheaply
//! ([`precheck`]), compiles them under time and memory bounds ([`compile`]),
//! caches the result on disk by content hash, and pre-instantiates.
//! [`Runtime::run_agent`] and [`Runtime::run_verifier`] run one invocation in a
//! fresh store and always return a [`RunReport`] whose [`Outcome`] says how
//! the guest ended; a hostile guest never becomes a host error.
//!
//! This crate calls capabilities only through `delta-host-api`'s traits and
//! knows nothing of HTTP, tenants' storage or the control plane.

pub mod cache;
pub mod compile;
mod component;
pub mod config;
mod engine;
pub mod error;
mod gate;
mod invoke;
pub mod outcome;
pub mod precheck;
mod run_state;
mod stdio;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delta_host_api::bindings::delta::agent::types::Task;
use delta_host_api::{CallContext, Capabilities};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

pub use cache::Digest;
pub use component::{Description, Item, LoadedComponent, World};
pub use config::{
    CompileMode, CompileSettings, EngineSettings, InvocationLimits, PoolingSettings,
    PrecheckLimits, RuntimeConfig,
};
pub use error::{LoadError, RunError};
pub use outcome::{Outcome, OutcomeClass, RunReport, Usage};
pub use run_state::RunState;

use cache::DiskCache;
use engine::{Allocation, EpochTicker};
use gate::CompileGate;

type Slot = Arc<OnceCell<Arc<LoadedComponent>>>;

/// The engine, linker and component cache of one node (or one CLI run).
pub struct Runtime {
    config: RuntimeConfig,
    engine: Engine,
    linker: Linker<RunState>,
    disk: Option<DiskCache>,
    loaded: Mutex<HashMap<Digest, Slot>>,
    /// Instances between successful instantiation and the end of their call
    /// (shared with each invocation's guard).
    live: Arc<AtomicUsize>,
    /// Admission to compilation (concurrency, per-owner budget, turns).
    gate: Arc<CompileGate>,
    _ticker: EpochTicker,
}

/// What one agent invocation needs besides the component.
#[derive(Debug, Clone)]
pub struct AgentInvocation {
    /// Who is running (ids are the host's, never the guest's).
    pub context: CallContext,
    /// The task input: a JSON document.
    pub input: String,
    /// Limits; clamped by the engine's pool sizes.
    pub limits: InvocationLimits,
    /// Capability backends; `Capabilities::default()` configures none.
    pub capabilities: Capabilities,
    /// Cancels the run (it ends as [`Outcome::Cancelled`]).
    pub cancel: CancellationToken,
}

impl Runtime {
    /// Build the engine, linker and ticker for `config`.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = engine::build_engine(&config.engine, Allocation::Pooling)
            .map_err(|e| anyhow::anyhow!("building the Wasmtime engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
        delta_host_api::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking delta:agent capabilities: {e:#}"))?;
        let disk = match &config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine).map_err(|e| {
                anyhow::anyhow!("opening the component cache {}: {e}", dir.display())
            })?),
            None => None,
        };
        let ticker = EpochTicker::start(
            engine.clone(),
            Duration::from_millis(config.engine.epoch_tick_ms.max(1)),
        )?;
        let gate = CompileGate::new(
            config.compile.max_concurrent,
            config.compile.max_concurrent_per_owner,
            Duration::from_secs(config.compile.budget_secs_per_hour),
        );
        Ok(Self {
            config,
            engine,
            linker,
            disk,
            loaded: Mutex::default(),
            live: Arc::default(),
            gate,
            _ticker: ticker,
        })
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The Wasmtime engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Guest instances alive right now: instantiated and not yet returned.
    /// Each holds a slot of the pooling allocator.
    pub fn instances_live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Components loaded in memory.
    pub fn loaded(&self) -> Vec<Arc<LoadedComponent>> {
        self.lock_loaded()
            .values()
            .filter_map(|slot| slot.get().cloned())
            .collect()
    }

    /// Read and [`load`](Self::load) a component file, refusing an over-size
    /// file before reading it.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<LoadedComponent>, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        precheck::over_size(size, &self.config.compile.precheck)?;
        let bytes = tokio::fs::read(path).await.map_err(io)?;
        self.load(bytes).await
    }

    /// Compiles running and waiting for a place right now.
    pub fn compiles(&self) -> (usize, usize) {
        (self.gate.running(), self.gate.waiting())
    }

    /// Vet, compile (or fetch from cache) and pre-instantiate a component.
    /// Concurrent loads of the same bytes compile once. A compile waits for
    /// a place under [`CompileSettings::max_concurrent`]; loads that name no
    /// owner are not charged to any budget (see [`Runtime::load_as`]).
    pub async fn load(&self, bytes: Vec<u8>) -> Result<Arc<LoadedComponent>, LoadError> {
        self.load_as(bytes, gate::ANONYMOUS).await
    }

    /// [`load`](Self::load) on behalf of `owner` (a tenant): its compiles
    /// take turns with other owners' and are charged to its hourly budget
    /// ([`CompileSettings::budget_secs_per_hour`]); a cache hit costs none.
    pub async fn load_as(
        &self,
        bytes: Vec<u8>,
        owner: &str,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let limits = self.config.compile.precheck;
        let pool = self.config.engine.pooling.clone();
        // Linear, but tens of milliseconds for a large file: keep it off the
        // async workers.
        let (bytes, shape, digest) = tokio::task::spawn_blocking(move || {
            let shape = precheck::precheck(&bytes, &limits, &pool)?;
            let digest = Digest::of(&bytes);
            Ok::<_, LoadError>((bytes, shape, digest))
        })
        .await
        .map_err(|e| LoadError::Worker(e.to_string()))??;

        let slot = self.slot(digest);
        let result = slot
            .get_or_try_init(|| async {
                let component = self.compile_or_fetch(&bytes, &digest, owner).await?;
                let (pre, description) =
                    component::prepare(&self.engine, &self.linker, &component)?;
                Ok(Arc::new(LoadedComponent {
                    digest,
                    size: bytes.len() as u64,
                    shape,
                    pre,
                    description,
                }))
            })
            .await
            .cloned();
        if result.is_err() {
            self.forget_failed(&digest);
        }
        result
    }

    /// A component loaded earlier, by digest.
    pub fn get(&self, digest: &Digest) -> Option<Arc<LoadedComponent>> {
        self.lock_loaded()
            .get(digest)
            .and_then(|slot| slot.get().cloned())
    }

    /// Drop a component from memory (its disk cache entry stays). Runs in
    /// flight keep their own reference.
    pub fn unload(&self, digest: &Digest) -> bool {
        self.lock_loaded().remove(digest).is_some()
    }

    /// Run one task through an agent component.
    pub async fn run_agent(
        &self,
        component: &LoadedComponent,
        invocation: AgentInvocation,
    ) -> Result<RunReport, RunError> {
        if component.world() != World::Agent {
            return Err(RunError::WrongWorld {
                expected: World::Agent.name(),
                actual: component.world().name(),
            });
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&invocation.input)
            .map_err(|e| RunError::InvalidInput(e.to_string()))?;
        let task = Task {
            run_id: invocation.context.run_id.to_string(),
            agent_id: invocation.context.agent_id.to_string(),
            tenant_id: invocation.context.tenant_id.to_string(),
            input: invocation.input,
            deadline_ms: invocation.limits.timeout_ms,
        };
        self.invoke(
            component,
            invoke::Call::Agent(task),
            invocation.context,
            invocation.limits,
            invocation.capabilities,
            invocation.cancel,
        )
        .await
    }

    /// Verify a bounty submission with a verifier component. The verdict is
    /// the JSON output of [`Outcome::Completed`].
    pub async fn run_verifier(
        &self,
        component: &LoadedComponent,
        context: CallContext,
        spec: String,
        submission: String,
        limits: InvocationLimits,
    ) -> Result<RunReport, RunError> {
        if component.world() != World::Verifier {
            return Err(RunError::WrongWorld {
                expected: World::Verifier.name(),
                actual: component.world().name(),
            });
        }
        for doc in [&spec, &submission] {
            serde_json::from_str::<serde::de::IgnoredAny>(doc)
                .map_err(|e| RunError::InvalidInput(e.to_string()))?;
        }
        self.invoke(
            component,
            invoke::Call::Verifier { spec, submission },
            context,
            limits,
            Capabilities::default(),
            CancellationToken::new(),
        )
        .await
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Slot>> {
        // The map stays consistent even if a holder panicked: entries are
        // inserted and removed whole.
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, digest: Digest) -> Slot {
        self.lock_loaded().entry(digest).or_default().clone()
    }

    fn forget_failed(&self, digest: &Digest) {
        let mut loaded = self.lock_loaded();
        if loaded.get(digest).is_some_and(|slot| slot.get().is_none()) {
            loaded.remove(digest);
        }
    }

    async fn compile_or_fetch(
        &self,
        bytes: &[u8],
        digest: &Digest,
        owner: &str,
    ) -> Result<Component, LoadError> {
        if let Some(disk) = &self.disk {
            let entry = disk.entry(digest);
            if entry.exists() {
                match self.deserialize(&entry).await {
                    Ok(component) => return Ok(component),
                    Err(e) => {
                        // Stale or damaged entry: recompile and replace it.
                        tracing::warn!(path = %entry.display(), error = %e, "discarding cache entry");
                        let _ = std::fs::remove_file(&entry);
                    }
                }
            }
        }
        let _ticket = self.gate.enter(owner).await?;
        match &self.config.compile.mode {
            config::CompileMode::InProcess => {
                let engine = self.engine.clone();
                let owned = bytes.to_vec();
                let compiled =
                    tokio::task::spawn_blocking(move || engine.precompile_component(&owned))
                        .await
                        .map_err(|e| LoadError::Worker(e.to_string()))?
                        .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                let staged = self.stage()?;
                std::fs::write(staged.path(), &compiled).map_err(|source| LoadError::Cache {
                    path: staged.path().to_owned(),
                    source,
                })?;
                self.install(staged, digest).await
            }
            config::CompileMode::Subprocess { program, args } => {
                let staged = self.stage()?;
                compile::compile_in_subprocess(
                    program,
                    args,
                    &self.config.engine,
                    &self.config.compile,
                    bytes,
                    staged.path(),
                )
                .await?;
                self.install(staged, digest).await
            }
        }
    }

    /// A temporary file for a compiled artifact: in the cache directory when
    /// there is one (so installing it is a rename), else in the system's.
    fn stage(&self) -> Result<tempfile::NamedTempFile, LoadError> {
        let result = match &self.disk {
            Some(disk) => tempfile::Builder::new()
                .prefix(".staging-")
                .tempfile_in(disk.dir()),
            None => tempfile::NamedTempFile::new(),
        };
        result.map_err(|source| LoadError::Cache {
            path: self
                .disk
                .as_ref()
                .map(|d| d.dir().to_owned())
                .unwrap_or_else(std::env::temp_dir),
            source,
        })
    }

    /// Map a compiled artifact and, with a disk cache, move it into place.
    async fn install(
        &self,
        staged: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<Component, LoadError> {
        // The artifact was just made by our own compiler for this engine,
        // so what refuses it here is the pool's per-instance bounds (tables
        // or memories per module, instance size): the upload's fault, which
        // the precheck should have caught first.
        let component = self.deserialize(staged.path()).await.map_err(|e| {
            LoadError::Invalid(format!(
                "the component does not fit this node's instance slots: {e}"
            ))
        })?;
        if let Some(disk) = &self.disk {
            let entry = disk.entry(digest);
            staged
                .as_file()
                .sync_all()
                .map_err(|source| LoadError::Cache {
                    path: entry.clone(),
                    source,
                })?;
            staged.persist(&entry).map_err(|e| LoadError::Cache {
                path: entry,
                source: e.error,
            })?;
        }
        Ok(component)
    }

    async fn deserialize(&self, path: &Path) -> Result<Component, String> {
        let engine = self.engine.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            // SAFETY: `deserialize_file` trusts the file to be a compiled
            // artifact produced by Wasmtime for this engine. Files here are
            // written only by this runtime or its compile worker into the
            // cache directory (documented: writable by the node's user only)
            // or a private temporary file; Wasmtime still checks the header
            // and engine compatibility.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize_file(&engine, &path) };
            component.map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
