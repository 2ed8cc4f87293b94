//! A compile storm (issue 13): tenant A uploads components built to stall
//! Cranelift (eight straight-line bodies of 40,000 operations, each stopped
//! by the worker's 5 s CPU bound and refused as bad input), two at once,
//! while tenant B deploys hello-agent. Prints B's load time alone and
//! during the storm (median of five), on a runtime like a node's: two
//! compile places, subprocess workers (`delta compile-worker`), no disk
//! cache. Twice: with the default per-tenant share (one place of two) and
//! with one tenant allowed both places (the behaviour before the share).
//!
//! Issue 13's target: B's deploy during the storm within 2x its time alone.
//! Run: `cargo bench --bench compile_storm --profile dev`; figures are
//! recorded in `benches/README.md`. Not criterion: a sample takes seconds.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use delta_guest_artifacts as guests;
use delta_runtime::{CompileMode, LoadError, Runtime, RuntimeConfig};

const SAMPLES: usize = 5;
const STORM: usize = 2;

fn runtime(per_owner: Option<usize>) -> Runtime {
    let mut config = RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    };
    config.compile.mode = CompileMode::Subprocess {
        program: env!("CARGO_BIN_EXE_delta").into(),
        args: vec!["compile-worker".into()],
    };
    config.compile.cpu_ms = 5_000;
    config.compile.max_concurrent = 2;
    config.compile.max_concurrent_per_owner = per_owner;
    Runtime::new(config).expect("runtime")
}

/// `bytes` with a custom section naming `tag` appended: the same component
/// under a new digest, so that every load really compiles.
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = format!("delta-bench-{tag}");
    // Both lengths stay under 128: one LEB128 byte each.
    let len = u8::try_from(name.len()).expect("short name");
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(len + 1);
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    out
}

/// What register allocation is slowest on (as `runtime/tests/all/uploads.rs`).
fn stalling(tag: &str) -> Vec<u8> {
    let mut funcs = String::new();
    for _ in 0..8 {
        funcs.push_str("(func (param i32) (result i32) (local i32 i32 i32)");
        for i in 0..40_000 {
            let _ = write!(
                funcs,
                " local.get {} i32.const {i} i32.add local.set {}",
                i % 4,
                (i + 1) % 4
            );
        }
        funcs.push_str(" local.get 1)");
    }
    let wat = format!(
        r#"(component
             (core module $m (func (export "run")) {funcs})
             (core instance $i (instantiate $m))
             (func (export "run") (canon lift (core func $i "run"))))"#
    );
    variant(&wat::parse_str(wat).expect("valid wat"), tag)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn deploy_b(rt: &Runtime, hello: &[u8], tag: &str) -> Duration {
    let started = Instant::now();
    rt.load_as(variant(hello, tag), "tenant-b")
        .await
        .expect("hello-agent loads");
    started.elapsed()
}

async fn one(label: &str, per_owner: Option<usize>, hello: &[u8], storms: &[Vec<Vec<u8>>]) {
    let rt = Arc::new(runtime(per_owner));
    let mut alone = Vec::new();
    for i in 0..SAMPLES {
        alone.push(deploy_b(&rt, hello, &format!("alone-{i}-{per_owner:?}")).await);
    }
    let mut during = Vec::new();
    for (i, storm) in storms.iter().enumerate() {
        let uploads: Vec<_> = storm
            .iter()
            .map(|bytes| {
                let (rt, bytes) = (rt.clone(), bytes.clone());
                tokio::spawn(async move { rt.load_as(bytes, "tenant-a").await.map(|_| ()) })
            })
            .collect();
        // The storm takes the compile places it may.
        tokio::time::sleep(Duration::from_millis(300)).await;
        during.push(deploy_b(&rt, hello, &format!("storm-{i}-{per_owner:?}")).await);
        for upload in uploads {
            match upload.await.expect("task") {
                Err(LoadError::WrongWorld(_)) => {}
                Err(e) if e.is_bad_input() => {}
                other => panic!("a stalling upload was not refused as bad input: {other:?}"),
            }
        }
    }
    let (alone, during) = (median(alone), median(during));
    println!(
        "{label}: B alone {:.0} ms, during A's storm {:.0} ms ({:.2}x)",
        alone.as_secs_f64() * 1e3,
        during.as_secs_f64() * 1e3,
        during.as_secs_f64() / alone.as_secs_f64()
    );
}

fn main() {
    let hello = std::fs::read(guests::HELLO_AGENT).expect("hello-agent");
    let storms: Vec<Vec<Vec<u8>>> = (0..SAMPLES)
        .map(|i| (0..STORM).map(|j| stalling(&format!("{i}-{j}"))).collect())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        one("share of one place (default)", None, &hello, &storms).await;
        one("one tenant may take both places", Some(2), &hello, &storms).await;
    });
}
