//! Every hostile guest is contained with the right outcome, and the runtime
//! keeps serving normal invocations afterwards.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use delta_guest_artifacts as guests;
use delta_runtime::{InvocationLimits, Outcome};

#[tokio::test]
async fn hello_agent_greets_logs_and_reports_usage() {
    let rt = runtime();
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let limits = InvocationLimits::default();
    let report = run(&rt, &hello, r#"{"name":"Ada"}"#, limits).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: r#"{"greeting":"Hello, Ada!"}"#.into()
        }
    );
    assert_eq!(report.logs.len(), 1, "{:?}", report.logs);
    assert_eq!(report.logs[0].message, "greeting Ada");
    assert!(report.usage.fuel_used > 0 && report.usage.fuel_used < limits.fuel);
    assert!(report.usage.peak_memory_bytes > 0);
    assert!(report.usage.wall_time_us > 0);
    assert_eq!(report.usage.log.lines, 1);
}

#[tokio::test]
async fn task_input_of_the_wrong_shape_is_the_agents_invalid_input_error() {
    let rt = runtime();
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let report = run(&rt, &hello, r#"{"nom": 1}"#, InvocationLimits::default()).await;
    match report.outcome {
        Outcome::AgentError {
            code, retryable, ..
        } => {
            assert_eq!(code, "invalid-input");
            assert!(!retryable);
        }
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_LOOP).await;
    let limits = InvocationLimits {
        fuel: 20_000_000,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    let report = run(&rt, &guest, "{}", limits).await;
    assert_eq!(report.outcome, Outcome::OutOfFuel);
    assert_eq!(report.usage.fuel_used, limits.fuel);
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn infinite_loop_is_stopped_at_the_deadline() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_LOOP).await;
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 200,
        ..InvocationLimits::default()
    };
    let started = Instant::now();
    let report = run(&rt, &guest, "{}", limits).await;
    assert_eq!(report.outcome, Outcome::Deadline);
    // Stopped at the deadline, not long after (epoch ticks are 5 ms; the
    // bound is loose because CI machines are shared).
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // What it burnt is billed, though the trap loses Wasmtime's unflushed
    // count (wasmtime#13802): 200 ms of a tight loop is far above a million
    // instructions even on a slow machine; without the per-tick reading it
    // reported about 1,600.
    assert!(
        report.usage.fuel_used > 1_000_000,
        "fuel used {}",
        report.usage.fuel_used
    );
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_cap() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_MEMORY).await;
    let limits = InvocationLimits {
        memory_bytes: 32 << 20,
        ..InvocationLimits::default()
    };
    let report = run(&rt, &guest, "{}", limits).await;
    assert_eq!(report.outcome, Outcome::MemoryLimit, "{report:?}");
    assert!(report.usage.peak_memory_bytes <= 32 << 20);
    assert!(
        report.usage.peak_memory_bytes > 16 << 20,
        "{:?}",
        report.usage
    );
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn a_memory_cap_below_the_initial_memory_refuses_instantiation() {
    let rt = runtime();
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let limits = InvocationLimits {
        memory_bytes: 64 << 10,
        ..InvocationLimits::default()
    };
    let report = run(&rt, &hello, r#"{"name":"Ada"}"#, limits).await;
    assert_eq!(report.outcome, Outcome::MemoryLimit, "{report:?}");
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_wasm_stack() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_RECURSION).await;
    let report = run(&rt, &guest, "{}", InvocationLimits::default()).await;
    assert_eq!(report.outcome, Outcome::StackOverflow, "{report:?}");
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn oversized_table_is_refused_before_compiling_and_runs_under_a_larger_cap() {
    let rt = runtime();
    let err = rt
        .load_file(guests::HOSTILE_TABLE.as_ref())
        .await
        .err()
        .expect("table over the pool's element limit is refused");
    assert!(
        matches!(
            err,
            delta_runtime::LoadError::OverBounds {
                what: "initial table size in elements",
                limit: 10_000,
                ..
            }
        ),
        "{err}"
    );
    assert_hello_works(&rt).await;

    let mut config = config();
    config.engine.pooling.table_elements = 40_000;
    // Its 20,079 functions take more than the default 5 s of compile CPU.
    config.compile.cpu_ms = 60_000;
    let roomy = delta_runtime::Runtime::new(config).expect("runtime");
    let guest = load(&roomy, guests::HOSTILE_TABLE).await;
    let report = run(
        &roomy,
        &guest,
        r#"{"index": 7}"#,
        InvocationLimits::default(),
    )
    .await;
    assert!(
        matches!(report.outcome, Outcome::Completed { .. }),
        "{report:?}"
    );
}

#[tokio::test]
async fn log_and_stdio_floods_are_bounded_and_counted() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_LOG_FLOOD).await;
    let limits = InvocationLimits {
        fuel: 20_000_000_000,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    let report = run(&rt, &guest, "{}", limits).await;
    assert!(
        matches!(report.outcome, Outcome::Completed { .. }),
        "{report:?}"
    );
    let log = report.usage.log;
    assert!(
        log.lines > 0 && log.lines <= u64::from(limits.log.max_lines),
        "{log:?}"
    );
    assert_eq!(log.lines + log.dropped, 1_000_000, "{log:?}");
    assert_eq!(report.logs.len() as u64, log.lines);
    let kept = limits.max_stdio_bytes;
    assert_eq!(report.stdout.len() as u64, kept);
    assert_eq!(report.usage.stdout_dropped_bytes, (16 << 20) - kept);
    assert_eq!(report.stderr.len() as u64, kept);
    assert_eq!(report.usage.stderr_dropped_bytes, (16 << 20) - kept);
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn big_output_is_refused() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_BIG_OUTPUT).await;
    let limits = InvocationLimits::default();
    let report = run(&rt, &guest, "{}", limits).await;
    match report.outcome {
        Outcome::OutputTooLarge { size, limit } => {
            assert!(size > 8 << 20);
            assert_eq!(limit, limits.max_output_bytes);
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn panic_is_reported_with_its_message() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_PANIC).await;
    let report = run(&rt, &guest, "{}", InvocationLimits::default()).await;
    match &report.outcome {
        Outcome::GuestPanic { message } => {
            assert!(
                message.contains("hostile-panic: deliberate panic"),
                "{message}"
            )
        }
        other => panic!("expected a guest panic, got {other:?}"),
    }
    assert_hello_works(&rt).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_does_not_starve_another_on_the_same_thread() {
    let rt = Arc::new(runtime());
    let looping = load(&rt, guests::HOSTILE_LOOP).await;
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 3_000,
        ..InvocationLimits::default()
    };
    let started = Instant::now();
    let busy = {
        let rt = rt.clone();
        tokio::spawn(async move {
            let report = run(&rt, &looping, "{}", limits).await;
            (report, started.elapsed())
        })
    };
    // Let the loop get going on the only worker thread first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = run_hello(&rt, &hello).await;
    let hello_done = started.elapsed();
    assert!(
        matches!(report.outcome, Outcome::Completed { .. }),
        "{report:?}"
    );
    let (busy_report, busy_done) = busy.await.expect("join");
    assert_eq!(busy_report.outcome, Outcome::Deadline);
    assert!(
        hello_done + Duration::from_millis(1_000) < busy_done,
        "hello finished at {hello_done:?}, the loop at {busy_done:?}"
    );
}

#[tokio::test]
async fn cancellation_stops_a_running_guest() {
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_LOOP).await;
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 30_000,
        ..InvocationLimits::default()
    };
    let mut invocation = invocation("{}", limits);
    let cancel = invocation.cancel.clone();
    invocation.cancel = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let report = rt.run_agent(&guest, invocation).await.expect("run");
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn every_hostile_guest_in_turn_leaves_the_runtime_serving() {
    let rt = runtime();
    let limits = InvocationLimits {
        fuel: 5_000_000_000,
        timeout_ms: 2_000,
        memory_bytes: 32 << 20,
        ..InvocationLimits::default()
    };
    for (name, path) in guests::ALL {
        if !name.starts_with("hostile-") {
            continue;
        }
        match rt.load_file(path.as_ref()).await {
            Ok(guest) => {
                let report = run(&rt, &guest, "{}", limits).await;
                assert!(
                    !matches!(report.outcome, Outcome::Completed { .. })
                        || *name == "hostile-escape"
                        || *name == "hostile-log-flood",
                    "{name} completed unexpectedly"
                );
            }
            Err(e) => assert!(e.is_bad_input(), "{name}: {e}"),
        }
        assert_hello_works(&rt).await;
    }
}

#[tokio::test]
async fn an_exhausted_instance_pool_is_busy_not_a_guest_outcome() {
    let mut config = config();
    config.engine.pooling.max_instances = 1;
    let rt = Arc::new(delta_runtime::Runtime::new(config).expect("runtime"));
    let looping = load(&rt, guests::HOSTILE_LOOP).await;
    let hello = load(&rt, guests::HELLO_AGENT).await;
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    let mut busy_invocation = invocation("{}", limits);
    let cancel = busy_invocation.cancel.clone();
    busy_invocation.cancel = cancel.clone();
    let busy = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run_agent(&looping, busy_invocation).await })
    };
    // Wait until the loop holds the only slot (on a loaded machine its task
    // may start late); a hello run before that could take the slot first.
    for _ in 0..1000 {
        if rt.instances_live() == 1 {
            break;
        }
        assert!(!busy.is_finished(), "the loop ended before taking the slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rt.instances_live(), 1, "the loop never started");
    let refused = rt
        .run_agent(
            &hello,
            invocation(r#"{"name":"Ada"}"#, InvocationLimits::default()),
        )
        .await
        .err();
    let err = refused.expect("the pool never reported busy while the loop ran");
    assert!(matches!(err, delta_runtime::RunError::Busy), "{err}");
    cancel.cancel();
    let report = busy.await.expect("join").expect("run");
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(rt.instances_live(), 0);
    // The slot is free again.
    assert_hello_works(&rt).await;
}
