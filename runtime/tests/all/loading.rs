//! Loading components: bad input gets a clear error, compilation is bounded,
//! and the compiled cache is reused.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use delta_guest_artifacts as guests;
use delta_runtime::{CompileMode, InvocationLimits, LoadError, Outcome, RunError, Runtime};

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("guest exists")
}

#[tokio::test]
async fn not_a_wasm_file_is_refused() {
    let rt = runtime();
    let err = rt
        .load(b"#!/bin/sh\necho hi\n".to_vec())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, LoadError::NotWasm), "{err}");
    assert!(err.is_bad_input());
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn truncated_component_is_malformed() {
    let rt = runtime();
    let mut hello = bytes(guests::HELLO_AGENT);
    hello.truncate(hello.len() / 2);
    let err = rt.load(hello).await.err().expect("refused");
    assert!(matches!(err, LoadError::Malformed(_)), "{err}");
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn core_module_is_refused_with_a_hint() {
    let rt = runtime();
    let module = wat::parse_str(r#"(module (func (export "run")))"#).expect("wat");
    let err = rt.load(module).await.err().expect("refused");
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

/// A component with `imports`, exporting one `func()` named `export`.
fn exporting_func(imports: &str, export: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
             {imports}
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func (export "{export}") (canon lift (core func $i "f"))))"#
    ))
    .expect("wat")
}

#[tokio::test]
async fn component_of_no_delta_world_names_what_it_exports() {
    let rt = runtime();
    let component = exporting_func("", "hello");
    let err = rt.load(component).await.err().expect("refused");
    let LoadError::WrongWorld(message) = &err else {
        panic!("expected wrong world, got {err}");
    };
    assert!(
        message.contains("`run`") && message.contains("hello"),
        "{message}"
    );
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn a_wasi_http_proxy_component_is_refused_as_the_wrong_world() {
    // hello-http is what `cargo xtask peers` serves with `wasmtime serve`:
    // a real `wasi:http/proxy` component, not an agent. Delta must say so
    // (and name its export) rather than fail to link it or run it.
    let rt = runtime();
    let err = rt
        .load_file(guests::HELLO_HTTP.as_ref())
        .await
        .err()
        .expect("refused");
    let LoadError::WrongWorld(message) = &err else {
        panic!("expected wrong world, got {err}");
    };
    assert!(message.contains("incoming-handler"), "{message}");
    assert!(err.is_bad_input(), "{err}");
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn component_with_a_wrongly_typed_run_export_is_refused() {
    let rt = runtime();
    // `run` with no parameters and no result: not the agent world's `run`.
    let component = exporting_func("", "run");
    let err = rt.load(component).await.err().expect("refused");
    assert!(matches!(err, LoadError::WrongWorld(_)), "{err}");
}

#[tokio::test]
async fn component_importing_an_unknown_interface_names_it() {
    let rt = runtime();
    let component = exporting_func(
        r#"(import "acme:evil/backdoor@1.0.0" (instance (export "open" (func))))"#,
        "run",
    );
    let err = rt.load(component).await.err().expect("refused");
    assert!(matches!(err, LoadError::UnsupportedImport(_)), "{err}");
    assert!(
        err.to_string().contains("acme:evil/backdoor@1.0.0"),
        "{err}"
    );
}

#[tokio::test]
async fn verifier_component_cannot_be_run_as_an_agent() {
    let rt = runtime();
    let verifier = load(&rt, guests::JSON_VERIFIER).await;
    assert_eq!(verifier.world(), delta_runtime::World::Verifier);
    let err = rt
        .run_agent(&verifier, invocation("{}", InvocationLimits::default()))
        .await
        .expect_err("wrong world");
    assert!(
        matches!(
            err,
            RunError::WrongWorld {
                expected: "agent",
                actual: "verifier"
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_task_json_is_refused_before_running() {
    let rt = runtime();
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let err = rt
        .run_agent(&hello, invocation("{not json", InvocationLimits::default()))
        .await
        .expect_err("refused");
    assert!(matches!(err, RunError::InvalidInput(_)), "{err}");
}

#[tokio::test]
async fn oversize_file_is_refused_before_reading() {
    let mut config = config();
    config.compile.precheck.max_component_bytes = 1024;
    let rt = Runtime::new(config).expect("runtime");
    let err = rt
        .load_file(guests::HELLO_AGENT.as_ref())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, LoadError::TooLarge { limit: 1024, .. }),
        "{err}"
    );
}

/// A component whose single function nests blocks `depth` deep.
fn deeply_nested(depth: usize) -> Vec<u8> {
    let body = format!("{}{}", "(block ".repeat(depth), ")".repeat(depth));
    wat::parse_str(format!("(component (core module (func {body})))")).expect("wat")
}

#[tokio::test]
async fn component_over_the_structural_bounds_is_refused_before_compiling() {
    let rt = runtime();
    let err = rt.load(deeply_nested(5_000)).await.err().expect("refused");
    assert!(
        matches!(
            err,
            LoadError::OverBounds {
                what: "block nesting depth",
                value: 5_000,
                limit: 1_000
            }
        ),
        "{err}"
    );
}

/// Many functions with bodies large enough to keep Cranelift busy for a
/// while: a component that is legal but expensive to compile.
fn expensive_component(functions: usize) -> Vec<u8> {
    let body =
        "(local.set 0 (i64.add (local.get 0) (i64.mul (local.get 0) (i64.const 7))))".repeat(40);
    let funcs = format!("(func (param i64) (result i64) {body} (local.get 0))\n").repeat(functions);
    // The exported `run` type gets it past the precheck's world check.
    wat::parse_str(format!(
        "(component (core module {funcs}) (type $run (func)) (export \"run\" (type $run)))"
    ))
    .expect("wat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_timeout_kills_the_worker_and_the_runtime_keeps_serving() {
    let mut config = config();
    config.compile.timeout_ms = 300;
    // hello-agent is warmed into the shared cache by a runtime without the
    // tight timeout, so only the expensive component meets it.
    load(&runtime(), guests::HELLO_AGENT).await;
    let rt = std::sync::Arc::new(Runtime::new(config).expect("runtime"));
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let started = Instant::now();
    let slow = {
        let rt = rt.clone();
        tokio::spawn(async move {
            let result = rt.load(expensive_component(20_000)).await;
            (result.err(), started.elapsed())
        })
    };
    let mut hello_done = Duration::ZERO;
    for _ in 0..3 {
        let report = run_hello(&rt, &hello).await;
        assert!(
            matches!(report.outcome, Outcome::Completed { .. }),
            "{report:?}"
        );
        hello_done = started.elapsed();
    }
    let (err, slow_done) = slow.await.expect("join");
    let err = err.expect("compile must not finish in 300 ms");
    assert!(
        matches!(err, LoadError::CompileTimeout { timeout_ms: 300 }),
        "{err}"
    );
    assert!(hello_done < slow_done, "runs waited for the compile");
    assert!(slow_done < Duration::from_secs(10), "{slow_done:?}");
}

#[tokio::test]
async fn compile_memory_limit_stops_the_worker() {
    let mut config = config();
    config.compile.max_memory_bytes = 48 << 20;
    config.cache_dir = None;
    let rt = Runtime::new(config).expect("runtime");
    let err = rt
        .load(expensive_component(2_000))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, LoadError::CompileOutOfMemory { limit } if limit == 48 << 20),
        "{err}"
    );
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn second_load_comes_from_the_disk_cache_without_compiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = config();
    first.cache_dir = Some(dir.path().to_owned());
    let rt = Runtime::new(first.clone()).expect("runtime");
    load(&rt, guests::HELLO_AGENT).await;
    drop(rt);
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("read").collect();
    assert_eq!(entries.len(), 1, "one cache entry, no staging leftovers");

    // A runtime that cannot compile at all: loading works only if nothing
    // is compiled.
    let mut second = first;
    second.compile.mode = CompileMode::Subprocess {
        program: "/nonexistent/compile-worker".into(),
        args: Vec::new(),
    };
    let rt = Runtime::new(second.clone()).expect("runtime");
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let report = run(
        &rt,
        &hello,
        r#"{"name":"Cache"}"#,
        InvocationLimits::default(),
    )
    .await;
    assert!(matches!(report.outcome, Outcome::Completed { .. }));
    // ...and a component not in the cache really does need the compiler.
    let err = rt
        .load_file(guests::HOSTILE_PANIC.as_ref())
        .await
        .err()
        .expect("no compiler");
    assert!(matches!(err, LoadError::Worker(_)), "{err}");
}

#[tokio::test]
async fn damaged_cache_entry_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config();
    config.cache_dir = Some(dir.path().to_owned());
    let rt = Runtime::new(config.clone()).expect("runtime");
    load(&rt, guests::HELLO_AGENT).await;
    drop(rt);
    let entry = std::fs::read_dir(dir.path())
        .expect("read")
        .next()
        .expect("an entry")
        .expect("entry")
        .path();
    std::fs::write(&entry, b"garbage").expect("damage it");
    let rt = Runtime::new(config).expect("runtime");
    assert_hello_works(&rt).await;
    assert!(
        std::fs::metadata(&entry).expect("entry").len() > 1000,
        "entry rewritten"
    );
}

#[tokio::test]
async fn verifier_judges_a_submission() {
    let rt = runtime();
    let verifier = load(&rt, guests::JSON_VERIFIER).await;
    let ctx = invocation("{}", InvocationLimits::default()).context;
    let spec = r#"{"expected": {"answer": 42}}"#.to_owned();
    let pass = rt
        .run_verifier(
            &verifier,
            ctx.clone(),
            spec.clone(),
            r#"{"answer": 42}"#.into(),
            InvocationLimits::default(),
        )
        .await
        .expect("run");
    let Outcome::Completed { output } = &pass.outcome else {
        panic!("{pass:?}")
    };
    let verdict: serde_json::Value = serde_json::from_str(output).expect("json");
    assert_eq!(verdict["passed"], true, "{output}");
    assert_eq!(verdict["score_milli"], 1000, "{output}");
    let fail = rt
        .run_verifier(
            &verifier,
            ctx,
            spec,
            r#"{"answer": 41}"#.into(),
            InvocationLimits::default(),
        )
        .await
        .expect("run");
    let Outcome::Completed { output } = &fail.outcome else {
        panic!("{fail:?}")
    };
    let verdict: serde_json::Value = serde_json::from_str(output).expect("json");
    assert_eq!(verdict["passed"], false, "{output}");
}

#[tokio::test]
async fn structurally_sound_but_invalid_code_is_refused_by_the_compiler() {
    let rt = runtime();
    // Parses (so the precheck passes) but does not validate: the function
    // promises an i32 and returns nothing.
    let component = wat::parse_str(
        "(component (core module (func (result i32))) (type $run (func)) (export \"run\" (type $run)))",
    )
    .expect("wat");
    let err = rt.load(component).await.err().expect("refused");
    assert!(matches!(err, LoadError::Invalid(_)), "{err}");
    assert!(err.is_bad_input());
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn an_agent_cannot_be_run_as_a_verifier() {
    let rt = runtime();
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let ctx = invocation("{}", InvocationLimits::default()).context;
    let err = rt
        .run_verifier(
            &hello,
            ctx,
            "{}".into(),
            "{}".into(),
            InvocationLimits::default(),
        )
        .await
        .expect_err("wrong world");
    assert!(
        matches!(
            err,
            RunError::WrongWorld {
                expected: "verifier",
                actual: "agent"
            }
        ),
        "{err}"
    );
}
