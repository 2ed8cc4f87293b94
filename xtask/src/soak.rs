//! `cargo xtask soak`: `delta up` under a long mixed load, sampled each
//! second.
//!
//! Issue 13 asks for a run that shows what a short benchmark cannot: memory
//! that creeps, file descriptors that leak, errors that appear only after
//! minutes, usage that goes missing under sustained load. One `delta up`
//! (control plane on SQLite with its node) takes, at once and for the whole
//! duration:
//!
//! - **runs**: `POST /v1/agents/{id}/runs?wait=true` of a dedicated agent
//!   from several workers, paced to `--rate` runs a second in all;
//! - **deploys**: an agent created, run once and deleted, over and over
//!   (placement, the node's deploy and delete, the component cache);
//! - **reads**: agent, run and usage lists and the agent itself.
//!
//! Every second it samples the process's resident set size and open file
//! descriptors and the latency of that second's requests (p50, p99), and
//! writes the samples as JSON lines to `target/xtask-soak/samples.jsonl`.
//! At the end it waits for the node's usage reports to catch up and fails,
//! loudly and after printing the figures, if:
//!
//! - any answer was a 5xx or a request failed at the transport;
//! - usage was lost: the control plane counts fewer (or more) runs of the
//!   dedicated agent than the workers saw complete;
//! - memory grew: the median RSS of the last 30 s is more than 5 % above
//!   the median of the 30 s after warm-up;
//! - file descriptors leaked: more than 64 above the post-warm-up figure.
//!
//! The dev profile is the default (the figures are about stability, not
//! speed; one build profile in CI); `--release` measures the binary an
//! operator runs. Requests use one connection each (`Connection: close`,
//! as the rest of xtask does, without an HTTP client dependency): the
//! server closes first, so no client port is held in TIME_WAIT.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::harness::{
    HttpResponse, STOP_TIMEOUT, Up, http, latency, mib, parse_duration, rss_kib, start_up, truncate,
};
use crate::{cargo, step};

/// Most RSS growth allowed, as a share of the post-warm-up median.
const MAX_RSS_GROWTH: f64 = 0.05;
/// Most file descriptors allowed above the post-warm-up figure.
const MAX_FD_GROWTH: i64 = 64;
/// Width of the windows whose median RSS is compared.
const WINDOW_SECS: usize = 30;
/// How long usage reports may take to catch up once the load stops (the
/// node reports every second or so; retries back off).
const USAGE_CATCH_UP: Duration = Duration::from_secs(90);

const USAGE: &str = "usage: cargo xtask soak [--duration D] [--rate N] [--workers N] [--release]\n\
    \x20 --duration D   how long the load runs: 600 (seconds), 90s, 10m (default 10m)\n\
    \x20 --rate N       runs a second, all workers together (default 50)\n\
    \x20 --workers N    threads submitting runs (default 4)\n\
    \x20 --release      build and soak the release binary (default: the dev profile)";

/// Options of `cargo xtask soak`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Length of the load, seconds.
    pub duration_secs: u64,
    /// Runs a second in all.
    pub rate: u32,
    /// Run-submitting threads.
    pub workers: u32,
    /// Build with `--release`.
    pub release: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration_secs: 600,
            rate: 50,
            workers: 4,
            release: false,
        }
    }
}

impl Options {
    /// Parse the arguments after `soak`.
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
                "--duration" | "-d" => options.duration_secs = parse_duration(&value()?)?,
                "--rate" => options.rate = positive(&flag, &value()?)?,
                "--workers" => options.workers = positive(&flag, &value()?)?,
                "--release" if inline.is_none() => options.release = true,
                "--help" | "-h" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        if options.duration_secs < warm_up_secs(options.duration_secs) + 2 * WINDOW_SECS as u64 {
            bail!(
                "--duration must leave room for the warm-up and two {WINDOW_SECS} s windows: at least {} s",
                warm_up_secs(options.duration_secs) + 2 * WINDOW_SECS as u64
            );
        }
        Ok(options)
    }
}

fn positive(flag: &str, value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} wants a positive integer, not {value:?}"),
    }
}

/// Seconds of load before the baseline window: caches fill, pools open,
/// the allocator settles. A tenth of the run, at least 30 s.
fn warm_up_secs(duration_secs: u64) -> u64 {
    (duration_secs / 10).max(30)
}

/// What the workers count, shared.
#[derive(Default)]
struct Counters {
    runs_completed: AtomicU64,
    runs_throttled: AtomicU64,
    deploys: AtomicU64,
    reads: AtomicU64,
    /// 5xx answers and transport failures, with the first few for the report.
    failures: AtomicU64,
    first_failures: Mutex<Vec<String>>,
    /// Latencies of this second's requests, microseconds; the sampler takes
    /// them each second.
    latencies_us: Mutex<Vec<u64>>,
}

impl Counters {
    fn record(&self, what: &str, started: Instant, answer: &Result<HttpResponse>) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(us);
        }
        let failure = match answer {
            Ok(r) if r.status >= 500 => {
                Some(format!("{what}: {} {}", r.status, truncate(&r.body, 300)))
            }
            Ok(_) => None,
            Err(e) => Some(format!("{what}: {e:#}")),
        };
        if let Some(failure) = failure {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_failures.lock()
                && first.len() < 10
            {
                first.push(failure);
            }
        }
    }
}

/// One second's sample.
#[derive(Debug, Clone)]
struct Sample {
    second: u64,
    rss_kib: u64,
    fds: i64,
    requests: usize,
    p50_us: f64,
    p99_us: f64,
    failures: u64,
}

/// Run the soak.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let profile = if options.release { "release" } else { "debug" };
    step(&format!("building delta ({profile}) and the guests"));
    let mut build = vec!["build", "--workspace", "--bin", "delta"];
    if options.release {
        build.push("--release");
    }
    cargo(&build)?;
    xtask::ensure_target()?;
    crate::build_guests(root)?;

    let work = root.join("target/xtask-soak");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let wasm = root.join("target/guests/hello-agent.wasm");
    let mut up = start_up(
        &root.join("target").join(profile).join("delta"),
        &wasm,
        &work,
    )?;
    let setup = set_up(&up, &wasm)?;

    step(&format!(
        "soaking for {} s: {} runs/s over {} workers, deploys and reads beside them",
        options.duration_secs, options.rate, options.workers
    ));
    let counters = Counters::default();
    let samples = load(&up, &setup, options, &counters, &work)?;

    step("waiting for usage reports to catch up");
    let completed = counters.runs_completed.load(Ordering::Relaxed);
    let counted = usage_catch_up(&up, &setup.agent, completed)?;
    let stopped = up.server.terminate(STOP_TIMEOUT);

    let verdict = Verdict::of(&samples, options, &counters, completed, counted);
    print!("{}", verdict.report(&samples, &counters));
    let summary = verdict.json(options, &counters, completed, counted);
    let path = work.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("samples and summary in {}", work.display());
    stopped.context("delta up did not stop cleanly after the soak")?;
    verdict.into_result()
}

/// Ids the load needs.
struct Setup {
    /// sha256 of hello-agent, uploaded by this tenant.
    component: String,
    /// The agent whose runs are counted.
    agent: String,
}

fn set_up(up: &Up, wasm: &Path) -> Result<Setup> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let component = json_answer(
        up,
        "POST /v1/components",
        http(
            up.addr,
            "POST",
            "/v1/components",
            Some(&up.key),
            Some("application/wasm"),
            &bytes,
        ),
    )?;
    let component = component["sha256"]
        .as_str()
        .context("the component's record has no sha256")?
        .to_owned();
    let agent = create_agent(up.addr, &up.key, "soak-runs", &component)?;
    let agent = json_from(&agent, "POST /v1/agents")?["id"]
        .as_str()
        .context("the new agent has no id")?
        .to_owned();
    Ok(Setup { component, agent })
}

fn create_agent(addr: SocketAddr, key: &str, name: &str, component: &str) -> Result<HttpResponse> {
    let body = json!({"name": name, "kind": "main", "component": component}).to_string();
    http(
        addr,
        "POST",
        "/v1/agents",
        Some(key),
        Some("application/json"),
        body.as_bytes(),
    )
}

fn json_answer(up: &Up, what: &str, answer: Result<HttpResponse>) -> Result<Value> {
    let answer = answer.with_context(|| format!("{what}{}", up.server.log_tail()))?;
    json_from(&answer, what)
}

fn json_from(answer: &HttpResponse, what: &str) -> Result<Value> {
    if !(200..300).contains(&answer.status) {
        bail!(
            "{what} answered {}: {}",
            answer.status,
            truncate(&answer.body, 500)
        );
    }
    serde_json::from_str(&answer.body)
        .with_context(|| format!("{what} answered no JSON: {}", truncate(&answer.body, 300)))
}

/// Drive the load for the duration and sample each second.
fn load(
    up: &Up,
    setup: &Setup,
    options: &Options,
    counters: &Counters,
    work: &Path,
) -> Result<Vec<Sample>> {
    let stop = AtomicBool::new(false);
    let pid = up.server.child.id();
    let (addr, key) = (up.addr, up.key.as_str());
    let samples_path = work.join("samples.jsonl");
    let mut samples_file = std::fs::File::create(&samples_path)
        .with_context(|| format!("creating {}", samples_path.display()))?;
    // Each worker waits this long between its runs' starts.
    let interval = Duration::from_secs_f64(f64::from(options.workers) / f64::from(options.rate));

    std::thread::scope(|scope| {
        for worker in 0..options.workers {
            let stop = &stop;
            scope.spawn(move || {
                run_worker(addr, key, &setup.agent, worker, interval, stop, counters)
            });
        }
        scope.spawn(|| deploy_worker(addr, key, &setup.component, &stop, counters));
        scope.spawn(|| read_worker(addr, key, &setup.agent, &stop, counters));

        let result = sample(pid, options.duration_secs, counters, &mut samples_file);
        stop.store(true, Ordering::Relaxed);
        result
    })
}

fn run_worker(
    addr: SocketAddr,
    key: &str,
    agent: &str,
    worker: u32,
    interval: Duration,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let path = format!("/v1/agents/{agent}/runs?wait=true");
    let mut next = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"input": {"name": format!("soak-{worker}-{n}")}}).to_string();
        n += 1;
        let started = Instant::now();
        let answer = http(
            addr,
            "POST",
            &path,
            Some(key),
            Some("application/json"),
            body.as_bytes(),
        );
        counters.record("run", started, &answer);
        match &answer {
            Ok(r) if r.status == 200 => {
                counters.runs_completed.fetch_add(1, Ordering::Relaxed);
            }
            // A full queue is the node doing its job, not a failure.
            Ok(r) if r.status == 429 => {
                counters.runs_throttled.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) if r.status < 500 => note_unexpected(counters, "run", r),
            _ => {}
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Behind (slow answers): do not burst to catch up.
            next = now;
        }
    }
}

/// A 4xx the load never causes on purpose is as much a finding as a 5xx.
fn note_unexpected(counters: &Counters, what: &str, r: &HttpResponse) {
    counters.failures.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut first) = counters.first_failures.lock()
        && first.len() < 10
    {
        first.push(format!("{what}: {} {}", r.status, truncate(&r.body, 300)));
    }
}

fn deploy_worker(
    addr: SocketAddr,
    key: &str,
    component: &str,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let created = create_agent(addr, key, &format!("soak-deploy-{n}"), component);
        counters.record("create agent", started, &created);
        let id = match &created {
            Ok(r) if r.status == 201 || r.status == 200 => serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned)),
            Ok(r) if r.status < 500 => {
                note_unexpected(counters, "create agent", r);
                None
            }
            _ => None,
        };
        if let Some(id) = id {
            let started = Instant::now();
            let run = http(
                addr,
                "POST",
                &format!("/v1/agents/{id}/runs?wait=true"),
                Some(key),
                Some("application/json"),
                br#"{"input":{"name":"deploy"}}"#,
            );
            counters.record("run new agent", started, &run);
            let started = Instant::now();
            let deleted = http(
                addr,
                "DELETE",
                &format!("/v1/agents/{id}"),
                Some(key),
                None,
                b"",
            );
            counters.record("delete agent", started, &deleted);
            if let Ok(r) = &deleted
                && !(200..300).contains(&r.status)
                && r.status < 500
            {
                note_unexpected(counters, "delete agent", r);
            }
            counters.deploys.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read_worker(addr: SocketAddr, key: &str, agent: &str, stop: &AtomicBool, counters: &Counters) {
    let paths = [
        "/v1/agents?limit=50".to_owned(),
        format!("/v1/agents/{agent}"),
        "/v1/runs?limit=50".to_owned(),
        format!("/v1/usage?agent_id={agent}&kind=runs"),
    ];
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let path = &paths[i % paths.len()];
        i += 1;
        let started = Instant::now();
        let answer = http(addr, "GET", path, Some(key), None, b"");
        counters.record("read", started, &answer);
        if let Ok(r) = &answer
            && r.status != 200
            && r.status < 500
        {
            note_unexpected(counters, path, r);
        }
        counters.reads.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sample once a second until the duration is over.
fn sample(
    pid: u32,
    duration_secs: u64,
    counters: &Counters,
    out: &mut std::fs::File,
) -> Result<Vec<Sample>> {
    use std::io::Write as _;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(usize::try_from(duration_secs).unwrap_or(0));
    for second in 1..=duration_secs {
        let due = started + Duration::from_secs(second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let rss_kib = rss_kib(pid).context("delta up did not survive the load")?;
        let fds = open_fds(pid)?;
        let mut latencies = counters
            .latencies_us
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        latencies.sort_unstable();
        let s = Sample {
            second,
            rss_kib,
            fds,
            requests: latencies.len(),
            p50_us: percentile(&latencies, 0.50),
            p99_us: percentile(&latencies, 0.99),
            failures: counters.failures.load(Ordering::Relaxed),
        };
        writeln!(
            out,
            "{}",
            json!({"second": s.second, "rss_kib": s.rss_kib, "fds": s.fds,
                   "requests": s.requests, "p50_us": s.p50_us, "p99_us": s.p99_us,
                   "failures": s.failures})
        )
        .context("writing a sample")?;
        if second % 10 == 0 {
            println!(
                "{second:>5} s  RSS {:>10}  fds {:>4}  {:>5} req/s  p50 {:>9}  p99 {:>9}  runs {}  failures {}",
                mib(s.rss_kib),
                s.fds,
                s.requests,
                latency(s.p50_us),
                latency(s.p99_us),
                counters.runs_completed.load(Ordering::Relaxed),
                s.failures
            );
        }
        samples.push(s);
    }
    Ok(samples)
}

fn open_fds(pid: u32) -> Result<i64> {
    let dir = format!("/proc/{pid}/fd");
    let count = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {dir}"))?
        .count();
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}

/// Nearest-rank percentile of sorted values; 0 when there are none.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Poll the control plane's run count for the agent until it reaches what
/// the workers saw complete (or stops moving for too long).
fn usage_catch_up(up: &Up, agent: &str, completed: u64) -> Result<u64> {
    let path = format!("/v1/usage?agent_id={agent}&kind=runs");
    let deadline = Instant::now() + USAGE_CATCH_UP;
    loop {
        let report = json_answer(
            up,
            &format!("GET {path}"),
            http(up.addr, "GET", &path, Some(&up.key), None, b""),
        )?;
        let counted = report["rows"]
            .as_array()
            .context("the usage report has no rows")?
            .iter()
            .filter_map(|row| row["quantity"].as_u64())
            .sum::<u64>();
        if counted >= completed || Instant::now() > deadline {
            return Ok(counted);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The figures and what failed.
struct Verdict {
    rss_baseline_kib: u64,
    rss_end_kib: u64,
    rss_growth: f64,
    fds_baseline: i64,
    fds_end: i64,
    problems: Vec<String>,
}

impl Verdict {
    fn of(
        samples: &[Sample],
        options: &Options,
        counters: &Counters,
        completed: u64,
        counted: u64,
    ) -> Self {
        let warm = usize::try_from(warm_up_secs(options.duration_secs)).unwrap_or(usize::MAX);
        let baseline = samples.iter().skip(warm).take(WINDOW_SECS);
        let rss_baseline_kib = median(baseline.clone().map(|s| s.rss_kib).collect());
        let fds_baseline = baseline.map(|s| s.fds).max().unwrap_or(0);
        let tail = &samples[samples.len().saturating_sub(WINDOW_SECS)..];
        let rss_end_kib = median(tail.iter().map(|s| s.rss_kib).collect());
        let fds_end = tail.iter().map(|s| s.fds).max().unwrap_or(0);
        let rss_growth = if rss_baseline_kib == 0 {
            0.0
        } else {
            rss_end_kib as f64 / rss_baseline_kib as f64 - 1.0
        };

        let mut problems = Vec::new();
        let failures = counters.failures.load(Ordering::Relaxed);
        if failures > 0 {
            problems.push(format!(
                "{failures} failed requests (5xx, unexpected 4xx or transport errors)"
            ));
        }
        if completed == 0 {
            problems.push("no run completed".to_owned());
        }
        if counted != completed {
            problems.push(format!(
                "usage lost or doubled: the control plane counts {counted} runs, the workers saw {completed} complete"
            ));
        }
        if rss_growth > MAX_RSS_GROWTH {
            problems.push(format!(
                "RSS grew {:.1} % (limit {:.0} %)",
                rss_growth * 100.0,
                MAX_RSS_GROWTH * 100.0
            ));
        }
        if fds_end - fds_baseline > MAX_FD_GROWTH {
            problems.push(format!(
                "open files grew from {fds_baseline} to {fds_end} (limit +{MAX_FD_GROWTH})"
            ));
        }
        Self {
            rss_baseline_kib,
            rss_end_kib,
            rss_growth,
            fds_baseline,
            fds_end,
            problems,
        }
    }

    fn report(&self, samples: &[Sample], counters: &Counters) -> String {
        let mut out = String::new();
        let all_p99 = median(samples.iter().map(|s| s.p99_us as u64).collect());
        let worst_p99 = samples.iter().map(|s| s.p99_us as u64).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "runs completed {} (throttled {}), deploys {}, reads {}, failures {}",
            counters.runs_completed.load(Ordering::Relaxed),
            counters.runs_throttled.load(Ordering::Relaxed),
            counters.deploys.load(Ordering::Relaxed),
            counters.reads.load(Ordering::Relaxed),
            counters.failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "RSS {} after warm-up -> {} at the end ({:+.1} %); open files {} -> {}",
            mib(self.rss_baseline_kib),
            mib(self.rss_end_kib),
            self.rss_growth * 100.0,
            self.fds_baseline,
            self.fds_end
        );
        let _ = writeln!(
            out,
            "per-second p99: median {}, worst {}",
            latency(all_p99 as f64),
            latency(worst_p99 as f64)
        );
        if let Ok(first) = counters.first_failures.lock() {
            for f in first.iter() {
                let _ = writeln!(out, "  failure: {f}");
            }
        }
        out
    }

    fn json(&self, options: &Options, counters: &Counters, completed: u64, counted: u64) -> Value {
        json!({
            "duration_secs": options.duration_secs,
            "rate": options.rate,
            "workers": options.workers,
            "release": options.release,
            "runs_completed": completed,
            "runs_counted_by_control_plane": counted,
            "runs_throttled": counters.runs_throttled.load(Ordering::Relaxed),
            "deploys": counters.deploys.load(Ordering::Relaxed),
            "reads": counters.reads.load(Ordering::Relaxed),
            "failures": counters.failures.load(Ordering::Relaxed),
            "rss_baseline_kib": self.rss_baseline_kib,
            "rss_end_kib": self.rss_end_kib,
            "rss_growth": self.rss_growth,
            "fds_baseline": self.fds_baseline,
            "fds_end": self.fds_end,
            "problems": self.problems,
        })
    }

    fn into_result(self) -> Result<()> {
        if self.problems.is_empty() {
            println!("soak passed");
            return Ok(());
        }
        bail!("soak failed: {}", self.problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let o = Options::parse(["--duration", "5m", "--rate=20", "--release"].map(String::from))
            .expect("valid options");
        assert_eq!(o.duration_secs, 300);
        assert_eq!(o.rate, 20);
        assert!(o.release);
        assert_eq!(o.workers, 4);
        // Too short for the warm-up and two windows.
        assert!(Options::parse(["--duration", "60"].map(String::from)).is_err());
        assert!(Options::parse(["--rate", "0"].map(String::from)).is_err());
        assert!(Options::parse(["--bogus"].map(String::from)).is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
        assert_eq!(median(vec![5, 1, 3]), 3);
    }

    fn samples(rss: impl Fn(u64) -> u64) -> Vec<Sample> {
        (1..=120)
            .map(|second| Sample {
                second,
                rss_kib: rss(second),
                fds: 40,
                requests: 10,
                p50_us: 1000.0,
                p99_us: 2000.0,
                failures: 0,
            })
            .collect()
    }

    #[test]
    fn growth_and_lost_usage_fail_the_verdict() {
        let options = Options {
            duration_secs: 120,
            ..Options::default()
        };
        let counters = Counters::default();
        let flat = Verdict::of(&samples(|_| 100_000), &options, &counters, 10, 10);
        assert!(flat.problems.is_empty(), "{:?}", flat.problems);
        // 10 % growth between the windows.
        let leak = Verdict::of(
            &samples(|s| if s > 90 { 110_000 } else { 100_000 }),
            &options,
            &counters,
            10,
            10,
        );
        assert_eq!(leak.problems.len(), 1, "{:?}", leak.problems);
        let lost = Verdict::of(&samples(|_| 100_000), &options, &counters, 10, 9);
        assert!(
            lost.problems[0].contains("usage lost"),
            "{:?}",
            lost.problems
        );
    }
}
