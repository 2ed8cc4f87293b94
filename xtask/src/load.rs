//! `cargo xtask load`: the node's run endpoint and the control plane's API
//! under load, against a baseline.
//!
//! The targets are relative ("at least 25 % [node] / a third [control plane]
//! of the requests/s of a minimal hyper hello-world server driven by the same
//! load generator in the same run"), so all servers are measured here, one
//! after the other, with the same `wrk` settings:
//!
//! 1. `hello-hyper` (`benches/hello-hyper/`), `GET /`;
//! 2. `delta node` with hello-agent deployed, `POST
//!    /v1/agents/{id}/runs?wait=true` (a whole run per request);
//! 3. `delta up` (the control plane on SQLite, with its node) with
//!    hello-agent deployed, `GET /v1/agents/{id}` with the admin API key (a
//!    key check and an agent read per request; the control plane's target
//!    also wants p99 <= 10 ms).
//!
//! It prints req/s, p50 and p99 latency and each server's ratio to hyper
//! against its target, and the node's and `delta up`'s RSS before and after
//! the load (`--duration 5m` for the long run the memory target asks for).
//! It fails if wrk saw any non-2xx response, or if `delta up` does not stop
//! cleanly on SIGTERM. Scratch files (state directories, token, logs, wrk
//! scripts) go to `target/xtask-load/`, left in place for inspection.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::harness::{
    WrkReport, WrkSettings, bench_control, bench_hyper, bench_node, check_wrk, latency, mib,
    parse_duration,
};
use crate::{cargo, step};

/// The target: node req/s >= this share of hyper's.
const TARGET_RATIO: f64 = 0.25;
/// The control plane's targets: req/s >= this share of hyper's...
const CONTROL_TARGET_RATIO: f64 = 1.0 / 3.0;
/// ... with p99 at most this, in microseconds.
const CONTROL_TARGET_P99_US: f64 = 10_000.0;

const USAGE: &str = "usage: cargo xtask load [--threads N] [--connections N] [--duration D] [--baseline-only | --control-only]\n\
    \x20 --threads N       wrk threads (default 1)\n\
    \x20 --connections N   wrk connections, >= threads (default 32)\n\
    \x20 --duration D      wrk duration per server: 30 (seconds), 10s, 5m, 1h (default 10s)\n\
    \x20 --baseline-only   measure only hello-hyper (no node, no control plane, no guests built)\n\
    \x20 --control-only    measure hello-hyper and the control plane (skip the node)";

/// Options of `cargo xtask load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// wrk `-t`.
    pub threads: u32,
    /// wrk `-c`.
    pub connections: u32,
    /// wrk `-d`, in seconds.
    pub duration_secs: u64,
    /// Skip the node and the control plane.
    pub baseline_only: bool,
    /// Skip the node.
    pub control_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threads: 1,
            connections: 32,
            duration_secs: 10,
            baseline_only: false,
            control_only: false,
        }
    }
}

impl Options {
    /// Parse the arguments after `load`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut options = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))
            };
            match flag.as_str() {
                "--threads" | "-t" => options.threads = parse_count(&flag, &value()?)?,
                "--connections" | "-c" => options.connections = parse_count(&flag, &value()?)?,
                "--duration" | "-d" => options.duration_secs = parse_duration(&value()?)?,
                "--baseline-only" if inline.is_none() => options.baseline_only = true,
                "--control-only" if inline.is_none() => options.control_only = true,
                "--help" | "-h" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        if options.baseline_only && options.control_only {
            bail!("--baseline-only and --control-only exclude each other\n{USAGE}");
        }
        if options.connections < options.threads {
            bail!(
                "--connections ({}) must be at least --threads ({}): wrk gives each thread its own connections",
                options.connections,
                options.threads
            );
        }
        Ok(options)
    }
}

fn parse_count(flag: &str, value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} wants a positive integer, not {value:?}"),
    }
}

impl Options {
    /// wrk's settings.
    fn wrk(&self) -> WrkSettings {
        WrkSettings {
            threads: self.threads,
            connections: self.connections,
            duration_secs: self.duration_secs,
        }
    }
}

/// Run the whole benchmark.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    check_wrk()?;
    step("building release binaries");
    if options.baseline_only {
        cargo(&["build", "--release", "-p", "hello-hyper"])?;
    } else {
        cargo(&["build", "--release", "-p", "delta", "-p", "hello-hyper"])?;
        xtask::ensure_target()?;
        crate::build_guests(root)?;
    }
    let release = root.join("target/release");
    let work = root.join("target/xtask-load");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let hyper = one(bench_hyper(
        &release.join("hello-hyper"),
        &work,
        &[options.wrk()],
    )?)?;
    let delta = release.join("delta");
    let wasm = root.join("target/guests/hello-agent.wasm");
    let node = if options.baseline_only || options.control_only {
        None
    } else {
        Some(one(bench_node(&delta, &wasm, &work, &[options.wrk()])?)?)
    };
    let control = if options.baseline_only {
        None
    } else {
        Some(bench_control(&delta, &wasm, &work, &options.wrk())?)
    };

    step("results");
    print!(
        "{}",
        result_table(
            &hyper,
            node.as_ref().map(|n| &n.wrk),
            control.as_ref().map(|c| &c.load.wrk)
        )
    );
    for (server, run) in node
        .iter()
        .map(|n| ("node", n))
        .chain(control.iter().map(|c| ("delta up", &c.load)))
    {
        println!(
            "{server} RSS: {} before the load, {} after it (highest sample {})",
            mib(run.rss_before_kib),
            mib(run.rss_after_kib),
            mib(run.rss_peak_kib)
        );
    }
    println!(
        "(wrk -t{} -c{} -d{}s --latency; scratch files in {})",
        options.threads,
        options.connections,
        options.duration_secs,
        work.display()
    );
    for (server, report) in std::iter::once(("hello-hyper", &hyper))
        .chain(node.as_ref().map(|n| ("delta node", &n.wrk)))
        .chain(control.as_ref().map(|c| ("delta up", &c.load.wrk)))
    {
        if report.non_2xx > 0 {
            bail!(
                "wrk got {} non-2xx/3xx responses from {server}",
                report.non_2xx
            );
        }
    }
    // Checked after the table: the figures are valid either way.
    if let Some(Err(e)) = control.map(|c| c.stopped) {
        return Err(e);
    }
    Ok(())
}

fn result_table(
    hyper: &WrkReport,
    node: Option<&WrkReport>,
    control: Option<&WrkReport>,
) -> String {
    let mut out = format!(
        "{:<17} {:>12} {:>10} {:>10} {:>8}  {}\n",
        "server", "req/s", "p50", "p99", "non-2xx", "ratio to hyper"
    );
    let mut row = |name: &str, r: &WrkReport, ratio: String| {
        let _ = writeln!(
            out,
            "{:<17} {:>12.1} {:>10} {:>10} {:>8}  {ratio}",
            name,
            r.requests_per_sec,
            latency(r.p50_us),
            latency(r.p99_us),
            r.non_2xx
        );
        if let Some(errors) = &r.socket_errors {
            let _ = writeln!(out, "{:<17} {errors}", "");
        }
    };
    row("hello-hyper", hyper, "baseline".into());
    if let Some(node) = node {
        let ratio = node.requests_per_sec / hyper.requests_per_sec;
        let verdict = if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        };
        row(
            "delta node",
            node,
            format!("{ratio:.3} (target >= {TARGET_RATIO}: {verdict})"),
        );
    }
    if let Some(control) = control {
        let ratio = control.requests_per_sec / hyper.requests_per_sec;
        row(
            "control GET agent",
            control,
            format!(
                "{ratio:.3} (target >= {CONTROL_TARGET_RATIO:.3}, p99 <= {}: {})",
                latency(CONTROL_TARGET_P99_US),
                control_verdict(ratio, control.p99_us)
            ),
        );
    }
    out
}

/// The only figure of a one-run measurement.
fn one<T>(mut runs: Vec<T>) -> Result<T> {
    match (runs.pop(), runs.is_empty()) {
        (Some(run), true) => Ok(run),
        _ => bail!("expected one measurement"),
    }
}

/// "met", or which of the control plane's targets were missed.
fn control_verdict(ratio: f64, p99_us: f64) -> String {
    let missed: Vec<&str> = [
        (ratio < CONTROL_TARGET_RATIO, "req/s"),
        (p99_us > CONTROL_TARGET_P99_US, "p99"),
    ]
    .into_iter()
    .filter_map(|(missed, what)| missed.then_some(what))
    .collect();
    if missed.is_empty() {
        "met".to_owned()
    } else {
        format!("NOT met: {}", missed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Options::parse(args(&[])).expect("defaults"),
            Options::default()
        );
        let o = Options::parse(args(&["--threads", "2", "-c64", "--duration=5m"]));
        // `-c64` is not a supported spelling: flags take a separate or `=` value.
        assert!(o.is_err());
        let o = Options::parse(args(&["--threads", "2", "-c", "64", "--duration=5m"]))
            .expect("options");
        assert_eq!((o.threads, o.connections, o.duration_secs), (2, 64, 300));
        assert!(Options::parse(args(&["--threads", "0"])).is_err());
        assert!(Options::parse(args(&["--threads", "8", "--connections", "4"])).is_err());
        assert!(Options::parse(args(&["--duration", "soon"])).is_err());
        assert!(Options::parse(args(&["--bogus"])).is_err());
        assert!(Options::parse(args(&["--baseline-only=no"])).is_err());
        assert!(
            Options::parse(args(&["--baseline-only"]))
                .expect("flag")
                .baseline_only
        );
        let o = Options::parse(args(&["--control-only", "-d", "20s"])).expect("flag");
        assert!(o.control_only && !o.baseline_only);
        assert_eq!(o.duration_secs, 20);
        assert!(Options::parse(args(&["--control-only=yes"])).is_err());
        assert!(Options::parse(args(&["--control-only", "--baseline-only"])).is_err());
    }

    fn report(requests_per_sec: f64, p99_us: f64) -> WrkReport {
        WrkReport {
            requests_per_sec,
            p50_us: 500.0,
            p99_us,
            requests: 1000,
            non_2xx: 0,
            socket_errors: None,
        }
    }

    #[test]
    fn control_plane_verdicts() {
        assert_eq!(control_verdict(0.5, 9_000.0), "met");
        assert_eq!(control_verdict(CONTROL_TARGET_RATIO, 10_000.0), "met");
        assert_eq!(control_verdict(0.3, 9_000.0), "NOT met: req/s");
        assert_eq!(control_verdict(0.5, 10_001.0), "NOT met: p99");
        assert_eq!(control_verdict(0.1, 20_000.0), "NOT met: req/s, p99");
    }

    #[test]
    fn result_table_rows() {
        let hyper = report(90_000.0, 1_000.0);
        let table = result_table(&hyper, None, None);
        assert_eq!(table.lines().count(), 2, "{table}");
        let table = result_table(
            &hyper,
            Some(&report(30_000.0, 2_000.0)),
            Some(&report(45_000.0, 12_000.0)),
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("server "), "{table}");
        assert!(lines[1].starts_with("hello-hyper "), "{table}");
        assert!(lines[2].starts_with("delta node "), "{table}");
        assert!(lines[2].ends_with("0.333 (target >= 0.25: met)"), "{table}");
        assert!(lines[3].starts_with("control GET agent "), "{table}");
        assert!(
            lines[3].ends_with("0.500 (target >= 0.333, p99 <= 10.00 ms: NOT met: p99)"),
            "{table}"
        );
        // Columns line up: every req/s figure ends at the same place.
        let end = lines[0].find("req/s").map(|i| i + "req/s".len());
        for line in &lines[1..] {
            assert_eq!(line.find(".0 ").map(|i| i + 2), end, "{table}");
        }
    }
}
