//! Hostile uploads: components made to cost the compiler as much as the
//! prechecks let through. Each is refused (before compiling, or by the
//! compile worker's CPU and memory bounds) or compiled, always as bad input
//! rather than a host error, and the runtime serves the next load.

use crate::common;

use std::fmt::Write as _;
use std::time::Instant;

use common::{assert_hello_works, config};
use delta_guest_artifacts as guests;
use delta_runtime::{LoadError, Runtime};

/// A valid component whose core module holds `funcs` and exports `run`
/// (with a signature that is not the agent world's: what matters here is
/// the compile, and a wrong signature is refused only after it).
fn component(funcs: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
             (core module $m
               (func (export "run"))
               {funcs})
             (core instance $i (instantiate $m))
             (func (export "run") (canon lift (core func $i "run"))))"#
    ))
    .expect("valid wat")
}

/// Many small functions, just under the function-count bound.
fn many_functions(count: usize) -> Vec<u8> {
    let mut funcs = String::new();
    for i in 0..count {
        let _ = write!(funcs, "(func (result i32) i32.const {i})");
    }
    component(&funcs)
}

/// A handful of huge straight-line bodies, each under the per-function
/// bound: what register allocation is slowest on.
fn large_bodies(functions: usize, ops: usize) -> Vec<u8> {
    let mut funcs = String::new();
    for _ in 0..functions {
        funcs.push_str("(func (param i32) (result i32) (local i32 i32 i32)");
        for i in 0..ops {
            let _ = write!(
                funcs,
                " local.get {} i32.const {i} i32.add local.set {}",
                i % 4,
                (i + 1) % 4
            );
        }
        funcs.push_str(" local.get 1)");
    }
    component(&funcs)
}

/// Functions exported from the core module, far more than any agent has.
fn many_exports(count: usize) -> Vec<u8> {
    let mut funcs = String::new();
    for i in 0..count {
        let _ = write!(funcs, "(func (export \"f{i}\"))");
    }
    component(&funcs)
}

/// Many core modules, each with many data segments.
fn many_modules(modules: usize, segments: usize) -> Vec<u8> {
    let mut inner = String::new();
    for _ in 0..modules {
        inner.push_str("(core module (memory 1)");
        for i in 0..segments {
            let _ = write!(inner, " (data (i32.const {i}) \"x\")");
        }
        inner.push(')');
    }
    wat::parse_str(format!(
        r#"(component {inner}
             (core module $m (func (export "run")))
             (core instance $i (instantiate $m))
             (func (export "run") (canon lift (core func $i "run"))))"#
    ))
    .expect("valid wat")
}

/// A runtime whose compile worker may use 5 s of CPU and 512 MiB of
/// address space per upload (the default memory bound; the default CPU
/// bound is 10 s, for the JavaScript engine's component).
fn bounded_runtime() -> Runtime {
    let mut config = config();
    // No shared disk cache: each case must really compile.
    config.cache_dir = None;
    config.compile.cpu_ms = 5_000;
    assert_eq!(config.compile.max_memory_bytes, 512 << 20);
    Runtime::new(config).expect("runtime")
}

#[tokio::test]
async fn hostile_uploads_are_bad_input_and_the_runtime_keeps_serving() {
    let rt = bounded_runtime();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("60,000 exports", many_exports(60_000)),
        ("99,000 small functions", many_functions(99_000)),
        ("8 bodies of 40,000 operations", large_bodies(8, 40_000)),
        ("64 modules of 150 segments", many_modules(63, 150)),
    ];
    for (name, bytes) in cases {
        let started = Instant::now();
        let result = rt.load_as(bytes, "tenant-a").await;
        let took = started.elapsed();
        match result {
            // A wrong `run` signature: compiled, then refused.
            Err(LoadError::WrongWorld(_)) => {}
            Err(e) => assert!(e.is_bad_input(), "{name}: a host error: {e}"),
            Ok(_) => panic!("{name}: accepted a component that is not an agent"),
        }
        eprintln!("{name}: {took:?}");
    }
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn too_many_exports_are_refused_before_compiling() {
    let rt = bounded_runtime();
    let err = rt.load(many_exports(60_000)).await.err().expect("refused");
    match err {
        LoadError::OverBounds { what, .. } => assert_eq!(what, "export count"),
        other => panic!("{other}"),
    }
    // Refused by the precheck: nothing reached the compile queue.
    assert_eq!(rt.compiles(), (0, 0));
}

#[tokio::test]
async fn a_tenant_over_its_compile_budget_is_refused_and_others_are_not() {
    let mut config = config();
    config.cache_dir = None;
    // Any real compile uses up a budget of one millisecond.
    config.compile.budget_secs_per_hour = 0;
    let rt = Runtime::new(config).expect("runtime");
    let hello = std::fs::read(guests::HELLO_AGENT).expect("hello-agent");
    // The first compile is admitted (the budget is checked on entry) and
    // charged; the next one is refused.
    rt.load_as(many_functions(10), "greedy")
        .await
        .err()
        .expect("not an agent");
    let err = rt
        .load_as(many_functions(11), "greedy")
        .await
        .err()
        .expect("over budget");
    assert!(
        matches!(err, LoadError::CompileBudgetExhausted { .. }),
        "{err}"
    );
    assert!(err.is_bad_input());
    // Another tenant compiles; a component already loaded costs nothing.
    rt.load_as(hello.clone(), "modest").await.expect("hello");
    rt.load_as(hello, "greedy")
        .await
        .expect("a cache hit is free");
}
