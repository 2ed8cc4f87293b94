//! Python tools for xtask commands: a virtual environment under target/
//! with pinned requirements, recreated when the requirements file changes.

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
