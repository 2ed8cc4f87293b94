//! The other toolchains xtask commands use: a Python virtual environment
//! under target/ with pinned requirements (recreated when the requirements
//! file changes), and a check for Node.js 20.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Make `venv` hold what `requirements` pins (a copy of the file inside it
/// says what it was made from; a changed file reinstalls).
pub fn venv(venv: &Path, requirements: &Path) -> Result<()> {
    let stamp = venv.join("requirements.txt");
    let wanted = std::fs::read(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    if venv.join("bin/python").exists()
        && std::fs::read(&stamp).ok().as_deref() == Some(&wanted[..])
    {
        return Ok(());
    }
    crate::step(&format!(
        "installing {} into {} (PyPI)",
        requirements.display(),
        venv.display()
    ));
    let status = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .status()
        .context("running python3 -m venv (is python3 installed?)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status})", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!(
            "pip install -r {} failed ({status})",
            requirements.display()
        );
    }
    std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))
}

/// Node.js 20 or newer on PATH (the clients' and dashboard's tests use its
/// test runner and `import.meta.dirname`); a clear error otherwise.
pub fn ensure_node_20() -> Result<()> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .context("running node --version: Node.js 20 or newer is needed (https://nodejs.org)")?;
    let version = String::from_utf8_lossy(&output.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!(
            "Node.js {} is too old: 20 or newer is needed",
            version.trim()
        );
    }
    Ok(())
}
