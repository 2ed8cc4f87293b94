//! The Wasmtime engine: one per runtime, configured from [`EngineSettings`],
//! plus the single epoch ticker that drives deadlines and yields.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::EngineSettings;

/// Which allocator an engine uses. Compilation output does not depend on it,
/// so the compile worker uses on-demand allocation and reserves no pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allocation {
    Pooling,
    OnDemand,
}

/// The Wasmtime configuration for `settings`. Everything that affects
/// generated code is set here and only here, so the node and its compile
/// worker always agree.
pub(crate) fn wasmtime_config(
    settings: &EngineSettings,
    allocation: Allocation,
) -> wasmtime::Result<Config> {
    // Wasmtime's `threads` feature is not compiled in, so guests cannot have
    // shared memories that outlive their store's limits.
    let mut config = Config::new();
    config
        .consume_fuel(settings.consume_fuel)
        .epoch_interruption(true)
        .max_wasm_stack(settings.max_wasm_stack)
        .parallel_compilation(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if allocation == Allocation::Pooling {
        let p = &settings.pooling;
        let instances = p.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(p.max_core_instances_per_component))
            .total_memories(instances.saturating_mul(p.max_memories_per_component))
            .total_tables(instances.saturating_mul(p.max_tables_per_component))
            .total_stacks(instances)
            .max_core_instances_per_component(p.max_core_instances_per_component)
            .max_memories_per_component(p.max_memories_per_component)
            .max_tables_per_component(p.max_tables_per_component)
            .max_memories_per_module(1)
            .max_memory_size(usize::try_from(p.max_memory_bytes).unwrap_or(usize::MAX))
            .table_elements(p.table_elements)
            .max_core_instance_size(
                usize::try_from(p.max_core_instance_bytes).unwrap_or(usize::MAX),
            )
            // Resetting a slot's memory is an madvise plus a TLB shootdown;
            // batching them cut the cold path by about a tenth. Queued slots
            // are flushed whenever the pool runs short.
            .decommit_batch_size(32)
            // Resetting with memset instead of madvise keeps the pages a
            // small guest touches resident between runs: together with small
            // guest stacks this took the cold path from 27 to 16 µs.
            .linear_memory_keep_resident(usize::try_from(p.memory_keep_resident_bytes).unwrap_or(0))
            .table_keep_resident(usize::try_from(p.table_keep_resident_bytes).unwrap_or(0));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(config)
}

/// Build the engine for `settings`.
pub(crate) fn build_engine(
    settings: &EngineSettings,
    allocation: Allocation,
) -> wasmtime::Result<Engine> {
    Engine::new(&wasmtime_config(settings, allocation)?)
}

/// One thread that advances the engine's epoch every tick. Every running
/// store checks its deadline (and yields to tokio) when the epoch moves, so a
/// single ticker serves any number of concurrent invocations.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("delta-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
