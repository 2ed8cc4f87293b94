//! Runtime benchmarks. Each target is a ratio to a baseline measured in the
//! same run (the machine is shared and noisy):
//!
//! - `cold_path`: new store + instantiate + `run` of hello-agent through
//!   Delta, against bare Wasmtime instantiating a trivial component from an
//!   `InstancePre` and calling one export (same engine, no WASI, no limits).
//!   Target: Delta's median <= 5x the baseline's; issue 15's target is
//!   <= 3x `bare_wasmtime_hello_agent_instantiate` (the same component,
//!   imports as traps, no WASI). `delta_email_bot_refused` shows how the
//!   cold path grows with the component (`cargo xtask peers` reads these).
//! - `fuel`: json-churn (JSON parse + serialise, branchy) with fuel metering
//!   on and off, epoch interruption on in both. Target: <= 20 % overhead.
//! - `load`: loading hello-agent from the disk cache against compiling it.
//!   Target: cache hit >= 20x faster.
//! - `host_call`: guest -> host -> guest round trip of `budget.remaining`
//!   (budget-probe calling it 0 and 1,000 times in one run), against an
//!   empty async host import called 0 and 1,000 times from a WAT component
//!   on the same engine. Per call = (t(1000) - t(0)) / 1000. Target:
//!   <= 2 µs median.
//! - `js`: the same measures for a JavaScript agent (QuickJS inside the
//!   sandbox, `delta-js`), side by side with the Rust agents: a cold run of
//!   `examples/js/hello.js` (pre-initialised snapshot) against hello-agent
//!   (target <= 10x); what a run would add without the snapshot
//!   (instantiating the bare engine and loading the script); one
//!   `budget.remaining` call from JS (x0 / x1000, as in `host_call`);
//!   preparing a script and compiling its component. Component sizes and
//!   per-instance memory are printed once (not timed).
//!
//! Run: `cargo bench --bench runtime`; figures are recorded in
//! `benches/README.md`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use delta_guest_artifacts as guests;
use delta_host_api::CallContext;
use delta_runtime::{
    AgentInvocation, CompileMode, InvocationLimits, Outcome, Runtime, RuntimeConfig,
};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
}

fn invocation(input: &str, limits: InvocationLimits) -> AgentInvocation {
    AgentInvocation {
        context: CallContext {
            tenant_id: "bench".into(),
            agent_id: "bench".into(),
            run_id: "bench".into(),
        },
        input: input.to_owned(),
        limits,
        capabilities: Default::default(),
        cancel: Default::default(),
    }
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache")),
        ..RuntimeConfig::default()
    }
}

const TRIVIAL: &str = r#"(component
  (core module $m (func (export "f") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func (export "f") (result u32) (canon lift (core func $i "f"))))"#;

fn cold_path(c: &mut Criterion) {
    let rt = tokio();
    let delta = Runtime::new(config()).expect("runtime");
    let hello = rt
        .block_on(delta.load_file(guests::HELLO_AGENT.as_ref()))
        .expect("load hello");

    // Baseline: the same engine, a trivial component, no WASI, no limits.
    let engine = delta.engine().clone();
    let trivial = Component::new(&engine, TRIVIAL).expect("trivial component");
    let linker = Linker::<()>::new(&engine);
    let pre = linker.instantiate_pre(&trivial).expect("pre");

    // The floor `cargo xtask peers` compares against: the same hello-agent
    // component on the same engine (pooling, copy-on-write images), every
    // import a trap instead of WASI and Delta's host API, so nothing but
    // Wasmtime's own instantiation (three core modules, data segments) is
    // timed. Not called: `run` needs the imports it has not got.
    let hello_bare = Component::from_file(&engine, guests::HELLO_AGENT).expect("hello component");
    let mut trapping = Linker::<()>::new(&engine);
    trapping
        .define_unknown_imports_as_traps(&hello_bare)
        .expect("trapping imports");
    let hello_bare_pre = trapping.instantiate_pre(&hello_bare).expect("hello pre");
    let email = rt
        .block_on(delta.load_file(guests::EMAIL_BOT.as_ref()))
        .expect("load email-bot");

    density(&rt);

    let mut group = c.benchmark_group("cold_path");
    group.bench_function("bare_wasmtime_hello_agent_instantiate", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = Store::new(&engine, ());
            store.set_fuel(1 << 40).expect("fuel");
            store.set_epoch_deadline(1 << 40);
            black_box(
                hello_bare_pre
                    .instantiate_async(&mut store)
                    .await
                    .expect("instantiate"),
            );
        })
    });
    group.bench_function("bare_wasmtime_trivial", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = Store::new(&engine, ());
            store.set_fuel(1 << 40).expect("fuel");
            store.set_epoch_deadline(1 << 40);
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
            let f = instance
                .get_typed_func::<(), (u32,)>(&mut store, "f")
                .expect("f");
            black_box(f.call_async(&mut store, ()).await.expect("call"))
        })
    });
    group.bench_function("delta_hello_agent", |b| {
        b.to_async(&rt).iter(|| async {
            let report = delta
                .run_agent(
                    &hello,
                    invocation(r#"{"name":"Bench"}"#, InvocationLimits::default()),
                )
                .await
                .expect("run");
            debug_assert!(matches!(report.outcome, Outcome::Completed { .. }));
            black_box(report)
        })
    });
    // A slightly larger component (101 KB against hello-agent's 95 KB) that
    // makes a host call: no messaging capability is granted, so the send is
    // refused and the run ends with the agent error, as cheaply as Delta
    // can refuse it. The cold path's growth with size: this, hello-agent
    // and `js/cold_js_hello_snapshot` (1 MB).
    group.bench_function("delta_email_bot_refused", |b| {
        b.to_async(&rt).iter(|| async {
            let report = delta
                .run_agent(
                    &email,
                    invocation(
                        r#"{"to":"a@example.com","name":"Bench"}"#,
                        InvocationLimits::default(),
                    ),
                )
                .await
                .expect("run");
            black_box(report)
        })
    });
    group.finish();
}

/// With `DELTA_BENCH_DENSITY=N` (`cargo xtask peers` sets it), not timed:
/// the resident memory of N live bare instances of hello-agent (Delta's
/// default pool), and how many instances one process can hold with 64 MiB
/// slots. Printed as `density: key=value` lines for the harness to read.
fn density(rt: &tokio::runtime::Runtime) {
    let Some(live) = std::env::var("DELTA_BENCH_DENSITY")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0)
    else {
        return;
    };
    // Instances kept alive at once, as many as the pool holds.
    let hold = |engine: &wasmtime::Engine, component: &Component, n: u32| {
        let mut linker = Linker::<()>::new(engine);
        linker
            .define_unknown_imports_as_traps(component)
            .expect("trapping imports");
        let pre = linker.instantiate_pre(component).expect("pre");
        let mut held = Vec::new();
        let mut refusal = None;
        for _ in 0..n {
            let mut store = Store::new(engine, ());
            store.set_fuel(1 << 40).expect("fuel");
            store.set_epoch_deadline(1 << 40);
            match rt.block_on(pre.instantiate_async(&mut store)) {
                Ok(instance) => held.push((store, instance)),
                Err(e) => {
                    refusal = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        (held, refusal)
    };

    // The same pool Delta's node uses, with room for `live` instances.
    let mut cfg = config();
    cfg.engine.pooling.max_instances = live;
    let delta = Runtime::new(cfg).expect("runtime");
    let component = Component::from_file(delta.engine(), guests::HELLO_AGENT).expect("hello");
    let before = rss_bytes();
    let (held, refusal) = hold(delta.engine(), &component, live);
    let after = rss_bytes();
    let per = after.saturating_sub(before) / (held.len().max(1) as u64);
    eprintln!("density: bare_instances={}", held.len());
    eprintln!("density: bare_instance_rss_bytes={per}");
    if let Some(refusal) = refusal {
        eprintln!("density: bare_refusal={refusal}");
    }
    drop(held);
    drop(component);
    drop(delta);

    // The wall with 64 MiB slots: the largest pool the process can reserve
    // (each instance reserves address space for all its memories and
    // tables up front), then RAM: available memory / a live instance's RSS.
    let slot = 64u64 << 20;
    let reserves = |instances: u32| {
        let mut cfg = config();
        cfg.engine.pooling.max_instances = instances;
        cfg.engine.pooling.max_memory_bytes = slot;
        Runtime::new(cfg)
    };
    // Bisect between a pool that fits and one that does not (to 1/64).
    let (mut fits, mut too_big) = (0u32, 1u32 << 20);
    let mut shown = false;
    while too_big - fits > too_big / 64 {
        let mid = fits + (too_big - fits) / 2;
        match reserves(mid) {
            Ok(_) => fits = mid,
            Err(e) => {
                if !shown {
                    shown = true;
                    eprintln!(
                        "density: pool_refusal={}",
                        format!("{e:#}").replace(' ', "_")
                    );
                }
                too_big = mid;
            }
        }
    }
    eprintln!(
        "density: slot_bytes={slot} memories_per_instance={} address_space_wall_instances={}",
        delta_runtime::RuntimeConfig::default()
            .engine
            .pooling
            .max_memories_per_component,
        fits
    );
    eprintln!("density: mem_available_bytes={}", mem_available_bytes());
}

/// This process's resident set, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:") * 1024
}

fn mem_available_bytes() -> u64 {
    proc_kib("/proc/meminfo", "MemAvailable:") * 1024
}

fn proc_kib(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn fuel(c: &mut Criterion) {
    let rt = tokio();
    let input = r#"{"iterations": 200}"#;
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    let mut group = c.benchmark_group("fuel");
    group.sample_size(30);
    for (name, consume_fuel) in [("json_churn_fuel_on", true), ("json_churn_fuel_off", false)] {
        let mut config = config();
        config.engine.consume_fuel = consume_fuel;
        let runtime = Runtime::new(config).expect("runtime");
        let churn = rt
            .block_on(runtime.load_file(guests::JSON_CHURN.as_ref()))
            .expect("load json-churn");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let report = runtime
                    .run_agent(&churn, invocation(input, limits))
                    .await
                    .expect("run");
                assert!(
                    matches!(report.outcome, Outcome::Completed { .. }),
                    "{report:?}"
                );
                black_box(report)
            })
        });
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let rt = tokio();
    let bytes = std::fs::read(guests::HELLO_AGENT).expect("hello");
    let digest = delta_runtime::Digest::of(&bytes);
    let mut group = c.benchmark_group("load");
    group.sample_size(10);

    let mut compile_config = config();
    compile_config.cache_dir = None;
    compile_config.compile.mode = CompileMode::InProcess;
    let compiling = Runtime::new(compile_config).expect("runtime");
    group.bench_function("compile_hello_agent", |b| {
        b.to_async(&rt).iter(|| async {
            compiling.unload(&digest);
            black_box(compiling.load(bytes.clone()).await.expect("load"))
        })
    });

    let cached = Runtime::new(config()).expect("runtime");
    rt.block_on(cached.load(bytes.clone()))
        .expect("warm the disk cache");
    group.bench_function("cache_hit_hello_agent", |b| {
        b.to_async(&rt).iter(|| async {
            cached.unload(&digest);
            black_box(cached.load(bytes.clone()).await.expect("load"))
        })
    });
    group.finish();
}

/// A ledger answering from memory: the bench measures the host-call path,
/// not storage.
struct FixedLedger;

#[async_trait::async_trait]
impl delta_host_api::BudgetLedger for FixedLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        _amount: u64,
        _purpose: &str,
    ) -> Result<delta_host_api::Reservation, delta_host_api::LedgerError> {
        Err(delta_host_api::LedgerError::UnknownAccount(
            ctx.agent_id.to_string(),
        ))
    }
    async fn settle(
        &self,
        r: &delta_host_api::Reservation,
        _used: u64,
    ) -> Result<delta_host_api::Settlement, delta_host_api::LedgerError> {
        Err(delta_host_api::LedgerError::UnknownReservation(
            r.id.clone(),
        ))
    }
    async fn release(
        &self,
        r: &delta_host_api::Reservation,
    ) -> Result<(), delta_host_api::LedgerError> {
        Err(delta_host_api::LedgerError::UnknownReservation(
            r.id.clone(),
        ))
    }
    async fn remaining(
        &self,
        _ctx: &CallContext,
    ) -> Result<delta_host_api::budget::Balance, delta_host_api::budget::BudgetError> {
        Ok(delta_host_api::budget::Balance {
            allocated: 1_000,
            spent: 0,
            reserved: 0,
            available: 1_000,
        })
    }
    async fn request(
        &self,
        _ctx: &CallContext,
        _amount: u64,
        _reason: String,
    ) -> Result<delta_host_api::budget::TokenRequest, delta_host_api::budget::BudgetError> {
        Err(delta_host_api::budget::BudgetError::NoParent)
    }
    async fn poll_request(
        &self,
        _ctx: &CallContext,
        _id: String,
    ) -> Result<delta_host_api::budget::TokenRequest, delta_host_api::budget::BudgetError> {
        Err(delta_host_api::budget::BudgetError::UnknownRequest)
    }
}

const EMPTY_IMPORT_LOOP: &str = r#"(component
  (import "host" (instance $host (export "empty" (func))))
  (core func $empty (canon lower (func $host "empty")))
  (core module $m
    (import "host" "empty" (func $empty))
    (func (export "run") (param i32)
      block $done
        loop $again
          local.get 0
          i32.eqz
          br_if $done
          call $empty
          local.get 0
          i32.const 1
          i32.sub
          local.set 0
          br $again
        end
      end))
  (core instance $i (instantiate $m (with "host" (instance (export "empty" (func $empty))))))
  (func (export "run") (param "n" u32) (canon lift (core func $i "run"))))"#;

fn host_call(c: &mut Criterion) {
    let rt = tokio();
    let delta = Runtime::new(config()).expect("runtime");
    let probe = rt
        .block_on(delta.load_file(guests::BUDGET_PROBE.as_ref()))
        .expect("load budget-probe");
    let ledger: std::sync::Arc<dyn delta_host_api::BudgetLedger> = std::sync::Arc::new(FixedLedger);

    let engine = delta.engine().clone();
    let component = Component::new(&engine, EMPTY_IMPORT_LOOP).expect("component");
    let mut linker = Linker::<()>::new(&engine);
    linker
        .instance("host")
        .expect("instance")
        .func_wrap_async("empty", |_store, (): ()| Box::new(async { Ok(()) }))
        .expect("empty import");
    let pre = linker.instantiate_pre(&component).expect("pre");

    let mut group = c.benchmark_group("host_call");
    for calls in [0u32, 1_000] {
        let input = format!(r#"{{"calls": {calls}}}"#);
        let ledger = ledger.clone();
        group.bench_function(format!("budget_remaining_x{calls}"), |b| {
            b.to_async(&rt).iter(|| async {
                let mut invocation = invocation(&input, InvocationLimits::default());
                invocation.capabilities.budget = Some(ledger.clone());
                let report = delta.run_agent(&probe, invocation).await.expect("run");
                debug_assert!(matches!(report.outcome, Outcome::Completed { .. }));
                black_box(report)
            })
        });
        group.bench_function(format!("empty_import_x{calls}"), |b| {
            b.to_async(&rt).iter(|| async {
                let mut store = Store::new(&engine, ());
                store.set_fuel(1 << 40).expect("fuel");
                store.set_epoch_deadline(1 << 40);
                let instance = pre
                    .instantiate_async(&mut store)
                    .await
                    .expect("instantiate");
                let run = instance
                    .get_typed_func::<(u32,), ()>(&mut store, "run")
                    .expect("run");
                run.call_async(&mut store, (calls,)).await.expect("call");
            })
        });
    }
    group.finish();
}

/// Store data for instantiating the bare engine outside Delta's runtime.
struct BareJs {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for BareJs {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

const HELLO_JS: &str = include_str!("../examples/js/hello.js");
const BUDGET_JS: &str = r#"import { budget } from "delta";
export function run({ input }) {
  let available = 0;
  for (let i = 0; i < input.calls; i++) available = budget.remaining().available;
  return { calls: input.calls, available };
}"#;

fn js(c: &mut Criterion) {
    let rt = tokio();
    let delta = Runtime::new(config()).expect("runtime");
    let preparer = delta_js::Preparer::new(Default::default()).expect("preparer");
    let hello_rust = rt
        .block_on(delta.load_file(guests::HELLO_AGENT.as_ref()))
        .expect("load hello");
    let hello_bytes = rt
        .block_on(preparer.prepare(HELLO_JS, delta_js::Kind::Agent))
        .expect("prepare hello.js");
    let hello_js = rt
        .block_on(delta.load(hello_bytes.clone()))
        .expect("load hello.js");
    let budget_js = rt
        .block_on(async {
            let bytes = preparer.prepare(BUDGET_JS, delta_js::Kind::Agent).await?;
            Ok::<_, delta_js::JsError>(delta.load(bytes).await)
        })
        .expect("prepare budget script")
        .expect("load budget script");
    let input = r#"{"name":"Bench"}"#;
    let peak = |component| {
        let report = rt
            .block_on(delta.run_agent(component, invocation(input, InvocationLimits::default())))
            .expect("run");
        assert!(
            matches!(report.outcome, Outcome::Completed { .. }),
            "{report:?}"
        );
        report.usage.peak_memory_bytes
    };
    eprintln!(
        "js: engine component {} bytes; hello.js prepared {} bytes; hello-agent {} bytes",
        delta_js::Kind::Agent.engine_component().len(),
        hello_bytes.len(),
        std::fs::metadata(guests::HELLO_AGENT)
            .map(|m| m.len())
            .unwrap_or(0),
    );
    eprintln!(
        "js: peak linear memory per instance: hello.js {} bytes, hello-agent {} bytes",
        peak(&hello_js),
        peak(&hello_rust),
    );

    let mut group = c.benchmark_group("js");
    for (name, component) in [
        ("cold_rust_hello_agent", &hello_rust),
        ("cold_js_hello_snapshot", &hello_js),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let report = delta
                    .run_agent(component, invocation(input, InvocationLimits::default()))
                    .await
                    .expect("run");
                debug_assert!(matches!(report.outcome, Outcome::Completed { .. }));
                black_box(report)
            })
        });
    }

    // Without a snapshot a run would first instantiate the bare engine and
    // have QuickJS set up, parse and evaluate the script: this is that part.
    let engine = delta.engine().clone();
    let bare = Component::new(&engine, delta_js::Kind::Agent.engine_component()).expect("engine");
    let mut linker = Linker::<BareJs>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    delta_js::trap_capabilities(&engine, &mut linker, &bare).expect("traps");
    let bare_pre = linker.instantiate_pre(&bare).expect("pre");
    group.bench_function("no_snapshot_engine_and_script_setup", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = Store::new(
                &engine,
                BareJs {
                    wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
                    table: Default::default(),
                },
            );
            store.set_fuel(1 << 40).expect("fuel");
            store.set_epoch_deadline(1 << 40);
            let instance = bare_pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
            let init = instance
                .get_typed_func::<(String,), (Result<(), String>,)>(&mut store, "wizer-initialize")
                .expect("init");
            let (loaded,) = init
                .call_async(&mut store, (HELLO_JS.to_owned(),))
                .await
                .expect("call");
            loaded.expect("hello.js loads");
            black_box(store)
        })
    });

    let ledger: std::sync::Arc<dyn delta_host_api::BudgetLedger> = std::sync::Arc::new(FixedLedger);
    for calls in [0u32, 1_000] {
        let input = format!(r#"{{"calls": {calls}}}"#);
        let ledger = ledger.clone();
        let budget_js = &budget_js;
        let delta = &delta;
        group.bench_function(format!("js_budget_remaining_x{calls}"), |b| {
            b.to_async(&rt).iter(|| async {
                let mut invocation = invocation(&input, InvocationLimits::default());
                invocation.capabilities.budget = Some(ledger.clone());
                let report = delta.run_agent(budget_js, invocation).await.expect("run");
                debug_assert!(matches!(report.outcome, Outcome::Completed { .. }));
                black_box(report)
            })
        });
    }

    group.sample_size(10);
    group.bench_function("prepare_hello_js", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                preparer
                    .prepare(HELLO_JS, delta_js::Kind::Agent)
                    .await
                    .expect("prepare"),
            )
        })
    });
    let mut compile_config = config();
    compile_config.cache_dir = None;
    compile_config.compile.mode = CompileMode::InProcess;
    let compiling = Runtime::new(compile_config).expect("runtime");
    let digest = delta_runtime::Digest::of(&hello_bytes);
    group.bench_function("compile_prepared_hello_js", |b| {
        b.to_async(&rt).iter(|| async {
            compiling.unload(&digest);
            black_box(compiling.load(hello_bytes.clone()).await.expect("load"))
        })
    });
    group.finish();
}

criterion_group!(benches, cold_path, fuel, load, host_call, js);
criterion_main!(benches);
