//! `delta`: the command-line interface of the Delta agent runtime.
//!
//! - `delta run <component.wasm | agent.js>`: one invocation under limits,
//!   printing the output and what it used (a `.js` file is prepared into a
//!   QuickJS component first).
//! - `delta inspect <component.wasm>`: the component's world, imports and
//!   exports.
//! - `delta node`: the node daemon (`delta-node`).
//! - `delta control`: the control plane (`delta-control`).
//! - `delta up`: control plane and one node in one process, on loopback.
//! - `delta agents ...`, `delta runs ...`: a client of the control plane.
//!
//! Exit codes (stable, for scripts):
//! `0` success, `1` host error, `2` bad input (arguments, component or task
//! JSON), `3` the agent returned an error, `4` a limit stopped the guest
//! (fuel, deadline, memory, stack, output size), `5` the guest crashed
//! (panic, trap, invalid output), `6` cancelled.

mod client;
mod config;
mod js;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use delta_host_api::CallContext;
use delta_runtime::{
    AgentInvocation, CompileMode, InvocationLimits, LoadError, OutcomeClass, RunError, RunReport,
    Runtime, RuntimeConfig,
};

/// Process exit codes.
mod exit {
    pub const SUCCESS: u8 = 0;
    pub const HOST_ERROR: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const AGENT_ERROR: u8 = 3;
    pub const LIMIT_HIT: u8 = 4;
    pub const CRASH: u8 = 5;
    pub const CANCELLED: u8 = 6;
}

#[derive(Parser)]
#[command(
    name = "delta",
    version,
    about = "Delta: run untrusted agents as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one task through an agent component and print its output and usage.
    Run(RunArgs),
    /// Print a component's world, imports and exports.
    Inspect(InspectArgs),
    /// Serve the runtime over HTTP(S): the node daemon.
    Node(NodeArgs),
    /// The control plane alone (nodes run `delta node` elsewhere).
    Control(ControlArgs),
    /// The control plane and one node in one process, on loopback.
    Up(up::UpArgs),
    /// Manage agents through the control plane.
    Agents {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: client::AgentsCommand,
    },
    /// Start and inspect runs through the control plane.
    Runs {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: client::RunsCommand,
    },
    /// Internal: compile a component under rlimits (used by the runtime).
    #[command(hide = true, disable_help_flag = true)]
    CompileWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct CacheArgs {
    /// Directory of compiled components [default: $XDG_CACHE_HOME/delta/components].
    #[arg(long, env = "DELTA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time; keep nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The agent component (.wasm), or a JavaScript agent (.js, .mjs).
    component: PathBuf,
    /// Task input as a JSON document.
    #[arg(long, conflicts_with = "input_file", default_value = "{}")]
    input: String,
    /// Read the task input from a file (`-` for stdin).
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// Fuel budget (roughly wasm instructions).
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear memory cap in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Wall-clock deadline in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print the whole run report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Capabilities and grants for this run (`delta.toml`; see the README).
    /// Without it every capability but `log` answers `not-configured`.
    #[arg(long, env = "DELTA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheArgs,
}

/// `delta node`: flags override `DELTA_*` variables, which override the
/// config file.
#[derive(clap::Args)]
struct NodeArgs {
    /// The node's configuration file (`node.toml`).
    #[arg(long, env = "DELTA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on, e.g. `0.0.0.0:7421`.
    #[arg(long, env = "DELTA_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Directory of the node's database, components and compiled cache.
    #[arg(long, env = "DELTA_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// File holding the bearer token clients must present.
    #[arg(long, env = "DELTA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address.
    #[arg(long, env = "DELTA_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// Control plane base URL usage is reported to.
    #[arg(long, env = "DELTA_CONTROL_PLANE_URL")]
    control_plane_url: Option<String>,
    /// File holding the token this node presents to the control plane.
    #[arg(long, env = "DELTA_CONTROL_PLANE_TOKEN_FILE")]
    control_plane_token_file: Option<PathBuf>,
}

/// `delta control`: flags override `DELTA_*` variables, which override the
/// config file.
#[derive(clap::Args)]
struct ControlArgs {
    /// The control plane's configuration file (`control.toml`).
    #[arg(long, env = "DELTA_CONTROL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on.
    #[arg(long, env = "DELTA_CONTROL_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// `sqlite://...` or `postgres://...`.
    #[arg(long, env = "DELTA_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Directory of the SQLite database, secrets and components.
    #[arg(long, env = "DELTA_CONTROL_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Create an account (and its own tenant) with this email, then exit
    /// instead of serving: how operators' accounts (`operators` in
    /// control.toml) and accounts on a control plane with registration
    /// closed are made.
    #[arg(long, value_name = "EMAIL", requires = "password_file")]
    create_account: Option<String>,
    /// With `--create-account`: a file holding the password (12+ characters).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The component (.wasm), or a JavaScript agent or verifier (.js, .mjs).
    component: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::SUCCESS
            });
        }
    };
    if let Command::CompileWorker { args } = cli.command {
        return delta_runtime::compile::worker_main(args);
    }
    if let Command::Node(args) = cli.command {
        return node(args);
    }
    if let Command::Control(args) = cli.command {
        return control(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DELTA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::HOST_ERROR);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Inspect(args) => inspect(args).await,
            Command::Up(args) => up::up(args).await.map(|()| exit::SUCCESS),
            Command::Agents { api, command } => {
                client::agents(api, command).await.map(|()| exit::SUCCESS)
            }
            Command::Runs { api, command } => {
                client::runs(api, command).await.map(|()| exit::SUCCESS)
            }
            Command::CompileWorker { .. } | Command::Node(_) | Command::Control(_) => {
                Ok(exit::SUCCESS)
            }
        }
    });
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::HOST_ERROR)
        }
    }
}

/// The daemon: JSON logs on stderr (for journald and log shippers), exit 0
/// after a graceful stop, 1 on a start-up or serving error.
fn node(args: NodeArgs) -> ExitCode {
    json_logs();
    let result = (|| -> anyhow::Result<()> {
        let mut config = match &args.config {
            Some(path) => delta_node::config::NodeConfig::load(path)?,
            None => delta_node::config::NodeConfig::default(),
        };
        let overrides = delta_node::config::Overrides {
            listen: args.listen,
            state_dir: args.state_dir,
            token_file: args.token_file,
            allow_plain_http: args.allow_plain_http,
            control_plane_url: args.control_plane_url,
            control_plane_token_file: args.control_plane_token_file,
        };
        config.apply_overrides(overrides.clone());
        let options = delta_node::server::ServeOptions {
            compile: Some(CompileMode::Subprocess {
                program: std::env::current_exe().context("locating the delta executable")?,
                args: vec!["compile-worker".into()],
            }),
            config_path: args.config,
            overrides,
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(delta_node::server::serve(config, options))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "node failed");
            eprintln!("error: {e:#}");
            ExitCode::from(exit::HOST_ERROR)
        }
    }
}

/// The control plane as a daemon: JSON logs on stderr, serves until
/// SIGTERM/SIGINT, exit 0 after a graceful stop.
fn control(args: ControlArgs) -> ExitCode {
    json_logs();
    let result = (|| -> anyhow::Result<()> {
        let mut config = match &args.config {
            Some(path) => delta_control::config::ControlConfig::load(path)?,
            None => delta_control::config::ControlConfig::default(),
        };
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        if let Some(url) = args.database_url {
            config.database_url = Some(url);
        }
        if let Some(dir) = args.state_dir {
            config.state_dir = dir;
        }
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(async {
            let listen = config.listen;
            let state = delta_control::app::AppState::open(config).await?;
            if let (Some(email), Some(file)) = (&args.create_account, &args.password_file) {
                let password = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let created = delta_control::identity::create_account(
                    &state,
                    email,
                    password.trim_end_matches(['\r', '\n']).to_owned(),
                    None,
                    None,
                )
                .await
                .map_err(|e| anyhow::anyhow!("creating the account: {} ({})", e.message, e.code))?;
                println!(
                    "created user {} ({}) owning tenant {}",
                    created.user.id, created.user.email, created.tenant.id
                );
                return Ok(());
            }
            let (listener, local) = delta_control::app::bind(listen).await?;
            println!("listening on http://{local}");
            tracing::info!(address = %local, "control plane serving");
            delta_control::app::serve(state, listener, async {
                use tokio::signal::unix::{SignalKind, signal};
                if let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
            })
            .await
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "control plane failed");
            eprintln!("error: {e:#}");
            ExitCode::from(exit::HOST_ERROR)
        }
    }
}

/// Structured logs for daemons (journald, log shippers).
fn json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DELTA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime_config(cache: &CacheArgs) -> anyhow::Result<RuntimeConfig> {
    let cache_dir = if cache.no_cache {
        None
    } else {
        Some(cache.cache_dir.clone().unwrap_or_else(default_cache_dir))
    };
    let mut config = RuntimeConfig {
        cache_dir,
        ..RuntimeConfig::default()
    };
    config.compile.mode = CompileMode::Subprocess {
        program: std::env::current_exe().context("locating the delta executable")?,
        args: vec!["compile-worker".into()],
    };
    Ok(config)
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("delta/components")
}

/// Load a component, printing a bad-input error and returning its exit code.
async fn load(
    runtime: &Runtime,
    path: &std::path::Path,
) -> anyhow::Result<Result<Arc<delta_runtime::LoadedComponent>, u8>> {
    if js::is_script(path) {
        return js::load(runtime, path).await;
    }
    match runtime.load_file(path).await {
        Ok(component) => Ok(Ok(component)),
        Err(e) if e.is_bad_input() => {
            eprintln!("error: {}: {e}", path.display());
            Ok(Err(exit::BAD_INPUT))
        }
        Err(e @ (LoadError::Worker(_) | LoadError::Cache { .. } | LoadError::Io { .. })) => {
            Err(anyhow::Error::new(e).context(format!("loading {}", path.display())))
        }
        Err(e) => Err(e.into()),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let input = match &args.input_file {
        Some(path) if path.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading the task input from stdin")?;
            s
        }
        Some(path) => match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: reading {}: {e}", path.display());
                return Ok(exit::BAD_INPUT);
            }
        },
        None => args.input.clone(),
    };
    let local = match &args.config {
        Some(path) => match config::LocalConfig::load(path) {
            Ok(local) => local,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(exit::BAD_INPUT);
            }
        },
        None => config::LocalConfig::default(),
    };
    let config = runtime_config(&args.cache)?;
    let mut limits: InvocationLimits = local.limits.unwrap_or(config.default_limits);
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(mib) = args.memory_mib {
        limits.memory_bytes = mib.saturating_mul(1 << 20);
    }
    if let Some(ms) = args.timeout_ms {
        limits.timeout_ms = ms;
    }
    let runtime = Runtime::new(config)?;
    let component = match load(&runtime, &args.component).await? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let agent_id = local.agent.id.clone().unwrap_or_else(|| {
        args.component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "agent".into())
    });
    let capabilities = local.capabilities(&agent_id).await?;
    let run_id = format!(
        "run-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let invocation = AgentInvocation {
        context: CallContext {
            tenant_id: local.agent.tenant.as_str().into(),
            agent_id: agent_id.into(),
            run_id: run_id.into(),
        },
        input,
        limits,
        capabilities,
        cancel: Default::default(),
    };
    let report = match runtime.run_agent(&component, invocation).await {
        Ok(report) => report,
        Err(e @ (RunError::InvalidInput(_) | RunError::WrongWorld { .. })) => {
            eprintln!("error: {e}");
            return Ok(exit::BAD_INPUT);
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(match report.outcome.class() {
        OutcomeClass::Success => exit::SUCCESS,
        OutcomeClass::AgentError => exit::AGENT_ERROR,
        OutcomeClass::LimitHit => exit::LIMIT_HIT,
        OutcomeClass::Crash => exit::CRASH,
        OutcomeClass::Cancelled => exit::CANCELLED,
    })
}

fn print_report(report: &RunReport) {
    use delta_runtime::Outcome;
    for line in &report.logs {
        eprintln!(
            "[{:>5} +{}ms] {}",
            format!("{:?}", line.level).to_lowercase(),
            line.at_ms,
            line.message
        );
    }
    if !report.stderr.is_empty() && !matches!(report.outcome, Outcome::GuestPanic { .. }) {
        eprintln!("--- guest stderr ---\n{}", report.stderr.trim_end());
    }
    match &report.outcome {
        Outcome::Completed { output } => println!("{output}"),
        Outcome::AgentError {
            code,
            message,
            retryable,
        } => {
            eprintln!(
                "agent error [{code}]{}: {message}",
                if *retryable { " (retryable)" } else { "" }
            )
        }
        Outcome::OutputTooLarge { size, limit } => {
            eprintln!("limit hit: output-too-large ({size} bytes, limit {limit})")
        }
        Outcome::GuestPanic { message } => eprintln!("guest panicked: {message}"),
        Outcome::Trap { message } => eprintln!("guest trapped: {message}"),
        Outcome::InvalidOutput { message } => eprintln!("guest returned invalid JSON: {message}"),
        other if other.class() == OutcomeClass::LimitHit => {
            eprintln!("limit hit: {}", other.name())
        }
        other => eprintln!("{}", other.name()),
    }
    let u = &report.usage;
    eprintln!(
        "outcome: {} | fuel {} | wall {:.3} ms | peak memory {:.1} MiB | log lines {} ({} dropped)",
        report.outcome.name(),
        u.fuel_used,
        u.wall_time_us as f64 / 1000.0,
        u.peak_memory_bytes as f64 / f64::from(1u32 << 20),
        u.log.lines,
        u.log.dropped,
    );
}

async fn inspect(args: InspectArgs) -> anyhow::Result<u8> {
    let runtime = Runtime::new(runtime_config(&args.cache)?)?;
    let component = match load(&runtime, &args.component).await? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let description = component.description();
    if args.json {
        let json = serde_json::json!({
            "digest": component.digest().to_string(),
            "size": component.size(),
            "world": format!("delta:agent/{}@0.1.0", component.world().name()),
            "imports": description.imports,
            "exports": description.exports,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(exit::SUCCESS);
    }
    let shape = component.shape();
    println!("component {}", args.component.display());
    println!("  sha256    {}", component.digest());
    println!(
        "  size      {} bytes, {} core modules, {} functions",
        component.size(),
        shape.modules,
        shape.functions
    );
    println!("  world     delta:agent/{}@0.1.0", component.world().name());
    println!("imports:");
    for item in &description.imports {
        println!("  {} ({})", item.name, item.kind);
        for f in &item.functions {
            println!("    {f}");
        }
    }
    println!("exports:");
    for item in &description.exports {
        println!("  {}: {}", item.name, item.kind);
        for f in &item.functions {
            println!("    {f}");
        }
    }
    Ok(exit::SUCCESS)
}
