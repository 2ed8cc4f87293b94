//! `delta agents ...` and `delta runs ...`: a thin client of the control
//! plane's API. The API URL and key come from flags, `DELTA_API_URL` /
//! `DELTA_API_KEY`, or, for the key, `./.delta/admin-api-key` written by
//! `delta up`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Where the API is and how to authenticate. Global: accepted anywhere on
/// the command line (`delta agents create --api-url ...` as well as
/// `delta agents --api-url ... create`).
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// Control plane URL (default: the profile's, then http://127.0.0.1:7420).
    #[arg(long, global = true, env = "DELTA_API_URL")]
    pub api_url: Option<String>,
    /// API key (default: the profile's (`delta login`), then the key `delta
    /// up` wrote to ./.delta/admin-api-key).
    #[arg(long, global = true, env = "DELTA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The tenant to act in (`X-App-ID`; default: the API key's own).
    #[arg(long, global = true, env = "DELTA_APP_ID")]
    pub app_id: Option<String>,
}

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
}

/// A refusal from the API: its status, code and message (callers that
/// handle a particular code find it with `downcast_ref`).
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// `delta login`: check the key (`GET /v1/me`), then save the profile.
pub async fn login(mut args: ApiArgs) -> anyhow::Result<()> {
    if args.api_key.is_none() {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the API key from standard input")?;
        let key = line.trim();
        if key.is_empty() {
            anyhow::bail!(
                "no API key: pass --api-key, set DELTA_API_KEY or give it on standard input"
            );
        }
        args.api_key = Some(key.to_owned());
    }
    let url = args
        .api_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:7420".to_owned());
    args.api_url = Some(url.clone());
    let api = Api::new(&args)?;
    let me = api.send(Method::GET, "/v1/me", None).await?;
    let path = crate::profile::save(&crate::profile::Profile {
        api_url: url,
        api_key: args.api_key.clone().unwrap_or_default(),
        app_id: args.app_id.clone(),
    })?;
    println!(
        "signed in as {} ({} of {}); profile saved to {}",
        me["user"]["email"].as_str().unwrap_or("?"),
        me["role"].as_str().unwrap_or("?"),
        me["tenant_id"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// A client of the control plane's API.
pub(crate) struct Api {
    url: String,
    key: String,
    app_id: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        // Flags and environment first, then the profile (see profile.rs).
        let profile = if args.api_key.is_some() && args.api_url.is_some() {
            None
        } else {
            crate::profile::load()?
        };
        let url = args
            .api_url
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.api_url.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:7420".to_owned());
        let app_id = args
            .app_id
            .clone()
            .or_else(|| profile.as_ref().and_then(|p| p.app_id.clone()));
        let key = match args
            .api_key
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.api_key.clone()))
        {
            Some(k) => k,
            None => {
                let path = Path::new(".delta/admin-api-key");
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_owned())
                    .with_context(|| {
                        format!(
                            "no API key: pass --api-key, set DELTA_API_KEY, run `delta login`, \
                             or run `delta up` here (it writes {})",
                            path.display()
                        )
                    })?
            }
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key,
            app_id,
            http: reqwest::Client::new(),
        })
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(app) = &self.app_id {
            req = req.header("x-app-id", app);
        }
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::Upload {
                bytes,
                content_type,
                progress,
            }) => {
                req = req
                    .header("content-type", content_type)
                    .header("content-length", bytes.len());
                req = if crate::progress::enabled() {
                    // In chunks, so that the bar moves as they are sent.
                    let chunks: Vec<Vec<u8>> =
                        bytes.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
                    let stream = futures_util::stream::iter(chunks.into_iter().map(move |c| {
                        progress.sent(c.len() as u64);
                        Ok::<_, std::io::Error>(c)
                    }));
                    req.body(reqwest::Body::wrap_stream(stream))
                } else {
                    req.body(bytes)
                };
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {}{path}", self.url))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            return Err(ApiFailure {
                status,
                code: value["code"].as_str().unwrap_or("").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            }
            .into());
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        Ok(value)
    }

    /// Every item of a paginated list.
    pub(crate) async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                Some(c) => format!("{path}{sep}limit=200&cursor={c}"),
                None => format!("{path}{sep}limit=200"),
            };
            let page = self.send(Method::GET, &page_path, None).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }

    /// An agent id from an id or a name.
    pub(crate) async fn agent_id(&self, agent: &str) -> anyhow::Result<String> {
        if agent.starts_with("agt_") {
            return Ok(agent.to_owned());
        }
        let agents = self.list("/v1/agents").await?;
        agents
            .iter()
            .find(|a| a["name"] == agent)
            .and_then(|a| a["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| crate::cmd::output::not_found(format!("no agent named {agent}")))
    }
}

/// A request body.
pub(crate) enum Body {
    Json(Value),
    /// A file upload with its content type, drawing `progress`.
    Upload {
        bytes: Vec<u8>,
        content_type: &'static str,
        progress: crate::progress::Upload,
    },
}

pub(crate) fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
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
        .http
        .get(format!("{}/v1/runs/{run}/logs", api.url))
        .bearer_auth(&api.key)
        .send()
        .await
        .context("opening the log stream")?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        bail!("{status}: {}", body["message"].as_str().unwrap_or(""));
    }
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
