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
//! - `delta nodes ...`: the operator enrols nodes and manages their
//!   credentials (`nodes_cmd`).
//! - `delta bounties ...`, `delta ledger balance`: the bounty marketplace
//!   (`bounties_cmd`).
//!
//! Exit codes (stable, for scripts):
//! `0` success, `1` host error, `2` bad input (arguments, configuration,
//! component or task JSON), `3` the agent returned an error, `4` a limit
//! stopped the guest (fuel, deadline, memory, stack, output size), `5` the
//! guest crashed (panic, trap, invalid output), `6` cancelled.
//!
//! This file only dispatches: local runs are in `local`, the daemons in
//! `daemon`, the API client in `client`.

mod bounties_cmd;
mod budget_cmd;
mod client;
mod config;
mod daemon;
mod js;
mod local;
mod nodes_cmd;
mod profile;
mod scripts;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Run(local::RunArgs),
    /// Print a component's world, imports and exports.
    Inspect(local::InspectArgs),
    /// Serve the runtime over HTTP(S): the node daemon.
    Node(daemon::NodeArgs),
    /// The control plane alone (nodes run `delta node` elsewhere).
    Control(daemon::ControlArgs),
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
    /// Enrol nodes and manage their credentials (platform operators).
    Nodes {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: nodes_cmd::NodesCommand,
    },
    /// Bots' token requests: list, approve, deny (seed 000's approvals).
    TokenRequests {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        out: budget_cmd::Json,
        #[command(subcommand)]
        command: budget_cmd::TokenRequestsCommand,
    },
    /// Usage (runs, fuel, tokens, messages) by day, agent or user.
    Usage {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        out: budget_cmd::Json,
        #[command(flatten)]
        args: budget_cmd::UsageArgs,
    },
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
    /// Post, fund and review bounties, or submit to them.
    Bounties {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        out: bounties_cmd::Output,
        #[command(subcommand)]
        command: bounties_cmd::BountiesCommand,
    },
    /// This tenant's money accounts.
    Ledger {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        out: bounties_cmd::Output,
        #[command(subcommand)]
        command: bounties_cmd::LedgerCommand,
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
        Command::Agents { api, command } => {
            interactive(async { client::agents(api, command).await.map(|()| exit::SUCCESS) })
        }
        Command::Runs { api, command } => {
            interactive(async { client::runs(api, command).await.map(|()| exit::SUCCESS) })
        }
        Command::Nodes { api, command } => {
            interactive(async { nodes_cmd::nodes(api, command).await.map(|()| exit::SUCCESS) })
        }
        Command::TokenRequests { api, out, command } => interactive(async {
            budget_cmd::token_requests(api, out, command)
                .await
                .map(|()| exit::SUCCESS)
        }),
        Command::Usage { api, out, args } => interactive(async {
            budget_cmd::usage(api, out, args)
                .await
                .map(|()| exit::SUCCESS)
        }),
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
        Command::Bounties { api, out, command } => interactive(async {
            bounties_cmd::bounties(api, out, command)
                .await
                .map(|()| exit::SUCCESS)
        }),
        Command::Ledger { api, out, command } => interactive(async {
            bounties_cmd::ledger(api, out, command)
                .await
                .map(|()| exit::SUCCESS)
        }),
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
            ExitCode::from(exit::HOST_ERROR)
        }
    }
}
