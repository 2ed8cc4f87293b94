//! Errors of loading components and of setting up invocations. A guest's own
//! misbehaviour is never an error here: it is an [`crate::Outcome`].

use std::path::PathBuf;

/// Why a component could not be loaded. Each variant is the caller's fault
/// (bad input) except `Compile*` on resource exhaustion, `Cache` and `Io`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is larger than [`crate::PrecheckLimits::max_component_bytes`].
    #[error("component is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly file (missing the \\0asm header)")]
    NotWasm,
    /// A core module was given where a component is required.
    #[error(
        "this is a core WebAssembly module, not a component; build the agent for \
         wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The binary is truncated or malformed.
    #[error("malformed component: {0}")]
    Malformed(String),
    /// A cheap structural bound was exceeded before compiling.
    #[error("component refused before compiling: {what} is {value}, over the limit of {limit}")]
    OverBounds {
        /// What was measured (e.g. "function count").
        what: &'static str,
        /// The measured value.
        value: u64,
        /// The configured bound.
        limit: u64,
    },
    /// Wasmtime rejected the component (invalid code, unsupported feature).
    #[error("component failed to compile: {0}")]
    Invalid(String),
    /// Compilation took longer than the configured timeout.
    #[error("compiling the component took longer than {timeout_ms} ms; it was stopped")]
    CompileTimeout {
        /// The configured bound.
        timeout_ms: u64,
    },
    /// Compilation used more CPU time than the configured bound.
    #[error("compiling the component used more than {cpu_ms} ms of CPU time; it was stopped")]
    CompileCpuExceeded {
        /// The configured bound.
        cpu_ms: u64,
    },
    /// Compilation needed more memory than the configured bound.
    #[error("compiling the component needed more than {limit} bytes of memory; it was stopped")]
    CompileOutOfMemory {
        /// The configured bound.
        limit: u64,
    },
    /// The owner (tenant) used up its compile time for the hour.
    #[error(
        "this tenant used {used_ms} ms of compilation in the last hour, over its budget of \
         {budget_ms} ms; retry in {retry_after_secs} s"
    )]
    CompileBudgetExhausted {
        /// Compile time used in the window.
        used_ms: u64,
        /// The budget.
        budget_ms: u64,
        /// When enough of it frees up.
        retry_after_secs: u64,
    },
    /// The compile worker failed in an unexpected way (host problem).
    #[error("compile worker failed: {0}")]
    Worker(String),
    /// The component is not one of the Delta worlds.
    #[error("component does not match a Delta world: {0}")]
    WrongWorld(String),
    /// The component imports something this runtime does not provide.
    #[error("component imports what this node does not provide: {0}")]
    UnsupportedImport(String),
    /// The on-disk cache could not be used.
    #[error("compiled-component cache at {path}: {source}")]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Reading the component failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl From<delta_precheck::PrecheckError> for LoadError {
    fn from(e: delta_precheck::PrecheckError) -> Self {
        use delta_precheck::PrecheckError as P;
        match e {
            P::TooLarge { size, limit } => LoadError::TooLarge { size, limit },
            P::NotWasm => LoadError::NotWasm,
            P::CoreModule => LoadError::CoreModule,
            P::Malformed(m) => LoadError::Malformed(m),
            P::OverBounds { what, value, limit } => LoadError::OverBounds { what, value, limit },
            P::WrongWorld(m) => LoadError::WrongWorld(m),
            P::UnsupportedImport(m) => LoadError::UnsupportedImport(m),
        }
    }
}

impl LoadError {
    /// Whether the error is the input's fault (as opposed to the host's).
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            LoadError::Worker(_) | LoadError::Cache { .. } | LoadError::Io { .. }
        )
    }
}

/// Why an invocation could not start (the node's problem, not the guest's).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The component is for another world than the call expects.
    #[error("component implements the `{actual}` world, not `{expected}`")]
    WrongWorld {
        /// The world the call needs.
        expected: &'static str,
        /// The component's world.
        actual: &'static str,
    },
    /// Every pooled instance slot is in use.
    #[error("no free instance slot on this node; retry later")]
    Busy,
    /// The task input is not valid JSON.
    #[error("task input is not valid JSON: {0}")]
    InvalidInput(String),
    /// The store could not be set up (host problem).
    #[error("setting up the invocation failed: {0}")]
    Setup(String),
}
