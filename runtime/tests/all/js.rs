//! JavaScript agents and verifiers (QuickJS inside the sandbox): the
//! examples work, capabilities answer with typed exceptions, and every
//! hostile script is contained with a clear outcome while the same runtime
//! keeps serving.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use delta_guest_artifacts as guests;
use delta_js::{JsError, Kind};
use delta_runtime::{InvocationLimits, Outcome, RunReport, Runtime};

const HELLO_JS: &str = include_str!("../../../examples/js/hello.js");
const TASK_BOT_JS: &str = include_str!("../../../examples/js/task-bot.js");
const VERIFIER_JS: &str = include_str!("../../../examples/js/verifier.js");

async fn run_js(rt: &Runtime, source: &str, input: &str, limits: InvocationLimits) -> RunReport {
    let agent = load_js(rt, source, Kind::Agent).await;
    run(rt, &agent, input, limits).await
}

async fn refusal(source: &str, kind: Kind) -> JsError {
    js_preparer()
        .prepare(source, kind)
        .await
        .map(|bytes| bytes.len())
        .expect_err("the script is refused")
}

/// hello.js must still answer: used after every hostile script.
async fn assert_hello_js_works(rt: &Runtime) {
    let report = run_js(
        rt,
        HELLO_JS,
        r#"{"name":"Ada"}"#,
        InvocationLimits::default(),
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: r#"{"greeting":"Hello, Ada!"}"#.into()
        },
        "hello.js after a hostile script: {report:?}"
    );
    assert_hello_works(rt).await;
}

#[tokio::test]
async fn hello_js_greets_logs_and_rejects_bad_input_with_a_code() {
    let rt = runtime();
    let report = run_js(
        &rt,
        HELLO_JS,
        r#"{"name":"Ada"}"#,
        InvocationLimits::default(),
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: r#"{"greeting":"Hello, Ada!"}"#.into()
        }
    );
    assert_eq!(report.logs.len(), 1, "{:?}", report.logs);
    assert_eq!(report.logs[0].message, "greeting Ada");
    let report = run_js(&rt, HELLO_JS, r#"{"nom":1}"#, InvocationLimits::default()).await;
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
async fn task_fields_json_console_and_async_run_work() {
    let rt = runtime();
    let source = r#"
        export async function run(task) {
            console.log("input", task.input, 42);
            console.warn("careful");
            const n = await Promise.resolve(task.input.n);
            return { run: task.runId, agent: task.agentId, tenant: task.tenantId,
                     deadline: task.deadlineMs > 0, doubled: n * 2, nothing: undefined };
        }"#;
    let report = run_js(&rt, source, r#"{"n":21}"#, InvocationLimits::default()).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: r#"{"run":"run-1","agent":"agent-1","tenant":"tenant-1","deadline":true,"doubled":42}"#
                .into()
        },
        "{report:?}"
    );
    let lines: Vec<_> = report
        .logs
        .iter()
        .map(|l| (format!("{:?}", l.level), l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("Info".to_owned(), r#"input {"n":21} 42"#),
            ("Warn".to_owned(), "careful")
        ]
    );
}

#[tokio::test]
async fn capability_refusals_are_exceptions_with_codes() {
    let rt = runtime();
    // No backend configured: each call throws a DeltaError with the Rust
    // SDK's code; caught, the script carries on.
    let source = r#"
        import { llm, messaging, budget, DeltaError } from "delta";
        export function run() {
            const codes = [];
            for (const call of [
                () => llm.complete({ model: "default", messages: [{ role: "user", content: "hi" }] }),
                () => messaging.send({ channel: "email", templateId: "welcome", recipient: "a@example.com" }),
                () => budget.remaining(),
                () => llm.complete({ model: "default", messages: "not a list" }),
            ]) {
                try { call(); codes.push("no error"); }
                catch (e) { codes.push(`${e instanceof DeltaError}:${e.code}:${e.retryable}`); }
            }
            return codes;
        }"#;
    let report = run_js(&rt, source, "{}", InvocationLimits::default()).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: r#"["true:llm-not-configured:false","true:messaging-not-configured:false","true:budget-not-configured:false","true:invalid-request:false"]"#.into()
        },
        "{report:?}"
    );
    // Uncaught, the refusal is the run's agent error (not a crash).
    let report = run_js(
        &rt,
        TASK_BOT_JS,
        r#"{"task":"hi"}"#,
        InvocationLimits::default(),
    )
    .await;
    match report.outcome {
        Outcome::AgentError { code, message, .. } => {
            assert_eq!(code, "llm-not-configured");
            assert!(message.contains("no LLM provider"), "{message}");
        }
        other => panic!("expected llm-not-configured, got {other:?}"),
    }
}

#[tokio::test]
async fn js_verifier_judges_submissions() {
    let rt = runtime();
    let verifier = load_js(&rt, VERIFIER_JS, Kind::Verifier).await;
    let ctx = invocation("{}", InvocationLimits::default()).context;
    let report = rt
        .run_verifier(
            &verifier,
            ctx.clone(),
            r#"{"expected":{"a":[1,2]}}"#.into(),
            r#"{"a":[1,2]}"#.into(),
            InvocationLimits::default(),
        )
        .await
        .expect("verifier runs");
    let Outcome::Completed { output } = &report.outcome else {
        panic!("{report:?}");
    };
    let verdict: serde_json::Value = serde_json::from_str(output).expect("verdict JSON");
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["score_milli"], 1000, "{verdict}");
    assert_eq!(report.logs[0].message, "verdict: passed");
    let report = rt
        .run_verifier(
            &verifier,
            ctx,
            r#"{"expected":1}"#.into(),
            "2".into(),
            InvocationLimits::default(),
        )
        .await
        .expect("verifier runs");
    let Outcome::Completed { output } = &report.outcome else {
        panic!("{report:?}");
    };
    let verdict: serde_json::Value = serde_json::from_str(output).expect("verdict JSON");
    assert_eq!(verdict["passed"], false, "{verdict}");
    assert_eq!(verdict["score_milli"], 0, "{verdict}");
    // A verifier script may not call other capabilities.
    let greedy = r#"
        import { llm } from "delta";
        export function verify() { llm.complete({}); return { passed: true }; }"#;
    let verifier = load_js(&rt, greedy, Kind::Verifier).await;
    let report = rt
        .run_verifier(
            &verifier,
            invocation("{}", InvocationLimits::default()).context,
            "{}".into(),
            "{}".into(),
            InvocationLimits::default(),
        )
        .await
        .expect("verifier runs");
    match report.outcome {
        Outcome::GuestPanic { message } => {
            assert!(message.contains("capability-not-available"), "{message}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[tokio::test]
async fn a_syntax_error_is_refused_with_line_and_column() {
    let err = refusal("export function run() {\n  return 1 +;\n}\n", Kind::Agent).await;
    match &err {
        JsError::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!(*line, 2, "{err}");
            assert!(*column > 0, "{err}");
            assert!(message.starts_with("SyntaxError"), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.is_bad_input());
}

#[tokio::test]
async fn scripts_that_cannot_be_agents_are_refused_at_deploy() {
    let err = refusal("export const x = 1;", Kind::Agent).await;
    assert!(matches!(err, JsError::NoEntry(_)), "{err:?}");
    assert!(err.to_string().contains("`run`"), "{err}");
    // Only `delta` can be imported: no files, no host modules.
    for import in ["fs", "os", "std", "./other.js", "/etc/passwd"] {
        let source =
            format!("import * as m from {import:?};\nexport function run() {{ return 1; }}");
        let err = refusal(&source, Kind::Agent).await;
        assert!(matches!(err, JsError::Load(_)), "{import}: {err:?}");
    }
    // The top level throws (a non-Error value, too).
    let err = refusal("throw 42;\nexport function run() {}", Kind::Agent).await;
    assert!(matches!(err, JsError::Load(_)), "{err:?}");
    // A top level that never ends is stopped by the deploy-time fuel bound.
    let err = refusal("while (true) {}\nexport function run() {}", Kind::Agent).await;
    assert!(matches!(err, JsError::LoadLimit(_)), "{err:?}");
    // A top level calling a capability gets a refusal, not a run's budget.
    let err = refusal(
        "import { budget } from \"delta\";\nbudget.remaining();\nexport function run() {}",
        Kind::Agent,
    )
    .await;
    assert!(
        err.to_string().contains("not-available-at-load")
            || err.to_string().contains("capabilities can only be called"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ten_megabyte_script_is_refused_before_parsing() {
    let source = format!(
        "export function run() {{ return 1; }}\n//{}",
        "x".repeat(10 << 20)
    );
    let err = refusal(&source, Kind::Agent).await;
    assert!(
        matches!(err, JsError::TooLarge { limit, .. } if limit == 4 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn while_true_runs_out_of_fuel_or_hits_the_deadline() {
    let rt = runtime();
    let source = "export function run() { while (true) {} }";
    let limits = InvocationLimits {
        fuel: 50_000_000,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    let report = run_js(&rt, source, "{}", limits).await;
    assert_eq!(report.outcome, Outcome::OutOfFuel, "{report:?}");
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 200,
        ..InvocationLimits::default()
    };
    let started = Instant::now();
    let report = run_js(&rt, source, "{}", limits).await;
    assert_eq!(report.outcome, Outcome::Deadline, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_hello_js_works(&rt).await;
}

#[tokio::test]
async fn unbounded_recursion_is_a_clean_error() {
    let rt = runtime();
    let source = "function f(n) { return f(n + 1) + 1; }\nexport function run() { return f(0); }";
    let report = run_js(&rt, source, "{}", InvocationLimits::default()).await;
    assert_eq!(report.outcome, Outcome::StackOverflow, "{report:?}");
    assert_hello_js_works(&rt).await;
}

#[tokio::test]
async fn memory_bombs_hit_the_memory_cap() {
    let rt = runtime();
    let limits = InvocationLimits {
        memory_bytes: 48 << 20,
        fuel: u64::MAX / 2,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    for bomb in [
        // Doubling (`repeat` builds a flat string; `s + s` would be a rope).
        "let s = 'x'; while (true) s = s.repeat(2);",
        "let a = [1.5]; while (true) a = a.concat(a);",
        // Catching the out-of-memory error does not get the script anywhere.
        "const keep = []; while (true) { try { keep.push(new Array(100000).fill(1.5)); } catch (e) {} }",
    ] {
        let source = format!("export function run() {{ {bomb} }}");
        let report = run_js(&rt, &source, "{}", limits).await;
        assert_eq!(report.outcome, Outcome::MemoryLimit, "{bomb}: {report:?}");
        assert!(report.usage.peak_memory_bytes <= 48 << 20);
    }
    assert_hello_js_works(&rt).await;
}

#[tokio::test]
async fn a_console_log_flood_is_capped_like_any_guests() {
    let rt = runtime();
    let source = "export function run() { for (let i = 0; i < 100000; i++) console.log('line', i); return 'done'; }";
    let limits = InvocationLimits {
        fuel: 20_000_000_000,
        timeout_ms: 60_000,
        ..InvocationLimits::default()
    };
    let report = run_js(&rt, source, "{}", limits).await;
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: r#""done""#.into()
        },
        "{report:?}"
    );
    let log = report.usage.log;
    assert!(log.lines <= u64::from(limits.log.max_lines), "{log:?}");
    assert_eq!(log.lines + log.dropped, 100_000, "{log:?}");
    assert_hello_js_works(&rt).await;
}

#[tokio::test]
async fn eval_works_only_inside_the_sandbox_and_nothing_of_the_host_is_reachable() {
    let rt = runtime();
    let source = r#"
        export async function run() {
            const seen = {
                eval: eval("1 + 2"),
                fn: new Function("a", "return a * 2")(21),
                globals: ["require", "process", "fetch", "std", "os", "Deno", "Bun",
                          "XMLHttpRequest", "WebSocket", "__delta_native"]
                    .filter((g) => typeof globalThis[g] !== "undefined"),
                evalGlobals: eval("typeof std + typeof os + typeof require"),
            };
            try { await import("fs"); seen.dynamicImport = "loaded"; }
            catch (e) { seen.dynamicImport = e.name; }
            return seen;
        }"#;
    let report = run_js(&rt, source, "{}", InvocationLimits::default()).await;
    let Outcome::Completed { output } = &report.outcome else {
        panic!("{report:?}");
    };
    let seen: serde_json::Value = serde_json::from_str(output).expect("JSON");
    assert_eq!(seen["eval"], 3);
    assert_eq!(seen["fn"], 42);
    assert_eq!(seen["globals"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["evalGlobals"], "undefinedundefinedundefined");
    assert_ne!(seen["dynamicImport"], "loaded", "{seen}");
    assert_hello_js_works(&rt).await;
}

#[tokio::test]
async fn throwing_non_errors_and_never_settling_promises_crash_cleanly() {
    let rt = runtime();
    let cases = [
        (
            "export function run() { throw 42; }",
            "uncaught exception (not an Error): 42",
        ),
        (
            "export function run() { throw { no: 'code' }; }",
            "uncaught exception (not an Error)",
        ),
        ("export function run() { null.x; }", "uncaught TypeError"),
        (
            "export async function run() { return new Promise(() => {}); }",
            "can never settle",
        ),
        (
            "export function run() { return 10n; }",
            "could not be turned into JSON",
        ),
    ];
    for (source, expected) in cases {
        let report = run_js(&rt, source, "{}", InvocationLimits::default()).await;
        match &report.outcome {
            Outcome::GuestPanic { message } => {
                assert!(message.contains(expected), "{source}: {message}")
            }
            other => panic!("{source}: expected a crash, got {other:?}"),
        }
    }
    // A promise chain that never ends is stopped by the deadline.
    let source = "export async function run() { while (true) await null; }";
    let limits = InvocationLimits {
        fuel: u64::MAX / 2,
        timeout_ms: 300,
        ..InvocationLimits::default()
    };
    let report = run_js(&rt, source, "{}", limits).await;
    assert_eq!(report.outcome, Outcome::Deadline, "{report:?}");
    assert_hello_js_works(&rt).await;
}

#[tokio::test]
async fn the_bare_engines_refuse_to_run_without_a_script() {
    let rt = runtime();
    let agent = load(&rt, guests::JS_AGENT).await;
    let report = run(&rt, &agent, "{}", InvocationLimits::default()).await;
    match report.outcome {
        Outcome::GuestPanic { message } => {
            assert!(message.contains("not initialised"), "{message}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    let verifier = load(&rt, guests::JS_VERIFIER).await;
    let report = rt
        .run_verifier(
            &verifier,
            invocation("{}", InvocationLimits::default()).context,
            "{}".into(),
            "{}".into(),
            InvocationLimits::default(),
        )
        .await
        .expect("verifier runs");
    assert!(
        matches!(report.outcome, Outcome::GuestPanic { .. }),
        "{report:?}"
    );
}

#[tokio::test]
async fn math_random_differs_between_runs_of_one_snapshot() {
    let rt = runtime();
    let agent = load_js(
        &rt,
        "export function run() { return Math.random(); }",
        Kind::Agent,
    )
    .await;
    let a = run(&rt, &agent, "{}", InvocationLimits::default()).await;
    let b = run(&rt, &agent, "{}", InvocationLimits::default()).await;
    assert!(matches!(a.outcome, Outcome::Completed { .. }), "{a:?}");
    assert_ne!(a.outcome, b.outcome);
}

#[tokio::test]
async fn prepared_scripts_are_cached_by_content_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = js_preparer()
        .prepare_cached(dir.path(), HELLO_JS, Kind::Agent)
        .await
        .expect("prepared");
    let key = delta_js::cache_key(HELLO_JS, Kind::Agent);
    let stored = std::fs::read(dir.path().join(format!("{key}.wasm"))).expect("cached file");
    assert_eq!(stored, first);
    let again = js_preparer()
        .prepare_cached(dir.path(), HELLO_JS, Kind::Agent)
        .await
        .expect("prepared");
    assert_eq!(again, first);
    assert_ne!(key, delta_js::cache_key(HELLO_JS, Kind::Verifier));
}

#[tokio::test]
async fn the_same_script_always_gives_the_same_component() {
    let source = "const loaded = Date.now() + Math.random();\nexport function run() { return 1; }";
    let a = js_preparer()
        .prepare(source, Kind::Agent)
        .await
        .expect("prepared");
    let b = js_preparer()
        .prepare(source, Kind::Agent)
        .await
        .expect("prepared");
    assert!(a == b, "two preparations of one script differ");
}
