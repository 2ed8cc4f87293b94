//! Runtime configuration: every knob with its default, its trade-off and
//! what a hostile guest could do without it.

use std::path::PathBuf;
use std::time::Duration;

use delta_host_api::LogLimits;
pub use delta_precheck::PrecheckLimits;
use serde::{Deserialize, Serialize};

/// Everything a [`crate::Runtime`] needs. `RuntimeConfig::default()` is a safe
/// single-node configuration with no disk cache and in-process compilation;
/// the CLI and the node daemon set a cache directory and a compile worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Engine-wide settings (fixed for the engine's lifetime).
    pub engine: EngineSettings,
    /// How components are checked and compiled.
    pub compile: CompileSettings,
    /// Directory for compiled components (content hash + engine
    /// compatibility). `None`: compile on every load. The directory must be
    /// writable only by the node's user: a cached file is native code that is
    /// loaded without re-validation.
    pub cache_dir: Option<PathBuf>,
    /// Limits applied to invocations that do not specify their own.
    pub default_limits: InvocationLimits,
}

/// Settings baked into the Wasmtime engine; they decide how code is compiled,
/// so compiled artifacts are only reused by an engine with the same settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Meter instructions with fuel (default true). Without it invocations
    /// have no fuel limit and only the deadline stops a busy guest; it exists
    /// to measure metering overhead, never turn it off in production.
    pub consume_fuel: bool,
    /// Bytes of native stack wasm may use (default 512 KiB). Deep recursion
    /// past it traps with a stack overflow instead of crashing the host.
    pub max_wasm_stack: usize,
    /// Period of the epoch ticker (default 5 ms): the granularity of
    /// deadlines and of the periodic yield that keeps a busy guest from
    /// holding a tokio worker thread. Shorter costs more wake-ups.
    pub epoch_tick_ms: u64,
    /// Pooling allocator sizing.
    pub pooling: PoolingSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            consume_fuel: true,
            max_wasm_stack: 512 * 1024,
            epoch_tick_ms: 5,
            pooling: PoolingSettings::default(),
        }
    }
}

/// Pooling instance allocator limits. Slots are reserved up front (virtual
/// memory, not RAM), so instantiation never calls `mmap` on the hot path and
/// a node can never hold more instances than configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolingSettings {
    /// Component instances alive at once (default 128); also the bound on
    /// concurrent invocations. Each reserves address space for its memories.
    pub max_instances: u32,
    /// Core module instances per component (default 16; Rust components
    /// built for wasm32-wasip2 use four or five).
    pub max_core_instances_per_component: u32,
    /// Linear memories per component (default 4).
    pub max_memories_per_component: u32,
    /// Tables per component (default 8).
    pub max_tables_per_component: u32,
    /// Hard cap on one linear memory, in bytes (default 256 MiB); the
    /// per-invocation memory limit is clamped to it.
    pub max_memory_bytes: u64,
    /// Elements in one table (default 10,000). A guest asking for a larger
    /// table is refused at instantiation.
    pub table_elements: usize,
    /// Bytes at the start of each linear memory that are reset with `memset`
    /// and stay resident when a slot is reused (default 256 KiB), instead of
    /// being returned with `madvise` and faulted back in by the next run.
    /// Pays off when guests touch little memory near the start (a small
    /// shadow stack, as `cargo xtask guests` builds them); every slot reset
    /// costs a memset of this size.
    pub memory_keep_resident_bytes: u64,
    /// Likewise for tables (default 64 KiB): lazily initialised function
    /// tables are otherwise faulted in again by every run.
    pub table_keep_resident_bytes: u64,
    /// Bytes of one core instance's `VMContext` (default 1 MiB, Wasmtime's
    /// own default). Imports, globals and functions that escape as
    /// references take room in it; a module over it is refused before
    /// compiling rather than after.
    pub max_core_instance_bytes: u64,
}

impl Default for PoolingSettings {
    fn default() -> Self {
        Self {
            max_instances: 128,
            max_core_instances_per_component: 16,
            max_memories_per_component: 4,
            max_tables_per_component: 8,
            max_memory_bytes: 256 << 20,
            table_elements: 10_000,
            memory_keep_resident_bytes: 256 << 10,
            table_keep_resident_bytes: 64 << 10,
            max_core_instance_bytes: 1 << 20,
        }
    }
}

impl PoolingSettings {
    /// What the precheck needs to know of a slot.
    pub fn slot_limits(&self) -> delta_precheck::SlotLimits {
        delta_precheck::SlotLimits {
            table_elements: self.table_elements as u64,
            max_memory_bytes: self.max_memory_bytes,
            max_core_instance_bytes: self.max_core_instance_bytes,
        }
    }
}

/// How components are vetted and compiled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompileSettings {
    /// Where compilation happens (default in-process; the CLI and daemon use
    /// a worker subprocess so that a pathological component cannot exhaust
    /// the node's memory or stall it).
    pub mode: CompileMode,
    /// Wall-clock bound on compiling one component (default 30 s). Enforced
    /// by killing the worker, so it needs [`CompileMode::Subprocess`]. Set
    /// well above `cpu_ms`: a busy machine stretches wall time, not CPU.
    pub timeout_ms: u64,
    /// CPU time of one compile, all threads together (default 10 s, rounded
    /// up to whole seconds), set with `setrlimit(RLIMIT_CPU)` in the worker.
    /// The Rust example guests compile in about 0.2 s and the QuickJS
    /// engine component (900 KB) in about 4 s; uploads built to stall
    /// Cranelift are stopped here. Subprocess mode only.
    pub cpu_ms: u64,
    /// Address-space bound of the compile worker (default 512 MiB), set
    /// with `setrlimit(RLIMIT_AS)` in the worker. Subprocess mode only.
    pub max_memory_bytes: u64,
    /// Structural bounds checked before compiling.
    pub precheck: PrecheckLimits,
    /// Compiles running at once on this runtime (default 2); more wait
    /// their turn, owners (tenants) taking turns.
    pub max_concurrent: usize,
    /// Compiles one owner (a tenant) may run at once (default: one less
    /// than `max_concurrent`, at least 1), so that one tenant's uploads
    /// leave a place for another's. Loads that name no owner (the CLI, a
    /// node restoring its agents) are bounded by `max_concurrent` alone.
    pub max_concurrent_per_owner: Option<usize>,
    /// Seconds of compilation one owner (a tenant) may use in any hour
    /// (default 600); past it its uploads are refused until older compiles
    /// leave the window. Cache hits cost nothing.
    pub budget_secs_per_hour: u64,
}

impl Default for CompileSettings {
    fn default() -> Self {
        Self {
            mode: CompileMode::InProcess,
            timeout_ms: 30_000,
            cpu_ms: 10_000,
            max_memory_bytes: 512 << 20,
            precheck: PrecheckLimits::default(),
            max_concurrent: 2,
            max_concurrent_per_owner: None,
            budget_secs_per_hour: 600,
        }
    }
}

/// Where Cranelift runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileMode {
    /// In the calling process (tests, tools). Time and memory are bounded
    /// only by the pre-checks.
    InProcess,
    /// In a child process (`program args... compile-worker`-style) that
    /// applies its own rlimits; killed after the timeout.
    Subprocess {
        /// Executable that runs [`crate::compile::worker_main`].
        program: PathBuf,
        /// Arguments placed before the worker's own.
        args: Vec<String>,
    },
}

/// Limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvocationLimits {
    /// Fuel (roughly wasm instructions) the run may burn (default 1e9,
    /// about a second of compute).
    pub fuel: u64,
    /// Total linear memory of the instance, in bytes (default 64 MiB);
    /// clamped to [`PoolingSettings::max_memory_bytes`].
    pub memory_bytes: u64,
    /// Wall-clock deadline, in milliseconds (default 10 s), covering
    /// instantiation, guest code and host calls.
    pub timeout_ms: u64,
    /// Largest output body accepted, in bytes (default 1 MiB).
    pub max_output_bytes: u64,
    /// Bytes of guest stdout and of stderr kept each (default 64 KiB); the
    /// rest is counted and dropped.
    pub max_stdio_bytes: u64,
    /// Logging bounds.
    pub log: LogLimits,
}

impl Default for InvocationLimits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            memory_bytes: 64 << 20,
            timeout_ms: 10_000,
            max_output_bytes: 1 << 20,
            max_stdio_bytes: 64 << 10,
            log: LogLimits::default(),
        }
    }
}

impl InvocationLimits {
    /// The deadline as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}
