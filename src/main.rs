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
//! - `delta agents ...`, `delta runs ...`, `delta budgets ...`, `delta
//!   templates ...` and the other API groups: a client of the control
//!   plane, one file per group in `cmd/`.
//! - `delta completions <shell>`: a completion script for the shell.
//!
//! Exit codes (stable, for scripts):
//! `0` success, `1` host error (I/O, the API unreachable or answering
//! 5xx), `2` bad input (arguments, configuration, component or task JSON,
//! and the API's 400/413/415/422 refusals), `3` the agent returned an
//! error, `4` a limit stopped the guest (fuel, deadline, memory, stack,
//! output size), `5` the guest crashed (panic, trap, invalid output), `6`
//! cancelled, `7` the API refused the caller (401 not signed in, 403 not
//! allowed), `8` not found (404, or a name no list holds), `9` conflict
//! (409: the state does not allow it, e.g. a template already approved),
//! `10` try again later (429, 503).
//!
//! This file only dispatches: local runs are in `local`, the daemons in
//! `daemon`, the API client in `client`.

mod client;
mod cmd;
mod config;
mod daemon;
mod js;
mod local;
mod profile;
mod progress;
mod scripts;
mod up;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Process exit codes.
mod exit {
    pub const SUCCESS: u8 = 0;
    pub const HOST_ERROR: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const AGENT_ERROR: u8 = 3;
    pub const LIMIT_HIT: u8 = 4;
    pub const CRASH: u8 = 5;
    pub const CANCELLED: u8 = 6;
    pub const API_DENIED: u8 = 7;
    pub const NOT_FOUND: u8 = 8;
    pub const CONFLICT: u8 = 9;
    pub const TRY_LATER: u8 = 10;
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
    Run(local::RunArgs),
    /// Print a component's world, imports and exports.
    Inspect(local::InspectArgs),
    /// Serve the runtime over HTTP(S): the node daemon.
    Node(daemon::NodeArgs),
    /// The control plane alone (nodes run `delta node` elsewhere).
    Control(daemon::ControlArgs),
    /// The control plane and one node in one process, on loopback.
    Up(up::UpArgs),
    #[command(flatten)]
    Api(cmd::ApiCommand),
    /// Save a profile (API URL, API key, tenant) for later commands: checks
    /// the key against the API, then writes ~/.config/delta/profile.json
    /// (0600). The key comes from --api-key, DELTA_API_KEY or, when neither
    /// is set, the first line of standard input.
    Login {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Forget the saved profile.
    Logout,
    /// Print the control plane's OpenAPI document, as `/v1/openapi.json`
    /// serves it with the default configuration (the clients in clients/
    /// are generated from it).
    Openapi,
    /// Print a completion script for a shell, e.g.
    /// `delta completions bash > /etc/bash_completion.d/delta`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Internal: compile a component under rlimits (used by the runtime).
    #[command(hide = true, disable_help_flag = true)]
    CompileWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    match cli.command {
        Command::CompileWorker { args } => delta_runtime::compile::worker_main(args),
        Command::Node(args) => daemon::node(args),
        Command::Control(args) => daemon::control(args),
        Command::Run(args) => interactive(local::run(args)),
        Command::Inspect(args) => interactive(local::inspect(args)),
        Command::Up(args) => interactive(async { up::up(args).await.map(|()| exit::SUCCESS) }),
        Command::Api(command) => {
            interactive(async { cmd::run(command).await.map(|()| exit::SUCCESS) })
        }
        Command::Login { api } => {
            interactive(async { client::login(api).await.map(|()| exit::SUCCESS) })
        }
        Command::Logout => interactive(async {
            match profile::remove()? {
                Some(path) => println!("removed {}", path.display()),
                None => println!("no profile to remove"),
            }
            Ok(exit::SUCCESS)
        }),
        Command::Openapi => interactive(async {
            let document =
                delta_control::app::openapi(&delta_control::config::ControlConfig::default());
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(exit::SUCCESS)
        }),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "delta", &mut std::io::stdout());
            ExitCode::from(exit::SUCCESS)
        }
    }
}

/// A command for a person at a terminal: plain `warn` logs on stderr, its
/// own exit code, or 1 with the error chain.
fn interactive(command: impl std::future::Future<Output = anyhow::Result<u8>>) -> ExitCode {
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
    match runtime.block_on(command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error_code(&e))
        }
    }
}

/// The exit code of a failed command (the table at the top of this file).
fn error_code(e: &anyhow::Error) -> u8 {
    use reqwest::StatusCode as S;
    if e.downcast_ref::<cmd::output::BadInput>().is_some() {
        return exit::BAD_INPUT;
    }
    if e.downcast_ref::<cmd::output::NotFound>().is_some() {
        return exit::NOT_FOUND;
    }
    match e.downcast_ref::<client::ApiFailure>().map(|f| f.status) {
        Some(S::BAD_REQUEST | S::PAYLOAD_TOO_LARGE | S::UNSUPPORTED_MEDIA_TYPE)
        | Some(S::UNPROCESSABLE_ENTITY) => exit::BAD_INPUT,
        Some(S::UNAUTHORIZED | S::FORBIDDEN) => exit::API_DENIED,
        Some(S::NOT_FOUND) => exit::NOT_FOUND,
        Some(S::CONFLICT) => exit::CONFLICT,
        Some(S::TOO_MANY_REQUESTS | S::SERVICE_UNAVAILABLE) => exit::TRY_LATER,
        _ => exit::HOST_ERROR,
    }
}
