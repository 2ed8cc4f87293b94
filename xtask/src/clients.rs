//! `cargo xtask clients [--update]`: the API clients in `clients/`.
//!
//! The OpenAPI document is the contract the clients are generated from, so
//! generated code and document must never drift apart silently:
//!
//! 1. `delta openapi` prints the document; it must equal the committed
//!    `clients/openapi.json`.
//! 2. openapi-python-client (pinned in clients/python/requirements-dev.txt)
//!    generates `delta_api` from it; the result must equal the committed
//!    `clients/python/src/delta_api`.
//! 3. ruff and mypy --strict check the hand-written code; pytest runs the
//!    client against a real `delta up`.
//! 4. The TypeScript client: `src/schema.d.ts` must be what openapi-typescript
//!    (pinned in package-lock.json) generates; tsc --strict, and node's test
//!    runner against a real `delta up`.
//!
//! With `--update`, steps 1 and 2 write what they generate instead of
//! comparing (then commit it). Tools come from PyPI into
//! `target/clients-venv`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Run the clients' checks (see the module's documentation).
pub fn run(root: &Path, cargo: &std::ffi::OsStr, update: bool) -> Result<()> {
    let python = root.join("clients/python");
    let venv = root.join("target/clients-venv");
    crate::python::venv(&venv, &python.join("requirements-dev.txt"))?;

    crate::step("building the delta CLI");
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--bin", "delta"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bin delta failed ({status})");
    }
    let delta = root.join("target/debug/delta");

    crate::step("the OpenAPI document (delta openapi) against clients/openapi.json");
    let output = Command::new(&delta)
        .arg("openapi")
        .output()
        .context("running delta openapi")?;
    if !output.status.success() {
        bail!(
            "delta openapi failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let document = root.join("clients/openapi.json");
    settle(&document, &output.stdout, update)?;

    crate::step("generating delta_api with openapi-python-client");
    let scratch = root.join("target/clients-generated");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let generated = scratch.join("delta_api");
    let status = Command::new(venv.join("bin/openapi-python-client"))
        .arg("generate")
        .arg("--path")
        .arg(&document)
        .args(["--meta", "none", "--output-path"])
        .arg(&generated)
        .arg("--config")
        .arg(python.join("openapi-python-client.yaml"))
        // Its post-hooks run ruff: the venv's, pinned.
        .env("PATH", path_with(&venv.join("bin"))?)
        .current_dir(&scratch)
        .status()
        .context("running openapi-python-client")?;
    if !status.success() {
        bail!("openapi-python-client failed ({status})");
    }
    let committed = python.join("src/delta_api");
    if update {
        if committed.exists() {
            std::fs::remove_dir_all(&committed)
                .with_context(|| format!("removing {}", committed.display()))?;
        }
        copy_tree(&generated, &committed)?;
    } else {
        let differences = diff_trees(&generated, &committed)?;
        if !differences.is_empty() {
            bail!(
                "clients/python/src/delta_api is not what clients/openapi.json generates \
                 ({} files differ, e.g. {}): run `cargo xtask clients --update` and commit",
                differences.len(),
                differences[0]
            );
        }
    }

    crate::step("ruff and mypy --strict on clients/python");
    for (tool, args) in [
        ("ruff", &["check", "."][..]),
        ("ruff", &["format", "--check", "."][..]),
        ("mypy", &[][..]),
    ] {
        let status = Command::new(venv.join("bin").join(tool))
            .args(args)
            .current_dir(&python)
            .status()
            .with_context(|| format!("running {tool}"))?;
        if !status.success() {
            bail!(
                "{tool} {} failed in clients/python ({status})",
                args.join(" ")
            );
        }
    }

    typescript(root, &delta, &document, update)?;

    crate::step("pytest: the Python client against delta up");
    let status = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q"])
        .env("DELTA_BIN", &delta)
        .env("DELTA_GUESTS", root.join("target/guests"))
        .current_dir(&python)
        .status()
        .context("running pytest")?;
    if !status.success() {
        bail!("the Python client's tests failed ({status})");
    }
    Ok(())
}

/// The TypeScript client: `npm ci` (package-lock.json pins everything),
/// `schema.d.ts` must be what openapi-typescript makes of the document,
/// then `tsc` (strict) and node's test runner against `delta up`.
fn typescript(root: &Path, delta: &Path, document: &Path, update: bool) -> Result<()> {
    crate::python::ensure_node_20()?;
    let dir = root.join("clients/typescript");
    let npm = |args: &[&str], what: &str| -> Result<()> {
        let status = Command::new("npm")
            .args(args)
            .env("DELTA_BIN", delta)
            .env("DELTA_GUESTS", root.join("target/guests"))
            .current_dir(&dir)
            .status()
            .with_context(|| {
                format!("running npm {} (is Node.js 20 installed?)", args.join(" "))
            })?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    };
    crate::step("npm ci in clients/typescript (npm registry)");
    npm(&["ci", "--no-audit", "--no-fund"], "npm ci")?;
    crate::step("generating schema.d.ts with openapi-typescript");
    let generated = root.join("target/clients-generated/schema.d.ts");
    let status = Command::new(dir.join("node_modules/.bin/openapi-typescript"))
        .arg(document)
        .arg("-o")
        .arg(&generated)
        .current_dir(&dir)
        .status()
        .context("running openapi-typescript")?;
    if !status.success() {
        bail!("openapi-typescript failed ({status})");
    }
    let bytes =
        std::fs::read(&generated).with_context(|| format!("reading {}", generated.display()))?;
    settle(&dir.join("src/schema.d.ts"), &bytes, update)?;
    crate::step("tsc (strict) and node --test: the TypeScript client against delta up");
    npm(&["test"], "the TypeScript client's tests")
}

/// Compare `path` with `generated` (or write it, with `update`).
fn settle(path: &Path, generated: &[u8], update: bool) -> Result<()> {
    if update {
        return std::fs::write(path, generated)
            .with_context(|| format!("writing {}", path.display()));
    }
    let committed = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if committed != generated {
        bail!(
            "{} is not what `delta openapi` prints: the API changed; run `cargo xtask \
             clients --update` and commit the regenerated clients",
            path.display()
        );
    }
    Ok(())
}

/// Relative paths of the files that differ between two trees (either side
/// missing counts); caches are ignored.
fn diff_trees(a: &Path, b: &Path) -> Result<Vec<String>> {
    let (left, right) = (files(a)?, files(b)?);
    let mut differences = Vec::new();
    for name in left.iter().chain(right.iter()) {
        if differences.contains(name) {
            continue;
        }
        let x = std::fs::read(a.join(name)).ok();
        let y = std::fs::read(b.join(name)).ok();
        if x.is_none() || x != y {
            differences.push(name.clone());
        }
    }
    Ok(differences)
}

fn files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let name = relative.join(entry.file_name());
            // Caches (__pycache__, .ruff_cache) are not code.
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name == "__pycache__" || file_name.starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(name);
            } else {
                out.push(name.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for name in files(from)? {
        let target = to.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::copy(from.join(&name), &target).with_context(|| format!("copying {name}"))?;
    }
    Ok(())
}

fn path_with(dir: &Path) -> Result<std::ffi::OsString> {
    let mut paths = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).context("building PATH")
}
