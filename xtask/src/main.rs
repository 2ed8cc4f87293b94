//! `cargo xtask <command>`: project automation.
//!
//! - `guests`: build every crate in `examples/` to `target/guests/<name>.wasm`.
//! - `demo`: install the wasm target if needed, build the guests and the
//!   CLI, and run hello-agent and a hostile guest through `delta run`.
//! - `up`: install the wasm target if needed, build the guests and the CLI,
//!   and start `delta up` with the example agents deployed and one run shown.
//! - `test`: install the wasm target and the servers the suite needs if
//!   missing, start a throwaway PostgreSQL and run the whole test suite.
//! - `load`: drive a minimal hyper server, `delta node`'s runs endpoint and
//!   the control plane's `GET /v1/agents/{id}` (in `delta up`) with wrk in
//!   the same run and compare them (see `load.rs`).

use std::process::Command;

use anyhow::{Context, Result, bail};

mod load;

use xtask::services;

fn main() -> Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    let root = xtask::workspace_root();
    match command.as_str() {
        "guests" => {
            xtask::ensure_target()?;
            build_guests(&root)?;
            Ok(())
        }
        "demo" => {
            xtask::ensure_target()?;
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
            build_guests(&root)?;
            step("building the delta CLI (the first build compiles Wasmtime: minutes)");
            cargo(&["build", "--bin", "delta"])?;
            step("delta up --examples target/guests");
            let mut command = Command::new(root.join("target/debug/delta"));
            command
                .arg("up")
                .arg("--examples")
                .arg(root.join("target/guests"))
                .args(std::env::args().skip(2));
            let code = run(&mut command)?;
            if code != 0 {
                bail!("delta up exited with {code}");
            }
            Ok(())
        }
        "test" => {
            xtask::ensure_target()?;
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
            command.args(["test", "--workspace"]);
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
        "load" => {
            let options = load::Options::parse(std::env::args().skip(2))?;
            load::run(&root, &options)
        }
        other => bail!("unknown command {other:?}; available: guests, demo, up, test, load"),
    }
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
