//! `delta agents ...` and `delta runs ...`: deploy agents (uploading a
//! component or a JavaScript module, with progress on a terminal), start
//! runs and follow their logs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use super::output::segment;
use crate::client::{Api, ApiArgs, Body, print};

/// `delta agents ...`.
#[derive(clap::Subcommand, Debug)]
pub enum AgentsCommand {
    /// Upload a component (or a JavaScript module, compiled by the control
    /// plane) and create an agent running it. Progress is shown on stderr
    /// when it is a terminal.
    Create {
        /// The agent: a component (.wasm) or a JavaScript module (.js).
        #[arg(long)]
        component: PathBuf,
        /// Agent name, unique in the tenant (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// `main` or `bot`.
        #[arg(long, default_value = "main")]
        kind: String,
        /// Parent main agent (id or name), for a bot.
        #[arg(long)]
        parent: Option<String>,
        /// Limits as JSON, e.g. `{"fuel": 1000000000, "timeout_ms": 5000}`.
        #[arg(long)]
        limits: Option<String>,
        /// Grants as JSON, e.g. `{"channels": ["email"], "templates": ["welcome"]}`.
        #[arg(long)]
        grants: Option<String>,
    },
    /// List the tenant's agents.
    List,
    /// Show one agent (id or name).
    Get {
        /// Agent id or name.
        agent: String,
    },
    /// Delete an agent (id or name).
    Delete {
        /// Agent id or name.
        agent: String,
    },
    /// An agent's deploy history, newest first: created, updated, moved
    /// to another node.
    History {
        /// Agent id or name.
        agent: String,
        #[command(flatten)]
        page: super::output::PageArgs,
        /// Print JSON (one page: `{items, next_cursor}`; `--all`: an array).
        #[arg(long)]
        json: bool,
    },
}

/// `delta runs ...`.
#[derive(clap::Subcommand, Debug)]
pub enum RunsCommand {
    /// Start a run of an agent (id or name) and print the finished run.
    Create {
        /// Agent id or name.
        agent: String,
        /// Task input (JSON).
        #[arg(long, default_value = "{}")]
        input: String,
        /// Return at once with the run id instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show one run.
    Get {
        /// Run id.
        run: String,
    },
    /// List runs, newest last (optionally of one agent).
    List {
        /// Agent id or name.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Print a run's log lines; with `--follow`, as they are written.
    Logs {
        /// Run id.
        run: String,
        /// Stream until the run ends.
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a run: still queued, it ends at once; on its node, the node
    /// stops it and the run ends `cancelled` when the node reports.
    Cancel {
        /// Run id.
        run: String,
    },
    /// Queue a dead run again (`delta runs list` shows which are dead).
    Retry {
        /// Run id.
        run: String,
    },
}

fn parse_json(what: &str, text: &Option<String>) -> anyhow::Result<Option<Value>> {
    text.as_ref()
        .map(|t| crate::cmd::output::parse_json(what, t))
        .transpose()
}

/// `delta agents ...`.
pub async fn agents(api: ApiArgs, command: AgentsCommand) -> anyhow::Result<()> {
    let api = Api::new(&api)?;
    match command {
        AgentsCommand::Create {
            component,
            name,
            kind,
            parent,
            limits,
            grants,
        } => {
            let agent = create_agent(
                &api,
                &component,
                name,
                &kind,
                parent,
                parse_json("limits", &limits)?,
                parse_json("grants", &grants)?,
            )
            .await?;
            print(&agent)
        }
        AgentsCommand::List => {
            let agents = api.list("/v1/agents").await?;
            println!(
                "{:<38} {:<20} {:<5} {:<7} node",
                "id", "name", "kind", "paused"
            );
            for a in agents {
                println!(
                    "{:<38} {:<20} {:<5} {:<7} {}",
                    a["id"].as_str().unwrap_or(""),
                    a["name"].as_str().unwrap_or(""),
                    a["kind"].as_str().unwrap_or(""),
                    a["paused"].as_bool().unwrap_or(false),
                    a["node_id"].as_str().unwrap_or("-"),
                );
            }
            Ok(())
        }
        AgentsCommand::History { agent, page, json } => {
            let id = api.agent_id(&agent).await?;
            let path = format!("/v1/agents/{id}/deployments");
            let (items, next) = super::output::fetch_page(&api, &path, &[], &page).await?;
            super::output::emit_page(
                super::output::Output { json },
                items,
                next,
                DEPLOYMENT_COLUMNS,
                "no deployments",
            )
        }
        AgentsCommand::Get { agent } => {
            let id = api.agent_id(&agent).await?;
            print(
                &api.send(Method::GET, &format!("/v1/agents/{id}"), None)
                    .await?,
            )
        }
        AgentsCommand::Delete { agent } => {
            let id = api.agent_id(&agent).await?;
            api.send(Method::DELETE, &format!("/v1/agents/{id}"), None)
                .await?;
            println!("deleted {id}");
            Ok(())
        }
    }
}

async fn create_agent(
    api: &Api,
    component: &Path,
    name: Option<String>,
    kind: &str,
    parent: Option<String>,
    limits: Option<Value>,
    grants: Option<Value>,
) -> anyhow::Result<Value> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let script = component
        .extension()
        .is_some_and(|e| e == "js" || e == "mjs");
    let (content_type, after) = if script {
        (
            "text/javascript; charset=utf-8",
            "the control plane is compiling the script",
        )
    } else {
        (
            "application/wasm",
            "the control plane is checking the component",
        )
    };
    let progress =
        crate::progress::Upload::new(bytes.len() as u64, &component.display().to_string(), after);
    let uploaded = api
        .send(
            Method::POST,
            "/v1/components",
            Some(Body::Upload {
                bytes,
                content_type,
                progress: progress.clone(),
            }),
        )
        .await;
    progress.finish();
    let uploaded = uploaded?;
    let sha = uploaded["sha256"]
        .as_str()
        .context("the upload answer has no sha256")?;
    let name = name.unwrap_or_else(|| {
        component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "agent".into())
    });
    let parent = match parent {
        Some(p) => Some(api.agent_id(&p).await?),
        None => None,
    };
    let mut body = json!({ "name": name, "kind": kind, "component": sha });
    if let Some(p) = parent {
        body["parent_agent_id"] = json!(p);
    }
    if let Some(l) = limits {
        body["limits"] = l;
    }
    if let Some(g) = grants {
        body["grants"] = g;
    }
    api.send(Method::POST, "/v1/agents", Some(Body::Json(body)))
        .await
}

/// `delta runs ...`.
pub async fn runs(api: ApiArgs, command: RunsCommand) -> anyhow::Result<()> {
    let api = Api::new(&api)?;
    match command {
        RunsCommand::Create {
            agent,
            input,
            no_wait,
        } => {
            let input: Value = serde_json::from_str(&input).context("--input is not JSON")?;
            let id = api.agent_id(&agent).await?;
            let wait = if no_wait { "" } else { "?wait=true" };
            let run = api
                .send(
                    Method::POST,
                    &format!("/v1/agents/{id}/runs{wait}"),
                    Some(Body::Json(json!({ "input": input }))),
                )
                .await?;
            print(&run)
        }
        RunsCommand::Get { run } => print(
            &api.send(Method::GET, &format!("/v1/runs/{run}"), None)
                .await?,
        ),
        RunsCommand::List { agent } => {
            let path = match agent {
                Some(a) => format!("/v1/runs?agent_id={}", api.agent_id(&a).await?),
                None => "/v1/runs".to_owned(),
            };
            for run in api.list(&path).await? {
                println!(
                    "{:<38} {:<38} {:<9} {}",
                    run["id"].as_str().unwrap_or(""),
                    run["agent_id"].as_str().unwrap_or(""),
                    run["status"].as_str().unwrap_or(""),
                    run["outcome"]["status"].as_str().unwrap_or("-"),
                );
            }
            Ok(())
        }
        RunsCommand::Logs { run, follow } => logs(&api, &run, follow).await,
        RunsCommand::Cancel { run } => print(
            &api.send(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
                .await?,
        ),
        RunsCommand::Retry { run } => print(
            &api.send(Method::POST, &format!("/v1/runs/{run}/retry"), None)
                .await?,
        ),
    }
}

fn print_line(line: &Value) {
    println!(
        "[{:>5} +{}ms] {}",
        line["level"].as_str().unwrap_or(""),
        line["at_ms"].as_u64().unwrap_or(0),
        line["message"].as_str().unwrap_or("")
    );
}

async fn logs(api: &Api, run: &str, follow: bool) -> anyhow::Result<()> {
    if !follow {
        let record = api
            .send(Method::GET, &format!("/v1/runs/{run}"), None)
            .await?;
        for line in record["logs"].as_array().cloned().unwrap_or_default() {
            print_line(&line);
        }
        return Ok(());
    }
    use futures_util::StreamExt;
    let resp = api
        .open_stream(&format!("/v1/runs/{}/logs", segment(run)?))
        .await?;
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(
            &chunk.context("reading the log stream")?,
        ));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = if e.trim() == "end" { "end" } else { "log" };
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if event == "end" {
                println!(
                    "-- {} ({})",
                    value["status"].as_str().unwrap_or("ended"),
                    value["outcome"]["status"].as_str().unwrap_or("-")
                );
                return Ok(());
            }
            print_line(&value);
        }
    }
    Ok(())
}

const DEPLOYMENT_COLUMNS: &[super::output::Column<'static>] = &[
    ("at_ms", "/at_ms"),
    ("reason", "/reason"),
    ("component", "/component"),
    ("node", "/node_id"),
    ("user", "/user_id"),
    ("limits", "/limits"),
];
