//! `cargo xtask <command>`: project automation.
//!
//! - `guests`: build every crate in `examples/` to `target/guests/<name>.wasm`.
//! - `demo`: install the wasm target if needed, build the guests and the
//!   CLI, and run hello-agent and a hostile guest through `delta run`.
//! - `up`: install the wasm target if needed, build the guests and the CLI,
//!   and start `delta up` with the example agents deployed and one run shown.
//! - `test`: install the wasm target and the servers the suite needs if
//!   missing, start a throwaway PostgreSQL and run the whole test suite.
//! - `fuzz [--seconds N]`: build the targets in `fuzz/` with cargo-fuzz and
//!   run each for a bounded time (fuzz/README.md).
//! - `tidy`: check the rules about the source tree no compiler checks (WIT
//!   interfaces and host-api modules, guests and tests, file length, the
//!   control plane's dependencies; see `tidy.rs`).
//! - `contract`: run schemathesis (every check and phase) against `delta
//!   up`'s OpenAPI document; any finding fails (see `contract.rs`).
//! - `clients [--update]`: check that the clients in clients/ are what the
//!   OpenAPI document generates, lint them and test them against `delta up`
//!   (see `clients.rs`).
//! - `dashboard`: the web dashboard type-checked and driven in Chromium
//!   against `delta up` (see `dashboard.rs`).
//! - `load`: drive a minimal hyper server, `delta node`'s runs endpoint and
//!   the control plane's `GET /v1/agents/{id}` (in `delta up`) with wrk in
//!   the same run and compare them (see `load.rs`).
//! - `peers [--quick] [--json FILE]`: Delta against bare Wasmtime, `wasmtime
//!   serve` and hyper in one run: one table, JSON for comparing commits
//!   (see `peers.rs` and benches/README.md).
//! - `soak [--duration D] [--rate N] [--release]`: `delta up` under a long
//!   mixed load (runs, deploys, reads) with RSS, open files and latency
//!   sampled each second; fails on growth, errors or lost usage (see
//!   `soak.rs`).

use std::process::Command;

use anyhow::{Context, Result, bail};

mod clients;
mod contract;
mod dashboard;
mod harness;
mod load;
mod peers;
mod python;
mod soak;
mod tidy;

use xtask::services;

fn main() -> Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    let root = xtask::workspace_root();
    match command.as_str() {
        "guests" => {
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            build_guests(&root)?;
            Ok(())
        }
        "demo" => {
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            build_guests(&root)?;
            step("building the delta CLI");
            cargo(&["build", "--bin", "delta"])?;
            let delta = root.join("target/debug/delta");
            let guests = root.join("target/guests");
            step("delta run hello-agent.wasm --input '{\"name\":\"Delta\"}'");
            let code = run(Command::new(&delta)
                .arg("run")
                .arg(guests.join("hello-agent.wasm"))
                .args(["--input", r#"{"name":"Delta"}"#]))?;
            if code != 0 {
                bail!("hello-agent exited with {code}, expected 0");
            }
            step(
                "delta run hostile-loop.wasm --fuel 50000000   (an infinite loop: expect exit 4, limit hit)",
            );
            let code = run(Command::new(&delta)
                .arg("run")
                .arg(guests.join("hostile-loop.wasm"))
                .args(["--fuel", "50000000"]))?;
            if code != 4 {
                bail!("hostile-loop exited with {code}, expected 4 (limit hit)");
            }
            step("done: hello-agent answered, hostile-loop was stopped by its fuel limit");
            Ok(())
        }
        "up" => {
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            build_guests(&root)?;
            step("building the delta CLI (the first build compiles Wasmtime: minutes)");
            cargo(&["build", "--bin", "delta"])?;
            step("delta up --examples target/guests");
            let mut command = Command::new(root.join("target/debug/delta"));
            command
                .arg("up")
                .arg("--examples")
                .arg(root.join("target/guests"))
                .args(std::env::args().skip(2))
                .env("MALLOC_ARENA_MAX", harness::malloc_arena_max());
            let code = run(&mut command)?;
            if code != 0 {
                bail!("delta up exited with {code}");
            }
            Ok(())
        }
        "test" => {
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            // Everything the suites start or call, provisioned here so that
            // this command passes on a fresh machine (see services.rs).
            services::ensure_binaries(
                &[
                    ("systemd-analyze", "systemd"),
                    ("redis-server", "redis-server"),
                ],
                "the test suite runs them",
            )?;
            let mut command = Command::new(cargo_path());
            // Anything after `test` goes to cargo test (e.g. --no-fail-fast).
            command
                .args(["test", "--workspace"])
                .args(std::env::args().skip(2));
            // An explicit server wins; otherwise a throwaway one lives as
            // long as the suite does.
            let _postgres = match std::env::var_os("DELTA_TEST_POSTGRES_URL") {
                Some(_) => None,
                None => {
                    step("starting a throwaway PostgreSQL for the suite");
                    let server = services::Postgres::start()?;
                    println!("{}", server.url);
                    command.env("DELTA_TEST_POSTGRES_URL", &server.url);
                    Some(server)
                }
            };
            let status = command.status().context("running cargo test")?;
            if !status.success() {
                bail!("cargo test --workspace failed ({status})");
            }
            Ok(())
        }
        "fuzz" => fuzz(&root, std::env::args().skip(2)),
        "tidy" => tidy::run(&root, &cargo_path()),
        "contract" => {
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            build_guests(&root)?;
            contract::run(&root, &cargo_path())
        }
        "dashboard" => {
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            build_guests(&root)?;
            dashboard::run(&root, &cargo_path())
        }
        "clients" => {
            let update = match std::env::args().nth(2).as_deref() {
                None => false,
                Some("--update") => true,
                Some(other) => bail!("usage: cargo xtask clients [--update] (not {other:?})"),
            };
            xtask::ensure_target()?;
            services::ensure_c_for_wasm()?;
            build_guests(&root)?;
            clients::run(&root, &cargo_path(), update)
        }
        "load" => {
            let options = load::Options::parse(std::env::args().skip(2))?;
            load::run(&root, &options)
        }
        "peers" => {
            let options = peers::Options::parse(std::env::args().skip(2))?;
            services::ensure_c_for_wasm()?;
            peers::run(&root, &options)
        }
        "soak" => {
            let options = soak::Options::parse(std::env::args().skip(2))?;
            services::ensure_c_for_wasm()?;
            soak::run(&root, &options)
        }
        other => {
            bail!(
                "unknown command {other:?}; available: guests, demo, up, test, fuzz, tidy, load, peers, soak, contract, clients, dashboard"
            )
        }
    }
}

/// `cargo xtask fuzz [--seconds N]`: install cargo-fuzz if missing, build
/// every target in `fuzz/` and run each for N seconds (default 60) from its
/// corpus. New inputs go to a temporary directory, so the committed corpus
/// changes only when someone minimises on purpose (fuzz/README.md).
fn fuzz(root: &std::path::Path, mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut seconds = 60u64;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds takes a whole number")?
            }
            other => bail!("unknown argument {other:?}; usage: cargo xtask fuzz [--seconds N]"),
        }
    }
    let has_cargo_fuzz = Command::new(cargo_path())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        step("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        cargo(&["install", "cargo-fuzz", "--locked", "--version", "0.13.2"])?;
    }
    let dir = root.join("fuzz");
    // cargo-fuzz passes libFuzzer's instrumentation flags, which the stable
    // compiler accepts only with this set. No sanitizer: see fuzz/README.md.
    let fuzz = |args: &[&str]| -> Result<()> {
        let status = Command::new(cargo_path())
            .arg("fuzz")
            .args(args)
            .current_dir(&dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!("cargo fuzz {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    step("building the fuzz targets");
    fuzz(&["build", "-s", "none"])?;
    let list = Command::new(cargo_path())
        .args(["fuzz", "list"])
        .current_dir(&dir)
        .output()
        .context("running cargo fuzz list")?;
    let targets = String::from_utf8_lossy(&list.stdout).to_string();
    let targets: Vec<&str> = targets.split_whitespace().collect();
    if targets.is_empty() {
        bail!("cargo fuzz list found no targets in {}", dir.display());
    }
    for target in targets {
        step(&format!("fuzzing {target} for {seconds} s"));
        let scratch =
            std::env::temp_dir().join(format!("delta-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).context("creating a scratch corpus")?;
        let corpus = dir.join("corpus").join(target);
        let result = fuzz(&[
            "run",
            "-s",
            "none",
            target,
            &scratch.to_string_lossy(),
            &corpus.to_string_lossy(),
            "--",
            &format!("-max_total_time={seconds}"),
            // One input taking this long is a finding (a hang), not a wait.
            "-timeout=10",
            "-rss_limit_mb=2048",
        ]);
        let _ = std::fs::remove_dir_all(&scratch);
        result?;
    }
    Ok(())
}

fn step(message: &str) {
    println!("\n==> {message}");
}

fn build_guests(root: &std::path::Path) -> Result<()> {
    step("building guest components (examples/ -> target/guests/)");
    for guest in xtask::build_guests(root, xtask::Output::Inherit)? {
        let size = std::fs::metadata(&guest.path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{:<24} {:>9} bytes  {}",
            guest.name,
            size,
            guest.path.display()
        );
    }
    Ok(())
}

fn cargo_path() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(cargo_path())
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<i32> {
    let status = command.status().context("running delta")?;
    let code = status.code().unwrap_or(-1);
    println!("(exit code {code})");
    Ok(code)
}
