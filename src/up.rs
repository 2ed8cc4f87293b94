//! `delta up`: the control plane and one node in one process, with SQLite
//! and file outboxes under the state directory, serving on loopback.
//!
//! On first start it creates an admin user and an API key through the API
//! itself (printed once, the key also written to `<state-dir>/admin-api-key`
//! with mode 0600). With `--examples DIR` it deploys the example agents it
//! finds there (skipping the hostile ones and verifiers) and shows one run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// `delta up` options.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the control plane's API listens.
    #[arg(long, env = "DELTA_LISTEN", default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// Everything lives here: databases, components, outboxes, keys.
    #[arg(long, env = "DELTA_STATE_DIR", default_value = ".delta")]
    pub state_dir: PathBuf,
    /// Deploy the example agents in this directory (e.g. target/guests) and
    /// show a run of hello-agent.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// Turn the control plane's request rate limits off (load tests on
    /// loopback measure the server, not the limiter).
    #[arg(long)]
    pub no_rate_limits: bool,
}

/// Guests that are examples of what not to run, or not agents (the
/// verifier examples are named `*-verifier`; other components the upload
/// refuses as not an agent are skipped with its reason).
fn is_example_agent(name: &str) -> bool {
    !name.starts_with("hostile-") && !name.ends_with("-verifier")
}

/// Run until SIGTERM/SIGINT.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let state_dir = absolute(&args.state_dir)?;
    private_dir(&state_dir)?;
    // What the control plane derives the node's API token from (the
    // node's token_file holds that token); the node presents its own
    // credential, enrolled below through the API.
    let node_api_secret_file = state_dir.join("node-api-secret");
    ensure_secret(&node_api_secret_file)?;
    // The secrets vault's key, so that agents' `http` grants can use
    // `{{secret:NAME}}` on the development stack too.
    let vault_key_file = state_dir.join("vault-key");
    if !vault_key_file.exists() {
        write_private(&vault_key_file, &delta_control::vault::generate_key_hex())?;
    }

    step("starting the control plane");
    let control_config = delta_control::config::ControlConfig {
        listen: args.listen,
        state_dir: state_dir.join("control"),
        node_api_secret_file: Some(node_api_secret_file.clone()),
        vault_key_file: Some(vault_key_file),
        // A development stack: anyone on loopback may register, and the
        // admin `delta up` makes is the platform's operator.
        allow_registration: true,
        operators: vec![ADMIN_EMAIL.to_owned()],
        rate_limit: if args.no_rate_limits {
            delta_control::config::RateLimitConfig {
                per_key_per_sec: 0,
                per_key_burst: 0,
                per_tenant_per_sec: 0,
                per_tenant_burst: 0,
            }
        } else {
            delta_control::config::RateLimitConfig::default()
        },
        ..Default::default()
    };
    let control_state = delta_control::app::AppState::open(control_config)
        .await?
        .with_scripts(std::sync::Arc::new(crate::scripts::JsScripts::new()?));
    let admin_state = control_state.clone();
    let (listener, control_addr) = delta_control::app::bind(args.listen).await?;
    let control_url = format!("http://{control_addr}");
    let (stop_control, stopped) = tokio::sync::oneshot::channel::<()>();
    let control = tokio::spawn(delta_control::app::serve(
        control_state,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    wait_ready(&http, &control_url).await?;
    let key = admin_key(&admin_state, &http, &control_url, &state_dir).await?;

    step("starting the node");
    let credential_file = node_credential(&control_url, &key, &state_dir).await?;
    // Derived, so written afresh on every start (the secret may be new).
    let node_token_file = state_dir.join("node-token");
    let node_token = admin_state
        .node_api_token(NODE_ID)
        .context("the control plane has no node API secret")?;
    write_private(&node_token_file, &node_token)?;
    let node_config = node_config(&state_dir, &control_url, &node_token_file, &credential_file)?;
    let options = delta_node::server::ServeOptions {
        compile: Some(crate::daemon::compile_worker()?),
        config_path: None,
        overrides: Default::default(),
    };
    let node = delta_node::server::start(node_config, &options).await?;
    // It listens on a new port at every start, and a heartbeat cannot move
    // a node's URL: as the operator, give the control plane the new one.
    crate::client::Api::new(&crate::client::ApiArgs {
        api_url: Some(control_url.clone()),
        api_key: Some(key.clone()),
        app_id: None,
    })?
    .send(
        reqwest::Method::PATCH,
        &format!("/v1/operator/nodes/{NODE_ID}"),
        Some(crate::client::Body::Json(json!({ "url": node.url() }))),
    )
    .await
    .context("giving the control plane the node's URL")?;
    if let Some(dir) = &args.examples {
        deploy_examples(&http, &control_url, &key, dir).await?;
    }
    println!();
    println!("Delta is up.");
    println!("  API       {control_url}   (OpenAPI: {control_url}/v1/openapi.json)");
    println!("  API key   {}", state_dir.join("admin-api-key").display());
    println!("  node      {}", node.url());
    println!("  try       delta agents list");
    println!("            delta runs create hello-agent --input '{{\"name\":\"you\"}}'");
    println!("Stop with Ctrl-C.");

    crate::daemon::shutdown_signal().await;
    step("stopping: draining the node");
    node.shutdown().await;
    let _ = stop_control.send(());
    match control.await {
        Ok(result) => result?,
        Err(e) => bail!("control plane task: {e}"),
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Write a random secret to `path` (0600) unless it exists.
fn ensure_secret(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    write_private(path, &delta_control::auth::random_token())
}

use crate::cmd::nodes::write_private;

/// The embedded node's id.
const NODE_ID: &str = "local";

/// The file holding the embedded node's credential: enrolled through the
/// API (as an operator would with `delta nodes enroll`) on first start,
/// read after.
async fn node_credential(
    control_url: &str,
    key: &str,
    state_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let file = state_dir.join("node-credential");
    if file.exists() {
        return Ok(file);
    }
    step("enrolling the node");
    let api = crate::client::Api::new(&crate::client::ApiArgs {
        api_url: Some(control_url.to_owned()),
        api_key: Some(key.to_owned()),
        app_id: None,
    })?;
    let credential = crate::cmd::nodes::enrol_or_rotate(&api, NODE_ID).await?;
    write_private(&file, &credential)?;
    Ok(file)
}

fn node_config(
    state_dir: &Path,
    control_url: &str,
    token_file: &Path,
    credential_file: &Path,
) -> anyhow::Result<delta_node::config::NodeConfig> {
    let outbox = state_dir.join("outbox");
    let text = format!(
        r#"
node_id = "{NODE_ID}"
listen = "127.0.0.1:0"
state_dir = "{node_dir}"
token_file = "{token}"
drain_grace_secs = 10

[control_plane]
url = "{control_url}"
token_file = "{credential}"
heartbeat_secs = 2

[messaging]
audit_log = "{audit}"
[messaging.email]
from = "Delta <noreply@localhost>"
backend = {{ kind = "outbox", dir = "{email}" }}
[messaging.sms]
from = "+15005550006"
backend = {{ kind = "outbox", dir = "{sms}" }}
"#,
        node_dir = state_dir.join("node").display(),
        token = token_file.display(),
        credential = credential_file.display(),
        audit = state_dir.join("messages.jsonl").display(),
        email = outbox.join("email").display(),
        sms = outbox.join("sms").display(),
    );
    toml::from_str(&text).context("the embedded node's configuration")
}

/// Wait until the control plane answers its readiness probe.
async fn wait_ready(http: &reqwest::Client, control_url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("{control_url}/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the control plane did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The account `delta up` makes on first start; an operator.
const ADMIN_EMAIL: &str = "admin@delta.local";

/// The admin API key: created on first start, read after. The account is
/// made in process (an operator's address cannot be registered over HTTP).
async fn admin_key(
    state: &delta_control::app::AppState,
    http: &reqwest::Client,
    url: &str,
    state_dir: &Path,
) -> anyhow::Result<String> {
    let key_file = state_dir.join("admin-api-key");
    if let Ok(key) = std::fs::read_to_string(&key_file) {
        return Ok(key.trim().to_owned());
    }
    step("first start: creating the admin user and API key");
    let email = ADMIN_EMAIL;
    let password = delta_control::auth::random_token();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Value| {
        let mut req = http.request(method, format!("{url}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            let value: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{status}: {}", value["message"].as_str().unwrap_or(""));
            }
            Ok::<_, anyhow::Error>(value)
        }
    };
    delta_control::identity::create_account(state, email, password.clone(), Some("default"), None)
        .await
        .map_err(|e| anyhow::anyhow!("creating the admin user: {} ({})", e.message, e.code))?;
    let login = call(
        reqwest::Method::POST,
        "/v1/auth/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await?;
    let access = login["access_token"].as_str().context("no access token")?;
    let created = call(
        reqwest::Method::POST,
        "/v1/api-keys",
        Some(access),
        json!({ "name": "admin (delta up)" }),
    )
    .await
    .context("creating the admin API key")?;
    let key = created["key"]
        .as_str()
        .context("no key in the answer")?
        .to_owned();
    write_private(&key_file, &key)?;
    println!("admin user      {email}");
    println!("admin password  {password}   (shown once)");
    println!("admin API key   {key}   (also in {})", key_file.display());
    Ok(key)
}

async fn deploy_examples(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let existing: Vec<Value> = {
        let page: Value = http
            .get(format!("{url}/v1/agents?limit=200"))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        page["items"].as_array().cloned().unwrap_or_default()
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_example_agent(&name) || existing.iter().any(|a| a["name"] == name.as_str()) {
            continue;
        }
        step(&format!("deploying {name} (compiling the component)"));
        let bytes = std::fs::read(&path)?;
        let resp = http
            .post(format!("{url}/v1/components"))
            .bearer_auth(key)
            .body(bytes)
            .send()
            .await?;
        let refused = resp.status() == reqwest::StatusCode::UNPROCESSABLE_ENTITY;
        let uploaded: Value = resp.json().await?;
        if refused {
            // Not an agent (e.g. the wasi:http peer the benchmarks serve):
            // the world is only known once checked, so say so and go on.
            println!(
                "    skipped: {}",
                uploaded["message"]
                    .as_str()
                    .unwrap_or("not an agent component")
            );
            continue;
        }
        let sha = uploaded["sha256"]
            .as_str()
            .with_context(|| format!("uploading {name}: {uploaded}"))?;
        // The node registers with its first heartbeat, moments after start:
        // until then placement answers 503 no_nodes.
        let deadline = Instant::now() + Duration::from_secs(30);
        let resp = loop {
            let resp = http
                .post(format!("{url}/v1/agents"))
                .bearer_auth(key)
                .json(&json!({ "name": name, "kind": "main", "component": sha }))
                .send()
                .await?;
            if resp.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
                || Instant::now() > deadline
            {
                break resp;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if !resp.status().is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            bail!(
                "deploying {name}: {}",
                body["message"].as_str().unwrap_or("")
            );
        }
    }
    let agents: Value = http
        .get(format!("{url}/v1/agents?limit=200"))
        .bearer_auth(key)
        .send()
        .await?
        .json()
        .await?;
    let hello = agents["items"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "hello-agent"))
        .and_then(|a| a["id"].as_str())
        .map(str::to_owned);
    if let Some(id) = hello {
        step("running hello-agent once");
        let run: Value = http
            .post(format!("{url}/v1/agents/{id}/runs?wait=true"))
            .bearer_auth(key)
            .json(&json!({ "input": { "name": "Delta" } }))
            .send()
            .await?
            .json()
            .await?;
        println!(
            "run {}: {} -> {}",
            run["id"].as_str().unwrap_or("?"),
            run["outcome"]["status"].as_str().unwrap_or("?"),
            run["outcome"]["output"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
