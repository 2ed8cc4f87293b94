//! `systemd/delta-node.service` and `systemd/delta-control.service` are
//! valid units and stay hardened (the control plane's at an exposure of
//! 2.0 or less).
//!
//! Both tests need `systemd-analyze` (Debian package `systemd`, version 250
//! or later for `--offline` and `--recursive-errors`) and FAIL without it:
//! a silently skipped check would let a broken unit ship. Neither needs a
//! booted systemd: `verify` and `security --offline=yes` load the unit in a
//! private test-mode manager, so they work in containers whose PID 1 is not
//! systemd (checked with systemd 252 on Debian bookworm).
//!
//! `verify` checks that every `Exec*=` binary exists, so it runs on a copy of
//! the unit whose `ExecStart=` points at the `delta` binary cargo just built.
//! It exits 0 even for unknown keys and unparsable values (it only prints
//! them), so the tests also fail on any stderr line about the unit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NODE_UNIT: &str = "delta-node.service";
const CONTROL_UNIT: &str = "delta-control.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/delta";

fn unit_source(unit_name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(unit_name)
}

/// Copy the unit into `dir` (same file name: systemd derives the unit name
/// from it) with `ExecStart=` pointing at the built binary.
fn unit_with_built_binary(dir: &Path, unit_name: &str) -> PathBuf {
    let text = std::fs::read_to_string(unit_source(unit_name))
        .unwrap_or_else(|e| panic!("read systemd/{unit_name}: {e}"));
    // Quoted, with `%` escaped, so any target directory path is one word.
    let binary = env!("CARGO_BIN_EXE_delta")
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    let mut rewritten = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("ExecStart=") {
            Some(rest) => {
                let args = rest.strip_prefix(INSTALLED_BINARY).unwrap_or_else(|| {
                    panic!("ExecStart= does not run {INSTALLED_BINARY}: {line}")
                });
                rewritten += 1;
                format!("ExecStart=\"{binary}\"{args}")
            }
            None => line.to_owned(),
        })
        .collect();
    assert_eq!(rewritten, 1, "expected exactly one ExecStart= line");
    let path = dir.join(unit_name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the unit copy");
    path
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    let unit_name = unit
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed, so systemd/{unit_name} cannot be checked.\n\
             Install it (Debian/Ubuntu: apt-get install systemd); this test does not skip."
        ),
        Err(e) => panic!("running systemd-analyze: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stderr lines about our unit (by file name or unit name); other units'
/// complaints (e.g. a broken unit elsewhere on the host) are not ours.
fn unit_warnings<'a>(stderr: &'a str, unit_name: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(unit_name)).collect()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    verify(NODE_UNIT);
}

#[test]
fn control_unit_passes_systemd_analyze_verify() {
    verify(CONTROL_UNIT);
}

#[test]
fn unit_exposure_level_is_ok_or_better() {
    exposure(NODE_UNIT);
}

#[test]
fn control_unit_exposure_is_at_most_2() {
    let score = exposure(CONTROL_UNIT);
    assert!(
        score <= 2.0,
        "exposure of {CONTROL_UNIT} is {score}, expected 2.0 or less"
    );
}

fn verify(unit_name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_with_built_binary(dir.path(), unit_name);
    // --man=no: CI containers have no man pages; --generators=no: generators
    // inspect the host, not the unit; --recursive-errors=no: only this unit's
    // errors set the exit code, not those of the targets it references.
    let out = systemd_analyze(
        &[
            "verify",
            "--man=no",
            "--generators=no",
            "--recursive-errors=no",
        ],
        &unit,
    );
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed ({}):\n{stderr}",
        out.status
    );
    let warnings = unit_warnings(&stderr, unit_name);
    assert!(
        warnings.is_empty(),
        "systemd-analyze verify warned about {unit_name}:\n{}\n\nfull stderr:\n{stderr}",
        warnings.join("\n")
    );
}

/// The overall exposure figure, asserted OK or better.
fn exposure(unit_name: &str) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_with_built_binary(dir.path(), unit_name);
    let out = systemd_analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze security failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let warnings = unit_warnings(&stderr, unit_name);
    assert!(
        warnings.is_empty(),
        "systemd-analyze security warned about {unit_name}:\n{stderr}"
    );
    // "→ Overall exposure level for delta-node.service: 1.2 OK 🙂"
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no 'Overall exposure level' line in:\n{stdout}"));
    let verdict = line.rsplit(':').next().unwrap_or_default();
    let mut words = verdict.split_whitespace();
    let score: f64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in {line:?}"));
    let level = words.next().unwrap_or_default();
    println!("{unit_name}: overall exposure {score} {level}");
    // systemd's scale, best first: PERFECT (0), SAFE (< 1), OK (< 5), then
    // MEDIUM, EXPOSED, UNSAFE, DANGEROUS.
    assert!(
        matches!(level, "PERFECT" | "SAFE" | "OK"),
        "exposure level of {unit_name} is {score} {level}, expected OK or better:\n{stdout}"
    );
    score
}
