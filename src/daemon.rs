//! `delta node` and `delta control`: the two daemons, with JSON logs on
//! stderr (for journald and log shippers). Both exit 0 after a graceful
//! stop, 2 when their configuration is unusable and 1 on any other
//! start-up or serving error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use delta_runtime::CompileMode;

use crate::exit;

/// `delta node`: flags override `DELTA_*` variables, which override the
/// config file.
#[derive(clap::Args)]
pub struct NodeArgs {
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
pub struct ControlArgs {
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

/// How a daemon failed: its configuration (exit 2) or anything else (1).
enum Failure {
    Config(anyhow::Error),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn config_error(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Config(e.into())
}

/// Report `result` the daemons' way and turn it into the exit code.
fn finish(what: &str, result: Result<(), Failure>) -> ExitCode {
    let (e, code) = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Config(e)) => (e, exit::BAD_INPUT),
        Err(Failure::Other(e)) => (e, exit::HOST_ERROR),
    };
    tracing::error!(error = %format!("{e:#}"), "{what} failed");
    eprintln!("error: {e:#}");
    ExitCode::from(code)
}

/// The compile worker is this executable's hidden `compile-worker` command.
pub fn compile_worker() -> anyhow::Result<CompileMode> {
    Ok(CompileMode::Subprocess {
        program: std::env::current_exe().context("locating the delta executable")?,
        args: vec!["compile-worker".into()],
    })
}

/// `delta node`.
pub fn node(args: NodeArgs) -> ExitCode {
    json_logs();
    let result = (|| -> Result<(), Failure> {
        let mut config = match &args.config {
            Some(path) => delta_node::config::NodeConfig::load(path).map_err(config_error)?,
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
        config.validate().map_err(config_error)?;
        let options = delta_node::server::ServeOptions {
            compile: Some(compile_worker()?),
            config_path: args.config,
            overrides,
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(delta_node::server::serve(config, options))?;
        Ok(())
    })();
    finish("node", result)
}

/// `delta control`: serves until SIGTERM/SIGINT, or creates an account.
pub fn control(args: ControlArgs) -> ExitCode {
    json_logs();
    let result = (|| -> Result<(), Failure> {
        let mut config = match &args.config {
            Some(path) => delta_control::config::ControlConfig::load(path).map_err(config_error)?,
            None => delta_control::config::ControlConfig::default(),
        };
        config.apply_overrides(delta_control::config::Overrides {
            listen: args.listen,
            database_url: args.database_url,
            state_dir: args.state_dir,
        });
        config.validate().map_err(config_error)?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(async {
            let listen = config.listen;
            let state = delta_control::app::AppState::open(config)
                .await?
                .with_scripts(Arc::new(crate::scripts::JsScripts::new()?));
            if let (Some(email), Some(file)) = (&args.create_account, &args.password_file) {
                return create_account(&state, email, file).await;
            }
            let (listener, local) = delta_control::app::bind(listen).await?;
            println!("listening on http://{local}");
            tracing::info!(address = %local, "control plane serving");
            // systemd/delta-control.service is Type=notify: ready once it
            // listens (outside systemd NOTIFY_SOCKET is unset: a no-op).
            let ready = sd_notify::NotifyState::Ready;
            if let Err(e) = sd_notify::notify(&[ready]) {
                tracing::debug!(error = %e, "sd_notify");
            }
            delta_control::app::serve(state, listener, async {
                shutdown_signal().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            })
            .await?;
            Ok(())
        })
    })();
    finish("control plane", result)
}

async fn create_account(
    state: &delta_control::app::AppState,
    email: &str,
    password_file: &std::path::Path,
) -> Result<(), Failure> {
    let password = std::fs::read_to_string(password_file)
        .with_context(|| format!("reading {}", password_file.display()))
        .map_err(config_error)?;
    let created = delta_control::identity::create_account(
        state,
        email,
        password.trim_end_matches(['\r', '\n']).to_owned(),
        None,
        None,
    )
    .await
    .map_err(|e| {
        config_error(anyhow::anyhow!(
            "creating the account: {} ({})",
            e.message,
            e.code
        ))
    })?;
    println!(
        "created user {} ({}) owning tenant {}",
        created.user.id, created.user.email, created.tenant.id
    );
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers nothing could stop the daemon gracefully;
        // ctrl-c is the portable fallback.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
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
        .fmt_fields(AppendJsonFields)
        .init();
}

/// The JSON formatter's span fields, with fields recorded later (the
/// request span's tenant, agent and run ids) appended to the stored JSON
/// object. tracing-subscriber's `JsonFields` parses the stored object and
/// re-serializes it for every `Span::record`, whether or not anything is
/// logged: with three ids recorded per request that was 5 % of the node's
/// CPU per run (issue 15's profile). A field recorded twice appears twice;
/// the last one wins when the event's line is built (it parses the object).
struct AppendJsonFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for AppendJsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        tracing_subscriber::fmt::format::JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'w mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let mut added = String::new();
        tracing_subscriber::fmt::format::JsonFields::new().format_fields(
            tracing_subscriber::fmt::format::Writer::new(&mut added),
            fields,
        )?;
        append_json_object(&mut current.fields, &added);
        Ok(())
    }
}

/// `{"a":1}` + `{"b":2}` = `{"a":1,"b":2}`; an empty or malformed side
/// leaves the other.
fn append_json_object(current: &mut String, added: &str) {
    let Some(rest) = added.strip_prefix('{').filter(|r| r.ends_with('}')) else {
        return;
    };
    if rest == "}" {
        return;
    }
    if !(current.starts_with('{') && current.ends_with('}')) {
        *current = added.to_owned();
        return;
    }
    current.pop();
    if current.len() > 1 {
        current.push(',');
    }
    current.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::append_json_object;

    #[test]
    fn recorded_fields_are_appended_to_the_stored_object() {
        let mut fields = String::new();
        append_json_object(&mut fields, r#"{"request_id":"r1"}"#);
        assert_eq!(fields, r#"{"request_id":"r1"}"#);
        append_json_object(&mut fields, "{}");
        append_json_object(&mut fields, r#"{"tenant_id":"t","run_id":"x"}"#);
        assert_eq!(
            fields,
            r#"{"request_id":"r1","tenant_id":"t","run_id":"x"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&fields).expect("valid JSON");
        assert_eq!(parsed["run_id"], "x");
        let mut empty = String::from("{}");
        append_json_object(&mut empty, r#"{"a":1}"#);
        assert_eq!(empty, r#"{"a":1}"#);
        // Recorded twice: the last value wins when the line is parsed.
        append_json_object(&mut empty, r#"{"a":2}"#);
        let parsed: serde_json::Value = serde_json::from_str(&empty).expect("valid JSON");
        assert_eq!(parsed["a"], 2);
    }
}
