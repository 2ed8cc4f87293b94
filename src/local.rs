//! `delta run` and `delta inspect`: one component (or JavaScript file) on
//! this machine, without a node or a control plane.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use delta_host_api::CallContext;
use delta_runtime::{
    AgentInvocation, InvocationLimits, LoadError, OutcomeClass, RunError, RunReport, Runtime,
    RuntimeConfig,
};

use crate::{config, exit, js};

#[derive(clap::Args)]
pub struct CacheArgs {
    /// Directory of compiled components [default: $XDG_CACHE_HOME/delta/components].
    #[arg(long, env = "DELTA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time; keep nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
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

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The component (.wasm), or a JavaScript agent or verifier (.js, .mjs).
    component: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn runtime_config(cache: &CacheArgs) -> anyhow::Result<RuntimeConfig> {
    let cache_dir = if cache.no_cache {
        None
    } else {
        Some(cache.cache_dir.clone().unwrap_or_else(default_cache_dir))
    };
    let mut config = RuntimeConfig {
        cache_dir,
        ..RuntimeConfig::default()
    };
    config.compile.mode = crate::daemon::compile_worker()?;
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

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
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

pub async fn inspect(args: InspectArgs) -> anyhow::Result<u8> {
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
