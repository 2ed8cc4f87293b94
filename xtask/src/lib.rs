//! Building the guest components in `examples/`.
//!
//! Shared by `cargo xtask guests` and by `delta-guest-artifacts`'s build
//! script, so tests and humans build guests the same way: one `cargo build`
//! of the `examples/` workspace for `wasm32-wasip2`, then a copy of each
//! component to `target/guests/<crate-name>.wasm`. [`services`] provisions
//! the servers and tools `cargo xtask test` needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub mod services;

/// The Rust target guests are built for; it produces components directly.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Shadow-stack size of the guests we build (64 KiB instead of rustc's
/// 1 MiB). Rust places the stack first in linear memory, so a 1 MiB stack
/// spreads even a tiny run's pages over the first megabyte; a small one keeps
/// them within what the node resets with memset and keeps resident, which
/// makes the cold path about 40 % faster. Overflowing it traps (the stack
/// grows down past address 0); it never corrupts data.
pub const GUEST_STACK_BYTES: u32 = 64 * 1024;

/// Environment for building QuickJS's C code for [`GUEST_TARGET`] with
/// Debian's `clang`, `lld`, `wasi-libc` and `libclang-rt-14-dev-wasm32`.
pub const QUICKJS_ENV: &[(&str, &str)] = &[
    ("RQUICKJS_SYS_NO_WASI_SDK", "1"),
    ("CC_wasm32_wasip2", "clang"),
    ("AR_wasm32_wasip2", "llvm-ar-14"),
    (
        "CFLAGS_wasm32_wasip2",
        "--target=wasm32-wasi -isystem /usr/include/wasm32-wasi",
    ),
];

/// A built guest component.
#[derive(Debug, Clone)]
pub struct Guest {
    /// Crate name, e.g. `hello-agent`.
    pub name: String,
    /// `target/guests/<name>.wasm`.
    pub path: PathBuf,
}

/// The repository root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Names of the component crates (`cdylib`) in the `examples/` workspace, from
/// `cargo metadata`.
pub fn guest_names(root: &Path, cargo: &Path) -> Result<Vec<String>> {
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("examples/Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata on examples/")?;
    if !output.status.success() {
        bail!("cargo metadata on examples/Cargo.toml failed");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let mut names: Vec<String> = meta["packages"]
        .as_array()
        .context("cargo metadata has no packages")?
        .iter()
        // Library crates shared by guests (js-engine) build no component.
        .filter(|p| {
            p["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["crate_types"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
                })
            })
        })
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Fail with instructions when the wasm target is not installed.
pub fn check_target(rustc: &Path) -> Result<()> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(GUEST_TARGET);
    if !lib.is_dir() {
        bail!(
            "the Rust target {GUEST_TARGET} is not installed (no {}).\n\
             Install it with:  rustup target add {GUEST_TARGET}\n\
             Without rustup downloads, see README.md, section \"Building guests without rustup\".",
            lib.display()
        );
    }
    Ok(())
}

/// Make sure the wasm target is installed, adding it with rustup when it is
/// missing and rustup is available.
pub fn ensure_target() -> Result<()> {
    let rustc = PathBuf::from(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    if check_target(&rustc).is_ok() {
        return Ok(());
    }
    eprintln!("==> installing the Rust target {GUEST_TARGET} (rustup target add {GUEST_TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status();
    match status {
        Ok(s) if s.success() => check_target(&rustc),
        _ => check_target(&rustc).context("rustup could not add the target"),
    }
}

/// How the nested cargo's output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Inherit the terminal (progress visible).
    Inherit,
    /// Capture and show only on failure (build scripts).
    Capture,
}

/// Build every guest crate in release mode and copy the components to
/// `target/guests/`. Returns them sorted by name.
pub fn build_guests(root: &Path, output: Output) -> Result<Vec<Guest>> {
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let rustc = PathBuf::from(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    check_target(&rustc)?;
    let target_dir = root.join("target/guests-build");
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        GUEST_TARGET,
        "--manifest-path",
    ])
    .arg(root.join("examples/Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    .arg("--config")
    .arg(format!(
        "target.{GUEST_TARGET}.rustflags=[\"-C\", \"link-arg=-zstack-size={GUEST_STACK_BYTES}\"]"
    ));
    // QuickJS (in js-agent/js-verifier) is C: compiled by Debian's clang
    // against wasi-libc's headers, never by a downloaded WASI SDK (its build
    // script's default). An environment that sets these itself wins.
    for (var, value) in QUICKJS_ENV {
        if std::env::var_os(var).is_none() {
            cmd.env(var, value);
        }
    }
    // Settings meant for the outer (host) build must not leak into the guest
    // build when this runs inside a build script.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = match output {
        Output::Inherit => cmd.status().context("running cargo build for guests")?,
        Output::Capture => {
            let out = cmd.output().context("running cargo build for guests")?;
            if !out.status.success() {
                bail!(
                    "building guests failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            out.status
        }
    };
    if !status.success() {
        bail!("building guests failed ({status})");
    }
    let out_dir = root.join("target/guests");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut guests = Vec::new();
    for name in guest_names(root, &cargo)? {
        let built = target_dir
            .join(GUEST_TARGET)
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let path = out_dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&built).with_context(|| {
            format!(
                "{name} built no component at {} (is it a cdylib?)",
                built.display()
            )
        })?;
        // Rewrite only on change so dependants are not rebuilt needlessly.
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        guests.push(Guest { name, path });
    }
    Ok(guests)
}
