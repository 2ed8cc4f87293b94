//! One Wizer pass: instantiate the instrumented engine, let it compile and
//! evaluate the script, snapshot its state into a new component.

use wasmtime::component::{Component, Instance, Lift, Linker, ResourceTable, WasmList};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wizer::{ComponentContext, ComponentInstanceState, Wizer};

use crate::{JsError, PrepareLimits};

/// Fuel between yields to the async runtime while a script loads.
const YIELD_FUEL: u64 = 10_000_000;

/// What the engine's stderr keeps from a crash at load time.
const STDERR_BYTES: usize = 16 << 10;

struct InitState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for InitState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The clock a script's top level sees: 2026-01-01T00:00:00Z, standing still.
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1_767_225_600)
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The `{kind, message, line?, column?}` the engine returns for a refusal.
#[derive(serde::Deserialize)]
struct Refusal {
    kind: String,
    message: String,
    line: Option<u64>,
    column: Option<u64>,
}

pub(crate) async fn run(
    engine: &Engine,
    wizer: &Wizer,
    cx: &ComponentContext<'static>,
    component: &Component,
    source: &str,
    limits: &PrepareLimits,
) -> Result<Vec<u8>, JsError> {
    let engine_error = |e: wasmtime::Error| JsError::Engine(format!("{e:#}"));
    let stderr = MemoryOutputPipe::new(STDERR_BYTES);
    // Nothing granted, as at run time; the engine also refuses every
    // capability call while it is initialising. Random numbers and clocks
    // are fixed, so the same script always gives the same component (and
    // the same content hash); runs reseed what depends on them.
    let wasi = WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .secure_random(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            0x_de17a,
        ))
        .insecure_random(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            0x_de17b,
        ))
        .insecure_random_seed(0x_de17c)
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let mut store = Store::new(
        engine,
        InitState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(64)
                .build(),
        },
    );
    store.limiter(|s| &mut s.limits);
    store.set_fuel(limits.fuel).map_err(engine_error)?;
    // A top level may burn all its fuel (seconds): yield to the async
    // runtime every few milliseconds' worth so a server's other requests
    // keep being served.
    store
        .fuel_async_yield_interval(Some(YIELD_FUEL))
        .map_err(engine_error)?;

    let mut linker: Linker<InitState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
    crate::trap_capabilities(engine, &mut linker, component).map_err(engine_error)?;
    let instance = linker
        .instantiate_async(&mut store, component)
        .await
        .map_err(engine_error)?;
    let init = instance
        .get_typed_func::<(String,), (Result<(), String>,)>(&mut store, "wizer-initialize")
        .map_err(engine_error)?;
    match init.call_async(&mut store, (source.to_owned(),)).await {
        Ok((Ok(()),)) => {}
        Ok((Err(json),)) => return Err(refusal(&json)),
        Err(e) => {
            let why = match e.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => "ran out of fuel (a loop at the top level?)".to_owned(),
                Some(Trap::StackOverflow) => "overflowed the stack".to_owned(),
                _ => {
                    let said = String::from_utf8_lossy(&stderr.contents())
                        .trim()
                        .to_owned();
                    if said.is_empty() {
                        format!("crashed the engine: {e:#} (over the memory bound?)")
                    } else {
                        format!("crashed the engine: {said}")
                    }
                }
            };
            return Err(JsError::LoadLimit(why));
        }
    }
    // Wizer's accessors run on the same store; what the script left of the
    // fuel must not decide whether the snapshot can be read.
    store.set_fuel(u64::MAX).map_err(engine_error)?;
    let mut access = Access {
        store: &mut store,
        instance,
    };
    wizer
        .snapshot_component(cx, &mut access)
        .await
        .map_err(engine_error)
}

fn refusal(json: &str) -> JsError {
    let Ok(refusal) = serde_json::from_str::<Refusal>(json) else {
        return JsError::Engine(format!("unreadable refusal from the engine: {json}"));
    };
    match (refusal.kind.as_str(), refusal.line, refusal.column) {
        ("syntax", Some(line), Some(column)) => JsError::Syntax {
            message: refusal.message,
            line,
            column,
        },
        ("syntax" | "load", _, _) => JsError::Load(refusal.message),
        ("no-entry", _, _) => JsError::NoEntry(refusal.message),
        _ => JsError::Engine(refusal.message),
    }
}

/// Wizer reads the instance's memories and globals through accessor
/// functions its instrumentation exported; this calls them.
struct Access<'a> {
    store: &'a mut Store<InitState>,
    instance: Instance,
}

impl Access<'_> {
    async fn call<R: Lift + Send + Sync + 'static>(&mut self, instance: &str, func: &str) -> R {
        let found = self
            .instance
            .get_export_index(&mut *self.store, None, instance)
            .and_then(|i| {
                self.instance
                    .get_export_index(&mut *self.store, Some(&i), func)
            });
        let Some(index) = found else {
            // Wizer only asks for accessors its instrumentation added.
            panic!("wizer accessor {instance}#{func} is missing");
        };
        match self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, index)
        {
            Ok(f) => match f.call_async(&mut *self.store, ()).await {
                Ok((r,)) => r,
                Err(e) => panic!("wizer accessor {instance}#{func} trapped: {e:#}"),
            },
            Err(e) => panic!("wizer accessor {instance}#{func} has another type: {e:#}"),
        }
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let list: WasmList<u8> = self.call(instance, func).await;
        contents(list.as_le_slice(&*self.store));
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call::<f32>(instance, func).await.to_bits()
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call::<f64>(instance, func).await.to_bits()
    }
}
