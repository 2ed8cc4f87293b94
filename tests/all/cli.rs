//! The `delta` binary end to end: output, exit codes, bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

use delta_guest_artifacts as guests;

fn delta(args: &[&str]) -> Output {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-cache");
    Command::new(env!("CARGO_BIN_EXE_delta"))
        .args(args)
        .env("DELTA_CACHE_DIR", cache)
        .output()
        .expect("run delta")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_prints_output_and_usage_and_exits_zero() {
    let out = delta(&["run", guests::HELLO_AGENT, "--input", r#"{"name":"CLI"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"greeting":"Hello, CLI!"}"#);
    let err = stderr(&out);
    assert!(err.contains("greeting CLI"), "{err}");
    assert!(
        err.contains("outcome: completed") && err.contains("fuel "),
        "{err}"
    );
}

#[test]
fn run_json_prints_the_report() {
    let out = delta(&[
        "run",
        guests::HELLO_AGENT,
        "--input",
        r#"{"name":"J"}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["outcome"]["status"], "completed");
    assert_eq!(report["outcome"]["output"], r#"{"greeting":"Hello, J!"}"#);
    assert!(report["usage"]["fuel_used"].as_u64().expect("fuel") > 0);
    assert_eq!(report["logs"][0]["message"], "greeting J");
}

#[test]
fn input_file_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("task.json");
    std::fs::write(&input, r#"{"name":"File"}"#).expect("write");
    let out = delta(&[
        "run",
        guests::HELLO_AGENT,
        "--input-file",
        input.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"greeting":"Hello, File!"}"#);
}

#[test]
fn agent_error_exits_3() {
    let out = delta(&["run", guests::HELLO_AGENT, "--input", r#"{"nope":true}"#]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid-input"));
}

#[test]
fn limits_from_flags_stop_a_loop_with_exit_4() {
    let out = delta(&["run", guests::HOSTILE_LOOP, "--fuel", "1000000"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("out-of-fuel"), "{}", stderr(&out));
    let out = delta(&[
        "run",
        guests::HOSTILE_LOOP,
        "--fuel",
        "100000000000000",
        "--timeout-ms",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("deadline"), "{}", stderr(&out));
    let out = delta(&["run", guests::HOSTILE_MEMORY, "--memory-mib", "16"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("memory-limit"), "{}", stderr(&out));
}

#[test]
fn guest_panic_exits_5_with_its_message() {
    let out = delta(&["run", guests::HOSTILE_PANIC]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hostile-panic: deliberate panic"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not wasm").expect("write");
    let out = delta(&["run", junk.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a WebAssembly file"),
        "{}",
        stderr(&out)
    );

    let out = delta(&["run", guests::HELLO_AGENT, "--input", "{broken"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));

    let out = delta(&["run", "/nonexistent/agent.wasm"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missing file is an I/O error: {}",
        stderr(&out)
    );

    let out = delta(&["run"]);
    assert_eq!(out.status.code(), Some(2), "missing argument");

    let out = delta(&["run", guests::JSON_VERIFIER]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("verifier"), "{}", stderr(&out));
}

#[test]
fn daemons_exit_2_on_an_unusable_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "lissen = \"127.0.0.1:0\"\n").expect("write");
    let state = dir.path().join("state");
    let state = state.to_str().expect("utf8");
    for daemon in ["node", "control"] {
        let out = delta(&[daemon, "--config", typo.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(2), "{daemon}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("typo.toml"),
            "{daemon}: {}",
            stderr(&out)
        );
        let out = delta(&[daemon, "--config", "/nonexistent/delta.toml"]);
        assert_eq!(out.status.code(), Some(2), "{daemon}: {}", stderr(&out));
    }
    // Valid TOML, invalid values: a node with no token file.
    let out = delta(&["node", "--state-dir", state, "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    let bad = dir.path().join("control.toml");
    std::fs::write(&bad, "session_max_secs = 0\n").expect("write");
    let out = delta(&["control", "--config", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("session_max_secs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_prints_world_imports_and_exports() {
    let out = delta(&["inspect", guests::HELLO_AGENT]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("world     delta:agent/agent@0.1.0"), "{text}");
    assert!(text.contains("delta:agent/log@0.1.0"), "{text}");
    assert!(text.contains("run: func(task: record"), "{text}");

    let out = delta(&["inspect", "--json", guests::JSON_VERIFIER]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["world"], "delta:agent/verifier@0.1.0");
    let imports: Vec<&str> = json["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        imports.iter().all(|i| i.starts_with("wasi:")
            || i.starts_with("delta:agent/log")
            || i.starts_with("delta:agent/types")),
        "{imports:?}"
    );
}

/// A JavaScript file from `examples/js/`.
fn js_example(name: &str) -> String {
    format!("{}/examples/js/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn run_and_inspect_a_javascript_agent() {
    let hello = js_example("hello.js");
    let out = delta(&["run", &hello, "--input", r#"{"name":"JS"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"greeting":"Hello, JS!"}"#);
    assert!(stderr(&out).contains("greeting JS"), "{}", stderr(&out));
    // A refusal with a code is the agent's error.
    let out = delta(&["run", &hello, "--input", "{}"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid-input"), "{}", stderr(&out));

    let out = delta(&["inspect", &hello]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("world     delta:agent/agent@0.1.0"),
        "{}",
        stdout(&out)
    );
    let out = delta(&["inspect", "--json", &js_example("verifier.js")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["world"], "delta:agent/verifier@0.1.0");
}

#[test]
fn bad_javascript_exits_2_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = |name: &str, source: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, source).expect("write script");
        path.to_string_lossy().into_owned()
    };
    let broken = script("broken.js", "export function run() {\n  return 1 +;\n}\n");
    let out = delta(&["run", &broken]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("syntax error at line 2, column"), "{err}");

    let nothing = script("nothing.js", "export const x = 1;\n");
    let out = delta(&["run", &nothing]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("neither `run`"), "{}", stderr(&out));

    // A verifier is not an agent.
    let out = delta(&["run", &js_example("verifier.js")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let big = script(
        "big.js",
        &format!("export function run() {{}}\n//{}", "x".repeat(10 << 20)),
    );
    let out = delta(&["run", &big]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));

    let out = delta(&["run", &dir.path().join("missing.js").to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Limits stop a script like any guest.
    let spin = script("spin.js", "export function run() { while (true) {} }\n");
    let out = delta(&["run", &spin, "--fuel", "10000000"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}
