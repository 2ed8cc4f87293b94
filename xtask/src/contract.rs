//! `cargo xtask contract`: the API against its own OpenAPI document.
//!
//! Starts `delta up` (control plane on SQLite and one node, the example
//! agents deployed) on a free loopback port and runs schemathesis against
//! `/v1/openapi.json` with every check, every phase (examples, coverage,
//! fuzzing, stateful), as the admin. Any finding fails the command: the
//! document is the contract the generated clients are built from, so an
//! undeclared status, a constraint the schema does not state or a response
//! that does not match its schema is a bug of the API or of the document.
//!
//! schemathesis comes from PyPI (tests/contract/requirements.txt, pinned)
//! into `target/contract-venv`. `tests/contract/hooks.py` follows the one
//! rule about requests JSON Schema cannot state (a fresh Idempotency-Key per
//! request); `tests/contract/schemathesis.toml` names the operations whose
//! rules between fields the schema cannot state, each with its reason.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::harness::{Server, UP_READY_LINE, UP_TIMEOUT, free_loopback_addr, parse_api_addr};

/// Examples per operation and phase: enough to find what outside testers
/// found, small enough for CI (about a minute here).
const MAX_EXAMPLES: &str = "15";
/// Fixed so that a failure in CI reproduces locally.
const SEED: &str = "20261205";

/// Run the contract test (see the module's documentation).
pub fn run(root: &Path, cargo: &std::ffi::OsStr) -> Result<()> {
    let venv = root.join("target/contract-venv");
    let st = venv.join("bin/st");
    crate::python::venv(&venv, &root.join("tests/contract/requirements.txt"))?;

    crate::step("ruff and mypy --strict on tests/contract");
    let python = root.join("tests/contract");
    for (tool, args) in [
        ("ruff", &["check"][..]),
        ("ruff", &["format", "--check"][..]),
        ("mypy", &["--strict"][..]),
    ] {
        let status = Command::new(venv.join("bin").join(tool))
            .args(args)
            .arg(&python)
            .status()
            .with_context(|| format!("running {tool}"))?;
        if !status.success() {
            bail!(
                "{tool} {} {} failed ({status})",
                args.join(" "),
                python.display()
            );
        }
    }

    crate::step("building the delta CLI");
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--bin", "delta"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bin delta failed ({status})");
    }

    // Fresh state: on an old one `delta up` would not create the admin key.
    let work = root.join("target/contract");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let state_dir = work.join("up");
    let listen = free_loopback_addr()?;
    crate::step(&format!("delta up on {listen} with the example agents"));
    let mut server = Server::spawn(
        "delta up",
        Command::new(root.join("target/debug/delta"))
            .arg("up")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--examples")
            .arg(root.join("target/guests"))
            // Thousands of requests with one key: the limiter would answer
            // most of them 429 (documented, but then nothing else is tested).
            .arg("--no-rate-limits"),
        &work.join("up.log"),
    )?;
    let log = server.wait_for_line(UP_READY_LINE, UP_TIMEOUT)?;
    let addr = parse_api_addr(&log).unwrap_or(listen);
    let key_file = state_dir.join("admin-api-key");
    let key = std::fs::read_to_string(&key_file)
        .with_context(|| format!("reading {}", key_file.display()))?
        .trim()
        .to_owned();

    crate::step(&format!(
        "schemathesis: all checks, all phases, {MAX_EXAMPLES} examples per operation, seed {SEED}"
    ));
    let url = format!("http://{addr}");
    let status = Command::new(&st)
        .arg("--config-file")
        .arg(root.join("tests/contract/schemathesis.toml"))
        .arg("run")
        .arg(format!("{url}/v1/openapi.json"))
        .args(["--url", &url])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--workers", "1"])
        .arg("--no-color")
        // Its cache (.schemathesis/) stays in this run's work directory:
        // nothing carries over between runs, so a run is its seed alone.
        .current_dir(&work)
        .env("DELTA_CONTRACT_KEY", &key)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", root.join("tests/contract"))
        .status()
        .context("running schemathesis")?;
    let stopped = server.terminate(crate::harness::STOP_TIMEOUT);
    if !status.success() {
        bail!(
            "schemathesis found contract failures ({status}); the server's log:{}",
            server.log_tail()
        );
    }
    stopped.context("delta up did not stop cleanly")?;
    crate::step("the API answers as its document says");
    Ok(())
}
