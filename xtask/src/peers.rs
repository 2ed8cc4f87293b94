//! `cargo xtask peers`: Delta side by side with the runtimes and servers an
//! operator would otherwise pick, in one run on the same machine (issue 15).
//!
//! 1. bare Wasmtime 48 (`cold_path/bare_wasmtime_hello_agent_instantiate`
//!    in `benches/runtime.rs`: the same hello-agent component, same pooling
//!    engine, imports as traps, no WASI) against Delta's cold run of it
//!    (`cold_path/delta_hello_agent`), plus the cold path of a larger
//!    component and (full mode) a JavaScript agent; criterion medians;
//! 2. `wasmtime serve` from wasmtime-cli 48.0.8 (built once into
//!    `target/peers/wasmtime`) serving `examples/hello-http`, a `wasi:http`
//!    hello-world;
//! 3. `benches/hello-hyper`, the HTTP ceiling;
//! 4. `delta node`: `POST /v1/agents/{id}/runs?wait=true` of hello-agent,
//!    each run and its usage committed before the answer (group commit);
//! 5. `delta control`: authenticated (API key) `GET /v1/tenants/current` on
//!    SQLite and on PostgreSQL (`DELTA_TEST_POSTGRES_URL`, a fresh database
//!    in it; otherwise a throwaway cluster as `cargo xtask test` makes).
//!
//! 2-5 are driven by the same `wrk -t1 -cN -dD --latency`. Full mode also
//! measures scaling (1, 10, 100, 1,000 connections) and density (node RSS
//! per deployed agent against a bare instance's; how many live instances one
//! process holds with 64 MiB slots). It prints one table and writes it as
//! JSON (`target/peers/last.json` by default) to compare commits.
//!
//! `--quick` (run by `.ci/run`) measures every peer for two seconds on the
//! dev profile the tests already built: it asserts no timing and fails only
//! if a peer does not start, answers non-2xx or a bench step fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::harness::{
    AGENT_ID, RUN_BODY, Server, ServerRun, TENANT_ID, WrkReport, WrkSettings, bench_hyper,
    check_wrk, expect_2xx, free_loopback_addr, http, latency, mib, parse_duration, random_token,
    rss_kib, start_node, truncate, write_private, wrk, wrk_script, wrk_with_rss,
};
use crate::{cargo, step};

/// The wasmtime-cli release compared against (the workspace's Wasmtime).
pub(crate) const WASMTIME_VERSION: &str = "48.0.8";
/// Only what `wasmtime serve` needs (its default features add wast, wizer,
/// WASI-NN, GC, Winch, Pulley, the explorer...): a build a third as long,
/// the same runtime code on the request path.
const WASMTIME_FEATURES: &str =
    "serve,run,component-model-async,cranelift,pooling-allocator,parallel-compilation";

/// Targets (issue 15), each a ratio in the same run.
const COLD_TARGET: f64 = 3.0;
const NODE_VS_SERVE_TARGET: f64 = 2.0;
const NODE_VS_HYPER_TARGET: f64 = 0.25;
const CONTROL_VS_HYPER_TARGET: f64 = 1.0 / 3.0;
const DENSITY_TARGET: f64 = 3.0;
/// The scaling sweep's connection counts (full mode).
const SCALING: [u32; 4] = [1, 10, 100, 1000];

const USAGE: &str = "usage: cargo xtask peers [--quick] [--json FILE] [--profile dev|release] [--duration D] [--connections N]\n\
    \x20 --quick           every peer for 2 s, dev profile, no scaling sweep (CI's smoke check)\n\
    \x20 --json FILE       where the results go (default target/peers/last.json)\n\
    \x20 --profile P       build profile of the servers and the bench (default release; dev with --quick)\n\
    \x20 --duration D      wrk duration per measurement: 30, 10s, 1m (default 10s; 2s with --quick)\n\
    \x20 --connections N   wrk connections of the main table (default 32)";

/// Options of `cargo xtask peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub quick: bool,
    pub json: Option<PathBuf>,
    /// `true`: release profile.
    pub release: bool,
    pub duration_secs: u64,
    pub connections: u32,
}

impl Options {
    /// Parse the arguments after `peers`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut quick = false;
        let mut json = None;
        let mut profile = None;
        let mut duration = None;
        let mut connections = 32;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .with_context(|| format!("{arg} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--json" => json = Some(PathBuf::from(value()?)),
                "--profile" => {
                    profile = Some(match value()?.as_str() {
                        "release" => true,
                        "dev" => false,
                        other => bail!("--profile is dev or release, not {other:?}"),
                    })
                }
                "--duration" => duration = Some(parse_duration(&value()?)?),
                "--connections" => {
                    connections = match value()?.parse::<u32>() {
                        Ok(n) if n > 0 => n,
                        _ => bail!("--connections wants a positive integer"),
                    }
                }
                "--help" | "-h" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        Ok(Self {
            quick,
            json,
            release: profile.unwrap_or(!quick),
            duration_secs: duration.unwrap_or(if quick { 2 } else { 10 }),
            connections,
        })
    }

    fn wrk(&self, connections: u32) -> WrkSettings {
        WrkSettings {
            threads: 1,
            connections,
            duration_secs: self.duration_secs,
        }
    }

    /// The connection counts measured: the table's, then the sweep's.
    fn connection_counts(&self) -> Vec<u32> {
        let mut counts = vec![self.connections];
        if !self.quick {
            counts.extend(SCALING.iter().filter(|c| **c != self.connections));
        }
        counts
    }
}

/// One HTTP peer's figures at each connection count.
struct Measured {
    name: &'static str,
    runs: Vec<(u32, WrkReport)>,
    /// RSS before and after the main run, KiB (Delta's servers).
    rss: Option<(u64, u64)>,
}

impl Measured {
    fn main(&self) -> &WrkReport {
        &self.runs[0].1
    }
}

/// Run the whole comparison.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    check_wrk()?;
    let started = Instant::now();
    let profile = if options.release { "release" } else { "dev" };
    let bin_dir = root.join(if options.release {
        "target/release"
    } else {
        "target/debug"
    });
    step(&format!("building the servers ({profile} profile)"));
    let mut build = vec!["build", "--workspace", "--bins"];
    if options.release {
        build.push("--release");
    }
    cargo(&build)?;
    xtask::ensure_target()?;
    crate::build_guests(root)?;
    let wasmtime = ensure_wasmtime(root, options.release)?;

    let work = root.join("target/peers/run");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let cold = cold_path(root, options)?;
    let counts = options.connection_counts();
    let settings: Vec<WrkSettings> = counts.iter().map(|c| options.wrk(*c)).collect();

    let hyper = bench_hyper(&bin_dir.join("hello-hyper"), &work, &settings)?;
    let hyper = Measured {
        name: "hello-hyper",
        runs: counts.iter().copied().zip(hyper).collect(),
        rss: None,
    };
    let serve = bench_serve(
        &wasmtime,
        &root.join("target/guests/hello-http.wasm"),
        &work,
        &settings,
    )?;
    let delta = bin_dir.join("delta");
    let hello = root.join("target/guests/hello-agent.wasm");
    let (node, node_density) = bench_node(&delta, &hello, &work, &settings, options)?;
    let control_sqlite = bench_control(
        &delta,
        &work,
        "sqlite",
        None,
        &options.wrk(options.connections),
    )?;
    let postgres = Postgres::get()?;
    let control_pg = bench_control(
        &delta,
        &work,
        "postgres",
        Some(&postgres.url),
        &options.wrk(options.connections),
    );
    drop(postgres);
    let control_pg = control_pg?;

    let report = Report {
        cold,
        hyper,
        serve,
        node,
        control_sqlite,
        control_pg,
        node_density,
        options: options.clone(),
    };
    step("results");
    print!("{}", report.table());
    let json_path = options
        .json
        .clone()
        .unwrap_or_else(|| root.join("target/peers/last.json"));
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut document = report.json();
    document["profile"] = json!(profile);
    document["seconds"] = json!(started.elapsed().as_secs());
    document["commit"] = json!(git_head(root));
    std::fs::write(&json_path, serde_json::to_string_pretty(&document)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!(
        "(wrk -t1 -c{} -d{}s --latency, {profile} profile, {} s in all; JSON in {}; scratch files in {})",
        options.connections,
        options.duration_secs,
        started.elapsed().as_secs(),
        json_path.display(),
        work.display()
    );
    report.check()
}

/// Build wasmtime-cli into `target/peers/wasmtime` (release) or
/// `target/peers/wasmtime-dev` (`cargo install --debug`, for the dev-profile
/// runs: quick mode asserts no timing, and a debug build takes CI a
/// fraction of the release build's 10-15 minutes) unless the right version
/// is there.
fn ensure_wasmtime(root: &Path, release: bool) -> Result<PathBuf> {
    let prefix = root.join(if release {
        "target/peers/wasmtime"
    } else {
        "target/peers/wasmtime-dev"
    });
    let binary = prefix.join("bin/wasmtime");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if let Some(version) = &installed
        && version.split_whitespace().nth(1) == Some(WASMTIME_VERSION)
    {
        println!("{} ({})", version.trim(), binary.display());
        return Ok(binary);
    }
    step(&format!(
        "building wasmtime-cli {WASMTIME_VERSION} (cargo install, features {WASMTIME_FEATURES}; once, then cached)"
    ));
    let started = Instant::now();
    let prefix_arg = prefix.to_string_lossy().into_owned();
    let mut args = vec![
        "install",
        "--locked",
        "--version",
        WASMTIME_VERSION,
        "wasmtime-cli",
        "--root",
        &prefix_arg,
        "--no-default-features",
        "--features",
        WASMTIME_FEATURES,
    ];
    if !release {
        args.push("--debug");
    }
    cargo(&args)?;
    println!("built wasmtime-cli in {} s", started.elapsed().as_secs());
    Ok(binary)
}

/// Criterion medians (ns) of the cold-path benches, and density figures.
struct Cold {
    medians: Vec<(String, f64)>,
    density: Vec<(String, String)>,
}

impl Cold {
    fn median(&self, name: &str) -> Option<f64> {
        self.medians
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ns)| *ns)
    }

    fn density(&self, key: &str) -> Option<u64> {
        self.density
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
    }
}

const COLD_BENCHES: [&str; 5] = [
    "cold_path/bare_wasmtime_hello_agent_instantiate",
    "cold_path/bare_wasmtime_trivial",
    "cold_path/delta_hello_agent",
    "cold_path/delta_email_bot_refused",
    "js/cold_js_hello_snapshot",
];

fn cold_path(root: &Path, options: &Options) -> Result<Cold> {
    let (filter, warm_up, measure) = if options.quick {
        ("^cold_path/", "1", "2")
    } else {
        ("^(cold_path/|js/cold_js_hello_snapshot)", "2", "8")
    };
    step("cold path: bare Wasmtime and Delta (criterion, benches/runtime.rs)");
    let criterion = root.join("target/criterion");
    for name in COLD_BENCHES {
        // A figure left from an earlier run must not pass for this one's.
        let _ = std::fs::remove_dir_all(criterion.join(name));
    }
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(["bench", "--workspace", "--bench", "runtime"]);
    if !options.release {
        command.args(["--profile", "dev"]);
    }
    command
        .args([
            "--",
            filter,
            "--warm-up-time",
            warm_up,
            "--measurement-time",
            measure,
        ])
        .env(
            "DELTA_BENCH_DENSITY",
            if options.quick { "100" } else { "1000" },
        )
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    println!(
        "DELTA_BENCH_DENSITY=... cargo bench --workspace --bench runtime{} -- {filter} --warm-up-time {warm_up} --measurement-time {measure}",
        if options.release {
            ""
        } else {
            " --profile dev"
        }
    );
    let output = command.output().context("running cargo bench")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        bail!("cargo bench --bench runtime failed ({})", output.status);
    }
    let density = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("density: "))
        .flat_map(|l| l.split(' '))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut medians = Vec::new();
    for name in COLD_BENCHES {
        if options.quick && name.starts_with("js/") {
            continue;
        }
        let path = criterion.join(name).join("new/estimates.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("criterion wrote no {}", path.display()))?;
        medians.push((name.to_owned(), criterion_median(&text)?));
    }
    Ok(Cold { medians, density })
}

/// The median's point estimate (ns) in criterion's `estimates.json`.
fn criterion_median(text: &str) -> Result<f64> {
    let v: Value = serde_json::from_str(text).context("estimates.json is not JSON")?;
    v["median"]["point_estimate"]
        .as_f64()
        .context("estimates.json has no median.point_estimate")
}

/// `wasmtime serve` with hello-http, pooling allocator on like Delta's.
fn bench_serve(
    wasmtime: &Path,
    component: &Path,
    work: &Path,
    settings: &[WrkSettings],
) -> Result<Measured> {
    let addr = free_loopback_addr()?;
    step(&format!("wasmtime serve on {addr}"));
    let mut server = Server::spawn(
        "wasmtime serve",
        Command::new(wasmtime)
            .arg("serve")
            .arg("--addr")
            .arg(addr.to_string())
            // Rust's std in the guest imports wasi:cli (environment, exit).
            .args(["-S", "cli=y", "-O", "pooling-allocator=y"])
            .arg(component),
        &work.join("wasmtime-serve.log"),
    )?;
    server.wait_ready(addr, "/")?;
    let url = format!("http://{addr}/");
    let mut runs = Vec::new();
    for s in settings {
        runs.push((s.connections, wrk(s, &url, None)?));
    }
    drop(server);
    Ok(Measured {
        name: "wasmtime serve",
        runs,
        rss: None,
    })
}

/// The node's figures, and (full mode) its RSS per deployed agent.
fn bench_node(
    delta: &Path,
    wasm: &Path,
    work: &Path,
    settings: &[WrkSettings],
    options: &Options,
) -> Result<(Measured, Option<NodeDensity>)> {
    let node = start_node(delta, wasm, work)?;
    let url = format!("http://{}{}", node.addr, node.run_path);
    let mut runs = Vec::new();
    let mut rss = None;
    for s in settings {
        let ServerRun {
            wrk,
            rss_before_kib,
            rss_after_kib,
            ..
        } = wrk_with_rss(&node.server, s, &url, &node.script)?;
        rss.get_or_insert((rss_before_kib, rss_after_kib));
        runs.push((s.connections, wrk));
    }
    let agents = if options.quick { 20 } else { 200 };
    let density = node_density(&node, agents)?;
    drop(node);
    Ok((
        Measured {
            name: "delta node",
            runs,
            rss,
        },
        Some(density),
    ))
}

/// The node's idle RSS per deployed hello-agent: `agents` more agents of
/// the same component, each run once, then left idle.
struct NodeDensity {
    agents: u32,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

impl NodeDensity {
    fn per_agent_bytes(&self) -> u64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024 / u64::from(self.agents)
    }
}

fn node_density(node: &crate::harness::Node, agents: u32) -> Result<NodeDensity> {
    step(&format!(
        "node density: {agents} more agents deployed and run once"
    ));
    let pid = node.server.child.id();
    // Settle after the load: the figure is of an idle node.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let rss_before_kib = rss_kib(pid)?;
    let auth = Some(node.token.as_str());
    for i in 0..agents {
        let id = format!("{AGENT_ID}-{i}");
        let spec = json!({ "tenant_id": TENANT_ID, "component": node.component }).to_string();
        let path = format!("/v1/agents/{id}");
        expect_2xx(
            &node.server,
            &format!("PUT {path}"),
            http(
                node.addr,
                "PUT",
                &path,
                auth,
                Some("application/json"),
                spec.as_bytes(),
            ),
        )?;
        let path = format!("/v1/agents/{id}/runs?wait=true");
        expect_2xx(
            &node.server,
            &format!("POST {path}"),
            http(
                node.addr,
                "POST",
                &path,
                auth,
                Some("application/json"),
                RUN_BODY.as_bytes(),
            ),
        )?;
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let rss_after_kib = rss_kib(pid)?;
    Ok(NodeDensity {
        agents,
        rss_before_kib,
        rss_after_kib,
    })
}

/// `delta control` on `database_url` (SQLite in its state directory when
/// `None`): a registered user's API key doing `GET /v1/tenants/current`
/// (the key's check, then a read).
fn bench_control(
    delta: &Path,
    work: &Path,
    label: &'static str,
    database_url: Option<&str>,
    settings: &WrkSettings,
) -> Result<Measured> {
    let dir = work.join(format!("control-{label}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let addr = free_loopback_addr()?;
    let mut config = format!(
        "listen = \"{addr}\"\nstate_dir = {:?}\nallow_registration = true\n",
        dir.join("state").to_string_lossy()
    );
    if let Some(url) = database_url {
        let _ = writeln!(config, "database_url = {url:?}");
    }
    // wrk sends thousands of requests a second with one key: the limiter
    // would answer most of them 429.
    config.push_str(
        "[rate_limit]\nper_key_per_sec = 0\nper_key_burst = 0\nper_tenant_per_sec = 0\nper_tenant_burst = 0\n",
    );
    let config_file = dir.join("control.toml");
    // Private: it may hold a database password.
    write_private(&config_file, config.as_bytes())?;
    step(&format!("delta control on {addr} ({label})"));
    let name = match label {
        "sqlite" => "delta control (SQLite)",
        _ => "delta control (PostgreSQL)",
    };
    let mut server = Server::spawn(
        name,
        Command::new(delta)
            .arg("control")
            .arg("--config")
            .arg(&config_file),
        &dir.join("control.log"),
    )?;
    server.wait_ready(addr, "/healthz")?;

    let email = format!("peers-{}@example.com", &random_token()?[..12]);
    let password = random_token()?;
    let credentials = json!({ "email": email, "password": password }).to_string();
    let json_type = Some("application/json");
    expect_2xx(
        &server,
        "POST /v1/auth/register",
        http(
            addr,
            "POST",
            "/v1/auth/register",
            None,
            json_type,
            credentials.as_bytes(),
        ),
    )?;
    let login = expect_2xx(
        &server,
        "POST /v1/auth/login",
        http(
            addr,
            "POST",
            "/v1/auth/login",
            None,
            json_type,
            credentials.as_bytes(),
        ),
    )?;
    let access = json_field(&login.body, "access_token")?;
    let created = expect_2xx(
        &server,
        "POST /v1/api-keys",
        http(
            addr,
            "POST",
            "/v1/api-keys",
            Some(&access),
            json_type,
            br#"{"name":"peers"}"#,
        ),
    )?;
    let key = json_field(&created.body, "key")?;
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the API key is not a plain token: {}", truncate(&key, 80));
    }
    let path = "/v1/tenants/current";
    let first = expect_2xx(
        &server,
        &format!("GET {path}"),
        http(addr, "GET", path, Some(&key), None, b""),
    )?;
    println!("GET {path}: {}", truncate(&first.body, 200));
    let script = dir.join("get-tenant.lua");
    write_private(&script, wrk_script("GET", None, &key).as_bytes())?;
    let run = wrk_with_rss(&server, settings, &format!("http://{addr}{path}"), &script)?;
    let stopped = server.terminate(crate::harness::STOP_TIMEOUT);
    stopped.with_context(|| format!("{name} did not stop cleanly"))?;
    Ok(Measured {
        name,
        runs: vec![(settings.connections, run.wrk)],
        rss: Some((run.rss_before_kib, run.rss_after_kib)),
    })
}

/// A string field of a JSON object (set-up answers).
fn json_field(body: &str, field: &str) -> Result<String> {
    // A chunked body keeps its chunk sizes (see `parse_response`): the
    // object is what lies between the first `{` and the last `}`.
    let object = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) if start < end => &body[start..=end],
        _ => bail!("not a JSON object: {}", truncate(body, 200)),
    };
    let v: Value = serde_json::from_str(object)
        .with_context(|| format!("not a JSON object: {}", truncate(body, 200)))?;
    v[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no string {field:?} in {}", truncate(body, 200)))
}

/// The PostgreSQL the control plane runs on: a fresh database on
/// `DELTA_TEST_POSTGRES_URL`'s server (dropped afterwards), or a throwaway
/// cluster.
struct Postgres {
    url: String,
    /// `(server URL, database)` to drop.
    drop_database: Option<(String, String)>,
    _cluster: Option<xtask::services::Postgres>,
}

impl Postgres {
    fn get() -> Result<Self> {
        if let Ok(server) = std::env::var("DELTA_TEST_POSTGRES_URL") {
            let database = format!("delta_peers_{}", std::process::id());
            psql(&server, &format!("CREATE DATABASE {database}"))?;
            return Ok(Self {
                url: with_database(&server, &database)?,
                drop_database: Some((server, database)),
                _cluster: None,
            });
        }
        step("starting a throwaway PostgreSQL (DELTA_TEST_POSTGRES_URL is not set)");
        let cluster = xtask::services::Postgres::start()?;
        Ok(Self {
            url: cluster.url.clone(),
            drop_database: None,
            _cluster: Some(cluster),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((server, database)) = &self.drop_database
            && let Err(e) = psql(server, &format!("DROP DATABASE IF EXISTS {database}"))
        {
            eprintln!("warning: {e:#}");
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `url` with its database (the path) replaced by `database`.
fn with_database(url: &str, database: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        let _ = write!(out, "?{query}");
    }
    if !out.starts_with("postgres://") && !out.starts_with("postgresql://") {
        bail!("DELTA_TEST_POSTGRES_URL is not a postgres:// URL");
    }
    Ok(out)
}

fn git_head(root: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Everything measured in one run.
struct Report {
    cold: Cold,
    hyper: Measured,
    serve: Measured,
    node: Measured,
    control_sqlite: Measured,
    control_pg: Measured,
    node_density: Option<NodeDensity>,
    options: Options,
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl Report {
    fn http_peers(&self) -> [&Measured; 5] {
        [
            &self.hyper,
            &self.serve,
            &self.node,
            &self.control_sqlite,
            &self.control_pg,
        ]
    }

    fn table(&self) -> String {
        let hyper = self.hyper.main();
        let serve = self.serve.main();
        let mut out = format!(
            "{:<27} {:>10} {:>9} {:>9} {:>8} {:>8}  {}\n",
            "peer", "req/s", "p50", "p99", "/hyper", "/serve", "target"
        );
        for peer in self.http_peers() {
            let r = peer.main();
            let target = match peer.name {
                "delta node" => format!(
                    ">= {NODE_VS_SERVE_TARGET}x serve, p99 <= serve's, >= {NODE_VS_HYPER_TARGET} hyper: {}",
                    verdict(
                        ratio(r.requests_per_sec, serve.requests_per_sec) >= NODE_VS_SERVE_TARGET
                            && r.p99_us <= serve.p99_us
                            && ratio(r.requests_per_sec, hyper.requests_per_sec)
                                >= NODE_VS_HYPER_TARGET
                    )
                ),
                "delta control (SQLite)" => format!(
                    ">= 0.333 hyper, p99 <= 10 ms: {}",
                    verdict(
                        ratio(r.requests_per_sec, hyper.requests_per_sec)
                            >= CONTROL_VS_HYPER_TARGET
                            && r.p99_us <= 10_000.0
                    )
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<27} {:>10.0} {:>9} {:>9} {:>8.3} {:>8.3}  {target}",
                peer.name,
                r.requests_per_sec,
                latency(r.p50_us),
                latency(r.p99_us),
                ratio(r.requests_per_sec, hyper.requests_per_sec),
                ratio(r.requests_per_sec, serve.requests_per_sec),
            );
        }
        let _ = writeln!(
            out,
            "\ncold path (criterion medians, new store + instantiate [+ run]):"
        );
        let bare = self
            .cold
            .median("cold_path/bare_wasmtime_hello_agent_instantiate")
            .unwrap_or(0.0);
        for (name, ns) in &self.cold.medians {
            let target = if name == "cold_path/delta_hello_agent" {
                format!(
                    "  target <= {COLD_TARGET}x: {}",
                    verdict(ratio(*ns, bare) <= COLD_TARGET)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {name:<48} {:>10.2} µs {:>7.2}x bare{target}",
                ns / 1000.0,
                ratio(*ns, bare)
            );
        }
        if let Some(d) = &self.node_density {
            let bare_rss = self.cold.density("bare_instance_rss_bytes").unwrap_or(0);
            let per = d.per_agent_bytes();
            let _ = writeln!(
                out,
                "\ndensity: node RSS per deployed idle hello-agent {} B ({} agents: {} -> {}); \
                 a live bare instance {} B; ratio {:.2} (target <= {DENSITY_TARGET}: {})",
                per,
                d.agents,
                mib(d.rss_before_kib),
                mib(d.rss_after_kib),
                bare_rss,
                ratio(per as f64, bare_rss as f64),
                verdict(ratio(per as f64, bare_rss as f64) <= DENSITY_TARGET)
            );
        }
        let wall = self
            .cold
            .density("address_space_wall_instances")
            .unwrap_or(0);
        let bare_rss = self.cold.density("bare_instance_rss_bytes").unwrap_or(0);
        let available = self.cold.density("mem_available_bytes").unwrap_or(0);
        let ram_wall = available.checked_div(bare_rss).unwrap_or(0);
        let _ = writeln!(
            out,
            "live instances with 64 MiB slots: address space allows a pool of {wall}; \
             RAM ({} available / {bare_rss} B each) about {ram_wall}: the wall is {}",
            mib(available / 1024),
            if ram_wall < wall {
                "RAM"
            } else {
                "address space (each instance reserves its memories' guard regions up front)"
            }
        );
        for peer in [&self.node, &self.control_sqlite, &self.control_pg] {
            if let Some((before, after)) = peer.rss {
                let _ = writeln!(
                    out,
                    "{} RSS: {} before the load, {} after",
                    peer.name,
                    mib(before),
                    mib(after)
                );
            }
        }
        if !self.options.quick {
            let _ = writeln!(out, "\nscaling (connections: req/s, p99):");
            for peer in [&self.hyper, &self.serve, &self.node] {
                let mut line = format!("  {:<16}", peer.name);
                let mut runs = peer.runs.clone();
                runs.sort_by_key(|(c, _)| *c);
                for (c, r) in runs {
                    let _ = write!(
                        line,
                        "  c{c}: {:.0}, {}",
                        r.requests_per_sec,
                        latency(r.p99_us)
                    );
                    // Past its queue the node answers 429/503 by design:
                    // those answers are in req/s, so they are shown.
                    if r.non_2xx > 0 {
                        let _ = write!(line, " ({} non-2xx)", r.non_2xx);
                    }
                }
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    fn json(&self) -> Value {
        let hyper = self.hyper.main().requests_per_sec;
        let serve = self.serve.main().requests_per_sec;
        let peers: Vec<Value> = self
            .http_peers()
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "runs": p.runs.iter().map(|(c, r)| json!({
                        "connections": c,
                        "requests_per_sec": r.requests_per_sec,
                        "p50_us": r.p50_us,
                        "p99_us": r.p99_us,
                        "requests": r.requests,
                        "non_2xx": r.non_2xx,
                    })).collect::<Vec<_>>(),
                    "ratio_to_hyper": ratio(p.main().requests_per_sec, hyper),
                    "ratio_to_wasmtime_serve": ratio(p.main().requests_per_sec, serve),
                    "rss_kib": p.rss.map(|(b, a)| json!({"before": b, "after": a})),
                })
            })
            .collect();
        json!({
            "connections": self.options.connections,
            "duration_secs": self.options.duration_secs,
            "quick": self.options.quick,
            "peers": peers,
            "cold_path_median_ns": self.cold.medians.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "density": {
                "bench": self.cold.density.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "node_agents": self.node_density.as_ref().map(|d| d.agents),
                "node_rss_per_agent_bytes": self.node_density.as_ref().map(NodeDensity::per_agent_bytes),
            },
        })
    }

    /// Fail on what the quick mode checks: every peer answered 2xx in the
    /// main measurement (the scaling sweep's 1,000 connections overrun the
    /// node's admission queue, which refuses by design; shown, not fatal).
    fn check(&self) -> Result<()> {
        for peer in self.http_peers() {
            for (c, r) in peer.runs.iter().take(1) {
                if r.non_2xx > 0 {
                    bail!(
                        "wrk got {} non-2xx/3xx responses from {} at -c{c}",
                        r.non_2xx,
                        peer.name
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let o = Options::parse(args(&[])).expect("defaults");
        assert!(o.release && !o.quick);
        assert_eq!((o.duration_secs, o.connections), (10, 32));
        assert_eq!(o.connection_counts(), vec![32, 1, 10, 100, 1000]);
        let o = Options::parse(args(&["--quick"])).expect("quick");
        assert!(!o.release && o.quick);
        assert_eq!(o.duration_secs, 2);
        assert_eq!(o.connection_counts(), vec![32]);
        let o = Options::parse(args(&[
            "--quick",
            "--profile",
            "release",
            "--json",
            "x.json",
        ]))
        .expect("quick release");
        assert!(o.release);
        assert_eq!(o.json.as_deref(), Some(Path::new("x.json")));
        let o = Options::parse(args(&["--connections", "100", "--duration", "1m"])).expect("c");
        assert_eq!(o.connection_counts(), vec![100, 1, 10, 1000]);
        assert_eq!(o.duration_secs, 60);
        assert!(Options::parse(args(&["--profile", "fast"])).is_err());
        assert!(Options::parse(args(&["--connections", "0"])).is_err());
        assert!(Options::parse(args(&["--json"])).is_err());
        assert!(Options::parse(args(&["--bogus"])).is_err());
    }

    #[test]
    fn reads_criterion_medians() {
        let text = r#"{"mean":{"point_estimate":12.5},"median":{"point_estimate":10250.75}}"#;
        assert_eq!(criterion_median(text).ok(), Some(10250.75));
        assert!(criterion_median(r#"{"mean":{"point_estimate":1.0}}"#).is_err());
        assert!(criterion_median("nope").is_err());
    }

    #[test]
    fn replaces_the_database_of_a_url() {
        let url = "postgres://delta:delta@127.0.0.1:5432/postgres";
        assert_eq!(
            with_database(url, "x").ok().as_deref(),
            Some("postgres://delta:delta@127.0.0.1:5432/x")
        );
        assert_eq!(
            with_database("postgres://h:5/db?sslmode=disable", "y")
                .ok()
                .as_deref(),
            Some("postgres://h:5/y?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h", "z").ok().as_deref(),
            Some("postgres://h/z")
        );
        assert!(with_database("mysql://h/db", "z").is_err());
    }

    #[test]
    fn reads_json_fields_of_set_up_answers() {
        assert_eq!(
            json_field(r#"{"key":"dk_a_b"}"#, "key").ok().as_deref(),
            Some("dk_a_b")
        );
        assert_eq!(
            json_field("1a\r\n{\"key\":\"v\"}\r\n0\r\n\r\n", "key")
                .ok()
                .as_deref(),
            Some("v")
        );
        assert!(json_field(r#"{"key":7}"#, "key").is_err());
        assert!(json_field("oops", "key").is_err());
    }
}
