//! Start-up, serving (TLS with rustls, or plain HTTP where allowed),
//! signals and systemd notification.
//!
//! - SIGTERM/SIGINT: stop accepting connections, let runs finish within
//!   `drain_grace_secs`, cancel the rest (recorded as `cancelled`), return
//!   the budget leases, flush the usage outbox, exit 0.
//! - SIGHUP: re-read the config file and apply what can change safely (run
//!   limits, scheduler limits), the node token and the TLS certificate.
//! - systemd (`Type=notify`): READY, STATUS, WATCHDOG while the state store
//!   answers, STOPPING.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use delta_runtime::{CompileMode, Runtime, RuntimeConfig};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::api::{ApiState, router};
use crate::capabilities::Backends;
use crate::config::{NodeConfig, read_secret};
use crate::leases::LeaseLedger;
use crate::metrics::Metrics;
use crate::node::{Node, Reporting};
use crate::reporter::{self, ReporterConfig, ReporterStats};
use crate::store::Store;

/// How the node compiles components (the CLI passes itself as the worker).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The compile worker; `None` compiles in-process (tests only).
    pub compile: Option<CompileMode>,
    /// The config file, re-read on SIGHUP (none: nothing to reload).
    pub config_path: Option<PathBuf>,
    /// Flags and environment, re-applied on reload.
    pub overrides: crate::config::Overrides,
}

/// A node serving in this process (`delta node`, or embedded by `delta up`).
pub struct RunningNode {
    node: Arc<Node>,
    local: SocketAddr,
    url: String,
    token: Arc<RwLock<String>>,
    tls: Option<RustlsConfig>,
    handle: Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
    leases: Option<Arc<LeaseLedger>>,
}

impl RunningNode {
    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `http(s)://<bound address>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Graceful stop: stop accepting connections, let runs finish within
    /// the drain grace, cancel the rest (recorded as `cancelled`), return the
    /// budget leases, flush the usage outbox.
    pub async fn shutdown(self) {
        let grace = self.grace;
        notify(&[
            NotifyState::Stopping,
            NotifyState::Status("draining: finishing runs"),
        ]);
        tracing::info!(
            grace_secs = grace.as_secs(),
            runs = self.node.runs_in_flight(),
            "draining"
        );
        // New connections are refused now; open ones finish their requests
        // (a `?wait=true` run answers when it ends).
        self.handle
            .graceful_shutdown(Some(grace + Duration::from_secs(5)));
        self.node.drain(grace).await;
        for task in &self.background {
            task.abort();
        }
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
        if let Some(leases) = &self.leases {
            // Runs are over: every lease goes back with what was spent on
            // it, so the tokens are free for other nodes at once.
            notify(&[NotifyState::Status("draining: returning budget leases")]);
            leases.shutdown(Duration::from_secs(10)).await;
        }
        if let Some(reporter) = self.node.reporter() {
            notify(&[NotifyState::Status("draining: flushing usage")]);
            if !reporter.handle.flush(Duration::from_secs(10)).await {
                tracing::warn!("usage not all reported; it stays in the outbox for the next start");
            }
        }
        tracing::info!("node stopped");
    }
}

impl RunningNode {
    /// Stop at once, as a crash looks from outside (tests of node loss): no
    /// more heartbeats or usage reports, connections dropped, runs in
    /// flight cancelled, their records left unreported in the outbox. No
    /// drain, no leases returned.
    pub async fn kill(self) {
        if let Some(reporter) = self.node.reporter() {
            reporter.handle.shutdown().await;
        }
        for task in &self.background {
            task.abort();
        }
        self.handle.shutdown();
        self.server.abort();
        self.node.drain(Duration::ZERO).await;
    }
}

/// Run the node until SIGTERM/SIGINT. Prints `listening on <url>` on stdout
/// once the socket is bound (scripts and tests wait for it).
pub async fn serve(config: NodeConfig, options: ServeOptions) -> anyhow::Result<()> {
    let running = start(config, &options).await?;
    println!("listening on {}", running.url());
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving on {}", running.local_addr())),
    ]);
    let watchdog = spawn_watchdog(Arc::clone(running.node()));
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                reload(&options, running.node(), &running.token, running.tls.as_ref()).await;
            }
        }
    }
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    running.shutdown().await;
    Ok(())
}

/// Build the node and start serving; returns once the socket is bound.
pub async fn start(mut config: NodeConfig, options: &ServeOptions) -> anyhow::Result<RunningNode> {
    config.validate()?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    // Default id: host name and port, so several nodes on one machine
    // (tests, `delta up`) stay distinct.
    if config.node_id.is_none() {
        config.node_id = Some(format!("{}:{}", config.node_id(), local.port()));
    }
    create_private_dir(&config.state_dir)?;
    let token_file = config
        .token_file
        .clone()
        .context("no token file configured")?;
    let token = Arc::new(RwLock::new(read_secret(&token_file)?));

    let mut runtime_config = RuntimeConfig {
        cache_dir: Some(config.state_dir.join("cache")),
        ..RuntimeConfig::default()
    };
    config.compile.apply(&mut runtime_config.compile);
    if let Some(mode) = options.compile.clone() {
        runtime_config.compile.mode = mode;
    }
    // Every execution slot needs an instance slot, with headroom for
    // instances being torn down.
    let wanted = u32::try_from(config.scheduler.concurrency.saturating_mul(2)).unwrap_or(u32::MAX);
    let pool = &mut runtime_config.engine.pooling;
    pool.max_instances = pool.max_instances.max(wanted);
    let runtime = Arc::new(Runtime::new(runtime_config)?);

    let store = Store::open(&config.state_dir.join("node.db"))
        .await
        .context("opening the node's state store")?;
    let backends = Backends::from_config(&config).await?;
    let metrics = Arc::new(Metrics::new());
    let leases = backends.leases().cloned();
    if let Some(leases) = &leases {
        leases.count_into(metrics.budget_leases.clone());
    }
    let reporter = match &config.control_plane {
        Some(cp) => {
            let token = match &cp.token_file {
                Some(path) => Some(read_secret(path)?),
                None => None,
            };
            let url = reqwest::Url::parse(&cp.url)
                .with_context(|| format!("control_plane.url {:?}", cp.url))?;
            let mut reporter_config = ReporterConfig::new(url, config.node_id());
            reporter_config.token = token;
            reporter_config.batch_size = cp.batch_size.max(1);
            let stats = ReporterStats::new();
            Some(Reporting {
                handle: reporter::spawn(store.clone(), reporter_config, Arc::clone(&stats)),
                stats,
            })
        }
        None => None,
    };
    let node = Node::start(
        &config,
        runtime,
        store,
        backends,
        Arc::clone(&metrics),
        reporter,
    )
    .await?;

    let sweeper = {
        let node = Arc::clone(&node);
        let every = Duration::from_secs(config.runs.sweep_interval_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match node.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(runs = n, "expired runs deleted"),
                    Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
                }
            }
        })
    };

    let state = ApiState {
        node: Arc::clone(&node),
        token: Arc::clone(&token),
    };
    let app = router(state);
    let handle: Handle<SocketAddr> = Handle::new();
    let tls = match &config.tls {
        Some(tls) => Some(
            RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?,
        ),
        None => None,
    };
    let service = app.into_make_service();
    let server = match &tls {
        Some(tls) => {
            let server =
                axum_server::from_tcp_rustls(listener, tls.clone())?.handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await })
        }
        None => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await })
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{local}");
    tracing::info!(address = %local, scheme, node_id = node.id(), "node serving");
    let mut background = vec![sweeper];
    if let Some(cp) = &config.control_plane {
        let heartbeat = Heartbeat {
            endpoint: format!("{}/v1/nodes/heartbeat", cp.url.trim_end_matches('/')),
            token: match &cp.token_file {
                Some(path) => Some(read_secret(path)?),
                None => None,
            },
            url: cp.advertise_url.clone().unwrap_or_else(|| url.clone()),
            every: Duration::from_secs(cp.heartbeat_secs.max(1)),
        };
        // A refused credential never heals by retrying: say so and stop,
        // rather than warn on every beat. (An unreachable control plane may
        // come later: the beats retry.)
        if let Err(e) = heartbeat.first(&node).await {
            handle.shutdown();
            for task in &background {
                task.abort();
            }
            return Err(e);
        }
        background.push(heartbeat.spawn(Arc::clone(&node)));
    }
    Ok(RunningNode {
        node,
        local,
        url,
        token,
        tls,
        handle,
        server,
        background,
        grace: Duration::from_secs(config.drain_grace_secs),
        leases,
    })
}

/// Tells the control plane this node is alive, where it is and how busy.
struct Heartbeat {
    endpoint: String,
    token: Option<String>,
    url: String,
    every: Duration,
}

impl Heartbeat {
    fn body(&self, node: &Node) -> serde_json::Value {
        let scheduler = node.scheduler();
        serde_json::json!({
            "node_id": node.id(),
            "url": self.url,
            "capacity": scheduler.limits().concurrency,
            "load": scheduler.running() + scheduler.queued(),
        })
    }

    /// The first beat, at start: an error if the control plane refuses the
    /// node's credential (401/403).
    async fn first(&self, node: &Node) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut req = client.post(&self.endpoint).json(&self.body(node));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        match req.send().await {
            Ok(resp)
                if matches!(
                    resp.status(),
                    reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
                ) =>
            {
                anyhow::bail!(
                    "the control plane at {} refused this node's credential ({}): set \
                     [control_plane] token_file (or --control-plane-token-file) to a file \
                     holding this node's own credential (ncr_..., from `delta nodes enroll \
                     <node-id>`; a 403 means it is another node id's)",
                    self.endpoint,
                    resp.status()
                )
            }
            Ok(resp) if resp.status() == reqwest::StatusCode::CONFLICT => {
                // Not fatal: the operator can fix it while the node waits.
                tracing::warn!(
                    endpoint = %self.endpoint,
                    "the control plane has this node at another URL and a heartbeat cannot \
                     move it: an operator sets the new one (`delta nodes set-url <node-id> \
                     <advertise_url>`); heartbeats retry"
                );
                Ok(())
            }
            Ok(resp) if !resp.status().is_success() => {
                tracing::warn!(status = %resp.status(), endpoint = %self.endpoint, "first heartbeat refused; retrying");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, endpoint = %self.endpoint, "control plane not reachable yet; heartbeats retry");
                Ok(())
            }
        }
    }

    fn spawn(self, node: Arc<Node>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "heartbeat client");
                    return;
                }
            };
            let mut tick = tokio::time::interval(self.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let mut req = client.post(&self.endpoint).json(&self.body(&node));
                if let Some(token) = &self.token {
                    req = req.bearer_auth(token);
                }
                match req.send().await.and_then(|r| r.error_for_status()) {
                    Ok(_) => {
                        if failing {
                            tracing::info!("heartbeats accepted again");
                        }
                        failing = false;
                    }
                    // Logged once per outage, not once per beat.
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, endpoint = %self.endpoint, "heartbeat failed");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// SIGHUP: limits, scheduler sizes, token and certificate. Deployments and
/// backends are not reloaded (they change through the API or a restart).
async fn reload(
    options: &ServeOptions,
    node: &Node,
    token: &RwLock<String>,
    tls: Option<&RustlsConfig>,
) {
    let Some(path) = &options.config_path else {
        tracing::info!("SIGHUP: no config file to reload");
        return;
    };
    let mut config = match NodeConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: config not reloaded");
            return;
        }
    };
    config.apply_overrides(options.overrides.clone());
    if let Err(e) = config.validate() {
        tracing::error!(error = %e, "SIGHUP: config not reloaded");
        return;
    }
    node.reload_limits(config.limits, config.scheduler);
    if let Some(file) = &config.token_file {
        match read_secret(file) {
            Ok(t) => *token.write().unwrap_or_else(|e| e.into_inner()) = t,
            Err(e) => tracing::error!(error = %e, "SIGHUP: token not reloaded"),
        }
    }
    if let (Some(rustls), Some(files)) = (tls, &config.tls)
        && let Err(e) = rustls.reload_from_pem_file(&files.cert, &files.key).await
    {
        tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded");
    }
    tracing::info!("SIGHUP: limits, token and certificate reloaded");
}

fn notify(states: &[NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify");
    }
}

/// Ping systemd's watchdog at half its interval while the store answers, so
/// a wedged node is restarted.
fn spawn_watchdog(node: Arc<Node>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled().filter(|d| !d.is_zero())?;
    let every = interval / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if node.store().ping().await.is_ok() {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::error!("state store not answering: withholding the watchdog ping");
            }
        }
    }))
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))
}
