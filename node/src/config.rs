//! `node.toml`: the node daemon's configuration.
//!
//! Precedence is flags > `DELTA_*` environment variables > this file >
//! defaults; the CLI applies flags and environment through
//! [`NodeConfig::apply_overrides`]. Secrets (the node token, the control
//! plane's token, provider keys) are never in the file: it names files or
//! environment variables.
//!
//! ```toml
//! node_id = "node-1"                  # default: the host name
//! listen = "0.0.0.0:7421"
//! state_dir = "/var/lib/delta"
//! token_file = "/etc/delta/node-token"
//! drain_grace_secs = 30
//!
//! [tls]
//! cert = "/etc/delta/tls/cert.pem"
//! key = "/etc/delta/tls/key.pem"
//!
//! [limits]                            # node maximums and defaults per run
//! max_fuel = 10_000_000_000
//! max_memory_bytes = 268_435_456
//! max_timeout_ms = 60_000
//! max_component_bytes = 67_108_864
//! max_input_bytes = 1_048_576
//!
//! [scheduler]
//! concurrency = 8
//! per_tenant_concurrency = 4
//! queue_per_tenant = 256
//! queue_total = 4096
//!
//! [runs]
//! retention_secs = 86_400             # outputs and logs are deleted after
//! sweep_interval_secs = 60
//!
//! [compile]                           # uploads: each compiled in a bounded worker
//! concurrency = 2                     # compiles at once; tenants take turns for the rest
//! per_tenant_concurrency = 1          # one tenant's at once (default concurrency - 1)
//! budget_secs_per_hour = 600          # compile time one tenant may use per hour
//! cpu_ms = 10_000                     # CPU time of one compile (whole seconds)
//! timeout_ms = 30_000                 # wall clock of one compile
//! max_memory_bytes = 536_870_912      # address space of the compile worker
//!
//! [control_plane]
//! url = "https://control.example.com"
//! token_file = "/etc/delta/control-token"
//! advertise_url = "https://node-1.example.com:7421"   # how the control plane reaches this node
//! heartbeat_secs = 5
//! # Token budgets: the control plane is the authority; the node leases
//! # slices of an agent's budget and spends against them (see `leases`).
//! lease_chunk = 1000                  # tokens per lease (more if one call needs more)
//! lease_idle_secs = 5                 # an unused lease goes back after this long
//! lease_margin_secs = 10              # no new holds this close to a lease's expiry
//! lease_grace_secs = 30               # an expired lease with holds open goes back after this
//! budget_timeout_secs = 5             # timeout of every budget call
//!
//! [llm]                               # delta_llm::LlmConfig
//! [messaging]                         # delta_messaging::MessagingConfig
//! # [budget]                          # delta_ledger::seed::BudgetConfig: a local
//! # database = "/var/lib/delta/ledger.db"  # SQLite ledger, only without [control_plane]
//!
//! [kv]                                # agents' durable state (delta_kv::KvLimits); only
//! max_value_bytes = 65_536            # without [control_plane] (state_dir/kv.db): with one,
//! max_keys = 10_000                   # the state and its limits are the control plane's
//! max_total_bytes = 16_777_216
//!
//! [http]                              # agents' outbound HTTP (delta_outbound::OutboundConfig);
//! allow_private_networks = false      # absent: not-configured. Never true on a shared network
//! max_request_bytes = 1_048_576
//! max_response_bytes = 1_048_576
//! timeout_ms = 10_000
//! requests_per_minute = 60            # per agent
//! burst = 20
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use delta_ledger::seed::BudgetConfig;
use delta_runtime::InvocationLimits;
use serde::Deserialize;

use crate::scheduler::SchedulerLimits;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's id in usage reports and metrics (default: host name).
    pub node_id: Option<String>,
    /// Address to serve on (default `127.0.0.1:7421`).
    pub listen: SocketAddr,
    /// Where the node keeps its database, components and compiled cache.
    pub state_dir: PathBuf,
    /// File holding the bearer token clients must present.
    pub token_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (default false: TLS is
    /// required unless bound to loopback).
    pub allow_plain_http: bool,
    /// TLS certificate and key.
    pub tls: Option<TlsConfig>,
    /// Seconds in-flight runs get to finish after SIGTERM.
    pub drain_grace_secs: u64,
    /// Node maximums and defaults of per-run limits.
    pub limits: NodeLimits,
    /// Execution slots and queues.
    pub scheduler: SchedulerLimits,
    /// Retention of run outputs and logs.
    pub runs: RunsConfig,
    /// Bounds on compiling uploads.
    pub compile: CompileConfig,
    /// Where usage is reported.
    pub control_plane: Option<ControlPlaneConfig>,
    /// LLM providers (none: every LLM call answers `not-configured`).
    pub llm: Option<delta_llm::LlmConfig>,
    /// Messaging channels and templates (none: `not-configured`).
    pub messaging: Option<MessagingSection>,
    /// The token ledger (none: budget calls answer `not-configured`).
    pub budget: Option<BudgetConfig>,
    /// Bounds of agents' key-value state kept in `state_dir/kv.db` by a
    /// node without a control plane (with one, the control plane keeps the
    /// state and applies its own `[kv]`).
    pub kv: delta_kv::KvLimits,
    /// Outbound HTTP for agents with an `http` grant (none: every request
    /// answers `not-configured`).
    pub http: Option<delta_outbound::OutboundConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7421)),
            state_dir: PathBuf::from(".delta/node"),
            token_file: None,
            allow_plain_http: false,
            tls: None,
            drain_grace_secs: 30,
            limits: NodeLimits::default(),
            scheduler: SchedulerLimits::default(),
            runs: RunsConfig::default(),
            compile: CompileConfig::default(),
            control_plane: None,
            llm: None,
            messaging: None,
            budget: None,
            kv: delta_kv::KvLimits::default(),
            http: None,
        }
    }
}

/// `[compile]`: what one upload may cost. Every bound is checked by the
/// runtime (see `delta_runtime::CompileSettings`); the defaults are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompileConfig {
    /// Compiles running at once; the rest wait, tenants taking turns.
    pub concurrency: usize,
    /// Compiles one tenant may run at once (default: one less than
    /// `concurrency`, at least 1): a place stays free for other tenants.
    pub per_tenant_concurrency: Option<usize>,
    /// Seconds of compilation one tenant may use in any hour.
    pub budget_secs_per_hour: u64,
    /// CPU-time bound of one compile, ms (rounded up to seconds).
    pub cpu_ms: u64,
    /// Wall-clock bound of one compile, ms.
    pub timeout_ms: u64,
    /// Address-space bound of the compile worker, bytes.
    pub max_memory_bytes: u64,
}

impl Default for CompileConfig {
    fn default() -> Self {
        let runtime = delta_runtime::CompileSettings::default();
        Self {
            concurrency: runtime.max_concurrent,
            per_tenant_concurrency: runtime.max_concurrent_per_owner,
            budget_secs_per_hour: runtime.budget_secs_per_hour,
            cpu_ms: runtime.cpu_ms,
            timeout_ms: runtime.timeout_ms,
            max_memory_bytes: runtime.max_memory_bytes,
        }
    }
}

impl CompileConfig {
    /// Apply to the runtime's settings.
    pub fn apply(&self, settings: &mut delta_runtime::CompileSettings) {
        settings.max_concurrent = self.concurrency.max(1);
        settings.max_concurrent_per_owner = self.per_tenant_concurrency;
        settings.budget_secs_per_hour = self.budget_secs_per_hour;
        settings.cpu_ms = self.cpu_ms.max(1);
        settings.timeout_ms = self.timeout_ms.max(1);
        settings.max_memory_bytes = self.max_memory_bytes;
    }
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeLimits {
    /// Largest fuel a deployment may ask for.
    pub max_fuel: u64,
    /// Largest memory cap a deployment may ask for, bytes.
    pub max_memory_bytes: u64,
    /// Longest deadline a deployment may ask for, ms.
    pub max_timeout_ms: u64,
    /// Fuel of a deployment that sets none.
    pub default_fuel: u64,
    /// Memory cap of a deployment that sets none, bytes.
    pub default_memory_bytes: u64,
    /// Deadline of a deployment that sets none, ms.
    pub default_timeout_ms: u64,
    /// Largest component upload, bytes.
    pub max_component_bytes: u64,
    /// Largest request body for JSON endpoints (task input included), bytes.
    pub max_input_bytes: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        let run = InvocationLimits::default();
        Self {
            max_fuel: 10 * run.fuel,
            max_memory_bytes: 256 << 20,
            max_timeout_ms: 60_000,
            default_fuel: run.fuel,
            default_memory_bytes: run.memory_bytes,
            default_timeout_ms: run.timeout_ms,
            max_component_bytes: 64 << 20,
            max_input_bytes: 1 << 20,
        }
    }
}

impl NodeLimits {
    /// The limits of one run of a deployment asking for `fuel`, `memory` and
    /// `timeout` (each `None` for the default), clamped by the maximums.
    pub fn for_run(
        &self,
        fuel: Option<u64>,
        memory_bytes: Option<u64>,
        timeout_ms: Option<u64>,
    ) -> InvocationLimits {
        InvocationLimits {
            fuel: fuel.unwrap_or(self.default_fuel).min(self.max_fuel),
            memory_bytes: memory_bytes
                .unwrap_or(self.default_memory_bytes)
                .min(self.max_memory_bytes),
            timeout_ms: timeout_ms
                .unwrap_or(self.default_timeout_ms)
                .min(self.max_timeout_ms),
            ..InvocationLimits::default()
        }
    }
}

/// `[runs]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunsConfig {
    /// How long a finished run's output and logs are kept (seed 004: data
    /// with a TTL is hard-deleted after it).
    pub retention_secs: u64,
    /// How often the expiry sweep runs.
    pub sweep_interval_secs: u64,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            retention_secs: 24 * 3600,
            sweep_interval_secs: 60,
        }
    }
}

/// `[control_plane]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Base URL; usage goes to `{url}/v1/nodes/usage`.
    pub url: String,
    /// File holding the bearer token the node presents.
    pub token_file: Option<PathBuf>,
    /// Records per batch (default 500).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The URL the control plane reaches this node at (default
    /// `http(s)://<bound address>`).
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// Seconds between heartbeats (default 5).
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Tokens asked for per budget lease (default 1000); a call that needs
    /// more asks for what it needs.
    #[serde(default = "default_lease_chunk")]
    pub lease_chunk: u64,
    /// A lease without open reservations goes back to the control plane
    /// after this many seconds unused (default 5).
    #[serde(default = "default_lease_idle_secs")]
    pub lease_idle_secs: u64,
    /// No reservation is taken from a lease this many seconds before its
    /// expiry (default 10; at most half the lease's lifetime).
    #[serde(default = "default_lease_margin_secs")]
    pub lease_margin_secs: u64,
    /// A lease whose reservations are still open this many seconds after its
    /// expiry is returned anyway, with what was spent on it so far (default
    /// 30).
    #[serde(default = "default_lease_grace_secs")]
    pub lease_grace_secs: u64,
    /// Timeout of each budget call to the control plane, seconds (default 5).
    #[serde(default = "default_budget_timeout_secs")]
    pub budget_timeout_secs: u64,
}

fn default_batch_size() -> usize {
    500
}

fn default_heartbeat_secs() -> u64 {
    5
}

// ---- lease defaults ---------------------------------------------------------
// How a node leases from the control plane: the defaults of
// `[control_plane]`'s lease keys and the settings `leases` runs with. They
// live here, not in `leases`, so that the configuration does not depend on
// the lease client (which depends on it).

/// Default [`LeaseSettings::chunk`].
pub const DEFAULT_LEASE_CHUNK: u64 = 1_000;
/// Default [`LeaseSettings::idle_return`].
pub const DEFAULT_IDLE_RETURN: Duration = Duration::from_secs(5);
/// Default [`LeaseSettings::expiry_margin`].
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Default [`LeaseSettings::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`LeaseSettings::open_grace`].
pub const DEFAULT_OPEN_GRACE: Duration = Duration::from_secs(30);

/// How a node leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Tokens asked for per lease (more when one reservation needs more).
    pub chunk: u64,
    /// A lease without open reservations is returned after this long unused.
    pub idle_return: Duration,
    /// No reservation is taken from a lease this close to its expiry (capped
    /// at half the lease's lifetime).
    pub expiry_margin: Duration,
    /// Timeout of every call to the control plane, connect to end of body.
    pub timeout: Duration,
    /// A lease whose reservations are still open this long after its expiry
    /// is returned anyway, with what was spent on it so far.
    pub open_grace: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            chunk: DEFAULT_LEASE_CHUNK,
            idle_return: DEFAULT_IDLE_RETURN,
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            timeout: DEFAULT_TIMEOUT,
            open_grace: DEFAULT_OPEN_GRACE,
        }
    }
}

impl LeaseSettings {
    /// The settings of `[control_plane]`.
    pub fn from_config(cp: &ControlPlaneConfig) -> Self {
        Self {
            chunk: cp.lease_chunk.max(1),
            idle_return: Duration::from_secs(cp.lease_idle_secs),
            expiry_margin: Duration::from_secs(cp.lease_margin_secs),
            timeout: Duration::from_secs(cp.budget_timeout_secs.max(1)),
            open_grace: Duration::from_secs(cp.lease_grace_secs),
        }
    }
}

fn default_lease_chunk() -> u64 {
    DEFAULT_LEASE_CHUNK
}

fn default_lease_idle_secs() -> u64 {
    DEFAULT_IDLE_RETURN.as_secs()
}

fn default_lease_margin_secs() -> u64 {
    DEFAULT_EXPIRY_MARGIN.as_secs()
}

fn default_lease_grace_secs() -> u64 {
    DEFAULT_OPEN_GRACE.as_secs()
}

fn default_budget_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT.as_secs()
}
// ---- end of lease defaults ---------------------------------------------------

/// `[messaging]`: the backends and templates, plus where the audit goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingSection {
    /// JSON-lines audit log (default `<state_dir>/messages.jsonl`).
    pub audit_log: Option<PathBuf>,
    /// Channels and templates.
    #[serde(flatten)]
    pub config: delta_messaging::MessagingConfig,
}

/// Values given on the command line or in the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `DELTA_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--state-dir` / `DELTA_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
    /// `--token-file` / `DELTA_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// `--allow-plain-http` / `DELTA_ALLOW_PLAIN_HTTP`.
    pub allow_plain_http: bool,
    /// `--control-plane-url` / `DELTA_CONTROL_PLANE_URL`.
    pub control_plane_url: Option<String>,
    /// `--control-plane-token-file` / `DELTA_CONTROL_PLANE_TOKEN_FILE`.
    pub control_plane_token_file: Option<PathBuf>,
}

impl NodeConfig {
    /// Read `path`; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Apply flags and environment on top of the file.
    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(dir) = o.state_dir {
            self.state_dir = dir;
        }
        if let Some(file) = o.token_file {
            self.token_file = Some(file);
        }
        self.allow_plain_http |= o.allow_plain_http;
        if let Some(url) = o.control_plane_url {
            match &mut self.control_plane {
                Some(cp) => cp.url = url,
                None => {
                    self.control_plane = Some(ControlPlaneConfig {
                        url,
                        token_file: None,
                        batch_size: default_batch_size(),
                        advertise_url: None,
                        heartbeat_secs: default_heartbeat_secs(),
                        lease_chunk: default_lease_chunk(),
                        lease_idle_secs: default_lease_idle_secs(),
                        lease_margin_secs: default_lease_margin_secs(),
                        lease_grace_secs: default_lease_grace_secs(),
                        budget_timeout_secs: default_budget_timeout_secs(),
                    })
                }
            }
        }
        if let (Some(file), Some(cp)) = (o.control_plane_token_file, &mut self.control_plane) {
            cp.token_file = Some(file);
        }
    }

    /// Check what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.token_file.is_none() {
            return invalid(
                "no token file: set token_file, DELTA_TOKEN_FILE or --token-file \
                 (every request but health checks needs the node token)",
            );
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_plain_http {
            return Err(ConfigError::Invalid(format!(
                "{} is not a loopback address: configure [tls] or pass --allow-plain-http",
                self.listen
            )));
        }
        let s = &self.scheduler;
        if s.concurrency == 0 || s.per_tenant_concurrency == 0 {
            return invalid("scheduler concurrency and per_tenant_concurrency must be at least 1");
        }
        if self.runs.sweep_interval_secs == 0 {
            return invalid("runs.sweep_interval_secs must be at least 1");
        }
        let l = &self.limits;
        if l.max_input_bytes == 0 || l.max_component_bytes == 0 {
            return invalid("limits.max_input_bytes and max_component_bytes must be positive");
        }
        if let Some(problem) = self.kv.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        if let Some(cp) = &self.control_plane {
            // Two authorities would let an agent spend its budget twice.
            if self.budget.is_some() {
                return invalid(
                    "[budget] and [control_plane] are both configured: with a control plane \
                     it is the budget authority and the node leases tokens from it; remove \
                     the local [budget] section",
                );
            }
            if cp.lease_chunk == 0 || cp.budget_timeout_secs == 0 {
                return invalid(
                    "control_plane.lease_chunk and budget_timeout_secs must be at least 1",
                );
            }
            // Without it every heartbeat is a 401, retried forever.
            if cp.token_file.is_none() {
                return invalid(
                    "the control plane needs this node's credential: set [control_plane] \
                     token_file, DELTA_CONTROL_PLANE_TOKEN_FILE or --control-plane-token-file \
                     (a file holding this node's credential, ncr_..., from \
                     `delta nodes enroll <node-id>`)",
                );
            }
        }
        Ok(())
    }

    /// The node id: configured, else the host name, else `node`.
    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "node".into())
    }

    /// How long a finished run's output is kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.runs.retention_secs)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.state_dir);
        if let Some(f) = &mut self.token_file {
            join(f);
        }
        if let Some(tls) = &mut self.tls {
            join(&mut tls.cert);
            join(&mut tls.key);
        }
        if let Some(cp) = &mut self.control_plane
            && let Some(f) = &mut cp.token_file
        {
            join(f);
        }
        if let Some(budget) = &mut self.budget {
            join(&mut budget.database);
        }
        if let Some(messaging) = &mut self.messaging {
            if let Some(f) = &mut messaging.audit_log {
                join(f);
            }
            delta_messaging::config::resolve_paths(&mut messaging.config, base);
        }
        if let Some(llm) = &mut self.llm {
            for provider in &mut llm.providers {
                if let Some(file) = &mut provider.api_key_file {
                    join(file);
                }
            }
        }
    }
}

/// Read a secret file: trimmed, and refused when empty.
pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim().to_owned();
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!("{} is empty", path.display())));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml").expect("example") + "//! ```toml".len();
        let end = start + doc[start..].find("//! ```").expect("end");
        let toml: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let config: NodeConfig = toml::from_str(&toml).expect("example parses");
        assert_eq!(config.scheduler.concurrency, 8);
        assert_eq!(config.runs.retention_secs, 86_400);
        assert!(config.tls.is_some());
        config.validate().expect("valid");
        let mut compile = delta_runtime::CompileSettings::default();
        config.compile.apply(&mut compile);
        assert_eq!(compile.max_concurrent_per_owner, Some(1));
        NodeConfig::default().compile.apply(&mut compile);
        assert_eq!(compile.max_concurrent_per_owner, None, "the gate's default");
    }

    #[test]
    fn plain_http_off_loopback_needs_consent() {
        let mut config = NodeConfig {
            token_file: Some("t".into()),
            listen: "0.0.0.0:7421".parse().expect("addr"),
            ..NodeConfig::default()
        };
        assert!(config.validate().is_err());
        config.apply_overrides(Overrides {
            allow_plain_http: true,
            ..Overrides::default()
        });
        config.validate().expect("allowed");
        config.token_file = None;
        assert!(config.validate().is_err(), "a token file is required");
    }

    #[test]
    fn a_control_plane_without_a_credential_is_refused_naming_the_setting() {
        let mut config = NodeConfig {
            token_file: Some("t".into()),
            ..NodeConfig::default()
        };
        config.apply_overrides(Overrides {
            control_plane_url: Some("http://127.0.0.1:7420".into()),
            ..Overrides::default()
        });
        let err = config.validate().expect_err("no credential");
        assert!(
            err.to_string().contains("--control-plane-token-file"),
            "{err}"
        );
        config.apply_overrides(Overrides {
            control_plane_token_file: Some("cp-token".into()),
            ..Overrides::default()
        });
        config.validate().expect("with the credential");
    }

    #[test]
    fn a_local_budget_beside_a_control_plane_is_refused() {
        let text = r#"
token_file = "t"
[control_plane]
url = "http://127.0.0.1:1"
token_file = "cp-token"
[budget]
database = "ledger.db"
"#;
        let mut config: NodeConfig = toml::from_str(text).expect("parses");
        let err = config.validate().expect_err("two budget authorities");
        assert!(
            err.to_string().contains("[budget] and [control_plane]"),
            "{err}"
        );
        config.budget = None;
        config.validate().expect("the control plane alone");
        let cp = config.control_plane.as_ref().expect("cp");
        assert_eq!(cp.lease_chunk, 1000);
        assert_eq!(cp.lease_idle_secs, 5);
        assert_eq!(cp.lease_margin_secs, 10);
        assert_eq!(cp.lease_grace_secs, 30);
        assert_eq!(cp.budget_timeout_secs, 5);
        config.control_plane = None;
        config.budget = Some(toml::from_str(r#"database = "ledger.db""#).expect("budget"));
        config.validate().expect("the local ledger alone");
    }

    #[test]
    fn deployment_limits_are_clamped_by_the_node() {
        let limits = NodeLimits::default();
        let run = limits.for_run(Some(u64::MAX), Some(u64::MAX), Some(u64::MAX));
        assert_eq!(run.fuel, limits.max_fuel);
        assert_eq!(run.memory_bytes, limits.max_memory_bytes);
        assert_eq!(run.timeout_ms, limits.max_timeout_ms);
        let run = limits.for_run(None, Some(1 << 20), None);
        assert_eq!(run.fuel, limits.default_fuel);
        assert_eq!(run.memory_bytes, 1 << 20);
    }
}
