//! JavaScript agents and verifiers for Delta.
//!
//! A script is an ES module exporting `run(task)` (agents) or
//! `verify(spec, submission)` (verifiers). It runs in QuickJS compiled into a
//! WebAssembly component (`examples/js-agent`, `examples/js-verifier`), so it
//! lives inside the same Wasmtime sandbox, limits and capability checks as a
//! Rust agent: there is no second sandbox.
//!
//! [`Preparer::prepare`] turns a script into an ordinary Delta component, at
//! deploy time, once per script: it instantiates the engine component, calls
//! its `wizer-initialize` export with the source (QuickJS parses and compiles
//! it to bytecode and evaluates the module's top level) and snapshots the
//! instance's memory with Wizer into a new component. A run of that
//! component is then "instantiate the snapshot + call `run`": no engine
//! set-up, no parsing. The result can be cached on disk by content hash
//! ([`Preparer::prepare_cached`]); the runtime's compiled-component cache
//! then caches its machine code like any component's.
//!
//! Deploy-time evaluation is bounded (fuel, memory, the source size) and
//! sees no capabilities: a top-level `while (true) {}` is refused with
//! [`JsError::LoadLimit`], not hung on.

mod cache;
mod error;
mod snapshot;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};
use wasmtime_wizer::{ComponentContext, Wizer};

pub use error::JsError;

/// Which Delta world the script implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `export function run(task)`: an agent.
    Agent,
    /// `export function verify(spec, submission)`: a bounty verifier.
    Verifier,
}

impl Kind {
    /// The function the script must export.
    pub fn entry(self) -> &'static str {
        match self {
            Kind::Agent => "run",
            Kind::Verifier => "verify",
        }
    }

    /// The engine component for this kind.
    pub fn engine_component(self) -> &'static [u8] {
        match self {
            Kind::Agent => delta_guest_artifacts::JS_AGENT_BYTES,
            Kind::Verifier => delta_guest_artifacts::JS_VERIFIER_BYTES,
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Agent => 0,
            Kind::Verifier => 1,
        }
    }
}

/// Scripts prepared at the same time by one [`Preparer`]; more wait.
pub const MAX_CONCURRENT_PREPARES: usize = 2;

/// Bounds on what preparing one script may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareLimits {
    /// Largest accepted source, in bytes (UTF-8).
    pub max_source_bytes: usize,
    /// Fuel for compiling and evaluating the module's top level.
    pub fuel: u64,
    /// Linear memory the engine may grow to while doing so.
    pub memory_bytes: usize,
}

impl Default for PrepareLimits {
    fn default() -> Self {
        Self {
            // Well above hand-written agents and small bundles; a 10 MB
            // script is refused before QuickJS sees it.
            max_source_bytes: 4 << 20,
            fuel: 2_000_000_000,
            memory_bytes: 128 << 20,
        }
    }
}

/// The engine components, instrumented by Wizer and compiled once per
/// preparer (about a second of Cranelift each), then reused by every script.
struct Instrumented {
    cx: ComponentContext<'static>,
    component: Component,
}

/// Turns scripts into pre-initialised components. Cheap to share (`Arc`).
pub struct Preparer {
    engine: Engine,
    limits: PrepareLimits,
    wizer: Wizer,
    instrumented: [OnceLock<Result<Arc<Instrumented>, String>>; 2],
    /// Preparations running at once: each may hold `memory_bytes` and a
    /// core's worth of fuel, so a burst of uploads queues instead.
    running: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Preparer {
    /// A preparer with its own (small, on-demand) Wasmtime engine.
    pub fn new(limits: PrepareLimits) -> Result<Self, JsError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| JsError::Engine(format!("{e:#}")))?;
        let mut wizer = Wizer::new();
        // Wizer would drop the core export `wizer-initialize` but not the
        // component's lift of it, producing an invalid component. The export
        // stays; the host never calls it on a prepared component.
        wizer.keep_init_func(true);
        Ok(Self {
            engine,
            limits,
            wizer,
            instrumented: [OnceLock::new(), OnceLock::new()],
            running: tokio::sync::Semaphore::new(MAX_CONCURRENT_PREPARES),
        })
    }

    /// The limits this preparer enforces.
    pub fn limits(&self) -> PrepareLimits {
        self.limits
    }

    /// Turn `source` into a pre-initialised component implementing `kind`'s
    /// world. Refuses sources over the size limit, syntax errors (with line
    /// and column), modules that fail to load or do not export the entry
    /// function, and top levels that exceed the deploy-time limits.
    pub async fn prepare(&self, source: &str, kind: Kind) -> Result<Vec<u8>, JsError> {
        if source.len() > self.limits.max_source_bytes {
            return Err(JsError::TooLarge {
                size: source.len() as u64,
                limit: self.limits.max_source_bytes as u64,
            });
        }
        let _permit = self
            .running
            .acquire()
            .await
            .map_err(|e| JsError::Engine(e.to_string()))?;
        let instrumented = self.instrumented(kind).await?;
        snapshot::run(
            &self.engine,
            &self.wizer,
            &instrumented.cx,
            &instrumented.component,
            source,
            &self.limits,
        )
        .await
    }

    /// [`prepare`](Self::prepare), reusing an earlier result stored under
    /// `dir` by the content hash of the engine, the kind and the source.
    /// Refusals are not cached (they are cheap to reproduce).
    pub async fn prepare_cached(
        &self,
        dir: &Path,
        source: &str,
        kind: Kind,
    ) -> Result<Vec<u8>, JsError> {
        let key = cache_key(source, kind);
        if let Some(bytes) = cache::get(dir, &key).await {
            return Ok(bytes);
        }
        let bytes = self.prepare(source, kind).await?;
        cache::put(dir, &key, &bytes).await?;
        Ok(bytes)
    }

    async fn instrumented(&self, kind: Kind) -> Result<Arc<Instrumented>, JsError> {
        let slot = &self.instrumented[kind.index()];
        if let Some(done) = slot.get() {
            return done.clone().map_err(JsError::Engine);
        }
        let engine = self.engine.clone();
        let wizer = Wizer::new();
        let made = tokio::task::spawn_blocking(move || {
            let (cx, wasm) = wizer
                .instrument_component(kind.engine_component())
                .map_err(|e| format!("instrumenting the {kind:?} engine: {e:#}"))?;
            let component = Component::new(&engine, &wasm)
                .map_err(|e| format!("compiling the {kind:?} engine: {e:#}"))?;
            Ok(Arc::new(Instrumented { cx, component }))
        })
        .await
        .map_err(|e| JsError::Engine(e.to_string()))?;
        // A concurrent first call may have won; either result is the same.
        let done = slot.get_or_init(|| made);
        done.clone().map_err(JsError::Engine)
    }
}

/// Content hash naming a prepared component: engine bytes, kind and source.
pub fn cache_key(source: &str, kind: Kind) -> String {
    let mut hash = Sha256::new();
    hash.update(b"delta-js/1\0");
    hash.update(Sha256::digest(kind.engine_component()));
    hash.update(kind.entry().as_bytes());
    hash.update(b"\0");
    hash.update(source.as_bytes());
    hex::encode(hash.finalize())
}

/// Define `component`'s `delta:agent` imports in `linker` as functions that
/// trap (for instantiating an engine outside Delta's runtime, as Wizer and
/// the benchmarks do). The engine never calls
/// them while loading (it refuses capability calls itself); they only have
/// to exist. (`define_unknown_imports_as_traps` would also shadow WASI
/// interfaces whose minor version differs from the linker's.)
pub fn trap_capabilities<T: 'static>(
    engine: &Engine,
    linker: &mut Linker<T>,
    component: &Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("delta:") {
            continue;
        }
        let mut defined = linker.instance(name)?;
        for (func, item) in instance.exports(engine) {
            if let ComponentItem::ComponentFunc(_) = item.ty {
                let what = format!("{name}#{func}");
                defined.func_new(func, move |_, _, _, _| {
                    Err(wasmtime::format_err!(
                        "{what} called while loading the script"
                    ))
                })?;
            }
        }
    }
    Ok(())
}
