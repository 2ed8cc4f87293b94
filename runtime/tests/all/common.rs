//! Shared set-up for the runtime's integration tests.

#![allow(dead_code, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use delta_host_api::CallContext;
use delta_runtime::{
    AgentInvocation, CompileMode, InvocationLimits, LoadedComponent, PoolingSettings, RunReport,
    Runtime, RuntimeConfig,
};

/// Compiled components shared by every test process (content-addressed, so
/// sharing is safe and saves recompiling the same guests).
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A runtime like the node's: subprocess compilation, disk cache, a small
/// pool (tests run several runtimes at once).
pub fn config() -> RuntimeConfig {
    let mut config = RuntimeConfig {
        cache_dir: Some(shared_cache()),
        ..RuntimeConfig::default()
    };
    config.compile.mode = CompileMode::Subprocess {
        program: env!("CARGO_BIN_EXE_delta-compile-worker").into(),
        args: Vec::new(),
    };
    config.engine.pooling = PoolingSettings {
        max_instances: 16,
        ..PoolingSettings::default()
    };
    config
}

pub fn runtime() -> Runtime {
    Runtime::new(config()).expect("runtime")
}

pub async fn load(runtime: &Runtime, path: &str) -> Arc<LoadedComponent> {
    runtime
        .load_file(path.as_ref())
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

pub fn invocation(input: &str, limits: InvocationLimits) -> AgentInvocation {
    AgentInvocation {
        context: CallContext {
            tenant_id: "tenant-1".into(),
            agent_id: "agent-1".into(),
            run_id: "run-1".into(),
        },
        input: input.to_owned(),
        limits,
        capabilities: Default::default(),
        cancel: Default::default(),
    }
}

pub async fn run(
    runtime: &Runtime,
    component: &LoadedComponent,
    input: &str,
    limits: InvocationLimits,
) -> RunReport {
    runtime
        .run_agent(component, invocation(input, limits))
        .await
        .expect("invocation starts")
}

/// One hello-agent run greeting Ada, with default limits.
pub async fn run_hello(runtime: &Runtime, hello: &LoadedComponent) -> RunReport {
    run(
        runtime,
        hello,
        r#"{"name":"Ada"}"#,
        InvocationLimits::default(),
    )
    .await
}

/// hello-agent must still answer correctly: used after every hostile case.
pub async fn assert_hello_works(runtime: &Runtime) {
    let hello = load(runtime, delta_guest_artifacts::HELLO_AGENT).await;
    let report = run_hello(runtime, &hello).await;
    assert_eq!(
        report.outcome,
        delta_runtime::Outcome::Completed {
            output: r#"{"greeting":"Hello, Ada!"}"#.into()
        },
        "hello-agent after a hostile run: {report:?}"
    );
}

/// One preparer per test process: it compiles the instrumented engines once.
pub fn js_preparer() -> &'static delta_js::Preparer {
    static PREPARER: std::sync::OnceLock<delta_js::Preparer> = std::sync::OnceLock::new();
    PREPARER.get_or_init(|| delta_js::Preparer::new(Default::default()).expect("JS preparer"))
}

/// Prepare a JavaScript agent (or verifier) and load it.
pub async fn load_js(
    runtime: &Runtime,
    source: &str,
    kind: delta_js::Kind,
) -> Arc<LoadedComponent> {
    let bytes = js_preparer()
        .prepare(source, kind)
        .await
        .unwrap_or_else(|e| panic!("preparing the script: {e}"));
    runtime
        .load(bytes)
        .await
        .expect("loading the prepared script")
}
