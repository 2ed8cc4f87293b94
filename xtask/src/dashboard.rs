//! `cargo xtask dashboard`: the web dashboard (control/dashboard) checked
//! with `tsc --checkJs --strict` and driven in Debian's Chromium through
//! playwright-core against a real `delta up`: sign in, approve a bot's token
//! request and see the budget tree change, usage per day and per agent, a
//! run's live log, templates approved and rejected, a run's email in the
//! message log, a member invited and given another role, the audit log,
//! a bounty funded and its submission paid out, paging, every page at a
//! phone's width. Screenshots of the main pages are left in
//! target/dashboard-screenshots (copies of some are in docs/).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Run the dashboard's checks (see the module's documentation).
pub fn run(root: &Path, cargo: &std::ffi::OsStr) -> Result<()> {
    xtask::services::ensure_binaries(
        &[("chromium", "chromium")],
        "the dashboard's tests drive it",
    )?;
    crate::python::ensure_node_20()?;
    crate::step("building the delta CLI");
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--bin", "delta"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --bin delta failed ({status})");
    }
    let dir = root.join("control/dashboard");
    for (args, what) in [
        (
            &["ci", "--no-audit", "--no-fund"][..],
            "npm ci in control/dashboard (npm registry)",
        ),
        (
            &["test"][..],
            "tsc --checkJs --strict, then the dashboard in Chromium against delta up",
        ),
    ] {
        crate::step(what);
        let status = Command::new("npm")
            .args(args)
            .env("DELTA_BIN", root.join("target/debug/delta"))
            .env("DELTA_GUESTS", root.join("target/guests"))
            .env(
                "DASHBOARD_SCREENSHOTS",
                root.join("target/dashboard-screenshots"),
            )
            .current_dir(&dir)
            .status()
            .with_context(|| {
                format!("running npm {} (is Node.js 20 installed?)", args.join(" "))
            })?;
        if !status.success() {
            bail!(
                "npm {} in control/dashboard failed ({status})",
                args.join(" ")
            );
        }
    }
    crate::step(
        "the dashboard works in a real browser (screenshots: target/dashboard-screenshots)",
    );
    Ok(())
}
